"""Path parameters that may hold any text (user ids, topic names as sent, before their
own validation): Starlette's `path` convertor (`.*`) stops at a newline, and a request
whose parameter holds one would be a 404 instead of the route's own answer (the fuzz
tests found it). Routes write `{name:anything}`."""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class Anything(Convertor[str]):
    """Any text, slashes and newlines included."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anything", Anything())
