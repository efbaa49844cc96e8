"""The acceptor's write channel against writers running on threads of this process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shmq.broker.channel import WriteChannel
from shmq.broker.errors import MessageIllegal, SendTimedOut, WritePathBusy, WriterGone
from shmq.message.encoder import EncodedBatch, encode_batch
from shmq.message.msgid import pack_host
from shmq.message.record import iter_records
from shmq.store.store import MessageStore

from .helpers import SMALL_STORE, run, write_path

HOST = pack_host("127.0.0.1", 10911)


def batch(topic: str, queue_id: int, bodies: list[bytes]) -> EncodedBatch:
    return encode_batch(topic.encode(), queue_id, bodies, [b"TAGS\x01A\x02"] * len(bodies),
                        born_timestamp_ms=1, born_host=HOST, store_host=HOST)


def tags(n: int) -> np.ndarray:
    return np.full(n, 65, dtype=np.int64)


def test_appends_land_in_the_store_in_order(tmp_path: Path) -> None:
    with write_path(tmp_path, writers=2) as path:
        async def scenario() -> list[tuple[int, int]]:
            channel = WriteChannel.open(path.instance, ring_bytes=1 << 16)
            try:
                results = await asyncio.gather(*(
                    channel.append("T", i % 4, batch("T", i % 4, [b"m%d" % i, b"n%d" % i]),
                                   tags(2)) for i in range(40)))
                assert channel.in_flight == 0
                return [(r.queue_offset, r.count) for r in results]
            finally:
                channel.close()

        results = run(scenario())
    assert sorted(results) == sorted((2 * (i // 4), 2) for i in range(40))
    with MessageStore(path.root, SMALL_STORE) as store:
        for queue_id in range(4):
            cq = store.queue("T", queue_id)
            assert cq.max_offset == 20
            sel = cq.select(0, 32, None)
            bodies = [m.body for view in store.views(sel.offsets, sel.sizes)
                      for m in iter_records(view)]
            expected = [b"%s%d" % (p, i) for i in range(queue_id, 40, 4) for p in (b"m", b"n")]
            assert bodies == expected


def test_a_full_ring_answers_busy_and_sends_nothing(tmp_path: Path) -> None:
    with write_path(tmp_path, writers=1, start=False) as path:
        path.shm.stats.array[0]["pid"] = os.getpid()  # a "live" writer that never reads

        async def scenario() -> None:
            channel = WriteChannel.open(path.instance, ring_bytes=4096, busy_wait_s=0.05,
                                        timeout_s=0.5)
            try:
                # two records of ~1.9 KiB fill the 4 KiB ring; nobody reads it
                first = [asyncio.ensure_future(
                    channel.append("T", 0, batch("T", 0, [b"x" * 1800]), tags(1)))
                    for _ in range(2)]
                await asyncio.sleep(0.01)
                with pytest.raises(WritePathBusy, match="REJECTREQUEST"):
                    await channel.append("T", 0, batch("T", 0, [b"y" * 1800]), tags(1))
                for append in first:
                    with pytest.raises(SendTimedOut):
                        await append
            finally:
                channel.close()

        run(scenario())


def test_a_batch_larger_than_a_ring_record_is_illegal(tmp_path: Path) -> None:
    with write_path(tmp_path, writers=1) as path:
        async def scenario() -> None:
            channel = WriteChannel.open(path.instance, ring_bytes=4096)
            try:
                with pytest.raises(MessageIllegal, match="ring.bytes"):
                    await channel.append("T", 0, batch("T", 0, [b"x" * 3000]), tags(1))
            finally:
                channel.close()

        run(scenario())


def test_a_dead_writer_fails_the_appends_in_flight(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with write_path(tmp_path, writers=1, start=False) as path:
        path.shm.stats.array[0]["pid"] = dead.pid

        async def scenario() -> float:
            channel = WriteChannel.open(path.instance, ring_bytes=1 << 16, timeout_s=5.0)
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(WriterGone, match="may or may not be stored"):
                    await channel.append("T", 0, batch("T", 0, [b"x"]), tags(1))
                return loop.time() - started
            finally:
                channel.close()

        elapsed = run(scenario())
    assert elapsed < 1.0, f"a dead writer was noticed only after {elapsed:.2f} s"
