"""Typed request and response headers (the `extFields` of a command), spec/request-codes.md.

Theory of operation: each header is a frozen dataclass whose fields carry their wire name and
wire type (S string, I int32, L int64, B boolean) in the field metadata; that table is the one
place each fact lives. `ExtHeader.from_ext_fields` and `ExtHeader.to_ext_fields` interpret it:

* Reading is lenient, with Java's rules plus the C++ leniency of spec §4.2 rule 4: ints are
  decimal strings (optional sign, ASCII digits, in range); a boolean is true for "true" (any
  case) or "1" and false for anything else (C++ sends "0"/"1", Java "true"/"false", Node JSON
  booleans that the JSON header decoder already turned into "true"/"false"). Unknown keys
  (credentials, 5.x additions) are ignored. An empty string counts as absent for optional
  fields, since C++ sends "" for unused groups and the binary header cannot tell "" from null.
* A missing required field ("@CFNotNull" in Java) or an unparsable value raises
  `HeaderFieldError` naming the header, the wire field and the value; Java answers that
  situation with SYSTEM_ERROR, and so should a handler.
* Writing is strict: every value becomes a string (ints in decimal, booleans "true"/"false");
  None fields are left out.

Java names are kept for classes and wire names; attributes are snake_case. The send header has
two wire forms: `SendMessageRequestHeader` (code 10, full names) and `SendMessageRequestHeaderV2`
(codes 310/320/325, names a..n); `decode_send_message_header` turns any send request into the
V1 form.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Self, TypeVar

from .codes import RequestCode
from .command import RemotingCommand
from .errors import HeaderFieldError, LocalProtocolError
from .layout import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN

__all__ = [
    "AddWritePermOfBrokerRequestHeader",
    "AddWritePermOfBrokerResponseHeader",
    "CheckTransactionStateRequestHeader",
    "ConsumerSendMsgBackRequestHeader",
    "CreateTopicRequestHeader",
    "DeleteTopicFromNamesrvRequestHeader",
    "DeleteTopicRequestHeader",
    "EndTransactionRequestHeader",
    "ExtHeader",
    "GetConsumerListByGroupRequestHeader",
    "GetEarliestMsgStoretimeRequestHeader",
    "GetEarliestMsgStoretimeResponseHeader",
    "GetKVConfigRequestHeader",
    "GetKVConfigResponseHeader",
    "GetKVListByNamespaceRequestHeader",
    "GetMaxOffsetRequestHeader",
    "GetMaxOffsetResponseHeader",
    "GetMinOffsetRequestHeader",
    "GetMinOffsetResponseHeader",
    "GetRouteInfoRequestHeader",
    "GetTopicsByClusterRequestHeader",
    "NotifyConsumerIdsChangedRequestHeader",
    "PullMessageRequestHeader",
    "PullMessageResponseHeader",
    "PutKVConfigRequestHeader",
    "QueryConsumerOffsetRequestHeader",
    "QueryConsumerOffsetResponseHeader",
    "QueryDataVersionRequestHeader",
    "QueryDataVersionResponseHeader",
    "QueryMessageRequestHeader",
    "QueryMessageResponseHeader",
    "RegisterBrokerRequestHeader",
    "RegisterBrokerResponseHeader",
    "SearchOffsetRequestHeader",
    "SearchOffsetResponseHeader",
    "SendMessageRequestHeader",
    "SendMessageRequestHeaderV2",
    "SendMessageResponseHeader",
    "UnregisterBrokerRequestHeader",
    "UnregisterClientRequestHeader",
    "UpdateConsumerOffsetRequestHeader",
    "ViewMessageRequestHeader",
    "WipeWritePermOfBrokerRequestHeader",
    "WipeWritePermOfBrokerResponseHeader",
    "decode_send_message_header",
    "parse_bool",
]


class _Kind(enum.Enum):
    STR = "a string"
    INT = "an int32"
    LONG = "an int64"
    BOOL = "a boolean"


_S: Final = _Kind.STR
_I: Final = _Kind.INT
_L: Final = _Kind.LONG
_B: Final = _Kind.BOOL
_RANGES: Final = {_I: (INT32_MIN, INT32_MAX), _L: (INT64_MIN, INT64_MAX)}


def _wire(name: str, kind: _Kind) -> dict[str, object]:
    """Field metadata: the field's extFields key and wire type."""
    return {"wire": name, "kind": kind}


def parse_bool(text: str) -> bool:
    """Read a header boolean: "true" (any case) or "1" is True, anything else False (spec §4.2)."""
    return text == "1" or text.lower() == "true"


class _FieldSpec(NamedTuple):
    attr: str
    wire: str
    kind: _Kind
    required: bool
    default: object
    #: writes the slot directly, bypassing the frozen dataclass's __init__ (see _read_header)
    store: Callable[[object, object], None]
    low: int  #: range of INT and LONG fields
    high: int


_SPECS: Final[dict[type, tuple[_FieldSpec, ...]]] = {}


def _field_specs(header_class: type) -> tuple[_FieldSpec, ...]:
    """The wire table of a header class, read once from its dataclass fields."""
    specs = _SPECS.get(header_class)
    if specs is None:
        specs = tuple(
            _FieldSpec(
                item.name,
                item.metadata["wire"],
                item.metadata["kind"],
                required=item.default is dataclasses.MISSING,
                default=None if item.default is dataclasses.MISSING else item.default,
                store=getattr(header_class, item.name).__set__,
                low=_RANGES.get(item.metadata["kind"], (0, 0))[0],
                high=_RANGES.get(item.metadata["kind"], (0, 0))[1],
            )
            for item in dataclasses.fields(header_class)
        )
        _SPECS[header_class] = specs
    return specs


class ExtHeader:
    """Base of the header dataclasses: reading from and writing to `extFields`."""

    __slots__ = ()

    @classmethod
    def from_ext_fields(cls, ext_fields: Mapping[str, str]) -> Self:
        """Build the header from a command's `ext_fields` (lenient; see the module docstring).

        Args:
            ext_fields: the command's extFields; unknown keys are ignored.

        Returns:
            The typed header.

        Raises:
            HeaderFieldError: a required field is missing, or a value does not parse as its
                wire type (an int out of range included).
        """
        return _read_header(cls, _field_specs(cls), ext_fields)

    def to_ext_fields(self) -> dict[str, str]:
        """Return the header as extFields: every value a string, None fields left out."""
        fields: dict[str, str] = {}
        for spec in _field_specs(type(self)):
            value = getattr(self, spec.attr)
            if value is None:
                continue
            if spec.kind is _B:
                fields[spec.wire] = "true" if value else "false"
            else:
                fields[spec.wire] = str(value)
        return fields


H = TypeVar("H", bound=ExtHeader)


def _read_header(cls: type[H], specs: tuple[_FieldSpec, ...], ext_fields: Mapping[str, str]) -> H:
    """Build a `cls` from `ext_fields` following `specs` (see ExtHeader.from_ext_fields)."""
    # A frozen dataclass's __init__ sets each field through object.__setattr__, which costs
    # ~5 us for the 14 fields of a send header; storing into the slots directly costs ~1 us.
    # Every field is stored exactly once, so the result is what __init__ would build.
    header = object.__new__(cls)
    get = ext_fields.get
    for _, wire, kind, required, default, store, low, high in specs:
        raw = get(wire)
        if raw is None or (not raw and not required):
            if required:
                raise HeaderFieldError(cls.__name__, wire, None, kind.value)
            store(header, default)
        elif kind is _S:
            store(header, raw)
        elif kind is _B:
            store(header, parse_bool(raw))
        else:
            store(header, _parse_int(cls.__name__, wire, kind, raw, low, high))
    return header


def _parse_int(header: str, wire: str, kind: _Kind, raw: str, low: int, high: int) -> int:
    """Java `Integer.parseInt` / `Long.parseLong`: optional sign, ASCII digits, in range."""
    # Inline rather than json_header.parse_java_int: this runs for every int header field.
    digits = raw[1:] if raw[:1] in ("+", "-") else raw
    if digits.isdigit() and digits.isascii() and len(digits) <= 19:
        value = int(raw)
        if low <= value <= high:
            return value
    raise HeaderFieldError(header, wire, raw, kind.value)


# -- send (request-codes.md §3) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessageRequestHeader(ExtHeader):
    """SEND_MESSAGE (10) and SEND_REPLY_MESSAGE (324) header; the V1 form of every send."""

    producer_group: str = field(metadata=_wire("producerGroup", _S))
    topic: str = field(metadata=_wire("topic", _S))
    default_topic: str = field(metadata=_wire("defaultTopic", _S))  #: auto-create template
    default_topic_queue_nums: int = field(metadata=_wire("defaultTopicQueueNums", _I))
    queue_id: int = field(metadata=_wire("queueId", _I))  #: < 0: broker picks a queue
    sys_flag: int = field(metadata=_wire("sysFlag", _I))
    born_timestamp: int = field(metadata=_wire("bornTimestamp", _L))
    flag: int = field(metadata=_wire("flag", _I))
    properties: str | None = field(default=None, metadata=_wire("properties", _S))
    reconsume_times: int | None = field(default=None, metadata=_wire("reconsumeTimes", _I))
    unit_mode: bool = field(default=False, metadata=_wire("unitMode", _B))
    #: C++ sends "1"; Java's parseBoolean would read that as false (request-codes.md §3)
    batch: bool = field(default=False, metadata=_wire("batch", _B))
    max_reconsume_times: int | None = field(default=None, metadata=_wire("maxReconsumeTimes", _I))
    #: 4.9.x / 5.x logical broker name (static topics); carried, not interpreted
    bname: str | None = field(default=None, metadata=_wire("bname", _S))


@dataclass(frozen=True, slots=True)
class SendMessageRequestHeaderV2(ExtHeader):
    """SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), SEND_REPLY_MESSAGE_V2 (325) header."""

    a: str = field(metadata=_wire("a", _S))  #: producerGroup
    b: str = field(metadata=_wire("b", _S))  #: topic
    c: str = field(metadata=_wire("c", _S))  #: defaultTopic
    d: int = field(metadata=_wire("d", _I))  #: defaultTopicQueueNums
    e: int = field(metadata=_wire("e", _I))  #: queueId
    f: int = field(metadata=_wire("f", _I))  #: sysFlag
    g: int = field(metadata=_wire("g", _L))  #: bornTimestamp
    h: int = field(metadata=_wire("h", _I))  #: flag
    i: str | None = field(default=None, metadata=_wire("i", _S))  #: properties
    j: int | None = field(default=None, metadata=_wire("j", _I))  #: reconsumeTimes
    k: bool = field(default=False, metadata=_wire("k", _B))  #: unitMode
    l: int | None = field(default=None, metadata=_wire("l", _I))
    m: bool = field(default=False, metadata=_wire("m", _B))  #: batch
    n: str | None = field(default=None, metadata=_wire("n", _S))  #: bname

    def to_v1(self) -> SendMessageRequestHeader:
        """Return the same header with the full field names (Java `createSendMessageRequestHeaderV1`)."""
        return SendMessageRequestHeader(
            **{v1: getattr(self, v2) for v1, v2 in _V2_NAME_OF_V1.items()}
        )

    @classmethod
    def from_v1(cls, v1: SendMessageRequestHeader) -> SendMessageRequestHeaderV2:
        """Return `v1` with the short field names (Java `createSendMessageRequestHeaderV2`)."""
        return cls(**{v2: getattr(v1, name) for name, v2 in _V2_NAME_OF_V1.items()})


#: V1 attribute -> V2 field (attribute and wire name); note l/m swap order with batch
_V2_NAME_OF_V1: Final = {
    "producer_group": "a",
    "topic": "b",
    "default_topic": "c",
    "default_topic_queue_nums": "d",
    "queue_id": "e",
    "sys_flag": "f",
    "born_timestamp": "g",
    "flag": "h",
    "properties": "i",
    "reconsume_times": "j",
    "unit_mode": "k",
    "max_reconsume_times": "l",
    "batch": "m",
    "bname": "n",
}


def _v1_specs_with_v2_wire_names() -> tuple[_FieldSpec, ...]:
    """V1's wire table with V2's short names: reads a V2 header straight into the V1 class."""
    return tuple(
        spec._replace(wire=_V2_NAME_OF_V1[spec.attr])
        for spec in _field_specs(SendMessageRequestHeader)
    )


_V1_FROM_V2_SPECS: Final = _v1_specs_with_v2_wire_names()
_V1_SEND_CODES: Final = frozenset({RequestCode.SEND_MESSAGE, RequestCode.SEND_REPLY_MESSAGE})
_V2_SEND_CODES: Final = frozenset(
    {RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE, RequestCode.SEND_REPLY_MESSAGE_V2}
)


def decode_send_message_header(command: RemotingCommand) -> SendMessageRequestHeader:
    """Read the header of any send request as a V1 header.

    SEND_BATCH_MESSAGE (320) always means a batch body, whatever its `m` says (Java routes it to
    the batch path by code).

    Args:
        command: a request with code 10, 310, 320, 324 or 325.

    Returns:
        The V1 header.

    Raises:
        HeaderFieldError: a required field is missing or a value does not parse.
        LocalProtocolError: `command` is not a send request (the caller's mistake).
    """
    code = command.code
    if code in _V1_SEND_CODES:
        header = SendMessageRequestHeader.from_ext_fields(command.ext_fields)
    elif code in _V2_SEND_CODES:
        # Equivalent to SendMessageRequestHeaderV2.from_ext_fields(...).to_v1(), in one pass.
        header = _read_header(SendMessageRequestHeader, _V1_FROM_V2_SPECS, command.ext_fields)
    else:
        raise LocalProtocolError(f"request code {code} is not a send request")
    if code == RequestCode.SEND_BATCH_MESSAGE and not header.batch:
        header = dataclasses.replace(header, batch=True)
    return header


@dataclass(frozen=True, slots=True)
class SendMessageResponseHeader(ExtHeader):
    """Send response (codes 0, 10, 11, 12). C++ crashes on a SUCCESS without these fields."""

    msg_id: str = field(metadata=_wire("msgId", _S))  #: offset msgId(s), comma-joined for batches
    queue_id: int = field(metadata=_wire("queueId", _I))
    queue_offset: int = field(metadata=_wire("queueOffset", _L))
    transaction_id: str | None = field(default=None, metadata=_wire("transactionId", _S))
    #: extra fields the Java broker adds; the Java client reads MSG_REGION from extFields
    msg_region: str | None = field(default=None, metadata=_wire("MSG_REGION", _S))
    trace_on: bool | None = field(default=None, metadata=_wire("TRACE_ON", _B))


# -- consume (request-codes.md §4) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullMessageRequestHeader(ExtHeader):
    """PULL_MESSAGE (11)."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _S))
    topic: str = field(metadata=_wire("topic", _S))
    queue_id: int = field(metadata=_wire("queueId", _I))
    queue_offset: int = field(metadata=_wire("queueOffset", _L))
    max_msg_nums: int = field(metadata=_wire("maxMsgNums", _I))
    sys_flag: int = field(metadata=_wire("sysFlag", _I))  #: PullSysFlag bits
    commit_offset: int = field(metadata=_wire("commitOffset", _L))
    suspend_timeout_millis: int = field(metadata=_wire("suspendTimeoutMillis", _L))
    sub_version: int = field(metadata=_wire("subVersion", _L))
    subscription: str | None = field(default=None, metadata=_wire("subscription", _S))
    expression_type: str | None = field(default=None, metadata=_wire("expressionType", _S))


@dataclass(frozen=True, slots=True)
class PullMessageResponseHeader(ExtHeader):
    """Pull response; always sent on codes 0, 19, 20, 21 (clients read nextBeginOffset always)."""

    suggest_which_broker_id: int = field(metadata=_wire("suggestWhichBrokerId", _L))
    next_begin_offset: int = field(metadata=_wire("nextBeginOffset", _L))
    min_offset: int = field(metadata=_wire("minOffset", _L))
    max_offset: int = field(metadata=_wire("maxOffset", _L))


@dataclass(frozen=True, slots=True)
class QueryConsumerOffsetRequestHeader(ExtHeader):
    """QUERY_CONSUMER_OFFSET (14)."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _S))
    topic: str = field(metadata=_wire("topic", _S))
    queue_id: int = field(metadata=_wire("queueId", _I))


@dataclass(frozen=True, slots=True)
class QueryConsumerOffsetResponseHeader(ExtHeader):
    """QUERY_CONSUMER_OFFSET response (SUCCESS only; QUERY_NOT_FOUND has none)."""

    offset: int = field(metadata=_wire("offset", _L))


@dataclass(frozen=True, slots=True)
class UpdateConsumerOffsetRequestHeader(ExtHeader):
    """UPDATE_CONSUMER_OFFSET (15), usually oneway; negative commits must be ignored."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _S))
    topic: str = field(metadata=_wire("topic", _S))
    queue_id: int = field(metadata=_wire("queueId", _I))
    commit_offset: int = field(metadata=_wire("commitOffset", _L))


@dataclass(frozen=True, slots=True)
class GetMaxOffsetRequestHeader(ExtHeader):
    """GET_MAX_OFFSET (30)."""

    topic: str = field(metadata=_wire("topic", _S))
    queue_id: int = field(metadata=_wire("queueId", _I))


@dataclass(frozen=True, slots=True)
class GetMaxOffsetResponseHeader(ExtHeader):
    """GET_MAX_OFFSET response: the next queue offset to be written."""

    offset: int = field(metadata=_wire("offset", _L))


@dataclass(frozen=True, slots=True)
class GetMinOffsetRequestHeader(ExtHeader):
    """GET_MIN_OFFSET (31)."""

    topic: str = field(metadata=_wire("topic", _S))
    queue_id: int = field(metadata=_wire("queueId", _I))


@dataclass(frozen=True, slots=True)
class GetMinOffsetResponseHeader(ExtHeader):
    """GET_MIN_OFFSET response."""

    offset: int = field(metadata=_wire("offset", _L))


@dataclass(frozen=True, slots=True)
class SearchOffsetRequestHeader(ExtHeader):
    """SEARCH_OFFSET_BY_TIMESTAMP (29)."""

    topic: str = field(metadata=_wire("topic", _S))
    queue_id: int = field(metadata=_wire("queueId", _I))
    timestamp: int = field(metadata=_wire("timestamp", _L))  #: ms


@dataclass(frozen=True, slots=True)
class SearchOffsetResponseHeader(ExtHeader):
    """SEARCH_OFFSET_BY_TIMESTAMP response."""

    offset: int = field(metadata=_wire("offset", _L))


@dataclass(frozen=True, slots=True)
class GetEarliestMsgStoretimeRequestHeader(ExtHeader):
    """GET_EARLIEST_MSG_STORETIME (32)."""

    topic: str = field(metadata=_wire("topic", _S))
    queue_id: int = field(metadata=_wire("queueId", _I))


@dataclass(frozen=True, slots=True)
class GetEarliestMsgStoretimeResponseHeader(ExtHeader):
    """GET_EARLIEST_MSG_STORETIME response: store time (ms) of the min-offset message."""

    timestamp: int = field(metadata=_wire("timestamp", _L))


@dataclass(frozen=True, slots=True)
class ConsumerSendMsgBackRequestHeader(ExtHeader):
    """CONSUMER_SEND_MSG_BACK (36)."""

    offset: int = field(metadata=_wire("offset", _L))  #: commit-log offset of the failed message
    group: str = field(metadata=_wire("group", _S))
    delay_level: int = field(metadata=_wire("delayLevel", _I))  #: 0 broker picks, < 0 DLQ
    origin_msg_id: str | None = field(default=None, metadata=_wire("originMsgId", _S))
    origin_topic: str | None = field(default=None, metadata=_wire("originTopic", _S))
    unit_mode: bool = field(default=False, metadata=_wire("unitMode", _B))
    max_reconsume_times: int | None = field(default=None, metadata=_wire("maxReconsumeTimes", _I))


@dataclass(frozen=True, slots=True)
class GetConsumerListByGroupRequestHeader(ExtHeader):
    """GET_CONSUMER_LIST_BY_GROUP (38)."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _S))


@dataclass(frozen=True, slots=True)
class UnregisterClientRequestHeader(ExtHeader):
    """UNREGISTER_CLIENT (35). Note the capital "ID"; C++ sends "" for the unused group."""

    client_id: str = field(metadata=_wire("clientID", _S))
    producer_group: str | None = field(default=None, metadata=_wire("producerGroup", _S))
    consumer_group: str | None = field(default=None, metadata=_wire("consumerGroup", _S))


@dataclass(frozen=True, slots=True)
class NotifyConsumerIdsChangedRequestHeader(ExtHeader):
    """NOTIFY_CONSUMER_IDS_CHANGED (40), broker -> client, oneway."""

    consumer_group: str = field(metadata=_wire("consumerGroup", _S))


# -- transactions (request-codes.md §3, §6) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndTransactionRequestHeader(ExtHeader):
    """END_TRANSACTION (37), oneway."""

    producer_group: str = field(metadata=_wire("producerGroup", _S))
    tran_state_table_offset: int = field(metadata=_wire("tranStateTableOffset", _L))
    commit_log_offset: int = field(metadata=_wire("commitLogOffset", _L))
    #: 0 unknown, 8 COMMIT, 12 ROLLBACK (MessageSysFlag values)
    commit_or_rollback: int = field(metadata=_wire("commitOrRollback", _I))
    msg_id: str = field(metadata=_wire("msgId", _S))
    from_transaction_check: bool = field(default=False, metadata=_wire("fromTransactionCheck", _B))
    transaction_id: str | None = field(default=None, metadata=_wire("transactionId", _S))


@dataclass(frozen=True, slots=True)
class CheckTransactionStateRequestHeader(ExtHeader):
    """CHECK_TRANSACTION_STATE (39), broker -> producer, oneway."""

    tran_state_table_offset: int = field(metadata=_wire("tranStateTableOffset", _L))
    commit_log_offset: int = field(metadata=_wire("commitLogOffset", _L))
    msg_id: str | None = field(default=None, metadata=_wire("msgId", _S))
    transaction_id: str | None = field(default=None, metadata=_wire("transactionId", _S))
    offset_msg_id: str | None = field(default=None, metadata=_wire("offsetMsgId", _S))


# -- name server (request-codes.md §2, §5) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetRouteInfoRequestHeader(ExtHeader):
    """GET_ROUTEINFO_BY_TOPIC (105)."""

    topic: str = field(metadata=_wire("topic", _S))
    #: 4.9.4+: ask for standard JSON (quoted map keys)
    accept_standard_json_only: bool | None = field(
        default=None, metadata=_wire("acceptStandardJsonOnly", _B)
    )


@dataclass(frozen=True, slots=True)
class RegisterBrokerRequestHeader(ExtHeader):
    """REGISTER_BROKER (103)."""

    broker_name: str = field(metadata=_wire("brokerName", _S))
    broker_addr: str = field(metadata=_wire("brokerAddr", _S))  #: ip:listenPort
    cluster_name: str = field(metadata=_wire("clusterName", _S))
    ha_server_addr: str = field(metadata=_wire("haServerAddr", _S))  #: ip:haListenPort
    broker_id: int = field(metadata=_wire("brokerId", _L))  #: 0 master, >= 1 slave
    compressed: bool = field(default=False, metadata=_wire("compressed", _B))
    #: 0: do not check; else crc32(body) & 0x7FFFFFFF
    body_crc32: int = field(default=0, metadata=_wire("bodyCrc32", _I))


@dataclass(frozen=True, slots=True)
class RegisterBrokerResponseHeader(ExtHeader):
    """REGISTER_BROKER response: for slaves, the master's HA and remoting addresses."""

    ha_server_addr: str | None = field(default=None, metadata=_wire("haServerAddr", _S))
    master_addr: str | None = field(default=None, metadata=_wire("masterAddr", _S))


@dataclass(frozen=True, slots=True)
class UnregisterBrokerRequestHeader(ExtHeader):
    """UNREGISTER_BROKER (104); Java class `UnRegisterBrokerRequestHeader`."""

    broker_name: str = field(metadata=_wire("brokerName", _S))
    broker_addr: str = field(metadata=_wire("brokerAddr", _S))
    cluster_name: str = field(metadata=_wire("clusterName", _S))
    broker_id: int = field(metadata=_wire("brokerId", _L))


@dataclass(frozen=True, slots=True)
class QueryDataVersionRequestHeader(ExtHeader):
    """QUERY_DATA_VERSION (322); the body is the broker's DataVersion JSON."""

    broker_name: str = field(metadata=_wire("brokerName", _S))
    broker_addr: str = field(metadata=_wire("brokerAddr", _S))
    cluster_name: str = field(metadata=_wire("clusterName", _S))
    broker_id: int = field(metadata=_wire("brokerId", _L))


@dataclass(frozen=True, slots=True)
class QueryDataVersionResponseHeader(ExtHeader):
    """QUERY_DATA_VERSION response: whether the broker's topic table differs from ours."""

    changed: bool = field(metadata=_wire("changed", _B))


@dataclass(frozen=True, slots=True)
class GetKVConfigRequestHeader(ExtHeader):
    """GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102)."""

    namespace: str = field(metadata=_wire("namespace", _S))
    key: str = field(metadata=_wire("key", _S))


@dataclass(frozen=True, slots=True)
class GetKVConfigResponseHeader(ExtHeader):
    """GET_KV_CONFIG response (SUCCESS; QUERY_NOT_FOUND has none)."""

    value: str | None = field(default=None, metadata=_wire("value", _S))


@dataclass(frozen=True, slots=True)
class PutKVConfigRequestHeader(ExtHeader):
    """PUT_KV_CONFIG (100)."""

    namespace: str = field(metadata=_wire("namespace", _S))
    key: str = field(metadata=_wire("key", _S))
    value: str = field(metadata=_wire("value", _S))


@dataclass(frozen=True, slots=True)
class GetKVListByNamespaceRequestHeader(ExtHeader):
    """GET_KVLIST_BY_NAMESPACE (219); the response body is a KVTable."""

    namespace: str = field(metadata=_wire("namespace", _S))


@dataclass(frozen=True, slots=True)
class GetTopicsByClusterRequestHeader(ExtHeader):
    """GET_TOPICS_BY_CLUSTER (224); the response body is a TopicList."""

    cluster: str = field(metadata=_wire("cluster", _S))


@dataclass(frozen=True, slots=True)
class DeleteTopicFromNamesrvRequestHeader(ExtHeader):
    """DELETE_TOPIC_IN_NAMESRV (216); 4.9.x admin tools may name the cluster to delete from."""

    topic: str = field(metadata=_wire("topic", _S))
    cluster_name: str | None = field(default=None, metadata=_wire("clusterName", _S))


@dataclass(frozen=True, slots=True)
class WipeWritePermOfBrokerRequestHeader(ExtHeader):
    """WIPE_WRITE_PERM_OF_BROKER (205)."""

    broker_name: str = field(metadata=_wire("brokerName", _S))


@dataclass(frozen=True, slots=True)
class WipeWritePermOfBrokerResponseHeader(ExtHeader):
    """WIPE_WRITE_PERM_OF_BROKER response: how many topics lost their WRITE permission."""

    wipe_topic_count: int = field(metadata=_wire("wipeTopicCount", _I))


@dataclass(frozen=True, slots=True)
class AddWritePermOfBrokerRequestHeader(ExtHeader):
    """ADD_WRITE_PERM_OF_BROKER (327)."""

    broker_name: str = field(metadata=_wire("brokerName", _S))


@dataclass(frozen=True, slots=True)
class AddWritePermOfBrokerResponseHeader(ExtHeader):
    """ADD_WRITE_PERM_OF_BROKER response: how many topics got their WRITE permission back."""

    add_topic_count: int = field(metadata=_wire("addTopicCount", _I))


# -- queries and admin (request-codes.md §4, §8) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryMessageRequestHeader(ExtHeader):
    """QUERY_MESSAGE (12)."""

    topic: str = field(metadata=_wire("topic", _S))
    key: str = field(metadata=_wire("key", _S))
    max_num: int = field(metadata=_wire("maxNum", _I))
    begin_timestamp: int = field(metadata=_wire("beginTimestamp", _L))
    end_timestamp: int = field(metadata=_wire("endTimestamp", _L))
    #: extra extFields flag "_UNIQUE_KEY_QUERY": `key` is a UNIQ_KEY (Java adds it only if true)
    unique_key_query: bool | None = field(default=None, metadata=_wire("_UNIQUE_KEY_QUERY", _B))


@dataclass(frozen=True, slots=True)
class QueryMessageResponseHeader(ExtHeader):
    """QUERY_MESSAGE response."""

    index_last_update_timestamp: int = field(metadata=_wire("indexLastUpdateTimestamp", _L))
    index_last_update_phyoffset: int = field(metadata=_wire("indexLastUpdatePhyoffset", _L))


@dataclass(frozen=True, slots=True)
class ViewMessageRequestHeader(ExtHeader):
    """VIEW_MESSAGE_BY_ID (33): the commit-log offset decoded from an offset msgId."""

    offset: int = field(metadata=_wire("offset", _L))


@dataclass(frozen=True, slots=True)
class CreateTopicRequestHeader(ExtHeader):
    """UPDATE_AND_CREATE_TOPIC (17)."""

    topic: str = field(metadata=_wire("topic", _S))
    default_topic: str = field(metadata=_wire("defaultTopic", _S))
    read_queue_nums: int = field(metadata=_wire("readQueueNums", _I))
    write_queue_nums: int = field(metadata=_wire("writeQueueNums", _I))
    perm: int = field(metadata=_wire("perm", _I))  #: 4 READ | 2 WRITE | 1 INHERIT
    topic_filter_type: str = field(metadata=_wire("topicFilterType", _S))  #: SINGLE_TAG, MULTI_TAG
    topic_sys_flag: int | None = field(default=None, metadata=_wire("topicSysFlag", _I))
    order: bool = field(default=False, metadata=_wire("order", _B))


@dataclass(frozen=True, slots=True)
class DeleteTopicRequestHeader(ExtHeader):
    """DELETE_TOPIC_IN_BROKER (215) and DELETE_TOPIC_IN_NAMESRV (216)."""

    topic: str = field(metadata=_wire("topic", _S))
