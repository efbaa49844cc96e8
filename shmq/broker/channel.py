"""The acceptor's write channel: appends through shared-memory rings to the writer processes.

Theory of operation
-------------------
The acceptor is a same-host producer like `LocalProducer` (ipc.registry): on its first append
the channel takes a row of the producer registry, which creates one request ring and one
completion ring per writer (an acceptor that only serves consumers holds none). An append

1. picks the owning writer (`protocol.local.queue_owner`), encodes ONE ring record
   (`protocol.local.encode_append`: the records the handler encoded, their sizes and tag codes)
   and reserves, fills and publishes it in the writer's request ring on the event loop's
   thread; at the end of the loop turn the doorbell of each writer that got requests is
   rung if that writer is parked (one post for all of a turn's requests, e.g. a pipelined
   burst from one connection);
2. registers an `asyncio.Future` under the request id and awaits it.

Completions come back on the event loop itself, with no thread: the completion rings are
created with FIFO bells (`Ring.create(consumer_fifo=True)`) whose descriptors the loop watches.
When the loop has read everything there is, it announces itself on each ring (`announce`,
then one re-check), so a writer posts the bell (one byte) with its next completion, and only
then. The loop wakes, withdraws the announcement, reads the completions in batches and
resolves their futures. A writer's answer thus costs one wake-up of the loop, instead of a
thread's wake-up, a hand-over to the loop (a second wake-up) and a wait for the GIL while the
loop was busy.

Failures never hang a send:

* Back-pressure: when the ring has no room, the append waits on the loop (a short sleep loop,
  FIFO per writer so a waiting send is not overtaken) for at most `busy_wait_s`, then fails
  with `WritePathBusy` (SYSTEM_BUSY): nothing was sent.
One timer on the loop (`_tick`, every `_SLICE_S` while appends are in flight) handles what
no completion will:

* Writer death: it checks the writers' pids (the writer-stats table); a dead writer fails
  every append written while it was alive with `WriterGone` (outcome unknown). Appends written
  while no writer was alive wait for its restarted successor, which takes them from the ring.
* A writer that never answers: every append has a deadline (`timeout_s`), after which the
  tick fails it with `SendTimedOut` (outcome unknown). A late completion is ignored.

`close()` stops watching the bells, fails what is still in flight with `ChannelClosed` and gives
the registry row back (unlinking the rings). Call `drain()` first to let in-flight appends finish.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import Final

import numpy as np

from shmq.errors import IpcError
from shmq.ipc.errors import RingClosed
from shmq.ipc.layout import max_payload_bytes
from shmq.ipc.registry import (
    BrokerShm,
    ProducerSlot,
    attach_producer,
    detach_producer,
    doorbell_name,
)
from shmq.ipc.ring import RingConsumer, RingProducer
from shmq.ipc.wakeup import DEFAULT_POLICY, WaitPolicy, Waker, is_process_alive, open_semaphore
from shmq.message.encoder import EncodedBatch
from shmq.message.taghash import java_string_hash
from shmq.protocol.errors import RemoteProtocolError
from shmq.protocol.local import (
    KIND_APPEND,
    Completion,
    Status,
    decode_completion,
    encode_append,
    queue_owner,
)

from .appender import Appended
from .errors import (
    AppendRejected,
    BrokerRejected,
    ChannelClosed,
    MessageIllegal,
    SendTimedOut,
    ServiceUnavailable,
    WritePathBusy,
    WriterGone,
)

__all__ = ["DEFAULT_BUSY_WAIT_S", "DEFAULT_TIMEOUT_S", "WriteChannel"]

log = logging.getLogger(__name__)

#: how long an append may wait for room in a full ring before SYSTEM_BUSY (Java's
#: waitTimeMillsInSendQueue is 200 ms)
DEFAULT_BUSY_WAIT_S: Final = 0.2
#: how long an append may wait for its completion (the clients' send timeout is 3 s)
DEFAULT_TIMEOUT_S: Final = 3.0
_COMPLETION_RING_BYTES: Final = 1 << 20
_READ_BATCH: Final = 512
#: how often the writers' pids are checked while appends are in flight
_SLICE_S: Final = 0.05
_ROOM_POLL_S: Final = (0.0002, 0.001, 0.005)
#: the completion rings are read from the loop, never waited on with a blocking park
_COMPLETION_POLICY: Final = WaitPolicy(spin_us=0.0, min_spin_us=0.0, max_spin_us=0.0,
                                       adaptive=False, recheck_us=500.0, park_slice_s=_SLICE_S)


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Completion]
    writer: int
    #: the writer's pid when the request was written; 0 when none was alive (then only its
    #: successor or the deadline can answer)
    writer_pid: int
    deadline: float


@dataclass(slots=True)
class _Rings:
    """What exists once the channel has attached: our registry row and ring ends."""

    slot: ProducerSlot
    requests: list[RingProducer]
    completions: list[RingConsumer]


class WriteChannel:
    """Appends for the acceptor; see the module docstring. Use on one event loop.

    The registry row and the rings are taken on the first append (`attach`), so an acceptor
    that only serves consumers holds no rings.
    """

    def __init__(self, shm: BrokerShm, *, ring_bytes: int, timeout_s: float,
                 busy_wait_s: float, policy: WaitPolicy) -> None:
        self._shm = shm
        self._loop = asyncio.get_running_loop()
        self._writers = shm.writers
        self._ring_bytes, self._policy = ring_bytes, policy
        self.timeout_s, self.busy_wait_s = timeout_s, busy_wait_s
        self._rings: _Rings | None = None
        self._doorbells = [Waker(open_semaphore(shm.instance, doorbell_name(w)))
                           for w in range(self._writers)]
        self._bell_states = shm.doorbells.array
        self._to_ring: set[int] = set()  # writers to wake at the end of this loop turn
        self._writer_stats = shm.stats.array
        self._max_payload = max_payload_bytes(ring_bytes)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._in_flight = [0] * self._writers
        self._dead_pids: set[int] = set()
        self._waiters = [0] * self._writers
        self._room_locks = [asyncio.Lock() for _ in range(self._writers)]
        self._topics: dict[str, tuple[bytes, int]] = {}
        self._tick_handle: asyncio.TimerHandle | None = None  # see _tick
        self._closed = False

    @classmethod
    def open(cls, instance: str, *, ring_bytes: int, timeout_s: float = DEFAULT_TIMEOUT_S,
             busy_wait_s: float = DEFAULT_BUSY_WAIT_S,
             policy: WaitPolicy = DEFAULT_POLICY) -> WriteChannel:
        """Attach to the shared tables of the broker `instance` on this host (call on the
        event loop); the rings come with the first append.

        Raises:
            SegmentMissing: no broker of that instance runs here.
        """
        shm = BrokerShm.attach(instance)
        try:
            return cls(shm, ring_bytes=ring_bytes, timeout_s=timeout_s,
                       busy_wait_s=busy_wait_s, policy=policy)
        except BaseException:
            shm.detach()
            raise

    def attach(self) -> None:
        """Take a registry row and create our rings with every writer (idempotent).

        Raises:
            ServiceUnavailable: the registry is full or the rings could not be made; nothing
                is left behind and the next call tries again.
        """
        if self._rings is not None:
            return
        try:
            slot = attach_producer(self._shm, self._ring_bytes, _COMPLETION_RING_BYTES,
                                   completion_fifo=True)
        except IpcError as err:
            raise ServiceUnavailable(f"the acceptor cannot attach to the writers: {err}") from err
        requests = [r.producer(self._policy) for r in slot.requests]
        completions = [r.consumer(_COMPLETION_POLICY) for r in slot.completions]
        self._rings = _Rings(slot, requests, completions)
        self._max_payload = min(r.max_payload_bytes for r in requests)
        for w, consumer in enumerate(completions):
            self._loop.add_reader(consumer.fileno(), self._on_bell, w)
            self._loop.call_soon(self._on_bell, w)  # reads (none yet), then announces
        log.info("acceptor attached to %d writers (registry row %d)", self._writers, slot.row)

    # -- state -----------------------------------------------------------------------------------

    @property
    def writers(self) -> int:
        return self._writers

    @property
    def in_flight(self) -> int:
        """Appends written and not yet answered."""
        return len(self._pending)

    @property
    def max_batch_bytes(self) -> int:
        """Largest ring record: an encoded batch plus its sizes, tag codes and topic."""
        return self._max_payload

    # -- appending -------------------------------------------------------------------------------

    async def append(self, topic: str, queue_id: int, batch: EncodedBatch,
                     tag_hashes: np.ndarray) -> Appended:
        """Append `batch` through the owning writer's ring; see `appender.Appender`.

        Raises:
            ChannelClosed: the channel is closed; nothing was sent.
            ServiceUnavailable: the first append could not attach to the writers; nothing sent.
            MessageIllegal: the batch does not fit in one ring record; nothing was sent.
            WritePathBusy: the ring stayed full for `busy_wait_s`; nothing was sent.
            AppendRejected, ServiceUnavailable: the writer refused; nothing was stored.
            WriterGone, SendTimedOut: outcome unknown.
        """
        if self._closed:
            raise ChannelClosed("the acceptor's write channel is closed (stopping)")
        self.attach()
        raw_topic, topic_hash = self._topic(topic)
        writer = queue_owner(topic_hash, queue_id, self._writers)
        rid = next(self._ids)
        pieces = encode_append(rid, raw_topic, queue_id, batch.sizes, tag_hashes, batch.data)
        size = sum(len(piece) for piece in pieces)
        if size > self._max_payload:
            raise MessageIllegal(f"a batch of {batch.count} records takes {size} bytes, more "
                                 f"than the write path's {self._max_payload}-byte limit "
                                 "(ring.bytes / 2); send smaller batches")
        completion = await self._submit(rid, writer, pieces, size)
        return Appended(completion.first_offset, completion.queue_offset,
                        completion.store_timestamp_ms, completion.count)

    async def _submit(self, rid: int, writer: int, pieces: list[bytes | memoryview],
                      size: int) -> Completion:
        pid = int(self._writer_stats[writer]["pid"])
        pending = _Pending(self._loop.create_future(), writer,
                           0 if pid in self._dead_pids else pid,
                           self._loop.time() + self.timeout_s)
        self._pending[rid] = pending
        self._in_flight[writer] += 1
        try:
            if self._waiters[writer] or not self._try_write(writer, pieces, size):
                await self._write_when_room(writer, pieces, size)
            self._arm_tick()
            return await pending.future
        finally:
            self._pending.pop(rid, None)
            self._in_flight[writer] -= 1

    def _try_write(self, writer: int, pieces: list[bytes | memoryview], size: int) -> bool:
        assert self._rings is not None
        ring = self._rings.requests[writer]
        try:
            view = ring.try_reserve(size, KIND_APPEND)
            if view is None:
                return False
            pos = 0
            for piece in pieces:
                end = pos + len(piece)
                view[pos:end] = piece
                pos = end
            ring.commit()
        except RingClosed as err:
            pid = int(self._writer_stats[writer]["pid"])
            raise WriterGone(writer, pid, "it closed our request ring") from err
        if not self._to_ring:
            self._loop.call_soon(self._ring_doorbells)
        self._to_ring.add(writer)
        return True

    def _ring_doorbells(self) -> None:
        """Post the doorbell of each writer that got requests this loop turn and is parked:
        one post (a system call that wakes a process) for all of a turn's requests."""
        writers, self._to_ring = self._to_ring, set()
        for writer in writers:
            state = int(self._bell_states[writer])
            if state > 0:
                self._doorbells[writer].wake(state)

    async def _write_when_room(self, writer: int, pieces: list[bytes | memoryview],
                               size: int) -> None:
        """Wait (FIFO per writer) for room, at most `busy_wait_s`.

        Raises:
            WritePathBusy: no room in time; nothing was written.
        """
        started = self._loop.time()
        self._waiters[writer] += 1
        try:
            async with self._room_locks[writer]:
                for delay_s in itertools.chain(_ROOM_POLL_S, itertools.repeat(_ROOM_POLL_S[-1])):
                    if self._try_write(writer, pieces, size):
                        return
                    waited_s = self._loop.time() - started
                    if waited_s >= self.busy_wait_s or self._closed:
                        raise WritePathBusy(writer, waited_s)
                    await asyncio.sleep(delay_s)
        finally:
            self._waiters[writer] -= 1

    def _topic(self, topic: str) -> tuple[bytes, int]:
        known = self._topics.get(topic)
        if known is None:
            if len(self._topics) > 100_000:  # topics come and go: keep the cache bounded
                self._topics.clear()
            known = self._topics[topic] = (topic.encode(), java_string_hash(topic))
        return known

    # -- completions (loop side) -----------------------------------------------------------------

    def _on_completions(self, completions: list[Completion]) -> None:
        for completion in completions:
            pending = self._pending.pop(completion.request_id, None)
            if pending is None or pending.future.done():
                continue  # answered already (deadline, writer death): a late answer
            if completion.status is Status.OK:
                pending.future.set_result(completion)
            else:
                pending.future.set_exception(_refusal(pending.writer, completion))

    def _writer_died(self, writer: int, pid: int) -> None:
        if pid in self._dead_pids:
            return
        self._dead_pids.add(pid)
        failed = 0
        for rid, pending in list(self._pending.items()):
            if pending.writer == writer and pending.writer_pid == pid:
                del self._pending[rid]
                if not pending.future.done():
                    pending.future.set_exception(WriterGone(writer, pid))
                    failed += 1
        log.warning("writer-%d (pid %d) died; %d appends in flight failed (outcome unknown)",
                    writer, pid, failed)

    # -- completions: read on the loop when a bell rings ------------------------------------------

    def _on_bell(self, writer: int) -> None:
        """Writer `writer`'s completion bell rang (or we were asked to look): read everything,
        resolve it, and announce ourselves again before going back to the loop."""
        rings = self._rings
        if rings is None or self._closed:
            return
        consumer = rings.completions[writer]
        consumer.retire()
        try:
            while True:
                records = consumer.read_batch(_READ_BATCH)
                if records:
                    self._on_completions(_decode_all(writer, records))
                    continue
                consumer.announce()
                if not consumer.is_readable():
                    return
                consumer.retire()  # published before the writer saw the announcement
        except RingClosed:
            if not self._closed:
                log.warning("writer-%d closed its completion ring", writer)
                self._loop.remove_reader(consumer.fileno())
                self._check_writer(writer, closed=True)

    def _arm_tick(self) -> None:
        if self._tick_handle is None:
            self._tick_handle = self._loop.call_later(_SLICE_S, self._tick)

    def _tick(self) -> None:
        """Every `_SLICE_S` while appends are in flight: fail those past their deadline, look
        for dead writers, and read the rings once more in case a bell's post was lost (see
        wakeup's docstring)."""
        self._tick_handle = None
        if self._closed:
            return
        now = self._loop.time()
        for rid, pending in list(self._pending.items()):
            if pending.deadline <= now:
                del self._pending[rid]
                if not pending.future.done():
                    pending.future.set_exception(SendTimedOut(pending.writer, self.timeout_s))
        for writer in range(self._writers):
            if self._in_flight[writer]:
                self._on_bell(writer)
                self._check_writer(writer)
        if self._pending:
            self._arm_tick()

    def _check_writer(self, writer: int, *, closed: bool = False) -> None:
        """If appends are in flight on `writer` and it is dead (or closed our ring), fail them."""
        if not self._in_flight[writer]:
            return
        pid = int(self._writer_stats[writer]["pid"])
        if closed or not pid or not is_process_alive(pid):
            self._writer_died(writer, pid)

    # -- closing ---------------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no append is in flight (or `timeout_s` passed); True if none is."""
        deadline = self._loop.time() + timeout_s
        while self._pending and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not self._pending

    def close(self) -> None:
        """Fail what is in flight with `ChannelClosed`, stop the threads, free our row and
        unlink our rings (if attached). Idempotent."""
        if self._closed:
            return
        self._closed = True
        rings = self._rings
        for consumer in rings.completions if rings is not None else ():
            self._loop.remove_reader(consumer.fileno())
        gone = ChannelClosed("the acceptor's write channel closed with the append in flight; "
                             "the message may or may not be stored")
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(gone)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if rings is not None:
            for producer in rings.requests:
                producer.close()
            for consumer in rings.completions:
                consumer.close()
            detach_producer(self._shm, rings.slot)
        self._shm.detach()


def _decode_all(writer: int, records: list[tuple[int, bytes]]) -> list[Completion]:
    completions = []
    for _kind, payload in records:
        try:
            completions.append(decode_completion(payload))
        except RemoteProtocolError as err:
            log.error("writer-%d sent a malformed completion: %s", writer, err)
    return completions


def _refusal(writer: int, completion: Completion) -> BrokerRejected:
    """The error for a completion that is not OK (nothing was stored)."""
    text = f"writer-{writer} refused the append ({completion.status.name}): {completion.message}"
    if completion.status in (Status.STORE_ERROR, Status.SHUTTING_DOWN):
        return ServiceUnavailable(text)
    return AppendRejected(text)
