"""Entry points of the child processes the ipc tests start (importable under 'spawn').

Each function is a whole child: it attaches by name, does one job, reports through a
`multiprocessing` connection where the test needs an answer, and detaches.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import time
import zlib
from multiprocessing.connection import Connection
from typing import Any

from shmq.ipc import (
    IpcTimeout,
    Ring,
    RingClosed,
    SharedTable,
    WaitPolicy,
)
from shmq.ipc.errors import PeerGone

_SEQ = struct.Struct("<Q")
_BASE = random.Random(20240501).randbytes(8192)


def sequence_payload(i: int) -> bytes:
    """Record `i` of the deterministic stream: its number, then 0..300 varied bytes."""
    start = (i * 131) % 4096
    return _SEQ.pack(i) + _BASE[start : start + (i * 7919) % 301]


def sequence_kind(i: int) -> int:
    return (i * 31) % 65536


def produce_sequence(instance: str, name: str, count: int, seed: int, conn: Connection) -> None:
    """Write records 0..count-1 in randomly sized batches, then close; send the CRC."""
    rng = random.Random(seed)
    crc = 0
    with Ring.attach(instance, name) as ring:
        producer = ring.producer()
        i = 0
        while i < count:
            if rng.random() < 0.2:  # single blocking writes
                payload = sequence_payload(i)
                producer.write(payload, sequence_kind(i), timeout_s=20)
                crc = zlib.crc32(payload, crc)
                i += 1
                continue
            # Batches go through reservations (one commit), so that each record keeps its own
            # kind; try_write_many gives one kind to a whole batch (see produce_batches).
            batch = rng.randint(1, 64)
            written = 0
            for j in range(i, min(i + batch, count)):
                payload = sequence_payload(j)
                view = producer.try_reserve(len(payload), sequence_kind(j))
                if view is None:
                    break
                view[:] = payload
                crc = zlib.crc32(payload, crc)
                written += 1
            producer.commit()
            i += written
            if written == 0:
                producer.wait_writable(len(sequence_payload(i)), 20)
        producer.close()
    conn.send(crc)


def produce_batches(instance: str, name: str, count: int, conn: Connection) -> None:
    """Write records 0..count-1 of kind 7 with try_write_many, then close; send the CRC."""
    crc = 0
    with Ring.attach(instance, name) as ring:
        producer = ring.producer()
        i = 0
        while i < count:
            batch = [sequence_payload(j) for j in range(i, min(i + 32, count))]
            written = producer.try_write_many(batch, kind=7)
            for payload in batch[:written]:
                crc = zlib.crc32(payload, crc)
            i += written
            if written < len(batch):
                producer.wait_writable(len(batch[written]), 20)
        producer.close()
    conn.send(crc)


def echo(instance: str, requests: str, replies: str, policy: dict[str, Any]) -> None:
    """Read each request and write it back, until the request ring is closed."""
    with Ring.attach(instance, requests) as req, Ring.attach(instance, replies) as rep:
        consumer = req.consumer(WaitPolicy(**policy))
        producer = rep.producer(WaitPolicy(**policy))
        try:
            while True:
                kind, payload = consumer.read(timeout_s=30)
                producer.write(payload, kind, timeout_s=30)
        except RingClosed:
            producer.close()


def consume_until_closed(
    instance: str, name: str, policy: dict[str, Any], conn: Connection
) -> None:
    """Block in read(); report the records seen and what ended the wait, and how late."""
    seen = 0
    with Ring.attach(instance, name) as ring:
        consumer = ring.consumer(WaitPolicy(**policy))
        conn.send("ready")
        try:
            while True:
                consumer.read(timeout_s=20)
                seen += 1
        except (RingClosed, PeerGone, IpcTimeout) as err:
            conn.send((type(err).__name__, seen, time.monotonic()))


def write_until_closed(instance: str, name: str, policy: dict[str, Any], conn: Connection) -> None:
    """Write until the ring is full and then block in write(); report what ended it."""
    with Ring.attach(instance, name) as ring:
        producer = ring.producer(WaitPolicy(**policy))
        written = 0
        try:
            while True:
                producer.write(b"x" * 100, timeout_s=20)
                written += 1
        except (RingClosed, PeerGone, IpcTimeout) as err:
            conn.send((type(err).__name__, written, time.monotonic()))


def produce_then_die(instance: str, name: str, count: int) -> None:
    """Claim the producer role, write `count` records, and die without closing."""
    ring = Ring.attach(instance, name)
    producer = ring.producer()
    for i in range(count):
        producer.write(sequence_payload(i), timeout_s=20)
    os.kill(os.getpid(), signal.SIGKILL)


def create_objects_then_kill_9(instance: str) -> None:
    """Create a ring and a table under `instance`, then die as kill -9 would kill it."""
    Ring.create(instance, "ring", 4096)
    SharedTable.create(instance, "table", 16)
    os.kill(os.getpid(), signal.SIGKILL)


def bump_table(instance: str, name: str, index: int, times: int) -> None:
    """Add 1 to element `index` of an int64 table `times` times (its single writer)."""
    with SharedTable.attach(instance, name) as table:
        array = table.array
        for _ in range(times):
            array[index] += 1
        del array
