"""JSON command bodies: routes, heartbeats, consumer lists, queue locks, cluster and topic lists
(spec/request-codes.md §9, §2, §4); broker registration bodies live in `registration` and are
re-exported here.

Theory of operation: each body is a frozen dataclass with `encode() -> bytes` and a classmethod
`decode(data) -> instance`.

* Encoding writes what the Java side writes, but as standard JSON: keys sorted (fastjson's bean
  order), compact, None fields left out, numbers as JSON numbers (the C++ client reads `perm`,
  `readQueueNums`, `queueId` with `asInt()`, which throws on strings), map keys that are numbers
  in Java (broker ids) as quoted strings ("0"), which every client accepts. Non-ASCII text is
  `\\u`-escaped, as the 4.9.4+ name server does.
* Decoding is lenient (`body_json`): it reads fastjson's dialect (unquoted numeric keys),
  ignores unknown keys, accepts numbers written as numeric strings and booleans as strings,
  enums as names or ordinals (heartbeats: C++ sends ordinals, Java and Node names), and treats
  a missing list or map as empty. A body of the wrong shape raises `BodyFormatError` naming the
  body and the path of the bad value (`HeartbeatData.consumerDataSet[0].messageModel`).

Subscriptions: for TAG expressions the tag set and tag hash codes are recomputed from
`subString` (C++ 1.2.4 sends garbage in `codeSet`, spec §9.2), with Java's `String.hashCode`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Final, Self

from shmq.message.taghash import java_string_hash

from .body_json import JsonObject, as_enum, as_int, as_str, as_texts, encode_json, read_object
from .registration import (
    DataVersion,
    RegisterBrokerBody,
    TopicConfig,
    TopicConfigSerializeWrapper,
)

__all__ = [
    "EXPRESSION_TAG",
    "SUB_ALL",
    "BrokerData",
    "ClusterInfo",
    "ConsumeFromWhere",
    "ConsumeType",
    "ConsumerData",
    "ConsumerListBody",
    "DataVersion",
    "HeartbeatData",
    "KVTable",
    "LockBatchRequestBody",
    "LockBatchResponseBody",
    "MessageModel",
    "MessageQueue",
    "ProducerData",
    "QueueData",
    "RegisterBrokerBody",
    "SubscriptionData",
    "TopicConfig",
    "TopicConfigSerializeWrapper",
    "TopicList",
    "TopicRouteData",
    "UnlockBatchRequestBody",
    "tags_of",
]

#: the subscription expression meaning "every tag"
SUB_ALL: Final = "*"
#: the default expression type
EXPRESSION_TAG: Final = "TAG"


# -- routes (spec §9.1) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageQueue:
    """One queue of a topic on one broker (Java `MessageQueue`)."""

    topic: str
    broker_name: str
    queue_id: int

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {"brokerName": self.broker_name, "queueId": self.queue_id, "topic": self.topic}

    @classmethod
    def from_json(cls, value: object, where: str) -> MessageQueue:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        return cls(obj.text("topic"), obj.text("brokerName"), obj.number("queueId"))


@dataclass(frozen=True, slots=True)
class QueueData:
    """Queues of a topic on one broker name. perm: 4 READ | 2 WRITE | 1 INHERIT."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {
            "brokerName": self.broker_name,
            "perm": self.perm,
            "readQueueNums": self.read_queue_nums,
            "topicSysFlag": self.topic_sys_flag,
            "writeQueueNums": self.write_queue_nums,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> QueueData:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        return cls(
            broker_name=obj.text("brokerName"),
            read_queue_nums=obj.number("readQueueNums"),
            write_queue_nums=obj.number("writeQueueNums"),
            perm=obj.number("perm"),
            topic_sys_flag=obj.number("topicSysFlag", 0),
        )


@dataclass(frozen=True, slots=True)
class BrokerData:
    """Addresses of one broker name's members, by broker id (0 = master)."""

    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {
            "brokerAddrs": {str(broker_id): addr for broker_id, addr in self.broker_addrs.items()},
            "brokerName": self.broker_name,
            "cluster": self.cluster,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> BrokerData:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        addrs = {}
        for key, addr, path in obj.entries("brokerAddrs"):
            addrs[as_int(key, path, 64)] = as_str(addr, path)
        return cls(obj.text("cluster"), obj.text("brokerName"), addrs)


@dataclass(frozen=True, slots=True)
class TopicRouteData:
    """GET_ROUTEINFO_BY_TOPIC response body."""

    queue_datas: tuple[QueueData, ...]
    broker_datas: tuple[BrokerData, ...]
    filter_server_table: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: "brokerName:queueNum;..." for globally ordered topics, else None
    order_topic_conf: str | None = None

    def encode(self) -> bytes:
        """Standard JSON, numbers as numbers, broker ids as quoted keys (spec §9.1)."""
        body: dict[str, object] = {
            "brokerDatas": [broker.to_json() for broker in self.broker_datas],
            "filterServerTable": {
                addr: list(servers) for addr, servers in self.filter_server_table.items()
            },
            "queueDatas": [queue.to_json() for queue in self.queue_datas],
        }
        if self.order_topic_conf is not None:
            body["orderTopicConf"] = self.order_topic_conf
        return encode_json(body)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> TopicRouteData:
        """Read a route body, standard or fastjson (unquoted broker ids).

        Raises:
            BodyFormatError: the body is not a route.
        """
        obj = read_object(data, "TopicRouteData")
        table = {
            addr: as_texts(servers, path)
            for addr, servers, path in obj.entries("filterServerTable")
        }
        return cls(
            queue_datas=tuple(QueueData.from_json(v, w) for v, w in obj.items("queueDatas")),
            broker_datas=tuple(BrokerData.from_json(v, w) for v, w in obj.items("brokerDatas")),
            filter_server_table=table,
            order_topic_conf=obj.opt_text("orderTopicConf"),
        )


# -- heartbeat (spec §9.2) -----------------------------------------------------------------------


class ConsumeType(enum.IntEnum):
    """Java `ConsumeType`; C++ sends the ordinal, Java and Node the name."""

    CONSUME_ACTIVELY = 0  #: "PULL"
    CONSUME_PASSIVELY = 1  #: "PUSH"


class MessageModel(enum.IntEnum):
    """Java `MessageModel`."""

    BROADCASTING = 0
    CLUSTERING = 1


class ConsumeFromWhere(enum.IntEnum):
    """Java `ConsumeFromWhere` (ordinals 1-3 are deprecated in Java but still valid)."""

    CONSUME_FROM_LAST_OFFSET = 0
    CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST = 1
    CONSUME_FROM_MIN_OFFSET = 2
    CONSUME_FROM_MAX_OFFSET = 3
    CONSUME_FROM_FIRST_OFFSET = 4
    CONSUME_FROM_TIMESTAMP = 5


def tags_of(sub_string: str | None) -> tuple[str, ...]:
    """Tags of a TAG expression ("a || b"): split on "||", trimmed, empties dropped; () for "*"."""
    if not sub_string or sub_string == SUB_ALL:
        return ()
    return tuple(tag for tag in (part.strip() for part in sub_string.split("||")) if tag)


@dataclass(frozen=True, slots=True)
class SubscriptionData:
    """One topic subscription of a consumer group."""

    topic: str
    sub_string: str = SUB_ALL
    tags_set: tuple[str, ...] = ()
    code_set: tuple[int, ...] = ()  #: Java String.hashCode of each tag
    sub_version: int = 0  #: client clock (ms) when the subscription was built
    expression_type: str = EXPRESSION_TAG  #: "TAG" or "SQL92"
    class_filter_mode: bool = False

    @classmethod
    def of_tags(cls, topic: str, sub_string: str | None, sub_version: int = 0) -> SubscriptionData:
        """Build a TAG subscription as Java's `FilterAPI.buildSubscriptionData` does."""
        expression = sub_string if sub_string and sub_string != SUB_ALL else SUB_ALL
        tags = tags_of(expression)
        codes = tuple(java_string_hash(tag) for tag in tags)
        return cls(topic, expression, tags, codes, sub_version)

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {
            "classFilterMode": self.class_filter_mode,
            "codeSet": list(self.code_set),
            "expressionType": self.expression_type,
            "subString": self.sub_string,
            "subVersion": self.sub_version,
            "tagsSet": list(self.tags_set),
            "topic": self.topic,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> SubscriptionData:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        topic = obj.text("topic")
        sub_version = obj.number("subVersion", 0, bits=64)
        expression_type = obj.opt_text("expressionType") or EXPRESSION_TAG
        class_filter_mode = obj.flag("classFilterMode")
        if expression_type == EXPRESSION_TAG:  # recompute tags and codes (C++ sends bad codes)
            tagged = cls.of_tags(topic, obj.opt_text("subString"), sub_version)
            return dataclasses.replace(tagged, class_filter_mode=class_filter_mode)
        tags = obj.texts("tagsSet")
        return cls(
            topic,
            obj.opt_text("subString") or "",
            tags,
            tuple(java_string_hash(tag) for tag in tags),
            sub_version,
            expression_type,
            class_filter_mode,
        )


@dataclass(frozen=True, slots=True)
class ConsumerData:
    """One consumer group of a client's heartbeat."""

    group_name: str
    consume_type: ConsumeType
    message_model: MessageModel
    consume_from_where: ConsumeFromWhere
    subscription_data_set: tuple[SubscriptionData, ...] = ()
    unit_mode: bool = False

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {
            "consumeFromWhere": self.consume_from_where.name,
            "consumeType": self.consume_type.name,
            "groupName": self.group_name,
            "messageModel": self.message_model.name,
            "subscriptionDataSet": [sub.to_json() for sub in self.subscription_data_set],
            "unitMode": self.unit_mode,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> ConsumerData:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        return cls(
            group_name=obj.text("groupName"),
            consume_type=as_enum(ConsumeType, obj.data.get("consumeType"), f"{where}.consumeType"),
            message_model=as_enum(
                MessageModel, obj.data.get("messageModel"), f"{where}.messageModel"
            ),
            consume_from_where=as_enum(
                ConsumeFromWhere, obj.data.get("consumeFromWhere"), f"{where}.consumeFromWhere"
            ),
            subscription_data_set=tuple(
                SubscriptionData.from_json(v, w) for v, w in obj.items("subscriptionDataSet")
            ),
            unit_mode=obj.flag("unitMode"),
        )


@dataclass(frozen=True, slots=True)
class ProducerData:
    """One producer group of a client's heartbeat."""

    group_name: str


@dataclass(frozen=True, slots=True)
class HeartbeatData:
    """HEART_BEAT request body."""

    client_id: str
    producer_data_set: tuple[ProducerData, ...] = ()
    consumer_data_set: tuple[ConsumerData, ...] = ()

    def encode(self) -> bytes:
        """Java-style heartbeat: enums by name, subVersion a number."""
        return encode_json(
            {
                "clientID": self.client_id,
                "consumerDataSet": [consumer.to_json() for consumer in self.consumer_data_set],
                "producerDataSet": [{"groupName": p.group_name} for p in self.producer_data_set],
            }
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> HeartbeatData:
        """Read a heartbeat from any of the three clients (spec §9.2).

        Raises:
            BodyFormatError: the body is not a heartbeat (the message names the bad path).
        """
        obj = read_object(data, "HeartbeatData")
        return cls(
            client_id=obj.text("clientID"),
            producer_data_set=tuple(
                ProducerData(JsonObject(v, w).text("groupName"))
                for v, w in obj.items("producerDataSet")
            ),
            consumer_data_set=tuple(
                ConsumerData.from_json(v, w) for v, w in obj.items("consumerDataSet")
            ),
        )


# -- consumer list and queue locks (spec §4, §9.3) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerListBody:
    """GET_CONSUMER_LIST_BY_GROUP response body (Java `GetConsumerListByGroupResponseBody`)."""

    consumer_id_list: tuple[str, ...]

    def encode(self) -> bytes:
        """The body as compact, key-sorted JSON."""
        return encode_json({"consumerIdList": list(self.consumer_id_list)})

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> ConsumerListBody:
        """Raises: BodyFormatError: not a consumer list."""
        return cls(read_object(data, "ConsumerListBody").texts("consumerIdList"))


@dataclass(frozen=True, slots=True)
class LockBatchRequestBody:
    """LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42) request body."""

    consumer_group: str
    client_id: str
    mq_set: tuple[MessageQueue, ...] = ()

    def encode(self) -> bytes:
        """The body as compact, key-sorted JSON."""
        return encode_json(
            {
                "clientId": self.client_id,
                "consumerGroup": self.consumer_group,
                "mqSet": [mq.to_json() for mq in self.mq_set],
            }
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> Self:
        """Raises: BodyFormatError: not a lock request (5.x's onlyThisBroker is ignored)."""
        obj = read_object(data, cls.__name__)
        return cls(
            obj.text("consumerGroup"),
            obj.text("clientId"),
            tuple(MessageQueue.from_json(v, w) for v, w in obj.items("mqSet")),
        )


#: UNLOCK_BATCH_MQ's body has the same fields (Java `UnlockBatchRequestBody`)
UnlockBatchRequestBody = LockBatchRequestBody


@dataclass(frozen=True, slots=True)
class LockBatchResponseBody:
    """LOCK_BATCH_MQ response body: the queues the client now holds (queueId a JSON number)."""

    lock_ok_mq_set: tuple[MessageQueue, ...]

    def encode(self) -> bytes:
        """The body as compact, key-sorted JSON."""
        return encode_json({"lockOKMQSet": [mq.to_json() for mq in self.lock_ok_mq_set]})

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> LockBatchResponseBody:
        """Raises: BodyFormatError: not a lock response."""
        obj = read_object(data, "LockBatchResponseBody")
        return cls(tuple(MessageQueue.from_json(v, w) for v, w in obj.items("lockOKMQSet")))


# -- name-server listings (spec §2) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """GET_BROKER_CLUSTER_INFO response body."""

    broker_addr_table: dict[str, BrokerData]
    cluster_addr_table: dict[str, tuple[str, ...]]

    def encode(self) -> bytes:
        """The body as compact, key-sorted JSON."""
        return encode_json(
            {
                "brokerAddrTable": {n: b.to_json() for n, b in self.broker_addr_table.items()},
                "clusterAddrTable": {c: list(n) for c, n in self.cluster_addr_table.items()},
            }
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> ClusterInfo:
        """Raises: BodyFormatError: not a cluster table (fastjson's unquoted ids are fine)."""
        obj = read_object(data, "ClusterInfo")
        brokers = {n: BrokerData.from_json(v, w) for n, v, w in obj.entries("brokerAddrTable")}
        clusters = {
            name: as_texts(names, path) for name, names, path in obj.entries("clusterAddrTable")
        }
        return cls(brokers, clusters)


@dataclass(frozen=True, slots=True)
class TopicList:
    """GET_ALL_TOPIC_LIST_FROM_NAMESERVER (and similar) response body."""

    topic_list: tuple[str, ...]
    broker_addr: str | None = None

    def encode(self) -> bytes:
        """The body as compact, key-sorted JSON."""
        body: dict[str, object] = {"topicList": list(self.topic_list)}
        if self.broker_addr is not None:
            body["brokerAddr"] = self.broker_addr
        return encode_json(body)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> TopicList:
        """Raises: BodyFormatError: not a topic list."""
        obj = read_object(data, "TopicList")
        return cls(obj.texts("topicList"), obj.opt_text("brokerAddr"))


@dataclass(frozen=True, slots=True)
class KVTable:
    """`{"table":{k: v}}`: REGISTER_BROKER response body, GET_BROKER_RUNTIME_INFO, ..."""

    table: dict[str, str]

    def encode(self) -> bytes:
        """The body as compact, key-sorted JSON."""
        return encode_json({"table": self.table})

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> KVTable:
        """Raises: BodyFormatError: not a KV table."""
        obj = read_object(data, "KVTable")
        return cls({key: as_str(value, path) for key, value, path in obj.entries("table")})
