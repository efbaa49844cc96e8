"""Tests of shmq/namesrv/registry.py (pure: no sockets, an explicit clock)."""

from __future__ import annotations

import json

import pytest

from shmq.namesrv import (
    NAMESPACE_ORDER_TOPIC_CONFIG,
    PERM_READ,
    PERM_WRITE,
    RouteRegistry,
)
from shmq.protocol import BrokerData, DataVersion, QueueData, TopicRouteData

from .helpers import registration

T0 = 1000.0


def _registered(**kwargs: object) -> RouteRegistry:
    registry = RouteRegistry(**kwargs)  # type: ignore[arg-type]
    registry.register_broker(*registration(), now_s=T0)
    return registry


def test_a_master_registration_creates_the_route() -> None:
    registry = RouteRegistry()
    result = registry.register_broker(
        *registration(topics={"T": (4, 4, 6), "U": (8, 2, 4)}), now_s=T0)
    assert result.is_new_address and result.topics_updated
    assert (result.master_addr, result.ha_server_addr, result.order_topic_config) == (
        None, None, None)
    route = registry.pick_topic_route_data("T")
    assert route == TopicRouteData(
        queue_datas=(QueueData("broker-a", 4, 4, 6, 0),),
        broker_datas=(BrokerData("DefaultCluster", "broker-a", {0: "10.0.0.1:10911"}),),
    )
    u = registry.pick_topic_route_data("U")
    assert u is not None and u.queue_datas == (QueueData("broker-a", 8, 2, 4),)
    assert registry.pick_topic_route_data("nope") is None


def test_route_json_has_numbers_as_numbers_and_quoted_broker_ids() -> None:
    registry = _registered()
    registry.register_broker(*registration(broker_addr="10.0.0.2:10911", broker_id=1),
                             now_s=T0)
    route = registry.pick_topic_route_data("T")
    assert route is not None
    assert json.loads(route.encode()) == {
        "brokerDatas": [{"brokerAddrs": {"0": "10.0.0.1:10911", "1": "10.0.0.2:10911"},
                         "brokerName": "broker-a", "cluster": "DefaultCluster"}],
        "filterServerTable": {},
        "queueDatas": [{"brokerName": "broker-a", "perm": 6, "readQueueNums": 4,
                        "topicSysFlag": 0, "writeQueueNums": 4}],
    }


def test_a_slave_learns_its_master_and_does_not_write_queue_data() -> None:
    registry = RouteRegistry()
    registry.register_broker(*registration(ha_server_addr="10.0.0.1:10912"), now_s=T0)
    slave = registry.register_broker(
        *registration(broker_addr="10.0.0.2:10911", broker_id=1, topics={"T": (1, 1, 4),
                                                                        "SLAVE_ONLY": (1, 1, 6)},
                      version=(1_700_000_000_000, 99)), now_s=T0)
    assert (slave.master_addr, slave.ha_server_addr) == ("10.0.0.1:10911", "10.0.0.1:10912")
    assert not slave.topics_updated
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.queue_datas == (QueueData("broker-a", 4, 4, 6),)
    assert route.broker_datas[0].broker_addrs == {0: "10.0.0.1:10911", 1: "10.0.0.2:10911"}
    assert registry.pick_topic_route_data("SLAVE_ONLY") is None


def test_a_slave_registered_before_its_master_gets_no_master_address() -> None:
    registry = RouteRegistry()
    slave = registry.register_broker(*registration(broker_addr="10.0.0.2:10911", broker_id=1),
                                     now_s=T0)
    assert (slave.master_addr, slave.ha_server_addr) == (None, None)
    assert registry.pick_topic_route_data("T") is None  # no queue data without a master


def test_several_brokers_of_a_cluster_share_a_topic() -> None:
    registry = RouteRegistry()
    registry.register_broker(*registration("broker-a", "10.0.0.1:10911"), now_s=T0)
    registry.register_broker(*registration("broker-b", "10.0.0.2:10911",
                                           topics={"T": (8, 8, 6), "B": (1, 1, 6)}), now_s=T0)
    registry.register_broker(*registration("broker-x", "10.0.1.1:10911", cluster="Other",
                                           topics={"X": (2, 2, 6)}), now_s=T0)
    route = registry.pick_topic_route_data("T")
    assert route is not None
    assert {q.broker_name: q.write_queue_nums for q in route.queue_datas} == {
        "broker-a": 4, "broker-b": 8}
    assert sorted(b.broker_name for b in route.broker_datas) == ["broker-a", "broker-b"]
    info = registry.get_all_cluster_info()
    assert info.cluster_addr_table == {"DefaultCluster": ("broker-a", "broker-b"),
                                       "Other": ("broker-x",)}
    assert info.broker_addr_table["broker-x"] == BrokerData("Other", "broker-x",
                                                            {0: "10.0.1.1:10911"})
    assert registry.get_all_topic_list().topic_list == ("T", "B", "X")
    assert registry.get_topics_by_cluster("DefaultCluster").topic_list == ("T", "B")
    assert registry.get_topics_by_cluster("Other").topic_list == ("X",)
    assert registry.get_topics_by_cluster("missing").topic_list == ()
    system = registry.get_system_topic_list()
    assert system.topic_list == ("DefaultCluster", "broker-a", "broker-b", "Other", "broker-x")
    assert system.broker_addr == "10.0.0.1:10911"


def test_re_registration_refreshes_liveness_and_expiry_drops_silent_brokers() -> None:
    registry = RouteRegistry(broker_expiry_s=120)
    registry.register_broker(*registration("broker-a", "10.0.0.1:10911"), now_s=T0, channel="a")
    registry.register_broker(*registration("broker-b", "10.0.0.2:10911"), now_s=T0)
    assert registry.scan_not_active_broker(T0 + 100) == []
    registry.register_broker(*registration("broker-a", "10.0.0.1:10911"), now_s=T0 + 100)
    assert registry.scan_not_active_broker(T0 + 120) == []  # exactly 120 s: still alive
    expired = registry.scan_not_active_broker(T0 + 121)
    assert [(e.broker_addr, e.silent_s) for e in expired] == [("10.0.0.2:10911", 121)]
    route = registry.pick_topic_route_data("T")
    assert route is not None and [b.broker_name for b in route.broker_datas] == ["broker-a"]
    assert registry.get_all_cluster_info().cluster_addr_table == {"DefaultCluster": ("broker-a",)}
    expired = registry.scan_not_active_broker(T0 + 221)
    assert [(e.broker_addr, e.channel) for e in expired] == [("10.0.0.1:10911", None)]
    assert registry.pick_topic_route_data("T") is None
    assert registry.statistics().topics == 0 and registry.get_all_cluster_info().cluster_addr_table == {}


def test_the_expiry_time_is_configurable() -> None:
    registry = RouteRegistry(broker_expiry_s=5)
    registry.register_broker(*registration(), now_s=T0)
    assert registry.scan_not_active_broker(T0 + 5) == []
    assert len(registry.scan_not_active_broker(T0 + 5.5)) == 1
    with pytest.raises(ValueError, match="positive"):
        RouteRegistry(broker_expiry_s=0)


def test_when_the_master_goes_the_route_keeps_its_queues_and_lists_the_slave() -> None:
    registry = _registered()
    registry.register_broker(*registration(broker_addr="10.0.0.2:10911", broker_id=1),
                             now_s=T0 + 60)
    registry.scan_not_active_broker(T0 + 150)  # only the master is silent for > 120 s
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.queue_datas == (QueueData("broker-a", 4, 4, 6),)
    assert route.broker_datas[0].broker_addrs == {1: "10.0.0.2:10911"}


def test_unregistration_removes_the_address_and_then_the_broker() -> None:
    registry = _registered()
    registry.register_broker(*registration(broker_addr="10.0.0.2:10911", broker_id=1), now_s=T0)
    assert registry.unregister_broker("10.0.0.2:10911", "broker-a", 1)
    assert registry.live_broker_addrs() == ("10.0.0.1:10911",)
    assert not registry.unregister_broker("10.0.0.9:10911", "broker-a", 0)  # not its id 0
    assert registry.pick_topic_route_data("T") is not None
    assert registry.unregister_broker("10.0.0.1:10911", "broker-a", 0)
    assert registry.pick_topic_route_data("T") is None
    assert registry.get_all_cluster_info().broker_addr_table == {}
    assert registry.statistics().broker_addrs == 0


def test_an_address_lives_under_one_broker_id_only() -> None:
    registry = _registered()
    registry.register_broker(*registration(broker_addr="10.0.0.2:10911", broker_id=1), now_s=T0)
    registry.unregister_broker("10.0.0.1:10911", "broker-a", 0)
    # the operator promotes the slave: it registers as id 0 with the same address
    promoted = registry.register_broker(
        *registration(broker_addr="10.0.0.2:10911", broker_id=0, version=(2, 2),
                      topics={"T": (4, 4, 6)}), now_s=T0 + 1)
    assert promoted.is_new_address and promoted.topics_updated
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.broker_datas[0].broker_addrs == {0: "10.0.0.2:10911"}


def test_queue_data_changes_only_with_a_new_data_version() -> None:
    registry = _registered()
    same_version = registry.register_broker(
        *registration(topics={"T": (16, 16, 6)}), now_s=T0 + 1)
    assert not same_version.topics_updated and not same_version.is_new_address
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.queue_datas[0].write_queue_nums == 4
    newer = registry.register_broker(
        *registration(topics={"T": (16, 16, 6)}, version=(1_700_000_000_001, 2)), now_s=T0 + 2)
    assert newer.topics_updated
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.queue_datas[0].write_queue_nums == 16


def test_an_incremental_registration_keeps_the_other_topics() -> None:
    registry = _registered()  # topic T
    registry.register_broker(*registration(topics={"NEW": (4, 4, 6)}, version=(5, 5)),
                             now_s=T0 + 1)
    assert registry.get_all_topic_list().topic_list == ("T", "NEW")


def test_channel_close_drops_every_broker_registered_on_it() -> None:
    registry = RouteRegistry()
    channel, other = object(), object()
    registry.register_broker(*registration("broker-a", "10.0.0.1:10911"), now_s=T0,
                             channel=channel)
    registry.register_broker(*registration("broker-b", "10.0.0.2:10911"), now_s=T0,
                             channel=channel)
    registry.register_broker(*registration("broker-c", "10.0.0.3:10911"), now_s=T0,
                             channel=other)
    assert registry.on_channel_destroy(object()) == []  # a client's connection
    assert registry.on_channel_destroy(channel) == ["10.0.0.1:10911", "10.0.0.2:10911"]
    route = registry.pick_topic_route_data("T")
    assert route is not None and [b.broker_name for b in route.broker_datas] == ["broker-c"]


def test_data_version_queries() -> None:
    registry = RouteRegistry(broker_expiry_s=120)
    registry.register_broker(*registration(version=(10, 3)), now_s=T0)
    assert registry.query_data_version("10.0.0.1:10911", DataVersion(10, 3), now_s=T0 + 100) \
        == (False, DataVersion(10, 3))
    assert registry.scan_not_active_broker(T0 + 150) == []  # the query refreshed liveness
    assert registry.query_data_version("10.0.0.1:10911", DataVersion(10, 4), now_s=T0 + 200) \
        == (True, DataVersion(10, 3))
    assert len(registry.scan_not_active_broker(T0 + 221)) == 1  # a changed one did not
    assert registry.query_data_version("10.0.0.1:10911", DataVersion(10, 3), now_s=T0) \
        == (True, None)


def test_filter_servers_appear_in_routes() -> None:
    registry = RouteRegistry()
    registry.register_broker(*registration(filter_servers=("10.0.0.1:8888",)), now_s=T0)
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.filter_server_table == {
        "10.0.0.1:10911": ("10.0.0.1:8888",)}
    registry.register_broker(*registration(), now_s=T0 + 1)
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.filter_server_table == {}


def test_delete_topic_everywhere_or_in_one_cluster() -> None:
    registry = RouteRegistry()
    registry.register_broker(*registration("broker-a", "10.0.0.1:10911"), now_s=T0)
    registry.register_broker(*registration("broker-x", "10.0.1.1:10911", cluster="Other"),
                             now_s=T0)
    assert registry.delete_topic("T", "Other")
    route = registry.pick_topic_route_data("T")
    assert route is not None and [q.broker_name for q in route.queue_datas] == ["broker-a"]
    assert not registry.delete_topic("T", "Other")
    assert registry.delete_topic("T")
    assert registry.pick_topic_route_data("T") is None and not registry.delete_topic("T")


def test_write_permission_can_be_wiped_and_given_back() -> None:
    registry = RouteRegistry()
    registry.register_broker(
        *registration(topics={"T": (4, 4, 6), "RO": (4, 4, PERM_READ)}), now_s=T0)
    assert registry.wipe_write_perm_of_broker("broker-a") == 1
    assert registry.wipe_write_perm_of_broker("broker-a") == 0
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.queue_datas[0].perm == PERM_READ
    assert registry.add_write_perm_of_broker("broker-a") == 2
    route = registry.pick_topic_route_data("RO")
    assert route is not None and route.queue_datas[0].perm == PERM_READ | PERM_WRITE
    assert registry.wipe_write_perm_of_broker("no-such-broker") == 0


def test_kv_config_and_order_topic_conf() -> None:
    registry = _registered(order_message_enable=True)
    assert registry.get_kv_config("ns", "k") is None
    registry.put_kv_config("ns", "k", "v1")
    registry.put_kv_config("ns", "k", "v2")
    assert registry.get_kv_config("ns", "k") == "v2"
    assert registry.get_kv_list_by_namespace("ns") is not None
    assert registry.delete_kv_config("ns", "k") and not registry.delete_kv_config("ns", "k")
    assert registry.get_kv_list_by_namespace("ns") is None
    registry.put_kv_config(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "broker-a:4")
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.order_topic_conf == "broker-a:4"
    assert json.loads(route.encode())["orderTopicConf"] == "broker-a:4"
    result = registry.register_broker(*registration(), now_s=T0 + 1)
    assert result.order_topic_config is not None
    assert result.order_topic_config.table == {"T": "broker-a:4"}
    registry.order_message_enable = False
    route = registry.pick_topic_route_data("T")
    assert route is not None and route.order_topic_conf is None
