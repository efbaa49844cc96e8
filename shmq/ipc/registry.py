"""Shared memory of the write path: the producer registry, the writers' doorbells and the
writers' counters (bytes and pids; what travels in the rings is protocol/local.py's business).

Theory of operation. A same-host producer (LocalProducer, or the acceptor) *attaches*: under an
exclusive flock of the registry's lock file it takes a free row of the registry (one whose pid
is 0 or dead), bumps the row's generation, creates one request ring and one completion ring per
writer named ``p<row>.g<generation>.w<writer>.req|cmp``, fills in its pid and bumps the
registry's version. Writers look at the version often (one shared load) and attach the rings
of rows they have not seen. A producer detaches by closing and unlinking its rings and zeroing
its row; a dead producer's rings are unlinked by the next producer that takes the row or by the
housekeeper.

A writer polls all its request rings; when they are all empty it parks on its doorbell (a
semaphore plus a state word in `doorbells`, see ipc.wakeup). A producer that publishes into a
ring of writer w loads w's state word and posts only if w is parked, so the fast path has no
syscall.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from shmq.errors import IpcError
from shmq.ipc.document import SharedDocument
from shmq.ipc.ring import FIFO_SUFFIXES, SEMAPHORE_SUFFIXES, Ring
from shmq.ipc.segment import SEGMENT_PREFIX, SHM_DIR, unlink_segment, unlink_semaphore
from shmq.ipc.table import SharedTable
from shmq.ipc.wakeup import create_semaphore, is_process_alive

__all__ = [
    "PRODUCER_ROW",
    "WRITER_STATS",
    "BrokerShm",
    "NoFreeSlot",
    "ProducerSlot",
    "WriterStatsRow",
    "attach_producer",
    "create_broker_shm",
    "detach_producer",
    "doorbell_name",
    "publish_info",
    "read_info",
    "registry_lock",
    "ring_name",
]

#: One row per producer slot.
PRODUCER_ROW: Final = np.dtype([("pid", "<i8"), ("generation", "<i8"), ("attached_ns", "<i8")])
#: One row per writer: counters for `shmq status`.
WRITER_STATS: Final = np.dtype([
    ("pid", "<i8"), ("appends", "<i8"), ("bytes", "<i8"), ("batches", "<i8"),
    ("rejects", "<i8"), ("errors", "<i8"), ("last_append_ns", "<i8"), ("producers", "<i8"),
])
REGISTRY: Final = "producers"
REGISTRY_VERSION: Final = "producers.version"
DOORBELLS: Final = "doorbells"
STATS: Final = "writer-stats"


def ring_name(row: int, generation: int, writer: int, direction: str) -> str:
    """Name of a producer's ring to or from `writer` (`direction` is "req" or "cmp")."""
    return f"p{row}.g{generation}.w{writer}.{direction}"


def doorbell_name(writer: int) -> str:
    return f"doorbell.w{writer}"


def lock_path(instance: str) -> Path:
    return Path(SHM_DIR) / f"{SEGMENT_PREFIX}.{instance}.producers.lock"


@contextmanager
def registry_lock(instance: str) -> Iterator[None]:
    """Hold the producer registry's exclusive lock (released by the kernel if we die)."""
    fd = os.open(lock_path(instance), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class WriterStatsRow:
    """One writer's row of the shared WRITER_STATS table, as int64 words: a numpy record's
    field costs ~1 us to read or update, a memoryview word ~0.05 us. The writer updates its
    row four times per append; producers read the writers' pids once per send."""

    __slots__ = ("_base", "_fields", "_words")

    def __init__(self, table: np.ndarray, index: int) -> None:
        names, fields = WRITER_STATS.names, WRITER_STATS.fields
        assert names is not None and fields is not None and table.dtype == WRITER_STATS
        assert all(fields[name][0] == np.dtype("<i8") for name in names)
        self._words = memoryview(table).cast("B").cast("q")  # type: ignore[arg-type]
        self._base = index * len(names)
        self._fields = {name: self._base + fields[name][1] // 8 for name in names}

    def __getitem__(self, name: str) -> int:
        return int(self._words[self._fields[name]])

    def __setitem__(self, name: str, value: int) -> None:
        self._words[self._fields[name]] = value

    def add_append(self, records: int, nbytes: int, now_ns: int) -> None:
        words, f = self._words, self._fields
        words[f["appends"]] += records
        words[f["bytes"]] += nbytes
        words[f["batches"]] += 1
        words[f["last_append_ns"]] = now_ns


@dataclass
class BrokerShm:
    """The broker's shared tables, created by the supervisor, attached by everyone else."""

    instance: str
    writers: int
    registry: SharedTable
    version: SharedTable
    doorbells: SharedTable
    stats: SharedTable

    @classmethod
    def attach(cls, instance: str) -> BrokerShm:
        """Raises SegmentMissing when no broker of `instance` runs on this host."""
        doorbells = SharedTable.attach(instance, DOORBELLS)
        return cls(instance, len(doorbells.array), SharedTable.attach(instance, REGISTRY),
                   SharedTable.attach(instance, REGISTRY_VERSION), doorbells,
                   SharedTable.attach(instance, STATS))

    def detach(self) -> None:
        for table in (self.registry, self.version, self.doorbells, self.stats):
            table.detach()

    def remove_rings_of(self, row: int, generation: int) -> None:
        """Unlink every ring (and its semaphores) of a producer generation; missing is fine."""
        for w in range(self.writers):
            for direction in ("req", "cmp"):
                name = ring_name(row, generation, w, direction)
                unlink_segment(self.instance, name, missing_ok=True)
                for fifo in FIFO_SUFFIXES:  # a FIFO bell in /dev/shm unlinks like a segment
                    unlink_segment(self.instance, f"{name}.{fifo}", missing_ok=True)
                for sem in SEMAPHORE_SUFFIXES:
                    unlink_semaphore(self.instance, f"{name}.{sem}", missing_ok=True)

    def reap_dead_producers(self) -> int:
        """Free the rows (and unlink the rings) of producers whose process died."""
        reaped = 0
        with registry_lock(self.instance):
            rows = self.registry.array
            for row in range(len(rows)):
                pid = int(rows[row]["pid"])
                if pid and not is_process_alive(pid):
                    self.remove_rings_of(row, int(rows[row]["generation"]))
                    rows[row]["pid"] = 0
                    reaped += 1
            if reaped:
                self.version.array[0] += 1
        return reaped


@dataclass
class ProducerSlot:
    """A producer's registry row and its rings: `requests[w]`/`completions[w]` with writer w."""

    row: int
    generation: int
    requests: list[Ring]
    completions: list[Ring]

    @property
    def rings(self) -> list[Ring]:
        return [*self.requests, *self.completions]


class NoFreeSlot(IpcError):
    """Every producer row of the registry is taken by a live process."""


def attach_producer(shm: BrokerShm, request_ring_bytes: int,
                    completion_ring_bytes: int = 1 << 20, *,
                    completion_fifo: bool = False) -> ProducerSlot:
    """Take a registry row for this process and create its rings with every writer.

    With `completion_fifo` the completion rings' consumer (this process) parks on FIFO bells,
    for an event loop to watch (`Ring.create(consumer_fifo=True)`).

    Raises:
        NoFreeSlot: all rows are held by live processes (ring.max_producers); nothing changed.
        IpcError: a ring could not be created; nothing is left behind.
    """
    with registry_lock(shm.instance):
        rows = shm.registry.array
        free = [r for r in range(len(rows))
                if not rows[r]["pid"] or not is_process_alive(int(rows[r]["pid"]))]
        if not free:
            raise NoFreeSlot(f"all {len(rows)} producer slots of instance {shm.instance!r} are "
                             "taken (ring.max_producers)")
        row = free[0]
        old_gen = int(rows[row]["generation"])
        if rows[row]["pid"]:
            shm.remove_rings_of(row, old_gen)
        gen = old_gen + 1
        slot = ProducerSlot(row, gen, [], [])
        try:
            for w in range(shm.writers):
                slot.requests.append(Ring.create(shm.instance, ring_name(row, gen, w, "req"),
                                                 request_ring_bytes))
                slot.completions.append(Ring.create(shm.instance, ring_name(row, gen, w, "cmp"),
                                                    completion_ring_bytes,
                                                    consumer_fifo=completion_fifo))
        except BaseException:
            for ring in slot.rings:
                ring.detach()
            shm.remove_rings_of(row, gen)
            raise
        rows[row]["generation"] = gen
        rows[row]["attached_ns"] = time.time_ns()
        rows[row]["pid"] = os.getpid()
        shm.version.array[0] += 1
    return slot


def detach_producer(shm: BrokerShm, slot: ProducerSlot) -> None:
    """Give the row back and unlink the slot's rings (close the ring ends first)."""
    with registry_lock(shm.instance):
        rows = shm.registry.array
        if int(rows[slot.row]["pid"]) == os.getpid():
            rows[slot.row]["pid"] = 0
        shm.version.array[0] += 1
        for ring in slot.rings:
            ring.detach()
        shm.remove_rings_of(slot.row, slot.generation)


def create_broker_shm(instance: str, writers: int, max_producers: int) -> BrokerShm:
    """Create the broker's tables and doorbell semaphores (the supervisor, before forking)."""
    registry = SharedTable.create(instance, REGISTRY, max_producers, PRODUCER_ROW)
    version = SharedTable.create(instance, REGISTRY_VERSION, 1, np.int64)
    doorbells = SharedTable.create(instance, DOORBELLS, writers, np.int64)
    stats = SharedTable.create(instance, STATS, writers, WRITER_STATS)
    for w in range(writers):
        create_semaphore(instance, doorbell_name(w)).close()
    lock_path(instance).touch(mode=0o600)
    return BrokerShm(instance, writers, registry, version, doorbells, stats)


INFO: Final = "broker.info"


def publish_info(instance: str, info: dict[str, object]) -> SharedDocument:
    """Create the broker's info document for same-host clients (ipc.document)."""
    return SharedDocument.create(instance, INFO, info, capacity_bytes=4096)


def read_info(instance: str) -> dict[str, Any]:
    """The info document of the broker `instance` on this host.

    Raises:
        SegmentMissing: no broker of that instance runs here.
    """
    with SharedDocument.attach(instance, INFO) as doc:
        return doc.read()
