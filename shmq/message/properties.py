"""The properties string of a message (spec/message-format.md §5).

Format: ``name 0x01 value 0x02 name 0x01 value 0x02 ...`` in UTF-8. We write the trailing 0x02
like C++, ali-ons and older Java; Java 4.9.7 omits it. The decoder accepts both and follows
Java's lenient rules: split on 0x02, split each item at its first 0x01, skip items without 0x01
or with an empty name, and let the last occurrence of a name win (batch records carry the batch
properties after each entry's own, spec §8).

Pure functions; the broker, store and client all use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from shmq.message.errors import InvalidProperty, PropertiesTooLarge
from shmq.message.layout import MAX_PROPERTIES_BYTES

__all__ = [
    "KEY_SEPARATOR",
    "NAME_VALUE_SEPARATOR",
    "PROPERTY_ARRIVE_TIME",
    "PROPERTY_BUYER_ID",
    "PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS",
    "PROPERTY_CLUSTER",
    "PROPERTY_CONSUME_START_TIME",
    "PROPERTY_CORRECTION_FLAG",
    "PROPERTY_CORRELATION_ID",
    "PROPERTY_DELAY",
    "PROPERTY_INNER_MULTI_DISPATCH",
    "PROPERTY_INNER_MULTI_QUEUE_OFFSET",
    "PROPERTY_INSTANCE_ID",
    "PROPERTY_KEYS",
    "PROPERTY_MAX_OFFSET",
    "PROPERTY_MAX_RECONSUME_TIMES",
    "PROPERTY_MIN_OFFSET",
    "PROPERTY_MQ2_FLAG",
    "PROPERTY_MSG_REGION",
    "PROPERTY_MSG_TYPE",
    "PROPERTY_ONS_SHARDING_KEY",
    "PROPERTY_ONS_START_DELIVER_TIME",
    "PROPERTY_ORIGIN_MESSAGE_ID",
    "PROPERTY_PGROUP",
    "PROPERTY_PUSH_REPLY_TIME",
    "PROPERTY_REAL_QID",
    "PROPERTY_REAL_TOPIC",
    "PROPERTY_RECONSUME_TIME",
    "PROPERTY_REPLY_TO_CLIENT",
    "PROPERTY_RETRY_TOPIC",
    "PROPERTY_SEPARATOR",
    "PROPERTY_SHARDING_KEY",
    "PROPERTY_TAGS",
    "PROPERTY_TRACE_ON",
    "PROPERTY_TRANSACTION_CHECK_TIMES",
    "PROPERTY_TRANSACTION_ID",
    "PROPERTY_TRANSFER_FLAG",
    "PROPERTY_TRAN_MSG",
    "PROPERTY_TRAN_PREPARED_QUEUE_OFFSET",
    "PROPERTY_TTL",
    "PROPERTY_UNIQ_KEY",
    "PROPERTY_WAIT",
    "append_properties",
    "decode_properties",
    "encode_properties",
    "properties_bytes",
]

NAME_VALUE_SEPARATOR: Final = "\x01"  #: between a name and its value (spec §5)
PROPERTY_SEPARATOR: Final = "\x02"  #: after each value (spec §5)
KEY_SEPARATOR: Final = " "  #: between business keys in KEYS (spec §5.1)

# --- well-known keys (spec §5.1); the comment gives Java's MessageConst name -------------------
PROPERTY_KEYS: Final = "KEYS"  #: PROPERTY_KEYS: business keys, space-separated; indexed
PROPERTY_TAGS: Final = "TAGS"  #: PROPERTY_TAGS: the filter tag; its hash goes into the CQ
PROPERTY_WAIT: Final = "WAIT"  #: PROPERTY_WAIT_STORE_MSG_OK: "true"/"false" (absent = true)
PROPERTY_DELAY: Final = "DELAY"  #: PROPERTY_DELAY_TIME_LEVEL: delay level 1..18
PROPERTY_RETRY_TOPIC: Final = "RETRY_TOPIC"  #: PROPERTY_RETRY_TOPIC: original topic of a retry
PROPERTY_REAL_TOPIC: Final = "REAL_TOPIC"  #: PROPERTY_REAL_TOPIC: topic while parked
PROPERTY_REAL_QID: Final = "REAL_QID"  #: PROPERTY_REAL_QUEUE_ID: queue id while parked
PROPERTY_TRAN_MSG: Final = "TRAN_MSG"  #: PROPERTY_TRANSACTION_PREPARED: "true" = half message
PROPERTY_PGROUP: Final = "PGROUP"  #: PROPERTY_PRODUCER_GROUP: transaction check-back target
PROPERTY_MIN_OFFSET: Final = "MIN_OFFSET"  #: PROPERTY_MIN_OFFSET: set client-side on pull
PROPERTY_MAX_OFFSET: Final = "MAX_OFFSET"  #: PROPERTY_MAX_OFFSET: set client-side on pull
PROPERTY_BUYER_ID: Final = "BUYER_ID"  #: PROPERTY_BUYER_ID: Aliyun unit routing
PROPERTY_ORIGIN_MESSAGE_ID: Final = "ORIGIN_MESSAGE_ID"  #: first msgId of a retried message
PROPERTY_TRANSFER_FLAG: Final = "TRANSFER_FLAG"  #: legacy, unused
PROPERTY_CORRECTION_FLAG: Final = "CORRECTION_FLAG"  #: legacy, unused
PROPERTY_MQ2_FLAG: Final = "MQ2_FLAG"  #: legacy, unused
PROPERTY_RECONSUME_TIME: Final = "RECONSUME_TIME"  #: reconsume count on a client-side resend
PROPERTY_MSG_REGION: Final = "MSG_REGION"  #: region id
PROPERTY_TRACE_ON: Final = "TRACE_ON"  #: PROPERTY_TRACE_SWITCH
PROPERTY_UNIQ_KEY: Final = "UNIQ_KEY"  #: PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX (spec §6.2)
PROPERTY_MAX_RECONSUME_TIMES: Final = "MAX_RECONSUME_TIMES"  #: per-message max retries
PROPERTY_CONSUME_START_TIME: Final = "CONSUME_START_TIME"  #: PROPERTY_CONSUME_START_TIMESTAMP
#: PROPERTY_TRANSACTION_PREPARED_QUEUE_OFFSET: half-queue offset of a re-put half message.
PROPERTY_TRAN_PREPARED_QUEUE_OFFSET: Final = "TRAN_PREPARED_QUEUE_OFFSET"
PROPERTY_TRANSACTION_CHECK_TIMES: Final = "TRANSACTION_CHECK_TIMES"  #: check-backs done so far
#: PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS: first check-back no earlier than this.
PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS: Final = "CHECK_IMMUNITY_TIME_IN_SECONDS"
PROPERTY_INSTANCE_ID: Final = "INSTANCE_ID"  #: request/reply (4.6+)
PROPERTY_CORRELATION_ID: Final = "CORRELATION_ID"  #: request/reply (4.6+)
PROPERTY_REPLY_TO_CLIENT: Final = "REPLY_TO_CLIENT"  #: PROPERTY_MESSAGE_REPLY_TO_CLIENT
PROPERTY_TTL: Final = "TTL"  #: PROPERTY_MESSAGE_TTL
PROPERTY_ARRIVE_TIME: Final = "ARRIVE_TIME"  #: PROPERTY_REPLY_MESSAGE_ARRIVE_TIME
PROPERTY_PUSH_REPLY_TIME: Final = "PUSH_REPLY_TIME"  #: request/reply (4.6+)
PROPERTY_MSG_TYPE: Final = "MSG_TYPE"  #: PROPERTY_MESSAGE_TYPE: "reply" marks replies
PROPERTY_CLUSTER: Final = "CLUSTER"  #: broker cluster name, added on every stored send
PROPERTY_INNER_MULTI_DISPATCH: Final = "INNER_MULTI_DISPATCH"  #: LMQ (4.9.3+)
PROPERTY_INNER_MULTI_QUEUE_OFFSET: Final = "INNER_MULTI_QUEUE_OFFSET"  #: LMQ (4.9.3+)
PROPERTY_TRANSACTION_ID: Final = "__transactionId__"  #: C++ 1.2.4 / 5.x transaction id
PROPERTY_SHARDING_KEY: Final = "__SHARDINGKEY"  #: 5.x FIFO group key
PROPERTY_ONS_SHARDING_KEY: Final = "__SHARDING_KEY"  #: ali-ons sharding key (client-side only)
PROPERTY_ONS_START_DELIVER_TIME: Final = "__STARTDELIVERTIME"  #: ali-ons timed delivery (ms)

_FORBIDDEN: Final = (NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR)


def encode_properties(props: Mapping[str, str]) -> bytes:
    """Encode `props` as a properties string with a trailing 0x02 (empty mapping: ``b""``).

    Empty values are allowed (Java keeps them), although C++ consumers drop such items.

    Args:
        props: names to values, in the order they should appear.

    Returns:
        The UTF-8 bytes to store after PROPERTIESLENGTH.

    Raises:
        InvalidProperty: a name is empty, or a name or value contains 0x01/0x02 or a lone
            surrogate (no UTF-8 form).
        PropertiesTooLarge: the result is longer than 32767 bytes.
    """
    parts: list[str] = []
    for name, value in props.items():
        _check_item(name, value)
        parts.append(f"{name}{NAME_VALUE_SEPARATOR}{value}{PROPERTY_SEPARATOR}")
    text = "".join(parts)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise _unencodable(props) from err
    if len(data) > MAX_PROPERTIES_BYTES:
        raise PropertiesTooLarge(len(data), MAX_PROPERTIES_BYTES)
    return data


def _check_item(name: str, value: str) -> None:
    if not name:
        raise InvalidProperty(name, "empty name (decoders skip it)")
    for sep in _FORBIDDEN:
        if sep in name:
            raise InvalidProperty(name, f"name contains separator {sep!r}")
        if sep in value:
            raise InvalidProperty(name, f"value contains separator {sep!r}")


def _unencodable(props: Mapping[str, str]) -> InvalidProperty:
    for name, value in props.items():
        for part, what in ((name, "name"), (value, "value")):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError:
                return InvalidProperty(name, f"{what} contains a lone surrogate (no UTF-8 form)")
    raise AssertionError("called without an unencodable property")


def decode_properties(data: bytes | bytearray | memoryview) -> dict[str, str]:
    """Parse a properties string leniently, as Java does (spec §5).

    Invalid UTF-8 is replaced by U+FFFD like Java's `new String(bytes, UTF_8)`: the separators
    are ASCII and never part of a multi-byte sequence, so the item structure is unaffected.

    Args:
        data: the bytes after PROPERTIESLENGTH, with or without the trailing 0x02.

    Returns:
        Names to values; for a repeated name, the last value.
    """
    text = str(data, "utf-8", "replace")  # any buffer, without a copy
    props: dict[str, str] = {}
    for item in text.split(PROPERTY_SEPARATOR):
        name, sep, value = item.partition(NAME_VALUE_SEPARATOR)
        if sep and name:
            props[name] = value
    return props


def append_properties(raw: bytes | bytearray | memoryview, extra: Mapping[str, str]) -> bytes:
    """Return the properties string `raw` followed by `extra`, as a batch record stores it.

    The broker keeps each batch entry's own bytes and appends the batch-level properties
    (spec §8); a 0x02 is inserted when `raw` is non-empty and does not end with one. Names in
    `extra` win over the same names in `raw` when decoded (last occurrence wins).

    Raises:
        InvalidProperty: as for `encode_properties`, for `extra`.
        PropertiesTooLarge: the result is longer than 32767 bytes.
    """
    head = bytes(raw)
    if head and not head.endswith(PROPERTY_SEPARATOR.encode()):
        head += PROPERTY_SEPARATOR.encode()
    data = head + encode_properties(extra)
    if len(data) > MAX_PROPERTIES_BYTES:
        raise PropertiesTooLarge(len(data), MAX_PROPERTIES_BYTES)
    return data


def properties_bytes(properties: Mapping[str, str] | bytes | bytearray | memoryview) -> bytes:
    """Return the properties string to store: `properties` encoded, or as given if encoded.

    An already-encoded string (a batch entry's own bytes, spec §8) is stored as is: only its
    length is checked, because decoders are lenient about its content.

    Raises:
        InvalidProperty: as for `encode_properties`.
        PropertiesTooLarge: the string is longer than 32767 bytes.
    """
    if isinstance(properties, bytes | bytearray | memoryview):
        data = bytes(properties)
        if len(data) > MAX_PROPERTIES_BYTES:
            raise PropertiesTooLarge(len(data), MAX_PROPERTIES_BYTES)
        return data
    return encode_properties(properties)
