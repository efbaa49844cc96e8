"""Tests of shmq/protocol/bodies.py and registration.py (JSON bodies)."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmq.protocol import (
    BodyFormatError,
    BrokerData,
    ClusterInfo,
    ConsumeFromWhere,
    ConsumerData,
    ConsumerListBody,
    ConsumeType,
    DataVersion,
    HeartbeatData,
    KVTable,
    LockBatchRequestBody,
    LockBatchResponseBody,
    MessageModel,
    MessageQueue,
    ProducerData,
    QueueData,
    RegisterBrokerBody,
    SubscriptionData,
    TopicConfig,
    TopicConfigSerializeWrapper,
    TopicList,
    TopicRouteData,
    UnlockBatchRequestBody,
    tags_of,
)


def java_hash(text: str) -> int:
    """Java String.hashCode for BMP text, written independently of shmq.message.taghash."""
    value = 0
    for char in text:
        value = (value * 31 + ord(char)) % 2**32
    return value - 2**32 if value >= 2**31 else value


# -- routes -------------------------------------------------------------------------------------

#: spec request-codes.md §9.1, the standard form shmq should emit
SPEC_ROUTE = """
{"brokerDatas":[{"brokerAddrs":{"0":"192.168.1.10:10911","1":"192.168.1.11:10911"},
                 "brokerName":"broker-a","cluster":"DefaultCluster"}],
 "filterServerTable":{},
 "queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}
"""
ROUTE = TopicRouteData(
    queue_datas=(QueueData("broker-a", 4, 4, 6, 0),),
    broker_datas=(
        BrokerData(
            "DefaultCluster", "broker-a", {0: "192.168.1.10:10911", 1: "192.168.1.11:10911"}
        ),
    ),
)


def test_route_encodes_as_the_spec_shows_numbers_as_numbers() -> None:
    encoded = ROUTE.encode()
    assert json.loads(encoded) == json.loads(SPEC_ROUTE)
    queue = json.loads(encoded)["queueDatas"][0]
    assert all(type(queue[key]) is int for key in ("perm", "readQueueNums", "writeQueueNums"))
    assert b'"brokerAddrs":{"0":"192.168.1.10:10911","1":"192.168.1.11:10911"}' in encoded
    assert b"orderTopicConf" not in encoded
    assert b" " not in encoded  # compact


def test_route_decodes_standard_and_fastjson_forms() -> None:
    assert TopicRouteData.decode(SPEC_ROUTE) == ROUTE
    fastjson_form = SPEC_ROUTE.replace('"0":', "0:").replace('"1":', "1:")
    assert '{0:"192.168.1.10:10911",1:' in fastjson_form
    assert TopicRouteData.decode(fastjson_form.encode()) == ROUTE


def test_route_order_topic_conf_and_filter_servers_round_trip() -> None:
    route = TopicRouteData(
        queue_datas=ROUTE.queue_datas,
        broker_datas=ROUTE.broker_datas,
        filter_server_table={"1.2.3.4:10911": ("1.2.3.4:30000",)},
        order_topic_conf="broker-a:4;broker-b:4",
    )
    assert json.loads(route.encode())["orderTopicConf"] == "broker-a:4;broker-b:4"
    assert TopicRouteData.decode(route.encode()) == route


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            '{"queueDatas":[{"brokerName":"b","perm":"rw","readQueueNums":1,"writeQueueNums":1}]}',
            "perm",
        ),
        ('{"queueDatas":[{"perm":6,"readQueueNums":1,"writeQueueNums":1}]}', "brokerName"),
        (
            '{"brokerDatas":[{"brokerName":"b","cluster":"c","brokerAddrs":{"master":"x"}}]}',
            "brokerAddrs",
        ),
        ('{"queueDatas":{}}', "queueDatas"),
        ("[]", "TopicRouteData"),
        ("not json", "TopicRouteData"),
    ],
)
def test_bad_routes_name_the_bad_path(body: str, path: str) -> None:
    with pytest.raises(BodyFormatError, match=path):
        TopicRouteData.decode(body)


# -- heartbeats (spec §9.2) ------------------------------------------------------------------------

#: Java 4.9, fastjson, enums by name (spec §9.2, verbatim)
JAVA_HEARTBEAT = """
{"clientID":"10.0.0.5@12345",
 "consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY",
   "groupName":"G","messageModel":"CLUSTERING",
   "subscriptionDataSet":[{"classFilterMode":false,"codeSet":[65],"expressionType":"TAG",
      "subString":"A","subVersion":1700000000000,"tagsSet":["A"],"topic":"T"},
     {"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%G"}],
   "unitMode":false}],
 "producerDataSet":[{"groupName":"P"},{"groupName":"CLIENT_INNER_PRODUCER"}]}
"""

#: C++ 1.2.4 (jsoncpp FastWriter): enum ordinals, subVersion a string, codeSet = atoi(tag),
#: no classFilterMode / expressionType / unitMode, empty arrays and producerDataSet absent
CPP_HEARTBEAT = (
    '{"clientID":"4242-10.0.0.5@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,'
    '"consumeType":1,"groupName":"G","messageModel":1,"subscriptionDataSet":[{"codeSet":[0,0],'
    '"subString":"TagA || TagB","subVersion":"1700000000000","tagsSet":["TagA","TagB"],'
    '"topic":"T"},{"subString":"*","subVersion":"1700000000001","topic":"%RETRY%G"}]}]}\n'
)

#: ali-ons (JSON.stringify): enum names, subVersion a number, unitMode a boolean, no
#: expressionType for tag subscriptions, insertion order
NODE_HEARTBEAT = (
    '{"clientID":"10.0.0.7@9876","consumerDataSet":[{"groupName":"G",'
    '"consumeType":"CONSUME_PASSIVELY","messageModel":"BROADCASTING",'
    '"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":[{"topic":"T",'
    '"subString":"TagA||TagB","classFilterMode":false,"tagsSet":["TagA","TagB"],'
    '"codeSet":[2598919,2598920],"subVersion":1700000000000},{"topic":"%RETRY%G",'
    '"subString":"*","classFilterMode":false,"tagsSet":[],"codeSet":[],'
    '"subVersion":1700000000001}],"unitMode":false}],"producerDataSet":[{"groupName":"PG"}]}'
)


def _retry_subscription(version: int) -> SubscriptionData:
    return SubscriptionData("%RETRY%G", "*", (), (), version)


def test_java_heartbeat_from_the_spec() -> None:
    heartbeat = HeartbeatData.decode(JAVA_HEARTBEAT)
    assert heartbeat == HeartbeatData(
        client_id="10.0.0.5@12345",
        producer_data_set=(ProducerData("P"), ProducerData("CLIENT_INNER_PRODUCER")),
        consumer_data_set=(
            ConsumerData(
                group_name="G",
                consume_type=ConsumeType.CONSUME_PASSIVELY,
                message_model=MessageModel.CLUSTERING,
                consume_from_where=ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
                subscription_data_set=(
                    SubscriptionData("T", "A", ("A",), (65,), 1700000000000),
                    _retry_subscription(1700000000001),
                ),
            ),
        ),
    )


def test_cpp_heartbeat_ordinals_string_sub_version_and_recomputed_tag_codes() -> None:
    heartbeat = HeartbeatData.decode(CPP_HEARTBEAT.encode())
    assert heartbeat.client_id == "4242-10.0.0.5@DEFAULT"
    assert heartbeat.producer_data_set == ()
    (consumer,) = heartbeat.consumer_data_set
    assert consumer.consume_type is ConsumeType.CONSUME_PASSIVELY
    assert consumer.message_model is MessageModel.CLUSTERING
    assert consumer.consume_from_where is ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET
    assert consumer.unit_mode is False
    tagged, retry = consumer.subscription_data_set
    assert tagged.tags_set == ("TagA", "TagB")
    assert tagged.code_set == (java_hash("TagA"), java_hash("TagB"))  # not C++'s [0, 0]
    assert tagged.code_set == (2598919, 2598920)
    assert (tagged.sub_version, tagged.expression_type) == (1700000000000, "TAG")
    assert retry == _retry_subscription(1700000000001)


def test_node_heartbeat_names_and_number_sub_version() -> None:
    heartbeat = HeartbeatData.decode(NODE_HEARTBEAT)
    assert heartbeat.producer_data_set == (ProducerData("PG"),)
    (consumer,) = heartbeat.consumer_data_set
    assert consumer.message_model is MessageModel.BROADCASTING
    assert consumer.consume_from_where is ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET
    assert consumer.subscription_data_set == (
        SubscriptionData("T", "TagA||TagB", ("TagA", "TagB"), (2598919, 2598920), 1700000000000),
        _retry_subscription(1700000000001),
    )


def test_sql_subscriptions_keep_their_expression() -> None:
    body = {
        "clientID": "c",
        "consumerDataSet": [
            {
                "groupName": "G",
                "consumeType": "CONSUME_PASSIVELY",
                "messageModel": "CLUSTERING",
                "consumeFromWhere": "CONSUME_FROM_TIMESTAMP",
                "subscriptionDataSet": [
                    {"topic": "T", "subString": "a > 1 || b", "expressionType": "SQL92"}
                ],
            }
        ],
    }
    (sub,) = HeartbeatData.decode(json.dumps(body)).consumer_data_set[0].subscription_data_set
    assert (sub.sub_string, sub.expression_type, sub.tags_set) == ("a > 1 || b", "SQL92", ())


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"messageModel": "CLUSTER"}, "consumerDataSet[0].messageModel"),
        ({"consumeType": 7}, "consumerDataSet[0].consumeType"),
        ({"consumeFromWhere": None}, "consumerDataSet[0].consumeFromWhere"),
        ({"consumeType": True}, "consumerDataSet[0].consumeType"),
        (
            {"subscriptionDataSet": [{"topic": "T", "subVersion": "soon"}]},
            "subscriptionDataSet[0].subVersion",
        ),
        ({"groupName": 5}, "consumerDataSet[0].groupName"),
        ({"consumeType": "1" * 5000}, "consumerDataSet[0].consumeType"),
        ({"subscriptionDataSet": [{"topic": "T", "subVersion": "9" * 5000}]}, "subVersion"),
    ],
)
def test_bad_heartbeats_name_the_bad_path(patch: dict[str, object], path: str) -> None:
    body = json.loads(NODE_HEARTBEAT)
    body["consumerDataSet"][0].update(patch)
    with pytest.raises(BodyFormatError, match=path.replace("[", r"\[").replace("]", r"\]")):
        HeartbeatData.decode(json.dumps(body))


def test_heartbeat_needs_a_client_id() -> None:
    with pytest.raises(BodyFormatError, match="clientID"):
        HeartbeatData.decode('{"producerDataSet":[]}')


def test_heartbeat_encodes_java_style_and_round_trips() -> None:
    heartbeat = HeartbeatData.decode(CPP_HEARTBEAT)
    encoded = json.loads(heartbeat.encode())
    consumer = encoded["consumerDataSet"][0]
    assert (consumer["consumeType"], consumer["messageModel"]) == (
        "CONSUME_PASSIVELY",
        "CLUSTERING",
    )
    assert consumer["subscriptionDataSet"][0]["subVersion"] == 1700000000000
    assert HeartbeatData.decode(heartbeat.encode()) == heartbeat


@pytest.mark.parametrize(
    ("expression", "tags"),
    [("*", ()), ("", ()), (None, ()), ("A", ("A",)), (" A || B ||  ||C ", ("A", "B", "C"))],
)
def test_tags_of_expression(expression: str | None, tags: tuple[str, ...]) -> None:
    assert tags_of(expression) == tags


# -- lists and locks ----------------------------------------------------------------------------------


def test_consumer_list() -> None:
    body = ConsumerListBody(("10.0.0.1@1", "4242-10.0.0.5@DEFAULT"))
    assert body.encode() == b'{"consumerIdList":["10.0.0.1@1","4242-10.0.0.5@DEFAULT"]}'
    assert ConsumerListBody.decode(body.encode()) == body
    with pytest.raises(BodyFormatError, match=r"consumerIdList\[1\]"):
        ConsumerListBody.decode('{"consumerIdList":["a",2]}')


def test_lock_request_from_the_spec_and_response_with_numeric_queue_ids() -> None:
    request = LockBatchRequestBody.decode(
        '{"consumerGroup":"g","clientId":"10.0.0.5@777","mqSet":[{"topic":"T",'
        '"brokerName":"broker-a","queueId":0}],"onlyThisBroker":false}'
    )
    assert request == LockBatchRequestBody("g", "10.0.0.5@777", (MessageQueue("T", "broker-a", 0),))
    assert UnlockBatchRequestBody.decode(request.encode()) == request
    response = LockBatchResponseBody(
        (MessageQueue("T", "broker-a", 0), MessageQueue("T", "broker-a", 3))
    )
    encoded = json.loads(response.encode())
    assert [mq["queueId"] for mq in encoded["lockOKMQSet"]] == [0, 3]  # numbers: C++ uses asInt()
    assert LockBatchResponseBody.decode(response.encode()) == response
    assert LockBatchResponseBody.decode(
        '{"lockOKMQSet":[{"topic":"T","brokerName":"b","queueId":"2"}]}'
    ) == (LockBatchResponseBody((MessageQueue("T", "b", 2),)))


#: spec request-codes.md §2, 106 GET_BROKER_CLUSTER_INFO (fastjson, unquoted numeric keys)
SPEC_CLUSTER_INFO = (
    '{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"ip:10911",1:"ip:10921"},'
    '"brokerName":"broker-a","cluster":"DefaultCluster"}},'
    '"clusterAddrTable":{"DefaultCluster":["broker-a"]}}'
)


def test_cluster_info_reads_fastjson_and_writes_quoted_keys() -> None:
    info = ClusterInfo.decode(SPEC_CLUSTER_INFO)
    assert info == ClusterInfo(
        {"broker-a": BrokerData("DefaultCluster", "broker-a", {0: "ip:10911", 1: "ip:10921"})},
        {"DefaultCluster": ("broker-a",)},
    )
    assert b'"brokerAddrs":{"0":"ip:10911","1":"ip:10921"}' in info.encode()
    assert ClusterInfo.decode(info.encode()) == info


def test_topic_list_and_kv_table() -> None:
    assert TopicList(("T1", "T2")).encode() == b'{"topicList":["T1","T2"]}'
    assert TopicList.decode('{"topicList":["T1","T2"],"brokerAddr":null}') == TopicList(
        ("T1", "T2")
    )
    assert TopicList.decode(TopicList(("a",), "x:1").encode()) == TopicList(("a",), "x:1")
    assert KVTable.decode(KVTable({"k": "v"}).encode()) == KVTable({"k": "v"})


# -- broker registration (spec §5) ------------------------------------------------------------------

SPEC_REGISTER_BODY = """
{"filterServerList":[],
 "topicConfigSerializeWrapper":{
   "dataVersion":{"counter":3,"timestamp":1700000000000},
   "topicConfigTable":{"T":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":4}}}}
"""
REGISTRATION = RegisterBrokerBody(
    TopicConfigSerializeWrapper({"T": TopicConfig("T", 4, 4, 6)}, DataVersion(1700000000000, 3))
)


def test_register_body_from_the_spec_round_trips() -> None:
    assert RegisterBrokerBody.decode(SPEC_REGISTER_BODY.encode()) == REGISTRATION
    assert json.loads(REGISTRATION.encode()) == json.loads(SPEC_REGISTER_BODY)
    assert RegisterBrokerBody.decode(REGISTRATION.encode()) == REGISTRATION


def test_compressed_register_body_in_javas_layout() -> None:
    def sized(data: bytes) -> bytes:
        return struct.pack(">i", len(data)) + data

    java_stream = zlib.compress(
        sized(b'{"counter":3,"timestamp":1700000000000}')
        + struct.pack(">i", 2)
        + sized(b"T 4 4 6 SINGLE_TAG")
        + sized(b"%RETRY%G 1 1 6 SINGLE_TAG")
        + sized(b'["1.2.3.4:30000"]'),
        9,
    )
    body = RegisterBrokerBody.decode(java_stream, compressed=True)
    assert body == RegisterBrokerBody(
        TopicConfigSerializeWrapper(
            {"T": TopicConfig("T", 4, 4, 6), "%RETRY%G": TopicConfig("%RETRY%G", 1, 1, 6)},
            DataVersion(1700000000000, 3),
        ),
        ("1.2.3.4:30000",),
    )
    assert RegisterBrokerBody.decode(body.encode(compressed=True), compressed=True) == body


def test_compressed_register_body_drops_sys_flag_and_order_as_java_does() -> None:
    ordered = RegisterBrokerBody(
        TopicConfigSerializeWrapper(
            {"O": TopicConfig("O", 2, 2, 6, "SINGLE_TAG", 1, True)}, DataVersion(1, 1)
        )
    )
    again = RegisterBrokerBody.decode(ordered.encode(compressed=True), compressed=True)
    assert again.topic_config_serialize_wrapper.topic_config_table["O"] == TopicConfig("O", 2, 2, 6)


@pytest.mark.parametrize(
    "data",
    [
        b"not zlib",
        zlib.compress(b"\x00\x00\x00\x05{}"),
        zlib.compress(struct.pack(">i", 2) + b"{}" + struct.pack(">i", -1)),
        zlib.compress(
            struct.pack(">i", 2) + b"{}" + struct.pack(">i", 1) + struct.pack(">i", 3) + b"a b"
        ),
    ],
)
def test_bad_compressed_register_bodies(data: bytes) -> None:
    with pytest.raises(BodyFormatError):
        RegisterBrokerBody.decode(data, compressed=True)


@given(st.binary(max_size=200))
def test_compressed_decoder_returns_a_body_or_body_format_error(data: bytes) -> None:
    try:
        RegisterBrokerBody.decode(zlib.compress(data), compressed=True)
    except BodyFormatError:
        pass


@given(st.text(max_size=200))
def test_body_decoders_return_a_body_or_body_format_error(text: str) -> None:
    for decoder in (
        TopicRouteData.decode,
        HeartbeatData.decode,
        ClusterInfo.decode,
        LockBatchRequestBody.decode,
    ):
        try:
            decoder(text)
        except BodyFormatError:
            pass
