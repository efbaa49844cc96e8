"""Reading and writing JSON bodies: shared by `bodies` and `registration`.

Theory of operation: `encode_json` writes standard JSON the way fastjson orders it (sorted keys,
compact, ASCII). `read_object` parses a body with the tolerant `fastjson.loads` and wraps the
top-level object in a `JsonObject`, whose accessors read one key each with the lenient rules of
spec/remoting-protocol.md §4.2 (numbers may be numeric strings, booleans may be "true"/"1"/1,
missing lists and maps are empty) and raise `BodyFormatError` naming the path of the bad value,
for instance `HeartbeatData.consumerDataSet[0].messageModel`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any, Final, TypeVar

from . import fastjson
from .errors import BodyFormatError
from .json_header import parse_java_int
from .layout import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN

__all__ = [
    "JsonObject",
    "as_bool",
    "as_enum",
    "as_int",
    "as_str",
    "as_texts",
    "encode_json",
    "read_object",
]

E = TypeVar("E", bound=enum.IntEnum)

_dumps: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True, check_circular=False).encode


def encode_json(value: object) -> bytes:
    """Compact, key-sorted, ASCII JSON of `value` (dicts, lists, str, int, bool, None)."""
    text: str = _dumps(value)
    return text.encode("ascii")


def read_object(data: bytes | bytearray | memoryview | str, what: str) -> JsonObject:
    """Parse a body (standard JSON or fastjson's dialect) whose top level must be an object.

    Raises:
        BodyFormatError: not JSON, or not an object at the top.
    """
    return JsonObject(fastjson.loads(data, what), what)


class JsonObject:
    """A decoded JSON object and its path, with typed, path-naming accessors."""

    __slots__ = ("data", "where")

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise BodyFormatError(where, f"expected an object, got {_kind_of(value)}")
        self.data: dict[str, Any] = value
        self.where = where

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise BodyFormatError(f"{self.where}.{key}", "is missing")
        return value

    def text(self, key: str) -> str:
        return as_str(self._get(key, True), f"{self.where}.{key}")

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, False)
        return None if value is None else as_str(value, f"{self.where}.{key}")

    def number(self, key: str, default: int | None = None, *, bits: int = 32) -> int:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        return as_int(value, f"{self.where}.{key}", bits)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False)
        return default if value is None else as_bool(value, f"{self.where}.{key}")

    def items(self, key: str) -> Iterator[tuple[Any, str]]:
        """Items of the array at `key` with their paths; nothing when the key is missing."""
        value = self._get(key, False)
        if value is None:
            return iter(())
        where = f"{self.where}.{key}"
        if not isinstance(value, list):
            raise BodyFormatError(where, f"expected an array, got {_kind_of(value)}")
        return ((item, f"{where}[{index}]") for index, item in enumerate(value))

    def entries(self, key: str) -> Iterator[tuple[str, Any, str]]:
        """(key, value, path) of the object at `key`; nothing when the key is missing."""
        value = self._get(key, False)
        if value is None:
            return iter(())
        where = f"{self.where}.{key}"
        if not isinstance(value, dict):
            raise BodyFormatError(where, f"expected an object, got {_kind_of(value)}")
        return ((name, item, f"{where}[{name!r}]") for name, item in value.items())

    def texts(self, key: str) -> tuple[str, ...]:
        """The array of strings at `key`; () when the key is missing."""
        value = self._get(key, False)
        return () if value is None else as_texts(value, f"{self.where}.{key}")


def _kind_of(value: object) -> str:
    return "null" if value is None else type(value).__name__


def as_str(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    raise BodyFormatError(where, f"expected a string, got {_kind_of(value)}")


def as_texts(value: object, where: str) -> tuple[str, ...]:
    """An array of strings."""
    if not isinstance(value, list):
        raise BodyFormatError(where, f"expected an array, got {_kind_of(value)}")
    return tuple(as_str(item, f"{where}[{index}]") for index, item in enumerate(value))


def as_int(value: object, where: str, bits: int = 32) -> int:
    if isinstance(value, bool):
        raise BodyFormatError(where, "expected a number, got a boolean")
    parsed = value if isinstance(value, int) else None
    if isinstance(value, str):
        parsed = parse_java_int(value)
    if parsed is None:
        raise BodyFormatError(where, f"expected an integer, got {value!r:.40}")
    result = parsed
    low, high = (INT32_MIN, INT32_MAX) if bits == 32 else (INT64_MIN, INT64_MAX)
    if not low <= result <= high:
        raise BodyFormatError(where, f"{result} is outside int{bits}")
    return result


def as_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value == "1" or value.lower() == "true"
    if isinstance(value, int):
        return value != 0
    raise BodyFormatError(where, f"expected a boolean, got {value!r:.40}")


def as_enum(enum_class: type[E], value: object, where: str) -> E:
    """An IntEnum member from its name, its ordinal, or its ordinal as a string."""
    if isinstance(value, str):
        if value in enum_class.__members__:
            return enum_class[value]
        number = parse_java_int(value)
        if number is not None:
            value = number
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return enum_class(value)
        except ValueError:
            pass
    names = ", ".join(enum_class.__members__)
    raise BodyFormatError(where, f"{value!r:.40} is not one of {names} or their ordinals")
