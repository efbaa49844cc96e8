"""Byte layouts owned by the store besides the record itself (that one is message/layout.py).

File names (spec/message-format.md §1): commit-log segments are named by the 20-digit,
zero-padded decimal commit-log offset of their first byte.

Checkpoint file ``store/checkpoint`` (one 4 KiB page; the first 40 bytes as RocketMQ's)::

    +0   physicMsgTimestamp   i64  store time of the last record covered by FLUSHED_OFFSET
    +8   logicsMsgTimestamp   i64  same, for consume-queue entries
    +16  indexMsgTimestamp    i64  store time of the last record covered by INDEXED_OFFSET
    +24  masterFlushedOffset  i64  (5.x; unused, 0)
    +32  confirmPhyOffset     i64  (5.x; unused, 0)
    +40  shmq magic           u64  CHECKPOINT_MAGIC: the fields below are valid
    +48  flushed_offset       i64  every record below it is final, durable, and its
                                    consume-queue entry is durable: recovery starts here
    +56  indexed_offset       i64  every record below it is in the (durable) index
    +64  crc                  u32  zlib CRC-32 of bytes [0, 64): a torn checkpoint is ignored

Claim table ``store/claims`` (one 4 KiB page, mmap'd MAP_SHARED by every writer process; all
writes happen under an exclusive ``flock`` of that file, which the kernel releases when the
holder dies — a killed writer can never leave the lock held)::

    +0   magic                u64  CLAIMS_MAGIC
    +8   claimed              i64  next free commit-log offset (end of the last claim)
    +16  slot_count           i64  number of writer slots below
    +64  slot[i].start        i64  start of writer i's in-flight claim, or NO_CLAIM
    +72  slot[i].end          i64  its end (exclusive)
"""

from __future__ import annotations

import struct
from typing import Final

SEGMENT_NAME_DIGITS: Final = 20

# --- checkpoint -------------------------------------------------------------------------------
CHECKPOINT_BYTES: Final = 4096
CKPT_PHYSIC_TS_OFFSET: Final = 0
CKPT_LOGICS_TS_OFFSET: Final = CKPT_PHYSIC_TS_OFFSET + 8
CKPT_INDEX_TS_OFFSET: Final = CKPT_LOGICS_TS_OFFSET + 8
CKPT_MASTER_FLUSHED_OFFSET: Final = CKPT_INDEX_TS_OFFSET + 8
CKPT_CONFIRM_OFFSET: Final = CKPT_MASTER_FLUSHED_OFFSET + 8
CKPT_MAGIC_OFFSET: Final = CKPT_CONFIRM_OFFSET + 8
CKPT_FLUSHED_OFFSET: Final = CKPT_MAGIC_OFFSET + 8
CKPT_INDEXED_OFFSET: Final = CKPT_FLUSHED_OFFSET + 8
CKPT_CRC_OFFSET: Final = CKPT_INDEXED_OFFSET + 8
CHECKPOINT_MAGIC: Final = 0x53484D51434B5031  #: "SHMQCKP1"
#: physic ts, logics ts, index ts, master flushed, confirm, magic, flushed, indexed
CHECKPOINT_STRUCT: Final = struct.Struct(">qqqqqQqq")
assert CHECKPOINT_STRUCT.size == CKPT_CRC_OFFSET
CKPT_CRC_STRUCT: Final = struct.Struct(">I")

# --- claim table ------------------------------------------------------------------------------
CLAIMS_BYTES: Final = 4096
CLAIMS_MAGIC_OFFSET: Final = 0
CLAIMS_CLAIMED_OFFSET: Final = CLAIMS_MAGIC_OFFSET + 8
CLAIMS_SLOT_COUNT_OFFSET: Final = CLAIMS_CLAIMED_OFFSET + 8
CLAIMS_SLOTS_OFFSET: Final = 64
CLAIM_SLOT_BYTES: Final = 16
MAX_WRITER_SLOTS: Final = (CLAIMS_BYTES - CLAIMS_SLOTS_OFFSET) // CLAIM_SLOT_BYTES
CLAIMS_MAGIC: Final = 0x53484D51434C4D31  #: "SHMQCLM1"
NO_CLAIM: Final = -1


def segment_name(start_offset: int) -> str:
    """File name of the commit-log segment (or consume-queue file) starting at `start_offset`."""
    return f"{start_offset:0{SEGMENT_NAME_DIGITS}d}"


def parse_segment_name(name: str) -> int | None:
    """Start offset named by `name`, or None when `name` is not a segment file name."""
    if len(name) != SEGMENT_NAME_DIGITS or not name.isdigit():
        return None
    return int(name)
