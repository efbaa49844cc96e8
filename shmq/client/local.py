"""Same-host clients: LocalProducer publishes through shared-memory rings (no TCP, no syscall
on the fast path), LocalConsumer reads a queue straight from the store's mappings.

Theory of operation. A LocalProducer attaches to a running broker (ipc.registry): it takes a
registry row and creates one request ring and one completion ring per writer. A send encodes
its records completely (message.encoder: CRC, hosts, properties — the producer's core does that
work), picks the queue (given, by sharding key, or round-robin), writes ONE ring record to the
queue's owning writer (protocol.local) and rings the writer's doorbell only if it sleeps. The
writer answers on the completion ring once the records are published, dispatched and, when
asked, flushed: only then does a send succeed.

Completions are read under one lock: a synchronous send reads its own completion inline (the
lowest latency), asynchronous sends are completed by a pump thread that runs while any of them
is outstanding. While waiting, the producer checks that the writer process lives: if it died,
the sends in flight fail with `WriterGone` instead of hanging.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Self

import numpy as np

from shmq.client.errors import (
    BrokerBusy,
    BrokerNotRunning,
    ProducerClosed,
    SendFailed,
    SendTimeout,
    WriterGone,
)
from shmq.client.message import BatchSendResult, Message, SendResult
from shmq.ipc.errors import PeerGone, RingClosed, SegmentMissing
from shmq.ipc.registry import (
    BrokerShm,
    NoFreeSlot,
    WriterStatsRow,
    attach_producer,
    detach_producer,
    doorbell_name,
    read_info,
)
from shmq.ipc.ring import RingConsumer, RingProducer
from shmq.ipc.wakeup import (
    DEFAULT_POLICY,
    WaitPolicy,
    Waker,
    answer_policy,
    is_process_alive,
    open_semaphore,
    wait_policy,
)
from shmq.message.encoder import encode_batch
from shmq.message.msgid import UniqKeyGenerator, encode_offset_msg_id, pack_host
from shmq.message.properties import encode_properties
from shmq.message.taghash import java_string_hash, tag_hash
from shmq.protocol.local import (
    FLAG_SYNC,
    KIND_APPEND,
    Completion,
    Status,
    decode_completion,
    encode_append,
    queue_owner,
)

__all__ = ["LocalProducer"]

_COMPLETION_RING_BYTES = 1 << 20
_WAIT_SLICE_S = 0.05
#: A queue id, a selector (queue count -> queue id), or None: sharding key or round-robin.
QueueChoice = int | Callable[[int], int] | None
_PUMP_LINGER_S = 0.1
#: the tag codes of one message without tags (read-only: shared by every such send)
_NO_TAG = np.zeros(1, dtype=np.int64)
_NO_TAG.flags.writeable = False


class _Outcome:
    """The answer to a send its caller waits for (`send`, `send_batch`): set once, by whichever
    thread drains its completion, under the producer's lock; polled by the caller, which drains
    completions itself. A `Future` would cost ~3 us more per send (its condition variable)."""

    __slots__ = ("_error", "_result")

    def __init__(self) -> None:
        self._result: BatchSendResult | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def set_result(self, result: BatchSendResult) -> None:
        self._result = result

    def set_exception(self, error: BaseException) -> None:
        self._error = error

    def result(self) -> BatchSendResult:
        if self._error is not None:
            raise self._error
        assert self._result is not None, "result() before done()"
        return self._result


@dataclass
class _Pending:
    #: a Future for async sends (callbacks get it), an _Outcome for waited ones
    future: Future[BatchSendResult] | _Outcome
    writer: int
    topic: str
    queue_id: int
    sizes: np.ndarray
    keys: tuple[str, int, int]  # UNIQ_KEY block: head, first counter, count
    #: The writer's pid when the request was written; 0 when no writer was alive (then the
    #: restarted writer takes it from the ring, and only the timeout can fail it).
    writer_pid: int
    callback: Callable[[Future[BatchSendResult]], None] | None = None

    def call_back(self) -> None:
        """Call the callback, if any (only async sends, whose answer is a Future, have one)."""
        if self.callback is not None:
            assert isinstance(self.future, Future)
            self.callback(self.future)


class LocalProducer:
    """Publishes to the broker `instance` on this host through shared memory.

    Args:
        instance: the broker's instance name (`shmq start --instance`).
        timeout_s: default time a send may take, ring back-pressure included.
        sync_flush: ask writers to flush each batch before answering (SYNC_FLUSH per send).

    Raises:
        BrokerNotRunning: no such broker runs on this host.
    """

    def __init__(self, instance: str = "default", *, timeout_s: float = 3.0,
                 sync_flush: bool = False) -> None:
        try:
            self._info = read_info(instance)
            self._shm = BrokerShm.attach(instance)
        except SegmentMissing as err:
            raise BrokerNotRunning(instance) from err
        self.instance = instance
        self.timeout_s = timeout_s
        self._flags = FLAG_SYNC if sync_flush else 0
        self._writers = self._shm.writers
        #: the writers' rows of the stats table, read for their pids
        self._writer_rows = [WriterStatsRow(self._shm.stats.array, w)
                             for w in range(self._writers)]
        self._queues = int(self._info["default_queues"])
        # the broker's ring.spin_us and ring.low_latency (a broker older than spin_us: default)
        spin_us = float(self._info.get("spin_us", DEFAULT_POLICY.max_spin_us))
        low_latency = bool(self._info["low_latency"])
        self._room_policy = wait_policy(spin_us, low_latency)  # a full request ring
        self._answer_policy = answer_policy(spin_us, low_latency)
        self._store_host = pack_host(self._info["store_host"], int(self._info["store_port"]))
        #: Offset message ids are this prefix (store host and port) + the offset in hex.
        self._msgid_prefix = encode_offset_msg_id(str(self._info["store_host"]),
                                                  int(self._info["store_port"]), 0)[:-16]
        self._max_body = int(self._info["max_body_bytes"])
        self._born_host = pack_host("127.0.0.1", os.getpid() & 0xFFFF)
        self._uniq = UniqKeyGenerator("127.0.0.1")
        self._ids = itertools.count(1)
        self._rr: dict[str, itertools.count[int]] = {}
        self._topics: dict[str, tuple[bytes, int]] = {}
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._pump: threading.Thread | None = None
        self._closed = False
        #: Writer pids seen dead: a request written after that waits for the restarted writer.
        self._dead_writers: set[int] = set()
        try:
            self._slot = attach_producer(self._shm, int(self._info["ring_bytes"]),
                                         _COMPLETION_RING_BYTES)
        except NoFreeSlot as err:
            self._shm.detach()
            raise BrokerBusy(str(err)) from err
        self._requests: list[RingProducer] = [r.producer(self._room_policy)
                                              for r in self._slot.requests]
        self._completions: list[RingConsumer] = [r.consumer(self._answer_policy)
                                                 for r in self._slot.completions]
        self._doorbells = [Waker(open_semaphore(instance, doorbell_name(w)))
                           for w in range(self._writers)]
        self._bell_states = self._shm.doorbells.array

    # --- registration -------------------------------------------------------------------------
    def close(self) -> None:
        """Wait briefly for sends in flight, then leave: unlink our rings, free our row."""
        if self._closed:
            return
        deadline = time.monotonic() + self.timeout_s
        while self._pending and time.monotonic() < deadline:
            self._pump_once(_WAIT_SLICE_S)
        self._closed = True
        self._fail_all(ProducerClosed("producer closed before the broker answered"))
        for req in self._requests:
            req.close()
        for cmp in self._completions:
            cmp.close()
        detach_producer(self._shm, self._slot)
        self._writer_rows = []  # their views into the stats table go first
        self._shm.detach()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending ------------------------------------------------------------------------------
    @property
    def wait_policy(self) -> WaitPolicy:
        """How this producer waits for the answers to its sends (`ipc.wakeup.answer_policy`
        of the broker's `ring.spin_us` and `ring.low_latency`)."""
        return self._answer_policy

    def send(self, topic: str, body: bytes | Message, *, tags: str | None = None,
             keys: str | Sequence[str] | None = None, properties: Mapping[str, str] | None = None,
             queue_id: QueueChoice = None, sharding_key: str | None = None,
             timeout_s: float | None = None) -> SendResult:
        """Send one message and wait until it is stored; return where.

        Raises:
            SendFailed: the broker refused it (nothing stored). BrokerBusy: back-pressure
            outlasted the timeout (nothing sent). SendTimeout, WriterGone: unknown outcome.
        """
        # a plain body goes as bytes: _prepare's cheaper path (no Message, no branches)
        plain = type(body) is bytes and tags is None and keys is None and not properties
        msg = body if plain or isinstance(body, Message) else Message(
            body, tags, keys, properties or {})
        timeout = self.timeout_s if timeout_s is None else timeout_s
        rid, pending = self._submit(topic, [msg], queue_id, sharding_key, timeout, None,
                                    waited=True)
        return self._wait(rid, pending, time.monotonic() + timeout).first()

    def send_batch(self, topic: str, messages: Sequence[Message | bytes], *,
                   queue_id: QueueChoice = None, sharding_key: str | None = None,
                   timeout_s: float | None = None) -> BatchSendResult:
        """Send messages to ONE queue as one batch (stored contiguously, in order)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        rid, pending = self._submit(topic, messages, queue_id, sharding_key, timeout, None,
                                    waited=True)
        return self._wait(rid, pending, time.monotonic() + timeout)

    def send_async(self, topic: str, body: bytes | Message, *, tags: str | None = None,
                   keys: str | Sequence[str] | None = None,
                   properties: Mapping[str, str] | None = None, queue_id: QueueChoice = None,
                   sharding_key: str | None = None,
                   callback: Callable[[Future[BatchSendResult]], None] | None = None,
                   ) -> Future[BatchSendResult]:
        """Send without waiting; the future's result is a one-message BatchSendResult."""
        msg = body if isinstance(body, Message) else Message(body, tags, keys, properties or {})
        return self.send_batch_async(topic, [msg], queue_id=queue_id,
                                     sharding_key=sharding_key, callback=callback)

    def send_batch_async(self, topic: str, messages: Sequence[Message | bytes], *,
                         queue_id: QueueChoice = None, sharding_key: str | None = None,
                         callback: Callable[[Future[BatchSendResult]], None] | None = None,
                         ) -> Future[BatchSendResult]:
        _, pending = self._submit(topic, messages, queue_id, sharding_key, self.timeout_s,
                                  callback)
        self._ensure_pump()
        assert isinstance(pending.future, Future)
        return pending.future

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every send in flight has its answer (or `timeout_s` passes)."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while self._pending and time.monotonic() < deadline:
            self._pump_once(_WAIT_SLICE_S)
        if self._pending:
            raise SendTimeout(f"{len(self._pending)} sends still unanswered")

    def _choose_queue(self, topic: str, queue_id: QueueChoice, sharding_key: str | None) -> int:
        if callable(queue_id):  # a selector: queue count -> queue id
            queue_id = queue_id(self._queues)
        if queue_id is not None:
            if not 0 <= queue_id < self._queues:
                raise SendFailed(f"queue {queue_id} of {topic!r} does not exist "
                                 f"(0..{self._queues - 1})", "REJECTED")
            return queue_id
        if sharding_key is not None:
            return (java_string_hash(sharding_key) & 0x7FFFFFFF) % self._queues
        rr = self._rr.get(topic)
        if rr is None:
            rr = self._rr[topic] = itertools.count()
        return next(rr) % self._queues

    def _topic(self, topic: str) -> tuple[bytes, int]:
        known = self._topics.get(topic)
        if known is None:
            raw = topic.encode()
            if not raw or len(raw) > 127 or any(c in topic for c in "\x00\x01\x02 "):
                raise SendFailed(f"illegal topic name {topic!r}", "REJECTED")
            known = self._topics[topic] = (raw, java_string_hash(topic))
        return known

    def _submit(self, topic: str, messages: Sequence[Message | bytes], queue_id: QueueChoice,
                sharding_key: str | None, timeout: float,
                callback: Callable[[Future[BatchSendResult]], None] | None, *,
                waited: bool = False) -> tuple[int, _Pending]:
        """Encode and write one append request; its _Pending (an _Outcome if `waited`, the
        caller then waits for it; else a Future the completion pump answers)."""
        if self._closed:
            raise ProducerClosed("producer is closed")
        if not messages:
            raise SendFailed("a batch needs at least one message", "REJECTED")
        raw_topic, thash = self._topic(topic)
        qid = self._choose_queue(topic, queue_id, sharding_key)
        writer = queue_owner(thash, qid, self._writers)
        bodies, props, tags, keys = self._prepare(messages)
        batch = encode_batch(raw_topic, qid, bodies, props,
                             born_timestamp_ms=int(time.time() * 1000), born_host=self._born_host,
                             store_host=self._store_host)
        rid = next(self._ids)
        pieces = encode_append(rid, raw_topic, qid, batch.sizes, tags, batch.data,
                               flags=self._flags)
        pid = self._writer_rows[writer]["pid"]  # no liveness check on the fast path
        pending = _Pending(_Outcome() if waited else Future(), writer, topic, qid, batch.sizes,
                           keys, 0 if pid in self._dead_writers else pid, callback)
        with self._lock:
            self._pending[rid] = pending
        try:
            self._write(writer, pieces, timeout)
        except BaseException:
            with self._lock:
                self._pending.pop(rid, None)
            raise
        return rid, pending

    def _prepare(self, messages: Sequence[Message | bytes],
                 ) -> tuple[list[bytes], list[bytes], np.ndarray, tuple[str, int, int]]:
        """Bodies, encoded properties (each with its UNIQ_KEY), tag codes, the key block."""
        limit = self._max_body
        n = len(messages)
        head, first = self._uniq.new_key_block(n)
        uniq = b"UNIQ_KEY\x01" + head.encode()
        if all(type(m) is bytes for m in messages):  # plain bodies: no per-message branches
            raw: list[bytes] = messages  # type: ignore[assignment]
            fmt = uniq + b"%04X\x02"
            if n == 1:
                size = len(raw[0])
                if not 0 < size <= limit:
                    raise SendFailed(f"message body of {size} bytes: must be 1..{limit}",
                                     "REJECTED")
                return list(raw), [fmt % (first & 0xFFFF)], _NO_TAG, (head, first, 1)
            lengths = list(map(len, raw))
            if min(lengths) < 1 or max(lengths) > limit:
                bad = next(x for x in lengths if not 0 < x <= limit)
                raise SendFailed(f"message body of {bad} bytes: must be 1..{limit}", "REJECTED")
            return (list(raw), [fmt % ((first + i) & 0xFFFF) for i in range(n)],
                    np.zeros(n, dtype=np.int64), (head, first, n))
        tags = np.zeros(n, dtype=np.int64)
        bodies: list[bytes] = []
        props: list[bytes] = []
        for i, m in enumerate(messages):
            if isinstance(m, Message):
                body, extra = m.body, _message_properties(m)
                if m.tags:
                    tags[i] = tag_hash(m.tags)
            else:
                body, extra = m, b""
            if not 0 < len(body) <= limit:
                raise SendFailed(f"message body of {len(body)} bytes: must be 1..{limit}",
                                 "REJECTED")
            bodies.append(body)
            props.append(b"%s%s%04X\x02" % (extra, uniq, (first + i) & 0xFFFF))
        return bodies, props, tags, (head, first, n)

    def _write(self, writer: int, pieces: list[bytes | memoryview], timeout: float) -> None:
        size = sum(len(p) for p in pieces)
        ring = self._requests[writer]
        deadline = time.monotonic() + timeout
        with self._send_lock:
            while True:
                view = ring.try_reserve(size, KIND_APPEND)
                if view is not None:
                    break
                if not ring.wait_writable(size, max(0.0, deadline - time.monotonic())):
                    raise BrokerBusy(f"writer-{writer}'s ring stayed full for {timeout:.1f} s; "
                                     "nothing was sent")
            pos = 0
            for piece in pieces:
                view[pos : pos + len(piece)] = piece
                pos += len(piece)
            ring.commit()
        state = int(self._bell_states[writer])
        if state > 0:
            self._doorbells[writer].wake(state)

    # --- completions --------------------------------------------------------------------------
    def _wait(self, rid: int, pending: _Pending, deadline: float) -> BatchSendResult:
        while not pending.future.done():
            left = deadline - time.monotonic()
            if left <= 0:
                with self._lock:
                    self._pending.pop(rid, None)
                raise SendTimeout(f"no answer from writer-{pending.writer} within the timeout; "
                                  "the message may or may not be stored")
            self._pump_once(min(left, _WAIT_SLICE_S), only=pending.writer)
        return pending.future.result()

    def _ensure_pump(self) -> None:
        with self._lock:
            if self._pump is None or not self._pump.is_alive():
                self._pump = threading.Thread(target=self._pump_loop, daemon=True,
                                              name="shmq-local-completions")
                self._pump.start()

    def _pump_loop(self) -> None:
        """Complete async sends; linger a little when idle (a new thread per burst costs)."""
        idle_since = time.monotonic()
        while not self._closed:
            if self._pending:
                self._pump_once(_WAIT_SLICE_S)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > _PUMP_LINGER_S:
                return
            else:
                time.sleep(0.0005)

    def _pump_once(self, wait_s: float, only: int | None = None) -> None:
        """Read completions (waiting up to `wait_s` for one); check writers still live."""
        with self._lock:
            writers = [only] if only is not None else sorted({p.writer for p in self._pending.values()})
            got = 0
            for w in writers:
                got += self._drain(w)
            if got or not writers:
                return
            first = writers[0]
            try:
                self._completions[first].wait_readable(wait_s / max(1, len(writers)))
            except (PeerGone, RingClosed):
                pass
            for w in writers:
                if self._drain(w) == 0:
                    self._check_writer(w)

    def _drain(self, writer: int) -> int:
        try:
            records = self._completions[writer].read_batch(256)
        except (PeerGone, RingClosed):
            return 0
        for _kind, payload in records:
            self._complete(decode_completion(payload))
        return len(records)

    def _complete(self, c: Completion) -> None:
        pending = self._pending.pop(c.request_id, None)
        if pending is None:
            return  # already failed (timeout, writer gone): a late answer
        if c.status is not Status.OK:
            pending.future.set_exception(SendFailed(
                f"writer-{pending.writer} refused the send ({c.status.name}): {c.message}",
                c.status.name))
        else:
            pending.future.set_result(self._results(pending, c))
        pending.call_back()

    def _results(self, p: _Pending, c: Completion) -> BatchSendResult:
        if len(p.sizes) == 1:
            offsets: Sequence[int] | np.ndarray = (c.first_offset,)
        else:
            offsets = np.concatenate(([0], np.cumsum(p.sizes[:-1]))) + c.first_offset
        return BatchSendResult(p.topic, p.queue_id, c.queue_offset, p.keys, offsets,
                               self._msgid_prefix)

    def _check_writer(self, writer: int) -> None:
        pid = self._writer_rows[writer]["pid"]
        if pid and is_process_alive(pid):
            return
        self._dead_writers.add(pid)
        gone = WriterGone(f"writer-{writer} (pid {pid}) died with sends in flight; they may "
                          "or may not have been stored")
        for rid, p in list(self._pending.items()):
            if p.writer == writer and p.writer_pid == pid:
                del self._pending[rid]
                p.future.set_exception(gone)
                p.call_back()

    def _fail_all(self, err: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(err)


def _message_properties(m: Message) -> bytes:
    """The properties string of `m` without its UNIQ_KEY (appended by the caller)."""
    if not m.tags and not m.keys and not m.properties:
        return b""
    p: dict[str, str] = dict(m.properties)
    if m.tags:
        p["TAGS"] = m.tags
    if m.keys:
        p["KEYS"] = m.keys if isinstance(m.keys, str) else " ".join(m.keys)
    return encode_properties(p)
