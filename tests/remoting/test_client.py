"""Tests of shmq/remoting/client.py (RemotingClient) over real 127.0.0.1 sockets."""

from __future__ import annotations

import asyncio
import socket

import pytest

from shmq.protocol import RemotingCommand, ResponseCode, make_request, make_response
from shmq.remoting import (
    ConnectFailed,
    Connection,
    ConnectionClosed,
    Dispatcher,
    RemotingClient,
    RemotingTimeout,
    serve,
)

from .helpers import run, wait_until

pytestmark = pytest.mark.integration

ECHO, HOLD, NOTE = 900, 901, 902


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # nothing listens there once the socket is closed


class Target:
    def __init__(self) -> None:
        self.notes: list[RemotingCommand] = []
        self.dispatcher = Dispatcher({
            ECHO: lambda conn, r: make_response(r, ResponseCode.SUCCESS, body=r.body),
            HOLD: lambda conn, r: None,  # answers never
            NOTE: self.note,
        })

    def note(self, conn: Connection, request: RemotingCommand) -> None:
        self.notes.append(request)


def test_connect_failures_are_typed_and_retried_on_next_use() -> None:
    async def scenario() -> None:
        port = _free_port()
        async with RemotingClient(connect_timeout_s=2) as client:
            with pytest.raises(ConnectFailed) as info:
                await client.invoke(f"127.0.0.1:{port}", make_request(ECHO, 0), timeout_s=1)
            assert info.value.addr == f"127.0.0.1:{port}" and "refused" in info.value.reason.lower()
            target = Target()
            async with await serve("127.0.0.1", port, target.dispatcher):
                response = await client.invoke(f"127.0.0.1:{port}", make_request(ECHO, 0, body=b"1"),
                                               timeout_s=5)
                assert response.body == b"1"

    run(scenario())


def test_concurrent_callers_share_one_connection_attempt() -> None:
    async def scenario() -> None:
        target = Target()
        async with await serve("127.0.0.1", 0, target.dispatcher) as server, \
                RemotingClient() as client:
            addr = f"127.0.0.1:{server.port}"
            results = await asyncio.gather(*(client.invoke(addr, make_request(ECHO, 0), 5)
                                             for _ in range(10)))
            assert all(r.code == ResponseCode.SUCCESS for r in results)
            assert len(server.connections) == 1 and list(client.connections) == [addr]

    run(scenario())


def test_a_timeout_leaves_the_connection_usable() -> None:
    async def scenario() -> None:
        target = Target()
        async with await serve("127.0.0.1", 0, target.dispatcher) as server, \
                RemotingClient() as client:
            addr = f"127.0.0.1:{server.port}"
            with pytest.raises(RemotingTimeout) as info:
                await client.invoke(addr, make_request(HOLD, 0), timeout_s=0.1)
            assert (info.value.code, info.value.timeout_s, info.value.addr) == (HOLD, 0.1, addr)
            conn = client.connections[addr]
            assert conn.in_flight == 0  # the expired request left no trace
            assert (await client.invoke(addr, make_request(ECHO, 0), 5)).code == 0
            assert client.connections[addr] is conn

    run(scenario())


def test_oneway_requests_get_no_answer_and_keep_order() -> None:
    async def scenario() -> None:
        target = Target()
        async with await serve("127.0.0.1", 0, target.dispatcher) as server, \
                RemotingClient() as client:
            addr = f"127.0.0.1:{server.port}"
            for i in range(5):
                await client.invoke_oneway(addr, make_request(NOTE, 0, {"i": str(i)}))
            await wait_until(lambda: len(target.notes) == 5, what="five oneway requests")
            assert [n.ext_fields["i"] for n in target.notes] == ["0", "1", "2", "3", "4"]
            assert all(n.is_oneway for n in target.notes)

    run(scenario())


def test_after_the_peer_closes_the_next_call_reconnects() -> None:
    async def scenario() -> None:
        target = Target()
        async with await serve("127.0.0.1", 0, target.dispatcher) as server, \
                RemotingClient() as client:
            addr = f"127.0.0.1:{server.port}"
            held = asyncio.ensure_future(client.invoke(addr, make_request(HOLD, 0), 10))
            await wait_until(lambda: len(server.connections) == 1, what="a connection")
            first = next(iter(server.connections))
            first.close("test")
            with pytest.raises(ConnectionClosed):
                await held
            await wait_until(lambda: not client.connections, what="the client to forget it")
            assert (await client.invoke(addr, make_request(ECHO, 0), 5)).code == 0
            assert first not in server.connections and len(server.connections) == 1

    run(scenario())


def test_a_closed_client_refuses_new_calls() -> None:
    async def scenario() -> None:
        target = Target()
        async with await serve("127.0.0.1", 0, target.dispatcher) as server:
            client = RemotingClient()
            addr = f"127.0.0.1:{server.port}"
            assert (await client.invoke(addr, make_request(ECHO, 0), 5)).code == 0
            await client.close()
            assert not client.connections
            with pytest.raises(ConnectFailed, match="closed"):
                await client.invoke(addr, make_request(ECHO, 0), 5)
            await wait_until(lambda: not server.connections, what="the server to see it")

    run(scenario())
