"""The acceptor inside a real `shmq start`, driven with our own protocol client."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from shmq.message.record import StoredMessage, iter_records
from shmq.protocol import (
    GetRouteInfoRequestHeader,
    QueryConsumerOffsetRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRouteData,
    UpdateConsumerOffsetRequestHeader,
    make_request,
)
from shmq.remoting import RemotingClient
from shmq.testing.broker import BrokerProcess, running_broker

from .helpers import pull_request, run, send_request

pytestmark = pytest.mark.integration


def broker_env(**extra: str) -> dict[str, str]:
    """Extra settings of a test broker (the launcher picks free ports for it)."""
    return dict(extra)


def address(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env.get('SHMQ_BROKER_PORT', '10911')}"


def namesrv(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env.get('SHMQ_NAMESRV_PORT', '9876')}"


def records(body: bytes | memoryview | None) -> list[StoredMessage]:
    return list(iter_records(body or b""))


async def call(addr: str, request: RemotingCommand, timeout_s: float = 5.0) -> RemotingCommand:
    async with RemotingClient() as client:
        return await client.invoke(addr, request, timeout_s)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("acceptor"), writers=2,
                        env=broker_env()) as running:
        yield running


def test_send_and_pull_round_trip(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        async with RemotingClient() as client:
            addr = address(broker)
            sent = []
            for i in range(8):
                response = await client.invoke(addr, send_request(
                    "Trip", b"body-%d" % i, tags="AB"[i % 2], keys=f"k{i}", queue_id=i % 4,
                    properties={"acc_seq": str(i)}), 5)
                assert response.code == ResponseCode.SUCCESS, response.remark
                sent.append(response.ext_fields)
            assert [s["queueOffset"] for s in sent] == ["0"] * 4 + ["1"] * 4
            got: list[StoredMessage] = []
            for queue_id in range(4):
                pulled = await client.invoke(addr, pull_request("g", "Trip", queue_id, 0), 5)
                assert pulled.code == ResponseCode.SUCCESS
                assert pulled.ext_fields["nextBeginOffset"] == "2"
                got += records(pulled.body)
            assert sorted(m.body for m in got) == sorted(b"body-%d" % i for i in range(8))
            for message in got:
                seq = int(message.properties["acc_seq"])
                assert message.properties["KEYS"] == f"k{seq}"
                assert message.properties["TAGS"] == "AB"[seq % 2]
                assert message.queue_id == seq % 4
                assert message.store_port == int(address(broker).rpartition(":")[2])
                assert broker_msg_id(message) == sent[seq]["msgId"]

    run(scenario())


def broker_msg_id(message: StoredMessage) -> str:
    from shmq.message.msgid import encode_offset_msg_id

    return encode_offset_msg_id(message.store_host, message.store_port, message.phys_offset)


def test_broker_side_tag_filtering(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        async with RemotingClient() as client:
            addr = address(broker)
            tags = ["A", "B", "B", "A", "C", "B", "A"]
            for i, tag in enumerate(tags):
                response = await client.invoke(addr, send_request(
                    "Filter", b"m%d" % i, tags=tag, queue_id=0), 5)
                assert response.code == ResponseCode.SUCCESS
            full = await client.invoke(addr, pull_request("g", "Filter", 0, 0), 5)
            everything = records(full.body)
            only_a = await client.invoke(addr, pull_request("g", "Filter", 0, 0, sub="A"), 5)
            got = records(only_a.body)
            assert [m.body for m in got] == [b"m0", b"m3", b"m6"]
            assert len(only_a.body or b"") == sum(
                m.total_size for m in everything if m.properties["TAGS"] == "A")
            assert only_a.ext_fields["nextBeginOffset"] == "7"

    run(scenario())


def test_long_polling_is_woken_by_a_send(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        async with RemotingClient() as client:
            addr = address(broker)
            response = await client.invoke(addr, send_request("Poll", b"first", queue_id=2), 5)
            assert response.code == ResponseCode.SUCCESS
            loop = asyncio.get_running_loop()
            started = loop.time()
            held = asyncio.ensure_future(client.invoke(
                addr, pull_request("g", "Poll", 2, 1, suspend_ms=10_000), 15))
            await asyncio.sleep(0.5)
            assert not held.done()
            await client.invoke(addr, send_request("Poll", b"second", queue_id=2), 5)
            pulled = await held
            assert pulled.code == ResponseCode.SUCCESS
            assert [m.body for m in records(pulled.body)] == [b"second"]
            assert loop.time() - started < 2.0

    run(scenario())


def test_topics_are_routed_by_the_name_server_after_a_send(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        async with RemotingClient() as client:
            response = await client.invoke(address(broker), send_request("Routed", b"x"), 5)
            assert response.code == ResponseCode.SUCCESS
            request = make_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, 0,
                                   GetRouteInfoRequestHeader("Routed").to_ext_fields())
            deadline = asyncio.get_running_loop().time() + 5
            while True:
                route = await client.invoke(namesrv(broker), request, 5)
                if route.code == ResponseCode.SUCCESS or \
                        asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert route.code == ResponseCode.SUCCESS, route.remark
            data = TopicRouteData.decode(route.body or b"")
            assert [(q.broker_name, q.write_queue_nums, q.perm) for q in data.queue_datas] == [
                ("broker-a", 4, 6)]
            assert data.broker_datas[0].broker_addrs == {0: address(broker)}

    run(scenario())


def test_illegal_messages_and_unknown_codes(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        async with RemotingClient() as client:
            addr = address(broker)
            big = await client.invoke(addr, send_request("Illegal", b"x" * ((1 << 20) + 1)), 10)
            assert big.code == ResponseCode.MESSAGE_ILLEGAL
            empty = await client.invoke(addr, send_request("Illegal", b""), 5)
            assert empty.code == ResponseCode.MESSAGE_ILLEGAL
            bad = await client.invoke(addr, send_request("bad/topic", b"x"), 5)
            assert bad.code == ResponseCode.SYSTEM_ERROR
            unknown = await client.invoke(addr, make_request(9999, 0), 5)
            assert unknown.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED

    run(scenario())


def test_topic_not_exist_when_auto_create_is_off(tmp_path: Path) -> None:
    env = broker_env(SHMQ_BROKER_AUTO_CREATE_TOPIC="false")
    with running_broker(tmp_path, writers=1, env=env) as broker:
        response = run(call(address(broker), send_request("Nope", b"x")))
        assert response.code == ResponseCode.TOPIC_NOT_EXIST
        assert response.remark is not None
        assert response.remark.startswith("topic[Nope] not exist, apply first please!")


def test_offsets_and_messages_survive_a_broker_restart(tmp_path: Path) -> None:
    env = broker_env()
    instance = "tb" + uuid.uuid4().hex[:10]

    def query(addr: str, queue_id: int) -> RemotingCommand:
        return run(call(addr, make_request(RequestCode.QUERY_CONSUMER_OFFSET, 0,
                                           QueryConsumerOffsetRequestHeader(
                                               "grp", "Kept", queue_id).to_ext_fields())))

    with running_broker(tmp_path, writers=2, env=env, instance=instance) as broker:
        addr = address(broker)

        async def produce_and_commit() -> None:
            async with RemotingClient() as client:
                for i in range(6):
                    response = await client.invoke(addr, send_request(
                        "Kept", b"m%d" % i, queue_id=i % 2), 5)
                    assert response.code == ResponseCode.SUCCESS
                await client.invoke_oneway(addr, make_request(
                    RequestCode.UPDATE_CONSUMER_OFFSET, 0, UpdateConsumerOffsetRequestHeader(
                        "grp", "Kept", 0, 2).to_ext_fields(), oneway=True))
                # the pull's COMMIT_OFFSET flag stores an offset too
                pulled = await client.invoke(addr, pull_request(
                    "grp", "Kept", 1, 1, commit_offset=1), 5)
                assert pulled.code == ResponseCode.SUCCESS

        run(produce_and_commit())
        assert query(addr, 0).ext_fields["offset"] == "2"
    with running_broker(tmp_path, writers=2, env=env, instance=instance) as broker:
        addr = address(broker)
        assert query(addr, 0).ext_fields["offset"] == "2"
        assert query(addr, 1).ext_fields["offset"] == "1"
        pulled = run(call(addr, pull_request("grp", "Kept", 0, 2)))
        assert [m.body for m in records(pulled.body)] == [b"m4"]
        again = run(call(addr, send_request("Kept", b"m6", queue_id=0)))
        assert again.ext_fields["queueOffset"] == "3"


def test_stopping_answers_held_pulls(tmp_path: Path) -> None:
    with running_broker(tmp_path, writers=1, env=broker_env()) as broker:
        addr = address(broker)

        async def scenario() -> float:
            async with RemotingClient() as client:
                created = await client.invoke(addr, send_request("Drain", b"x", queue_id=0), 5)
                assert created.code == ResponseCode.SUCCESS
                held = asyncio.ensure_future(client.invoke(
                    addr, pull_request("g", "Drain", 0, 1, suspend_ms=20_000), 25))
                await asyncio.sleep(0.5)
                assert not held.done()
                loop = asyncio.get_running_loop()
                started = loop.time()
                broker.proc.send_signal(signal.SIGTERM)
                response = await held
                assert response.code == ResponseCode.PULL_NOT_FOUND
                assert response.ext_fields["nextBeginOffset"] == "1"
                return loop.time() - started

        assert run(scenario(), timeout_s=30) < 5.0
        assert broker.proc.wait(30) == 0


def test_a_killed_writer_fails_its_sends_without_hanging(tmp_path: Path) -> None:
    with running_broker(tmp_path, writers=2, env=broker_env()) as broker:
        addr = address(broker)

        async def burst(client: RemotingClient, n: int) -> list[RemotingCommand]:
            return list(await asyncio.gather(*(
                client.invoke(addr, send_request("Killed", b"m%d" % i, queue_id=i % 4), 10)
                for i in range(n))))

        async def scenario() -> None:
            async with RemotingClient() as client:
                assert {r.code for r in await burst(client, 8)} == {ResponseCode.SUCCESS}
                os.kill(broker.pid_of("writer-0"), signal.SIGKILL)
                # sends to writer-0's queues are written to its ring, nobody answers them:
                # the acceptor notices the dead pid and fails them (their fate is unknown)
                responses = await burst(client, 200)
                codes = Counter(r.code for r in responses)
                assert set(codes) == {ResponseCode.SUCCESS, ResponseCode.SYSTEM_ERROR}, codes
                for failed in (r for r in responses if r.code != ResponseCode.SUCCESS):
                    assert "may or may not be stored" in (failed.remark or ""), failed.remark
                # the supervisor restarts the writer; its queues take sends again
                deadline = asyncio.get_running_loop().time() + 15
                while True:
                    after = await burst(client, 8)
                    if {r.code for r in after} == {ResponseCode.SUCCESS}:
                        break
                    assert asyncio.get_running_loop().time() < deadline, \
                        [r.remark for r in after if r.code]
                    await asyncio.sleep(0.2)

        run(scenario(), timeout_s=60)
