"""Byte layouts of shmq's shared-memory segments: the SPSC ring and the shared table.

This module is the one place that knows an offset. Everything else imports the names below.

Ring segment
============

A ring segment is a header of five 64-byte cache lines followed by the byte area. Each line has
one writer, so the producer and the consumer never write the same line (no false sharing)::

    line  offset  field             type  written by
    ----  ------  ----------------  ----  -----------------------------------------------
      0   +0      MAGIC             u64   creator, once, last (publishes the header)
          +8      VERSION           i64   creator, once
          +16     CAPACITY          i64   creator, once: byte-area size, a power of two
      1   +64     HEAD              i64   producer: position after the last published record
      2   +128    TAIL              i64   consumer: position after the last released record
      3   +192    CONSUMER_STATE    i64   consumer: RUNNING, CLOSED or a park number (> 0)
          +200    CONSUMER_PID      i64   consumer, when it takes the role
      4   +256    PRODUCER_STATE    i64   producer: RUNNING, CLOSED or a park number (> 0)
          +264    PRODUCER_PID      i64   producer, when it takes the role
      5   +320    DATA              capacity bytes of records

Positions (`head`, `tail`) increase forever; a position's place in the byte area is
`position & (capacity - 1)`. `head - tail` is the number of bytes in use, never more than
`capacity`. All header fields are aligned int64s, so each is read and written by one 8-byte
access (see `ring.py` for the memory-ordering argument).

A *state* word tells the other side whether its owner sleeps and must be woken (a park number,
which changes at every park so that a waker posts at most once per park), runs (RUNNING), or has
closed the ring for good (CLOSED). Folding "closed" into the word that the producer reads after
every publish anyway costs the fast path nothing.

Records in the byte area, each starting on an 8-byte boundary::

    +0  LEN    u32  payload bytes
    +4  KIND   u16  caller's record kind (0..65535)
    +6  FLAGS  u16  FLAG_PAD: padding to the end of the area, skip it
    +8  PAYLOAD     LEN bytes, then zero to seven bytes of padding to the next 8-byte boundary

A record never wraps. When one does not fit before the end of the area, the producer writes a
padding record over the rest (at least 8 bytes are always left, since every record is a
multiple of 8) and the record at the start of the area, and publishes both with one store of
`head`. Because a record plus the padding in front of it must fit in `capacity`, a record's
payload may use at most `capacity / 2 - 8` bytes.

Publication: the producer writes records first and `head` last; the consumer reads records
first and writes `tail` last.

Table segment
=============

A table segment holds one numpy array and the metadata to attach to it by name::

    +0   MAGIC       u64  creator, once, last
    +8   VERSION     i64
    +16  META_BYTES  i64  length of META
    +24  DATA_OFFSET i64  where the array starts (a multiple of 64)
    +32  DATA_BYTES  i64  array bytes
    +40  META        UTF-8 repr of {"descr": numpy dtype descr, "shape": tuple}
         DATA        the array, C order
"""

from __future__ import annotations

import struct
from typing import Final

from shmq.ipc.errors import InvalidLayout

__all__ = [
    "CACHE_LINE",
    "CAPACITY_OFFSET",
    "CONSUMER_PID_OFFSET",
    "CONSUMER_STATE_OFFSET",
    "DATA_OFFSET",
    "FLAG_PAD",
    "HEAD_OFFSET",
    "MAGIC_OFFSET",
    "MAX_CAPACITY",
    "MAX_KIND",
    "MAX_TABLE_META_BYTES",
    "MIN_CAPACITY",
    "PRODUCER_PID_OFFSET",
    "PRODUCER_STATE_OFFSET",
    "RECORD_ALIGN",
    "RECORD_FLAGS_OFFSET",
    "RECORD_FLAGS_SHIFT",
    "RECORD_HEADER",
    "RECORD_HEADER_BYTES",
    "RECORD_KIND_OFFSET",
    "RECORD_KIND_SHIFT",
    "RECORD_LEN_OFFSET",
    "RING_MAGIC",
    "RING_VERSION",
    "STATE_CLOSED",
    "STATE_RUNNING",
    "TABLE_DATA_ALIGN",
    "TABLE_DATA_BYTES_OFFSET",
    "TABLE_DATA_OFFSET_OFFSET",
    "TABLE_MAGIC",
    "TABLE_MAGIC_OFFSET",
    "TABLE_META_BYTES_OFFSET",
    "TABLE_META_OFFSET",
    "TABLE_VERSION",
    "TABLE_VERSION_OFFSET",
    "TAIL_OFFSET",
    "VERSION_OFFSET",
    "max_payload_bytes",
    "record_bytes",
    "ring_segment_bytes",
    "slot",
    "table_data_offset",
    "validate_capacity",
]

CACHE_LINE: Final = 64  #: x86-64 cache line; fields of different writers live on different lines
_I64: Final = 8

# --- ring header ---------------------------------------------------------------------------------
RING_MAGIC: Final = int.from_bytes(b"SHMQRING", "little")  #: identifies a ring segment
RING_VERSION: Final = 1  #: bump when this layout changes

# line 0: identity, written once by the creator
MAGIC_OFFSET: Final = 0  #: u64 RING_MAGIC, stored last by the creator
VERSION_OFFSET: Final = MAGIC_OFFSET + _I64  #: i64 RING_VERSION
CAPACITY_OFFSET: Final = VERSION_OFFSET + _I64  #: i64 byte-area size, a power of two
# line 1: producer's publication counter
HEAD_OFFSET: Final = MAGIC_OFFSET + CACHE_LINE  #: i64 position after the last published record
# line 2: consumer's release counter
TAIL_OFFSET: Final = HEAD_OFFSET + CACHE_LINE  #: i64 position after the last released record
# line 3: consumer's state, read by the producer after every publish
CONSUMER_STATE_OFFSET: Final = TAIL_OFFSET + CACHE_LINE  #: i64 RUNNING, CLOSED or park number
CONSUMER_PID_OFFSET: Final = CONSUMER_STATE_OFFSET + _I64  #: i64 pid holding the role, 0: none
# line 4: producer's state, read by the consumer after every release
PRODUCER_STATE_OFFSET: Final = CONSUMER_STATE_OFFSET + CACHE_LINE  #: i64 like CONSUMER_STATE
PRODUCER_PID_OFFSET: Final = PRODUCER_STATE_OFFSET + _I64  #: i64 pid holding the role, 0: none
# line 5 on: the byte area
DATA_OFFSET: Final = PRODUCER_STATE_OFFSET + CACHE_LINE  #: first byte of the byte area

STATE_RUNNING: Final = 0  #: the side is awake (or has not started); no wake-up needed
STATE_CLOSED: Final = -1  #: the side closed the ring; it stays closed
# Any value > 0 is a park number: the side sleeps on its semaphore and wants one post.

# --- records ------------------------------------------------------------------------------
RECORD_LEN_OFFSET: Final = 0  #: u32 payload bytes
RECORD_KIND_OFFSET: Final = RECORD_LEN_OFFSET + 4  #: u16 caller's record kind
RECORD_FLAGS_OFFSET: Final = RECORD_KIND_OFFSET + 2  #: u16 FLAG_PAD or 0
RECORD_HEADER_BYTES: Final = RECORD_FLAGS_OFFSET + 2  #: 8
RECORD_HEADER: Final = struct.Struct("<IHH")  #: LEN, KIND, FLAGS (little-endian)
#: The header read as one little-endian u64 is LEN | KIND << KIND_SHIFT | FLAGS << FLAGS_SHIFT
#: (a hot loop may store it with one int64 store on a little-endian host).
RECORD_KIND_SHIFT: Final = 8 * RECORD_KIND_OFFSET
RECORD_FLAGS_SHIFT: Final = 8 * RECORD_FLAGS_OFFSET
RECORD_ALIGN: Final = 8  #: every record starts on an 8-byte boundary
FLAG_PAD: Final = 0x0001  #: padding record: skip to the start of the byte area
MAX_KIND: Final = 0xFFFF  #: KIND is a u16
MIN_CAPACITY: Final = 64  #: smallest byte area (tests); real rings use MiBs
MAX_CAPACITY: Final = 1 << 32  #: keeps the largest payload (capacity / 2 - 8) inside LEN's u32

# --- table header -------------------------------------------------------------------------
TABLE_MAGIC: Final = int.from_bytes(b"SHMQTABL", "little")  #: identifies a table segment
TABLE_VERSION: Final = 1  #: bump when this layout changes
TABLE_MAGIC_OFFSET: Final = 0  #: u64 TABLE_MAGIC, stored last by the creator
TABLE_VERSION_OFFSET: Final = TABLE_MAGIC_OFFSET + _I64  #: i64 TABLE_VERSION
TABLE_META_BYTES_OFFSET: Final = TABLE_VERSION_OFFSET + _I64  #: i64 length of META
TABLE_DATA_OFFSET_OFFSET: Final = TABLE_META_BYTES_OFFSET + _I64  #: i64 where the array starts
TABLE_DATA_BYTES_OFFSET: Final = TABLE_DATA_OFFSET_OFFSET + _I64  #: i64 bytes of the array
TABLE_META_OFFSET: Final = TABLE_DATA_BYTES_OFFSET + _I64  #: UTF-8 metadata text
TABLE_DATA_ALIGN: Final = CACHE_LINE  #: the array starts on a cache line
MAX_TABLE_META_BYTES: Final = 1 << 16  #: a dtype description longer than this is a mistake


def record_bytes(payload_bytes: int) -> int:
    """Bytes a record with `payload_bytes` of payload occupies in the byte area, header and
    padding to 8 bytes included."""
    return (RECORD_HEADER_BYTES + payload_bytes + RECORD_ALIGN - 1) & -RECORD_ALIGN


def max_payload_bytes(capacity: int) -> int:
    """Largest payload a ring with a `capacity`-byte area accepts: a record and the padding
    record in front of it must fit into the area together."""
    return capacity // 2 - RECORD_HEADER_BYTES


def validate_capacity(capacity: int) -> int:
    """Return `capacity` if it is a valid byte-area size.

    Raises:
        InvalidLayout: `capacity` is not a power of two in [MIN_CAPACITY, MAX_CAPACITY].
    """
    if not MIN_CAPACITY <= capacity <= MAX_CAPACITY:
        raise InvalidLayout(
            "capacity_bytes", capacity, f"must be in [{MIN_CAPACITY}, {MAX_CAPACITY}]"
        )
    if capacity & (capacity - 1):
        raise InvalidLayout("capacity_bytes", capacity, "must be a power of two")
    return capacity


def ring_segment_bytes(capacity: int) -> int:
    """Size of the shared-memory segment of a ring with a `capacity`-byte area."""
    return DATA_OFFSET + capacity


def slot(offset: int) -> int:
    """Index of the int64 at byte `offset` in an int64 view of a header.

    Raises:
        InvalidLayout: `offset` is not 8-byte aligned (an unaligned int64 could tear).
    """
    if offset % _I64:
        raise InvalidLayout("offset", offset, "int64 header fields must be 8-byte aligned")
    return offset // _I64


def table_data_offset(meta_bytes: int) -> int:
    """Where a table's array starts, given the length of its metadata text."""
    end = TABLE_META_OFFSET + meta_bytes
    return (end + TABLE_DATA_ALIGN - 1) // TABLE_DATA_ALIGN * TABLE_DATA_ALIGN


def _check_layout() -> None:
    """Import-time checks of the rules the diagram promises (a wrong edit fails loudly)."""
    lines = [
        MAGIC_OFFSET,
        HEAD_OFFSET,
        TAIL_OFFSET,
        CONSUMER_STATE_OFFSET,
        PRODUCER_STATE_OFFSET,
        DATA_OFFSET,
    ]
    assert all(offset % CACHE_LINE == 0 for offset in lines), lines
    assert CAPACITY_OFFSET + _I64 <= HEAD_OFFSET
    assert PRODUCER_PID_OFFSET + _I64 <= DATA_OFFSET
    assert RECORD_HEADER_BYTES == RECORD_ALIGN == RECORD_HEADER.size
    assert RECORD_HEADER.pack(1, 2, 3) == (
        1 | 2 << RECORD_KIND_SHIFT | 3 << RECORD_FLAGS_SHIFT
    ).to_bytes(8, "little")
    assert DATA_OFFSET % RECORD_ALIGN == 0
    assert max_payload_bytes(MAX_CAPACITY) <= 0xFFFFFFFF


_check_layout()
