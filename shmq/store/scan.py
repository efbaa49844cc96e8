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

__all__ = ["IndexScan", "RecordMeta", "RecordProblem", "check_record", "scan_for_index"]

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


@dataclass(slots=True)
class IndexScan:
    """What `scan_for_index` found in one segment: index entries and how far it got."""

    keys: list[str]  #: "topic#key" per entry
    offsets: list[int]  #: commit-log offset of each entry's record
    stamps: list[int]  #: store timestamp of each entry's record
    records: int = 0  #: message records examined
    end: int = 0  #: commit-log offset where the scan stopped
    last_store_timestamp_ms: int | None = None
    stopped: bool = False  #: stopped at bytes that are no record (zeros, garbage)


_KEYS_ITEM: Final = b"KEYS\x01"
_UNIQ_ITEM: Final = b"UNIQ_KEY\x01"
_SIZE_MAGIC: Final = struct.Struct(">ii")
_SPAN_MAGICS: Final = (rec.BLANK_MAGIC, rec.PENDING_MAGIC)


def scan_for_index(mm: mmap.mmap, base: int, seg_size: int, start: int, end: int,
                   max_records: int, found: IndexScan) -> None:
    """Walk the committed records of one segment (mapped at commit-log offset `base`) from
    commit-log offset `start` up to `end`, adding the index keys of each to `found`.

    The housekeeper's hot loop: for every record it unpacks only the fields that locate the
    properties, and a record whose properties hold neither a KEYS nor a UNIQ_KEY item is not
    decoded at all (`mmap.find` within its bounds, no copy). Records were validated when they
    were published (and by recovery); here only their sizes are trusted, and bytes that are
    no record end the walk (`found.stopped`). Blank and pending spans are stepped over.
    """
    unpack_sm, unpack_i32, unpack_i64 = _SIZE_MAGIC.unpack_from, _I32.unpack_from, _I64.unpack_from
    born_flag, store_flag = rec.BORNHOST_V6_FLAG, rec.STOREHOSTADDRESS_V6_FLAG
    v4, v6 = rec.IPV4_HOST_BYTES, rec.IPV6_HOST_BYTES
    rel, stop = start - base, min(end, base + seg_size) - base
    keys, offsets, stamps = found.keys, found.offsets, found.stamps
    records = found.records
    while rel < stop and records < max_records:
        size, magic = unpack_sm(mm, rel)
        if size < rec.BLANK_MIN_BYTES or rel + size > seg_size:
            found.stopped = True
            break
        if magic == rec.MESSAGE_MAGIC:
            (sysflag,) = unpack_i32(mm, rel + 36)
            p = rel + rec.BORN_HOST_OFFSET + (v6 if sysflag & born_flag else v4)
            (store_ts,) = unpack_i64(mm, p)
            p += 8 + (v6 if sysflag & store_flag else v4) + 12
            (body_len,) = unpack_i32(mm, p)
            p += 4 + body_len
            topic_len = mm[p]
            props, props_end = p + 3 + topic_len, rel + size
            if mm.find(_UNIQ_ITEM, props, props_end) >= 0 or \
                    mm.find(_KEYS_ITEM, props, props_end) >= 0:
                topic = mm[p + 1 : p + 1 + topic_len].decode("utf-8", "replace")
                for key in index_keys_of(mm[props:props_end]):
                    keys.append(f"{topic}#{key}")
                    offsets.append(base + rel)
                    stamps.append(store_ts)
            found.last_store_timestamp_ms = store_ts
            records += 1
        elif magic not in _SPAN_MAGICS:
            found.stopped = True
            break
        rel += size
    found.records = records
    found.end = base + rel


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
