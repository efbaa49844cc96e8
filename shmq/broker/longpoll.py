"""Long polling: pulls held until their queue grows (spec/behaviours.md §4.3).

Theory of operation
-------------------
A pull that finds nothing new (PULL_NOT_FOUND) and asked to be suspended is parked with
`PullHolds.wait(topic, queue_id, offset, deadline)`, an awaitable that returns when the queue's
max offset passes `offset`, when the deadline comes, or when the broker drains. The pull
handler then runs the pull again and answers. A parked pull is only a future: it holds no
thread and does not block the event loop.

One loop task (`run`) checks the parked pulls every `interval_s` (5 ms). Refreshing a
consume-queue view costs ~20 us, so a tick first asks a cheap *change gate* whether anything
was appended since the last look: `ClaimWatch` reads the commit log's claim table (one 8-byte
load of ``claimed`` plus the in-flight slots). When the gate says nothing moved, a tick only
checks deadlines; otherwise it refreshes the queues that have parked pulls and wakes those now
behind the queue's end. A queue that just got a parked pull is always refreshed on the next
tick (a message may have landed between the pull and the parking).

Latency from an append to the wake-up is at most one tick (~5 ms) plus the re-pull. A per-queue
max-offset table in shared memory, written by the writers, would make the gate exact per queue
and the wake-up immediate (proposed; it needs a change to writer.py).

Why the gate is correct: a writer claims space (``claimed`` moves), writes its records and
consume-queue entries, then clears its claim slot. A tick that sees ``claimed`` move, or that saw
a claim in flight on the previous tick, refreshes; so the tick after the last claim finished
always refreshes once more and sees its entries.
"""

from __future__ import annotations

import asyncio
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from shmq.store import layout as store_layout

from .reader import StoreReader

__all__ = ["DEFAULT_INTERVAL_S", "ClaimWatch", "PullHolds"]

#: how often parked pulls are checked
DEFAULT_INTERVAL_S: Final = 0.005
_NO_CLAIM: Final = store_layout.NO_CLAIM

_Key = tuple[str, int]


class ClaimWatch:
    """"Was anything appended since the last call?" from the claim table (read-only map).

    Answers True when it cannot tell (no claim table yet), so callers fall back to refreshing.
    """

    def __init__(self, claims_path: Path) -> None:
        self._path = claims_path
        self._mm: mmap.mmap | None = None
        self._slots: np.ndarray | None = None
        self._last_claimed = -1
        self._was_busy = True

    def _map(self) -> bool:
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            if os.fstat(fd).st_size < store_layout.CLAIMS_BYTES:
                return False
            self._mm = mmap.mmap(fd, store_layout.CLAIMS_BYTES, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        count = (store_layout.CLAIMS_BYTES - store_layout.CLAIMS_SLOTS_OFFSET) // 8
        words = np.frombuffer(self._mm, dtype=">i8", count=count,
                              offset=store_layout.CLAIMS_SLOTS_OFFSET)
        self._slots = words[0 :: store_layout.CLAIM_SLOT_BYTES // 8]  # each slot's start
        return True

    def changed(self) -> bool:
        if self._mm is None and not self._map():
            return True
        assert self._mm is not None and self._slots is not None
        claimed = int.from_bytes(
            self._mm[store_layout.CLAIMS_CLAIMED_OFFSET : store_layout.CLAIMS_CLAIMED_OFFSET + 8],
            "big", signed=True)
        busy = bool((self._slots != _NO_CLAIM).any())
        changed = claimed != self._last_claimed or self._was_busy
        self._last_claimed, self._was_busy = claimed, busy
        return changed

    def close(self) -> None:
        self._slots = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None


@dataclass(eq=False, slots=True)
class _Hold:
    offset: int
    deadline: float
    future: asyncio.Future[None] = field(repr=False)


class PullHolds:
    """Parked pulls and the task that wakes them; see the module docstring."""

    def __init__(self, reader: StoreReader, *, gate: Callable[[], bool] | None = None,
                 interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._reader = reader
        self._gate = gate
        self.interval_s = interval_s
        self._holds: dict[_Key, list[_Hold]] = {}
        self._fresh: set[_Key] = set()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._loop = asyncio.get_running_loop()

    @property
    def held(self) -> int:
        """Pulls parked now."""
        return sum(len(holds) for holds in self._holds.values())

    @property
    def is_closing(self) -> bool:
        return self._closing

    def time(self) -> float:
        """The clock deadlines are measured on (the event loop's)."""
        return self._loop.time()

    async def wait(self, topic: str, queue_id: int, offset: int, deadline: float) -> None:
        """Return once the queue's max offset is past `offset`, at `deadline`, or on drain."""
        if self._closing or deadline <= self._loop.time():
            return
        key = (topic, queue_id)
        hold = _Hold(offset, deadline, self._loop.create_future())
        self._holds.setdefault(key, []).append(hold)
        self._fresh.add(key)
        self._wakeup.set()
        try:
            await hold.future
        finally:
            holds = self._holds.get(key)
            if holds is not None:
                holds.remove(hold)
                if not holds:
                    del self._holds[key]

    def release_all(self) -> None:
        """Drain: wake every parked pull now and park no more."""
        self._closing = True
        for holds in self._holds.values():
            for hold in holds:
                if not hold.future.done():
                    hold.future.set_result(None)
        self._wakeup.set()

    async def run(self) -> None:
        """Check parked pulls until cancelled."""
        while not self._closing:
            if not self._holds:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await asyncio.sleep(self.interval_s)
            self.check()

    def check(self) -> None:
        """One tick: wake the parked pulls whose queue grew or whose deadline passed."""
        now = self._loop.time()
        moved = self._gate is None or self._gate()
        fresh, self._fresh = self._fresh, set()
        for key, holds in list(self._holds.items()):
            high = -1
            if moved or key in fresh:
                cq = self._reader.queue(*key)
                cq.refresh()
                high = cq.max_offset
            for hold in holds:
                if not hold.future.done() and (hold.offset < high or hold.deadline <= now):
                    hold.future.set_result(None)
