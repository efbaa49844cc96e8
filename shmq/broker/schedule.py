"""Delayed messages: SCHEDULE_TOPIC_XXXX and the timer that releases them
(spec/behaviours.md §8, message-format.md §10).

Theory of operation
-------------------
A message sent with DELAY = L > 0 (and every message sent back for a retry, which gets DELAY =
3 + its reconsume count) is not stored in its topic. `park` rewrites it, as Java's
`CommitLog.putMessage` does: properties REAL_TOPIC and REAL_QID keep where it belongs, it goes
to ``SCHEDULE_TOPIC_XXXX`` queue L - 1 (one queue per level, so each queue is in delivery
order), and its consume-queue tag code is its delivery time in ms (now + the level's delay)
instead of a tag hash, so the timer needs only the consume queue to know what is due.

`DelayScheduler.run()` is that timer. Per level it keeps the queue offset of the next message to
release (``config/delayOffset.json``, Java's shape ``{"offsetTable":{"1":n,...}}``, saved every
`SAVE_INTERVAL_S` and at stop). Each round it reads every level's due entries, reads each
record back from the commit log and appends a copy to REAL_TOPIC / REAL_QID with DELAY removed
(REAL_* kept, as Java) and the tag code of its TAGS, one at a time and in order, then advances
the level's offset. It then sleeps until the earliest entry not yet due (at most
`MAX_SLEEP_S`, at least `MIN_SLEEP_S`). A failed append is retried next round: delivery is
at-least-once (a crash after an append and before the offset is saved delivers again).

Only one process may run the timer of a store: it holds an exclusive `flock` on
``delayOffset.json.lock`` for as long as it runs (`try_acquire`), so a second acceptor stays
idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from shmq.errors import ShmqError
from shmq.message import layout as rec
from shmq.message.errors import CorruptRecord
from shmq.message.properties import (
    PROPERTY_DELAY,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
)
from shmq.message.record import decode_record
from shmq.protocol.body_json import encode_json

from .appender import Appender, reencode
from .jsonfile import JsonFile, try_exclusive_lock
from .reader import StoreReader
from .topics import SCHEDULE_TOPIC

__all__ = ["DELAY_LEVELS_MS", "DelayScheduler", "delay_level", "park"]

log = logging.getLogger(__name__)

#: messageDelayLevel "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h", in ms
DELAY_LEVELS_MS: Final = tuple(1000 * s for s in (
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200))
MAX_LEVEL: Final = len(DELAY_LEVELS_MS)
SAVE_INTERVAL_S: Final = 5.0
MIN_SLEEP_S: Final = 0.05
MAX_SLEEP_S: Final = 1.0
_READ_BATCH: Final = 64
_HOST_FLAGS: Final = rec.BORNHOST_V6_FLAG | rec.STOREHOSTADDRESS_V6_FLAG


def delay_level(properties: dict[str, str]) -> int:
    """The message's delay level (DELAY), clamped to 1..18; 0 for none or garbage."""
    text = properties.get(PROPERTY_DELAY)
    if not text or not text.strip().isdigit():
        return 0
    return min(int(text), MAX_LEVEL)


def park(properties: dict[str, str], topic: str, queue_id: int, level: int,
         now_ms: int) -> tuple[str, int, int]:
    """Rewrite a delayed message's properties for SCHEDULE_TOPIC_XXXX; return its (topic,
    queue id, consume-queue tag code = delivery time in ms)."""
    properties[PROPERTY_REAL_TOPIC] = topic
    properties[PROPERTY_REAL_QID] = str(queue_id)
    properties[PROPERTY_DELAY] = str(level)
    return SCHEDULE_TOPIC, level - 1, now_ms + DELAY_LEVELS_MS[level - 1]


class DelayScheduler:
    """Releases due delayed messages; see the module docstring."""

    def __init__(self, reader: StoreReader, appender: Appender, config_dir: Path, *,
                 store_host: bytes, clock_ms: Callable[[], int] = lambda: int(
                     time.time() * 1000)) -> None:
        self._reader, self._appender = reader, appender
        self._store_host = store_host
        self._clock_ms = clock_ms
        self._file = JsonFile(config_dir / "delayOffset.json")
        self._lock_path = config_dir / "delayOffset.json.lock"
        self._lock_fd: int | None = None
        self._offsets = [0] * MAX_LEVEL
        self._dirty = False
        self.released = 0  #: messages released since start

    # -- ownership -------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Become the store's only timer if no other process is; True on success."""
        if self._lock_fd is not None:
            return True
        self._lock_fd = try_exclusive_lock(self._lock_path)
        if self._lock_fd is None:
            return False
        self._load()
        return True

    def close(self) -> None:
        """Save the offsets and give the timer up."""
        if self._lock_fd is None:
            return
        self.save()
        os.close(self._lock_fd)
        self._lock_fd = None

    # -- offsets ---------------------------------------------------------------------------------

    def _load(self) -> None:
        data, _signature = self._file.read()
        table = data.get("offsetTable") if isinstance(data, dict) else None
        if not isinstance(table, dict):
            return
        for level, offset in table.items():
            try:
                index = int(level) - 1
                if 0 <= index < MAX_LEVEL:
                    self._offsets[index] = max(0, int(offset))
            except (TypeError, ValueError):
                log.warning("delayOffset.json: ignoring level %r offset %r", level, offset)

    def save(self) -> None:
        """Persist the offsets if they changed (OSError: kept dirty for the next try)."""
        if not self._dirty:
            return
        table = {str(level + 1): offset for level, offset in enumerate(self._offsets)}
        self._file.write(encode_json({"offsetTable": table}))
        self._dirty = False

    # -- releasing -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Release due messages until cancelled (call `try_acquire` first)."""
        last_save = time.monotonic()
        while True:
            sleep_s = await self.release_due()
            if time.monotonic() - last_save >= SAVE_INTERVAL_S:
                try:
                    self.save()
                except OSError as err:
                    log.error("cannot save delayOffset.json (will retry): %s", err)
                last_save = time.monotonic()
            await asyncio.sleep(sleep_s)

    async def release_due(self) -> float:
        """One round over every level; return how long to sleep before the next."""
        now = self._clock_ms()
        next_due = now + int(MAX_SLEEP_S * 1000)
        for level in range(1, MAX_LEVEL + 1):
            due = await self._release_level(level, now)
            if due is not None:
                next_due = min(next_due, due)
        return min(MAX_SLEEP_S, max(MIN_SLEEP_S, (next_due - self._clock_ms()) / 1000))

    async def _release_level(self, level: int, now_ms: int) -> int | None:
        """Release level `level`'s due messages; return the next one's due time, if any."""
        cq = self._reader.queue(SCHEDULE_TOPIC, level - 1)
        offset = max(self._offsets[level - 1], cq.min_offset)
        if offset >= cq.max_offset:
            cq.refresh()
            offset = max(offset, cq.min_offset)
        while offset < cq.max_offset:
            entries = cq.read(offset, _READ_BATCH)
            for entry in entries:
                due = int(entry["tag_hash"])
                if due > now_ms:
                    return due
                if not await self._release(int(entry["offset"]), level):
                    return now_ms + int(MIN_SLEEP_S * 1000)  # retry this one next round
                offset += 1
                self._offsets[level - 1] = offset
                self._dirty = True
        return None

    async def _release(self, phys_offset: int, level: int) -> bool:
        """Store the real message of the parked record at `phys_offset`; False to retry."""
        found = self._reader.record(phys_offset)
        if found is None:
            log.warning("delay level %d: no record at %d (removed?); skipped", level,
                        phys_offset)
            return True
        try:
            parked = decode_record(found[0])
        except CorruptRecord as err:
            log.warning("delay level %d: record at %d unreadable (%s); skipped", level,
                        phys_offset, err)
            return True
        properties = dict(parked.properties)
        topic = properties.get(PROPERTY_REAL_TOPIC)
        queue_text = properties.get(PROPERTY_REAL_QID, "")
        if not topic or not queue_text.isdigit():
            log.warning("delay level %d: record at %d has no REAL_TOPIC/REAL_QID; skipped",
                        level, phys_offset)
            return True
        properties.pop(PROPERTY_DELAY, None)
        batch, tags = reencode(parked, topic, int(queue_text), properties, self._store_host,
                               prepared_tx_offset=0)
        try:
            await self._appender.append(topic, int(queue_text), batch, tags)
        except ShmqError as err:
            log.warning("delay level %d: releasing the message at %d to %s failed (%s); "
                        "retrying", level, phys_offset, topic, err)
            return False
        self.released += 1
        return True
