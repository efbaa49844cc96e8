"""Push consumers: `AsyncPushConsumer` and its synchronous facade `PushConsumer` call an
application listener for every message of the subscribed topics (Java `DefaultMQPushConsumer`;
spec/behaviours.md §3-§7, §10, §12).

Theory of operation
-------------------
* **Membership.** The consumer registers with its `ClientInstance`, whose heartbeats name the
  group, CONSUME_PASSIVELY, the message model and the subscriptions — plus `%RETRY%<group>`
  ("*") in clustering mode, where failed messages come back. A `Rebalancer` decides which queues
  it owns (all of them when broadcasting) and runs every 20 s, when a broker sends
  NOTIFY_CONSUMER_IDS_CHANGED, and when a subscribed topic's route changes.
* **Process queues.** Each owned queue gets a `ProcessQueue` (the messages pulled and not yet
  finished, in offset order) and a pull loop: long-polling pulls (15 s hold) from the fetch
  position, each carrying the in-memory offset (COMMIT_OFFSET) in clustering mode; a queue
  holding `pull_threshold_per_queue` unfinished messages pauses its pulls (flow control); a
  failed pull waits 3 s. A new queue starts at the group's stored offset, else at the
  `consume_from` policy's.
* **Concurrent listener** (default): every message is handed to a thread of the consume pool
  (a pull's messages in chunks of `_CHUNK`, one listener call per message).
  When it finishes, it leaves the process queue, and the queue's offset becomes the smallest
  offset still unfinished (or one past the largest pulled): offsets never pass a message that
  is still being consumed, whatever order the threads finish in. A failure (the listener raised
  or returned RECONSUME_LATER / False) is sent back (CONSUMER_SEND_MSG_BACK, delay chosen by the
  broker, `max_reconsume_times` before the dead-letter queue) and then counts as finished; if
  the send-back fails the message is consumed again locally 5 s later. Broadcasting consumers
  drop failures (logged), as the reference clients do.
* **Orderly listener.** One message at a time per queue, in queue order. In clustering mode a
  queue is consumed only while this client holds its broker-side lock (LOCK_BATCH_MQ before the
  queue is taken, renewed every 20 s, considered expired after 30 s without renewal; released
  with UNLOCK_BATCH_MQ when the queue is given up and at shutdown). A failure suspends the queue
  for `suspend_current_queue_s` and redelivers the same message (its reconsume count grows);
  nothing is sent back.
* **Offsets** are persisted every `persist_interval_s` (5 s), when a queue is given up and at
  shutdown: at the broker (clustering) or in the local offset file (broadcasting).

Shutdown stops pulling, waits up to `shutdown_timeout_s` for listeners in progress, persists
offsets, unlocks, unregisters from the brokers and closes the connections. Delivery is
at-least-once: a crash, a rebalance or a failed commit can deliver a message again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self, TypeVar

from shmq.errors import ClientError
from shmq.protocol import (
    ConsumeFromWhere,
    ConsumerData,
    ConsumeType,
    MessageModel,
    MessageQueue,
)
from shmq.protocol.admin import ConsumerRunningInfo, ProcessQueueInfo
from shmq.protocol.admin import ConsumeStatus as ConsumeStatusInfo

from .assignment import DEFAULT_REBALANCE_INTERVAL_S, Rebalancer, Subscriptions, retry_topic
from .broker_requests import (
    PROP_CONSUME_ORDERLY,
    PROP_CONSUME_TYPE,
    PROP_CONSUMER_START_TIMESTAMP,
    PROP_THREADPOOL_CORE_SIZE,
)
from .consumer_api import (
    DEFAULT_MAX_RECONSUME_TIMES,
    DEFAULT_PULL_BATCH_SIZE,
    DEFAULT_SUSPEND_MS,
    ConsumerApi,
)
from .errors import ConsumerClosed
from .instance import ClientInstance
from .loop import LoopThread
from .offsets import LocalOffsetStore, OffsetStore, RemoteOffsetStore, start_offset
from .rebalance import AllocateStrategy, allocate_averagely
from .received import PullStatus, ReceivedMessage
from .routes import DEFAULT_NAMESRV, TopicRoute

__all__ = [
    "AsyncPushConsumer",
    "ConsumeStatus",
    "Listener",
    "ProcessQueue",
    "PushConsumer",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Java `pullThresholdForQueue`
DEFAULT_PULL_THRESHOLD_PER_QUEUE: Final = 1000
#: Java `persistConsumerOffsetInterval`
DEFAULT_PERSIST_INTERVAL_S: Final = 5.0
#: Java `rocketmq.client.rebalance.lockInterval`
DEFAULT_LOCK_INTERVAL_S: Final = 20.0
#: Java `rocketmq.client.rebalance.lockMaxLiveTime`: a lock not renewed for this long is stale
LOCK_EXPIRY_S: Final = 30.0
#: Java `suspendCurrentQueueTimeMillis`
DEFAULT_SUSPEND_CURRENT_QUEUE_S: Final = 1.0
#: Java `PULL_TIME_DELAY_MILLS_WHEN_EXCEPTION`
_PULL_ERROR_DELAY_S: Final = 3.0
#: Java `PULL_TIME_DELAY_MILLS_WHEN_FLOW_CONTROL`
_FLOW_CONTROL_DELAY_S: Final = 0.05
#: a failed send-back: consume the message again locally after this long (Java: 5 s)
_LOCAL_RETRY_DELAY_S: Final = 5.0
#: messages a consume thread takes per hand-over (one listener call each); see _submit_chunk
_CHUNK: Final = 8
#: an orderly queue whose lock is missing is looked at again after this long
_NOT_LOCKED_DELAY_S: Final = 1.0
_FACADE_MARGIN_S: Final = 30.0


class ConsumeStatus(enum.Enum):
    """A listener's verdict (Java `ConsumeConcurrentlyStatus`; for orderly listeners
    RECONSUME_LATER means SUSPEND_CURRENT_QUEUE_A_MOMENT)."""

    CONSUME_SUCCESS = "CONSUME_SUCCESS"
    RECONSUME_LATER = "RECONSUME_LATER"


#: called with each message; None, True or CONSUME_SUCCESS mean consumed; False,
#: RECONSUME_LATER or an exception mean "deliver again later"
Listener = Callable[[ReceivedMessage], "ConsumeStatus | bool | None"]


def _succeeded(result: object) -> bool:
    return result is None or result is True or result is ConsumeStatus.CONSUME_SUCCESS


@dataclass(eq=False)
class ProcessQueue:
    """The messages of one owned queue that were pulled and are not finished yet."""

    mq: MessageQueue
    next_offset: int  #: fetch position
    messages: OrderedDict[int, ReceivedMessage] = field(default_factory=OrderedDict)
    max_offset_seen: int = -1
    dropped: bool = False
    locked: bool = False
    lock_time: float = 0.0  #: monotonic time of the last successful lock
    consuming: bool = False  #: an orderly listener call is in progress
    pull_task: asyncio.Task[None] | None = None
    orderly_task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_pull_ms: int = 0  #: wall clock of the last answered pull (running info)
    last_consume_ms: int = 0  #: wall clock of the last finished listener call

    def put(self, messages: Iterable[ReceivedMessage]) -> None:
        """Add pulled messages (pulls come in offset order, so the dict stays sorted)."""
        for msg in messages:
            if msg.queue_offset not in self.messages and msg.queue_offset > self.max_offset_seen:
                self.messages[msg.queue_offset] = msg
                self.max_offset_seen = msg.queue_offset

    def finish(self, offsets: Iterable[int]) -> int | None:
        """Remove finished messages; return the queue's offset to commit now (the smallest
        unfinished offset, else one past the largest pulled), None if nothing was pulled."""
        for offset in offsets:
            self.messages.pop(offset, None)
        if self.messages:
            return next(iter(self.messages))
        return self.max_offset_seen + 1 if self.max_offset_seen >= 0 else None

    def is_locked(self, now: float) -> bool:
        """Holds a broker lock renewed within `LOCK_EXPIRY_S`."""
        return self.locked and now - self.lock_time < LOCK_EXPIRY_S

    def __len__(self) -> int:
        return len(self.messages)


class AsyncPushConsumer:
    """A listener-driven consumer for asyncio code; see the module docstring.

    Args:
        group: consumer group.
        namesrv: name-server addresses, "a:9876;b:9876" or a list.
        listener: called for each message on a thread of the consume pool (or use
            `register_listener`).
        orderly: consume each queue one message at a time, in order, under broker locks.
        message_model: CLUSTERING (share the queues) or BROADCASTING (read them all).
        consume_from: where a group without a stored offset starts.
        consume_timestamp_ms: the start time for CONSUME_FROM_TIMESTAMP.
        allocate: clustering allocation strategy (`rebalance.py`).
        consume_threads: size of the consume pool.
        pull_batch_size: messages asked for per pull.
        pull_threshold_per_queue: pause a queue's pulls while it holds this many unfinished.
        max_reconsume_times: failures before the broker moves a message to the DLQ.
        suspend_current_queue_s: orderly: pause after a failure.
        persist_interval_s, rebalance_interval_s, lock_interval_s: periods.
        shutdown_timeout_s: how long shutdown waits for listeners in progress.
        offset_dir: where broadcasting offsets are kept (default ~/.shmq_offsets).
        instance: share this `ClientInstance`; default: a new one.
        instance_options: passed to `ClientInstance` when one is created here.
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV, *,
                 listener: Listener | None = None, orderly: bool = False,
                 message_model: MessageModel = MessageModel.CLUSTERING,
                 consume_from: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
                 consume_timestamp_ms: int | None = None,
                 allocate: AllocateStrategy = allocate_averagely,
                 consume_threads: int = 4,
                 pull_batch_size: int = DEFAULT_PULL_BATCH_SIZE,
                 pull_threshold_per_queue: int = DEFAULT_PULL_THRESHOLD_PER_QUEUE,
                 max_reconsume_times: int = DEFAULT_MAX_RECONSUME_TIMES,
                 suspend_current_queue_s: float = DEFAULT_SUSPEND_CURRENT_QUEUE_S,
                 persist_interval_s: float = DEFAULT_PERSIST_INTERVAL_S,
                 rebalance_interval_s: float = DEFAULT_REBALANCE_INTERVAL_S,
                 lock_interval_s: float = DEFAULT_LOCK_INTERVAL_S,
                 shutdown_timeout_s: float = 10.0,
                 offset_dir: Path | None = None,
                 instance: ClientInstance | None = None,
                 **instance_options: Any) -> None:
        if not group:
            raise ValueError("a consumer needs a group name")
        self._group = group
        self._owns_instance = instance is None
        self.instance = instance or ClientInstance(namesrv, **instance_options)
        self.listener = listener
        self.orderly = orderly
        self.message_model = message_model
        self.consume_from = consume_from
        self.consume_timestamp_ms = consume_timestamp_ms
        self.pull_batch_size = pull_batch_size
        self.pull_threshold_per_queue = pull_threshold_per_queue
        self.max_reconsume_times = max_reconsume_times
        self.suspend_current_queue_s = suspend_current_queue_s
        self.persist_interval_s = persist_interval_s
        self.lock_interval_s = lock_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.api = ConsumerApi(self.instance, group)
        self.offsets: OffsetStore = (
            RemoteOffsetStore(self.api) if self.clustering else LocalOffsetStore(group, offset_dir))
        self.subscriptions = Subscriptions()
        self._rebalancer = Rebalancer(self.api, self.subscriptions, self._apply,
                                      model=message_model, strategy=allocate,
                                      interval_s=rebalance_interval_s)
        self.consume_threads = consume_threads
        self._executor = concurrent.futures.ThreadPoolExecutor(
            consume_threads, thread_name_prefix=f"shmq-consume-{group}")
        self._queues: dict[MessageQueue, ProcessQueue] = {}
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        #: messages handed to the listener / that it failed / sent back (statistics)
        self.consumed = self.failed = self.sent_back = 0
        self.start_timestamp_ms = 0  #: wall clock of `start` (running info)

    def __repr__(self) -> str:
        return f"<AsyncPushConsumer {self._group} {self.instance.client_id}>"

    @property
    def clustering(self) -> bool:
        """True in CLUSTERING mode."""
        return self.message_model == MessageModel.CLUSTERING

    # -- ConsumerMember ------------------------------------------------------------------------
    @property
    def group(self) -> str:
        """The consumer group."""
        return self._group

    def consumer_data(self) -> ConsumerData:
        """This consumer's heartbeat entry (with %RETRY%<group> in clustering mode)."""
        return ConsumerData(self._group, ConsumeType.CONSUME_PASSIVELY, self.message_model,
                            self.consume_from, self.subscriptions.values())

    def on_consumer_ids_changed(self) -> None:
        """Rebalance at once."""
        self._rebalancer.request()

    # -- configuration -------------------------------------------------------------------------
    def subscribe(self, topic: str, expression: str | None = "*") -> None:
        """Consume `topic`'s messages whose tag matches `expression` ("*", "A || B").

        Raises:
            ConsumerClosed.
        """
        if self._closed:
            raise ConsumerClosed(f"consumer {self._group} is closed")
        if topic not in self.subscriptions:
            self.instance.routes.watch(topic)
        self.subscriptions.add(topic, expression)
        if self._started:
            self._spawn(self._membership_changed(), "subscribe")

    def unsubscribe(self, topic: str) -> None:
        """Stop consuming `topic` (its queues are given up at the next rebalance)."""
        if topic in self.subscriptions:
            self.subscriptions.remove(topic)
            self.instance.routes.unwatch(topic)
            if self._started:
                self._spawn(self._membership_changed(), "unsubscribe")

    def register_listener(self, listener: Listener, *, orderly: bool | None = None) -> None:
        """Set the listener (before `start`)."""
        if self._started:
            raise RuntimeError("register the listener before starting the consumer")
        self.listener = listener
        if orderly is not None:
            self.orderly = orderly

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Join the group and start consuming (idempotent).

        Raises:
            ValueError: no listener or no subscription.
            ConsumerClosed: after `shutdown`.
        """
        if self._closed:
            raise ConsumerClosed(f"consumer {self._group} is closed")
        if self._started:
            return
        if self.listener is None or not list(self.subscriptions):
            raise ValueError("a push consumer needs a listener and at least one subscription")
        self._started = True
        self.start_timestamp_ms = int(time.time() * 1000)
        if self.clustering:
            self.subscriptions.add(retry_topic(self._group), "*")
            self.instance.routes.watch(retry_topic(self._group))
        self.instance.register_consumer(self)
        self.instance.routes.add_listener(self._route_changed)
        await self.instance.start()
        await self._membership_changed()
        self._rebalancer.start()
        self._tasks.append(self._spawn(self._every(self.persist_interval_s, self._persist),
                                       "persist"))
        if self.orderly and self.clustering:
            self._tasks.append(self._spawn(self._every(self.lock_interval_s, self._lock_all),
                                           "lock"))

    async def shutdown(self) -> None:
        """Stop consuming, persist offsets, leave the group (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._rebalancer.stop()
        for task in self._tasks:
            task.cancel()
        self.instance.routes.remove_listener(self._route_changed)
        await self._drain()
        if self._started:
            await self._persist()
            if self.orderly and self.clustering:
                await self._unlock(self._queues)
        await self.instance.leave_consumer_group(self)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_instance:
            await self.instance.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def _drain(self) -> None:
        """Stop pulling, let listeners in progress finish (their offsets count), then drop
        every queue."""
        for pq in self._queues.values():
            if pq.pull_task is not None:
                pq.pull_task.cancel()
            pq.wake.set()  # an idle orderly loop sees `_closed` and ends
        waiting: list[asyncio.Future[Any]] = list(self._in_flight)
        waiting += [pq.orderly_task for pq in self._queues.values() if pq.orderly_task]
        if waiting:
            await asyncio.wait(waiting, timeout=self.shutdown_timeout_s)
        for pq in self._queues.values():
            pq.dropped = True
            if pq.orderly_task is not None:
                pq.orderly_task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=f"shmq-{self._group}-{what}")

    async def _every(self, period_s: float, action: Callable[[], Coroutine[Any, Any, None]],
                     ) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await action()
            except Exception:  # a bug: log, keep going
                log.exception("group %s: periodic task failed", self._group)

    async def _membership_changed(self) -> None:
        for topic in self.subscriptions:
            with contextlib.suppress(ClientError):
                await self.instance.routes.route(topic)
        await self.instance.send_heartbeats()
        self._rebalancer.request()

    def _route_changed(self, topic: str, route: TopicRoute) -> None:
        if topic in self.subscriptions and not self._closed:
            self._spawn(self._membership_changed(), "route")

    # -- queue ownership -----------------------------------------------------------------------
    @property
    def queues(self) -> frozenset[MessageQueue]:
        """The queues owned now."""
        return frozenset(self._queues)

    async def _apply(self, topic: str, queues: frozenset[MessageQueue]) -> None:
        current = {mq for mq in self._queues if mq.topic == topic}
        for mq in current - queues:
            await self._remove_queue(mq)
        for mq in sorted(queues - current, key=lambda q: (q.broker_name, q.queue_id)):
            await self._add_queue(mq)
        if current != set(self._queues_of(topic)):
            log.info("group %s (%s): %s queues now %s", self._group, self.instance.client_id,
                     topic, sorted((q.broker_name, q.queue_id) for q in self._queues_of(topic)))

    def _queues_of(self, topic: str) -> list[MessageQueue]:
        return [mq for mq in self._queues if mq.topic == topic]

    async def _add_queue(self, mq: MessageQueue) -> None:
        locked = False
        if self.orderly and self.clustering:
            locked = mq in await self._try_lock(mq.broker_name, [mq])
            if not locked:
                log.info("group %s: %s not taken: its lock is held elsewhere", self._group, mq)
                return
        try:
            offset = await start_offset(self.api, self.offsets, mq, self.consume_from,
                                        self.consume_timestamp_ms)
        except ClientError as err:
            log.warning("group %s: start offset of %s unknown (%s); retried next rebalance",
                        self._group, mq, err)
            return
        pq = ProcessQueue(mq, offset, locked=locked, lock_time=time.monotonic())
        self._queues[mq] = pq
        pq.pull_task = self._spawn(self._pull_loop(pq), f"pull-{mq.topic}-{mq.queue_id}")
        if self.orderly:
            pq.orderly_task = self._spawn(self._orderly_loop(pq),
                                          f"orderly-{mq.topic}-{mq.queue_id}")

    async def _remove_queue(self, mq: MessageQueue) -> None:
        pq = self._queues.pop(mq)
        pq.dropped = True
        pq.wake.set()
        for task in (pq.pull_task, pq.orderly_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        await self.offsets.persist([mq])
        self.offsets.remove(mq)
        self.api.forget(mq)
        if self.orderly and self.clustering:
            deadline = time.monotonic() + self.shutdown_timeout_s
            while pq.consuming and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await self._unlock([mq])

    # -- pulling -------------------------------------------------------------------------------
    async def _pull_loop(self, pq: ProcessQueue) -> None:
        while not pq.dropped:
            if len(pq) >= self.pull_threshold_per_queue:
                await asyncio.sleep(_FLOW_CONTROL_DELAY_S)
                continue
            if self.orderly and self.clustering and not pq.is_locked(time.monotonic()):
                await self._relock(pq)
                continue
            await self._pull_once(pq)

    async def _pull_once(self, pq: ProcessQueue) -> None:
        sub = self.subscriptions.get(pq.mq.topic)
        if sub is None:  # unsubscribed: the rebalancer drops the queue
            await asyncio.sleep(_PULL_ERROR_DELAY_S)
            return
        commit = self.offsets.read_memory(pq.mq) if self.clustering else None
        try:
            result = await self.api.pull(pq.mq, pq.next_offset, sub,
                                         max_nums=self.pull_batch_size,
                                         suspend_ms=DEFAULT_SUSPEND_MS, commit_offset=commit)
        except ClientError as err:
            log.warning("group %s: pull of %s at %d failed: %s", self._group, pq.mq,
                        pq.next_offset, err)
            await asyncio.sleep(_PULL_ERROR_DELAY_S)
            return
        if pq.dropped:
            return
        pq.last_pull_ms = int(time.time() * 1000)
        pq.next_offset = result.next_begin_offset
        if result.messages:
            pq.put(result.messages)
            self._dispatch(pq, result.messages)
        elif result.status is PullStatus.OFFSET_ILLEGAL:
            log.warning("group %s: offset of %s is illegal; moving to %d", self._group, pq.mq,
                        result.next_begin_offset)
            self.offsets.update(pq.mq, result.next_begin_offset)
            await self.offsets.persist([pq.mq])
        elif not pq.messages:  # Java correctTagsOffset: nothing in flight, skip what was seen
            self.offsets.update(pq.mq, result.next_begin_offset, increase_only=True)

    # -- consuming -----------------------------------------------------------------------------
    def _dispatch(self, pq: ProcessQueue, messages: Sequence[ReceivedMessage]) -> None:
        if self.orderly:
            pq.wake.set()
            return
        for start in range(0, len(messages), _CHUNK):
            self._submit_chunk(pq, messages[start:start + _CHUNK])

    def _call_listener(self, msg: ReceivedMessage) -> bool:
        """Runs on a consume thread."""
        listener = self.listener
        assert listener is not None
        try:
            return _succeeded(listener(msg))
        except Exception:  # the application's failure means "deliver again later"
            log.warning("group %s: listener failed on %s (%s/%d@%d)", self._group, msg.msg_id,
                        msg.queue.topic, msg.queue_id, msg.queue_offset, exc_info=True)
            return False

    def _call_listener_on(self, messages: Sequence[ReceivedMessage]) -> list[bool]:
        """Runs on a consume thread: the listener on each message, one at a time."""
        return [self._call_listener(msg) for msg in messages]

    def _submit_chunk(self, pq: ProcessQueue, messages: Sequence[ReceivedMessage]) -> None:
        """Hand `messages` to one consume thread (the listener still gets one message per
        call): a hand-over to the pool and back costs tens of microseconds, more than a
        simple listener, so a pull's messages go in chunks of `_CHUNK`."""
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._call_listener_on, messages)
        self._in_flight.add(future)
        future.add_done_callback(lambda done: self._chunk_consumed(pq, messages, done))

    def _chunk_consumed(self, pq: ProcessQueue, messages: Sequence[ReceivedMessage],
                        future: asyncio.Future[list[bool]]) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            return
        results = future.result()
        self.consumed += len(messages)
        done = []
        for msg, ok in zip(messages, results):
            if ok or not self.clustering:
                done.append(msg)
                if not ok:
                    self.failed += 1
                    log.warning("group %s: broadcast message %s failed; dropped", self._group,
                                msg.msg_id)
            else:
                self.failed += 1
                self._spawn(self._send_back(pq, msg), "send-back")
        if done:
            self._finish_all(pq, done)

    def _submit(self, pq: ProcessQueue, msg: ReceivedMessage) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._call_listener,
                                                            msg)
        self._in_flight.add(future)
        future.add_done_callback(lambda done: self._consumed(pq, msg, done))

    def _consumed(self, pq: ProcessQueue, msg: ReceivedMessage,
                  future: asyncio.Future[bool]) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            return
        self.consumed += 1
        if future.result():
            self._finish(pq, msg)
        elif not self.clustering:
            self.failed += 1
            log.warning("group %s: broadcast message %s failed; dropped", self._group,
                        msg.msg_id)
            self._finish(pq, msg)
        else:
            self.failed += 1
            self._spawn(self._send_back(pq, msg), "send-back")

    async def _send_back(self, pq: ProcessQueue, msg: ReceivedMessage) -> None:
        try:
            await self.api.send_back(msg, max_reconsume_times=self.max_reconsume_times)
        except ClientError as err:
            log.warning("group %s: send-back of %s failed (%s); consuming it again in %g s",
                        self._group, msg.msg_id, err, _LOCAL_RETRY_DELAY_S)
            await asyncio.sleep(_LOCAL_RETRY_DELAY_S)
            if not pq.dropped:
                again = dataclasses.replace(msg, reconsume_times=msg.reconsume_times + 1)
                self._submit(pq, again)
            return
        self.sent_back += 1
        self._finish(pq, msg)

    def _finish(self, pq: ProcessQueue, msg: ReceivedMessage) -> None:
        self._finish_all(pq, [msg])

    def _finish_all(self, pq: ProcessQueue, messages: Sequence[ReceivedMessage]) -> None:
        pq.last_consume_ms = int(time.time() * 1000)
        offset = pq.finish([msg.queue_offset for msg in messages])
        if offset is not None and not pq.dropped:
            self.offsets.update(pq.mq, offset, increase_only=True)

    async def _orderly_loop(self, pq: ProcessQueue) -> None:
        loop = asyncio.get_running_loop()
        while not pq.dropped and not self._closed:
            if not pq.messages:
                pq.wake.clear()
                await pq.wake.wait()
                continue
            if self.clustering and not pq.is_locked(time.monotonic()):
                await asyncio.sleep(_NOT_LOCKED_DELAY_S)
                continue
            msg = next(iter(pq.messages.values()))
            pq.consuming = True
            try:
                ok = await loop.run_in_executor(self._executor, self._call_listener, msg)
            finally:
                pq.consuming = False
            self.consumed += 1
            if pq.dropped:
                return  # the next owner consumes it again
            if ok:
                self._finish(pq, msg)
            else:
                self.failed += 1
                pq.messages[msg.queue_offset] = dataclasses.replace(
                    msg, reconsume_times=msg.reconsume_times + 1)
                await asyncio.sleep(self.suspend_current_queue_s)

    # -- offsets and locks ---------------------------------------------------------------------
    async def _persist(self) -> None:
        await self.offsets.persist(list(self._queues))

    async def _try_lock(self, broker_name: str, mqs: Iterable[MessageQueue],
                        ) -> set[MessageQueue]:
        try:
            return await self.api.lock(broker_name, mqs)
        except ClientError as err:
            log.warning("group %s: lock at %s failed: %s", self._group, broker_name, err)
            return set()

    async def _lock_all(self) -> None:
        by_broker: dict[str, list[MessageQueue]] = {}
        for mq in self._queues:
            by_broker.setdefault(mq.broker_name, []).append(mq)
        for broker_name, mqs in by_broker.items():
            held = await self._try_lock(broker_name, mqs)
            now = time.monotonic()
            for mq in mqs:
                pq = self._queues.get(mq)
                if pq is not None:
                    pq.locked = mq in held
                    if pq.locked:
                        pq.lock_time = now

    async def _relock(self, pq: ProcessQueue) -> None:
        if pq.mq in await self._try_lock(pq.mq.broker_name, [pq.mq]):
            pq.locked, pq.lock_time = True, time.monotonic()
        else:
            pq.locked = False
            await asyncio.sleep(_NOT_LOCKED_DELAY_S)

    async def _unlock(self, mqs: Iterable[MessageQueue]) -> None:
        by_broker: dict[str, list[MessageQueue]] = {}
        for mq in mqs:
            by_broker.setdefault(mq.broker_name, []).append(mq)
        for broker_name, queues in by_broker.items():
            await self.api.unlock(broker_name, queues)

    # -- requests from operators (client/broker_requests.py) -----------------------------------
    async def reset_offsets(self, topic: str, offsets: Mapping[MessageQueue, int]) -> None:
        """RESET_CONSUMER_CLIENT_OFFSET: consume `topic`'s owned queues from `offsets` on.
        Each such queue stops (listener calls in progress finish but commit nothing), its new
        offset is persisted, then it is given up and the rebalance requested at once takes it
        again from there (Java `MQClientInstance.resetOffset`). A queue stays in the table
        until its offset is persisted, so a concurrent rebalance cannot restart it from the
        old one."""
        moved = {mq: pq for mq, pq in self._queues.items()
                 if mq.topic == topic and mq in offsets}
        for mq, pq in moved.items():
            pq.dropped = True
            pq.wake.set()
            for task in (pq.pull_task, pq.orderly_task):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            self.offsets.update(mq, offsets[mq])
        try:
            await self.offsets.persist(list(moved), wait=True)
        except (ClientError, OSError) as err:  # the broker may hold them already (shmq does)
            log.warning("group %s: reset offsets of %s not persisted: %s", self._group, topic,
                        err)
        for mq, pq in moved.items():
            if self._queues.get(mq) is pq:
                del self._queues[mq]
                self.offsets.remove(mq)
                self.api.forget(mq)
        self._rebalancer.request()

    def running_info(self) -> ConsumerRunningInfo:
        """GET_CONSUMER_RUNNING_INFO: settings, subscriptions, owned queues (Java shape)."""
        props = {
            "consumerGroup": self._group, "messageModel": self.message_model.name,
            "consumeFromWhere": self.consume_from.name,
            "consumeThreadMin": str(self.consume_threads),
            "consumeThreadMax": str(self.consume_threads),
            "pullBatchSize": str(self.pull_batch_size),
            "pullThresholdForQueue": str(self.pull_threshold_per_queue),
            "maxReconsumeTimes": str(self.max_reconsume_times),
            "persistConsumerOffsetInterval": str(int(self.persist_interval_s * 1000)),
            "suspendCurrentQueueTimeMillis": str(int(self.suspend_current_queue_s * 1000)),
            PROP_CONSUME_ORDERLY: "true" if self.orderly else "false",
            PROP_THREADPOOL_CORE_SIZE: str(self.consume_threads),
            PROP_CONSUMER_START_TIMESTAMP: str(self.start_timestamp_ms),
            PROP_CONSUME_TYPE: ConsumeType.CONSUME_PASSIVELY.name,
        }
        table = {}
        for mq, pq in self._queues.items():
            offsets = list(pq.messages)
            committed = self.offsets.read_memory(mq)
            table[mq] = ProcessQueueInfo(
                commit_offset=-1 if committed is None else committed,
                cached_msg_min_offset=offsets[0] if offsets else 0,
                cached_msg_max_offset=offsets[-1] if offsets else 0,
                cached_msg_count=len(offsets),
                cached_msg_size_in_mib=sum(len(m.body) for m in pq.messages.values()) >> 20,
                locked=pq.locked, last_lock_timestamp=_wall_ms(pq.lock_time) if pq.locked else 0,
                droped=pq.dropped, last_pull_timestamp=pq.last_pull_ms,
                last_consume_timestamp=pq.last_consume_ms)
        status = {sub.topic: ConsumeStatusInfo(consume_failed_msgs=self.failed)
                  for sub in self.subscriptions.values()}
        return ConsumerRunningInfo(props, self.subscriptions.values(), table, status)


def _wall_ms(monotonic_s: float) -> int:
    """A `time.monotonic()` reading as wall-clock ms."""
    return int((time.time() - (time.monotonic() - monotonic_s)) * 1000)


class PushConsumer:
    """A synchronous push consumer: an `AsyncPushConsumer` on a background event loop; the
    listener runs on the consume pool's threads.

        consumer = PushConsumer("my-group", "127.0.0.1:9876")
        consumer.subscribe("Orders", "created || paid")
        consumer.register_listener(lambda msg: handle(msg.body))
        consumer.start()
        ...
        consumer.shutdown()

    Arguments, results and errors are those of `AsyncPushConsumer`.
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV,
                 **options: Any) -> None:
        self._impl = AsyncPushConsumer(group, namesrv, **options)
        self._thread = LoopThread(f"shmq-push-{group}")
        self.group = group

    @property
    def client_id(self) -> str:
        """The client id brokers see."""
        return self._impl.instance.client_id

    @property
    def impl(self) -> AsyncPushConsumer:
        """The asyncio consumer (its state lives on the background loop: read, don't call)."""
        return self._impl

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_running:
            coro.close()
            raise ConsumerClosed(f"consumer {self.group} is closed")
        return self._thread.run(coro, self._impl.shutdown_timeout_s + _FACADE_MARGIN_S)

    @staticmethod
    async def _call(fn: Callable[[], T]) -> T:
        return fn()

    def subscribe(self, topic: str, expression: str | None = "*") -> None:
        """See `AsyncPushConsumer.subscribe`."""
        self._run(self._call(lambda: self._impl.subscribe(topic, expression)))

    def unsubscribe(self, topic: str) -> None:
        """See `AsyncPushConsumer.unsubscribe`."""
        self._run(self._call(lambda: self._impl.unsubscribe(topic)))

    def register_listener(self, listener: Listener, *, orderly: bool | None = None) -> None:
        """See `AsyncPushConsumer.register_listener`."""
        self._run(self._call(lambda: self._impl.register_listener(listener, orderly=orderly)))

    def queues(self) -> frozenset[MessageQueue]:
        """The queues owned now."""
        return self._run(self._call(lambda: self._impl.queues))

    def start(self) -> None:
        """See `AsyncPushConsumer.start`."""
        self._run(self._impl.start())

    def shutdown(self) -> None:
        """See `AsyncPushConsumer.shutdown`; also stops the loop (idempotent)."""
        self._thread.finish(self._impl.shutdown(),
                            self._impl.shutdown_timeout_s + _FACADE_MARGIN_S)

    close = shutdown

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
