"""Admin request headers and bodies: what mqadmin, consoles and `shmq admin` ask a broker
(spec/request-codes.md §6, §8, §9.4), sans-IO.

Theory of operation
-------------------
Headers follow `headers.py` (a frozen dataclass per header, the wire name and type of each
field in its metadata). Bodies are frozen dataclasses with `encode() -> bytes` and
`decode(data)`, like `bodies.py`, with one difference: several of these bodies are Java maps
keyed by a `MessageQueue` (TopicStatsTable, ConsumeStats, ResetOffsetBody,
ConsumerRunningInfo), which fastjson writes with *object literals as keys*::

    {"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"maxOffset":5,...}}}

That is not standard JSON, but it is what the Java admin tools and consoles parse (a quoted key
does not turn back into a MessageQueue there), so `encode` writes that form for those maps
(`encode_fastjson` with `MqTable`). Decoding accepts it (through `fastjson.loads`, which keeps
such keys as their canonical JSON text) and also keys that are JSON strings holding the same
object, so bodies from Java brokers and from shmq read alike.

Everything else is written as `bodies.py` writes it: keys sorted, compact, None left out, enums
by name, numbers as numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Self

from .bodies import ConsumeFromWhere, ConsumeType, MessageModel, MessageQueue, SubscriptionData
from .body_json import JsonObject, as_enum, as_int, read_object
from .errors import BodyFormatError
from .headers import ExtHeader, _Kind

__all__ = [
    "ClientConnection",
    "ConsumeStats",
    "ConsumeStatus",
    "ConsumerConnection",
    "ConsumerRunningInfo",
    "GetBrokerConfigResponseHeader",
    "GetConsumeStatsRequestHeader",
    "GetConsumerConnectionListRequestHeader",
    "GetConsumerRunningInfoRequestHeader",
    "GetTopicStatsInfoRequestHeader",
    "MqTable",
    "OffsetWrapper",
    "ProcessQueueInfo",
    "ResetOffsetBody",
    "ResetOffsetRequestHeader",
    "TopicOffset",
    "TopicStatsTable",
    "encode_fastjson",
    "parse_properties_text",
    "properties_text",
]

_dumps: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode


def _wire(name: str, kind: _Kind) -> dict[str, object]:
    return {"wire": name, "kind": kind}


# -- headers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetTopicStatsInfoRequestHeader(ExtHeader):
    """GET_TOPIC_STATS_INFO (202)."""

    topic: str = field(metadata=_wire("topic", _Kind.STR))


@dataclass(frozen=True, slots=True)
class GetConsumeStatsRequestHeader(ExtHeader):
    """GET_CONSUME_STATS (208); no topic: every topic the group has offsets on."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _Kind.STR))
    topic: str | None = field(default=None, metadata=_wire("topic", _Kind.STR))


@dataclass(frozen=True, slots=True)
class GetConsumerConnectionListRequestHeader(ExtHeader):
    """GET_CONSUMER_CONNECTION_LIST (203)."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _Kind.STR))


@dataclass(frozen=True, slots=True)
class ResetOffsetRequestHeader(ExtHeader):
    """INVOKE_BROKER_TO_RESET_OFFSET (222) and RESET_CONSUMER_CLIENT_OFFSET (220).

    `timestamp` in ms; -1 means "the queues' max offsets" (skip everything)."""

    topic: str = field(metadata=_wire("topic", _Kind.STR))
    group: str = field(metadata=_wire("group", _Kind.STR))
    timestamp: int = field(metadata=_wire("timestamp", _Kind.LONG))
    is_force: bool = field(default=True, metadata=_wire("isForce", _Kind.BOOL))


@dataclass(frozen=True, slots=True)
class GetConsumerRunningInfoRequestHeader(ExtHeader):
    """GET_CONSUMER_RUNNING_INFO (307), admin -> broker -> client."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _Kind.STR))
    client_id: str = field(metadata=_wire("clientId", _Kind.STR))
    jstack_enable: bool = field(default=False, metadata=_wire("jstackEnable", _Kind.BOOL))


@dataclass(frozen=True, slots=True)
class GetBrokerConfigResponseHeader(ExtHeader):
    """GET_BROKER_CONFIG (26) response: the config's DataVersion as JSON."""

    version: str | None = field(default=None, metadata=_wire("version", _Kind.STR))


# -- fastjson's MessageQueue-keyed maps ------------------------------------------------------


class MqTable(dict[MessageQueue, Any]):
    """A map that `encode_fastjson` writes with MessageQueue object literals as keys."""

    __slots__ = ()


def encode_fastjson(value: object) -> bytes:
    """JSON of `value` as fastjson writes it: like `body_json.encode_json` (sorted keys,
    compact, ASCII), except that an `MqTable` gets object-literal keys (module docstring).
    Values may be dicts, lists, tuples, str, int, float, bool, None and `MqTable`s."""
    return _encode(value).encode("ascii")


def _encode(value: object) -> str:
    if isinstance(value, MqTable):
        items = sorted(value.items(), key=lambda kv: (kv[0].topic, kv[0].broker_name,
                                                     kv[0].queue_id))
        return "{" + ",".join(f"{_dumps(mq.to_json())}:{_encode(v)}" for mq, v in items) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dumps(str(k))}:{_encode(v)}"
                              for k, v in sorted(value.items()) if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return str(_dumps(value))


def _mq_entries(obj: JsonObject, key: str) -> list[tuple[MessageQueue, Any, str]]:
    """(queue, value, path) of a MessageQueue-keyed map, from either key form."""
    out = []
    for name, value, path in obj.entries(key):
        try:
            literal = json.loads(name)
        except ValueError as err:
            raise BodyFormatError(path, "the key is not a MessageQueue object") from err
        out.append((MessageQueue.from_json(literal, path), value, path))
    return out


def _number(value: object, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BodyFormatError(where, f"expected a number, got {value!r:.40}")


# -- GET_TOPIC_STATS_INFO (202) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicOffset:
    """One queue's bounds and the store time of its last message (0: empty)."""

    min_offset: int
    max_offset: int
    last_update_timestamp: int

    def to_json(self) -> dict[str, object]:
        return {"lastUpdateTimestamp": self.last_update_timestamp,
                "maxOffset": self.max_offset, "minOffset": self.min_offset}

    @classmethod
    def from_json(cls, value: object, where: str) -> Self:
        obj = JsonObject(value, where)
        return cls(obj.number("minOffset", 0, bits=64), obj.number("maxOffset", 0, bits=64),
                   obj.number("lastUpdateTimestamp", 0, bits=64))


@dataclass(frozen=True, slots=True)
class TopicStatsTable:
    """GET_TOPIC_STATS_INFO response body."""

    offset_table: dict[MessageQueue, TopicOffset]

    def encode(self) -> bytes:
        return encode_fastjson({"offsetTable": MqTable(
            {mq: off.to_json() for mq, off in self.offset_table.items()})})

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> Self:
        """Raises: BodyFormatError: not a TopicStatsTable."""
        obj = read_object(data, "TopicStatsTable")
        return cls({mq: TopicOffset.from_json(v, w)
                    for mq, v, w in _mq_entries(obj, "offsetTable")})


# -- GET_CONSUME_STATS (208) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OffsetWrapper:
    """A group's position on one queue: `lag = broker_offset - consumer_offset`."""

    broker_offset: int  #: the queue's max offset
    consumer_offset: int  #: the group's committed offset (0 when none)
    last_timestamp: int = 0  #: store time of the last consumed message (0: unknown)

    def to_json(self) -> dict[str, object]:
        return {"brokerOffset": self.broker_offset, "consumerOffset": self.consumer_offset,
                "lastTimestamp": self.last_timestamp}

    @classmethod
    def from_json(cls, value: object, where: str) -> Self:
        obj = JsonObject(value, where)
        return cls(obj.number("brokerOffset", 0, bits=64),
                   obj.number("consumerOffset", 0, bits=64),
                   obj.number("lastTimestamp", 0, bits=64))


@dataclass(frozen=True, slots=True)
class ConsumeStats:
    """GET_CONSUME_STATS response body."""

    offset_table: dict[MessageQueue, OffsetWrapper]
    consume_tps: float = 0.0

    def encode(self) -> bytes:
        return encode_fastjson({
            "consumeTps": self.consume_tps,
            "offsetTable": MqTable({mq: w.to_json() for mq, w in self.offset_table.items()})})

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> Self:
        """Raises: BodyFormatError: not a ConsumeStats."""
        obj = read_object(data, "ConsumeStats")
        tps = obj.data.get("consumeTps")
        return cls({mq: OffsetWrapper.from_json(v, w)
                    for mq, v, w in _mq_entries(obj, "offsetTable")},
                   0.0 if tps is None else _number(tps, "ConsumeStats.consumeTps"))


# -- GET_CONSUMER_CONNECTION_LIST (203) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientConnection:
    """One client channel of a group (Java `Connection`)."""

    client_id: str
    client_addr: str
    language: str  #: LanguageCode name: JAVA, CPP, PYTHON...
    version: int

    def to_json(self) -> dict[str, object]:
        return {"clientAddr": self.client_addr, "clientId": self.client_id,
                "language": self.language, "version": self.version}

    @classmethod
    def from_json(cls, value: object, where: str) -> Self:
        obj = JsonObject(value, where)
        return cls(obj.text("clientId"), obj.opt_text("clientAddr") or "",
                   str(obj.data.get("language", "")), obj.number("version", 0))


@dataclass(frozen=True, slots=True)
class ConsumerConnection:
    """GET_CONSUMER_CONNECTION_LIST response body."""

    connection_set: tuple[ClientConnection, ...]
    subscription_table: dict[str, SubscriptionData]
    consume_type: ConsumeType | None = None
    message_model: MessageModel | None = None
    consume_from_where: ConsumeFromWhere | None = None

    def encode(self) -> bytes:
        return encode_fastjson({
            "connectionSet": [c.to_json() for c in self.connection_set],
            "consumeFromWhere": _name(self.consume_from_where),
            "consumeType": _name(self.consume_type),
            "messageModel": _name(self.message_model),
            "subscriptionTable": {t: s.to_json() for t, s in self.subscription_table.items()},
        })

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> Self:
        """Raises: BodyFormatError: not a ConsumerConnection."""
        obj = read_object(data, "ConsumerConnection")
        where = "ConsumerConnection"
        return cls(
            tuple(ClientConnection.from_json(v, w) for v, w in obj.items("connectionSet")),
            {topic: SubscriptionData.from_json(v, w)
             for topic, v, w in obj.entries("subscriptionTable")},
            _opt_enum(ConsumeType, obj.data.get("consumeType"), f"{where}.consumeType"),
            _opt_enum(MessageModel, obj.data.get("messageModel"), f"{where}.messageModel"),
            _opt_enum(ConsumeFromWhere, obj.data.get("consumeFromWhere"),
                      f"{where}.consumeFromWhere"))


def _name(value: ConsumeType | MessageModel | ConsumeFromWhere | None) -> str | None:
    return None if value is None else value.name


def _opt_enum(enum_class: Any, value: object, where: str) -> Any:
    return None if value is None else as_enum(enum_class, value, where)


# -- INVOKE_BROKER_TO_RESET_OFFSET (222) / RESET_CONSUMER_CLIENT_OFFSET (220) ----------------


@dataclass(frozen=True, slots=True)
class ResetOffsetBody:
    """Queue -> offset, in Java's form (`{"offsetTable":{{mq}:123}}`) or, for C++ consumers,
    `ResetOffsetBodyForC` (`{"offsetTable":[{...mq..., "offset":123}]}`); both decode."""

    offset_table: dict[MessageQueue, int]

    def encode(self) -> bytes:
        """Java's form (Java consumers, admin tools and shmq read it)."""
        return encode_fastjson({"offsetTable": MqTable(self.offset_table)})

    def encode_for_c(self) -> bytes:
        """The form the C++ client 1.2.4 understands."""
        return encode_fastjson({"offsetTable": [
            {**mq.to_json(), "offset": offset} for mq, offset in sorted(
                self.offset_table.items(),
                key=lambda kv: (kv[0].topic, kv[0].broker_name, kv[0].queue_id))]})

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> Self:
        """Raises: BodyFormatError: neither form."""
        obj = read_object(data, "ResetOffsetBody")
        if isinstance(obj.data.get("offsetTable"), list):
            table = {}
            for value, where in obj.items("offsetTable"):
                table[MessageQueue.from_json(value, where)] = JsonObject(value, where).number(
                    "offset", bits=64)
            return cls(table)
        return cls({mq: as_int(v, w, 64) for mq, v, w in _mq_entries(obj, "offsetTable")})


# -- GET_CONSUMER_RUNNING_INFO (307) ---------------------------------------------------------


#: ProcessQueueInfo attribute -> JSON key
_PQ_WIRE: Final = (
    ("commit_offset", "commitOffset"), ("cached_msg_min_offset", "cachedMsgMinOffset"),
    ("cached_msg_max_offset", "cachedMsgMaxOffset"), ("cached_msg_count", "cachedMsgCount"),
    ("cached_msg_size_in_mib", "cachedMsgSizeInMiB"),
    ("transaction_msg_min_offset", "transactionMsgMinOffset"),
    ("transaction_msg_max_offset", "transactionMsgMaxOffset"),
    ("transaction_msg_count", "transactionMsgCount"), ("locked", "locked"),
    ("try_unlock_times", "tryUnlockTimes"), ("last_lock_timestamp", "lastLockTimestamp"),
    ("droped", "droped"), ("last_pull_timestamp", "lastPullTimestamp"),
    ("last_consume_timestamp", "lastConsumeTimestamp"))


@dataclass(frozen=True, slots=True)
class ProcessQueueInfo:
    """One owned queue of a consumer (Java `ProcessQueueInfo`; times in ms, 0: never)."""

    commit_offset: int = 0
    cached_msg_min_offset: int = 0
    cached_msg_max_offset: int = 0
    cached_msg_count: int = 0
    cached_msg_size_in_mib: int = 0
    transaction_msg_min_offset: int = 0
    transaction_msg_max_offset: int = 0
    transaction_msg_count: int = 0
    locked: bool = False
    try_unlock_times: int = 0
    last_lock_timestamp: int = 0
    droped: bool = False  # (sic) Java's spelling
    last_pull_timestamp: int = 0
    last_consume_timestamp: int = 0


    def to_json(self) -> dict[str, object]:
        return {wire: getattr(self, attr) for attr, wire in _PQ_WIRE}

    @classmethod
    def from_json(cls, value: object, where: str) -> Self:
        obj = JsonObject(value, where)
        kwargs: dict[str, Any] = {}
        for attr, wire in _PQ_WIRE:
            if attr in ("locked", "droped"):
                kwargs[attr] = obj.flag(wire)
            else:
                kwargs[attr] = obj.number(wire, 0, bits=64)
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class ConsumeStatus:
    """A consumer's rates on one topic (Java `ConsumeStatus`; RT in ms, TPS per second)."""

    pull_rt: float = 0.0
    pull_tps: float = 0.0
    consume_rt: float = 0.0
    consume_ok_tps: float = 0.0
    consume_failed_tps: float = 0.0
    consume_failed_msgs: int = 0

    def to_json(self) -> dict[str, object]:
        return {"consumeFailedMsgs": self.consume_failed_msgs,
                "consumeFailedTPS": self.consume_failed_tps, "consumeOKTPS": self.consume_ok_tps,
                "consumeRT": self.consume_rt, "pullRT": self.pull_rt, "pullTPS": self.pull_tps}

    @classmethod
    def from_json(cls, value: object, where: str) -> Self:
        obj = JsonObject(value, where)

        def num(key: str) -> float:
            raw = obj.data.get(key)
            return 0.0 if raw is None else _number(raw, f"{where}.{key}")

        return cls(num("pullRT"), num("pullTPS"), num("consumeRT"), num("consumeOKTPS"),
                   num("consumeFailedTPS"), int(num("consumeFailedMsgs")))


@dataclass(frozen=True, slots=True)
class ConsumerRunningInfo:
    """GET_CONSUMER_RUNNING_INFO answer of a client (Java `ConsumerRunningInfo`)."""

    properties: dict[str, str]
    subscription_set: tuple[SubscriptionData, ...] = ()
    mq_table: dict[MessageQueue, ProcessQueueInfo] = field(default_factory=dict)
    status_table: dict[str, ConsumeStatus] = field(default_factory=dict)
    jstack: str | None = None

    def encode(self) -> bytes:
        return encode_fastjson({
            "jstack": self.jstack,
            "mqTable": MqTable({mq: pq.to_json() for mq, pq in self.mq_table.items()}),
            "properties": dict(self.properties),
            "statusTable": {t: s.to_json() for t, s in self.status_table.items()},
            "subscriptionSet": [s.to_json() for s in sorted(
                self.subscription_set, key=lambda s: s.topic)],
        })

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> Self:
        """Raises: BodyFormatError: not a ConsumerRunningInfo."""
        obj = read_object(data, "ConsumerRunningInfo")
        props = {str(k): v if isinstance(v, str) else json.dumps(v)
                 for k, v, _w in obj.entries("properties")}
        return cls(
            props,
            tuple(SubscriptionData.from_json(v, w) for v, w in obj.items("subscriptionSet")),
            {mq: ProcessQueueInfo.from_json(v, w) for mq, v, w in _mq_entries(obj, "mqTable")},
            {t: ConsumeStatus.from_json(v, w) for t, v, w in obj.entries("statusTable")},
            obj.opt_text("jstack"))


# -- GET_BROKER_CONFIG (26) ------------------------------------------------------------------


def properties_text(config: Mapping[str, object]) -> bytes:
    """`key=value` lines, sorted (Java `MixAll.properties2String`)."""
    lines = [f"{key}={_prop_value(value)}\n" for key, value in sorted(config.items())]
    return "".join(lines).encode()


def _prop_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_properties_text(data: bytes | bytearray | memoryview | str) -> dict[str, str]:
    """The reverse of `properties_text` (blank lines and `#` comments skipped)."""
    text = data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")
    config = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _sep, value = line.partition("=")
        config[key.strip()] = value.strip()
    return config
