"""Key index: `topic#key` -> commit-log offsets, in RocketMQ's index files (spec §11).

Theory of operation
-------------------
An index file (`IndexFile`) is a hash table with chaining in one mmap: a slot table of bucket
heads and an append-only array of entries, each linking to the previous entry of its bucket.
Entries are numbered in insertion order, which is commit-log order, so a chain walked from its
head runs newest to oldest. `IndexService` keeps the files of one directory, oldest first,
appends to the newest and starts a new file when it is full (index_count == max_entries).

Invariants:

* Only entries below the header's index_count belong to a file. A batch writes its entries, then
  its slots, then the header (index_count last), so after a crash the file is consistent except
  for slots that point past index_count; opening the file rewinds those along their chains, so
  older entries of the bucket stay reachable.
* Commit-log offsets never decrease across the service (`put_many` checks), so cutting the index
  at a commit-log position is a binary search in the newest file.
* Key hashes are 31 bits and keys collide ("Aa" and "BB" do). A query returns every offset whose
  entry has the key's hash: callers re-check the key (and topic) of each record.
* Times are stored as whole seconds after the file's begin timestamp, so time-range bounds are
  exact to the second only, as in RocketMQ.

Who calls it: the one background indexer (`put_many`, in commit-log order), recovery
(`last_phys_offset`, `truncate_to_phys`), retention (`delete_files_before_phys`) and query
handlers, all in one process. Not thread-safe. It never reads the commit log.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import numpy as np
import numpy.typing as npt

from shmq.errors import StoreError
from shmq.message.taghash import java_string_hash
from shmq.store.consumequeue import fsync_directory, preallocate_file, remove_stale_temporaries
from shmq.store.cqlayout import (
    INDEX_ENTRY,
    INDEX_ENTRY_STRUCT,
    INDEX_FILE_NAME_DIGITS,
    INDEX_FIRST_ENTRY,
    INDEX_HEADER,
    INDEX_HEADER_BYTES,
    INDEX_SLOT,
    INDEX_SLOT_DTYPE,
    index_entry_position,
    index_file_bytes,
    index_slot_position,
    is_index_file_name,
)

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_SLOTS",
    "CorruptIndexFile",
    "IndexFile",
    "IndexFileError",
    "IndexService",
    "index_key_hash",
    "index_key_hashes",
]

DEFAULT_SLOTS: Final = 500_000  #: shmq default; RocketMQ's maxHashSlotNum is 5 000 000
DEFAULT_MAX_ENTRIES: Final = 2_000_000  #: shmq default; RocketMQ's maxIndexNum is 20 000 000
_INT32_MAX: Final = 0x7FFFFFFF
_MS_PER_S: Final = 1000

Int64Array = npt.NDArray[np.int64]


class IndexFileError(StoreError):
    """An index operation was refused or failed; the raiser says what state is left."""


class CorruptIndexFile(IndexFileError):
    """An index file does not match the configured geometry or holds impossible values."""


def index_key_hash(key: str) -> int:
    """RocketMQ's IndexFile.indexKeyHashMethod: abs(String.hashCode(key)), 0 for MIN_VALUE."""
    h = abs(java_string_hash(key))
    return 0 if h > _INT32_MAX else h


def index_key_hashes(keys: Sequence[str]) -> Int64Array:
    """`index_key_hash` of every key, computed with numpy over the keys' UTF-16 code units.

    Java's hash is sum(unit[i] * 31^(len-1-i)) mod 2^32; uint32 arithmetic wraps the same way.
    Lone surrogates are hashed as the code units Java would hold.
    """
    n = len(keys)
    result = np.zeros(n, dtype=np.int64)
    joined = "".join(keys)
    # One encode for the whole batch: encoding key by key costs ~0.7 us each.
    units = np.frombuffer(joined.encode("utf-16-be", "surrogatepass"), dtype=">u2")
    if units.size == len(joined):
        lengths = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    else:  # characters outside the BMP take two code units
        lengths = np.fromiter(
            (len(key.encode("utf-16-be", "surrogatepass")) // 2 for key in keys),
            dtype=np.int64,
            count=n,
        )
    if units.size == 0:
        return result
    ends = np.cumsum(lengths)
    exponents = np.repeat(ends - 1, lengths) - np.arange(units.size)
    powers = np.full(int(lengths.max()), 31, dtype=np.uint32)
    powers[0] = 1
    powers = np.cumprod(powers, dtype=np.uint32)  # 31^0, 31^1, ... mod 2^32
    terms = units.astype(np.uint32) * powers[exponents]
    nonempty = lengths > 0
    sums = np.add.reduceat(terms, (ends - lengths)[nonempty], dtype=np.uint32)
    hashes = np.abs(sums.view(np.int32).astype(np.int64))
    hashes[hashes > _INT32_MAX] = 0  # abs(Integer.MIN_VALUE) overflows in Java
    result[nonempty] = hashes
    return result


class IndexFile:
    """One index file, mapped read-write; see the module docstring and `cqlayout`.

    Use `IndexFile.create` or `IndexFile.open`; `close` when done.
    """

    def __init__(self, path: Path, mm: mmap.mmap, *, slots: int, max_entries: int) -> None:
        header: tuple[int, int, int, int, int, int] = INDEX_HEADER.unpack_from(mm, 0)
        count = max(header[5], INDEX_FIRST_ENTRY)  # as IndexHeader.load
        if count > max_entries:
            raise CorruptIndexFile(
                f"{path}: index_count {header[5]} exceeds max_entries {max_entries}; "
                "check the index settings"
            )
        self.path, self.slots, self.max_entries = path, slots, max_entries
        self._begin_ts, self._end_ts, self._begin_phys, self._end_phys = header[:4]
        self._slot_count, self._count = header[4], count
        self._mm = mm
        self._slot_table: npt.NDArray[np.int32] = np.frombuffer(
            mm, dtype=INDEX_SLOT_DTYPE, count=slots, offset=INDEX_HEADER_BYTES
        )
        self._entries: npt.NDArray[np.void] = np.frombuffer(
            mm, dtype=INDEX_ENTRY, count=max_entries, offset=index_entry_position(slots, 0)
        )

    @classmethod
    def create(cls, path: Path, *, slots: int, max_entries: int) -> IndexFile:
        """Create an empty, preallocated index file at `path`.

        Raises:
            IndexFileError: no space or another OS error; no file named `path` exists.
        """
        try:
            preallocate_file(path, index_file_bytes(slots, max_entries))
        except OSError as err:
            raise IndexFileError(f"cannot create index file {path}: {err}") from err
        index_file = cls.open(path, slots=slots, max_entries=max_entries)
        index_file._write_header()
        return index_file

    @classmethod
    def open(cls, path: Path, *, slots: int, max_entries: int) -> IndexFile:
        """Map the existing index file at `path`.

        Raises:
            CorruptIndexFile: its size does not match `slots` and `max_entries`, or its header
                is impossible; nothing is left open.
            IndexFileError: the OS refused.
        """
        nbytes = index_file_bytes(slots, max_entries)
        try:
            with open(path, "r+b") as file:
                size = os.fstat(file.fileno()).st_size
                if size != nbytes:
                    raise CorruptIndexFile(
                        f"{path}: {size} bytes, expected {nbytes} for {slots} slots and "
                        f"{max_entries} entries; check the index settings"
                    )
                mm = mmap.mmap(file.fileno(), nbytes, access=mmap.ACCESS_WRITE)
        except OSError as err:
            raise IndexFileError(f"cannot open index file {path}: {err}") from err
        try:
            return cls(path, mm, slots=slots, max_entries=max_entries)
        except BaseException:
            mm.close()
            raise

    # --- header -------------------------------------------------------------------------------

    @property
    def begin_timestamp_ms(self) -> int:
        return int(self._begin_ts)

    @property
    def end_timestamp_ms(self) -> int:
        return int(self._end_ts)

    @property
    def begin_phys_offset(self) -> int:
        return int(self._begin_phys)

    @property
    def end_phys_offset(self) -> int:
        """Commit-log offset of the last entry's record (its start, not its end)."""
        return int(self._end_phys)

    @property
    def hash_slot_count(self) -> int:
        return int(self._slot_count)

    @property
    def index_count(self) -> int:
        """Next entry number; entries 1 .. index_count - 1 are in use."""
        return int(self._count)

    @property
    def is_empty(self) -> bool:
        return self._count <= INDEX_FIRST_ENTRY

    @property
    def is_full(self) -> bool:
        return self._count >= self.max_entries

    def _write_header(self) -> None:
        INDEX_HEADER.pack_into(
            self._mm,
            0,
            self._begin_ts,
            self._end_ts,
            self._begin_phys,
            self._end_phys,
            self._slot_count,
            self._count,
        )

    # --- writing ------------------------------------------------------------------------------

    def put_hashes(
        self, key_hashes: Int64Array, phys_offsets: Int64Array, timestamps_ms: Int64Array
    ) -> int:
        """Insert as many of the entries as fit, in order (IndexFile.putKey, vectorised).

        Args:
            key_hashes: `index_key_hash` of each key.
            phys_offsets: commit-log offset of each record, non-decreasing.
            timestamps_ms: store timestamp of each record.

        Returns:
            How many leading entries were inserted (0 when the file is full).
        """
        count0 = int(self._count)
        n = min(len(key_hashes), self.max_entries - count0)
        if n <= 0:
            return 0
        hashes, phys, stamps = key_hashes[:n], phys_offsets[:n], timestamps_ms[:n]
        if count0 <= INDEX_FIRST_ENTRY:
            self._begin_ts, self._begin_phys = int(stamps[0]), int(phys[0])
        if self._begin_ts <= 0:  # as Java: no base time, no time differences
            diffs = np.zeros(n, dtype=np.int64)
        else:
            diffs = np.clip((stamps - self._begin_ts) // _MS_PER_S, 0, _INT32_MAX)
        numbers = np.arange(count0, count0 + n, dtype=np.int64)
        slots = hashes % self.slots
        # Link each entry to the previous one of its bucket: within the batch that is the
        # previous entry with the same slot, for the first one the slot's current head.
        order = np.argsort(slots, kind="stable")
        sorted_slots = slots[order]
        group_start = np.ones(n, dtype=bool)
        group_start[1:] = sorted_slots[1:] != sorted_slots[:-1]
        group_end = np.ones(n, dtype=bool)
        group_end[:-1] = group_start[1:]
        heads = self._slot_table[sorted_slots].astype(np.int64)
        heads[(heads <= 0) | (heads >= count0)] = 0  # invalid (Java's test is > count)
        new_slots = int(np.count_nonzero(group_start & (heads == 0)))
        sorted_numbers = numbers[order]
        linked = ~group_start[1:]
        prev_sorted = heads  # the old head for a group's first entry, else the one before it
        prev_sorted[1:][linked] = sorted_numbers[:-1][linked]
        prev = np.empty(n, dtype=np.int64)
        prev[order] = prev_sorted

        entries = self._entries[count0 : count0 + n]
        entries["key_hash"] = hashes
        entries["phys_offset"] = phys
        entries["time_diff"] = diffs
        entries["prev_index"] = prev
        self._slot_table[sorted_slots[group_end]] = sorted_numbers[group_end]
        self._slot_count += new_slots
        self._end_ts, self._end_phys = int(stamps[-1]), int(phys[-1])
        self._count = count0 + n
        self._write_header()
        return n

    def truncate_to_phys(self, phys_end: int) -> None:
        """Drop the entries whose commit-log offset is >= `phys_end`.

        end_timestamp is kept (it may now be later than the last entry; a time-range query
        then merely looks into this file).
        """
        count = int(self._count)
        if count <= INDEX_FIRST_ENTRY or self._end_phys < phys_end:
            return
        lo, hi = INDEX_FIRST_ENTRY, count
        while lo < hi:
            mid = (lo + hi) // 2
            if self._entry(mid)[1] >= phys_end:
                hi = mid
            else:
                lo = mid + 1
        if lo <= INDEX_FIRST_ENTRY:
            self._begin_ts = self._end_ts = self._begin_phys = self._end_phys = 0
        else:
            self._end_phys = self._entry(lo - 1)[1]
        self._count = lo
        self._write_header()
        self.repair_slots()

    def repair_slots(self) -> None:
        """Rewind slots that point at or past index_count to the newest entry below it.

        Such slots are left by a batch or a truncation cut short; entries point only to older
        entries, so following `prev_index` reaches the committed part of the chain.
        """
        count = int(self._count)
        table = self._slot_table
        stale = np.flatnonzero(table >= count)
        if stale.size == 0:
            return
        for slot in stale.tolist():
            head = int(table[slot])
            while head >= count:
                prev = self._entry(head)[3] if head < self.max_entries else 0
                head = prev if 0 <= prev < head else 0  # a loop or garbage ends the chain
            table[slot] = head
        self._slot_count = int(np.count_nonzero(table > 0))
        self._write_header()

    # --- reading ------------------------------------------------------------------------------

    def _entry(self, number: int) -> tuple[int, int, int, int]:
        """(key_hash, phys_offset, time_diff, prev_index) of entry `number`."""
        fields: tuple[int, int, int, int] = INDEX_ENTRY_STRUCT.unpack_from(
            self._mm, index_entry_position(self.slots, number)
        )
        return fields

    def is_time_matched(self, begin_ms: int, end_ms: int) -> bool:
        """Whether [begin_ms, end_ms] overlaps this file's time span (IndexFile.isTimeMatched)."""
        first, last = self._begin_ts, self._end_ts
        return (
            (begin_ms < first and end_ms > last)
            or first <= begin_ms <= last
            or first <= end_ms <= last
        )

    def select(
        self, key_hash: int, begin_ms: int, end_ms: int, max_num: int, out: list[int]
    ) -> None:
        """Append to `out`, newest first, the offsets of entries with `key_hash` in the range.

        Walks the bucket's chain as IndexFile.selectPhyOffset does, until `out` holds max_num.
        """
        count = int(self._count)
        (head,) = INDEX_SLOT.unpack_from(self._mm, index_slot_position(key_hash % self.slots))
        if head <= 0 or head >= count or count <= INDEX_FIRST_ENTRY:
            return
        begin_ts = int(self._begin_ts)
        number = head
        while len(out) < max_num:
            read_hash, phys, diff, prev = self._entry(number)
            if diff < 0:
                break
            stamp = begin_ts + diff * _MS_PER_S
            if read_hash == key_hash and begin_ms <= stamp <= end_ms:
                out.append(phys)
            if prev <= 0 or prev > count or prev == number or stamp < begin_ms:
                break
            number = prev

    # --- lifetime -----------------------------------------------------------------------------

    def flush(self) -> None:
        """msync the file.

        Raises:
            OSError: the OS refused.
        """
        self._mm.flush()

    def close(self) -> None:
        """Unmap the file (without flushing)."""
        empty_slots: npt.NDArray[np.int32] = np.empty(0, dtype=INDEX_SLOT_DTYPE)
        self._slot_table, self._entries = empty_slots, np.empty(0, dtype=INDEX_ENTRY)
        self._mm.close()


class IndexService:
    """The index files under `root`: insertion, lookup, retention and recovery cuts.

    The constructor opens the existing files (repairing the newest after a crash); `close` when
    done, or use it as a context manager. New files are created on the first put that needs one.

    Raises (constructor):
        IndexFileError: bad settings, or the OS refused.
        CorruptIndexFile: a file does not match `slots` and `max_entries`.
    """

    def __init__(
        self, root: Path, *, slots: int = DEFAULT_SLOTS, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if slots < 1 or not 2 <= max_entries <= _INT32_MAX:
            raise IndexFileError(
                f"index needs slots >= 1 and 2 <= max_entries <= {_INT32_MAX}, "
                f"got slots={slots}, max_entries={max_entries}"
            )
        self.root, self.slots, self.max_entries = Path(root), slots, max_entries
        self._files: list[IndexFile] = []
        self._dirty: set[IndexFile] = set()  # files written since the last flush
        self._dir_changed = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.root)
            names = sorted(name for name in os.listdir(self.root) if is_index_file_name(name))
        except OSError as err:
            raise IndexFileError(f"cannot open index directory {self.root}: {err}") from err
        try:
            for name in names:
                self._files.append(
                    IndexFile.open(self.root / name, slots=slots, max_entries=max_entries)
                )
            if self._files:
                self._files[-1].repair_slots()
        except BaseException:
            self.close()
            raise

    @property
    def files(self) -> list[IndexFile]:
        """The open index files, oldest first (do not close or modify them)."""
        return list(self._files)

    @property
    def last_phys_offset(self) -> int | None:
        """Commit-log offset of the newest indexed record (resume indexing after it); None if
        nothing is indexed."""
        for index_file in reversed(self._files):
            if not index_file.is_empty:
                return index_file.end_phys_offset
        return None

    # --- writing ------------------------------------------------------------------------------

    def put(self, key: str, phys_offset: int, store_timestamp_ms: int) -> None:
        """Index one key; see `put_many` (same rules, same errors)."""
        self._insert(
            np.array([index_key_hash(key)], dtype=np.int64),
            np.array([phys_offset], dtype=np.int64),
            np.array([store_timestamp_ms], dtype=np.int64),
        )

    def put_many(
        self,
        keys: Sequence[str],
        phys_offsets: Sequence[int] | npt.NDArray[np.integer],
        store_timestamps_ms: Sequence[int] | npt.NDArray[np.integer],
    ) -> None:
        """Index `keys[i]` ("topic#key") -> `phys_offsets[i]`, in order, rolling files as needed.

        Offsets must not decrease, within the batch and after `last_phys_offset`.

        Raises:
            IndexFileError: columns of different lengths or decreasing offsets (nothing was
                written), or a new file could not be created (the keys before it are indexed).
        """
        phys = np.asarray(phys_offsets, dtype=np.int64)
        stamps = np.asarray(store_timestamps_ms, dtype=np.int64)
        if len(phys) != len(keys) or len(stamps) != len(keys):
            raise IndexFileError(
                f"columns differ in length: {len(keys)} keys, {len(phys)} offsets, "
                f"{len(stamps)} timestamps; nothing was written"
            )
        if keys:
            self._insert(index_key_hashes(keys), phys, stamps)

    def _insert(self, hashes: Int64Array, phys: Int64Array, stamps: Int64Array) -> None:
        last = self.last_phys_offset
        if (last is not None and int(phys[0]) < last) or bool(np.any(phys[1:] < phys[:-1])):
            raise IndexFileError(
                f"commit-log offsets must not decrease (last indexed {last}, batch from "
                f"{int(phys[0])}); nothing was written"
            )
        done, n = 0, len(hashes)
        while done < n:
            index_file = self._file_for_put()
            done += index_file.put_hashes(hashes[done:], phys[done:], stamps[done:])
            self._dirty.add(index_file)

    def _file_for_put(self) -> IndexFile:
        if self._files and not self._files[-1].is_full:
            return self._files[-1]
        index_file = IndexFile.create(
            self.root / self._new_file_name(), slots=self.slots, max_entries=self.max_entries
        )
        self._files.append(index_file)
        self._dir_changed = True
        return index_file

    def _new_file_name(self) -> str:
        """yyyyMMddHHmmssSSS of now (local time, as Java), later than every existing name."""
        seconds, millis = divmod(time.time_ns() // 1_000_000, _MS_PER_S)
        name = time.strftime("%Y%m%d%H%M%S", time.localtime(seconds)) + f"{millis:03d}"
        if self._files and name <= self._files[-1].path.name:
            # Same millisecond, or the clock went back: keep names unique and in order.
            name = f"{int(self._files[-1].path.name) + 1:0{INDEX_FILE_NAME_DIGITS}d}"
        return name

    # --- reading ------------------------------------------------------------------------------

    def query(self, key: str, begin_ms: int, end_ms: int, max_num: int = 32) -> list[int]:
        """Commit-log offsets of records indexed under `key`, stored in [begin_ms, end_ms].

        Newest first, at most `max_num`; from newest file to oldest, skipping files outside
        the range (IndexService.queryOffset). May include records of other keys with the same
        hash: check each record's key.
        """
        found: list[int] = []
        if max_num <= 0:
            return found
        key_hash = index_key_hash(key)
        for index_file in reversed(self._files):
            if index_file.is_time_matched(begin_ms, end_ms):
                index_file.select(key_hash, begin_ms, end_ms, max_num, found)
            if index_file.begin_timestamp_ms < begin_ms or len(found) >= max_num:
                break
        return found

    # --- retention and recovery ---------------------------------------------------------------

    def delete_files_before_phys(self, min_phys_offset: int) -> int:
        """Delete the oldest files whose last entry is below `min_phys_offset`.

        The newest file is always kept (IndexService.deleteExpiredFile).

        Returns:
            The number of files deleted.

        Raises:
            IndexFileError: a file could not be deleted; the files before it are gone.
        """
        deleted = 0
        while len(self._files) > 1 and self._files[0].end_phys_offset < min_phys_offset:
            self._delete(self._files[0])
            self._files.pop(0)
            deleted += 1
        return deleted

    def truncate_to_phys(self, phys_end: int) -> None:
        """Forget the records at commit-log offsets >= `phys_end` (recovery cut the log there).

        Files that begin at or after `phys_end` are deleted and the newest remaining file is
        cut back, so `last_phys_offset` is below `phys_end` afterwards.

        Raises:
            IndexFileError: a file could not be deleted; later files are gone, and calling
                again finishes the job.
        """
        while self._files and (
            self._files[-1].is_empty or self._files[-1].begin_phys_offset >= phys_end
        ):
            self._delete(self._files[-1])
            self._files.pop()
        if self._files:
            self._files[-1].truncate_to_phys(phys_end)
            self._dirty.add(self._files[-1])

    def _delete(self, index_file: IndexFile) -> None:
        """Unlink the file, then unmap it; the caller drops it from `_files`.

        Raises:
            IndexFileError: the file could not be deleted; it is still open.
        """
        try:
            index_file.path.unlink(missing_ok=True)
        except OSError as err:
            raise IndexFileError(f"cannot delete index file {index_file.path}: {err}") from err
        self._dirty.discard(index_file)
        index_file.close()
        self._dir_changed = True

    # --- lifetime -----------------------------------------------------------------------------

    def flush(self) -> None:
        """msync the files written since the last flush, and fsync the directory if needed.

        Raises:
            IndexFileError: the OS refused; what was flushed before the error is durable.
        """
        try:
            for index_file in self._files:
                if index_file in self._dirty:
                    index_file.flush()
            if self._dir_changed:
                fsync_directory(self.root)
        except OSError as err:
            raise IndexFileError(f"cannot flush index {self.root}: {err}") from err
        self._dirty.clear()
        self._dir_changed = False

    def close(self) -> None:
        """Unmap every file (without flushing). Idempotent."""
        for index_file in self._files:
            index_file.close()
        self._files = []
        self._dirty.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
