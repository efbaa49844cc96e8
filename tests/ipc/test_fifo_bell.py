"""Tests of the FIFO bell (wakeup.FifoBell) and of rings whose consumer parks on one: the
acceptor's completion rings, read from an event loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import posix_ipc
import pytest

from shmq.errors import IpcError
from shmq.ipc import remove_stale
from shmq.ipc.errors import SegmentExists
from shmq.ipc.ring import Ring
from shmq.ipc.segment import SHM_DIR, posix_name
from shmq.ipc.wakeup import FifoBell, WaitPolicy
from tests.ipc._util import CTX

pytestmark = pytest.mark.timeout(60)

_PARK_AT_ONCE = WaitPolicy(spin_us=0, min_spin_us=0, max_spin_us=0, recheck_us=2e6,
                           park_slice_s=5)


@pytest.fixture
def bell(instance: str) -> Iterator[FifoBell]:
    made = FifoBell.create(SHM_DIR + posix_name(instance, "bell"))
    yield made
    made.close()
    made.unlink()


def test_release_then_acquire_takes_every_post(bell: FifoBell) -> None:
    assert bell.value == 0
    bell.fileno()  # a reader exists: posts are kept
    for _ in range(3):
        bell.release()
    assert bell.value == 3
    bell.acquire(0.5)  # takes all three (posts coalesce)
    assert bell.value == 0
    with pytest.raises(posix_ipc.BusyError):
        bell.acquire(0.02)


def test_post_without_a_reader_is_dropped_and_does_not_raise(bell: FifoBell) -> None:
    poster = FifoBell(bell.path)
    poster.release()  # ENXIO inside: nobody listens
    bell.fileno()
    poster.release()  # opens now
    assert bell.value == 1
    poster.close()


def test_create_refuses_an_existing_path(bell: FifoBell) -> None:
    with pytest.raises(SegmentExists):
        FifoBell.create(bell.path)
    assert FifoBell.exists(bell.path)
    assert not FifoBell.exists(bell.path + ".nope")


def test_a_full_fifo_never_blocks_the_poster(bell: FifoBell) -> None:
    bell.fileno()
    started = time.monotonic()
    for _ in range(70_000):  # more than a pipe buffer (64 KiB)
        bell.release()
    assert time.monotonic() - started < 5
    assert bell.drain()
    assert not bell.drain()


def _post_after(path: str, delay_s: float) -> None:
    time.sleep(delay_s)
    FifoBell(path).release()


def test_acquire_wakes_on_a_post_from_another_process(bell: FifoBell) -> None:
    bell.fileno()
    child = CTX.Process(target=_post_after, args=(bell.path, 0.2))
    child.start()
    started = time.monotonic()
    bell.acquire(5.0)
    waited = time.monotonic() - started
    child.join(10)
    assert 0.1 < waited < 4.0


def test_ring_with_consumer_fifo_wakes_an_event_loop(instance: str) -> None:
    """The acceptor's pattern: announce, watch the descriptor, retire, read."""
    ring = Ring.create(instance, "r", 1 << 12, consumer_fifo=True)
    try:
        consumer = ring.consumer(_PARK_AT_ONCE)
        other = Ring.attach(instance, "r")  # as a writer process would
        producer = other.producer()

        async def wait_for_record() -> bytes:
            loop = asyncio.get_running_loop()
            got: asyncio.Future[bytes] = loop.create_future()

            def on_bell() -> None:
                consumer.retire()
                record = consumer.try_read()
                if record is not None and not got.done():
                    got.set_result(bytes(record[1]))

            loop.add_reader(consumer.fileno(), on_bell)
            consumer.announce()
            assert not consumer.is_readable()
            loop.call_later(0.05, producer.write, b"hello", 7)
            try:
                return await asyncio.wait_for(got, 5.0)
            finally:
                loop.remove_reader(consumer.fileno())

        assert asyncio.run(wait_for_record()) == b"hello"
        # no announcement: the producer posts nothing
        producer.write(b"again", 7)
        with pytest.raises(BlockingIOError):
            os.read(consumer.fileno(), 16)
        assert consumer.try_read() is not None
        # the blocking path works on a FIFO bell too
        producer.write(b"third", 7)
        assert consumer.wait_readable(1.0)
        other.detach()
    finally:
        ring.detach()
        ring.unlink()


def test_semaphore_ring_has_no_descriptor(instance: str) -> None:
    ring = Ring.create(instance, "s", 1 << 12)
    try:
        with pytest.raises(IpcError):
            ring.consumer().fileno()
    finally:
        ring.detach()
        ring.unlink()


def test_unlink_removes_the_fifo(instance: str) -> None:
    ring = Ring.create(instance, "u", 1 << 12, consumer_fifo=True)
    path = SHM_DIR + posix_name(instance, "u.cwake")
    assert FifoBell.exists(path)
    ring.detach()
    ring.unlink()
    assert not os.path.exists(path)
    remove_stale(instance)
