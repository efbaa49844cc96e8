"""Byte layouts of the consume queue (spec/message-format.md §9) and the index file (§11).

Consume-queue entry, 20 bytes, big-endian, packed; entry n of a queue sits at byte n × 20 of the
queue's logical file space::

    +0   offset     i64   commit-log offset of the record
    +8   size       i32   record size; 0 = not written yet, 0x7FFFFFFF = filler (fillPreBlank)
    +12  tag_hash   i64   Java String.hashCode of TAGS, sign-extended (schedule topic: due time, ms)

Publication: `size` is written last. An entry whose size is 0 is unwritten, so the written
entries of a queue are always a prefix of it. A file holds `entries_per_file` entries and is
named by the 20-digit byte offset of its first entry (first queue offset × 20).

Index file, named `<yyyyMMddHHmmssSSS>` (creation time)::

    +0                    header, 40 bytes
        +0   begin_timestamp    i64   store time (ms) of the first entry
        +8   end_timestamp      i64   store time (ms) of the last entry
        +16  begin_phys_offset  i64   commit-log offset of the first entry's record
        +24  end_phys_offset    i64   commit-log offset of the last entry's record
        +32  hash_slot_count    i32   slots in use
        +36  index_count        i32   next entry number; starts at 1 (entry 0 is never used)
    +40                   slot table: `slots` × i32, newest entry number of the bucket (0 = empty)
    +40 + slots × 4       entries: `max_entries` × 20 bytes
        +0   key_hash           i32   abs(String.hashCode(key)); 0 when that is Integer.MIN_VALUE
        +4   phys_offset        i64   commit-log offset of the record
        +12  time_diff          i32   (store time − begin_timestamp) / 1000, clamped to [0, 2^31−1]
        +16  prev_index         i32   previous entry of the same bucket (0 = end of chain)

Publication: new entries are written first, then the slots that point to them, then the header;
`index_count`, the header's last field, is what makes them part of the file.
"""

from __future__ import annotations

import re
import struct
from typing import Final

import numpy as np

__all__ = [
    "CQ_ENTRY",
    "CQ_ENTRY_BYTES",
    "CQ_FILLER_SIZE",
    "CQ_OFFSET_OFFSET",
    "CQ_SIZE_OFFSET",
    "CQ_TAG_HASH_OFFSET",
    "CQ_UNWRITTEN_SIZE",
    "DEFAULT_ENTRIES_PER_FILE",
    "INDEX_BEGIN_PHYS_OFFSET_OFFSET",
    "INDEX_BEGIN_TIMESTAMP_OFFSET",
    "INDEX_COUNT_OFFSET",
    "INDEX_END_PHYS_OFFSET_OFFSET",
    "INDEX_END_TIMESTAMP_OFFSET",
    "INDEX_ENTRY",
    "INDEX_ENTRY_BYTES",
    "INDEX_ENTRY_STRUCT",
    "INDEX_FILE_NAME_DIGITS",
    "INDEX_FIRST_ENTRY",
    "INDEX_HASH_SLOT_COUNT_OFFSET",
    "INDEX_HEADER",
    "INDEX_HEADER_BYTES",
    "INDEX_KEY_HASH_OFFSET",
    "INDEX_PHYS_OFFSET_OFFSET",
    "INDEX_PREV_INDEX_OFFSET",
    "INDEX_SLOT",
    "INDEX_SLOT_BYTES",
    "INDEX_SLOT_DTYPE",
    "INDEX_TIME_DIFF_OFFSET",
    "cq_file_first_entry",
    "cq_file_name",
    "index_entry_position",
    "index_file_bytes",
    "index_slot_position",
    "is_index_file_name",
]

# --- consume-queue entry (spec §9) -----------------------------------------------------------
CQ_OFFSET_OFFSET: Final = 0  #: i64 commit-log offset of the record
CQ_SIZE_OFFSET: Final = CQ_OFFSET_OFFSET + 8  #: i32 record size, written last (publishes)
CQ_TAG_HASH_OFFSET: Final = CQ_SIZE_OFFSET + 4  #: i64 sign-extended tag hash code
CQ_ENTRY_BYTES: Final = CQ_TAG_HASH_OFFSET + 8  #: 20, ConsumeQueue.CQ_STORE_UNIT_SIZE

#: One consume-queue entry as a packed big-endian numpy record.
CQ_ENTRY: Final = np.dtype(
    {
        "names": ["offset", "size", "tag_hash"],
        "formats": [">i8", ">i4", ">i8"],
        "offsets": [CQ_OFFSET_OFFSET, CQ_SIZE_OFFSET, CQ_TAG_HASH_OFFSET],
        "itemsize": CQ_ENTRY_BYTES,
    }
)
assert CQ_ENTRY == np.dtype([("offset", ">i8"), ("size", ">i4"), ("tag_hash", ">i8")])

CQ_UNWRITTEN_SIZE: Final = 0  #: size of an entry not written yet (files are zero-filled)
CQ_FILLER_SIZE: Final = 0x7FFFFFFF  #: size of a fillPreBlank entry (offset 0, tag 0), spec §9
DEFAULT_ENTRIES_PER_FILE: Final = 300_000  #: mappedFileSizeConsumeQueue / 20, spec §13

_FILE_NAME_DIGITS: Final = 20  #: UtilAll.offset2FileName
_CQ_FILE_NAME: Final = re.compile(r"[0-9]{20}")


def cq_file_name(first_entry: int) -> str:
    """Name of the consume-queue file whose first entry is queue offset `first_entry`."""
    return f"{first_entry * CQ_ENTRY_BYTES:0{_FILE_NAME_DIGITS}d}"


def cq_file_first_entry(name: str) -> int | None:
    """Queue offset of the first entry of the file called `name`; None if it is not one."""
    if _CQ_FILE_NAME.fullmatch(name) is None:
        return None
    first_byte = int(name)
    if first_byte % CQ_ENTRY_BYTES:
        return None
    return first_byte // CQ_ENTRY_BYTES


# --- index file header (spec §11) -------------------------------------------------------------
INDEX_BEGIN_TIMESTAMP_OFFSET: Final = 0  #: i64 store time (ms) of the first entry
INDEX_END_TIMESTAMP_OFFSET: Final = INDEX_BEGIN_TIMESTAMP_OFFSET + 8  #: i64
INDEX_BEGIN_PHYS_OFFSET_OFFSET: Final = INDEX_END_TIMESTAMP_OFFSET + 8  #: i64
INDEX_END_PHYS_OFFSET_OFFSET: Final = INDEX_BEGIN_PHYS_OFFSET_OFFSET + 8  #: i64
INDEX_HASH_SLOT_COUNT_OFFSET: Final = INDEX_END_PHYS_OFFSET_OFFSET + 8  #: i32 slots in use
INDEX_COUNT_OFFSET: Final = INDEX_HASH_SLOT_COUNT_OFFSET + 4  #: i32 next entry number
INDEX_HEADER_BYTES: Final = INDEX_COUNT_OFFSET + 4  #: 40, IndexHeader.INDEX_HEADER_SIZE
#: The whole header, fields in the order above; packed in one call, index_count last.
INDEX_HEADER: Final = struct.Struct(">qqqqii")
assert INDEX_HEADER.size == INDEX_HEADER_BYTES

# --- index slot table -------------------------------------------------------------------------
INDEX_SLOT_BYTES: Final = 4  #: i32 entry number of the bucket's newest entry, 0 = empty
INDEX_SLOT: Final = struct.Struct(">i")
INDEX_SLOT_DTYPE: Final = np.dtype(">i4")
assert INDEX_SLOT.size == INDEX_SLOT_DTYPE.itemsize == INDEX_SLOT_BYTES

# --- index entry ------------------------------------------------------------------------------
INDEX_KEY_HASH_OFFSET: Final = 0  #: i32 abs(String.hashCode(key)), 0 for Integer.MIN_VALUE
INDEX_PHYS_OFFSET_OFFSET: Final = INDEX_KEY_HASH_OFFSET + 4  #: i64 commit-log offset
INDEX_TIME_DIFF_OFFSET: Final = INDEX_PHYS_OFFSET_OFFSET + 8  #: i32 seconds since begin_timestamp
INDEX_PREV_INDEX_OFFSET: Final = INDEX_TIME_DIFF_OFFSET + 4  #: i32 previous entry in the bucket
INDEX_ENTRY_BYTES: Final = INDEX_PREV_INDEX_OFFSET + 4  #: 20
INDEX_ENTRY: Final = np.dtype(
    {
        "names": ["key_hash", "phys_offset", "time_diff", "prev_index"],
        "formats": [">i4", ">i8", ">i4", ">i4"],
        "offsets": [
            INDEX_KEY_HASH_OFFSET,
            INDEX_PHYS_OFFSET_OFFSET,
            INDEX_TIME_DIFF_OFFSET,
            INDEX_PREV_INDEX_OFFSET,
        ],
        "itemsize": INDEX_ENTRY_BYTES,
    }
)
#: One entry, fields in the order above (for scalar reads while walking a chain).
INDEX_ENTRY_STRUCT: Final = struct.Struct(">iqii")
assert INDEX_ENTRY_STRUCT.size == INDEX_ENTRY.itemsize == INDEX_ENTRY_BYTES
INDEX_FIRST_ENTRY: Final = 1  #: index_count of an empty file; entry 0 is never used

INDEX_FILE_NAME_DIGITS: Final = 17  #: yyyyMMddHHmmssSSS
_INDEX_FILE_NAME: Final = re.compile(r"[0-9]{17}")


def index_slot_position(slot: int) -> int:
    """Byte position of slot `slot` in an index file."""
    return INDEX_HEADER_BYTES + slot * INDEX_SLOT_BYTES


def index_entry_position(slots: int, entry: int) -> int:
    """Byte position of entry number `entry` in an index file with `slots` slots."""
    return INDEX_HEADER_BYTES + slots * INDEX_SLOT_BYTES + entry * INDEX_ENTRY_BYTES


def index_file_bytes(slots: int, max_entries: int) -> int:
    """Size of an index file: header, slot table and `max_entries` entries (entry 0 included)."""
    return index_entry_position(slots, max_entries)


def is_index_file_name(name: str) -> bool:
    """Whether `name` is an index file name (17 digits)."""
    return _INDEX_FILE_NAME.fullmatch(name) is not None
