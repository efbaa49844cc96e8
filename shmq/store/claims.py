"""The claim table: how several writer processes share one commit log.

Theory of operation. Space in the commit log is handed out in batch-sized claims. A writer
takes the table's exclusive lock (``flock`` on ``store/claims``; the kernel drops it if the
holder dies, so a kill -9 never wedges the others), reads ``claimed``, writes the claim's
PENDING header into the log, records the claim in its own slot and advances ``claimed``. It then
releases the lock and fills the claim without holding anything. When the batch is published
(and its consume-queue entries written) the writer clears its slot.

The *committed* position — below which every record is final — is the lowest start of an
in-flight claim, or ``claimed`` when there is none. Only the flusher and recovery need it.

This module knows nothing of records; commitlog.py writes the PENDING header under the lock
through the callback it passes to `claim`.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Final, Self

from shmq.store import layout
from shmq.store.errors import StoreClosed

__all__ = ["ClaimTable"]

_I64: Final = struct.Struct(">q")
_U64: Final = struct.Struct(">Q")


class ClaimTable:
    """A writer's handle on the shared claim table of one store directory."""

    def __init__(self, path: Path, *, slot: int, slot_count: int) -> None:
        if not 0 <= slot < slot_count <= layout.MAX_WRITER_SLOTS:
            raise ValueError(f"writer slot {slot} outside [0, {slot_count})")
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < layout.CLAIMS_BYTES:
            os.ftruncate(self._fd, layout.CLAIMS_BYTES)
        self._mm: mmap.mmap | None = mmap.mmap(self._fd, layout.CLAIMS_BYTES)
        self.slot = slot
        self._slot_offset = layout.CLAIMS_SLOTS_OFFSET + slot * layout.CLAIM_SLOT_BYTES
        self._slot_count = slot_count

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
            os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _map(self) -> mmap.mmap:
        if self._mm is None:
            raise StoreClosed("claim table is closed")
        return self._mm

    # --- lock ---------------------------------------------------------------------------------
    def lock(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    # --- fields (callers hold the lock for anything but load_*) -------------------------------
    def initialise(self, claimed: int) -> None:
        """Reset the table after recovery: no claim in flight, next append at `claimed`.

        Only the process that recovered the store calls this, before any writer starts.
        """
        mm = self._map()
        self.lock()
        try:
            mm[: layout.CLAIMS_BYTES] = bytes(layout.CLAIMS_BYTES)
            _I64.pack_into(mm, layout.CLAIMS_SLOT_COUNT_OFFSET, self._slot_count)
            for i in range(self._slot_count):
                off = layout.CLAIMS_SLOTS_OFFSET + i * layout.CLAIM_SLOT_BYTES
                _I64.pack_into(mm, off, layout.NO_CLAIM)
            _I64.pack_into(mm, layout.CLAIMS_CLAIMED_OFFSET, claimed)
            _U64.pack_into(mm, layout.CLAIMS_MAGIC_OFFSET, layout.CLAIMS_MAGIC)
        finally:
            self.unlock()

    def is_initialised(self) -> bool:
        return bool(_U64.unpack_from(self._map(), layout.CLAIMS_MAGIC_OFFSET)[0] == layout.CLAIMS_MAGIC)

    def load_claimed(self) -> int:
        return int(_I64.unpack_from(self._map(), layout.CLAIMS_CLAIMED_OFFSET)[0])

    def claim(self, size_of: Callable[[int], tuple[int, int]]) -> tuple[int, int]:
        """Claim space for one batch under the lock.

        `size_of(claimed)` runs under the lock; it may write into the log (the end-of-segment
        blank and the batch's PENDING header) and returns ``(start, end)`` of the claim, with
        ``start >= claimed``. The claim is recorded in this writer's slot before `claimed`
        moves, so the committed position never passes an unfinished batch.

        Raises:
            Whatever `size_of` raises; then nothing was claimed.
        """
        mm = self._map()
        self.lock()
        try:
            claimed = int(_I64.unpack_from(mm, layout.CLAIMS_CLAIMED_OFFSET)[0])
            start, end = size_of(claimed)
            _I64.pack_into(mm, self._slot_offset + 8, end)
            _I64.pack_into(mm, self._slot_offset, start)
            _I64.pack_into(mm, layout.CLAIMS_CLAIMED_OFFSET, end)
        finally:
            self.unlock()
        return start, end

    def release(self) -> None:
        """Clear this writer's slot: its claim is published (one aligned 8-byte store)."""
        _I64.pack_into(self._map(), self._slot_offset, layout.NO_CLAIM)

    def in_flight(self) -> list[tuple[int, int, int]]:
        """(slot, start, end) of every claim in flight. Take the lock for a consistent view."""
        mm = self._map()
        out = []
        for i in range(int(_I64.unpack_from(mm, layout.CLAIMS_SLOT_COUNT_OFFSET)[0])):
            off = layout.CLAIMS_SLOTS_OFFSET + i * layout.CLAIM_SLOT_BYTES
            start = int(_I64.unpack_from(mm, off)[0])
            if start != layout.NO_CLAIM:
                out.append((i, start, int(_I64.unpack_from(mm, off + 8)[0])))
        return out

    def committed(self) -> int:
        """Offset below which every record is final (published or blank)."""
        self.lock()
        try:
            claimed = self.load_claimed()
            starts = [start for _, start, _ in self.in_flight()]
        finally:
            self.unlock()
        return min(starts, default=claimed)

    def abandon(self, slot: int, blank: Callable[[int, int], None]) -> tuple[int, int] | None:
        """Turn a dead writer's in-flight claim into a blank, under the lock.

        `blank(start, end)` rewrites the claim's header; returns the claim or None.
        """
        mm = self._map()
        off = layout.CLAIMS_SLOTS_OFFSET + slot * layout.CLAIM_SLOT_BYTES
        self.lock()
        try:
            start = int(_I64.unpack_from(mm, off)[0])
            if start == layout.NO_CLAIM:
                return None
            end = int(_I64.unpack_from(mm, off + 8)[0])
            blank(start, end)
            _I64.pack_into(mm, off, layout.NO_CLAIM)
            return start, end
        finally:
            self.unlock()
