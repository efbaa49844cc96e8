"""Binary header encoding (serialize type 1, "ROCKETMQ"), spec/remoting-protocol.md §5.

Theory of operation: the layout is in `layout.py`; this module reads and writes it with the
same rules as Java's `RocketMQSerializable` (4.9.7):

* A string of length 0 is null: an empty remark reads as None, an entry with an empty value
  reads as absent. So "" and "absent" cannot be told apart in this encoding.
* Entries repeat until `ext_len` bytes are consumed; a later duplicate key wins.
* Bytes after the extFields area are ignored, as Java ignores them.

Stricter than Java where Java would read out of bounds or crash: negative lengths, strings
running past their area and headers shorter than the fixed part raise RemoteProtocolError.
An unknown language number reads as OTHER (Java reads null).

Writing refuses (LocalProtocolError) what Java would silently truncate: a code or version
outside int16 (for example 5.x POP codes, which need the JSON header), a key longer than
32767 bytes, an empty key, and text that cannot be encoded as UTF-8.
"""

from __future__ import annotations

import struct
from typing import Final

from .codes import LanguageCode, SerializeType
from .command import RemotingCommand
from .errors import LocalProtocolError, RemoteProtocolError
from .layout import (
    BINARY_FIXED,
    I16,
    I32,
    INT16_MAX,
    INT16_MIN,
    INT32_MAX,
    INT32_MIN,
    MIN_BINARY_HEADER,
    REMARK_LENGTH_OFFSET,
)

__all__ = ["decode_binary_header", "encode_binary_header"]

_LANGUAGE_BY_NUMBER: Final = {member.value: member for member in LanguageCode}


def decode_binary_header(header: bytes | bytearray, body: bytes | None) -> RemotingCommand:
    """Decode the binary header bytes of one frame into a command carrying `body`.

    Args:
        header: exactly the header bytes of the frame.
        body: the frame's body, or None when it has none.

    Returns:
        The command, with `serialize_type` ROCKETMQ.

    Raises:
        RemoteProtocolError: the header is shorter than its fixed part, or a length is negative
            or runs past the header or the extFields area.
    """
    end = len(header)
    if end < MIN_BINARY_HEADER:
        raise RemoteProtocolError(
            f"binary header of {end} bytes is shorter than the {MIN_BINARY_HEADER}-byte minimum"
        )
    code, language, version, opaque, flag = BINARY_FIXED.unpack_from(header, 0)
    remark, pos = _read_str(header, REMARK_LENGTH_OFFSET, I32, end, "remark")
    if pos + I32.size > end:
        raise RemoteProtocolError(f"binary header ends at {end} before the extFields length")
    (ext_len,) = I32.unpack_from(header, pos)
    pos += I32.size
    if ext_len < 0 or pos + ext_len > end:
        raise RemoteProtocolError(
            f"binary header extFields length {ext_len} at offset {pos - I32.size} does not fit "
            f"the {end - pos} bytes left"
        )
    return RemotingCommand(
        code=code,
        language=_LANGUAGE_BY_NUMBER.get(language, LanguageCode.OTHER),
        version=version,
        opaque=opaque,
        flag=flag,
        remark=remark,
        ext_fields=_read_entries(header, pos, pos + ext_len),
        body=body,
        serialize_type=SerializeType.ROCKETMQ,
    )


def _read_entries(header: bytes | bytearray, pos: int, end: int) -> dict[str, str]:
    """Entries between `pos` and `end`: (i16 key length, key, i32 value length, value)*."""
    fields: dict[str, str] = {}
    unpack_i16, unpack_i32 = I16.unpack_from, I32.unpack_from
    # Fast path: in an ASCII header byte offsets are character offsets, so one decode of the
    # whole header replaces one per string (UTF-8 and Latin-1 agree on ASCII).
    text = header.decode("latin-1") if header.isascii() else None
    while pos < end:
        if pos + 2 > end:
            raise RemoteProtocolError(f"binary header: extFields entry at {pos} runs past {end}")
        key_start = pos + 2
        key_end = key_start + unpack_i16(header, pos)[0]
        if key_end < key_start or key_end + 4 > end:
            raise RemoteProtocolError(
                f"binary header: extFields key length {key_end - key_start} at {pos} does not "
                f"fit before {end}"
            )
        value_start = key_end + 4
        pos = value_start + unpack_i32(header, key_end)[0]
        if pos < value_start or pos > end:
            raise RemoteProtocolError(
                f"binary header: extFields value length {pos - value_start} at {key_end} does "
                f"not fit before {end}"
            )
        if key_end == key_start or pos == value_start:
            continue  # a zero length is null: the entry is absent
        if text is not None:
            fields[text[key_start:key_end]] = text[value_start:pos]
        else:
            key = str(header[key_start:key_end], "utf-8", "replace")
            fields[key] = str(header[value_start:pos], "utf-8", "replace")
    return fields


def _read_str(
    header: bytes | bytearray, pos: int, length: struct.Struct, end: int, what: str
) -> tuple[str | None, int]:
    """Read a length-prefixed UTF-8 string at `pos` that must end by `end`; length 0 is null."""
    start = pos + length.size
    if start > end:
        raise RemoteProtocolError(f"binary header: {what} length at offset {pos} runs past {end}")
    (size,) = length.unpack_from(header, pos)
    if size < 0 or start + size > end:
        raise RemoteProtocolError(
            f"binary header: {what} length {size} at offset {pos} does not fit before {end}"
        )
    if size == 0:
        return None, start
    return str(header[start : start + size], "utf-8", "replace"), start + size


def encode_binary_header(command: RemotingCommand) -> bytes:
    """Encode the header of `command` in the binary layout (Java `rocketMQProtocolEncode`).

    Args:
        command: the command; its body is not part of the header.

    Returns:
        The header bytes (no length prefix).

    Raises:
        LocalProtocolError: code or version outside int16, opaque or flag outside int32,
            language not a LanguageCode, an empty or over-long key, a non-str key or value, or
            text that is not encodable as UTF-8. Nothing was encoded.
    """
    code, version = command.code, command.version
    _check_range("code", code, INT16_MIN, INT16_MAX)
    _check_range("version", version, INT16_MIN, INT16_MAX)
    _check_range("opaque", command.opaque, INT32_MIN, INT32_MAX)
    _check_range("flag", command.flag, INT32_MIN, INT32_MAX)
    if not isinstance(command.language, LanguageCode):
        raise LocalProtocolError(f"language {command.language!r} is not a LanguageCode")
    fixed = BINARY_FIXED.pack(code, command.language, version, command.opaque, command.flag)
    try:
        remark = command.remark.encode("utf-8") if command.remark else b""
        entries = _encode_entries(command.ext_fields)
    except UnicodeEncodeError as err:
        raise LocalProtocolError(f"header text is not encodable as UTF-8: {err}") from err
    return b"".join((fixed, I32.pack(len(remark)), remark, I32.pack(len(entries)), entries))


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        kind = "int16" if high == INT16_MAX else "int32"
        hint = "; use the JSON header" if kind == "int16" else ""
        raise LocalProtocolError(
            f"{name} {value!r} is not an {kind} ({low}..{high}), so a binary header cannot "
            f"carry it{hint}"
        )


def _encode_entries(ext_fields: dict[str, str]) -> bytes:
    parts: list[bytes] = []
    for key, value in ext_fields.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise LocalProtocolError(f"extFields entry {key!r}: {value!r} is not str -> str")
        key_bytes = key.encode("utf-8")
        if not 0 < len(key_bytes) <= INT16_MAX:
            raise LocalProtocolError(
                f"extFields key {key[:40]!r} is {len(key_bytes)} bytes; binary keys hold 1..{INT16_MAX}"
            )
        value_bytes = value.encode("utf-8")
        parts += (I16.pack(len(key_bytes)), key_bytes, I32.pack(len(value_bytes)), value_bytes)
    return b"".join(parts)
