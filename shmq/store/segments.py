"""Preallocated, memory-mapped segment files of the commit log.

Theory of operation. The commit log is a directory of equally sized files, each named by the
commit-log offset of its first byte (layout.segment_name). A segment is created whole
(``posix_fallocate``), so appends never extend a file and never meet ENOSPC halfway through a
record. Writing into a page of a fresh file costs a page fault that is ~30x a warm copy, so
segments are populated ahead of the write position (``prefault``), by the writer in bulk or by
a helper process off the hot path.

Segments are opened lazily and cached per process; a read-only opener (verify, consumers) maps
them with ACCESS_READ. Nothing here knows about records.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path
from typing import Final

import numpy as np

from shmq.store import layout
from shmq.store.errors import DiskFull, StoreClosed

__all__ = ["MADV_POPULATE_WRITE", "Segment", "SegmentSet"]

#: Linux 5.14+: populate page tables writable without changing the contents.
MADV_POPULATE_WRITE: Final = 23
_PAGE: Final = mmap.PAGESIZE
#: Populate in steps of this many bytes, so the check on the append path rarely calls madvise.
_PREFAULT_CHUNK: Final = 4 << 20


class Segment:
    """One mapped segment file."""

    __slots__ = ("_fd", "_populated", "mm", "path", "size", "start", "u8", "view", "writable")

    def __init__(self, path: Path, start: int, size: int, *, writable: bool) -> None:
        self.start, self.size, self.path, self.writable = start, size, path, writable
        flags = os.O_RDWR if writable else os.O_RDONLY
        self._fd = os.open(path, flags)
        actual = os.fstat(self._fd).st_size
        if actual < size:
            if not writable:
                os.close(self._fd)
                raise StoreClosed(f"segment {path} has {actual} bytes, expected {size}")
            os.posix_fallocate(self._fd, 0, size)
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self.mm = mmap.mmap(self._fd, size, access=access)
        self.view = memoryview(self.mm)
        #: The mapping as a numpy byte array (writable only for writers), for vectorised patches.
        self.u8 = np.frombuffer(self.mm, dtype=np.uint8)
        self._populated = 0

    @property
    def end(self) -> int:
        return self.start + self.size

    def prefault(self, upto_rel: int) -> None:
        """Populate the mapping up to `upto_rel` bytes from the start (idempotent, bulk)."""
        upto_rel = min(upto_rel, self.size)
        if upto_rel <= self._populated or not self.writable:
            return
        upto = min(self.size, -(-upto_rel // _PREFAULT_CHUNK) * _PREFAULT_CHUNK)
        try:
            self.mm.madvise(MADV_POPULATE_WRITE, self._populated, upto - self._populated)
        except OSError:  # older kernel: touch one byte per page (reads keep the contents)
            for off in range(self._populated, upto, _PAGE):
                self.mm[off] = self.mm[off]
        self._populated = upto

    def flush(self, start_rel: int, end_rel: int) -> None:
        """msync bytes [start_rel, end_rel) of this segment (page-aligned outward)."""
        lo = start_rel - start_rel % _PAGE
        hi = min(self.size, end_rel)
        if hi > lo:
            self.mm.flush(lo, hi - lo)

    def close(self) -> None:
        """Unmap and close. Zero-copy views handed out earlier keep the mapping alive until
        they are dropped; the file descriptor is closed at once either way."""
        del self.u8
        try:
            self.view.release()
            self.mm.close()
        except BufferError:
            pass  # exported slices still in use: the mapping goes when the last one does
        os.close(self._fd)


def create_segment_file(path: Path, size: int) -> None:
    """Create (or complete) a preallocated segment file. Safe to race with another creator.

    Raises:
        DiskFull: the file system has no room for the whole segment; no file is left behind.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < size:
            os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        path.unlink(missing_ok=True)
        st = os.statvfs(path.parent)
        raise DiskFull(str(path.parent), st.f_bavail * st.f_frsize, size) from err
    finally:
        os.close(fd)


class SegmentSet:
    """The commit log's segment files, opened on demand."""

    def __init__(self, directory: Path, segment_bytes: int, *, writable: bool) -> None:
        self.directory, self.segment_bytes, self.writable = directory, segment_bytes, writable
        if writable:
            directory.mkdir(parents=True, exist_ok=True)
        self._open: dict[int, Segment] = {}

    def starts(self) -> list[int]:
        """Start offsets of the segment files on disk, ascending."""
        if not self.directory.is_dir():
            return []
        found = (layout.parse_segment_name(p.name) for p in self.directory.iterdir())
        return sorted(s for s in found if s is not None)

    def segment_start(self, offset: int) -> int:
        return offset - offset % self.segment_bytes

    def path_of(self, start: int) -> Path:
        return self.directory / layout.segment_name(start)

    def get(self, start: int, *, create: bool = False) -> Segment:
        """The segment beginning at `start` (must be a multiple of segment_bytes)."""
        seg = self._open.get(start)
        if seg is None:
            path = self.path_of(start)
            if create and self.writable:
                create_segment_file(path, self.segment_bytes)
            elif not path.exists():
                raise StoreClosed(f"commit-log segment {path} does not exist")
            seg = self._open[start] = Segment(path, start, self.segment_bytes, writable=self.writable)
        return seg

    def for_offset(self, offset: int) -> Segment:
        return self.get(self.segment_start(offset))

    def forget(self, start: int) -> None:
        """Unmap a segment (before deleting its file)."""
        seg = self._open.pop(start, None)
        if seg is not None:
            seg.close()

    def close(self) -> None:
        for seg in self._open.values():
            seg.close()
        self._open.clear()
