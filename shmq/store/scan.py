"""Reading and checking stored records in place (recovery, verify, dispatch, the indexer).

`check_record` is the one validity rule (spec/message-format.md §3, Java
`checkMessageAndReturnSize`): the magic is v1, TOTALSIZE equals the size recomputed from the
parsed lengths, and the body CRC matches when asked.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import Final

from shmq.message import layout as rec
from shmq.message.crc import body_crc

__all__ = ["RecordMeta", "RecordProblem", "check_record"]

_META: Final = struct.Struct(">iiiiiqqiq")  # size .. BORNTIMESTAMP (48 bytes)
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
_I16: Final = struct.Struct(">h")


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """What dispatch and verification need of one record, without copying its body."""

    offset: int
    size: int
    queue_id: int
    queue_offset: int
    sysflag: int
    store_timestamp_ms: int
    topic: str
    properties: bytes
    body_start: int  # relative to the buffer given to check_record
    body_len: int


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """Why the bytes at `offset` are not a valid record."""

    offset: int
    reason: str


Buffer = memoryview | bytes | bytearray | mmap.mmap


def check_record(
    buf: Buffer, rel: int, offset: int, limit: int, *, check_crc: bool
) -> RecordMeta | RecordProblem:
    """Validate the record starting at `buf[rel]` (commit-log `offset`), not reading past `limit`.

    Returns a RecordMeta, or a RecordProblem saying what is wrong; never raises on bad bytes.
    """
    if rel + _META.size > limit:
        return RecordProblem(offset, "record header runs past the end of the segment")
    size, magic, crc, queue_id, _flag, qoff, phys, sysflag, _born = _META.unpack_from(buf, rel)
    if magic != rec.MESSAGE_MAGIC:
        return RecordProblem(offset, f"bad magic 0x{magic & 0xFFFFFFFF:08X}")
    if size < rec.IPV4_OVERHEAD or rel + size > limit:
        return RecordProblem(offset, f"bad total size {size}")
    if phys != offset:
        return RecordProblem(offset, f"PHYSICALOFFSET {phys} does not match the position")
    born_len = rec.IPV6_HOST_BYTES if sysflag & rec.BORNHOST_V6_FLAG else rec.IPV4_HOST_BYTES
    store_len = rec.IPV6_HOST_BYTES if sysflag & rec.STOREHOSTADDRESS_V6_FLAG else rec.IPV4_HOST_BYTES
    p = rel + rec.BORN_HOST_OFFSET + born_len
    (store_ts,) = _I64.unpack_from(buf, p)
    p += 8 + store_len + 4 + 8
    (body_len,) = _I32.unpack_from(buf, p)
    p += 4
    body_start = p
    if body_len < 0 or p + body_len + 3 > rel + size:
        return RecordProblem(offset, f"bad body length {body_len}")
    p += body_len
    topic_len = struct.unpack_from(">b", buf, p)[0]
    p += 1
    if topic_len <= 0 or p + topic_len + 2 > rel + size:
        return RecordProblem(offset, f"bad topic length {topic_len}")
    topic_b = bytes(buf[p : p + topic_len])
    p += topic_len
    (props_len,) = _I16.unpack_from(buf, p)
    p += 2
    if props_len < 0 or p + props_len != rel + size:
        return RecordProblem(offset, f"total size {size} does not match the parsed lengths")
    props = bytes(buf[p : p + props_len])
    if check_crc and body_crc(buf[body_start : body_start + body_len]) != crc:
        return RecordProblem(offset, "body CRC mismatch")
    try:
        topic = topic_b.decode()
    except UnicodeDecodeError:
        return RecordProblem(offset, "topic is not UTF-8")
    return RecordMeta(offset, size, queue_id, qoff, sysflag, store_ts, topic, props, body_start, body_len)


def tags_of(properties: bytes) -> str | None:
    """TAGS value of an encoded properties string (last occurrence wins), or None."""
    value = None
    for item in properties.split(b"\x02"):
        name, sep, val = item.partition(b"\x01")
        if sep and name == b"TAGS":
            value = val
    return value.decode("utf-8", "replace") if value is not None else None


def index_keys_of(properties: bytes) -> list[str]:
    """The index keys of a record: each space-separated KEYS value and the UNIQ_KEY."""
    keys: list[str] = []
    uniq = None
    for item in properties.split(b"\x02"):
        name, sep, val = item.partition(b"\x01")
        if not sep:
            continue
        if name == b"KEYS":
            keys.extend(k for k in val.decode("utf-8", "replace").split(" ") if k)
        elif name == b"UNIQ_KEY":
            uniq = val.decode("utf-8", "replace")
    if uniq:
        keys.append(uniq)
    return keys
