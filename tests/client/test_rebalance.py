"""Tests of shmq/client/rebalance.py: pure allocation strategies, no sockets."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmq.client.rebalance import (
    STRATEGIES,
    AllocateStrategy,
    ConsistentHashAllocator,
    allocate_averagely,
    allocate_by_circle,
    java_queue_string,
    md5_ring_hash,
    strategy_named,
)
from shmq.protocol import MessageQueue


def queues(n: int, topic: str = "T", brokers: tuple[str, ...] = ("broker-a",)) -> list[MessageQueue]:
    return [MessageQueue(topic, b, i) for b in brokers for i in range(n)]


def ids(result: list[MessageQueue]) -> list[int]:
    return [q.queue_id for q in result]


ALL: list[AllocateStrategy] = [allocate_averagely, allocate_by_circle, ConsistentHashAllocator(),
       ConsistentHashAllocator(virtual_nodes=1)]


def test_averagely_matches_the_java_table() -> None:
    mqs = queues(8)
    cids = ["c0", "c1", "c2"]
    assert [ids(allocate_averagely("G", c, mqs, cids)) for c in cids] == [
        [0, 1, 2], [3, 4, 5], [6, 7]]
    assert [ids(allocate_averagely("G", c, queues(2), cids)) for c in cids] == [[0], [1], []]
    assert ids(allocate_averagely("G", "c0", mqs, ["c0"])) == list(range(8))


def test_by_circle_deals_queues_like_cards() -> None:
    cids = ["a", "b", "c"]
    assert [ids(allocate_by_circle("G", c, queues(8), cids)) for c in cids] == [
        [0, 3, 6], [1, 4, 7], [2, 5]]


def test_inputs_are_sorted_like_java_before_allocating() -> None:
    mqs = queues(2, brokers=("broker-b", "broker-a"))
    got = allocate_averagely("G", "x", list(reversed(mqs)), ["y", "x"])
    assert got == [MessageQueue("T", "broker-a", 0), MessageQueue("T", "broker-a", 1)]


def test_a_client_missing_from_the_list_gets_nothing() -> None:
    for strategy in ALL:
        assert strategy("G", "ghost", queues(4), ["a", "b"]) == []


def test_java_hash_and_queue_string() -> None:
    mq = MessageQueue("TopicTest", "broker-a", 3)
    assert java_queue_string(mq) == "MessageQueue [topic=TopicTest, brokerName=broker-a, queueId=3]"
    # MD5("a") = 0cc175b9...; Java keeps the first four bytes as a non-negative long
    assert md5_ring_hash("a") == 0x0CC175B9


def test_consistent_hash_moves_few_queues_when_a_member_joins() -> None:
    allocator = ConsistentHashAllocator()
    mqs = queues(64)
    before = {c: set(allocator("G", c, mqs, ["a", "b", "c"])) for c in "abc"}
    after = {c: set(allocator("G", c, mqs, ["a", "b", "c", "d"])) for c in "abcd"}
    for member in "abc":  # old members only lose queues (to d); they never trade among them
        assert after[member] <= before[member]


def test_strategy_names() -> None:
    assert strategy_named("avg") is allocate_averagely
    assert set(STRATEGIES) == {"AVG", "AVG_BY_CIRCLE", "CONSISTENT_HASH"}
    with pytest.raises(ValueError, match="unknown allocation strategy"):
        strategy_named("nope")
    with pytest.raises(ValueError):
        ConsistentHashAllocator(0)


@given(
    n_queues=st.integers(0, 40),
    brokers=st.lists(st.sampled_from(["broker-a", "broker-b", "broker-c"]), min_size=1,
                     max_size=3, unique=True),
    cids=st.lists(st.text(alphabet="abcdef0123456789@.-#", min_size=1, max_size=12),
                  min_size=1, max_size=12, unique=True),
    which=st.integers(0, len(ALL) - 1),
)
def test_every_queue_goes_to_exactly_one_live_consumer(
        n_queues: int, brokers: list[str], cids: list[str], which: int) -> None:
    strategy: AllocateStrategy = ALL[which]
    mqs = queues(n_queues, brokers=tuple(brokers))
    counts: Counter[MessageQueue] = Counter()
    for cid in cids:
        got = strategy("G", cid, mqs, cids)
        assert len(got) == len(set(got))
        counts.update(got)
    assert set(counts) == set(mqs)
    assert all(count == 1 for count in counts.values())


@given(n_queues=st.integers(1, 40), n_consumers=st.integers(1, 12))
def test_averagely_is_balanced(n_queues: int, n_consumers: int) -> None:
    cids = [f"c{i:02d}" for i in range(n_consumers)]
    sizes = [len(allocate_averagely("G", c, queues(n_queues), cids)) for c in cids]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the extra queues go to the first members
