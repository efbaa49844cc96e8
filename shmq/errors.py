"""Error bases shared by every layer (style.md §4).

Each package has one family below `ShmqError`. Errors that can travel to a RocketMQ client carry
the wire code as the class attribute `response_code` (None when there is no fitting code).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ClientError",
    "ConfigError",
    "IpcError",
    "ProtocolError",
    "RequestRejected",
    "ShmqError",
    "StoreError",
]


class ShmqError(Exception):
    """Base of every error shmq raises on purpose."""

    #: RocketMQ ResponseCode to answer with when this error ends a request (None: SYSTEM_ERROR).
    response_code: ClassVar[int | None] = None


class ProtocolError(ShmqError):
    """Bytes that do not form a valid RocketMQ remoting frame or header."""


class StoreError(ShmqError):
    """The storage engine could not do what was asked; the docstring of the raiser says what state
    the store is left in."""


class IpcError(ShmqError):
    """Shared-memory segments, rings and wake-ups."""


class RequestRejected(ShmqError):
    """A broker or name-server request that is refused with a RocketMQ response code."""


class ClientError(ShmqError):
    """Raised by shmq's client; `retriable` says whether trying again may help."""

    retriable: ClassVar[bool] = False


class ConfigError(ShmqError):
    """A setting has a bad value; the message names the key, the value, its source and the rule."""
