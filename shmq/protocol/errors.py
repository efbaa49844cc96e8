"""Errors of the protocol package (style.md §4).

Theory of operation: everything `shmq.protocol` raises on purpose is a `ProtocolError`, split by
who is at fault. `RemoteProtocolError`: the peer sent bytes we cannot accept. Raised by
`FrameDecoder` it means the byte stream can no longer be trusted and the connection must be
closed (there is no command to answer); raised while decoding a header struct or a body of an
already framed command it can be answered with `response_code`. `LocalProtocolError`: our own
caller asked us to encode something the wire cannot carry; nothing was sent.

Each error keeps its evidence (sizes, limits, field names, values) as attributes and in its
message.
"""

from __future__ import annotations

from typing import ClassVar

from shmq.errors import ProtocolError

from .codes import ResponseCode

__all__ = [
    "BodyFormatError",
    "FrameTooLarge",
    "HeaderFieldError",
    "LocalProtocolError",
    "RemoteProtocolError",
]


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not valid RocketMQ remoting protocol."""

    response_code: ClassVar[int | None] = ResponseCode.SYSTEM_ERROR


class LocalProtocolError(ProtocolError):
    """Our caller asked to encode something the protocol cannot carry; nothing was encoded."""


class FrameTooLarge(RemoteProtocolError):
    """A frame's length prefix announces more bytes than the configured maximum.

    Raised as soon as the 4-byte prefix is seen, before the frame is buffered.
    """

    def __init__(self, frame_bytes: int, limit: int) -> None:
        super().__init__(
            f"frame of {frame_bytes} bytes (length prefix included) exceeds the "
            f"{limit}-byte limit; closing the connection"
        )
        self.frame_bytes, self.limit = frame_bytes, limit


class HeaderFieldError(RemoteProtocolError):
    """A request or response header (`extFields`) lacks a required field or has a bad value.

    `value` is None when the field is missing. Java answers the same situation with
    SYSTEM_ERROR ("the custom field <x> is null").
    """

    def __init__(self, header: str, field: str, value: str | None, expected: str) -> None:
        if value is None:
            message = f"{header}: required field {field!r} is missing"
        else:
            message = f"{header}: field {field!r} = {value!r} is not {expected}"
        super().__init__(message)
        self.header, self.field, self.value, self.expected = header, field, value, expected


class BodyFormatError(RemoteProtocolError):
    """A command body (JSON or compressed) does not have the expected shape.

    `where` names the body type and the path inside it (`HeartbeatData.consumerDataSet[0]`).
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason
