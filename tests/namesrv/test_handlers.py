"""Tests of shmq/namesrv/handlers.py: requests in, responses out (no sockets)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from shmq.namesrv import HANDLERS, NamesrvContext, RouteRegistry, build_dispatcher
from shmq.protocol import (
    BodyFormatError,
    ClusterInfo,
    HeaderFieldError,
    KVTable,
    MQVersion,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicList,
    TopicRouteData,
    make_request,
)
from shmq.protocol.body_json import encode_json

from .helpers import FakeClock, register_request, registration


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.registry = RouteRegistry(broker_expiry_s=120)
        self.dispatch = build_dispatcher(NamesrvContext(self.registry, self.clock))
        self.conn: Any = SimpleNamespace(remote_address="10.0.0.1:40000")

    def __call__(self, request: RemotingCommand) -> RemotingCommand:
        response = self.dispatch(self.conn, request)
        assert isinstance(response, RemotingCommand)
        assert response.opaque == request.opaque and response.is_response
        assert all(isinstance(v, str) for v in response.ext_fields.values())
        return response

    def ask(self, code: int, body: bytes | None = None, **fields: str) -> RemotingCommand:
        return self(make_request(code, 5, fields, body))


def test_every_code_of_the_brief_has_a_handler() -> None:
    assert sorted(HANDLERS) == [100, 101, 102, 103, 104, 105, 106, 205, 206, 216, 219, 224,
                                304, 322, 327]


@pytest.mark.parametrize("compressed", [False, True])
def test_register_broker_then_route(compressed: bool) -> None:
    ns = Harness()
    response = ns(register_request(compressed=compressed, topics={"T": (4, 4, 6)}))
    assert (response.code, response.ext_fields, response.body) == (0, {}, None)
    route = ns.ask(RequestCode.GET_ROUTEINFO_BY_TOPIC, topic="T")
    assert route.code == ResponseCode.SUCCESS and route.ext_fields == {}
    assert route.body is not None
    decoded = TopicRouteData.decode(route.body)
    assert decoded.broker_datas[0].broker_addrs == {0: "10.0.0.1:10911"}
    raw = json.loads(bytes(route.body))
    assert raw["queueDatas"][0]["perm"] == 6 and raw["brokerDatas"][0]["brokerAddrs"] == {
        "0": "10.0.0.1:10911"}
    assert ns.registry.live_broker_addrs() == ("10.0.0.1:10911",)


def test_a_slave_registration_answers_the_master_addresses_as_strings() -> None:
    ns = Harness()
    ns(register_request(ha_server_addr="10.0.0.1:10912"))
    slave = ns(register_request(broker_addr="10.0.0.2:10911", broker_id=1))
    assert slave.ext_fields == {"haServerAddr": "10.0.0.1:10912",
                                "masterAddr": "10.0.0.1:10911"}


def test_register_broker_answers_the_order_topic_config() -> None:
    ns = Harness()
    ns.ask(RequestCode.PUT_KV_CONFIG, namespace="ORDER_TOPIC_CONFIG", key="T",
           value="broker-a:4")
    response = ns(register_request())
    assert response.body is not None
    assert KVTable.decode(response.body).table == {"T": "broker-a:4"}


def test_a_body_crc_mismatch_is_refused() -> None:
    ns = Harness()
    request = register_request()
    request.ext_fields["bodyCrc32"] = "12345"
    response = ns(request)
    assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, "crc32 not match")
    assert ns.registry.live_broker_addrs() == ()
    assert ns(register_request(with_crc=False)).code == 0  # 0 / absent: not checked


def test_an_old_broker_sends_the_topic_table_alone() -> None:
    ns = Harness()
    header, body = registration(topics={"OLD": (2, 2, 6)})
    wrapper = encode_json(body.topic_config_serialize_wrapper.to_json())
    request = make_request(RequestCode.REGISTER_BROKER, 1, header.to_ext_fields(), wrapper)
    request.version = int(MQVersion.V3_0_7_SNAPSHOT)
    assert ns(request).code == 0
    assert ns.registry.pick_topic_route_data("OLD") is not None


def test_a_registration_without_a_body_registers_the_address_only() -> None:
    ns = Harness()
    header, _ = registration()
    assert ns(make_request(RequestCode.REGISTER_BROKER, 1, header.to_ext_fields())).code == 0
    assert ns.registry.live_broker_addrs() == ("10.0.0.1:10911",)
    assert ns.registry.pick_topic_route_data("T") is None


def test_missing_header_fields_and_bad_bodies_raise_for_the_remoting_layer() -> None:
    ns = Harness()
    with pytest.raises(HeaderFieldError, match="brokerAddr"):
        ns.ask(RequestCode.REGISTER_BROKER, brokerName="b", clusterName="c",
               haServerAddr="h:1", brokerId="0")
    header, _ = registration()
    with pytest.raises(BodyFormatError):
        ns(make_request(RequestCode.REGISTER_BROKER, 1, header.to_ext_fields(), b"{not json"))
    with pytest.raises(HeaderFieldError, match="topic"):
        ns.ask(RequestCode.GET_ROUTEINFO_BY_TOPIC)


def test_an_unknown_topic_is_topic_not_exist_with_javas_remark() -> None:
    ns = Harness()
    response = ns.ask(RequestCode.GET_ROUTEINFO_BY_TOPIC, topic="Nope")
    assert response.code == ResponseCode.TOPIC_NOT_EXIST
    assert response.code == 17
    assert response.remark is not None
    assert response.remark.startswith("No topic route info in name server for the topic: Nope")
    assert response.body is None


def test_unregister_broker() -> None:
    ns = Harness()
    ns(register_request())
    response = ns.ask(RequestCode.UNREGISTER_BROKER, brokerName="broker-a",
                      brokerAddr="10.0.0.1:10911", clusterName="DefaultCluster", brokerId="0")
    assert response.code == 0
    assert ns.ask(RequestCode.GET_ROUTEINFO_BY_TOPIC, topic="T").code == 17


def test_listings() -> None:
    ns = Harness()
    ns(register_request(topics={"T": (4, 4, 6), "U": (1, 1, 6)}))
    ns(register_request("broker-x", "10.0.1.1:10911", cluster="Other", topics={"X": (1, 1, 6)}))
    cluster = ns.ask(RequestCode.GET_BROKER_CLUSTER_INFO)
    assert cluster.body is not None
    info = ClusterInfo.decode(cluster.body)
    assert info.cluster_addr_table == {"DefaultCluster": ("broker-a",), "Other": ("broker-x",)}
    topics = ns.ask(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
    assert topics.body is not None
    assert json.loads(bytes(topics.body)) == {"topicList": ["T", "U", "X"]}  # null brokerAddr omitted
    by_cluster = ns.ask(RequestCode.GET_TOPICS_BY_CLUSTER, cluster="Other")
    assert by_cluster.body is not None and TopicList.decode(by_cluster.body).topic_list == ("X",)
    system = ns.ask(RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS)
    assert system.body is not None and TopicList.decode(system.body) == TopicList(
        ("DefaultCluster", "broker-a", "Other", "broker-x"), "10.0.0.1:10911")


def test_delete_topic_and_write_permissions() -> None:
    ns = Harness()
    ns(register_request(topics={"T": (4, 4, 6), "U": (1, 1, 6)}))
    wiped = ns.ask(RequestCode.WIPE_WRITE_PERM_OF_BROKER, brokerName="broker-a")
    assert (wiped.code, wiped.ext_fields) == (0, {"wipeTopicCount": "2"})
    added = ns.ask(RequestCode.ADD_WRITE_PERM_OF_BROKER, brokerName="broker-a")
    assert (added.code, added.ext_fields) == (0, {"addTopicCount": "2"})
    assert ns.ask(RequestCode.DELETE_TOPIC_IN_NAMESRV, topic="U").code == 0
    assert ns.ask(RequestCode.GET_ROUTEINFO_BY_TOPIC, topic="U").code == 17
    assert ns.ask(RequestCode.GET_ROUTEINFO_BY_TOPIC, topic="T").code == 0


def test_kv_config_requests() -> None:
    ns = Harness()
    missing = ns.ask(RequestCode.GET_KV_CONFIG, namespace="ns", key="k")
    assert missing.code == ResponseCode.QUERY_NOT_FOUND
    assert missing.code == 22
    assert missing.remark == "No config item, Namespace: ns Key: k"
    assert ns.ask(RequestCode.PUT_KV_CONFIG, namespace="ns", key="k", value="v").code == 0
    found = ns.ask(RequestCode.GET_KV_CONFIG, namespace="ns", key="k")
    assert (found.code, found.ext_fields) == (0, {"value": "v"})
    listing = ns.ask(RequestCode.GET_KVLIST_BY_NAMESPACE, namespace="ns")
    assert listing.body is not None and KVTable.decode(listing.body).table == {"k": "v"}
    assert ns.ask(RequestCode.DELETE_KV_CONFIG, namespace="ns", key="k").code == 0
    assert ns.ask(RequestCode.GET_KV_CONFIG, namespace="ns", key="k").code == 22
    assert ns.ask(RequestCode.GET_KVLIST_BY_NAMESPACE, namespace="ns").code == 22


def test_query_data_version() -> None:
    ns = Harness()
    ns(register_request(version=(7, 3)))
    fields = {"brokerName": "broker-a", "brokerAddr": "10.0.0.1:10911",
              "clusterName": "DefaultCluster", "brokerId": "0"}
    same = ns(make_request(RequestCode.QUERY_DATA_VERSION, 1, fields,
                           b'{"counter":3,"timestamp":7}'))
    assert (same.code, same.ext_fields) == (0, {"changed": "false"})
    assert same.body is not None and json.loads(bytes(same.body)) == {"counter": 3, "timestamp": 7}
    newer = ns(make_request(RequestCode.QUERY_DATA_VERSION, 1, fields,
                            b'{"counter":4,"timestamp":7}'))
    assert newer.ext_fields == {"changed": "true"}
    with pytest.raises(BodyFormatError):
        ns(make_request(RequestCode.QUERY_DATA_VERSION, 1, fields))
