"""Request parsers that turn every malformed body into a 400, never a 500."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus: deeply nested JSON (`[[[[...`) is a parse error, not a crash.

    DRF catches ValueError only; the json module raises RecursionError past Python's stack limit,
    which a 100 kB body reaches easily.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - too deeply nested.") from None
