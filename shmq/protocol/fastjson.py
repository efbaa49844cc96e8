"""A tolerant JSON reader for what Java's fastjson writes (spec/request-codes.md §9.4).

Theory of operation: fastjson writes `Map<Integer/Long, ...>` keys unquoted (`{0:"addr"}`) and
`Map<MessageQueue, ...>` keys as object literals (`{{"brokerName":"b","queueId":0}:5}`); the
Java name server sends the first form to every client older than 4.9.4, and Java brokers and
admin tools send both. `loads` first tries the standard parser (fast, C); only when that fails
does it run a small recursive-descent parser that also accepts

* unquoted keys that are numbers or identifiers (kept as their text: `{0:"a"}` -> `{"0": "a"}`),
* object or array keys, kept as their canonical JSON text (sorted keys, compact), so
  `{{"queueId":0,"brokerName":"b"}:5}` -> `{'{"brokerName":"b","queueId":0}': 5}`,
* raw control characters inside strings.

Everything else is standard JSON. Whatever the input, `loads` returns a value or raises
`BodyFormatError`; nesting is limited to `MAX_DEPTH` levels.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable
from typing import Any, Final, NoReturn

from .errors import BodyFormatError

__all__ = ["MAX_DEPTH", "loads"]

#: deepest nesting accepted (the bodies shmq reads nest 5 levels at most)
MAX_DEPTH: Final = 100

_strict_loads: Final = json.JSONDecoder(strict=False).decode
#: the C string scanner of json: (text, index after the quote, strict) -> (value, end)
_scanstring: Final[Callable[[str, int, bool], tuple[str, int]]] = json.decoder.scanstring  # type: ignore[attr-defined]
_canonical: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_NUMBER: Final = json.scanner.NUMBER_RE
_BARE_KEY: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?|[A-Za-z_$][A-Za-z0-9_$]*")
_LITERALS: Final = {"true": True, "false": False, "null": None}
_QUOTE_LIMIT: Final = 80


def loads(data: bytes | bytearray | memoryview | str, what: str = "body") -> Any:
    """Parse standard JSON or fastjson's extensions (see the module docstring).

    Args:
        data: the JSON text, UTF-8 bytes (invalid sequences are replaced) or str.
        what: name of the body, used in error messages.

    Returns:
        The parsed value: dicts with str keys, lists, str, int, float, bool, None.

    Raises:
        BodyFormatError: the text is not JSON even by fastjson's rules, or nests deeper than
            MAX_DEPTH.
    """
    text = data if isinstance(data, str) else str(data, "utf-8", "replace")
    try:
        return _strict_loads(text)
    except RecursionError as err:
        raise BodyFormatError(what, f"nests deeper than {MAX_DEPTH} levels") from err
    except ValueError:
        pass  # not standard JSON: try fastjson's dialect
    parser = _Parser(text, what)
    value, end = parser.value(parser.skip(0), 0)
    if parser.skip(end) != len(text):
        parser.fail(end, "extra data after the value")
    return value


class _Parser:
    """Recursive descent over `text`; every method takes and returns a character index."""

    __slots__ = ("text", "what")

    def __init__(self, text: str, what: str) -> None:
        self.text, self.what = text, what

    def fail(self, index: int, reason: str) -> NoReturn:
        excerpt = self.text[index : index + _QUOTE_LIMIT]
        raise BodyFormatError(self.what, f"{reason} at character {index}: {excerpt!r}")

    def skip(self, index: int) -> int:
        match = _WHITESPACE.match(self.text, index)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def value(self, index: int, depth: int) -> tuple[Any, int]:
        text = self.text
        char = text[index : index + 1]
        if char == '"':
            try:
                return _scanstring(text, index + 1, False)
            except ValueError:
                self.fail(index, "unterminated string")
        if char == "{" or char == "[":
            if depth >= MAX_DEPTH:
                self.fail(index, f"nesting deeper than {MAX_DEPTH}")
            if char == "{":
                return self.object(index + 1, depth + 1)
            return self.array(index + 1, depth + 1)
        number = _NUMBER.match(text, index)
        if number is not None:
            integer, fraction, exponent = number.groups()
            if fraction or exponent:
                return float(integer + (fraction or "") + (exponent or "")), number.end()
            try:
                return int(integer), number.end()
            except ValueError:  # more digits than int() accepts
                self.fail(index, "number too long")
        for literal, result in _LITERALS.items():
            if text.startswith(literal, index):
                return result, index + len(literal)
        self.fail(index, "expected a value")

    def object(self, index: int, depth: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        index = self.skip(index)
        if self.text.startswith("}", index):
            return result, index + 1
        while True:
            key, index = self.key(index, depth)
            index = self.skip(index)
            if not self.text.startswith(":", index):
                self.fail(index, "expected ':'")
            result[key], index = self.value(self.skip(index + 1), depth)
            index = self.skip(index)
            if self.text.startswith(",", index):
                index = self.skip(index + 1)
            elif self.text.startswith("}", index):
                return result, index + 1
            else:
                self.fail(index, "expected ',' or '}'")

    def key(self, index: int, depth: int) -> tuple[str, int]:
        char = self.text[index : index + 1]
        if char == '"':
            key: str
            key, end = self.value(index, depth)
            return key, end
        if char == "{" or char == "[":
            literal, end = self.value(index, depth)
            return _canonical(literal), end
        bare = _BARE_KEY.match(self.text, index)
        if bare is None:
            self.fail(index, "expected a key")
        return bare.group(), bare.end()

    def array(self, index: int, depth: int) -> tuple[list[Any], int]:
        result: list[Any] = []
        index = self.skip(index)
        if self.text.startswith("]", index):
            return result, index + 1
        while True:
            item, index = self.value(index, depth)
            result.append(item)
            index = self.skip(index)
            if self.text.startswith(",", index):
                index = self.skip(index + 1)
            elif self.text.startswith("]", index):
                return result, index + 1
            else:
                self.fail(index, "expected ',' or ']'")
