"""Tests of shmq/remoting/server.py and connection.py over real 127.0.0.1 sockets (port 0)."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmq.errors import RequestRejected
from shmq.protocol import (
    FLAG_RESPONSE,
    LanguageCode,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SerializeType,
    make_request,
    make_response,
)
from shmq.remoting import (
    Connection,
    ConnectionClosed,
    Dispatcher,
    RemotingClient,
    RemotingTimeout,
    Server,
    serve,
)

from .helpers import RawPeer, run, wait_until

pytestmark = pytest.mark.integration

ECHO = 900  # test-only request codes
SLOW = 901
BOOM = 902
REFUSE = 903
SILENT = 904
RECORD = 905
ASK_BACK = 906
CLOSE_ME = 907


class _NotWritable(RequestRejected):
    response_code: ClassVar[int | None] = ResponseCode.NO_PERMISSION


class App:
    """A test server: echo, slow echo, failures, oneway recording, server-to-client calls."""

    def __init__(self) -> None:
        self.dispatcher = Dispatcher(name="test")
        self.oneway_seen: list[RemotingCommand] = []
        self.closed: list[Connection] = []
        self.answers_from_client: list[RemotingCommand] = []
        d = self.dispatcher
        d.add(ECHO, self.echo)
        d.add(SLOW, self.slow)
        d.add(BOOM, self.boom)
        d.add(REFUSE, self.refuse)
        d.add(SILENT, lambda conn, request: None)
        d.add(RECORD, self.record)
        d.add(ASK_BACK, self.ask_back)
        d.add(CLOSE_ME, self.close_me)

    def echo(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        return make_response(request, ResponseCode.SUCCESS, ext_fields=request.ext_fields,
                             body=request.body, remark=conn.remote_address)

    async def slow(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        await asyncio.sleep(float(request.ext_fields["delay"]))
        return make_response(request, ResponseCode.SUCCESS, ext_fields=request.ext_fields)

    def boom(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        raise ZeroDivisionError("division by zero in a handler")

    async def refuse(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        raise _NotWritable("broker is not writable")

    def record(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        self.oneway_seen.append(request)
        return make_response(request, ResponseCode.SUCCESS)  # must not be sent for oneway

    async def ask_back(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        answer = await conn.request(make_request(RequestCode.GET_CONSUMER_RUNNING_INFO, 0,
                                                 {"clientId": "c1"}), timeout_s=5.0)
        self.answers_from_client.append(answer)
        conn.oneway(make_request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, 0,
                                 {"consumerGroup": "g"}))
        return make_response(request, ResponseCode.SUCCESS, remark=answer.remark)

    def close_me(self, conn: Connection, request: RemotingCommand) -> None:
        conn.close("asked to")

    async def start(self, **kwargs: object) -> Server:
        options: dict[str, object] = {"max_frame_bytes": 1 << 20,
                                      "on_close": self.closed.append} | kwargs
        return await serve("127.0.0.1", 0, self.dispatcher, **options)  # type: ignore[arg-type]


def _addr(server: Server) -> str:
    return f"127.0.0.1:{server.port}"


def test_port_0_binds_a_free_port_and_requests_are_answered() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server, RemotingClient() as client:
            assert server.port > 0 and server.is_serving
            body = memoryview(b"x" * 100_000)[10:]  # a buffer body goes out uncopied by us
            response = await client.invoke(
                _addr(server), make_request(ECHO, 0, {"k": "v"}, body), timeout_s=5)
            assert response.code == ResponseCode.SUCCESS and response.flag == FLAG_RESPONSE
            assert response.ext_fields == {"k": "v"} and response.body == bytes(body)
            conn = client.connections[_addr(server)]
            assert response.remark == conn.local_address  # the server saw our address
            assert len(server.connections) == 1
        assert server.connections == frozenset() and not server.is_serving

    run(scenario())


def test_responses_match_requests_by_opaque_when_they_come_out_of_order() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server, RemotingClient() as client:
            delays = [0.3, 0.0, 0.2, 0.05, 0.1] * 4
            responses = await asyncio.gather(*(
                client.invoke(_addr(server), make_request(SLOW, 0, {"delay": str(d),
                                                                    "i": str(i)}), timeout_s=5)
                for i, d in enumerate(delays)))
            assert [r.ext_fields["i"] for r in responses] == [str(i) for i in range(20)]
            assert len(client.connections) == 1  # all multiplexed on one connection

    run(scenario())


def test_the_answer_uses_the_serialize_type_of_the_request() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server:
            for serialize_type in (SerializeType.ROCKETMQ, SerializeType.JSON):
                async with RemotingClient(serialize_type=serialize_type) as client:
                    response = await client.invoke(
                        _addr(server), make_request(ECHO, 0, {"a": "1"}), timeout_s=5)
                    assert response.serialize_type == serialize_type
                    assert response.ext_fields == {"a": "1"}

    run(scenario())


def test_handler_errors_become_responses(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server, RemotingClient() as client:
            with caplog.at_level(logging.ERROR, logger="shmq.remoting"):
                boom = await client.invoke(_addr(server), make_request(BOOM, 0), timeout_s=5)
            refused = await client.invoke(_addr(server), make_request(REFUSE, 0), timeout_s=5)
            unknown = await client.invoke(_addr(server), make_request(4242, 0), timeout_s=5)
            assert (boom.code, boom.remark) == (ResponseCode.SYSTEM_ERROR,
                                                "ZeroDivisionError: division by zero in a handler")
            assert (refused.code, refused.remark) == (ResponseCode.NO_PERMISSION,
                                                      "broker is not writable")
            assert unknown.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
            assert unknown.remark == " request type 4242 not supported"
            # the connection survived all three
            ok = await client.invoke(_addr(server), make_request(ECHO, 0), timeout_s=5)
            assert ok.code == ResponseCode.SUCCESS and len(server.connections) == 1
        assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)

    run(scenario())


def test_oneway_requests_are_handled_and_never_answered() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server:
            peer = await RawPeer.connect(server.port)
            try:
                await peer.send_command(make_request(RECORD, 1, oneway=True))
                await peer.send_command(make_request(4242, 2, oneway=True))  # unknown, oneway
                await peer.send_command(make_request(ECHO, 3))
                first = await peer.read_command()
                assert (first.opaque, first.code) == (3, ResponseCode.SUCCESS)
                assert [r.opaque for r in app.oneway_seen] == [1]
                assert await peer.is_closed_by_peer(timeout_s=0.2) is False  # nothing else came
            finally:
                await peer.close()

    run(scenario())


def test_frames_split_into_single_bytes_and_glued_together_are_decoded() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server:
            peer = await RawPeer.connect(server.port)
            try:
                from shmq.protocol import encode_command_bytes
                one = encode_command_bytes(make_request(ECHO, 1, {"k": "1"}, b"body"))
                two = encode_command_bytes(make_request(ECHO, 2, {"k": "2"}))
                for i in range(len(one) - 1):
                    await peer.send(one[i:i + 1])
                await peer.send(one[-1:] + two)
                answers = [await peer.read_command(), await peer.read_command()]
                assert [(a.opaque, a.body) for a in answers] == [(1, b"body"), (2, None)]
            finally:
                await peer.close()

    run(scenario())


def test_a_malformed_frame_closes_only_its_own_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server, RemotingClient() as client:
            good = await client.invoke(_addr(server), make_request(ECHO, 0), timeout_s=5)
            assert good.code == ResponseCode.SUCCESS
            bad = await RawPeer.connect(server.port)
            try:
                # a well-formed length, an unknown serialize type (7) in the mark word
                await bad.send(struct.pack(">iI", 6, (7 << 24) | 2) + b"{}")
                assert await bad.is_closed_by_peer()
            finally:
                await bad.close()
            await wait_until(lambda: len(app.closed) == 1, what="the bad connection closed")
            assert "malformed frame" in (app.closed[0].close_reason or "")
            still = await client.invoke(_addr(server), make_request(ECHO, 0), timeout_s=5)
            assert still.code == ResponseCode.SUCCESS and len(server.connections) == 1

    with caplog.at_level(logging.WARNING, logger="shmq.remoting"):
        run(scenario())
    assert any("unknown serialize type 7" in r.getMessage() for r in caplog.records)


def test_a_frame_above_the_limit_is_refused_before_it_is_buffered() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start(max_frame_bytes=4096) as server, RemotingClient() as client:
            big = await RawPeer.connect(server.port)
            try:
                await big.send(struct.pack(">i", 1 << 30))  # announces 1 GiB, sends nothing
                assert await big.is_closed_by_peer()
            finally:
                await big.close()
            assert "exceeds the 4096-byte limit" in (app.closed[0].close_reason or "")
            # a frame just too large from our own client: its connection goes, the next works
            with pytest.raises(ConnectionClosed):
                await client.invoke(_addr(server), make_request(ECHO, 0, body=b"x" * 4096),
                                    timeout_s=5)
            ok = await client.invoke(_addr(server), make_request(ECHO, 0, body=b"x" * 3000),
                                     timeout_s=5)
            assert ok.code == ResponseCode.SUCCESS and ok.body == b"x" * 3000

    run(scenario())


def test_the_server_can_call_its_client_on_the_same_connection() -> None:
    async def scenario() -> None:
        app = App()
        asked: list[RemotingCommand] = []

        def client_side(conn: Connection, request: RemotingCommand) -> RemotingCommand:
            asked.append(request)
            return make_response(request, ResponseCode.SUCCESS,
                                 remark=f"running info of {request.ext_fields['clientId']}")

        async with await app.start() as server, RemotingClient(on_request=client_side) as client:
            response = await client.invoke(_addr(server), make_request(ASK_BACK, 0), timeout_s=5)
            assert response.remark == "running info of c1"
            await wait_until(lambda: len(asked) == 2, what="the oneway notification")
            assert [r.code for r in asked] == [RequestCode.GET_CONSUMER_RUNNING_INFO,
                                               RequestCode.NOTIFY_CONSUMER_IDS_CHANGED]
            assert asked[1].is_oneway and not asked[0].is_oneway
            assert app.answers_from_client[0].language == LanguageCode.JAVA

    run(scenario())


def test_a_client_without_a_handler_answers_server_requests_not_supported() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server, RemotingClient() as client:
            response = await client.invoke(_addr(server), make_request(ASK_BACK, 0), timeout_s=5)
            assert response.code == ResponseCode.SUCCESS
            assert app.answers_from_client[0].code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED

    run(scenario())


def test_a_server_request_to_a_silent_client_times_out() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server:
            peer = await RawPeer.connect(server.port)  # never answers anything
            try:
                await wait_until(lambda: len(server.connections) == 1, what="the connection")
                conn = next(iter(server.connections))
                with pytest.raises(RemotingTimeout) as info:
                    await conn.request(make_request(RequestCode.GET_CONSUMER_RUNNING_INFO, 0),
                                       timeout_s=0.2)
                assert info.value.code == RequestCode.GET_CONSUMER_RUNNING_INFO
                sent = await peer.read_command()
                assert sent.code == RequestCode.GET_CONSUMER_RUNNING_INFO and not sent.is_response
                assert sent.serialize_type == SerializeType.JSON  # the default towards clients
                # a late answer is dropped; the connection still works
                await peer.send_command(make_response(sent, ResponseCode.SUCCESS))
                await peer.send_command(make_request(ECHO, 77))
                assert (await peer.read_command()).opaque == 77
            finally:
                await peer.close()

    run(scenario())


def test_idle_connections_are_closed_but_not_while_a_request_is_in_flight() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start(idle_timeout_s=0.3) as server, \
                RemotingClient(idle_timeout_s=None) as client:
            # a slow request (0.8 s) keeps its connection open past the idle time
            slow = await client.invoke(_addr(server), make_request(SLOW, 0, {"delay": "0.8"}),
                                       timeout_s=5)
            assert slow.code == ResponseCode.SUCCESS and not app.closed
            await wait_until(lambda: len(app.closed) == 1, timeout_s=3, what="idle close")
            assert app.closed[0].close_reason == "idle for 0.3 s"
            await wait_until(lambda: not client.connections, what="the client to notice")
            again = await client.invoke(_addr(server), make_request(ECHO, 0), timeout_s=5)
            assert again.code == ResponseCode.SUCCESS  # reconnected on next use

    run(scenario())


def test_closing_the_server_fails_pending_requests_and_calls_on_close() -> None:
    async def scenario() -> None:
        app = App()
        server = await app.start()
        async with RemotingClient() as client:
            pending = asyncio.ensure_future(
                client.invoke(_addr(server), make_request(SILENT, 0), timeout_s=10))
            await wait_until(lambda: len(server.connections) == 1, what="the connection")
            await server.aclose()
            with pytest.raises(ConnectionClosed, match="peer closed the connection"):
                await pending
            assert len(app.closed) == 1 and app.closed[0].is_closed

    run(scenario())


def test_a_handler_may_close_its_connection() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server, RemotingClient() as client:
            with pytest.raises(ConnectionClosed):
                await client.invoke(_addr(server), make_request(CLOSE_ME, 0), timeout_s=5)
            assert app.closed[0].close_reason == "asked to"

    run(scenario())


def test_a_busy_port_raises_oserror() -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start() as server:
            with pytest.raises(OSError):
                await serve("127.0.0.1", server.port, app.dispatcher)

    run(scenario())


@given(garbage=st.binary(min_size=1, max_size=600))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_from_one_peer_leave_other_connections_working(garbage: bytes) -> None:
    async def scenario() -> None:
        app = App()
        async with await app.start(max_frame_bytes=512) as server, RemotingClient() as client:
            assert (await client.invoke(_addr(server), make_request(ECHO, 0), 5)).code == 0
            peer = await RawPeer.connect(server.port)
            try:
                await peer.send(garbage)
                # whatever it was — a partial frame, garbage, a valid request — the server
                # answers, waits for more, or closes that connection; nothing else
                await peer.is_closed_by_peer(timeout_s=0.05)
            finally:
                await peer.close()
            assert (await client.invoke(_addr(server), make_request(ECHO, 0), 5)).code == 0
            assert server.is_serving

    run(scenario())
