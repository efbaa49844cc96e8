"""Consume queue: the entries of one (topic, queue_id), spec/message-format.md §9.

Theory of operation
-------------------
A consume queue is a numbered sequence of 20-byte entries (`cqlayout.CQ_ENTRY`: commit-log
offset, size, tag hash). Entry n is the record with queue offset n. Entries live in files of
`entries_per_file` entries under `<root>/<topic>/<queue_id>/`, each named by the byte offset of
its first entry; every file is mapped with mmap and viewed as one numpy structured array.

Invariants:

* A named file always has its full size: it is preallocated under a temporary name and renamed.
* Files are contiguous. Retention deletes from the front and truncation from the back, so a
  reader listing the directory never sees a gap.
* Written entries form a prefix of the queue. The writer stores `offset` and `tag_hash` before
  `size`, and an entry of size 0 is unwritten, so `max_offset` (the next entry to write) is found
  by binary search. A first file that starts mid-file begins with filler entries (size
  0x7FFFFFFF, RocketMQ's fillPreBlank); `min_offset` is the first entry after them.
* Commit-log offsets increase with the queue offset (the writer appends in commit-log order),
  so cutting the queue at a commit-log position is a binary search too.

Who calls it: one writer per queue (the process that owns the topic's appends, or recovery
before it) holds a writable instance and keeps `max_offset` in memory. Any number of processes
hold read-only instances (mmap ACCESS_READ) and call `refresh()` to see new entries and files.
An instance is not thread-safe.

It never reads the commit log, and the append path neither logs nor loops per entry.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import numpy as np
import numpy.typing as npt

from shmq.errors import StoreError
from shmq.store.cqlayout import (
    CQ_ENTRY,
    CQ_ENTRY_BYTES,
    CQ_FILLER_SIZE,
    CQ_UNWRITTEN_SIZE,
    DEFAULT_ENTRIES_PER_FILE,
    cq_file_first_entry,
    cq_file_name,
)

__all__ = [
    "DEFAULT_SCAN_ENTRIES",
    "TMP_SUFFIX",
    "ConsumeQueue",
    "ConsumeQueueError",
    "CorruptConsumeQueue",
    "NonSequentialAppend",
    "OffsetOutOfRange",
    "Selection",
    "fsync_directory",
    "list_queues",
    "preallocate_file",
    "remove_stale_temporaries",
]

#: Entries a filtered `select` examines by default: Java's maxFilterMessageCount, 16 000 bytes
#: of consume queue = 800 entries (DefaultMessageStore.getMessage).
DEFAULT_SCAN_ENTRIES: Final = 800

_MAX_TAGS_COMPARED: Final = 16  # more tags than this: np.isin (sorts) beats one pass per tag
_QUEUE_ID_DIR: Final = re.compile(r"[0-9]+")
TMP_SUFFIX: Final = ".tmp"  #: suffix of files being preallocated
_NO_SPACE_ERRNOS: Final = (errno.ENOSPC, errno.EDQUOT)
_NO_FALLOCATE_ERRNOS: Final = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)

Int64Array = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]


class ConsumeQueueError(StoreError):
    """A consume-queue operation was refused or failed; the raiser says what state is left."""


class NonSequentialAppend(ConsumeQueueError):
    """`append` was given a queue offset other than the queue's `max_offset`."""

    def __init__(self, topic: str, queue_id: int, queue_offset: int, max_offset: int) -> None:
        super().__init__(
            f"consume queue {topic}/{queue_id}: append at queue offset {queue_offset}, but the "
            f"next entry is {max_offset}; nothing was written"
        )
        self.topic, self.queue_id = topic, queue_id
        self.queue_offset, self.max_offset = queue_offset, max_offset


class OffsetOutOfRange(ConsumeQueueError):
    """A read started before the queue's `min_offset`."""

    def __init__(self, topic: str, queue_id: int, queue_offset: int, min_offset: int) -> None:
        super().__init__(
            f"consume queue {topic}/{queue_id}: queue offset {queue_offset} is below the minimum "
            f"{min_offset} (deleted by retention or never written)"
        )
        self.topic, self.queue_id = topic, queue_id
        self.queue_offset, self.min_offset = queue_offset, min_offset


class CorruptConsumeQueue(ConsumeQueueError):
    """The files on disk do not form a consume queue with this instance's geometry."""


@dataclass(frozen=True, slots=True, eq=False)
class Selection:
    """Entries chosen by `ConsumeQueue.select`, in queue order."""

    queue_offsets: Int64Array  #: queue offset of each chosen entry
    offsets: Int64Array  #: commit-log offset of each chosen record
    sizes: Int32Array  #: size of each chosen record
    next_offset: int  #: queue offset the next select should start from

    def __len__(self) -> int:
        return len(self.queue_offsets)


class _Segment:
    """One mapped consume-queue file and numpy views of its columns."""

    __slots__ = ("entries", "inode", "mm", "offsets", "path", "sizes", "start", "tags")

    def __init__(self, path: str, start: int, entries_per_file: int, *, writable: bool) -> None:
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            stat = os.fstat(fd)
            nbytes = entries_per_file * CQ_ENTRY_BYTES
            if stat.st_size != nbytes:
                raise CorruptConsumeQueue(
                    f"{path}: {stat.st_size} bytes, expected {nbytes} "
                    f"({entries_per_file} entries per file); check entries_per_file"
                )
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self.mm = mmap.mmap(fd, nbytes, access=access)
        finally:
            os.close(fd)
        self.path, self.start, self.inode = path, start, stat.st_ino
        self.entries: npt.NDArray[np.void] = np.frombuffer(self.mm, dtype=CQ_ENTRY)
        self.offsets: npt.NDArray[np.int64] = self.entries["offset"]
        self.sizes: npt.NDArray[np.int32] = self.entries["size"]
        self.tags: npt.NDArray[np.int64] = self.entries["tag_hash"]

    def close(self) -> None:
        empty = np.empty(0, dtype=CQ_ENTRY)
        self.entries, self.offsets, self.sizes, self.tags = (
            empty,
            empty["offset"],
            empty["size"],
            empty["tag_hash"],
        )
        # A caller may still hold a view made from a private array; the mapping then goes away
        # with that view instead of now.
        with contextlib.suppress(BufferError):
            self.mm.close()


def _first_where_size(sizes: npt.NDArray[np.int32], lo: int, hi: int, *, equal_to: int) -> int:
    """First index in [lo, hi) whose size == `equal_to`, given that those form a suffix."""
    while lo < hi:
        mid = (lo + hi) // 2
        if sizes[mid] == equal_to:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _first_not_filler(sizes: npt.NDArray[np.int32], lo: int, hi: int) -> int:
    """First index in [lo, hi) that is not a filler entry (fillers form a prefix)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if sizes[mid] == CQ_FILLER_SIZE:
            lo = mid + 1
        else:
            hi = mid
    return lo


def preallocate_file(path: Path, nbytes: int) -> None:
    """Create `path` zero-filled with `nbytes` bytes; it appears under its name only when whole.

    The file is allocated (posix_fallocate) so that writes through a mapping cannot hit a full
    disk later; on file systems without fallocate it is sparse.

    Raises:
        OSError: no space, or another OS error; no file named `path` was created.
    """
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                os.posix_fallocate(fd, 0, nbytes)
            except OSError as err:
                if err.errno not in _NO_FALLOCATE_ERRNOS:
                    raise
                os.ftruncate(fd, nbytes)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(directory: Path) -> None:
    """Delete files `preallocate_file` left half-made in `directory` when a process died."""
    for stale in directory.glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def fsync_directory(directory: Path) -> None:
    """Make file creations and deletions in `directory` durable.

    Raises:
        OSError: the OS refused.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_file(path: Path, nbytes: int) -> None:
    try:
        preallocate_file(path, nbytes)
    except OSError as err:
        hint = "; free disk space" if err.errno in _NO_SPACE_ERRNOS else ""
        raise ConsumeQueueError(f"cannot create consume-queue file {path}: {err}{hint}") from err


def _check_name(topic: str, queue_id: int) -> None:
    if not topic or topic in (".", "..") or "/" in topic or "\0" in topic:
        raise ConsumeQueueError(f"topic {topic!r} cannot name a consume-queue directory")
    if queue_id < 0:
        raise ConsumeQueueError(f"queue id {queue_id} is negative")


def list_queues(root: Path) -> list[tuple[str, int]]:
    """Every (topic, queue_id) that has a consume-queue directory under `root`, sorted."""
    found: list[tuple[str, int]] = []
    if not root.is_dir():
        return found
    for topic_dir in root.iterdir():
        if not topic_dir.is_dir():
            continue
        for queue_dir in topic_dir.iterdir():
            if queue_dir.is_dir() and _QUEUE_ID_DIR.fullmatch(queue_dir.name):
                found.append((topic_dir.name, int(queue_dir.name)))
    return sorted(found)


class ConsumeQueue:
    """The consume queue of one (topic, queue_id); see the module docstring.

    Use `ConsumeQueue.open`; close it (or use it as a context manager) when done.
    """

    def __init__(
        self, directory: Path, topic: str, queue_id: int, entries_per_file: int, writable: bool
    ) -> None:
        self._dir, self._topic, self._queue_id = directory, topic, queue_id
        self._epf, self._writable = entries_per_file, writable
        self._segments: list[_Segment] = []
        self._max_offset = 0
        self._min_offset = 0
        self._unflushed_from = 0  # lowest queue offset modified since the last flush
        self._dir_changed = False  # files created or deleted since the last flush
        self._closed = False

    @classmethod
    def open(
        cls,
        root: Path,
        topic: str,
        queue_id: int,
        *,
        entries_per_file: int = DEFAULT_ENTRIES_PER_FILE,
        writable: bool = True,
    ) -> ConsumeQueue:
        """Open the queue at `<root>/<topic>/<queue_id>/`, creating the directory if writable.

        A read-only instance of a queue that does not exist yet is empty until `refresh()` finds
        its files.

        Raises:
            ConsumeQueueError: bad topic or queue id, or entries_per_file < 1.
            CorruptConsumeQueue: a file has the wrong size or name, or the files have a gap.
        """
        _check_name(topic, queue_id)
        if entries_per_file < 1:
            raise ConsumeQueueError(f"entries_per_file must be >= 1, got {entries_per_file}")
        directory = Path(root) / topic / str(queue_id)
        if writable:
            directory.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(directory)
        queue = cls(directory, topic, queue_id, entries_per_file, writable)
        try:
            queue._rescan()
        except BaseException:
            queue.close()
            raise
        queue._unflushed_from = queue._max_offset
        return queue

    # --- state ----------------------------------------------------------------------------

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def queue_id(self) -> int:
        return self._queue_id

    @property
    def entries_per_file(self) -> int:
        return self._epf

    @property
    def max_offset(self) -> int:
        """Queue offset of the next entry to write (entries written so far, fillers included)."""
        return self._max_offset

    @property
    def min_offset(self) -> int:
        """First entry of the first existing file that is not a filler (== max_offset if none).

        Entries from here on may still point into commit-log segments that retention has deleted
        (RocketMQ's correctMinOffset is not applied): a reader skips records below the commit
        log's minimum offset.
        """
        return self._min_offset

    def file_paths(self) -> list[Path]:
        """Paths of the mapped files, oldest first."""
        return [Path(seg.path) for seg in self._segments]

    def refresh(self) -> None:
        """Read-only instances: pick up files and entries the writer added or removed since.

        A writer's view is always current, so this does nothing there.

        Raises:
            CorruptConsumeQueue: the files on disk have a gap or a bad size.
        """
        self._check_open()
        if not self._writable:
            self._rescan()

    # --- writing --------------------------------------------------------------------------

    def append(
        self,
        queue_offset: int,
        offsets: npt.NDArray[np.integer],
        sizes: npt.NDArray[np.integer],
        tag_hashes: npt.NDArray[np.integer],
    ) -> None:
        """Write entries `queue_offset`, `queue_offset + 1`, ... from the three columns.

        `queue_offset` must equal `max_offset`, except in an empty queue (no files), which may
        start anywhere: its first file is then padded with filler entries up to `queue_offset`.
        Sizes must be in [1, 0x7FFFFFFE]. Commit-log offsets must not decrease; that is not
        checked (the writer produces them in commit-log order).

        Raises:
            NonSequentialAppend: wrong `queue_offset`; nothing was written.
            ConsumeQueueError: read-only or closed instance, columns of different lengths or
                bad sizes, or no space for a new file; no entry was written (an empty queue
                may have got its first file, with max_offset == queue_offset).
        """
        self._check_writable()
        n = len(offsets)
        if len(sizes) != n or len(tag_hashes) != n:
            raise ConsumeQueueError(
                f"columns differ in length: {n} offsets, {len(sizes)} sizes, "
                f"{len(tag_hashes)} tag hashes; nothing was written"
            )
        if queue_offset != self._max_offset and (self._segments or queue_offset < 0):
            raise NonSequentialAppend(self._topic, self._queue_id, queue_offset, self._max_offset)
        if n == 0:
            return
        if n == 1 and self._segments and self._append_single(queue_offset, offsets, sizes,
                                                                 tag_hashes):
            return
        smallest, largest = int(np.minimum.reduce(sizes)), int(np.maximum.reduce(sizes))
        if smallest <= CQ_UNWRITTEN_SIZE or largest >= CQ_FILLER_SIZE:
            raise ConsumeQueueError(
                f"record sizes must be in [1, {CQ_FILLER_SIZE - 1}], got [{smallest}, "
                f"{largest}]; nothing was written"
            )
        if not self._segments:
            self._start_at(queue_offset)
        self._ensure_segments_through(queue_offset + n - 1)  # may raise: then nothing written
        self._write(queue_offset, offsets, sizes, tag_hashes)

    def _append_single(
        self,
        queue_offset: int,
        offsets: npt.NDArray[np.integer],
        sizes: npt.NDArray[np.integer],
        tag_hashes: npt.NDArray[np.integer],
    ) -> bool:
        """One entry into the last file without numpy's per-call costs (a single send is the
        common case). False when the entry needs a new file: the general path handles it."""
        seg = self._segments[-1]
        lo = queue_offset - seg.start
        if not 0 <= lo < self._epf:
            return False
        size = int(sizes[0])
        if size <= CQ_UNWRITTEN_SIZE or size >= CQ_FILLER_SIZE:
            raise ConsumeQueueError(
                f"record sizes must be in [1, {CQ_FILLER_SIZE - 1}], got [{size}, {size}]; "
                "nothing was written"
            )
        seg.offsets[lo] = offsets[0]
        seg.tags[lo] = tag_hashes[0]
        seg.sizes[lo] = size  # last: publishes the entry
        self._max_offset = queue_offset + 1
        return True

    def append_one(self, queue_offset: int, offset: int, size: int, tag_hash: int) -> None:
        """Write one entry; see `append` (same rules, same errors)."""
        self.append(
            queue_offset,
            np.array([offset], dtype=np.int64),
            np.array([size], dtype=np.int32),
            np.array([tag_hash], dtype=np.int64),
        )

    def _write(
        self,
        queue_offset: int,
        offsets: npt.NDArray[np.integer],
        sizes: npt.NDArray[np.integer],
        tag_hashes: npt.NDArray[np.integer],
    ) -> None:
        epf, segments = self._epf, self._segments
        n, pos, q = len(offsets), 0, queue_offset
        index = (q - segments[0].start) // epf
        while pos < n:
            seg = segments[index]
            lo = q - seg.start
            k = min(n - pos, epf - lo)
            # Three column writes instead of one record copy: `size` must land last, because a
            # reader takes size != 0 to mean the entry is complete.
            seg.offsets[lo : lo + k] = offsets[pos : pos + k]
            seg.tags[lo : lo + k] = tag_hashes[pos : pos + k]
            seg.sizes[lo : lo + k] = sizes[pos : pos + k]
            pos, q, index = pos + k, q + k, index + 1
        self._max_offset = q  # _unflushed_from <= the old max_offset == queue_offset already

    def _start_at(self, queue_offset: int) -> None:
        """Create the first file of an empty queue, fillers up to `queue_offset` (fillPreBlank)."""
        start = queue_offset - queue_offset % self._epf
        seg = self._add_segment(start)
        lo = queue_offset - start
        seg.offsets[:lo] = 0
        seg.tags[:lo] = 0
        seg.sizes[:lo] = CQ_FILLER_SIZE
        self._max_offset = self._min_offset = queue_offset
        self._unflushed_from = start

    def _ensure_segments_through(self, queue_offset: int) -> None:
        while self._segments[-1].start + self._epf <= queue_offset:
            self._add_segment(self._segments[-1].start + self._epf)

    def _add_segment(self, start: int) -> _Segment:
        path = self._dir / cq_file_name(start)
        _create_file(path, self._epf * CQ_ENTRY_BYTES)
        self._dir_changed = True
        seg = _Segment(str(path), start, self._epf, writable=True)
        self._segments.append(seg)
        return seg

    def truncate(self, queue_offset: int) -> None:
        """Drop entries >= `queue_offset`: delete the files after it, then zero the entries.

        A `queue_offset` before the first file empties the queue (all files deleted, max_offset
        0; the next append may start anywhere). Nothing happens if it is >= max_offset. Later
        files go first, newest first, so neither a crash nor a reader ever sees a gap.

        Raises:
            ConsumeQueueError: read-only or closed instance (nothing changed), or a file could
                not be deleted (the files after it are gone, max_offset says what is left;
                call again).
        """
        self._check_writable()
        segments = self._segments
        if queue_offset >= self._max_offset or not segments:
            return
        keep = 0 if queue_offset < segments[0].start else self._index_of(queue_offset) + 1
        try:
            while len(segments) > keep:
                self._delete_segment(segments[-1])
                segments.pop()
        except ConsumeQueueError:
            self._max_offset = self._compute_max_offset()
            self._min_offset = self._compute_min_offset()
            raise
        if keep:
            seg = segments[-1]
            lo = queue_offset - seg.start
            hi = min(self._max_offset - seg.start, self._epf)
            seg.sizes[lo:hi] = CQ_UNWRITTEN_SIZE  # unpublish first
            seg.offsets[lo:hi] = 0
            seg.tags[lo:hi] = 0
        self._max_offset = queue_offset if keep else 0
        self._min_offset = min(self._min_offset, self._max_offset)
        self._unflushed_from = min(self._unflushed_from, self._max_offset)

    def truncate_to_phys(self, phys_end: int) -> None:
        """Drop the entries whose record ends past commit-log offset `phys_end`.

        Used by recovery after the commit log was cut at `phys_end`.

        Raises:
            ConsumeQueueError: as `truncate`.
        """
        self._check_writable()
        lo, hi = self._min_offset, self._max_offset
        while lo < hi:
            mid = (lo + hi) // 2
            seg = self._segments[self._index_of(mid)]
            i = mid - seg.start
            if int(seg.offsets[i]) + int(seg.sizes[i]) > phys_end:
                hi = mid
            else:
                lo = mid + 1
        self.truncate(lo)

    def delete_files_before_phys(self, min_phys_offset: int) -> int:
        """Retention: delete the oldest files whose entries all point below `min_phys_offset`.

        The file holding entry max_offset − 1 and the files after it are always kept.
        `min_offset` moves to the first entry of the new first file.

        Returns:
            The number of files deleted.

        Raises:
            ConsumeQueueError: read-only or closed instance, or a file could not be deleted
                (the files before it are gone and min_offset is up to date).
        """
        self._check_writable()
        segments, epf = self._segments, self._epf
        deleted = 0
        try:
            while len(segments) > 1 and segments[0].start + epf < self._max_offset:
                seg = segments[0]
                if int(seg.offsets[epf - 1]) >= min_phys_offset:
                    break
                self._delete_segment(seg)
                segments.pop(0)
                deleted += 1
        finally:
            self._min_offset = self._compute_min_offset()
        return deleted

    def _delete_segment(self, seg: _Segment) -> None:
        """Unlink `seg`'s file, then unmap it; the caller drops it from `_segments`.

        Raises:
            ConsumeQueueError: the file could not be deleted; it is still mapped.
        """
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise ConsumeQueueError(f"cannot delete consume-queue file {seg.path}: {err}") from err
        seg.close()
        self._dir_changed = True

    def flush(self) -> None:
        """Write modified entries (msync) and created or deleted file names (fsync) to disk.

        Raises:
            ConsumeQueueError: the OS refused; what was flushed before the error is durable.
        """
        self._check_open()
        if not self._writable:
            return
        try:
            for seg in self._segments:
                if seg.start + self._epf > self._unflushed_from:
                    seg.mm.flush()
            if self._dir_changed:
                fsync_directory(self._dir)
        except OSError as err:
            raise ConsumeQueueError(f"cannot flush consume queue {self._dir}: {err}") from err
        self._unflushed_from = self._max_offset
        self._dir_changed = False

    # --- reading --------------------------------------------------------------------------

    def read(self, start: int, max_count: int) -> npt.NDArray[np.void]:
        """Entries [start, min(start + max_count, max_offset)) as a new CQ_ENTRY array.

        Raises:
            OffsetOutOfRange: `start` < min_offset.
            ConsumeQueueError: closed instance.
        """
        self._check_open()
        if start < self._min_offset:
            raise OffsetOutOfRange(self._topic, self._queue_id, start, self._min_offset)
        end = min(start + max(max_count, 0), self._max_offset)
        if end <= start:
            return np.empty(0, dtype=CQ_ENTRY)
        return np.array(self._window(start, end), copy=True)

    def select(
        self,
        start: int,
        max_count: int,
        tag_hashes: npt.NDArray[np.int64] | None,
        *,
        max_bytes: int | None = None,
        scan_limit: int | None = None,
    ) -> Selection:
        """Choose up to `max_count` entries from `start` on whose tag hash is in `tag_hashes`.

        The scan starts at max(start, min_offset) and covers at most `scan_limit` entries
        (default: `max_count` without a filter, max(DEFAULT_SCAN_ENTRIES, max_count) with one).
        With `max_bytes`, it stops before the record that would take the total size past it,
        but always returns at least one match. Fillers never match.

        Args:
            tag_hashes: sign-extended tag hash codes to accept (an empty array accepts
                nothing), or None to accept every entry.

        Returns:
            The chosen entries. `next_offset` is one past the last chosen entry if the count or
            byte limit cut the result short, else the end of the scanned range.

        Raises:
            ConsumeQueueError: closed instance, or max_count < 1.
        """
        self._check_open()
        if max_count < 1:
            raise ConsumeQueueError(f"max_count must be >= 1, got {max_count}")
        first = max(start, self._min_offset)
        if tag_hashes is None:
            span = max_count if scan_limit is None else min(scan_limit, max_count)
        else:
            span = max(DEFAULT_SCAN_ENTRIES, max_count) if scan_limit is None else scan_limit
        end = min(first + span, self._max_offset)
        if end <= first:
            return _empty_selection(first)
        if tag_hashes is not None and end - first > 4 * max_count:
            # Look at a short window first: with a common tag it has enough matches, and
            # converting 800 big-endian entries per pull costs more than the filter itself.
            short = self._select_in(first, first + 4 * max_count, max_count, tag_hashes,
                                    max_bytes)
            if short is not None:
                return short
        full = self._select_in(first, end, max_count, tag_hashes, max_bytes, final=True)
        assert full is not None  # final=True always selects
        return full

    def _select_in(
        self,
        first: int,
        end: int,
        max_count: int,
        tag_hashes: npt.NDArray[np.int64] | None,
        max_bytes: int | None,
        *,
        final: bool = False,
    ) -> Selection | None:
        """`select` over [first, end); None when not final and fewer than max_count match."""
        window = self._window(first, end)
        # No filler test: fillers only precede min_offset, and the scan starts at or after it.
        if tag_hashes is None:
            chosen = np.arange(end - first)
        else:
            chosen = _tag_mask(window["tag_hash"], tag_hashes).nonzero()[0]
        matched = len(chosen)
        if not final and matched <= max_count:
            # Not more matches than wanted: the full scan might find the count is not what cut
            # it short, and then its next_offset is the end of the longer range.
            return None
        k = min(matched, max_count)
        chosen_sizes = window["size"][chosen[:k]].astype(np.int64)
        if max_bytes is not None and k > 1:
            total = np.cumsum(chosen_sizes)
            k = max(1, int(np.searchsorted(total, max_bytes, side="right")))
        chosen = chosen[:k]
        next_offset = first + int(chosen[-1]) + 1 if k < matched else end
        return Selection(
            queue_offsets=chosen + first,
            offsets=window["offset"][chosen].astype(np.int64),
            sizes=chosen_sizes[:k].astype(np.int32),
            next_offset=next_offset,
        )

    def last_phys_end(self) -> int | None:
        """Commit-log offset + size of the last entry's record; None if there is no entry.

        Raises:
            ConsumeQueueError: closed instance.
        """
        self._check_open()
        last = self._max_offset - 1
        if last < self._min_offset:
            return None
        seg = self._segments[self._index_of(last)]
        i = last - seg.start
        return int(seg.offsets[i]) + int(seg.sizes[i])

    def _window(self, first: int, end: int) -> npt.NDArray[np.void]:
        """Entries [first, end), first >= the first file's start: a view, or a copy if split."""
        epf, segments = self._epf, self._segments
        index = self._index_of(first)
        seg = segments[index]
        if end - seg.start <= epf:
            return seg.entries[first - seg.start : end - seg.start]
        pieces = []
        while first < end:
            seg = segments[index]
            hi = min(end - seg.start, epf)
            pieces.append(seg.entries[first - seg.start : hi])
            first, index = seg.start + hi, index + 1
        return np.concatenate(pieces)

    def _index_of(self, queue_offset: int) -> int:
        return (queue_offset - self._segments[0].start) // self._epf

    # --- opening and refreshing -----------------------------------------------------------

    def _rescan(self) -> None:
        """Map the files on disk (keeping mappings still valid) and recompute the bounds."""
        listing = self._list_files()
        mapped = {seg.start: seg for seg in self._segments}
        segments: list[_Segment] = []
        try:
            for start, path, inode in listing:
                seg = mapped.pop(start, None)
                if seg is not None and seg.inode != inode:  # deleted and created again
                    seg.close()
                    seg = None
                if seg is None:
                    try:
                        seg = _Segment(path, start, self._epf, writable=self._writable)
                    except FileNotFoundError:  # retention won a race with the listing
                        continue
                segments.append(seg)
        finally:
            for seg in mapped.values():
                seg.close()
            self._segments = segments
        self._check_contiguous()
        self._max_offset = self._compute_max_offset()
        self._min_offset = self._compute_min_offset()

    def _list_files(self) -> list[tuple[int, str, int]]:
        found: list[tuple[int, str, int]] = []
        try:
            entries = os.scandir(self._dir)
        except FileNotFoundError:
            return found
        with entries:
            for entry in entries:
                start = cq_file_first_entry(entry.name)
                if start is None:
                    continue
                if start % self._epf:
                    raise CorruptConsumeQueue(
                        f"{entry.path}: first entry {start} is not a multiple of "
                        f"{self._epf} entries per file; check entries_per_file"
                    )
                found.append((start, entry.path, entry.inode()))
        found.sort()
        return found

    def _check_contiguous(self) -> None:
        for before, after in zip(self._segments, self._segments[1:]):
            if after.start != before.start + self._epf:
                raise CorruptConsumeQueue(
                    f"consume queue {self._dir}: gap between {before.path} and {after.path}"
                )

    def _compute_max_offset(self) -> int:
        # The writer creates every file a batch needs before writing it, so trailing files may
        # be empty; the last written entry is in the newest file whose first entry is written.
        segments = self._segments
        if not segments:
            return 0
        index = len(segments) - 1
        while index > 0 and segments[index].sizes[0] == CQ_UNWRITTEN_SIZE:
            index -= 1
        seg = segments[index]
        return seg.start + _first_where_size(seg.sizes, 0, self._epf, equal_to=CQ_UNWRITTEN_SIZE)

    def _compute_min_offset(self) -> int:
        if not self._segments:
            return 0
        seg = self._segments[0]
        first = seg.start + _first_not_filler(seg.sizes, 0, self._epf)
        return min(first, self._max_offset)

    # --- lifetime -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumeQueueError(f"consume queue {self._topic}/{self._queue_id} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if not self._writable:
            raise ConsumeQueueError(
                f"consume queue {self._topic}/{self._queue_id} was opened read-only"
            )

    def close(self) -> None:
        """Unmap the files (without flushing; call `flush` first for durability). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for seg in self._segments:
            seg.close()
        self._segments = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _tag_mask(
    column: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Which tag hashes in `column` are in `wanted`.

    A subscription names a few tags; comparing once per tag takes ~2 us per 800 entries and
    tag, where np.isin takes ~40 us.
    """
    if len(wanted) == 1:
        single: npt.NDArray[np.bool_] = column == wanted[0]  # the big-endian column: no copy
        return single
    tags = column.astype(np.int64)
    if len(wanted) > _MAX_TAGS_COMPARED:
        return np.isin(tags, wanted)
    mask = np.zeros(len(tags), dtype=np.bool_)
    for tag in wanted.tolist():
        mask |= tags == tag
    return mask


def _empty_selection(next_offset: int) -> Selection:
    return Selection(
        queue_offsets=np.empty(0, dtype=np.int64),
        offsets=np.empty(0, dtype=np.int64),
        sizes=np.empty(0, dtype=np.int32),
        next_offset=next_offset,
    )
