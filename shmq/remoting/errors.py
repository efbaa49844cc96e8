"""Errors of the remoting package (style.md §4): connections that could not be made, requests
whose answer did not come in time, connections that went away with requests in flight.

Theory of operation: each error says whether anything may have happened on the peer. A
`ConnectFailed` request was never sent. A `RemotingTimeout` or `ConnectionClosed` request may
have been executed by the peer (it was written, the answer was lost or late): callers must only
retry idempotent requests blindly. All three are `retriable`: the next call may succeed (the
client reconnects on next use). None carries a wire code: a handler that lets one escape
answers SYSTEM_ERROR with the error's message as remark.
"""

from __future__ import annotations

from typing import ClassVar

from shmq.errors import ShmqError

__all__ = ["ConnectFailed", "ConnectionClosed", "RemotingError", "RemotingTimeout"]


class RemotingError(ShmqError):
    """Base of the errors of `shmq.remoting`."""

    #: whether trying again (on a new connection) may help
    retriable: ClassVar[bool] = True


class ConnectFailed(RemotingError):
    """No connection to `addr` could be made (refused, unreachable, timed out, bad address).

    Nothing was sent.
    """

    def __init__(self, addr: str, reason: str) -> None:
        super().__init__(f"cannot connect to {addr}: {reason}")
        self.addr, self.reason = addr, reason


class RemotingTimeout(RemotingError):
    """No response to request `code` (opaque `opaque`) arrived within `timeout_s`.

    The request was sent and may have been executed; a late response is dropped. The
    connection stays open.
    """

    def __init__(self, addr: str, code: int, opaque: int, timeout_s: float) -> None:
        super().__init__(
            f"no response from {addr} to request code {code} (opaque {opaque}) "
            f"within {timeout_s:g} s"
        )
        self.addr, self.code, self.opaque, self.timeout_s = addr, code, opaque, timeout_s


class ConnectionClosed(RemotingError):
    """The connection to `addr` is closed (`reason` says by whom and why).

    Raised for a request written before the close (it may have been executed) and for a
    request attempted on a connection already closed (it was not sent).
    """

    def __init__(self, addr: str, reason: str) -> None:
        super().__init__(f"connection to {addr} closed: {reason}")
        self.addr, self.reason = addr, reason
