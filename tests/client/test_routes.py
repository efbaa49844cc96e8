"""Tests of shmq/client/routes.py: queue lists (pure), then a RouteTable against a real name
server in this process with fake broker registrations."""

from __future__ import annotations

import random

import pytest

from shmq.client.errors import NameServerUnavailable, NoRouteInfo
from shmq.client.routes import (
    RouteTable,
    TopicRoute,
    default_topic_route,
    parse_namesrv_addrs,
    publish_queues,
    subscribe_queues,
)
from shmq.protocol import BrokerData, MessageQueue, QueueData, TopicRouteData
from shmq.remoting import RemotingClient

from .helpers import dead_address, fake_brokers, name_server, run


def route(*queue_datas: QueueData, masters: tuple[str, ...] = ("a", "b"),
          slaves: tuple[str, ...] = (), order_conf: str | None = None) -> TopicRouteData:
    brokers = [BrokerData("C", name, {0: f"10.0.0.{i}:10911"}) for i, name in enumerate(masters)]
    brokers += [BrokerData("C", name, {1: f"10.0.1.{i}:10911"}) for i, name in enumerate(slaves)]
    return TopicRouteData(tuple(queue_datas), tuple(brokers), order_topic_conf=order_conf)


def qids(queues: tuple[MessageQueue, ...]) -> list[tuple[str, int]]:
    return [(q.broker_name, q.queue_id) for q in queues]


def test_publish_queues_are_writable_queues_of_brokers_with_a_master() -> None:
    data = route(QueueData("b", 2, 2, 6), QueueData("a", 4, 3, 6), QueueData("ro", 2, 2, 4),
                 QueueData("s", 2, 2, 6), masters=("a", "b", "ro"), slaves=("s",))
    assert qids(publish_queues("T", data)) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    # reads: every readable entry, a slave-only broker included; read counts, not write
    assert qids(subscribe_queues("T", data)) == [
        ("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1), ("ro", 0), ("ro", 1),
        ("s", 0), ("s", 1)]


def test_write_only_queues_are_not_read_and_order_conf_wins_for_publishing() -> None:
    data = route(QueueData("a", 4, 4, 2), order_conf="b:2;a:1")
    assert subscribe_queues("T", data) == ()
    assert qids(publish_queues("T", data)) == [("a", 0), ("b", 0), ("b", 1)]


def test_the_tbw102_route_is_capped_at_the_default_queue_count() -> None:
    template = route(QueueData("a", 8, 8, 7), QueueData("b", 2, 2, 7))
    borrowed = TopicRoute.of("New", default_topic_route(template, 4), from_default_topic=True)
    assert qids(borrowed.publish_queues) == [("a", i) for i in range(4)] + [("b", 0), ("b", 1)]
    assert borrowed.subscribe_queues == ()  # consumers never read a borrowed route
    assert {q.topic for q in borrowed.publish_queues} == {"New"}


def test_name_server_addresses() -> None:
    assert parse_namesrv_addrs("a:1; b:2;a:1") == ("a:1", "b:2")
    assert parse_namesrv_addrs(["x:1", "y:2"]) == ("x:1", "y:2")
    assert parse_namesrv_addrs("a:1,b:2") == ("a:1", "b:2")
    with pytest.raises(ValueError):
        parse_namesrv_addrs(" ; ")


@pytest.mark.integration
def test_routes_from_a_real_name_server() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a", "broker-b") as (a, b), \
                RemotingClient() as remoting:
            await a.register(ns, {"T": (4, 4, 6), "TBW102": (8, 8, 7)})
            await b.register(ns, {"T": (2, 2, 6)})
            table = RouteTable(remoting, ns.address)
            got = await table.route("T")
            assert got is not None and not got.from_default_topic
            assert qids(got.publish_queues) == [("broker-a", i) for i in range(4)] + [
                ("broker-b", 0), ("broker-b", 1)]
            assert table.master_addr("broker-a") == a.address
            assert table.broker_addrs(masters_only=True) == tuple(sorted((a.address, b.address)))
            assert await table.route("Missing") is None
            borrowed = await table.publish_route("Missing")
            assert borrowed.from_default_topic
            assert qids(borrowed.publish_queues) == [("broker-a", i) for i in range(4)]
            asked = ns.statistics().requests_by_code[105]
            assert await table.publish_route("Missing") is borrowed  # cached: not asked again
            assert await table.route("T") is got
            assert ns.statistics().requests_by_code[105] == asked
            assert await table.route("Missing") is None  # consumers never see a borrowed route
            await a.register(ns, {"T": (4, 4, 6), "TBW102": (8, 8, 7), "Missing": (2, 2, 6)})
            created = await table.publish_route("Missing", refresh=True)
            assert not created.from_default_topic and len(created.publish_queues) == 2
    run(scenario())


@pytest.mark.integration
def test_no_route_and_no_tbw102_is_no_route_info() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a") as (a,), \
                RemotingClient() as remoting:
            await a.register(ns, {"T": (4, 4, 6)})
            table = RouteTable(remoting, ns.address)
            with pytest.raises(NoRouteInfo, match="'Missing'"):
                await table.publish_route("Missing")
            await a.register(ns, {"T": (4, 4, 4)})  # now read-only: a known topic never borrows
            with pytest.raises(NoRouteInfo, match="no writable queue"):
                await table.publish_route("T", refresh=True)
    run(scenario())


@pytest.mark.integration
def test_a_dead_name_server_fails_over_to_the_next_one() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a") as (a,), \
                RemotingClient() as remoting:
            await a.register(ns, {"T": (1, 1, 6)})
            dead = dead_address()
            table = RouteTable(remoting, [dead, ns.address], rng=random.Random(1))  # picks index 0
            assert table.current_namesrv == dead
            assert await table.route("T") is not None
            assert table.current_namesrv == ns.address  # sticks to the one that answered
            lost = RouteTable(remoting, [dead, dead_address()])
            with pytest.raises(NameServerUnavailable, match="no name server") as err:
                await lost.route("T")
            assert err.value.retriable
    run(scenario())


@pytest.mark.integration
def test_watched_routes_are_refreshed_and_changes_reported() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a", "broker-b") as (a, b), \
                RemotingClient() as remoting:
            await a.register(ns, {"T": (2, 2, 6)})
            table = RouteTable(remoting, ns.address)
            seen: list[list[tuple[str, int]]] = []
            table.add_listener(lambda topic, r: seen.append(qids(r.subscribe_queues)))
            table.watch("T")
            await table.refresh_watched()
            await table.refresh_watched()  # unchanged: not reported again
            await b.register(ns, {"T": (1, 1, 6)})
            await table.refresh_watched()
            assert seen == [[("broker-a", 0), ("broker-a", 1)],
                            [("broker-a", 0), ("broker-a", 1), ("broker-b", 0)]]
            await b.aclose()  # its name-server connection closes: the route loses it
            await table.refresh_watched()
            assert seen[-1] == [("broker-a", 0), ("broker-a", 1)]
            # a name server that stops answering keeps the cached route
            await ns.aclose()
            await table.refresh_watched()
            cached = table.cached("T")
            assert cached is not None and len(cached.subscribe_queues) == 2
    run(scenario())


@pytest.mark.integration
def test_pulls_fall_back_to_a_slave_when_the_master_is_gone() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a", "broker-a") as (m, s), \
                RemotingClient() as remoting:
            await m.register(ns, {"T": (2, 2, 6)})
            await s.register(ns, {"T": (2, 2, 6)}, broker_id=1)
            table = RouteTable(remoting, ns.address)
            await table.route("T")
            assert table.broker_addr("broker-a", 1) == s.address
            assert table.broker_addr("broker-a", 7) == m.address  # unknown id: the master
            await m.aclose()
            got = await table.route("T", refresh=True)
            assert got is not None and got.publish_queues == ()  # no master: nothing to write
            assert len(got.subscribe_queues) == 2
            assert table.master_addr("broker-a") is None
            assert table.broker_addr("broker-a") == s.address
    run(scenario())
