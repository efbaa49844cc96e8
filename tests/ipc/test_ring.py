"""Tests of shmq/ipc/ring.py in one process: order, wrap-around, back-pressure, closing."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmq.ipc import (
    DEFAULT_POLICY,
    InvalidLayout,
    RecordTooLarge,
    Ring,
    RingBusy,
    RingClosed,
    RingConsumer,
    RingEmpty,
    RingFull,
    RingProducer,
    Segment,
    SegmentCorrupt,
    SegmentExists,
    SegmentMissing,
    SharedTable,
    WaitPolicy,
    layout,
    list_segments,
    list_semaphores,
    record_bytes,
    remove_stale,
)
from shmq.ipc.wakeup import create_semaphore
from tests.ipc._util import unique_instance

pytestmark = pytest.mark.timeout(60)

#: Parks at once and re-checks only rarely: waits in these tests end by a post or a deadline.
_PARK_AT_ONCE = WaitPolicy(spin_us=0, min_spin_us=0, max_spin_us=0)


@pytest.fixture
def ring(instance: str) -> Iterator[Ring]:
    with Ring.create(instance, "r", 256) as ring:
        yield ring
        ring.unlink()


@pytest.fixture
def ends(ring: Ring) -> tuple[RingProducer, RingConsumer]:
    return ring.producer(), ring.consumer()


def _space_needed(ring: Ring, payload_bytes: int) -> int:
    """Bytes a record needs at the current head, padding to the end of the area included."""
    stats = ring.statistics()
    size = record_bytes(payload_bytes)
    offset = stats.head % stats.capacity_bytes
    return size + (stats.capacity_bytes - offset if offset + size > stats.capacity_bytes else 0)


# --- order and wrap-around ----------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("write"), st.binary(max_size=120), st.integers(0, 65535)),
    st.tuples(st.just("many"), st.lists(st.binary(max_size=60), max_size=6), st.integers(0, 9)),
    st.tuples(st.just("reserve"), st.binary(max_size=120), st.integers(0, 65535)),
    st.tuples(st.just("read"), st.none(), st.none()),
    st.tuples(st.just("batch"), st.none(), st.integers(1, 8)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity=st.sampled_from([64, 128, 256, 1024]), ops=st.lists(_op, max_size=80))
def test_ring_returns_what_was_written_in_order(
    capacity: int, ops: list[tuple[str, object, object]]
) -> None:
    instance = unique_instance()
    ring = Ring.create(instance, "r", capacity)
    try:
        producer, consumer = ring.producer(), ring.consumer()
        model: collections.deque[tuple[int, bytes]] = collections.deque()
        for op, data, arg in ops:
            _apply(ring, producer, consumer, model, op, data, arg)
            stats = ring.statistics()
            assert 0 <= stats.used_bytes <= capacity
            assert stats.head % 8 == stats.tail % 8 == 0
        drained = consumer.read_batch(10_000)
        assert drained == list(model)
        assert consumer.try_read() is None
    finally:
        ring.detach()
        remove_stale(instance)


def _apply(
    ring: Ring,
    producer: RingProducer,
    consumer: RingConsumer,
    model: collections.deque[tuple[int, bytes]],
    op: str,
    data: object,
    arg: object,
) -> None:
    limit = ring.max_payload_bytes
    if op == "write":
        assert isinstance(data, bytes) and isinstance(arg, int)
        if len(data) > limit:
            with pytest.raises(RecordTooLarge):
                producer.try_write(data, arg)
            return
        needed = _space_needed(ring, len(data))
        if producer.try_write(data, arg):
            model.append((arg, data))
        else:  # full is allowed only when the record really does not fit
            assert ring.statistics().used_bytes + needed > ring.capacity_bytes
    elif op == "many":
        assert isinstance(data, list) and isinstance(arg, int)
        fitting = list(_prefix_within_limit(data, limit))
        if not fitting and data:
            with pytest.raises(RecordTooLarge):
                producer.try_write_many(data, arg)
            return
        written = producer.try_write_many(data, arg)
        assert written <= len(fitting)
        model.extend((arg, payload) for payload in data[:written])
        if written < len(fitting):
            assert (
                ring.statistics().used_bytes + _space_needed(ring, len(data[written]))
                > ring.capacity_bytes
            )
    elif op == "reserve":
        assert isinstance(data, bytes) and isinstance(arg, int)
        if len(data) > limit:
            return
        view = producer.try_reserve(len(data), arg)
        if view is not None:
            view[:] = data
            assert consumer.used_bytes == ring.statistics().used_bytes  # nothing new visible
            producer.commit()
            model.append((arg, data))
    elif op == "read":
        expected = model.popleft() if model else None
        assert consumer.try_read() == expected
    else:
        assert isinstance(arg, int)
        got = consumer.read_batch(arg)
        assert got == [model.popleft() for _ in range(min(arg, len(model)))]


def _prefix_within_limit(payloads: list[bytes], limit: int) -> Iterator[bytes]:
    for payload in payloads:
        if len(payload) > limit:
            return
        yield payload


def test_every_record_size_crosses_the_end_of_the_area(instance: str) -> None:
    with Ring.create(instance, "r", 128) as ring:
        producer, consumer = ring.producer(), ring.consumer()
        for size in range(ring.max_payload_bytes + 1):
            for turn in range(5):  # several laps, so each size meets the end at many offsets
                payload = bytes([size % 251, turn]) * (size // 2) + b"z" * (size % 2)
                assert producer.try_write(payload, kind=size)
                assert consumer.try_read() == (size, payload)
        assert ring.statistics().head > 10 * ring.capacity_bytes
        ring.unlink()


def test_memoryview_and_bytearray_payloads(ends: tuple[RingProducer, RingConsumer]) -> None:
    producer, consumer = ends
    assert producer.try_write(bytearray(b"abc"))
    assert producer.try_write(memoryview(b"xyzw")[1:3])
    assert producer.try_write(b"")
    assert consumer.read_batch(10) == [(0, b"abc"), (0, b"yz"), (0, b"")]


# --- back-pressure and limits -------------------------------------------------------------------


def test_full_ring_returns_false_and_writes_nothing(
    ends: tuple[RingProducer, RingConsumer],
) -> None:
    producer, consumer = ends
    written = 0
    while producer.try_write(b"r" * 24):  # 32-byte records: 8 fill the 256-byte area
        written += 1
    assert written == 8
    assert not producer.try_write(b"")
    assert producer.try_write_many([b"a", b"b"]) == 0
    assert producer.try_reserve(1) is None
    assert len(consumer.read_batch(100)) == 8
    assert producer.try_write(b"again")


def test_blocking_write_times_out_with_ring_full(ring: Ring) -> None:
    producer, _consumer = ring.producer(_PARK_AT_ONCE), ring.consumer()
    while producer.try_write(b"r" * 24):
        pass
    head = ring.statistics().head
    start = time.monotonic()
    with pytest.raises(RingFull) as info:
        producer.write(b"r" * 24, timeout_s=0.2)
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 2.0
    assert isinstance(info.value, TimeoutError)
    assert (info.value.needed, info.value.free, info.value.timeout_s) == (32, 0, 0.2)
    assert ring.statistics().head == head  # nothing written
    assert not ring.statistics().is_producer_parked


def test_blocking_read_times_out_with_ring_empty(ring: Ring) -> None:
    consumer = ring.consumer(_PARK_AT_ONCE)
    with pytest.raises(RingEmpty) as info:
        consumer.read(timeout_s=0.1)
    assert info.value.timeout_s == 0.1
    assert not ring.statistics().is_consumer_parked
    assert not consumer.wait_readable(0.05)


def test_oversized_record_raises_and_writes_nothing(
    ring: Ring, ends: tuple[RingProducer, RingConsumer]
) -> None:
    producer, consumer = ends
    limit = ring.max_payload_bytes
    assert limit == 256 // 2 - 8
    assert producer.try_write(b"m" * limit)
    for call in (
        lambda: producer.try_write(b"m" * (limit + 1)),
        lambda: producer.write(b"m" * (limit + 1), timeout_s=1),
        lambda: producer.try_reserve(limit + 1),
        lambda: producer.try_write_many([b"m" * (limit + 1), b"ok"]),
        lambda: producer.wait_writable(limit + 1, 1),
    ):
        with pytest.raises(RecordTooLarge) as info:
            call()
        assert (info.value.size, info.value.limit) == (limit + 1, limit)
    assert consumer.read_batch(10) == [(0, b"m" * limit)]


def test_write_many_stops_before_an_oversized_record(
    ends: tuple[RingProducer, RingConsumer],
) -> None:
    producer, consumer = ends
    huge = b"h" * 1000
    assert producer.try_write_many([b"a", b"b", huge, b"c"], kind=3) == 2
    with pytest.raises(RecordTooLarge):
        producer.try_write_many([huge, b"c"])
    assert consumer.read_batch(10) == [(3, b"a"), (3, b"b")]


def test_kind_must_be_a_u16(ends: tuple[RingProducer, RingConsumer]) -> None:
    producer, consumer = ends
    for kind in (-1, 65536):
        with pytest.raises(InvalidLayout, match="kind"):
            producer.try_write(b"x", kind)
        with pytest.raises(InvalidLayout, match="kind"):
            producer.try_write_many([b"x"], kind)
        with pytest.raises(InvalidLayout, match="kind"):
            producer.try_reserve(1, kind)
    assert consumer.try_read() is None
    assert producer.try_write(b"ok", 65535)
    assert consumer.try_read() == (65535, b"ok")


def test_reservations_publish_together_on_commit(ends: tuple[RingProducer, RingConsumer]) -> None:
    producer, consumer = ends
    first = producer.try_reserve(3, kind=1)
    second = producer.try_reserve(2, kind=2)
    assert first is not None and second is not None
    first[:] = b"abc"
    second[:] = b"de"
    assert consumer.try_read() is None
    producer.commit()
    assert consumer.read_batch(5) == [(1, b"abc"), (2, b"de")]
    with pytest.raises(ValueError):
        first[0] = 1  # released at commit: the bytes now belong to the consumer


def test_abort_forgets_reservations(ends: tuple[RingProducer, RingConsumer]) -> None:
    producer, consumer = ends
    view = producer.try_reserve(100)
    assert view is not None
    producer.abort()
    producer.commit()
    assert consumer.try_read() is None
    assert producer.try_write(b"next")
    assert consumer.try_read() == (0, b"next")


# --- closing --------------------------------------------------------------------------------------


def test_consumer_drains_then_sees_producer_close(
    ring: Ring, ends: tuple[RingProducer, RingConsumer]
) -> None:
    producer, consumer = ends
    producer.try_write(b"one")
    producer.try_write(b"two")
    producer.close()
    assert producer.is_closed and consumer.is_closed and ring.is_closed
    assert consumer.try_read() == (0, b"one")
    assert consumer.read(timeout_s=1) == (0, b"two")
    for call in (consumer.try_read, lambda: consumer.read_batch(4), lambda: consumer.read(1)):
        with pytest.raises(RingClosed) as info:
            call()
        assert info.value.closed_by == "producer"
    with pytest.raises(RingClosed):
        producer.try_write(b"late")
    with pytest.raises(RingClosed):
        producer.try_write_many([b"late"])
    assert consumer.wait_readable(5)  # returns at once: the next read raises


def test_producer_sees_consumer_close(ends: tuple[RingProducer, RingConsumer]) -> None:
    producer, consumer = ends
    consumer.close()
    assert producer.is_closed
    with pytest.raises(RingClosed) as info:
        producer.try_write(b"x")
    assert info.value.closed_by == "consumer"
    with pytest.raises(RingClosed):
        producer.write(b"x", timeout_s=1)
    # The first try_write published before it saw the close; the consumer may still take it.
    assert consumer.read_batch(10) == [(0, b"x")]
    with pytest.raises(RingClosed) as info:
        consumer.try_read()
    assert info.value.closed_by == "consumer"


def test_full_ring_reports_consumer_close_instead_of_false(
    ends: tuple[RingProducer, RingConsumer],
) -> None:
    producer, consumer = ends
    while producer.try_write(b"r" * 24):
        pass
    consumer.close()
    with pytest.raises(RingClosed):
        producer.try_write(b"r")
    with pytest.raises(RingClosed):
        producer.try_write_many([b"r"])
    assert producer.wait_writable(8, 5)


def test_closed_ring_refuses_new_ends(ring: Ring) -> None:
    ring.producer().close()
    with pytest.raises(RingClosed):
        ring.consumer()


# --- roles, attaching, statistics ---------------------------------------------------------------


def test_one_producer_and_one_consumer_per_ring(instance: str) -> None:
    with Ring.create(instance, "r", 256) as ring:
        ring.producer()
        ring.consumer()
        with Ring.attach(instance, "r") as other:
            with pytest.raises(RingBusy) as info:
                other.producer()
            assert info.value.role == "producer"
            with pytest.raises(RingBusy):
                other.consumer()
        ring.detach()  # gives the roles up
        with Ring.attach(instance, "r") as other:
            producer, consumer = other.producer(), other.consumer()
            assert producer.try_write(b"x") and consumer.try_read() == (0, b"x")
        ring.unlink()


def test_new_ends_resume_where_the_old_ones_stopped(instance: str) -> None:
    with Ring.create(instance, "r", 256) as ring:
        producer = ring.producer()
        for i in range(20):
            producer.try_write(bytes([i]) * 20)
        consumer = ring.consumer()
        assert consumer.read_batch(3) == [(0, bytes([i]) * 20) for i in range(3)]
    with Ring.attach(instance, "r") as ring:
        consumer = ring.consumer()
        assert [p[0] for _, p in consumer.read_batch(100)] == list(range(3, 8))  # 8 fit
        producer = ring.producer()
        assert producer.try_write(b"after")
        assert consumer.try_read() == (0, b"after")
        ring.unlink()


def test_attach_checks_the_header(instance: str) -> None:
    with pytest.raises(SegmentMissing):
        Ring.attach(instance, "r")
    with SharedTable.create(instance, "table", 100) as table:
        with pytest.raises(SegmentCorrupt) as info:
            Ring.attach(instance, "table")
        assert info.value.field == "magic"
        table.unlink()
    with Segment.create(instance, "short", 64) as short:
        with pytest.raises(SegmentCorrupt):
            Ring.attach(instance, "short")
        short.unlink()
    with Ring.create(instance, "r", 256) as ring:
        with Segment.attach(instance, "r") as raw, memoryview(raw.buf) as view:
            counters = view[: layout.DATA_OFFSET].cast("q")
            counters[layout.slot(layout.VERSION_OFFSET)] = 99
            with pytest.raises(SegmentCorrupt) as info:
                Ring.attach(instance, "r")
            assert (info.value.field, info.value.actual) == ("version", 99)
            counters.release()
        ring.unlink()


def test_create_rolls_back_when_a_semaphore_exists(instance: str) -> None:
    with Ring.create(instance, "r", 256) as ring:
        ring.unlink()
    # Leave only one semaphore behind, as a crash between two creations would.
    create_semaphore(instance, "r.pwake").close()
    with pytest.raises(SegmentExists):
        Ring.create(instance, "r", 256)
    assert list_segments(instance) == []
    assert list_semaphores(instance) == ["r.pwake"]
    remove_stale(instance)


def test_corrupt_record_is_reported_not_looped_on(instance: str) -> None:
    with Ring.create(instance, "r", 256) as ring:
        producer, consumer = ring.producer(), ring.consumer()
        producer.try_write(b"abc")
        with Segment.attach(instance, "r") as raw:
            layout.RECORD_HEADER.pack_into(raw.buf, layout.DATA_OFFSET, 200, 0, 0)
        with pytest.raises(SegmentCorrupt):
            consumer.try_read()
        ring.unlink()


def test_statistics_and_detach(instance: str) -> None:
    ring = Ring.create(instance, "r", 256)
    producer, consumer = ring.producer(), ring.consumer()
    producer.try_write(b"x" * 10)
    stats = ring.statistics()
    assert (stats.capacity_bytes, stats.head, stats.tail, stats.used_bytes) == (256, 24, 0, 24)
    assert stats.producer_pid == stats.consumer_pid > 0
    assert not stats.is_closed
    assert producer.free_bytes == 232 and consumer.used_bytes == 24
    ring.detach()
    ring.detach()
    for call in (lambda: producer.try_write(b"x"), consumer.try_read):
        with pytest.raises(ValueError):
            call()
    with Ring.attach(instance, "r") as again:
        assert again.statistics().producer_pid == again.statistics().consumer_pid == 0
        again.unlink()


# --- waiting without burning a core ---------------------------------------------------------------


def test_idle_consumer_uses_little_cpu(ring: Ring) -> None:
    consumer = ring.consumer(DEFAULT_POLICY)
    me = psutil.Process()
    before, start = me.cpu_times(), time.monotonic()
    with pytest.raises(RingEmpty):
        consumer.read(timeout_s=1.0)
    after, wall = me.cpu_times(), time.monotonic() - start
    cpu = (after.user - before.user) + (after.system - before.system)
    assert wall >= 1.0
    assert cpu < 0.1 * wall, f"idle read used {cpu:.3f} s CPU in {wall:.3f} s"
    stats = consumer.wait_statistics()
    assert (stats.parks, stats.timeouts) == (1, 1)
    assert stats.spin_us < DEFAULT_POLICY.spin_us  # a long idle wait shortens the next spin
