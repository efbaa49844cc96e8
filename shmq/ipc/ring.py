"""Single-producer / single-consumer byte ring over a shared-memory segment.

Theory of operation
-------------------
A `Ring` is one segment (layout in `layout.py`) and two named semaphores: `<name>.cwake`, on
which the consumer parks waiting for records, and `<name>.pwake`, on which the producer parks
waiting for space. Exactly one `RingProducer` and one `RingConsumer` use a ring at a time, each
in one thread of one process; `Ring.producer()` / `Ring.consumer()` claim the role by writing
their pid into the header and refuse (`RingBusy`) while a live process holds it. A role held by
a dead process (kill -9) is taken over: the new end resumes at the shared `head` / `tail`.

Invariants: `tail <= head <= tail + capacity`; `head` is written only by the producer, `tail`
only by the consumer; every position is a multiple of 8; the bytes in [tail, head) are
published records, which the producer never touches; a padding record is always followed,
in the same publication, by a record at the start of the area.

Producer: write the record's header and payload at `head`, then publish with one store of the
new `head` (`publish_head()`), then load the consumer's state word: post its semaphore if it
sleeps, raise `RingClosed` if it closed. `try_write_many()` and `try_reserve()` / `commit()`
publish any number of records with that one store. The producer caches `tail + capacity` and
reloads `tail` only when the cache says the ring is full.

Consumer: load `head` (only when its cached copy says the ring is empty, or once per batch),
copy the records out, then release the space with one store of `tail` (`release_tail()`), then
post the producer's semaphore if it sleeps waiting for space.

Memory ordering, all of it in `publish_head()` / `load_head()` / `release_tail()` /
`load_tail()` (the hot paths inline those one-line stores and loads: a Python call costs as
much as the store; each inlined copy is marked). The assumption is x86-64's TSO: stores
become visible in program order, loads are not reordered with older loads, and a store is not
reordered before an older load. Each counter is an aligned int64 in a memoryview cast to "q",
which CPython stores and loads with one 8-byte `memcpy` (a single `mov`), so it never tears.
The compiler cannot move the payload copy past the counter store, since they are separate C
calls made through the interpreter. Hence: a consumer that sees `head` sees the records before
it; a producer that sees `tail` knows the consumer has finished reading the bytes before it.
On a weakly ordered CPU (ARM) these helpers are the place to add release/acquire fences. The
one store->load pair that TSO does reorder (publish, then read the sleeper's state) is handled
by `wakeup.py`.

Back-pressure is a value: `try_write()` returns False and `try_read()` None. Mistakes and
failures raise: a record larger than half the ring (`RecordTooLarge`), a closed ring
(`RingClosed`), a blocking call that timed out (`RingFull`, `RingEmpty`) or whose peer
died (`PeerGone`).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import Final, Self, TypeAlias

import posix_ipc

from shmq.errors import IpcError
from shmq.ipc.errors import (
    InvalidLayout,
    PeerGone,
    RecordTooLarge,
    RingBusy,
    RingClosed,
    RingEmpty,
    RingFull,
    SegmentCorrupt,
)
from shmq.ipc.layout import (
    CAPACITY_OFFSET,
    CONSUMER_PID_OFFSET,
    CONSUMER_STATE_OFFSET,
    DATA_OFFSET,
    FLAG_PAD,
    HEAD_OFFSET,
    MAGIC_OFFSET,
    MAX_KIND,
    PRODUCER_PID_OFFSET,
    PRODUCER_STATE_OFFSET,
    RECORD_ALIGN,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    RECORD_KIND_SHIFT,
    RING_MAGIC,
    RING_VERSION,
    STATE_CLOSED,
    TAIL_OFFSET,
    VERSION_OFFSET,
    max_payload_bytes,
    record_bytes,
    ring_segment_bytes,
    slot,
    validate_capacity,
)
from shmq.ipc.segment import (
    DEFAULT_MODE,
    SHM_DIR,
    Segment,
    posix_name,
    unlink_segment,
    unlink_semaphore,
)
from shmq.ipc.wakeup import (
    DEFAULT_POLICY,
    Bell,
    FifoBell,
    Sleeper,
    WaitPolicy,
    WaitStatistics,
    Waker,
    create_semaphore,
    is_process_alive,
    open_semaphore,
)

__all__ = [
    "FIFO_SUFFIXES",
    "SEMAPHORE_SUFFIXES",
    "BytesLike",
    "Ring",
    "RingConsumer",
    "RingProducer",
    "RingStatistics",
    "load_head",
    "load_tail",
    "publish_head",
    "release_tail",
]

#: What a record payload may be: anything whose len() is its size in bytes.
BytesLike: TypeAlias = bytes | bytearray | memoryview

_MAGIC: Final = slot(MAGIC_OFFSET)
_VERSION: Final = slot(VERSION_OFFSET)
_CAPACITY: Final = slot(CAPACITY_OFFSET)
_HEAD: Final = slot(HEAD_OFFSET)
_TAIL: Final = slot(TAIL_OFFSET)
_CSTATE: Final = slot(CONSUMER_STATE_OFFSET)
_CPID: Final = slot(CONSUMER_PID_OFFSET)
_PSTATE: Final = slot(PRODUCER_STATE_OFFSET)
_PPID: Final = slot(PRODUCER_PID_OFFSET)

_DATA: Final = DATA_OFFSET
_HDR: Final = RECORD_HEADER_BYTES
# record_bytes(n) == (n + _ROUND) & _ALIGN_MASK, spelled out on the hot paths; a byte offset
# is rounded up to the next record with (offset + _ALIGN_UP) & _ALIGN_MASK.
_ROUND: Final = RECORD_HEADER_BYTES + RECORD_ALIGN - 1
_ALIGN_UP: Final = RECORD_ALIGN - 1
_ALIGN_MASK: Final = -RECORD_ALIGN
_pack_header = RECORD_HEADER.pack_into
_unpack_header = RECORD_HEADER.unpack_from

if sys.byteorder != "little":  # pragma: no cover - x86-64 is the target (see the docstring)
    raise ImportError("shmq.ipc.ring stores record headers as little-endian int64 words")

_DATA_SEM: Final = "cwake"  #: suffix of the semaphore the consumer parks on
_SPACE_SEM: Final = "pwake"  #: suffix of the semaphore the producer parks on
#: Suffixes of a ring's two semaphores (`<ring name>.<suffix>`), for whoever cleans up.
SEMAPHORE_SUFFIXES: Final = (_DATA_SEM, _SPACE_SEM)
#: Suffixes of a ring's FIFO bells (`<ring name>.<suffix>`, a file in /dev/shm like a segment):
#: a ring created with `consumer_fifo=True` has one instead of the consumer's semaphore.
FIFO_SUFFIXES: Final = (_DATA_SEM,)
_PRODUCER: Final = "producer"
_CONSUMER: Final = "consumer"


# --- publication: the only place that assumes a memory model (see the module docstring) -------


def publish_head(counters: memoryview, head: int) -> None:
    """Make every record before `head` visible to the consumer: one aligned 8-byte store,
    after the records' bytes (x86-64 TSO keeps stores in order)."""
    counters[_HEAD] = head


def load_head(counters: memoryview) -> int:
    """The producer's `head`; the consumer's later loads of records before it see their bytes
    (TSO does not reorder loads with older loads)."""
    return int(counters[_HEAD])


def release_tail(counters: memoryview, tail: int) -> None:
    """Hand the bytes before `tail` back to the producer: one aligned 8-byte store, after the
    consumer's loads of those bytes (TSO does not reorder a store before older loads)."""
    counters[_TAIL] = tail


def load_tail(counters: memoryview) -> int:
    """The consumer's `tail`; bytes before it may be overwritten."""
    return int(counters[_TAIL])


@dataclass(frozen=True, slots=True)
class RingStatistics:
    """A snapshot of a ring's header (fields are read one by one, not atomically together)."""

    capacity_bytes: int
    head: int  #: position after the last published record
    tail: int  #: position after the last released record
    producer_state: int  #: STATE_RUNNING, STATE_CLOSED or a park number (> 0: parked)
    consumer_state: int
    producer_pid: int  #: 0 when no process holds the role
    consumer_pid: int

    @property
    def used_bytes(self) -> int:
        """Bytes published and not yet released."""
        return self.head - self.tail

    @property
    def is_closed(self) -> bool:
        """Whether either side has closed the ring."""
        return STATE_CLOSED in (self.producer_state, self.consumer_state)

    @property
    def is_consumer_parked(self) -> bool:
        """Whether the consumer sleeps on its semaphore."""
        return self.consumer_state > 0

    @property
    def is_producer_parked(self) -> bool:
        """Whether the producer sleeps on its semaphore."""
        return self.producer_state > 0


class Ring:
    """One mapped ring: its segment, header and semaphores. Use `create()` or `attach()`.

    `detach()` (or leaving a `with` block) unmaps it and gives up the roles this object
    claimed; `unlink()` removes the ring's names from the system.
    """

    def __init__(
        self,
        segment: Segment,
        data_sem: Bell,
        space_sem: posix_ipc.Semaphore,
    ) -> None:
        self.instance: Final = segment.instance
        self.name: Final = segment.name
        self.posix_name: Final = segment.posix_name
        self._segment = segment
        self._mm = segment.buf
        self._view = memoryview(segment.buf)
        self._counters = self._view[:_DATA].cast("q")
        self._words = self._view.cast("q")  # the whole segment as int64s (record headers)
        self.capacity_bytes: Final = int(self._counters[_CAPACITY])
        self.max_payload_bytes: Final = max_payload_bytes(self.capacity_bytes)
        self._data_sem = data_sem
        self._space_sem = space_sem
        self._ends: list[RingProducer | RingConsumer] = []
        self._detached = False

    @classmethod
    def create(
        cls, instance: str, name: str, capacity_bytes: int, *, mode: int = DEFAULT_MODE,
        consumer_fifo: bool = False,
    ) -> Ring:
        """Create ring `/shmq.<instance>.<name>` with a `capacity_bytes` byte area.

        With `consumer_fifo` the consumer parks on a FIFO bell (`wakeup.FifoBell`) instead of
        a semaphore, so that an event loop can watch it (`RingConsumer.fileno`).

        Raises:
            InvalidName: bad `instance` or `name`; nothing was created.
            InvalidLayout: `capacity_bytes` is not a power of two in [64, 2**32].
            SegmentExists: the segment or one of its semaphores exists; nothing was changed.
            IpcError: the system refused; nothing is left behind.
        """
        validate_capacity(capacity_bytes)
        with contextlib.ExitStack() as undo:
            segment = Segment.create(instance, name, ring_segment_bytes(capacity_bytes), mode=mode)
            undo.callback(unlink_segment, instance, name, missing_ok=True)
            undo.callback(segment.close)
            data_sem: Bell
            if consumer_fifo:
                data_sem = FifoBell.create(_fifo_path(instance, name), mode=mode)
                undo.callback(data_sem.unlink)
            else:
                data_sem = create_semaphore(instance, f"{name}.{_DATA_SEM}", mode=mode)
                undo.callback(unlink_semaphore, instance, f"{name}.{_DATA_SEM}", missing_ok=True)
            undo.callback(data_sem.close)
            space_sem = create_semaphore(instance, f"{name}.{_SPACE_SEM}", mode=mode)
            with memoryview(segment.buf)[:_DATA].cast("q") as counters:
                counters[_VERSION] = RING_VERSION
                counters[_CAPACITY] = capacity_bytes
                counters[_MAGIC] = RING_MAGIC  # last: the header is complete
            undo.pop_all()
        return cls(segment, data_sem, space_sem)

    @classmethod
    def attach(cls, instance: str, name: str) -> Ring:
        """Map the existing ring `/shmq.<instance>.<name>`.

        Raises:
            InvalidName: bad `instance` or `name`.
            SegmentMissing: the segment or one of its semaphores does not exist.
            SegmentCorrupt: the segment is not a ring of this version (or not initialised yet).
            IpcError: the system refused.
        """
        with contextlib.ExitStack() as undo:
            segment = Segment.attach(instance, name)
            undo.callback(segment.close)
            _check_header(segment)
            fifo = _fifo_path(instance, name)
            data_sem: Bell = FifoBell(fifo) if FifoBell.exists(fifo) else open_semaphore(
                instance, f"{name}.{_DATA_SEM}")
            undo.callback(data_sem.close)
            space_sem = open_semaphore(instance, f"{name}.{_SPACE_SEM}")
            undo.pop_all()
        return cls(segment, data_sem, space_sem)

    def producer(self, policy: WaitPolicy = DEFAULT_POLICY) -> RingProducer:
        """Claim the producer role and return the producing end, resuming at `head`.

        Raises:
            RingBusy: a live process (this one included) holds the role.
            RingClosed: the ring was closed.
        """
        self._claim(_PPID, _PRODUCER)
        end = RingProducer(self, policy)
        self._ends.append(end)
        return end

    def consumer(self, policy: WaitPolicy = DEFAULT_POLICY) -> RingConsumer:
        """Claim the consumer role and return the consuming end, resuming at `tail`.

        Raises:
            RingBusy: a live process (this one included) holds the role.
            RingClosed: the ring was closed.
        """
        self._claim(_CPID, _CONSUMER)
        end = RingConsumer(self, policy)
        self._ends.append(end)
        return end

    def _claim(self, pid_index: int, role: str) -> None:
        # Best effort: two processes claiming in the same microsecond can both succeed. The
        # supervisor hands out roles, so this catches mistakes, not races.
        if self.is_closed:
            states = self._counters[_PSTATE], self._counters[_CSTATE]
            raise RingClosed(self.posix_name, _PRODUCER if states[0] == STATE_CLOSED else _CONSUMER)
        holder = int(self._counters[pid_index])
        if holder and is_process_alive(holder):
            raise RingBusy(self.posix_name, role, holder)
        self._counters[pid_index] = os.getpid()

    @property
    def is_closed(self) -> bool:
        """Whether either side has closed the ring."""
        counters = self._counters
        return STATE_CLOSED in (counters[_PSTATE], counters[_CSTATE])

    def statistics(self) -> RingStatistics:
        """A snapshot of the shared header."""
        c = self._counters
        return RingStatistics(
            self.capacity_bytes,
            int(c[_HEAD]),
            int(c[_TAIL]),
            int(c[_PSTATE]),
            int(c[_CSTATE]),
            int(c[_PPID]),
            int(c[_CPID]),
        )

    def detach(self) -> None:
        """Give up the roles this object's ends hold, and unmap (idempotent).

        The ends become unusable (their calls raise ValueError). The ring is not closed: a
        new end, in this or another process, resumes where these stopped.
        """
        if self._detached:
            return
        self._detached = True
        pid = os.getpid()
        for end in self._ends:
            end._on_detach()
            index = _PPID if isinstance(end, RingProducer) else _CPID
            if self._counters[index] == pid:
                self._counters[index] = 0
        self._ends.clear()
        self._counters.release()
        self._words.release()
        self._view.release()
        self._data_sem.close()
        self._space_sem.close()
        self._segment.close()

    def unlink(self) -> None:
        """Remove the ring's segment and semaphores from the system (idempotent).

        Mappings, this one included, keep working; nobody new can attach.
        """
        unlink_segment(self.instance, self.name, missing_ok=True)
        for suffix in FIFO_SUFFIXES:  # a FIFO in /dev/shm goes the way of a segment
            unlink_segment(self.instance, f"{self.name}.{suffix}", missing_ok=True)
        unlink_semaphore(self.instance, f"{self.name}.{_DATA_SEM}", missing_ok=True)
        unlink_semaphore(self.instance, f"{self.name}.{_SPACE_SEM}", missing_ok=True)

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
        return f"Ring({self.posix_name!r}, capacity_bytes={self.capacity_bytes})"


def _fifo_path(instance: str, name: str) -> str:
    return SHM_DIR + posix_name(instance, f"{name}.{_DATA_SEM}")


def _check_header(segment: Segment) -> None:
    size = segment.size_bytes
    if size < ring_segment_bytes(0) + 8:
        raise SegmentCorrupt(segment.posix_name, "size", f">= {_DATA}", size)
    with memoryview(segment.buf)[:_DATA].cast("q") as counters:
        magic, version, capacity = counters[_MAGIC], counters[_VERSION], counters[_CAPACITY]
    if magic != RING_MAGIC:
        raise SegmentCorrupt(segment.posix_name, "magic", hex(RING_MAGIC), hex(magic))
    if version != RING_VERSION:
        raise SegmentCorrupt(segment.posix_name, "version", RING_VERSION, version)
    try:
        validate_capacity(capacity)
    except InvalidLayout as err:
        raise SegmentCorrupt(segment.posix_name, "capacity", "a power of two", capacity) from err
    if size != ring_segment_bytes(capacity):
        raise SegmentCorrupt(segment.posix_name, "size", ring_segment_bytes(capacity), size)


def _check_kind(kind: int) -> None:
    if not 0 <= kind <= MAX_KIND:
        raise InvalidLayout("kind", kind, f"a record kind is a u16 in [0, {MAX_KIND}]")


class RingProducer:
    """The producing end of a ring. Make it with `Ring.producer()`; use it from one thread."""

    def __init__(self, ring: Ring, policy: WaitPolicy) -> None:
        self.ring_name: Final = ring.posix_name
        self.capacity_bytes: Final = ring.capacity_bytes
        self.max_payload_bytes: Final = ring.max_payload_bytes
        self._mm = ring._mm
        self._view = ring._view
        self._counters = ring._counters
        self._words = ring._words
        self._mask = ring.capacity_bytes - 1
        self._max_payload = ring.max_payload_bytes  # -1 once writes are refused (closed)
        self._head = load_head(self._counters)  # local head: published up to here, or beyond
        # Cached bounds: head may grow to `_tail_limit` (tail + capacity) without reloading
        # tail, and to `_fast_limit` (that, or the end of the current lap if nearer) without
        # the slow path. One compare on the fast path instead of three.
        self._tail_limit = load_tail(self._counters) + ring.capacity_bytes
        self._fast_limit = min(self._tail_limit, (self._head | self._mask) + 1)
        self._waker = Waker(ring._data_sem)
        self._sleeper = Sleeper(ring._space_sem, self._counters, _PSTATE, policy)
        self._reserved: list[memoryview] = []
        self._closed = False
        self._closed_by: str | None = None  # who closed the ring, once this end knows
        self._detached = False

    # --- fast paths ------------------------------------------------------------------------

    def try_write(self, payload: BytesLike, kind: int = 0) -> bool:
        """Append one record and publish it; return False, writing nothing, if it does not fit.

        Args:
            payload: the record's bytes; `len(payload)` must be its size in bytes.
            kind: caller-defined record kind, 0..65535, returned with the record.

        Raises:
            RecordTooLarge: `payload` exceeds `max_payload_bytes`; nothing was written.
            InvalidLayout: `kind` is not a u16; nothing was written.
            RingClosed: the ring is closed. If this call is the first to see that the
                consumer closed it, the record is in the ring and may never be read; later
                calls write nothing.
        """
        n = len(payload)
        size = (n + _ROUND) & _ALIGN_MASK
        head = self._head
        if head + size > self._fast_limit or n > self._max_payload:
            return self._try_write_slow(payload, kind, n, size)
        base = _DATA + (head & self._mask)
        mm = self._mm
        try:
            _pack_header(mm, base, n, kind, 0)
        except struct.error:
            _check_kind(kind)
            raise
        mm[base + _HDR : base + _HDR + n] = payload
        head += size
        self._head = head
        counters = self._counters
        counters[_HEAD] = head  # publish_head(), inlined
        state = counters[_CSTATE]
        if state:
            self._on_consumer_state(state)
        return True

    def try_write_many(self, payloads: Sequence[BytesLike], kind: int = 0) -> int:
        """Append as many of `payloads` as fit, in order, and publish them with one store.

        Returns:
            How many records were written: a prefix of `payloads` (0 when the ring is full).

        Raises:
            RecordTooLarge: the first payload not written exceeds `max_payload_bytes` and no
                payload was written (the records before an oversized one are written, and
                the count returned; the next call raises).
            InvalidLayout: `kind` is not a u16; nothing was written.
            RingClosed: as for `try_write()`.
        """
        _check_kind(kind)
        kind_bits = kind << RECORD_KIND_SHIFT
        mm, words, mask, max_payload = self._mm, self._words, self._mask, self._max_payload
        # The loop walks byte offsets in the mapping (`base`), not positions: fewer operations
        # per record. `limit` is `_fast_limit` as an offset; `head` is where `start` lies.
        head = self._head
        base = start = _DATA + (head & mask)
        limit = base + self._fast_limit - head
        count = 0
        for payload in payloads:
            n = len(payload)
            stop = base + _HDR + n
            if stop > limit or n > max_payload:
                if n > max_payload:
                    if count == 0:
                        self._raise_too_large(n)
                    break
                self._head = head + base - start
                room = self._make_room(record_bytes(n))
                if room is None:
                    break
                head, base = room, _DATA + (room & mask)
                start, limit = base, base + self._fast_limit - room
                stop = base + _HDR + n
            words[base >> 3] = n | kind_bits  # the header as one little-endian word, FLAGS 0
            mm[base + _HDR : stop] = payload
            base = (stop + _ALIGN_UP) & _ALIGN_MASK
            count += 1
        if count:
            self._head = head + base - start
            self._publish()
        return count

    def try_reserve(self, payload_bytes: int, kind: int = 0) -> memoryview | None:
        """Reserve a record of `payload_bytes` and return its payload area to write into.

        Nothing is visible to the consumer until `commit()` (or the next `try_write*()`), which
        publishes every reservation made so far; fill the views before that, and do not use
        them after it. Several reservations can be made before one commit.

        Returns:
            A writable memoryview of exactly `payload_bytes` bytes, or None if the ring has no
            room for it now (nothing reserved).

        Raises:
            RecordTooLarge, InvalidLayout, RingClosed: as for `try_write()`; nothing reserved.
        """
        _check_kind(kind)
        size = record_bytes(payload_bytes)
        if payload_bytes > self._max_payload:
            self._raise_too_large(payload_bytes)
        head = self._head
        if head + size > self._fast_limit:
            start = self._make_room(size)
            if start is None:
                return None
            head = start
        base = _DATA + (head & self._mask)
        _pack_header(self._mm, base, payload_bytes, kind, 0)
        view = self._view[base + _HDR : base + _HDR + payload_bytes]
        self._reserved.append(view)
        self._head = head + size
        return view

    def commit(self) -> None:
        """Publish every record reserved with `try_reserve()` since the last publication.

        Raises:
            RingClosed: the consumer has closed the ring; the records will not be read.
        """
        self._drop_views()
        self._publish()

    def abort(self) -> None:
        """Forget the reservations not yet published; their space is reused."""
        self._drop_views()
        self._head = load_head(self._counters)
        self._fast_limit = min(self._tail_limit, (self._head | self._mask) + 1)

    # --- blocking twins ----------------------------------------------------------------------

    def write(self, payload: BytesLike, kind: int = 0, *, timeout_s: float | None = None) -> None:
        """Append one record, waiting up to `timeout_s` (None: no limit) for room.

        Raises:
            RingFull: no room within `timeout_s`; nothing was written.
            PeerGone: the consumer's process died while we waited; nothing was written.
            RecordTooLarge, InvalidLayout, RingClosed: as for `try_write()`.
        """
        if self.try_write(payload, kind):
            return
        deadline = None if timeout_s is None else monotonic() + timeout_s
        size = record_bytes(len(payload))
        while True:
            remaining = None if deadline is None else max(deadline - monotonic(), 0.0)
            if not self._wait_for_space(size, remaining):
                free = self.capacity_bytes - (self._head - load_tail(self._counters))
                raise RingFull(self.ring_name, size, free, timeout_s or 0.0)
            if self.try_write(payload, kind):
                return

    def wait_writable(self, payload_bytes: int, timeout_s: float | None) -> bool:
        """Wait until a record of `payload_bytes` fits (or the ring is closed).

        Returns:
            True if it fits now or the ring closed (the next write then raises), False if
            `timeout_s` passed first.

        Raises:
            PeerGone: the consumer's process died while we waited.
            RecordTooLarge: `payload_bytes` exceeds `max_payload_bytes` (it would never fit).
        """
        if payload_bytes > self.max_payload_bytes:
            raise RecordTooLarge(payload_bytes, self.max_payload_bytes)
        return self._wait_for_space(record_bytes(payload_bytes), timeout_s)

    def _wait_for_space(self, size: int, timeout_s: float | None) -> bool:
        counters, cap, mask = self._counters, self.capacity_bytes, self._mask

        def is_ready() -> bool:
            offset = self._head & mask
            pad = cap - offset if offset + size > cap else 0
            return (
                self._head + pad + size <= counters[_TAIL] + cap
                or counters[_CSTATE] == STATE_CLOSED
                or self._closed
            )

        return self._sleeper.wait(is_ready, timeout_s, self._check_consumer_alive)

    # --- slow paths and helpers ----------------------------------------------------------------

    def _try_write_slow(self, payload: BytesLike, kind: int, n: int, size: int) -> bool:
        if n > self._max_payload:
            self._raise_too_large(n)
        _check_kind(kind)
        head = self._make_room(size)
        if head is None:
            return False
        base = _DATA + (head & self._mask)
        _pack_header(self._mm, base, n, kind, 0)
        self._mm[base + _HDR : base + _HDR + n] = payload
        self._head = head + size
        self._publish()
        return True

    def _make_room(self, size: int) -> int | None:
        """Find room for a `size`-byte record at the local head, the slow way: reload tail,
        and pad to the end of the area if the record would wrap (the pad is published with
        the record). Return where the record starts, or None if the ring is full.

        Raises:
            RingClosed: the ring is full and the consumer has closed it.
        """
        head = self._head
        offset = head & self._mask
        pad = self.capacity_bytes - offset if offset + size > self.capacity_bytes else 0
        if head + pad + size > self._tail_limit:
            self._tail_limit = load_tail(self._counters) + self.capacity_bytes
            if head + pad + size > self._tail_limit:
                if self._counters[_CSTATE] == STATE_CLOSED:
                    self._refuse_writes(_CONSUMER)
                    raise RingClosed(self.ring_name, _CONSUMER)
                return None
        if pad:
            _pack_header(self._mm, _DATA + offset, pad - _HDR, 0, FLAG_PAD)
            head += pad
            self._head = head
        self._fast_limit = min(self._tail_limit, (head | self._mask) + 1)
        return head

    def _publish(self) -> None:
        publish_head(self._counters, self._head)
        state = self._counters[_CSTATE]
        if state:
            self._on_consumer_state(state)

    def _on_consumer_state(self, state: int) -> None:
        if state > 0:
            self._waker.wake(state)
        elif state == STATE_CLOSED:
            self._refuse_writes(_CONSUMER)
            raise RingClosed(self.ring_name, _CONSUMER)

    def _refuse_writes(self, closed_by: str) -> None:
        # Every later write takes the slow path (no payload is <= -1 bytes), which raises
        # RingClosed before writing anything: the fast path pays nothing for closing.
        self._closed_by = closed_by
        self._max_payload = -1

    def _raise_too_large(self, n: int) -> None:
        if self._detached:
            raise ValueError(f"ring {self.ring_name} is detached")
        if self._closed_by is not None:
            raise RingClosed(self.ring_name, self._closed_by)
        raise RecordTooLarge(n, self.max_payload_bytes)

    def _on_detach(self) -> None:
        self._drop_views()
        self._detached = True
        self._max_payload = -1  # every later write takes the slow path, which raises

    def _check_consumer_alive(self) -> None:
        pid = int(self._counters[_CPID])
        if pid and not is_process_alive(pid):
            raise PeerGone(self.ring_name, _CONSUMER, pid)

    def _drop_views(self) -> None:
        for view in self._reserved:
            view.release()
        self._reserved.clear()

    # --- closing and introspection ----------------------------------------------------------------

    def close(self) -> None:
        """Close the ring for good: the consumer reads what was published, then gets
        `RingClosed`. Unpublished reservations are dropped. Idempotent.
        """
        if self._closed:
            return
        self.abort()
        self._closed = True
        self._refuse_writes(_PRODUCER)
        self._counters[_PSTATE] = STATE_CLOSED
        self._waker.wake_always()

    @property
    def is_closed(self) -> bool:
        """Whether either side has closed the ring."""
        return self._closed or STATE_CLOSED in (self._counters[_PSTATE], self._counters[_CSTATE])

    @property
    def free_bytes(self) -> int:
        """Bytes free now (a record needs `record_bytes(n)`, plus padding at the end)."""
        return self.capacity_bytes - (self._head - load_tail(self._counters))

    def wait_statistics(self) -> WaitStatistics:
        """Spin and park counters of this end's waits for space."""
        return self._sleeper.statistics()


class RingConsumer:
    """The consuming end of a ring. Make it with `Ring.consumer()`; use it from one thread."""

    def __init__(self, ring: Ring, policy: WaitPolicy) -> None:
        self.ring_name: Final = ring.posix_name
        self.capacity_bytes: Final = ring.capacity_bytes
        self._mm = ring._mm
        self._counters = ring._counters
        self._mask = ring.capacity_bytes - 1
        self._tail = load_tail(self._counters)
        self._head = self._tail  # cached head: records in [tail, head) are known published
        self._waker = Waker(ring._space_sem)
        self._sleeper = Sleeper(ring._data_sem, self._counters, _CSTATE, policy)
        self._sleeper_bell = ring._data_sem
        self._closed = False
        self._is_readable: Callable[[], bool] = self._readable

    def try_read(self) -> tuple[int, bytes] | None:
        """Take the next record, or return None if there is none now.

        Returns:
            `(kind, payload)`; the record's space is released at once.

        Raises:
            RingClosed: the ring is empty and closed (by the producer, or by us).
            SegmentCorrupt: the ring's bytes break the record format (a bug or a stray write).
        """
        tail = self._tail
        if tail == self._head:
            self._head = load_head(self._counters)
            if tail == self._head:
                self._on_empty()
                if tail == self._head:
                    return None
        mm = self._mm
        offset = _DATA + (tail & self._mask)
        n, kind, flags = _unpack_header(mm, offset)
        if flags:  # a padding record: the record is at the start of the area
            tail, offset, n, kind = self._skip_padding(tail, flags, n)
        tail += (n + _ROUND) & _ALIGN_MASK
        if tail > self._head:
            self._raise_corrupt(tail)
        payload = mm[offset + _HDR : offset + _HDR + n]
        self._tail = tail
        counters = self._counters
        counters[_TAIL] = tail  # release_tail(), inlined
        state = counters[_PSTATE]
        if state > 0:
            self._waker.wake(state)
        return kind, payload

    def read_batch(self, max_records: int) -> list[tuple[int, bytes]]:
        """Take up to `max_records` records, releasing their space with one store.

        Returns:
            `(kind, payload)` pairs in order; empty if there is nothing now.

        Raises:
            RingClosed: the ring is empty and closed (by the producer, or by us).
            SegmentCorrupt: the ring's bytes break the record format (a bug or a stray write).
        """
        tail = self._tail
        head = self._head = load_head(self._counters)
        if tail == head:
            self._on_empty()
            head = self._head
            if tail == head:
                return []
        mm, cap, mask = self._mm, self.capacity_bytes, self._mask
        out: list[tuple[int, bytes]] = []
        append = out.append
        # At most two passes: up to the end of the area, then from its start. Each walks byte
        # offsets in the mapping (fewer operations per record than positions).
        while True:
            start = offset = _DATA + (tail & mask)
            end = _DATA + min((tail & mask) + head - tail, cap)  # published, before the end
            for _ in range(max_records - len(out)):
                if offset >= end:
                    break
                n, kind, flags = _unpack_header(mm, offset)
                payload_start = offset + _HDR
                offset = (payload_start + n + _ALIGN_UP) & _ALIGN_MASK
                if flags:  # padding: it must run to the end of the area
                    self._check_padding(flags, offset - _DATA)
                    break
                append((kind, mm[payload_start : payload_start + n]))
            tail += offset - start
            if tail >= head or len(out) >= max_records or tail & mask:
                break
        if tail > head:
            self._raise_corrupt(tail)
        self._tail = tail
        release_tail(self._counters, tail)
        state = self._counters[_PSTATE]
        if state > 0:
            self._waker.wake(state)
        return out

    def read(self, timeout_s: float | None = None) -> tuple[int, bytes]:
        """Take the next record, waiting up to `timeout_s` (None: no limit) for one.

        Raises:
            RingEmpty: nothing arrived within `timeout_s`.
            RingClosed: the ring is empty and closed.
            PeerGone: the ring is empty and the producer's process died.
            SegmentCorrupt: as for `try_read()`.
        """
        record = self.try_read()
        if record is not None:
            return record
        deadline = None if timeout_s is None else monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else max(deadline - monotonic(), 0.0)
            if not self.wait_readable(remaining):
                raise RingEmpty(self.ring_name, timeout_s or 0.0)
            record = self.try_read()
            if record is not None:
                return record

    def wait_readable(self, timeout_s: float | None) -> bool:
        """Wait until a record is published or the ring is closed.

        Returns:
            True if a record is there or the ring closed (the next read then raises when the
            ring is drained), False if `timeout_s` passed first.

        Raises:
            PeerGone: the ring is empty and the producer's process died.
        """
        return self._sleeper.wait(self._is_readable, timeout_s, self._check_producer_alive)

    def is_readable(self) -> bool:
        """Whether a record (or the close) is waiting: two shared loads, no side effects."""
        return self._readable()

    # Event-loop waiting, for rings created with `consumer_fifo=True`: watch `fileno()` with
    # the loop; before going back to it with nothing to read, `announce()` and, if
    # `is_readable()` is now true, read instead (a record published before the producer saw
    # the announcement); when the descriptor fires, `retire()` and read.

    def fileno(self) -> int:
        """The FIFO bell's read end.

        Raises:
            IpcError: the ring's consumer parks on a semaphore (no `consumer_fifo`).
        """
        bell = self._sleeper_bell
        if not isinstance(bell, FifoBell):
            raise IpcError(f"ring {self.ring_name} was not created with a consumer FIFO")
        return bell.fileno()

    def announce(self) -> None:
        """Ask the producer to post the bell on its next publication (see above)."""
        self._sleeper.announce()

    def retire(self) -> None:
        """Withdraw `announce` and take the pending posts."""
        self._sleeper.retire()

    def _readable(self) -> bool:
        counters = self._counters
        return counters[_HEAD] != self._tail or counters[_PSTATE] == STATE_CLOSED or self._closed

    def _on_empty(self) -> None:
        """Raise if the ring is empty for good; else return (`_head` may have moved on).

        Raises:
            RingClosed: closed by either side, and no record left.
        """
        if self._closed:
            raise RingClosed(self.ring_name, _CONSUMER)
        if self._counters[_PSTATE] != STATE_CLOSED:
            return
        # Closed: the producer stored its last head before its state, so load head again.
        self._head = load_head(self._counters)
        if self._head == self._tail:
            raise RingClosed(self.ring_name, _PRODUCER)

    def _skip_padding(self, tail: int, flags: int, n: int) -> tuple[int, int, int, int]:
        """Step over the padding record at `tail`; return the next record's position, offset,
        length and kind (a padding record is always published with a record after it).

        Raises:
            SegmentCorrupt: unknown flags, or padding that does not end at the end of the area.
        """
        tail += (n + _ROUND) & _ALIGN_MASK
        self._check_padding(flags, tail & self._mask or self.capacity_bytes)
        n, kind, flags = _unpack_header(self._mm, _DATA)
        if flags:
            raise SegmentCorrupt(self.ring_name, "record flags after padding", 0, flags)
        return tail, _DATA, n, kind

    def _check_padding(self, flags: int, end: int) -> None:
        """Check a padding record's flags, and that it ends (`end`, an offset in the area) at
        the end of the area.

        Raises:
            SegmentCorrupt: unknown flags, or padding that does not end at the end of the area.
        """
        if flags != FLAG_PAD:
            raise SegmentCorrupt(self.ring_name, "record flags", FLAG_PAD, flags)
        if end != self.capacity_bytes:
            raise SegmentCorrupt(self.ring_name, "padding end", self.capacity_bytes, end)

    def _raise_corrupt(self, tail: int) -> None:
        raise SegmentCorrupt(
            self.ring_name, "record length at position", f"<= head {self._head}", tail
        )

    def _check_producer_alive(self) -> None:
        pid = int(self._counters[_PPID])
        if pid and not is_process_alive(pid):
            raise PeerGone(self.ring_name, _PRODUCER, pid)

    def _on_detach(self) -> None:
        self._head = self._tail  # the next read reloads head, which raises ValueError

    def close(self) -> None:
        """Close the ring for good: the producer's writes raise `RingClosed` from now on. This
        end may still read what is in the ring; then its reads raise `RingClosed`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._counters[_CSTATE] = STATE_CLOSED
        self._waker.wake_always()

    @property
    def is_closed(self) -> bool:
        """Whether either side has closed the ring."""
        return self._closed or STATE_CLOSED in (self._counters[_PSTATE], self._counters[_CSTATE])

    @property
    def used_bytes(self) -> int:
        """Bytes published and not yet released."""
        return load_head(self._counters) - self._tail

    def wait_statistics(self) -> WaitStatistics:
        """Spin and park counters of this end's waits for records."""
        return self._sleeper.statistics()
