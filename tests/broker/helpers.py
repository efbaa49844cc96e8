"""Helpers of the broker tests: a write path in this process (shared memory, writers on
threads), stores in temporary directories, and request builders."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shmq.broker.appender import StoreAppender
from shmq.broker.context import Broker, BrokerSettings
from shmq.broker.dispatch import BrokerDispatch
from shmq.broker.longpoll import PullHolds
from shmq.broker.offsets import ConsumerOffsets
from shmq.broker.reader import StoreReader
from shmq.broker.schedule import DelayScheduler
from shmq.broker.topics import TopicTable
from shmq.broker.writer import Writer
from shmq.ipc.registry import BrokerShm, create_broker_shm
from shmq.ipc.segment import list_segments, remove_stale
from shmq.message.properties import encode_properties
from shmq.protocol import (
    PullMessageRequestHeader,
    RemotingCommand,
    RequestCode,
    SendMessageRequestHeader,
    SendMessageRequestHeaderV2,
    make_request,
)
from shmq.remoting import Connection, RemotingClient, serve
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


# -- an acceptor in this process: real server and handlers, a store appended to directly ---------




@dataclass
class InProcessBroker:
    """Handlers behind a real server on 127.0.0.1, appending straight into a store."""

    broker: Broker
    store: MessageStore
    address: str
    client: RemotingClient
    notifications: list[RemotingCommand]
    scheduler: DelayScheduler
    clock: list[int]  #: the scheduler's clock (ms); tests move it

    async def call(self, request: RemotingCommand, timeout_s: float = 5.0) -> RemotingCommand:
        return await self.client.invoke(self.address, request, timeout_s)


@asynccontextmanager
async def in_process_broker(tmp_path: Path, *, auto_create: bool = True,
                            max_body_bytes: int = 1 << 20,
                            hold_interval_s: float = 0.005) -> AsyncIterator[InProcessBroker]:
    root = tmp_path / "store"
    store = MessageStore(root, SMALL_STORE, writer_slot=0)
    reader = StoreReader(root, SMALL_STORE)
    holds = PullHolds(reader, interval_s=hold_interval_s)
    settings = BrokerSettings(auto_create_topic=auto_create, max_body_bytes=max_body_bytes,
                              max_frame_bytes=4 << 20)
    clock = [int(time.time() * 1000)]
    broker = Broker(settings,
                    topics=TopicTable(root / "config", default_queues=4,
                                      auto_create=auto_create),
                    offsets=ConsumerOffsets(root / "config"), reader=reader,
                    appender=StoreAppender(store), holds=holds, clock_ms=lambda: clock[0])
    dispatch = BrokerDispatch(broker)
    notifications: list[RemotingCommand] = []

    def on_request(conn: Connection, request: RemotingCommand) -> None:
        notifications.append(request)

    server = await serve("127.0.0.1", 0, dispatch.dispatcher, on_close=dispatch.connection_closed)
    hold_task = asyncio.create_task(holds.run())
    client = RemotingClient(on_request=on_request)
    scheduler = DelayScheduler(reader, broker.appender, root / "config",
                               store_host=broker.store_host, clock_ms=lambda: clock[0])
    assert scheduler.try_acquire()
    try:
        yield InProcessBroker(broker, store, f"127.0.0.1:{server.port}", client, notifications,
                              scheduler, clock)
    finally:
        scheduler.close()
        await client.close()
        holds.release_all()
        hold_task.cancel()
        await server.aclose()
        reader.close()
        store.close()


def send_request(topic: str, body: bytes, *, tags: str | None = None, keys: str | None = None,
                 properties: Mapping[str, str] | None = None, queue_id: int = -1,
                 code: int = RequestCode.SEND_MESSAGE, batch: str | None = None,
                 sys_flag: int = 0, reconsume_times: int | None = None,
                 max_reconsume_times: int | None = None,
                 default_topic: str = "TBW102") -> RemotingCommand:
    """A send as the C++ client builds it (V1 names; V2 for code 310/320)."""
    props = dict(properties or {})
    if tags is not None:
        props["TAGS"] = tags
    if keys is not None:
        props["KEYS"] = keys
    props.setdefault("WAIT", "true")
    header = SendMessageRequestHeader(
        producer_group="pg", topic=topic, default_topic=default_topic,
        default_topic_queue_nums=4, queue_id=queue_id, sys_flag=sys_flag,
        born_timestamp=1_700_000_000_000, flag=0,
        properties=encode_properties(props).decode(), reconsume_times=reconsume_times,
        max_reconsume_times=max_reconsume_times)
    fields = header.to_ext_fields()
    if code in (RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE):
        fields = SendMessageRequestHeaderV2.from_v1(header).to_ext_fields()
    if batch is not None:
        fields["m" if "m" in fields or "a" in fields else "batch"] = batch
    return make_request(code, 0, fields, body)


def pull_request(group: str, topic: str, queue_id: int, offset: int, *, sub: str | None = "*",
                 suspend_ms: int = 0, commit_offset: int = 0, max_msgs: int = 32,
                 sys_flag: int | None = None) -> RemotingCommand:
    """A pull as the C++ push consumer sends it (SUBSCRIPTION flag, SUSPEND if asked)."""
    if sys_flag is None:
        sys_flag = (0x4 if sub is not None else 0) | (0x2 if suspend_ms else 0) \
            | (0x1 if commit_offset else 0)
    header = PullMessageRequestHeader(
        consumer_group=group, topic=topic, queue_id=queue_id, queue_offset=offset,
        max_msg_nums=max_msgs, sys_flag=sys_flag, commit_offset=commit_offset,
        suspend_timeout_millis=suspend_ms, sub_version=0, subscription=sub)
    return make_request(RequestCode.PULL_MESSAGE, 0, header.to_ext_fields())
