"""Tests of shmq/namesrv/server.py over real 127.0.0.1 sockets, with our RemotingClient playing
the brokers and the clients."""

from __future__ import annotations

import json
import struct

import pytest

from shmq.namesrv import NameServer
from shmq.protocol import (
    ClusterInfo,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRouteData,
    make_request,
)
from shmq.remoting import ConnectionClosed, RemotingClient

from ..remoting.helpers import RawPeer, run, wait_until
from .helpers import FakeClock, register_request

pytestmark = pytest.mark.integration


def route_request(topic: str) -> RemotingCommand:
    return make_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, 0, {"topic": topic})


def local_namesrv(**kwargs: object) -> NameServer:
    return NameServer("127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]


def test_a_registered_route_is_served_and_an_unknown_topic_is_topic_not_exist() -> None:
    async def scenario() -> None:
        async with local_namesrv() as ns, RemotingClient() as broker, \
                RemotingClient() as client:
            assert ns.port > 0
            registered = await broker.invoke(
                ns.address, register_request(topics={"T": (4, 4, 6), "TBW102": (8, 8, 7)}),
                timeout_s=5)
            assert registered.code == ResponseCode.SUCCESS
            response = await client.invoke(ns.address, route_request("T"), timeout_s=5)
            assert response.code == ResponseCode.SUCCESS and response.body is not None
            assert json.loads(bytes(response.body)) == {
                "brokerDatas": [{"brokerAddrs": {"0": "10.0.0.1:10911"},
                                 "brokerName": "broker-a", "cluster": "DefaultCluster"}],
                "filterServerTable": {},
                "queueDatas": [{"brokerName": "broker-a", "perm": 6, "readQueueNums": 4,
                                "topicSysFlag": 0, "writeQueueNums": 4}],
            }
            missing = await client.invoke(ns.address, route_request("Nope"), timeout_s=5)
            assert missing.code == ResponseCode.TOPIC_NOT_EXIST
            assert (missing.remark or "").startswith(
                "No topic route info in name server for the topic: Nope")
            unknown = await client.invoke(ns.address, make_request(RequestCode.SEND_MESSAGE, 0),
                                          timeout_s=5)
            assert unknown.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
            bad_header = await client.invoke(
                ns.address, make_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, 0), timeout_s=5)
            assert bad_header.code == ResponseCode.SYSTEM_ERROR
            assert "topic" in (bad_header.remark or "")
            assert ns.statistics().requests_by_code == {103: 1, 105: 3, 10: 1}

    run(scenario())


def test_a_malformed_frame_closes_only_that_connection() -> None:
    async def scenario() -> None:
        async with local_namesrv() as ns, RemotingClient() as client:
            assert (await client.invoke(ns.address, route_request("T"), 5)).code == 17
            bad = await RawPeer.connect(ns.port)
            try:
                await bad.send(struct.pack(">iI", 12, 8) + b'{"code":10')  # header cut short
                assert await bad.is_closed_by_peer()
            finally:
                await bad.close()
            assert (await client.invoke(ns.address, route_request("T"), 5)).code == 17
            assert ns.statistics().connections == 1

    run(scenario())


def test_an_oversized_frame_is_rejected() -> None:
    async def scenario() -> None:
        async with local_namesrv(max_frame_bytes=64 * 1024) as ns, RemotingClient() as client:
            with pytest.raises(ConnectionClosed):
                await client.invoke(ns.address, register_request(
                    topics={f"T{i:05d}": (4, 4, 6) for i in range(2000)}), timeout_s=5)
            assert ns.registry.live_broker_addrs() == ()
            assert (await client.invoke(ns.address, route_request("T"), 5)).code == 17

    run(scenario())


def test_a_broker_registers_with_two_independent_name_servers() -> None:
    async def scenario() -> None:
        async with local_namesrv() as ns1, local_namesrv() as ns2, \
                RemotingClient() as broker, RemotingClient() as client:
            assert ns1.port != ns2.port
            for ns in (ns1, ns2):  # what a broker does every 30 s: register with each one
                master = await broker.invoke(ns.address, register_request(
                    ha_server_addr="10.0.0.1:10912"), timeout_s=5)
                slave = await broker.invoke(ns.address, register_request(
                    broker_addr="10.0.0.2:10911", broker_id=1), timeout_s=5)
                assert master.code == slave.code == ResponseCode.SUCCESS
                assert slave.ext_fields == {"haServerAddr": "10.0.0.1:10912",
                                            "masterAddr": "10.0.0.1:10911"}
            for ns in (ns1, ns2):
                response = await client.invoke(ns.address, route_request("T"), timeout_s=5)
                assert response.body is not None
                route = TopicRouteData.decode(response.body)
                assert route.broker_datas[0].broker_addrs == {0: "10.0.0.1:10911",
                                                              1: "10.0.0.2:10911"}
            # the name servers share nothing: unregistering from one leaves the other as it was
            await broker.invoke(ns1.address, make_request(RequestCode.UNREGISTER_BROKER, 0, {
                "brokerName": "broker-a", "brokerAddr": "10.0.0.2:10911",
                "clusterName": "DefaultCluster", "brokerId": "1"}), timeout_s=5)
            info = []
            for ns in (ns1, ns2):
                response = await client.invoke(
                    ns.address, make_request(RequestCode.GET_BROKER_CLUSTER_INFO, 0), 5)
                assert response.body is not None
                info.append(ClusterInfo.decode(response.body).broker_addr_table["broker-a"])
            assert info[0].broker_addrs == {0: "10.0.0.1:10911"}
            assert info[1].broker_addrs == {0: "10.0.0.1:10911", 1: "10.0.0.2:10911"}

    run(scenario())


def test_a_silent_broker_expires_and_its_connection_is_closed() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with local_namesrv(clock=clock, broker_expiry_s=120, first_scan_delay_s=3600) \
                as ns, RemotingClient() as broker_a, RemotingClient() as broker_b, \
                RemotingClient() as client:
            await broker_a.invoke(ns.address, register_request("broker-a", "10.0.0.1:10911"), 5)
            await broker_b.invoke(ns.address, register_request("broker-b", "10.0.0.2:10911"), 5)
            clock.advance(100)
            await broker_b.invoke(ns.address, register_request("broker-b", "10.0.0.2:10911"), 5)
            clock.advance(21)  # broker-a silent for 121 s, broker-b for 21 s
            expired = ns.scan_now()
            assert [e.broker_addr for e in expired] == ["10.0.0.1:10911"]
            await wait_until(lambda: not broker_a.connections, what="broker-a disconnected")
            assert list(broker_b.connections) == [ns.address]
            response = await client.invoke(ns.address, route_request("T"), 5)
            assert response.body is not None
            route = TopicRouteData.decode(response.body)
            assert [b.broker_name for b in route.broker_datas] == ["broker-b"]

    run(scenario())


def test_the_periodic_scan_runs_by_itself() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with local_namesrv(clock=clock, first_scan_delay_s=0.05, scan_interval_s=0.05) \
                as ns, RemotingClient() as broker:
            await broker.invoke(ns.address, register_request(), 5)
            clock.advance(121)
            await wait_until(lambda: not ns.registry.live_broker_addrs(), what="the scan")

    run(scenario())


def test_a_broker_whose_connection_closes_is_dropped_at_once() -> None:
    async def scenario() -> None:
        async with local_namesrv() as ns, RemotingClient() as client:
            broker = RemotingClient()
            await broker.invoke(ns.address, register_request(), 5)
            assert ns.statistics().broker_addrs == 1
            await broker.close()
            await wait_until(lambda: ns.statistics().broker_addrs == 0, what="the drop")
            assert (await client.invoke(ns.address, route_request("T"), 5)).code == 17

    run(scenario())
