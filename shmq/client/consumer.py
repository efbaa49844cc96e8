"""Remote consumers. `PullConsumer` / `AsyncPullConsumer` (this module) poll like a batch job
does; `PushConsumer` / `AsyncPushConsumer` (`push_consumer.py`, re-exported here) call a
listener for each message. Both speak PULL_MESSAGE to the brokers (spec/behaviours.md §4-§7).

Theory of operation of the pull consumer
----------------------------------------
The consumer owns a set of queues, either

* **assigned** by the caller (`assign`): no group membership, no rebalancing; or
* **subscribed** (`subscribe(topic, "A || B")`): it joins the group (heartbeats name its
  subscriptions) and a `Rebalancer` gives it its share of the topic's queues — all of them when
  broadcasting — and moves queues when members come and go.

Each owned queue has a *fetch position* (the next offset to pull) and a buffer of pulled
messages not yet handed out. A queue's start position is the group's stored offset or, for a
group that has none, the `consume_from` policy (last: the queue's max offset; first: 0;
timestamp: the broker's search). `poll(timeout_s)` hands out buffered messages; when there are
none it pulls every idle queue at once — long-polling (the broker holds the pull until a
message arrives) while time remains — and returns as soon as one pull brings messages, or an
empty list at the timeout. Pulls still held at the broker when `poll` returns keep running and
fill the buffers for the next call.

The *consumed position* of a queue is the offset of its first buffered message, or its fetch
position when the buffer is empty: everything before it was handed to the application (or
filtered out by tag). `commit()` stores the consumed positions with the brokers (clustering,
confirmed requests) or in the local offset file (broadcasting); with `auto_commit` this also
happens every `auto_commit_interval_s` and at `close`. After a crash, a queue restarts from the
last commit: delivery is at-least-once.

`seek` moves a queue's fetch position and drops its buffer; a pull in flight for the old
position is discarded when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
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
    SubscriptionData,
)
from shmq.protocol.admin import ConsumerRunningInfo, ProcessQueueInfo

from .assignment import DEFAULT_REBALANCE_INTERVAL_S, Rebalancer, Subscriptions
from .broker_requests import PROP_CONSUME_TYPE
from .consumer_api import DEFAULT_PULL_BATCH_SIZE, DEFAULT_SUSPEND_MS, ConsumerApi
from .errors import ConsumerClosed, NoRouteInfo
from .instance import ClientInstance
from .loop import LoopThread
from .offsets import LocalOffsetStore, OffsetStore, RemoteOffsetStore, start_offset
from .push_consumer import AsyncPushConsumer, ConsumeStatus, PushConsumer
from .rebalance import AllocateStrategy, allocate_averagely
from .received import PullStatus, ReceivedMessage
from .routes import DEFAULT_NAMESRV

__all__ = [
    "AsyncPullConsumer",
    "AsyncPushConsumer",
    "ConsumeFromWhere",
    "ConsumeStatus",
    "MessageModel",
    "PullConsumer",
    "PushConsumer",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Java lite pull consumer `autoCommitIntervalMillis`
DEFAULT_AUTO_COMMIT_INTERVAL_S: Final = 5.0
#: pause of a queue after a failed pull (Java `PULL_TIME_DELAY_MILLS_WHEN_EXCEPTION`, lite: 1 s)
_PULL_BACKOFF_S: Final = 1.0
#: below this much time left, `poll` pulls without long polling
_MIN_SUSPEND_S: Final = 0.5
#: extra time a synchronous call waits for the loop beyond its own timeout
_FACADE_MARGIN_S: Final = 20.0


@dataclass(eq=False)
class _QueueState:
    """A queue owned by a pull consumer."""

    mq: MessageQueue
    next_offset: int | None = None  #: fetch position; None until the start offset is known
    buffer: deque[ReceivedMessage] = field(default_factory=deque)
    pulling: asyncio.Task[None] | None = None
    generation: int = 0  #: bumped by seek/drop: a pull of an older generation is discarded
    retry_at: float = 0.0  #: loop time before which no pull is tried (after an error)

    def consumed(self) -> int | None:
        """The consumed position (see the module docstring)."""
        return self.buffer[0].queue_offset if self.buffer else self.next_offset


class AsyncPullConsumer:
    """A polling consumer for asyncio code; see the module docstring.

    Args:
        group: consumer group (offsets are stored per group).
        namesrv: name-server addresses, "a:9876;b:9876" or a list.
        message_model: CLUSTERING (offsets at the brokers, queues shared with the group) or
            BROADCASTING (every member reads every queue; offsets in a local file).
        consume_from: where a group without a stored offset starts.
        consume_timestamp_ms: the start time for CONSUME_FROM_TIMESTAMP (default: 30 min ago).
        allocate: the clustering allocation strategy (`rebalance.py`).
        pull_batch_size: messages asked for per pull.
        max_poll_messages: most messages `poll` returns.
        auto_commit: commit consumed positions every `auto_commit_interval_s` and at close.
        offset_dir: where broadcasting offsets are kept (default ~/.shmq_offsets).
        rebalance_interval_s: period of rebalancing (besides the brokers' notifications).
        instance: share this `ClientInstance` (its owner closes it); default: a new one.
        instance_options: passed to `ClientInstance` when one is created here.
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV, *,
                 message_model: MessageModel = MessageModel.CLUSTERING,
                 consume_from: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
                 consume_timestamp_ms: int | None = None,
                 allocate: AllocateStrategy = allocate_averagely,
                 pull_batch_size: int = DEFAULT_PULL_BATCH_SIZE,
                 max_poll_messages: int = DEFAULT_PULL_BATCH_SIZE,
                 auto_commit: bool = True,
                 auto_commit_interval_s: float = DEFAULT_AUTO_COMMIT_INTERVAL_S,
                 offset_dir: Path | None = None,
                 rebalance_interval_s: float = DEFAULT_REBALANCE_INTERVAL_S,
                 instance: ClientInstance | None = None,
                 **instance_options: Any) -> None:
        if not group:
            raise ValueError("a consumer needs a group name")
        self._group = group
        self._owns_instance = instance is None
        self.instance = instance or ClientInstance(namesrv, **instance_options)
        self.message_model = message_model
        self.consume_from = consume_from
        self.consume_timestamp_ms = consume_timestamp_ms
        self.pull_batch_size = pull_batch_size
        self.max_poll_messages = max_poll_messages
        self.auto_commit = auto_commit
        self.auto_commit_interval_s = auto_commit_interval_s
        self.api = ConsumerApi(self.instance, group)
        self.offsets: OffsetStore = (
            RemoteOffsetStore(self.api) if message_model == MessageModel.CLUSTERING
            else LocalOffsetStore(group, offset_dir))
        self.subscriptions = Subscriptions()
        self._rebalancer = Rebalancer(self.api, self.subscriptions, self._apply,
                                      model=message_model, strategy=allocate,
                                      interval_s=rebalance_interval_s)
        self._queues: dict[MessageQueue, _QueueState] = {}
        self._manual = False
        self._changed = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._rotation = 0
        #: the last pull failure, for diagnostics (pull errors are retried, not raised)
        self.last_error: ClientError | None = None

    def __repr__(self) -> str:
        return f"<AsyncPullConsumer {self._group} {self.instance.client_id}>"

    # -- ConsumerMember ------------------------------------------------------------------------
    @property
    def group(self) -> str:
        """The consumer group."""
        return self._group

    def consumer_data(self) -> ConsumerData:
        """This consumer's heartbeat entry."""
        return ConsumerData(self._group, ConsumeType.CONSUME_ACTIVELY, self.message_model,
                            self.consume_from, self.subscriptions.values())

    def on_consumer_ids_changed(self) -> None:
        """Rebalance at once."""
        self._rebalancer.request()

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the instance, the auto-commit task and (once subscribed) rebalancing
        (idempotent; `poll` starts the consumer too).

        Raises:
            ConsumerClosed: after `close`.
        """
        self._check_open()
        if self._started:
            return
        self._started = True
        await self.instance.start()
        if self.auto_commit:
            self._committer = asyncio.get_running_loop().create_task(
                self._auto_commit(), name=f"shmq-commit-{self._group}")
        if not self._manual and list(self.subscriptions):
            await self._join_group()

    async def close(self) -> None:
        """Commit (with `auto_commit`), leave the group, close connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._rebalancer.stop()
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        for state in self._queues.values():
            if state.pulling is not None:
                state.pulling.cancel()
        if self.auto_commit and self._started:
            with contextlib.suppress(ClientError, OSError):
                await self._commit_positions(self._positions(), wait=False)
        await self.instance.leave_consumer_group(self)
        if self._owns_instance:
            await self.instance.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosed(f"consumer {self._group} is closed")

    # -- what to read --------------------------------------------------------------------------
    async def subscribe(self, topic: str, expression: str | None = "*") -> None:
        """Read `topic` (messages whose tag matches `expression`: "*", "A", "A || B") as a
        member of the group.

        Raises:
            ValueError: queues were assigned with `assign` (the two are exclusive).
            ConsumerClosed.
        """
        self._check_open()
        if self._manual:
            raise ValueError("subscribe and assign are mutually exclusive")
        if topic not in self.subscriptions:
            self.instance.routes.watch(topic)
        self.subscriptions.add(topic, expression)
        for state in self._queues.values():  # a new filter applies from the consumed position
            if state.mq.topic == topic:
                self._rewind(state)
        if self._started:
            await self._join_group()

    async def unsubscribe(self, topic: str) -> None:
        """Stop reading `topic` (its queues are committed and dropped at the next rebalance)."""
        if topic in self.subscriptions:
            self.subscriptions.remove(topic)
            self.instance.routes.unwatch(topic)
            self._rebalancer.request()

    async def _join_group(self) -> None:
        self.instance.register_consumer(self)
        for topic in self.subscriptions:
            with contextlib.suppress(ClientError):
                await self.instance.routes.route(topic)
        await self.instance.send_heartbeats()
        self._rebalancer.start()
        self._rebalancer.request()

    async def assign(self, queues: Iterable[MessageQueue], expression: str | None = "*") -> None:
        """Read exactly `queues` (no group membership), filtered by `expression`; queues not
        in the list any more are committed (with `auto_commit`) and dropped.

        Raises:
            ValueError: the consumer subscribed with `subscribe`.
        """
        self._check_open()
        if list(self.subscriptions) and not self._manual:
            raise ValueError("subscribe and assign are mutually exclusive")
        self._manual = True
        wanted = set(queues)
        for topic in {mq.topic for mq in wanted}:
            if topic not in self.subscriptions:
                self.instance.routes.watch(topic)
            self.subscriptions.add(topic, expression)
        for mq in [mq for mq in self._queues if mq not in wanted]:
            await self._drop(mq)
        for mq in wanted - set(self._queues):
            self._queues[mq] = _QueueState(mq)
        self._changed.set()

    def assignment(self) -> frozenset[MessageQueue]:
        """The queues owned now."""
        return frozenset(self._queues)

    async def fetch_queues(self, topic: str) -> tuple[MessageQueue, ...]:
        """The readable queues of `topic` (for `assign`).

        Raises:
            NoRouteInfo: the topic has no route. NameServerUnavailable.
        """
        route = await self.instance.routes.route(topic, refresh=True)
        if route is None or not route.subscribe_queues:
            raise NoRouteInfo(topic, "no readable queue")
        return route.subscribe_queues

    async def _apply(self, topic: str, queues: frozenset[MessageQueue]) -> None:
        current = {mq for mq in self._queues if mq.topic == topic}
        for mq in current - queues:
            await self._drop(mq)
        for mq in queues - current:
            self._queues[mq] = _QueueState(mq)
        if current != queues:
            log.info("group %s: %s queues now %s", self._group, topic,
                     sorted((q.broker_name, q.queue_id) for q in queues))
            self._changed.set()

    async def _drop(self, mq: MessageQueue) -> None:
        state = self._queues.pop(mq)
        state.generation += 1
        if state.pulling is not None:
            state.pulling.cancel()
        position = state.consumed()
        if self.auto_commit and position is not None:
            self.offsets.update(mq, position)
            await self.offsets.persist([mq])
        self.offsets.remove(mq)
        self.api.forget(mq)

    # -- polling -------------------------------------------------------------------------------
    async def poll(self, timeout_s: float = 5.0, max_messages: int | None = None,
                   ) -> list[ReceivedMessage]:
        """Messages from the owned queues; waits up to `timeout_s` for the first one.

        Returns:
            Up to `max_messages` (default `max_poll_messages`) messages, in queue order per
            queue; [] when none arrived in time.

        Raises:
            ConsumerClosed.
        """
        await self.start()
        limit = max_messages or self.max_poll_messages
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._check_open()
            got = self._take(limit)
            left = deadline - loop.time()
            if got or left <= 0:
                return got
            await self._wait_for_pulls(left)

    def _take(self, limit: int) -> list[ReceivedMessage]:
        states = list(self._queues.values())
        if not states:
            return []
        self._rotation = (self._rotation + 1) % len(states)
        got: list[ReceivedMessage] = []
        for state in states[self._rotation:] + states[:self._rotation]:
            while state.buffer and len(got) < limit:
                got.append(state.buffer.popleft())
        return got

    async def _wait_for_pulls(self, left: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        suspend_ms = int(min(left, DEFAULT_SUSPEND_MS / 1000) * 1000) if left > _MIN_SUSPEND_S else 0
        for state in self._queues.values():
            if state.pulling is None and not state.buffer and state.retry_at <= now:
                state.pulling = loop.create_task(self._pull(state, suspend_ms))
        pulls = [s.pulling for s in self._queues.values() if s.pulling is not None]
        self._changed.clear()
        waiters: list[asyncio.Future[Any]] = [*pulls, loop.create_task(self._changed.wait())]
        pause = min([left] + [s.retry_at - now for s in self._queues.values() if s.retry_at > now])
        await asyncio.wait(waiters, timeout=max(pause, 0.001),
                           return_when=asyncio.FIRST_COMPLETED)
        waiters[-1].cancel()

    async def _pull(self, state: _QueueState, suspend_ms: int) -> None:
        generation = state.generation
        try:
            if state.next_offset is None:
                state.next_offset = await start_offset(self.api, self.offsets, state.mq,
                                                       self.consume_from,
                                                       self.consume_timestamp_ms)
            sub = self.subscriptions.get(state.mq.topic) or SubscriptionData.of_tags(
                state.mq.topic, "*")
            result = await self.api.pull(state.mq, state.next_offset, sub,
                                         max_nums=self.pull_batch_size, suspend_ms=suspend_ms)
        except ClientError as err:
            self.last_error = err
            state.retry_at = asyncio.get_running_loop().time() + _PULL_BACKOFF_S
            log.warning("group %s: pull of %s failed: %s", self._group, state.mq, err)
            return
        finally:
            if state.pulling is asyncio.current_task():  # not a newer pull after a seek
                state.pulling = None
        if generation != state.generation or self._queues.get(state.mq) is not state:
            return  # sought or dropped while the pull was in flight
        if result.status is PullStatus.OFFSET_ILLEGAL:
            log.warning("group %s: offset %d of %s is illegal, moving to %d", self._group,
                        state.next_offset, state.mq, result.next_begin_offset)
        state.buffer.extend(result.messages)
        state.next_offset = result.next_begin_offset

    # -- positions and commits -----------------------------------------------------------------
    def _positions(self) -> dict[MessageQueue, int]:
        return {mq: pos for mq, state in self._queues.items()
                if (pos := state.consumed()) is not None}

    async def _commit_positions(self, positions: Mapping[MessageQueue, int], *,
                                wait: bool) -> None:
        for mq, offset in positions.items():
            self.offsets.update(mq, offset)
        await self.offsets.persist(positions, wait=wait)

    async def commit(self, offsets: Mapping[MessageQueue, int] | None = None,
                     ) -> dict[MessageQueue, int]:
        """Store consumed positions (or the given `offsets`, each "the next message to
        consume") with the brokers, or in the local file when broadcasting, and wait for it.

        Returns:
            What was committed.

        Raises:
            BrokerError, BrokerUnreachable, RequestTimeout, ConnectionLost, NoRouteInfo:
                some offsets may not be stored (earlier ones in the map are).
            OSError: the local offset file could not be written (broadcasting).
        """
        positions = dict(offsets) if offsets is not None else self._positions()
        await self._commit_positions(positions, wait=True)
        return positions

    async def _auto_commit(self) -> None:
        while True:
            await asyncio.sleep(self.auto_commit_interval_s)
            try:
                await self._commit_positions(self._positions(), wait=False)
            except (ClientError, OSError) as err:
                log.warning("group %s: auto-commit failed: %s", self._group, err)

    async def committed(self, mq: MessageQueue) -> int | None:
        """The offset stored for `mq` (None: none)."""
        return await self.offsets.read_store(mq)

    def position(self, mq: MessageQueue) -> int | None:
        """The consumed position of an owned queue (None: not known yet).

        Raises:
            KeyError: `mq` is not owned.
        """
        return self._queues[mq].consumed()

    def seek(self, mq: MessageQueue, offset: int) -> None:
        """Read owned queue `mq` from `offset` on (buffered messages are dropped).

        Raises:
            KeyError: `mq` is not owned.
        """
        state = self._queues[mq]
        self._restart(state, offset)
        state.retry_at = 0.0

    def _rewind(self, state: _QueueState) -> None:
        self._restart(state, state.consumed())

    def _restart(self, state: _QueueState, offset: int | None) -> None:
        """Read `state`'s queue from `offset` (None: the start offset) on: the buffer and a
        pull in flight (possibly held for seconds at the broker) are dropped."""
        state.buffer.clear()
        state.next_offset = offset
        state.generation += 1
        if state.pulling is not None:
            state.pulling.cancel()
            state.pulling = None

    async def seek_to_begin(self, mq: MessageQueue) -> None:
        """Read `mq` from its min offset."""
        self.seek(mq, await self.api.min_offset(mq))

    async def seek_to_end(self, mq: MessageQueue) -> None:
        """Read only messages sent to `mq` from now on."""
        self.seek(mq, await self.api.max_offset(mq))

    # -- requests from operators (client/broker_requests.py) -----------------------------------
    async def reset_offsets(self, topic: str, offsets: Mapping[MessageQueue, int]) -> None:
        """RESET_CONSUMER_CLIENT_OFFSET: read `topic`'s owned queues from `offsets` on (their
        buffers are dropped) and store those offsets."""
        moved = {mq: offset for mq, offset in offsets.items()
                 if mq.topic == topic and mq in self._queues}
        for mq, offset in moved.items():
            self.seek(mq, offset)
        try:
            await self._commit_positions(moved, wait=True)
        except (ClientError, OSError) as err:  # the broker may hold them already (shmq does)
            log.warning("group %s: reset offsets not persisted: %s", self._group, err)

    def running_info(self) -> ConsumerRunningInfo:
        """GET_CONSUMER_RUNNING_INFO: settings, subscriptions, owned queues (Java shape)."""
        props = {
            "consumerGroup": self._group, "messageModel": self.message_model.name,
            "consumeFromWhere": self.consume_from.name,
            "pullBatchSize": str(self.pull_batch_size),
            "autoCommit": "true" if self.auto_commit else "false",
            PROP_CONSUME_TYPE: ConsumeType.CONSUME_ACTIVELY.name,
        }
        table = {}
        for mq, state in self._queues.items():
            committed = self.offsets.read_memory(mq)
            buffered = [m.queue_offset for m in state.buffer]
            table[mq] = ProcessQueueInfo(
                commit_offset=-1 if committed is None else committed,
                cached_msg_min_offset=buffered[0] if buffered else 0,
                cached_msg_max_offset=buffered[-1] if buffered else 0,
                cached_msg_count=len(buffered))
        return ConsumerRunningInfo(props, self.subscriptions.values(), table)


class PullConsumer:
    """A synchronous polling consumer: an `AsyncPullConsumer` on a background event loop.

        with PullConsumer("batch-job", "127.0.0.1:9876", auto_commit=False) as consumer:
            consumer.subscribe("Orders", "created || paid")
            while batch := consumer.poll(timeout_s=2):
                process(batch)
                consumer.commit()

    Arguments, results and errors are those of `AsyncPullConsumer`.
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV,
                 **options: Any) -> None:
        self._impl = AsyncPullConsumer(group, namesrv, **options)
        self._thread = LoopThread(f"shmq-pull-{group}")
        self.group = group

    @property
    def client_id(self) -> str:
        """The client id brokers see."""
        return self._impl.instance.client_id

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 0.0) -> T:
        if not self._thread.is_running:
            coro.close()
            raise ConsumerClosed(f"consumer {self.group} is closed")
        return self._thread.run(coro, timeout_s + _FACADE_MARGIN_S)

    def start(self) -> None:
        """Start now (optional: `poll` starts the consumer)."""
        self._run(self._impl.start())

    def close(self) -> None:
        """Commit (with auto_commit), leave the group, stop the loop (idempotent)."""
        self._thread.finish(self._impl.close(), _FACADE_MARGIN_S)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, topic: str, expression: str | None = "*") -> None:
        """See `AsyncPullConsumer.subscribe`."""
        self._run(self._impl.subscribe(topic, expression))

    def unsubscribe(self, topic: str) -> None:
        """See `AsyncPullConsumer.unsubscribe`."""
        self._run(self._impl.unsubscribe(topic))

    def assign(self, queues: Iterable[MessageQueue], expression: str | None = "*") -> None:
        """See `AsyncPullConsumer.assign`."""
        self._run(self._impl.assign(list(queues), expression))

    def assignment(self) -> frozenset[MessageQueue]:
        """The queues owned now."""
        return self._run(self._async(self._impl.assignment))

    def fetch_queues(self, topic: str) -> tuple[MessageQueue, ...]:
        """See `AsyncPullConsumer.fetch_queues`."""
        return self._run(self._impl.fetch_queues(topic))

    def poll(self, timeout_s: float = 5.0, max_messages: int | None = None,
             ) -> list[ReceivedMessage]:
        """See `AsyncPullConsumer.poll`."""
        return self._run(self._impl.poll(timeout_s, max_messages), timeout_s)

    def commit(self, offsets: Mapping[MessageQueue, int] | None = None,
               ) -> dict[MessageQueue, int]:
        """See `AsyncPullConsumer.commit`."""
        return self._run(self._impl.commit(offsets))

    def committed(self, mq: MessageQueue) -> int | None:
        """See `AsyncPullConsumer.committed`."""
        return self._run(self._impl.committed(mq))

    def position(self, mq: MessageQueue) -> int | None:
        """See `AsyncPullConsumer.position`."""
        return self._run(self._async(lambda: self._impl.position(mq)))

    def seek(self, mq: MessageQueue, offset: int) -> None:
        """See `AsyncPullConsumer.seek`."""
        self._run(self._async(lambda: self._impl.seek(mq, offset)))

    def seek_to_begin(self, mq: MessageQueue) -> None:
        """See `AsyncPullConsumer.seek_to_begin`."""
        self._run(self._impl.seek_to_begin(mq))

    def seek_to_end(self, mq: MessageQueue) -> None:
        """See `AsyncPullConsumer.seek_to_end`."""
        self._run(self._impl.seek_to_end(mq))

    @staticmethod
    async def _async(call: Callable[[], T]) -> T:
        """Run a plain method on the loop thread (the consumer's state lives there)."""
        return call()


# keep the push consumer's names importable from here (the module docstring promises it)
_ = (AsyncPushConsumer, PushConsumer, ConsumeStatus)
