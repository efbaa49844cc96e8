"""The checkpoint: what is known durable (layout in store/layout.py).

Written only after the data it describes was msync'ed, then msync'ed itself. A checkpoint whose
CRC does not match (torn write) reads as "nothing known": recovery then scans from the first
segment, which is slow but never wrong.
"""

from __future__ import annotations

import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from shmq.store import layout

__all__ = ["Checkpoint", "CheckpointFile"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Durable positions. Offsets are commit-log offsets of record boundaries."""

    flushed_offset: int = 0
    indexed_offset: int = 0
    physic_timestamp_ms: int = 0
    index_timestamp_ms: int = 0


class CheckpointFile:
    """The memory-mapped checkpoint page of one store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size < layout.CHECKPOINT_BYTES:
            os.ftruncate(self._fd, layout.CHECKPOINT_BYTES)
        self._mm = mmap.mmap(self._fd, layout.CHECKPOINT_BYTES)

    def read(self) -> Checkpoint:
        """The stored checkpoint, or the zero checkpoint when it is missing or torn."""
        fields = layout.CHECKPOINT_STRUCT.unpack_from(self._mm, 0)
        (crc,) = layout.CKPT_CRC_STRUCT.unpack_from(self._mm, layout.CKPT_CRC_OFFSET)
        body = self._mm[: layout.CKPT_CRC_OFFSET]
        if fields[5] != layout.CHECKPOINT_MAGIC or zlib.crc32(body) != crc:
            return Checkpoint()
        physic_ts, _logics_ts, index_ts, _mf, _conf, _magic, flushed, indexed = fields
        return Checkpoint(flushed, indexed, physic_ts, index_ts)

    def write(self, cp: Checkpoint) -> None:
        """Store `cp` and make it durable (the data it covers must already be durable)."""
        layout.CHECKPOINT_STRUCT.pack_into(
            self._mm, 0, cp.physic_timestamp_ms, cp.physic_timestamp_ms, cp.index_timestamp_ms,
            0, 0, layout.CHECKPOINT_MAGIC, cp.flushed_offset, cp.indexed_offset,
        )
        crc = zlib.crc32(self._mm[: layout.CKPT_CRC_OFFSET])
        layout.CKPT_CRC_STRUCT.pack_into(self._mm, layout.CKPT_CRC_OFFSET, crc)
        self._mm.flush()

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)
