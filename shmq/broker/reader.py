"""The acceptor's read side: pulls, offsets and lookups straight from the store's mappings.

Theory of operation
-------------------
Pulls never touch a writer (architecture.md §1): `StoreReader` opens the store read-only
(`MessageStore` without a writer slot: consume queues as numpy views over read-only mmaps, the
commit log's segments mapped ACCESS_READ) and answers from there.

* A consume queue's view is refreshed (`ConsumeQueue.refresh`, ~20 us: a directory listing
  and a binary search) only when a request needs more than it knows: a pull at or past the
  known end, a max-offset query, a long-poll check.
* `pull` follows Java's `DefaultMessageStore.getMessage` (spec/behaviours.md §4.1): the status
  table for offsets outside [min, max), then one vectorised tag-code selection over at most
  800 entries, at most `max_messages` messages and `max_bytes` bytes (the first message always
  goes). `next_begin_offset` skips the entries scanned, matched or not, so a filtered-out entry
  is never scanned twice.
* The body is the selected records verbatim. Contiguous records (the usual case: one writer
  appends a queue's messages back to back) are one `memoryview` of the commit-log mapping, sent
  without a copy; records in several runs are joined into one `bytes` (one copy) because a
  `RemotingCommand` body is a single buffer. Records are whole by construction: consume-queue
  entries are written after their records are published.
* Records below the commit log's first segment (deleted by retention) are skipped.

Lookups by commit-log offset (VIEW_MESSAGE_BY_ID, CONSUMER_SEND_MSG_BACK) validate the record
(`store.scan.check_record`) before trusting it; key lookups open the index files read-only for
the duration of one query (the housekeeper writes them; nothing here writes anything).

Everything runs on the event loop's thread and is fast (tens of microseconds) except
`search_offset` (a binary search reading one record per step) and `query_index`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from shmq.errors import StoreError
from shmq.protocol import ResponseCode
from shmq.store.config import StoreConfig
from shmq.store.consumequeue import ConsumeQueue
from shmq.store.cqlayout import is_index_file_name
from shmq.store.index import IndexFile, index_key_hash
from shmq.store.scan import RecordMeta, check_record
from shmq.store.store import MessageStore

__all__ = ["MAX_PULL_BYTES", "MAX_PULL_MESSAGES", "PullResult", "StoreReader"]

#: maxTransferCountOnMessageInMemory
MAX_PULL_MESSAGES: Final = 32
#: maxTransferBytesOnMessageInMemory
MAX_PULL_BYTES: Final = 256 * 1024
#: how often the oldest commit-log segment is looked up (retention deletes from the front)
_SEGMENT_CHECK_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class PullResult:
    """The outcome of one pull, as the response carries it."""

    code: int  #: SUCCESS, PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY or PULL_OFFSET_MOVED
    next_begin_offset: int
    min_offset: int
    max_offset: int
    body: bytes | memoryview | None = None
    count: int = 0  #: messages in the body


class StoreReader:
    """Read-only access to the store for the acceptor; see the module docstring.

    Args:
        root: the store directory (``data_dir/store``).
        config: the store settings (segment size, consume-queue geometry, index sizes).
    """

    def __init__(self, root: Path, config: StoreConfig, *,
                 max_messages: int = MAX_PULL_MESSAGES, max_bytes: int = MAX_PULL_BYTES) -> None:
        self.root = root
        self.config = config
        self.store = MessageStore(root, config)
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._segment_bytes = config.segment_bytes
        self._first_segment = 0
        self._first_segment_checked = -1.0

    def close(self) -> None:
        self.store.close()

    # -- queues ----------------------------------------------------------------------------------

    def queue(self, topic: str, queue_id: int) -> ConsumeQueue:
        """The read-only consume queue (opened on first use; may not exist on disk yet)."""
        return self.store.queue(topic, queue_id)

    def bounds(self, topic: str, queue_id: int) -> tuple[int, int]:
        """(min offset, max offset) of the queue, refreshed; (0, 0) for a queue never written."""
        cq = self.queue(topic, queue_id)
        cq.refresh()
        return cq.min_offset, cq.max_offset

    def topic_on_disk(self, topic: str) -> int:
        """Number of queue directories `topic` has in the store (0: none)."""
        try:
            names = os.listdir(self.store.paths.consumequeue / topic)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        ids = [int(n) for n in names if n.isdigit()]
        return max(ids) + 1 if ids else 0

    # -- pulling ---------------------------------------------------------------------------------

    def pull(self, topic: str, queue_id: int, offset: int, max_messages: int,
             tag_codes: npt.NDArray[np.int64] | None) -> PullResult:
        """Read up to `max_messages` messages from `offset` whose tag code is in `tag_codes`
        (None: every message). See the module docstring for the rules."""
        cq = self.queue(topic, queue_id)
        if not cq.min_offset <= offset < cq.max_offset:
            cq.refresh()
        low, high = cq.min_offset, cq.max_offset
        if high == 0:  # NO_MESSAGE_IN_QUEUE
            code = ResponseCode.PULL_NOT_FOUND if offset == 0 else ResponseCode.PULL_OFFSET_MOVED
            return PullResult(code, 0, low, high)
        if offset < low:  # OFFSET_TOO_SMALL
            return PullResult(ResponseCode.PULL_OFFSET_MOVED, low, low, high)
        if offset == high:  # OFFSET_OVERFLOW_ONE: the long-polling case
            return PullResult(ResponseCode.PULL_NOT_FOUND, offset, low, high)
        if offset > high:  # OFFSET_OVERFLOW_BADLY: Java 4.9 restarts at 0 while nothing aged out
            return PullResult(ResponseCode.PULL_OFFSET_MOVED, 0 if low == 0 else high, low, high)
        limit = max(1, min(max_messages, self.max_messages))
        selection = cq.select(offset, limit, tag_codes, max_bytes=self.max_bytes)
        offsets, sizes = selection.offsets, selection.sizes
        if len(offsets) and int(offsets[0]) < self._first_segment_start():
            keep = offsets >= self._first_segment_start()
            offsets, sizes = offsets[keep], sizes[keep]
        if not len(offsets):  # NO_MATCHED_MESSAGE (or only removed records)
            return PullResult(ResponseCode.PULL_RETRY_IMMEDIATELY, selection.next_offset, low, high)
        try:
            body = self.body(offsets, sizes)
        except StoreError:  # MESSAGE_WAS_REMOVING: retention won a race with us
            return PullResult(ResponseCode.PULL_RETRY_IMMEDIATELY, selection.next_offset, low, high)
        return PullResult(ResponseCode.SUCCESS, selection.next_offset, low, high, body,
                          len(offsets))

    def body(self, offsets: npt.NDArray[np.int64], sizes: npt.NDArray[np.int32]
             ) -> bytes | memoryview:
        """The records at `offsets` (ascending) back to back: a view of the mapping when they
        are contiguous in one segment, else one joined copy."""
        log = self.store.commitlog
        starts = offsets.tolist()
        lengths = sizes.tolist()
        runs: list[memoryview] = []
        run_start, run_end = starts[0], starts[0] + lengths[0]
        for start, length in zip(starts[1:], lengths[1:]):
            if start == run_end and start % self._segment_bytes:
                run_end += length
                continue
            runs.append(log.view(run_start, run_end - run_start))
            run_start, run_end = start, start + length
        runs.append(log.view(run_start, run_end - run_start))
        return runs[0] if len(runs) == 1 else b"".join(runs)

    def _first_segment_start(self) -> int:
        """Start of the oldest commit-log segment on disk (listed at most once a second)."""
        now = time.monotonic()
        if now - self._first_segment_checked >= _SEGMENT_CHECK_S:
            self._first_segment_checked = now
            starts = self.store.commitlog.segments.starts()
            self._first_segment = starts[0] if starts else 0
        return self._first_segment

    # -- records by offset -----------------------------------------------------------------------

    def record(self, offset: int) -> tuple[memoryview, RecordMeta] | None:
        """The valid record at commit-log `offset` (a view) and its fields; None if there is
        no valid record there."""
        if offset < 0:
            return None
        try:
            segment = self.store.commitlog.segments.for_offset(offset)
        except (StoreError, OSError):
            return None
        rel = offset - segment.start
        meta = check_record(segment.mm, rel, offset, segment.size, check_crc=False)
        if not isinstance(meta, RecordMeta):
            return None
        return segment.view[rel : rel + meta.size], meta

    def store_timestamp(self, offset: int) -> int | None:
        """STORETIMESTAMP of the record at `offset`, or None if none is there."""
        found = self.record(offset)
        return None if found is None else found[1].store_timestamp_ms

    def earliest_store_time(self, topic: str, queue_id: int) -> int:
        """Store time of the queue's first message, -1 when it has none (Java's answer)."""
        low, high = self.bounds(topic, queue_id)
        if low >= high:
            return -1
        entry = self.queue(topic, queue_id).read(low, 1)
        stamp = self.store_timestamp(int(entry["offset"][0])) if len(entry) else None
        return -1 if stamp is None else stamp

    def search_offset(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        """The queue offset of the message stored at `timestamp_ms`, else of the nearer of its
        two neighbours (ties: the earlier); 0 for an empty queue (spec request-codes §4, 29)."""
        low, high = self.bounds(topic, queue_id)
        if low >= high:
            return 0
        cq = self.queue(topic, queue_id)
        lo, hi = low, high  # first entry stored at or after timestamp_ms
        while lo < hi:
            mid = (lo + hi) // 2
            if self._entry_time(cq, mid) < timestamp_ms:
                lo = mid + 1
            else:
                hi = mid
        if lo < high and self._entry_time(cq, lo) == timestamp_ms:
            return lo
        if lo == low:
            return lo
        if lo == high:
            return high - 1
        before, after = self._entry_time(cq, lo - 1), self._entry_time(cq, lo)
        return lo - 1 if timestamp_ms - before <= after - timestamp_ms else lo

    def _entry_time(self, cq: ConsumeQueue, queue_offset: int) -> int:
        entry = cq.read(queue_offset, 1)
        stamp = self.store_timestamp(int(entry["offset"][0])) if len(entry) else None
        return -1 if stamp is None else stamp

    # -- the key index ---------------------------------------------------------------------------

    def query_index(self, key: str, begin_ms: int, end_ms: int, max_num: int) -> list[int]:
        """Commit-log offsets indexed under `key` ("topic#key"), newest first."""
        directory = self.store.paths.index
        try:
            names = sorted((n for n in os.listdir(directory) if is_index_file_name(n)),
                           reverse=True)
        except FileNotFoundError:
            return []
        found: list[int] = []
        key_hash = index_key_hash(key)
        for name in names:
            if len(found) >= max_num:
                break
            with contextlib.suppress(StoreError, OSError):
                index_file = IndexFile.open(directory / name, slots=self.config.index_slots,
                                            max_entries=self.config.index_max_entries)
                try:
                    if index_file.is_time_matched(begin_ms, end_ms):
                        index_file.select(key_hash, begin_ms, end_ms, max_num, found)
                    if index_file.begin_timestamp_ms < begin_ms:
                        break
                finally:
                    index_file.close()
        return found

    def index_status(self) -> tuple[int, int]:
        """(last update timestamp, last indexed commit-log offset) of the newest index file."""
        directory = self.store.paths.index
        try:
            names = sorted(n for n in os.listdir(directory) if is_index_file_name(n))
        except FileNotFoundError:
            return 0, 0
        for name in reversed(names):
            with contextlib.suppress(StoreError, OSError):
                index_file = IndexFile.open(directory / name, slots=self.config.index_slots,
                                            max_entries=self.config.index_max_entries)
                try:
                    return index_file.end_timestamp_ms, index_file.end_phys_offset
                finally:
                    index_file.close()
        return 0, 0

