"""Which queues a consumer reads: subscriptions and the rebalance loop (Java `RebalanceImpl`;
spec/behaviours.md §6, §12).

Theory of operation: a consumer holds `Subscriptions` (topic -> `SubscriptionData`, built from
tag expressions like "A || B" or "*"). A `Rebalancer` recomputes, for every subscribed topic,
the set of queues this client should own:

* broadcasting: every readable queue of the topic's route;
* clustering: the allocation strategy (`rebalance.py`) applied to the route's readable queues
  and the group's client ids from a broker (`ConsumerApi.consumer_ids`).

When an input is unknown (no route yet, no broker reachable, an empty member list) the topic is
left as it is, as Java does: a transient failure must not make a consumer drop its queues. The
result goes to the owner's `apply(topic, queues)`, which diffs it with what it owns (persisting
offsets of lost queues, finding the start offset of new ones). Topics no longer subscribed get
an empty set.

The loop runs every `interval_s` (Java 20 s) and at once when `request()` is called: on
NOTIFY_CONSUMER_IDS_CHANGED, on a route change, on a new subscription. Requests that arrive
during a pass cause exactly one more pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from shmq.protocol import MessageModel, MessageQueue, SubscriptionData

from .consumer_api import ConsumerApi
from .rebalance import AllocateStrategy
from .received import RETRY_GROUP_TOPIC_PREFIX

__all__ = [
    "DEFAULT_REBALANCE_INTERVAL_S",
    "Rebalancer",
    "Subscriptions",
    "retry_topic",
]

log = logging.getLogger(__name__)

#: Java `rocketmq.client.rebalance.waitInterval`
DEFAULT_REBALANCE_INTERVAL_S: Final = 20.0

#: the owner's reaction to a new queue set of a topic
ApplyQueues = Callable[[str, frozenset[MessageQueue]], Awaitable[None]]


def retry_topic(group: str) -> str:
    """`%RETRY%<group>`: where a clustering group's failed messages come back."""
    return f"{RETRY_GROUP_TOPIC_PREFIX}{group}"


class Subscriptions:
    """topic -> SubscriptionData; each change gets a newer `sub_version` (the client clock in
    ms, as Java; kept increasing even if the clock is not)."""

    def __init__(self) -> None:
        self._table: dict[str, SubscriptionData] = {}
        self._last_version = 0

    def _version(self) -> int:
        self._last_version = max(self._last_version + 1, int(time.time() * 1000))
        return self._last_version

    def add(self, topic: str, expression: str | None = "*") -> SubscriptionData:
        """Subscribe `topic` with a TAG expression ("*", "A", "A || B")."""
        sub = SubscriptionData.of_tags(topic, expression, self._version())
        self._table[topic] = sub
        return sub

    def remove(self, topic: str) -> None:
        """Unsubscribe `topic`."""
        self._table.pop(topic, None)

    def get(self, topic: str) -> SubscriptionData | None:
        """The subscription of `topic`, if any."""
        return self._table.get(topic)

    def __contains__(self, topic: object) -> bool:
        return topic in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._table))

    def values(self) -> tuple[SubscriptionData, ...]:
        """Every subscription."""
        return tuple(self._table.values())


class Rebalancer:
    """The rebalance loop of one consumer; see the module docstring."""

    def __init__(self, api: ConsumerApi, subscriptions: Subscriptions, apply: ApplyQueues, *,
                 model: MessageModel, strategy: AllocateStrategy,
                 interval_s: float = DEFAULT_REBALANCE_INTERVAL_S) -> None:
        self._api = api
        self._subscriptions = subscriptions
        self._apply = apply
        self.model = model
        self.strategy = strategy
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._applied: set[str] = set()
        #: completed passes (tests and stats)
        self.passes = 0

    def start(self) -> None:
        """Start the loop; the first pass runs at once."""
        if self._task is None:
            self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._loop(),
                                                                name="shmq-rebalance")

    async def stop(self) -> None:
        """Stop the loop (a pass in progress is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def request(self) -> None:
        """Run a pass soon (thread-unsafe: call on the loop)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.rebalance_once()
            except Exception:  # a bug: log it, keep rebalancing
                log.exception("group %s: rebalance failed", self._api.group)

    async def rebalance_once(self) -> None:
        """One pass over every subscribed topic (and topics just unsubscribed)."""
        topics = list(self._subscriptions)
        for topic in topics:
            queues = await self.desired(topic)
            if queues is not None:
                await self._apply(topic, queues)
        for topic in self._applied - set(topics):
            await self._apply(topic, frozenset())
        self._applied = set(topics)
        self.passes += 1

    async def desired(self, topic: str) -> frozenset[MessageQueue] | None:
        """The queues of `topic` this client should own now; None when that is unknown."""
        instance = self._api.instance
        try:
            route = await instance.routes.route(topic)
        except Exception as err:  # noqa: BLE001 - name servers down: keep what we have
            log.warning("group %s: no route of %s to rebalance: %s", self._api.group, topic, err)
            return None
        if route is None:
            return None
        if self.model == MessageModel.BROADCASTING:
            return frozenset(route.subscribe_queues)
        ids = await self._api.consumer_ids(topic)
        if not ids:
            log.info("group %s: no member list for %s yet", self._api.group, topic)
            return None
        mine = self.strategy(self._api.group, instance.client_id, route.subscribe_queues, ids)
        return frozenset(mine)
