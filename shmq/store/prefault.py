"""Keep the commit log ahead of its writers: segment files created and their pages populated.

A first write into a page of a fresh file costs ~30x a warm copy (page-cache allocation and
zeroing). Writers must not pay that on the append path, so a helper (the runtime's housekeeper,
or the store benchmark's helper process) calls `Prefaulter.step` every few milliseconds. It
creates the next segment files and populates, through its own mapping, the page cache from the
claimed position to `ahead_bytes` past it. A writer's own mapping then costs only a cheap bulk
page-table fill (segments.Segment.prefault).
"""

from __future__ import annotations

from pathlib import Path

from shmq.store.claims import ClaimTable
from shmq.store.config import StoreConfig
from shmq.store.segments import SegmentSet

__all__ = ["Prefaulter"]


class Prefaulter:
    """Populates segments ahead of the claimed position of one store."""

    def __init__(self, root: Path, config: StoreConfig, *, ahead_bytes: int | None = None) -> None:
        self.config = config
        # Default: up to one segment (at most 256 MiB) ahead of the claimed position.
        self.ahead_bytes = ahead_bytes if ahead_bytes is not None else max(
            min(256 << 20, config.segment_bytes), config.prefault_ahead_bytes
        )
        self.segments = SegmentSet(root / "commitlog", config.segment_bytes, writable=True)
        self.claims = ClaimTable(root / "claims", slot=config.writer_slots - 1,
                                 slot_count=config.writer_slots)
        self._done = 0  # commit-log offset populated so far

    def step(self, chunk_bytes: int = 8 << 20) -> bool:
        """Populate one chunk if the claimed position has come close; True if work was done."""
        claimed = self.claims.load_claimed()
        target = claimed + self.ahead_bytes
        pos = max(self._done, claimed)
        if pos >= target:
            return False
        seg_bytes = self.config.segment_bytes
        seg = self.segments.get(pos - pos % seg_bytes, create=True)
        upto = min(seg.end, pos + chunk_bytes)
        seg.prefault(upto - seg.start)
        self._done = upto
        if upto == seg.end:  # done with this segment: drop our mapping of it
            self.segments.forget(seg.start)
        return True

    def close(self) -> None:
        self.segments.close()
        self.claims.close()
