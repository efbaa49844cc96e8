"""The connecting side: `RemotingClient` keeps one connection per "host:port" and multiplexes
requests over it by opaque.

Theory of operation: `invoke(addr, request, timeout_s)` finds the open connection to `addr`, or
opens one (concurrent callers share one connection attempt, bounded by `connect_timeout_s`),
sends the request with a fresh opaque and awaits the response with that opaque; many requests
may be in flight on one connection and their responses may come in any order. When a
connection closes (peer gone, malformed frame, idle, our `close`) it leaves the table, and the
next call to that address connects again: there is no background reconnect loop, failures
surface to the caller as `ConnectFailed`, `RemotingTimeout` or `ConnectionClosed`.

Requests the peer sends to us on these connections (a broker's NOTIFY_CONSUMER_IDS_CHANGED,
CHECK_TRANSACTION_STATE, ...) go to the `on_request` handler, with the same rules as on the
server side (`connection`); without a handler they are answered REQUEST_CODE_NOT_SUPPORTED.

The client is bound to the event loop that first uses it. `close()` closes every connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
from types import TracebackType
from typing import Self

from shmq.protocol import OpaqueGenerator, RemotingCommand, SerializeType
from shmq.protocol.layout import DEFAULT_MAX_FRAME_BYTES

from .connection import DEFAULT_IDLE_TIMEOUT_S, Connection, RequestHandler, protocol_for
from .errors import ConnectFailed

__all__ = ["DEFAULT_CONNECT_TIMEOUT_S", "RemotingClient", "parse_address"]

log = logging.getLogger(__name__)

#: how long a connection attempt may take (Java connectTimeoutMillis = 3000)
DEFAULT_CONNECT_TIMEOUT_S = 3.0


def parse_address(addr: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:9876") into host and port.

    Raises:
        ConnectFailed: `addr` is not host:port with a port in 1..65535.
    """
    host, sep, port_text = addr.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConnectFailed(addr, "not an address of the form host:port")
    return host, int(port_text)


class RemotingClient:
    """Connections to many peers, one per address; see the module docstring."""

    __slots__ = (
        "_closed",
        "_connect_timeout_s",
        "_connecting",
        "_connections",
        "_idle_timeout_s",
        "_max_frame_bytes",
        "_on_request",
        "_opaques",
        "_serialize_type",
    )

    def __init__(
        self,
        *,
        on_request: RequestHandler | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        serialize_type: SerializeType = SerializeType.JSON,
    ) -> None:
        """Create a client with no connections yet.

        Args:
            on_request: handles requests peers send to us; None answers them
                REQUEST_CODE_NOT_SUPPORTED.
            max_frame_bytes: largest frame accepted from a peer.
            connect_timeout_s: longest connection attempt.
            idle_timeout_s: close a connection after this long without traffic; None: never.
            serialize_type: header encoding of our requests (JSON unless talking to a Java
                peer that asked for ROCKETMQ).
        """
        self._on_request = on_request
        self._max_frame_bytes = max_frame_bytes
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._serialize_type = serialize_type
        self._opaques = OpaqueGenerator()
        self._connections: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Task[Connection]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<RemotingClient connections={sorted(self._connections)}>"

    @property
    def connections(self) -> dict[str, Connection]:
        """Address -> open connection, as of now (a copy)."""
        return dict(self._connections)

    async def connection(self, addr: str) -> Connection:
        """The open connection to `addr`, connecting first if there is none.

        Raises:
            ConnectFailed: the address is malformed, the connection was refused, failed or
                took longer than `connect_timeout_s` (the next call tries again), or the
                client is closed.
        """
        conn = self._connections.get(addr)
        if conn is not None and not conn.is_closed:
            return conn
        if self._closed:
            raise ConnectFailed(addr, "the client is closed")
        task = self._connecting.get(addr)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(addr))
            self._connecting[addr] = task
            task.add_done_callback(lambda done: self._connect_done(addr, done))
        # shield: a caller that gives up does not cancel the attempt other callers wait for
        return await asyncio.shield(task)

    async def invoke(self, addr: str, request: RemotingCommand, timeout_s: float) -> RemotingCommand:
        """Send `request` to `addr` and return the response (any response code).

        Args:
            addr: "host:port".
            request: the request; its opaque, flag and serialize type are replaced.
            timeout_s: how long to wait for the response once sent (connecting is bounded by
                `connect_timeout_s` on top).

        Raises:
            ConnectFailed: no connection could be made; nothing was sent.
            RemotingTimeout: no response in time; the request may have been executed.
            ConnectionClosed: the connection closed before the response; the request may
                have been executed. The next call reconnects.
            LocalProtocolError: the request cannot be encoded; nothing was sent.
        """
        conn = await self.connection(addr)
        return await conn.request(request, timeout_s)

    async def invoke_oneway(self, addr: str, request: RemotingCommand) -> None:
        """Send `request` to `addr` as oneway (no response).

        Raises:
            ConnectFailed: no connection could be made; nothing was sent.
            ConnectionClosed: the connection is closed; nothing was sent.
            LocalProtocolError: the request cannot be encoded; nothing was sent.
        """
        conn = await self.connection(addr)
        conn.oneway(request)

    def close_connection(self, addr: str, reason: str = "closed by us") -> None:
        """Close the connection to `addr`, if any; the next call reconnects."""
        conn = self._connections.pop(addr, None)
        if conn is not None:
            conn.close(reason)

    async def close(self) -> None:
        """Close every connection and refuse new ones; return once they are closed."""
        self._closed = True
        attempts = list(self._connecting.values())
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        conns = list(self._connections.values())
        self._connections.clear()
        for conn in conns:
            conn.close("client closed")
        for conn in conns:
            await conn.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _connect(self, addr: str) -> Connection:
        host, port = parse_address(addr)
        loop = asyncio.get_running_loop()
        conn = Connection(self._on_request, max_frame_bytes=self._max_frame_bytes,
                          idle_timeout_s=self._idle_timeout_s, opaques=self._opaques,
                          serialize_type=self._serialize_type)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(lambda: protocol_for(conn), host, port)
        except TimeoutError as err:
            conn.close("connect timed out")
            raise ConnectFailed(addr, f"timed out after {self._connect_timeout_s:g} s") from err
        except OSError as err:
            conn.close("connect failed")
            raise ConnectFailed(addr, os.strerror(err.errno) if err.errno else str(err)) from err
        if self._closed:
            conn.close("client closed")
            raise ConnectFailed(addr, "the client is closed")
        self._connections[addr] = conn
        conn.add_close_callback(lambda closed: self._forget(addr, closed))
        log.debug("connected to %s: %r", addr, conn)
        return conn

    def _connect_done(self, addr: str, task: asyncio.Task[Connection]) -> None:
        if self._connecting.get(addr) is task:
            del self._connecting[addr]
        if not task.cancelled() and task.exception() is not None:
            log.debug("connecting to %s failed: %s", addr, task.exception())

    def _forget(self, addr: str, conn: Connection) -> None:
        if self._connections.get(addr) is conn:
            del self._connections[addr]
        log.debug("connection to %s closed: %s", addr, conn.close_reason)
