"""Rings between processes: bulk transfer, wake-ups of a parked side, close and death of a peer."""

from __future__ import annotations

import random
import statistics
import time
import zlib
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

from shmq.ipc import (
    LOW_LATENCY_POLICY,
    PeerGone,
    Ring,
    RingBusy,
    RingClosed,
    RingConsumer,
)
from tests.ipc import _children
from tests.ipc._children import sequence_kind, sequence_payload
from tests.ipc._util import CTX, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: A sleeper that only a post wakes quickly: its first re-check comes after 2 s.
_ONLY_POSTS_WAKE: dict[str, Any] = {
    "spin_us": 0.0,
    "min_spin_us": 0.0,
    "max_spin_us": 0.0,
    "recheck_us": 2e6,
    "park_slice_s": 5.0,
}


class _Children:
    def __init__(self) -> None:
        self.procs: list[BaseProcess] = []

    def start(self, target: Callable[..., None], *args: object) -> BaseProcess:
        proc = CTX.Process(target=target, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def pipe(self) -> tuple[Connection, Connection]:
        receiver, sender = CTX.Pipe(duplex=False)
        return receiver, sender


@pytest.fixture
def children() -> Iterator[_Children]:
    kids = _Children()
    yield kids
    for proc in kids.procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    assert all(not proc.is_alive() for proc in kids.procs)


def _recv(conn: Connection, timeout_s: float = 30.0) -> Any:
    assert conn.poll(timeout_s), "the child did not answer"
    return conn.recv()


def _drain_checking(consumer: RingConsumer, count: int, kinds: Callable[[int], int]) -> int:
    """Read the deterministic stream until the ring closes; check order and bytes; return CRC."""
    rng = random.Random(7)
    crc = 0
    i = 0
    while True:
        try:
            batch = consumer.read_batch(rng.randint(1, 100))
        except RingClosed:
            break
        if not batch:
            assert consumer.wait_readable(30), f"stalled after {i} records"
            continue
        for kind, payload in batch:
            if payload != sequence_payload(i) or kind != kinds(i):
                pytest.fail(f"record {i}: got kind {kind}, {payload[:16]!r}...")
            crc = zlib.crc32(payload, crc)
            i += 1
    assert i == count
    return crc


def test_two_processes_move_200k_records_in_order(instance: str, children: _Children) -> None:
    count = 200_000
    with Ring.create(instance, "r", 16384) as ring:  # small: thousands of laps, many stalls
        consumer = ring.consumer()
        receiver, sender = children.pipe()
        child = children.start(_children.produce_sequence, instance, "r", count, 11, sender)
        crc = _drain_checking(consumer, count, sequence_kind)
        assert _recv(receiver) == crc
        child.join(30)
        assert child.exitcode == 0
        assert ring.statistics().head > 100 * ring.capacity_bytes
        ring.unlink()


def test_two_processes_move_batches_in_order(instance: str, children: _Children) -> None:
    count = 50_000
    with Ring.create(instance, "r", 8192) as ring:
        consumer = ring.consumer()
        receiver, sender = children.pipe()
        child = children.start(_children.produce_batches, instance, "r", count, sender)
        crc = _drain_checking(consumer, count, lambda i: 7)
        assert _recv(receiver) == crc
        child.join(30)
        assert child.exitcode == 0
        ring.unlink()


def test_parked_consumer_wakes_on_publish(instance: str, children: _Children) -> None:
    with Ring.create(instance, "req", 4096) as req, Ring.create(instance, "rep", 4096) as rep:
        child = children.start(_children.echo, instance, "req", "rep", _ONLY_POSTS_WAKE)
        producer, consumer = req.producer(), rep.consumer(LOW_LATENCY_POLICY)
        latencies = []
        for i in range(20):
            wait_until(lambda: req.statistics().is_consumer_parked, timeout_s=10)
            start = time.perf_counter()
            producer.write(b"ping %d" % i, kind=i, timeout_s=5)
            assert consumer.read(timeout_s=5) == (i, b"ping %d" % i)
            latencies.append(time.perf_counter() - start)
        producer.close()
        with pytest.raises(RingClosed):
            consumer.read(timeout_s=5)  # the echo closes its replies when requests close
        child.join(10)
        assert child.exitcode == 0
        req.unlink()
        rep.unlink()
    # Without the post, each wake-up would wait for the child's 2 s re-check.
    assert max(latencies) < 0.5, latencies
    assert statistics.median(latencies) < 0.02, latencies


def test_parked_producer_wakes_when_space_frees(instance: str, children: _Children) -> None:
    with Ring.create(instance, "r", 1024) as ring:
        consumer = ring.consumer()
        receiver, sender = children.pipe()
        children.start(_children.write_until_closed, instance, "r", _ONLY_POSTS_WAKE, sender)
        for _ in range(5):
            wait_until(lambda: ring.statistics().is_producer_parked, timeout_s=10)
            head = ring.statistics().head

            def wrote_more(head: int = head) -> bool:
                return ring.statistics().head > head

            start = time.monotonic()
            assert len(consumer.read_batch(1)) == 1  # frees room for exactly one more record
            wait_until(wrote_more, timeout_s=1.0)
            assert time.monotonic() - start < 0.5
        wait_until(lambda: ring.statistics().is_producer_parked, timeout_s=10)
        closed_at = time.monotonic()
        consumer.close()
        name, written, ended_at = _recv(receiver)
        assert name == "RingClosed"
        assert written == 1024 // 112 + 5  # 112-byte records: 9 fill the ring, 5 freed
        assert ended_at - closed_at < 0.5
        ring.unlink()


def test_close_wakes_a_parked_consumer_in_another_process(
    instance: str, children: _Children
) -> None:
    with Ring.create(instance, "r", 4096) as ring:
        producer = ring.producer()
        receiver, sender = children.pipe()
        child = children.start(
            _children.consume_until_closed, instance, "r", _ONLY_POSTS_WAKE, sender
        )
        assert _recv(receiver) == "ready"
        with pytest.raises(RingBusy) as busy:
            ring.consumer()
        assert busy.value.pid == child.pid
        producer.write(b"a", timeout_s=1)
        producer.write(b"b", timeout_s=1)
        wait_until(lambda: ring.statistics().tail == ring.statistics().head, timeout_s=10)
        wait_until(lambda: ring.statistics().is_consumer_parked, timeout_s=10)
        closed_at = time.monotonic()
        producer.close()
        name, seen, ended_at = _recv(receiver)
        assert (name, seen) == ("RingClosed", 2)
        assert ended_at - closed_at < 0.5
        ring.unlink()


def test_consumer_learns_that_the_producer_died(instance: str, children: _Children) -> None:
    with Ring.create(instance, "r", 4096) as ring:
        consumer = ring.consumer()
        child = children.start(_children.produce_then_die, instance, "r", 5)
        assert [consumer.read(timeout_s=20) for _ in range(5)] == [
            (0, sequence_payload(i)) for i in range(5)
        ]
        start = time.monotonic()
        with pytest.raises(PeerGone) as info:  # the child is a zombie: not reaped yet
            consumer.read(timeout_s=20)
        assert time.monotonic() - start < 5
        assert (info.value.role, info.value.pid) == ("producer", child.pid)
        # The dead process's role is free: a new producer resumes the ring.
        producer = ring.producer()
        assert producer.try_write(b"after")
        assert consumer.try_read() == (0, b"after")
        child.join(10)
        assert child.exitcode == -9
        ring.unlink()
