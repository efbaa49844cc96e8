"""SEND_BATCH_MESSAGE request bodies (spec/message-format.md §8).

A batch body is a concatenation of entries ``[TOTALSIZE][MAGIC 0][CRC 0][FLAG][BODYLEN][BODY]
[PROPLEN][PROPERTIES]`` (layout.BATCH_ENTRY_HEADER), written identically by the Java and C++
clients. The broker splits it here and turns each entry into a stored record (record.py),
appending the batch-level properties to the entry's own (properties.append_properties).

Decoding is strict about structure, lenient about content: every entry must satisfy
TOTALSIZE == 22 + BODYLEN + PROPLEN and the entries must exactly fill the body, but MAGICCODE and
BODYCRC are ignored as Java ignores them. Pure: no I/O; a compressed body is inflated by the
caller first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple, overload

from shmq.message.errors import BodyTooLarge, InvalidRecordField, MalformedBatch
from shmq.message.layout import BATCH_ENTRY_HEADER, BATCH_ENTRY_OVERHEAD, MAX_I32, PROPERTIES_LENGTH
from shmq.message.properties import decode_properties, properties_bytes
from shmq.message.record import Buffer

__all__ = ["BatchEntry", "RawBatchEntry", "decode_batch_body", "encode_batch_body"]


class BatchEntry(NamedTuple):
    """One message of a batch send body, properties parsed."""

    flag: int
    body: bytes
    properties: dict[str, str]


class RawBatchEntry(NamedTuple):
    """One message of a batch send body, properties as sent (to store them unchanged)."""

    flag: int
    body: bytes
    properties: bytes


@overload
def decode_batch_body(
    body: Buffer, *, raw_properties: Literal[False] = False
) -> list[BatchEntry]: ...
@overload
def decode_batch_body(body: Buffer, *, raw_properties: Literal[True]) -> list[RawBatchEntry]: ...
def decode_batch_body(
    body: Buffer, *, raw_properties: bool = False
) -> list[BatchEntry] | list[RawBatchEntry]:
    """Split a SEND_BATCH_MESSAGE body into its entries (spec §8).

    The body must already be inflated if the request had COMPRESSED_FLAG. MAGICCODE and BODYCRC
    of each entry are ignored, as Java does.

    Args:
        body: the request body.
        raw_properties: return each entry's properties string unparsed (`RawBatchEntry`).

    Returns:
        The entries in order; an empty body gives an empty list.

    Raises:
        MalformedBatch: the body does not split into whole, self-consistent entries
            (TOTALSIZE == 22 + BODYLEN + PROPLEN, no negative length, nothing left over).
    """
    raw = _decode_raw(body)
    if raw_properties:
        return raw
    return [BatchEntry(e.flag, e.body, decode_properties(e.properties)) for e in raw]


def _decode_raw(body: Buffer) -> list[RawBatchEntry]:
    """The entries with their properties as sent: one pass, the checks inline (this runs once
    per message of every batch send)."""
    unpack, unpack_len = BATCH_ENTRY_HEADER.unpack_from, PROPERTIES_LENGTH.unpack_from
    overhead, head = BATCH_ENTRY_OVERHEAD, BATCH_ENTRY_HEADER.size
    entries: list[RawBatchEntry] = []
    pos, size = 0, len(body)
    while pos < size:
        left = size - pos
        if left < overhead:
            raise MalformedBatch(pos, f"{left} bytes left, an entry needs {overhead}")
        total, _magic, _crc, flag, body_len = unpack(body, pos)
        if not overhead <= total <= left:
            raise MalformedBatch(pos, f"TOTALSIZE {total} outside {overhead}..{left} (bytes left)")
        if not 0 <= body_len <= total - overhead:
            raise MalformedBatch(pos, f"BODYLEN {body_len} does not fit in TOTALSIZE {total}")
        body_end = pos + head + body_len
        (props_len,) = unpack_len(body, body_end)
        if overhead + body_len + props_len != total or props_len < 0:
            raise MalformedBatch(
                pos, f"TOTALSIZE {total} != {overhead} + BODYLEN {body_len} + PROPLEN {props_len}")
        entries.append(RawBatchEntry(flag, bytes(body[pos + head : body_end]),
                                     bytes(body[body_end + 2 : pos + total])))
        pos += total
    return entries


def encode_batch_body(
    entries: Iterable[tuple[int, bytes | bytearray | memoryview, Mapping[str, str] | bytes]],
) -> bytes:
    """Build a SEND_BATCH_MESSAGE body as the Java and C++ clients do (MAGIC and CRC 0).

    Args:
        entries: (flag, body, properties) per message; properties as a mapping or as an encoded
            properties string. `BatchEntry` and `RawBatchEntry` fit.

    Raises:
        PropertiesTooLarge, InvalidProperty: an entry's properties cannot be encoded.
        BodyTooLarge: an entry does not fit an i32 TOTALSIZE.
        InvalidRecordField: a flag is not a signed 32-bit integer.
    """
    parts: list[bytes | bytearray | memoryview] = []
    for flag, entry_body, properties in entries:
        props = properties_bytes(properties)
        body_len = memoryview(entry_body).nbytes
        total = BATCH_ENTRY_OVERHEAD + body_len + len(props)
        if total > MAX_I32:
            raise BodyTooLarge(body_len, MAX_I32 - (total - body_len))
        try:
            header = BATCH_ENTRY_HEADER.pack(total, 0, 0, flag, body_len)
        except struct.error as err:
            raise InvalidRecordField("flag", flag, "not a signed 32-bit integer") from err
        parts += (header, entry_body, PROPERTIES_LENGTH.pack(len(props)), props)
    return b"".join(parts)
