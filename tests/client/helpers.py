"""Helpers of the remote-client tests: an event-loop runner with a deadline, an in-process name
server, fake brokers (a remoting server with a scripted handler) registered with it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shmq.message.record import encode_record
from shmq.namesrv import NameServer
from shmq.protocol import (
    ConsumerListBody,
    LockBatchRequestBody,
    LockBatchResponseBody,
    MessageQueue,
    PullMessageRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SendMessageResponseHeader,
    decode_send_message_header,
    make_response,
)
from shmq.remoting import Connection, RemotingClient, Server, serve

from ..namesrv.helpers import register_request

T = TypeVar("T")

#: a scenario must finish within this (pytest-timeout is only the last resort)
SCENARIO_TIMEOUT_S = 30.0

#: topic -> (readQueueNums, writeQueueNums, perm)
Topics = Mapping[str, tuple[int, int, int]]


def run(coro: Coroutine[Any, Any, T], timeout_s: float = SCENARIO_TIMEOUT_S) -> T:
    """Run `coro` on a fresh event loop, failing (not hanging) after `timeout_s`."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def wait_for(predicate: Callable[[], object], timeout_s: float = 5.0,
                   what: str = "condition") -> None:
    """Poll `predicate()` until truthy; AssertionError naming `what` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def dead_address() -> str:
    """An address where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def name_server() -> AsyncIterator[NameServer]:
    """A name server on 127.0.0.1, port chosen by the system."""
    async with NameServer("127.0.0.1", 0) as ns:
        yield ns


Handler = Callable[["FakeBroker", RemotingCommand], RemotingCommand | None]


def stored(broker: FakeBroker, request: RemotingCommand) -> RemotingCommand:
    """A send handler that answers SUCCESS with a made-up position."""
    header = decode_send_message_header(request)
    count = len(broker.sends)
    ids = ",".join(f"7F00000100002A9F{count * 1000 + i:016X}" for i in range(1))
    return make_response(request, ResponseCode.SUCCESS, ext_fields=SendMessageResponseHeader(
        ids, max(header.queue_id, 0), count).to_ext_fields())


@dataclass
class FakeBroker:
    """A remoting server answering with `handler`; every request is kept in `requests`."""

    name: str
    handler: Handler = stored
    server: Server | None = None
    requests: list[RemotingCommand] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    #: registrations stay valid while their connection to the name server is open
    registrar: RemotingClient = field(default_factory=RemotingClient)
    data_version: int = 0

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    @property
    def sends(self) -> list[RemotingCommand]:
        codes = {RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2,
                 RequestCode.SEND_BATCH_MESSAGE}
        return [r for r in self.requests if r.code in codes]

    def codes(self) -> list[int]:
        return [r.code for r in self.requests]

    def _dispatch(self, conn: Connection, request: RemotingCommand) -> RemotingCommand | None:
        if conn not in self.connections:
            self.connections.append(conn)
        if request.code == RequestCode.HEART_BEAT:
            self.requests.append(request)
            return make_response(request, ResponseCode.SUCCESS)
        response = self.handler(self, request)
        self.requests.append(request)
        return response

    async def start(self) -> None:
        self.server = await serve("127.0.0.1", 0, self._dispatch)

    async def register(self, ns: NameServer, topics: Topics, broker_id: int = 0,
                       cluster: str = "DefaultCluster") -> None:
        """Register with `ns` as `self.name` member `broker_id`, serving `topics`."""
        self.data_version += 1
        response = await self.registrar.invoke(ns.address, register_request(
            self.name, self.address, broker_id, topics=topics, cluster=cluster,
            version=(1_700_000_000_000, self.data_version)), 5)
        assert response.code == ResponseCode.SUCCESS, response.remark

    async def aclose(self) -> None:
        await self.registrar.close()
        if self.server is not None:
            await self.server.aclose()


@asynccontextmanager
async def fake_brokers(*names: str, handler: Handler = stored) -> AsyncIterator[list[FakeBroker]]:
    brokers = [FakeBroker(name, handler) for name in names]
    try:
        for broker in brokers:
            await broker.start()
        yield brokers
    finally:
        for broker in brokers:
            await broker.aclose()


# -- a broker in memory: enough of send, pull and offsets to drive the consumers ----------------


def record(topic: str, queue_id: int, queue_offset: int, body: bytes,
           properties: Mapping[str, str] | None = None, *, phys_offset: int = 0,
           sysflag: int = 0, reconsume_times: int = 0) -> bytes:
    """One stored record, as a pull body carries it."""
    return encode_record(topic=topic, body=body, properties=dict(properties or {}),
                         queue_id=queue_id, queue_offset=queue_offset, phys_offset=phys_offset,
                         sysflag=sysflag, born_host="127.0.0.1", born_port=1, store_host="127.0.0.1",
                         store_port=10911, born_timestamp_ms=1, store_timestamp_ms=2,
                         reconsume_times=reconsume_times)


@dataclass
class MemoryStore:
    """Queues of records and group offsets; `handle` answers like a broker would."""

    queues: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)
    consumer_ids: dict[str, list[str]] = field(default_factory=dict)
    sent_back: list[int] = field(default_factory=list)
    locks: dict[tuple[str, MessageQueue], str] = field(default_factory=dict)
    phys: int = 0

    def append(self, topic: str, queue_id: int, body: bytes,
               properties: Mapping[str, str] | None = None) -> int:
        queue = self.queues.setdefault((topic, queue_id), [])
        queue.append(record(topic, queue_id, len(queue), body, properties,
                            phys_offset=self.phys))
        self.phys += 1000
        return len(queue) - 1

    def handle(self, broker: FakeBroker, request: RemotingCommand) -> RemotingCommand | None:
        fields = request.ext_fields
        code = request.code
        if code == RequestCode.PULL_MESSAGE:
            return self._pull(request)
        if code == RequestCode.QUERY_CONSUMER_OFFSET:
            key = (fields["consumerGroup"], fields["topic"], int(fields["queueId"]))
            if key not in self.offsets:
                return make_response(request, ResponseCode.QUERY_NOT_FOUND, "not found")
            return make_response(request, ResponseCode.SUCCESS,
                                 ext_fields={"offset": str(self.offsets[key])})
        if code == RequestCode.UPDATE_CONSUMER_OFFSET:
            key = (fields["consumerGroup"], fields["topic"], int(fields["queueId"]))
            self.offsets[key] = int(fields["commitOffset"])
            return make_response(request, ResponseCode.SUCCESS)
        if code in (RequestCode.GET_MAX_OFFSET, RequestCode.GET_MIN_OFFSET):
            size = len(self.queues.get((fields["topic"], int(fields["queueId"])), []))
            value = size if code == RequestCode.GET_MAX_OFFSET else 0
            return make_response(request, ResponseCode.SUCCESS, ext_fields={"offset": str(value)})
        if code == RequestCode.GET_CONSUMER_LIST_BY_GROUP:
            ids = self.consumer_ids.get(fields["consumerGroup"], [])
            return make_response(request, ResponseCode.SUCCESS,
                                 body=ConsumerListBody(tuple(ids)).encode())
        if code == RequestCode.CONSUMER_SEND_MSG_BACK:
            self.sent_back.append(int(fields["offset"]))
            return make_response(request, ResponseCode.SUCCESS)
        if code == RequestCode.LOCK_BATCH_MQ:
            return self._lock(request)
        if code in (RequestCode.UNLOCK_BATCH_MQ, RequestCode.UNREGISTER_CLIENT):
            return make_response(request, ResponseCode.SUCCESS)
        return stored(broker, request)

    def _lock(self, request: RemotingCommand) -> RemotingCommand:
        body = LockBatchRequestBody.decode(request.body or b"{}")
        held = []
        for mq in body.mq_set:
            owner = self.locks.setdefault((body.consumer_group, mq), body.client_id)
            if owner == body.client_id:
                held.append(mq)
        return make_response(request, ResponseCode.SUCCESS,
                             body=LockBatchResponseBody(tuple(held)).encode())

    def _pull(self, request: RemotingCommand) -> RemotingCommand:
        header = PullMessageRequestHeader.from_ext_fields(request.ext_fields)
        if header.sys_flag & 0x1:
            self.offsets[(header.consumer_group, header.topic, header.queue_id)] = (
                header.commit_offset)
        queue = self.queues.get((header.topic, header.queue_id), [])
        start = header.queue_offset
        picked = queue[start:start + header.max_msg_nums]
        fields = {"suggestWhichBrokerId": "0", "minOffset": "0", "maxOffset": str(len(queue)),
                  "nextBeginOffset": str(start + len(picked))}
        if start > len(queue):
            fields["nextBeginOffset"] = str(len(queue))
            return make_response(request, ResponseCode.PULL_OFFSET_MOVED, ext_fields=fields)
        if not picked:
            return make_response(request, ResponseCode.PULL_NOT_FOUND, ext_fields=fields)
        return make_response(request, ResponseCode.SUCCESS, ext_fields=fields,
                             body=b"".join(picked))
