"""The real RocketMQ C++ client (PyPI rocketmq==0.4.4) against our name server.

The client runs in a subprocess (its finalisers can hang, so it ends with `os._exit`;
spec/client-quirks.md "Python wrapper"), with HOME in a temporary directory (it writes its logs
under $HOME/logs). A stand-in broker — a `shmq.remoting` server answering HEART_BEAT and
SEND_MESSAGE — registers with the name server like a real broker, so a successful send proves
the client read our route JSON and found the broker through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import pytest

from shmq.namesrv import NameServer
from shmq.protocol import (
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SendMessageResponseHeader,
    decode_send_message_header,
    make_response,
)
from shmq.remoting import Connection, Dispatcher, RemotingClient, serve

from ..remoting.helpers import run
from .helpers import register_request

pytestmark = [pytest.mark.integration, pytest.mark.interop]

CHILD_TIMEOUT_S = 30.0

PRODUCER = r"""
import os, sys
try:
    from rocketmq.client import Message, Producer
    producer = Producer("shmq-interop-producer")
    producer.set_namesrv_addr(sys.argv[1])
    producer.set_timeout(3000)
    producer.start()
    message = Message(sys.argv[2])
    message.set_tags("TagA")
    message.set_body("hello from C++")
    try:
        result = producer.send_sync(message)
        print("SENT", result.status.name, result.msg_id, flush=True)
    except Exception as err:
        print("FAILED", type(err).__name__, str(err).replace("\n", " "), flush=True)
finally:
    sys.stdout.flush()
    os._exit(0)
"""


async def run_producer(namesrv_addr: str, topic: str, home: Path) -> str:
    """Run the C++ producer once; return what it printed."""
    home.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRODUCER, namesrv_addr, topic,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=os.environ | {"HOME": str(home)})
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return out.decode(errors="replace")


class StandInBroker:
    """Just enough of a broker for a C++ producer: heartbeats, sends, unregistration."""

    def __init__(self) -> None:
        self.sends: list[RemotingCommand] = []
        self.codes: list[int] = []
        self.port = 0
        self.dispatcher = Dispatcher({
            RequestCode.HEART_BEAT: self.ok,
            RequestCode.UNREGISTER_CLIENT: self.ok,
            RequestCode.SEND_MESSAGE: self.send,
        }, name="stand-in broker")

    def ok(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        self.codes.append(request.code)
        return make_response(request, ResponseCode.SUCCESS)

    def send(self, conn: Connection, request: RemotingCommand) -> RemotingCommand:
        self.codes.append(request.code)
        self.sends.append(request)
        header = decode_send_message_header(request)
        offset_msg_id = f"7F000001{self.port:08X}{len(self.sends) - 1:016X}"
        return make_response(request, ResponseCode.SUCCESS, ext_fields=SendMessageResponseHeader(
            msg_id=offset_msg_id, queue_id=max(header.queue_id, 0), queue_offset=0,
            msg_region="DefaultRegion", trace_on=True).to_ext_fields())


def test_the_cpp_producer_asks_our_name_server_for_routes(tmp_path: Path) -> None:
    """No broker: the client asks for the topic, falls back to TBW102, and gives up."""
    seen: list[RemotingCommand] = []

    async def scenario() -> str:
        async with NameServer("127.0.0.1", 0, on_request=lambda c, r: seen.append(r)) as ns:
            return await run_producer(ns.address, "ShmqNoBroker", tmp_path / "home")

    output = run(scenario(), timeout_s=CHILD_TIMEOUT_S + 10)
    assert "FAILED" in output and "No route info of this topic" in output, output
    routes = [r for r in seen if r.code == RequestCode.GET_ROUTEINFO_BY_TOPIC]
    assert routes, f"no GET_ROUTEINFO_BY_TOPIC seen; codes: {[r.code for r in seen]}"
    assert {r.ext_fields["topic"] for r in routes} == {"ShmqNoBroker", "TBW102"}
    first = routes[0]
    assert first.ext_fields["topic"] == "ShmqNoBroker"
    assert (first.language.name, first.version, first.remark) == ("CPP", 63, "")
    assert {"AccessKey", "OnsChannel", "Signature"} <= first.ext_fields.keys()


def test_the_cpp_producer_follows_our_route_to_the_broker(tmp_path: Path) -> None:
    """A registered broker: the client reads our route JSON and sends to the master in it."""
    seen: list[RemotingCommand] = []
    broker = StandInBroker()

    async def scenario() -> str:
        async with NameServer("127.0.0.1", 0, on_request=lambda c, r: seen.append(r)) as ns, \
                await serve("127.0.0.1", 0, broker.dispatcher) as broker_server, \
                RemotingClient() as registrar:
            broker.port = broker_server.port
            registered = await registrar.invoke(ns.address, register_request(
                broker_addr=f"127.0.0.1:{broker_server.port}",
                topics={"ShmqInterop": (4, 4, 6), "TBW102": (8, 8, 7)}), timeout_s=5)
            assert registered.code == ResponseCode.SUCCESS
            return await run_producer(ns.address, "ShmqInterop", tmp_path / "home")

    output = run(scenario(), timeout_s=CHILD_TIMEOUT_S + 10)
    assert "SENT OK" in output, output  # SendStatus.OK
    assert [r.ext_fields["topic"] for r in seen
            if r.code == RequestCode.GET_ROUTEINFO_BY_TOPIC][:1] == ["ShmqInterop"]
    assert len(broker.sends) == 1
    send = broker.sends[0]
    header = decode_send_message_header(send)
    assert (header.topic, header.default_topic, send.body) == (
        "ShmqInterop", "TBW102", b"hello from C++")
    assert 0 <= header.queue_id < 4
    # it sends at once: its first heartbeat to a broker comes on a timer, after the send
    assert broker.codes[0] == RequestCode.SEND_MESSAGE
