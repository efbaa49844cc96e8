"""Helpers of the broker tests: a write path in this process (shared memory, writers on
threads), stores in temporary directories, and request builders."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shmq.broker.writer import Writer
from shmq.ipc.registry import BrokerShm, create_broker_shm
from shmq.ipc.segment import list_segments, remove_stale
from shmq.store.config import StoreConfig
from shmq.store.store import MessageStore

T = TypeVar("T")

#: small store settings for tests
SMALL_STORE = StoreConfig(segment_bytes=8 << 20, cq_entries_per_file=1000, min_free_bytes=0,
                          index_slots=1000, index_max_entries=10_000, store_host="127.0.0.1",
                          store_port=10911)


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    """Run `coro` on a fresh event loop, failing (not hanging) after `timeout_s`."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


def unique_instance() -> str:
    return f"tb{uuid.uuid4().hex[:10]}"


@dataclass
class WritePath:
    """Broker shared memory and W writers running on threads of this process."""

    instance: str
    root: Path
    shm: BrokerShm
    writers: list[Writer] = field(default_factory=list)
    stores: list[MessageStore] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start_writer(self, index: int) -> None:
        store = MessageStore(self.root, SMALL_STORE, writer_slot=index)
        writer = Writer(self.instance, index, store, max_body_bytes=1 << 20)
        thread = threading.Thread(target=writer.run, args=(self.stop.is_set, lambda: None),
                                  daemon=True, name=f"test-writer-{index}")
        self.writers.append(writer)
        self.stores.append(store)
        self.threads.append(thread)
        thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        for writer in self.writers:
            writer.close()
        for store in self.stores:
            store.close()
        self.shm.detach()


@contextmanager
def write_path(tmp_path: Path, *, writers: int = 1, start: bool = True) -> Iterator[WritePath]:
    """Shared memory of a fresh instance and (if `start`) its writers on threads."""
    instance = unique_instance()
    root = tmp_path / "store"
    shm = create_broker_shm(instance, writers, max_producers=4)
    path = WritePath(instance, root, shm)
    try:
        if start:
            for index in range(writers):
                path.start_writer(index)
        yield path
    finally:
        try:
            path.close()
        finally:
            # Segments only: ipc.registry.remove_rings_of unlinks semaphores named
            # ".data"/".space" while rings name them ".cwake"/".pwake" (reported).
            left = list_segments(instance)
            remove_stale(instance)
    rings = [name for name in left if name.startswith("p") and ".w" in name]
    assert not rings, f"rings left behind: {rings}"
