"""Queue allocation strategies of clustering consumers (spec/behaviours.md §6): pure functions.

Theory of operation: every member of a consumer group computes, on its own, which of a topic's
queues it reads. They agree without talking to each other because each one feeds the same
inputs — the topic's readable queues from the route and the group's client ids from a broker,
both sorted — into the same deterministic function, then keeps what is assigned to its own id.
So every queue goes to exactly one member listed in `cid_all`, and a member missing from the
list gets nothing (it will get queues once the broker lists it).

The strategies are Java's `AllocateMessageQueueStrategy` implementations, byte for byte where
it matters, so shmq consumers may share a group with Java and C++ consumers:

* `allocate_averagely` (`AllocateMessageQueueAveragely`, the default everywhere): contiguous
  blocks, the first `n % c` members getting one queue more;
* `allocate_by_circle` (`AllocateMessageQueueAveragelyByCircle`): queue i to member i mod c;
* `ConsistentHashAllocator` (`AllocateMessageQueueConsistentHash`): an MD5 ring with
  `virtual_nodes` points per member; a queue goes to the first point at or after the hash of
  its Java `MessageQueue.toString()`, so a member joining or leaving moves few queues.

Each takes `(consumer_group, current_cid, mq_all, cid_all)` and sorts its inputs itself (the
sort is idempotent and makes the functions safe to call with unsorted lists).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import Final, Protocol

from shmq.protocol import MessageQueue

from .routes import sort_queues

__all__ = [
    "STRATEGIES",
    "AllocateStrategy",
    "ConsistentHashAllocator",
    "allocate_averagely",
    "allocate_by_circle",
    "java_queue_string",
    "md5_ring_hash",
    "strategy_named",
]


class AllocateStrategy(Protocol):
    """`(consumer_group, current_cid, mq_all, cid_all) -> the queues of current_cid`."""

    def __call__(self, consumer_group: str, current_cid: str, mq_all: Sequence[MessageQueue],
                 cid_all: Sequence[str]) -> list[MessageQueue]: ...


def _inputs(current_cid: str, mq_all: Sequence[MessageQueue], cid_all: Sequence[str],
            ) -> tuple[tuple[MessageQueue, ...], list[str], int]:
    """Sorted queues, sorted unique ids, and the index of `current_cid` (-1: not a member)."""
    queues = sort_queues(set(mq_all))
    cids = sorted(set(cid_all))
    index = cids.index(current_cid) if current_cid in cids else -1
    return queues, cids, index


def allocate_averagely(consumer_group: str, current_cid: str, mq_all: Sequence[MessageQueue],
                       cid_all: Sequence[str]) -> list[MessageQueue]:
    """Contiguous blocks; with n queues and c members, member i gets `n // c` queues and the
    first `n % c` members one more (behaviours.md §6). Members past n get nothing."""
    queues, cids, index = _inputs(current_cid, mq_all, cid_all)
    if index < 0 or not queues:
        return []
    n, c = len(queues), len(cids)
    mod = n % c
    if n <= c:
        average = 1
    else:
        average = n // c + 1 if mod > 0 and index < mod else n // c
    start = index * average if mod > 0 and index < mod else index * average + mod
    count = min(average, n - start)
    return [queues[(start + i) % n] for i in range(max(count, 0))]


def allocate_by_circle(consumer_group: str, current_cid: str, mq_all: Sequence[MessageQueue],
                       cid_all: Sequence[str]) -> list[MessageQueue]:
    """Queue i goes to member `i % c` (dealt like cards)."""
    queues, cids, index = _inputs(current_cid, mq_all, cid_all)
    if index < 0:
        return []
    return [q for i, q in enumerate(queues) if i % len(cids) == index]


def java_queue_string(mq: MessageQueue) -> str:
    """Java's `MessageQueue.toString()`, the key the consistent-hash strategy hashes."""
    return f"MessageQueue [topic={mq.topic}, brokerName={mq.broker_name}, queueId={mq.queue_id}]"


def md5_ring_hash(key: str) -> int:
    """Java `ConsistentHashRouter.MD5Hash.hash`: the first 4 bytes of MD5(key) as a number."""
    return int.from_bytes(hashlib.md5(key.encode()).digest()[:4], "big")


#: virtual nodes per member in Java's default `AllocateMessageQueueConsistentHash()`
DEFAULT_VIRTUAL_NODES: Final = 10


class ConsistentHashAllocator:
    """`AllocateMessageQueueConsistentHash` with `virtual_nodes` ring points per member."""

    def __init__(self, virtual_nodes: int = DEFAULT_VIRTUAL_NODES) -> None:
        """Raises: ValueError: `virtual_nodes` < 1."""
        if virtual_nodes < 1:
            raise ValueError(f"virtual_nodes must be >= 1, not {virtual_nodes}")
        self.virtual_nodes = virtual_nodes

    def ring(self, cid_all: Sequence[str]) -> tuple[list[int], list[str]]:
        """Sorted ring points and the member owning each (a later member wins a collision,
        like Java's TreeMap.put)."""
        points: dict[int, str] = {}
        for cid in sorted(set(cid_all)):
            for replica in range(self.virtual_nodes):
                points[md5_ring_hash(f"{cid}-{replica}")] = cid
        keys = sorted(points)
        return keys, [points[k] for k in keys]

    def owner(self, ring: tuple[list[int], list[str]], mq: MessageQueue) -> str:
        """The member owning `mq` on `ring` (the first point at or after its hash, wrapping)."""
        keys, owners = ring
        i = bisect.bisect_left(keys, md5_ring_hash(java_queue_string(mq)))
        return owners[i % len(keys)]

    def __call__(self, consumer_group: str, current_cid: str, mq_all: Sequence[MessageQueue],
                 cid_all: Sequence[str]) -> list[MessageQueue]:
        """The queues whose ring owner is `current_cid`."""
        queues, cids, index = _inputs(current_cid, mq_all, cid_all)
        if index < 0:
            return []
        ring = self.ring(cids)
        return [q for q in queues if self.owner(ring, q) == current_cid]

    def __repr__(self) -> str:
        return f"ConsistentHashAllocator(virtual_nodes={self.virtual_nodes})"


#: strategies by the name Java's `AllocateMessageQueueStrategy.getName()` returns
STRATEGIES: Final[dict[str, AllocateStrategy]] = {
    "AVG": allocate_averagely,
    "AVG_BY_CIRCLE": allocate_by_circle,
    "CONSISTENT_HASH": ConsistentHashAllocator(),
}


def strategy_named(name: str) -> AllocateStrategy:
    """The strategy called `name` ("AVG", "AVG_BY_CIRCLE", "CONSISTENT_HASH").

    Raises:
        ValueError: no strategy has that name.
    """
    try:
        return STRATEGIES[name.upper()]
    except KeyError:
        raise ValueError(f"unknown allocation strategy {name!r}; "
                         f"choose one of {', '.join(STRATEGIES)}") from None
