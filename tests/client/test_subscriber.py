"""The subscriber's pure decisions (notifier/client/subscriber.py): what each close code
leads to, and the URLs it derives from the one it is given."""

from __future__ import annotations

import pytest

from notifier.client.subscriber import Action, _urls, after_close


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (4401, Action.RENEW),
        (4403, Action.STOP),
        (4400, Action.RESET),
        (1012, Action.RESUME),
        (1013, Action.RESUME),
        (1011, Action.RESUME),
        (4429, Action.RESUME),
        (1006, Action.RESUME),
        (None, Action.RESUME),
    ],
)
def test_each_close_code_has_its_action(code: int | None, action: Action) -> None:
    assert after_close(code) is action


@pytest.mark.parametrize(
    ("given", "http", "ws"),
    [
        ("http://h:8000", "http://h:8000", "ws://h:8000/v1/ws"),
        ("https://h/notifier/", "https://h/notifier", "wss://h/notifier/v1/ws"),
        ("ws://h:8000/v1/ws", "http://h:8000", "ws://h:8000/v1/ws"),
        ("wss://h", "https://h", "wss://h/v1/ws"),
    ],
)
def test_http_and_websocket_urls_from_either(given: str, http: str, ws: str) -> None:
    assert _urls(given) == (http, ws)
