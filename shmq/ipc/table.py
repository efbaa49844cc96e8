"""Shared tables: numpy arrays over a shared-memory segment, attached by name.

Theory of operation
-------------------
A table is one segment holding a small header, a metadata text (the dtype and shape), and the
array (layout in `layout.py`). The creator writes metadata and zeroes, then the magic last;
any process can then `attach()` by name alone and gets a numpy array over the same memory.
Examples: the per-queue max offsets that wake long-polling pulls, per-writer counters, the
commit log's claimed and committed positions.

Concurrency is the caller's: the table has no lock. Give each element one writer (the queue's
owning writer, the counter's process) and readers get a consistent value per element: the
array starts on a 64-byte boundary, so an int64 element is aligned and numpy reads and writes it
with one 8-byte access (x86-64), which never tears. Reads of several elements are not one
snapshot. For read-modify-write from several processes, guard the table with a lock.

Object dtypes are refused (a pointer means nothing in another process).
"""

from __future__ import annotations

import ast
import contextlib
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

from shmq.ipc.errors import InvalidLayout, SegmentCorrupt
from shmq.ipc.layout import (
    MAX_TABLE_META_BYTES,
    TABLE_DATA_BYTES_OFFSET,
    TABLE_DATA_OFFSET_OFFSET,
    TABLE_MAGIC,
    TABLE_MAGIC_OFFSET,
    TABLE_META_BYTES_OFFSET,
    TABLE_META_OFFSET,
    TABLE_VERSION,
    TABLE_VERSION_OFFSET,
    slot,
    table_data_offset,
)
from shmq.ipc.segment import DEFAULT_MODE, Segment, unlink_segment

__all__ = ["SharedTable"]

_MAGIC: Final = slot(TABLE_MAGIC_OFFSET)
_VERSION: Final = slot(TABLE_VERSION_OFFSET)
_META_BYTES: Final = slot(TABLE_META_BYTES_OFFSET)
_DATA_OFFSET: Final = slot(TABLE_DATA_OFFSET_OFFSET)
_DATA_BYTES: Final = slot(TABLE_DATA_BYTES_OFFSET)


class SharedTable:
    """A numpy array in shared memory. Use `create()` or `attach()`; `detach()` unmaps it.

    `array` is the live view: writes are seen by every process that attached the table.
    """

    def __init__(self, segment: Segment, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        self.instance: Final = segment.instance
        self.name: Final = segment.name
        self.posix_name: Final = segment.posix_name
        self.dtype: Final = dtype
        self.shape: Final = shape
        self._segment = segment
        with _counters(segment) as counters:
            offset, nbytes = int(counters[_DATA_OFFSET]), int(counters[_DATA_BYTES])
        count = nbytes // dtype.itemsize if dtype.itemsize else 0
        flat = np.frombuffer(segment.buf, dtype=dtype, count=count, offset=offset)
        self._array: np.ndarray[Any, np.dtype[Any]] | None = flat.reshape(shape)

    @classmethod
    def create(
        cls,
        instance: str,
        name: str,
        shape: int | tuple[int, ...],
        dtype: npt.DTypeLike = np.int64,
        *,
        mode: int = DEFAULT_MODE,
    ) -> SharedTable:
        """Create table `/shmq.<instance>.<name>`: a zeroed array of `shape` and `dtype`.

        Raises:
            InvalidName: bad `instance` or `name`; nothing was created.
            InvalidLayout: a negative dimension, or an object dtype; nothing was created.
            SegmentExists: the name is taken; nothing was changed.
            IpcError: the system refused; nothing is left behind.
        """
        dims = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
        if any(d < 0 for d in dims):
            raise InvalidLayout("shape", dims, "dimensions must be >= 0")
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise InvalidLayout("dtype", str(dt), "object dtypes cannot live in shared memory")
        meta = repr({"descr": np.lib.format.dtype_to_descr(dt), "shape": dims}).encode()
        if len(meta) > MAX_TABLE_META_BYTES:
            raise InvalidLayout("dtype", str(dt), f"description over {MAX_TABLE_META_BYTES} B")
        offset = table_data_offset(len(meta))
        nbytes = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
        segment = Segment.create(instance, name, offset + max(nbytes, 1), mode=mode)
        segment.buf[TABLE_META_OFFSET : TABLE_META_OFFSET + len(meta)] = meta
        with _counters(segment) as counters:
            counters[_VERSION] = TABLE_VERSION
            counters[_META_BYTES] = len(meta)
            counters[_DATA_OFFSET] = offset
            counters[_DATA_BYTES] = nbytes
            counters[_MAGIC] = TABLE_MAGIC  # last: the header is complete
        return cls(segment, dt, dims)

    @classmethod
    def attach(cls, instance: str, name: str) -> SharedTable:
        """Map the existing table `/shmq.<instance>.<name>`.

        Raises:
            InvalidName: bad `instance` or `name`.
            SegmentMissing: no such segment.
            SegmentCorrupt: it is not a table of this version (or not initialised yet).
            IpcError: the system refused.
        """
        segment = Segment.attach(instance, name)
        try:
            dt, dims = _read_meta(segment)
            return cls(segment, dt, dims)
        except BaseException:
            segment.close()
            raise

    @property
    def array(self) -> np.ndarray[Any, np.dtype[Any]]:
        """The shared array.

        Raises:
            ValueError: the table was detached.
        """
        if self._array is None:
            raise ValueError(f"table {self.posix_name} is detached")
        return self._array

    def detach(self) -> None:
        """Drop this object's array and unmap (idempotent). Arrays derived from `array` that
        are still alive keep the mapping until they are garbage-collected."""
        self._array = None
        self._segment.close()

    def unlink(self) -> None:
        """Remove the table's name (idempotent); mappings keep working."""
        unlink_segment(self.instance, self.name, missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"SharedTable({self.posix_name!r}, shape={self.shape}, dtype={self.dtype})"


@contextlib.contextmanager
def _counters(segment: Segment) -> Any:
    with memoryview(segment.buf) as whole, whole[:TABLE_META_OFFSET].cast("q") as counters:
        yield counters


def _read_meta(segment: Segment) -> tuple[np.dtype[Any], tuple[int, ...]]:
    pname = segment.posix_name
    if segment.size_bytes < TABLE_META_OFFSET:
        raise SegmentCorrupt(pname, "size", f">= {TABLE_META_OFFSET}", segment.size_bytes)
    with _counters(segment) as counters:
        magic, version = counters[_MAGIC], counters[_VERSION]
        meta_bytes, offset, nbytes = (
            int(counters[_META_BYTES]),
            int(counters[_DATA_OFFSET]),
            int(counters[_DATA_BYTES]),
        )
    if magic != TABLE_MAGIC:
        raise SegmentCorrupt(pname, "magic", hex(TABLE_MAGIC), hex(magic))
    if version != TABLE_VERSION:
        raise SegmentCorrupt(pname, "version", TABLE_VERSION, version)
    if not 0 < meta_bytes <= MAX_TABLE_META_BYTES or offset != table_data_offset(meta_bytes):
        raise SegmentCorrupt(pname, "metadata length/offset", "consistent", (meta_bytes, offset))
    if offset + nbytes > segment.size_bytes:
        raise SegmentCorrupt(pname, "data bytes", f"<= {segment.size_bytes - offset}", nbytes)
    text = segment.buf[TABLE_META_OFFSET : TABLE_META_OFFSET + meta_bytes].decode()
    try:
        meta = ast.literal_eval(text)
        dt = np.lib.format.descr_to_dtype(meta["descr"])
        dims = tuple(int(d) for d in meta["shape"])
    except (ValueError, SyntaxError, TypeError, KeyError) as err:
        raise SegmentCorrupt(pname, "metadata", "dtype descr and shape", text) from err
    if int(np.prod(dims, dtype=np.int64)) * dt.itemsize != nbytes:
        raise SegmentCorrupt(pname, "data bytes", f"{dims} x {dt}", nbytes)
    return dt, dims
