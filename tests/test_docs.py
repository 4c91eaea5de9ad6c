"""The documentation stands on its own and keeps up with the code: every relative link in
a Markdown file reaches a file of the repository (and a heading, when it names one),
nothing points at files that only the authors had, outside the repository, and the
reference names every setting, command and flag."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

# Spelled in pieces so that this file does not match itself.
OUTSIDE = ("../" + "shared", "CONTRACT" + ".md")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"`[^`\n]*`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def tracked() -> list[Path]:
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listing.decode().split("\0") if name]


def markdown() -> list[Path]:
    return [path for path in tracked() if path.suffix == ".md"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*$", text, re.MULTILINE)}


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    text = CODE.sub(_unless_link_text, text)
    return [m.group(1) for m in LINK.finditer(text)]


def _unless_link_text(span: re.Match[str]) -> str:
    """Inline code can look like a link (`[x](y)`); inline code that is a link's text stays."""
    following = span.string[span.end() : span.end() + 1]
    return span.group(0) if following == "]" else ""


def test_no_tracked_file_points_outside_the_repository() -> None:
    """No tracked file mentions the authors' private contract page or its folder."""
    offenders = []
    for path in tracked():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        offenders.extend(
            f"{path.relative_to(ROOT)}: {needle}" for needle in OUTSIDE if needle in text
        )
    assert offenders == []


def test_every_relative_link_in_markdown_resolves() -> None:
    """Each relative link of every tracked *.md file reaches a file or folder inside the
    repository, and its #fragment a heading of that file."""
    broken = []
    checked = 0
    for page in markdown():
        for target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto:
            name, _, fragment = target.partition("#")
            resolved = (page.parent / name).resolve() if name else page
            where = f"{page.relative_to(ROOT)} -> {target}"
            checked += 1
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{where}: no such file")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{where}: no such heading")
    assert broken == []
    assert checked > 10


def test_the_slug_rule_matches_github() -> None:
    """Anchors are computed as GitHub does for the headings these pages use."""
    assert slug("Coming next") == "coming-next"
    assert slug("`GET /v1/me/notifications`") == "get-v1menotifications"
    assert slug("WebSocket: `GET /v1/ws`") == "websocket-get-v1ws"
    assert slug("Close codes (WebSocket)") == "close-codes-websocket"


REFERENCE = ROOT / "docs" / "reference.md"


def test_the_reference_names_every_setting() -> None:
    """docs/reference.md documents every `NOTIFIER_*` variable the settings read."""
    from notifier.config import Settings

    text = REFERENCE.read_text()
    missing = [
        f"NOTIFIER_{name.upper()}"
        for name in Settings.model_fields
        if f"`NOTIFIER_{name.upper()}`" not in text
    ]
    assert missing == []


def test_the_reference_names_every_command_and_flag() -> None:
    """docs/reference.md documents every command of the CLI and every one of its flags."""
    import argparse

    from notifier.cli import build_parser

    text = REFERENCE.read_text()
    [commands] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    missing = []
    for name, parser in commands.choices.items():
        if f"`notifier {name}" not in text:
            missing.append(name)
        for action in parser._actions:
            missing.extend(
                f"{name} {flag}"
                for flag in action.option_strings
                if flag.startswith("--") and flag != "--help" and flag not in text
            )
    assert missing == []
