"""Errors of the message codec: `MessageError` and its causes (style.md §4).

Encoders raise before producing or writing anything, so a caller never holds half a record.
Decoders return a value or raise a `MessageError`, whatever bytes they are given; any other
exception from them is a bug.
"""

from __future__ import annotations

from typing import ClassVar, Final

from shmq.errors import ShmqError

__all__ = [
    "MESSAGE_ILLEGAL",
    "BodyTooLarge",
    "CorruptRecord",
    "InvalidAddress",
    "InvalidMessageId",
    "InvalidProperty",
    "InvalidRecordField",
    "InvalidTopic",
    "MalformedBatch",
    "MessageError",
    "PropertiesTooLarge",
    "TopicTooLong",
    "TruncatedRecord",
]

#: RocketMQ `ResponseCode.MESSAGE_ILLEGAL`. `message` may not import `protocol`, so the number is
#: repeated here; protocol's tests should check that it equals their `ResponseCode` member.
MESSAGE_ILLEGAL: Final = 13


class MessageError(ShmqError):
    """A message, record, property string or message id that cannot be encoded or decoded."""


class InvalidProperty(MessageError):
    """A property name or value that the properties string cannot carry."""

    response_code: ClassVar[int | None] = MESSAGE_ILLEGAL

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"property {name!r} cannot be encoded: {reason}")
        self.name, self.reason = name, reason


class PropertiesTooLarge(MessageError):
    """Encoded properties longer than PROPERTIESLENGTH (a signed short) can state."""

    response_code: ClassVar[int | None] = MESSAGE_ILLEGAL

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"properties of {size} bytes exceed the {limit}-byte limit")
        self.size, self.limit = size, limit


class InvalidTopic(MessageError):
    """A topic that has no UTF-8 encoding (it contains a lone surrogate)."""

    response_code: ClassVar[int | None] = MESSAGE_ILLEGAL

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"topic {topic!r} cannot be encoded: {reason}")
        self.topic, self.reason = topic, reason


class TopicTooLong(MessageError):
    """A topic longer than a v1 record's TOPICLENGTH (a signed byte) can state."""

    response_code: ClassVar[int | None] = MESSAGE_ILLEGAL

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"topic of {size} UTF-8 bytes exceeds the {limit}-byte limit")
        self.size, self.limit = size, limit


class BodyTooLarge(MessageError):
    """A body over the configured maximum, or too large for a record's i32 sizes."""

    response_code: ClassVar[int | None] = MESSAGE_ILLEGAL

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message body of {size} bytes exceeds the {limit}-byte limit")
        self.size, self.limit = size, limit


class InvalidRecordField(MessageError):
    """A numeric record field outside the range of its fixed-width slot, or a bad magic."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"record field {field} = {value!r}: {reason}")
        self.field, self.value, self.reason = field, value, reason


class InvalidAddress(MessageError):
    """A host that is not an IPv4 or IPv6 literal, or a port outside 0..65535."""

    def __init__(self, host: object, port: object, reason: str) -> None:
        super().__init__(f"address {host!r} port {port!r}: {reason}")
        self.host, self.port, self.reason = host, port, reason


class InvalidMessageId(MessageError):
    """A string that is not an offset message id (spec §6.1)."""

    def __init__(self, msg_id: object, reason: str) -> None:
        super().__init__(f"not an offset message id {msg_id!r}: {reason}")
        self.msg_id, self.reason = msg_id, reason


class CorruptRecord(MessageError):
    """Bytes at `offset` (within the buffer given to the decoder) are not a valid record.

    `field` names what failed; `expected` and `actual` are the values compared.
    """

    def __init__(self, offset: int, field: str, expected: object, actual: object) -> None:
        super().__init__(
            f"corrupt record at buffer offset {offset}: {field}: expected {expected}, got {actual}"
        )
        self.offset, self.field, self.expected, self.actual = offset, field, expected, actual


class TruncatedRecord(CorruptRecord):
    """The buffer ends inside the record at `offset`: `expected` bytes needed, `actual` present.

    For a complete buffer (a pull body, a closed segment) this is corruption; for a buffer still
    being filled it means "need more".
    """


class MalformedBatch(MessageError):
    """A SEND_BATCH_MESSAGE body that does not split into whole entries (spec §8)."""

    response_code: ClassVar[int | None] = MESSAGE_ILLEGAL

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"malformed batch body at offset {offset}: {reason}")
        self.offset, self.reason = offset, reason
