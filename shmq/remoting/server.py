"""The listening side: `serve(host, port, dispatch)` accepts connections and wraps each in a
`Connection` that feeds its requests to `dispatch`.

Theory of operation: `serve` binds (port 0 picks a free port; `Server.port` reports it) and
returns a `Server` that keeps the set of live connections. Every accepted socket gets its own
`Connection` (own decoder, own pending requests), so a peer that sends garbage or too large a
frame loses only its own connection. The connections share one `OpaqueGenerator` for the
requests the server sends to its clients (`conn.request`, `conn.oneway`).

`Server.close()` stops accepting and closes every connection (responses already written are
flushed; requests in flight fail with `ConnectionClosed` on our side); `wait_closed()` returns
once every connection's close callbacks have run. `async with await serve(...)` does both.

The server never blocks the loop: handlers that need to wait return awaitables.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from types import TracebackType
from typing import Self

from shmq.protocol import OpaqueGenerator
from shmq.protocol.layout import DEFAULT_MAX_FRAME_BYTES

from .connection import (
    DEFAULT_IDLE_TIMEOUT_S,
    CloseCallback,
    Connection,
    RequestHandler,
    protocol_for,
)

__all__ = ["Server", "serve"]

log = logging.getLogger(__name__)


class Server:
    """A listening remoting server and its live connections (made by `serve`)."""

    __slots__ = ("_connections", "_listener", "host", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        #: the bound port (the system's choice when 0 was asked for)
        self.port = port
        self._listener: asyncio.base_events.Server | None = None
        self._connections: set[Connection] = set()

    def __repr__(self) -> str:
        return f"<Server {self.address} connections={len(self._connections)}>"

    @property
    def address(self) -> str:
        """"host:port" as bound."""
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> frozenset[Connection]:
        """The connections open now."""
        return frozenset(self._connections)

    @property
    def is_serving(self) -> bool:
        """True until `close` is called."""
        return self._listener is not None and self._listener.is_serving()

    def close(self) -> None:
        """Stop accepting and close every connection (idempotent)."""
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._connections):
            conn.close("server shutting down")

    async def wait_closed(self) -> None:
        """Wait until every connection closed by `close` is gone."""
        while self._connections:
            await next(iter(self._connections)).wait_closed()

    async def aclose(self) -> None:
        """`close()`, then `wait_closed()`."""
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _accepted(self, conn: Connection) -> None:
        self._connections.add(conn)
        conn.add_close_callback(self._connections.discard)


async def serve(
    host: str,
    port: int,
    dispatch: RequestHandler,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    on_close: CloseCallback | None = None,
    idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
    reuse_port: bool = False,
    backlog: int = 1024,
) -> Server:
    """Listen on `host:port` and serve the remoting protocol with `dispatch`.

    Args:
        host: address to bind ("0.0.0.0" all IPv4 interfaces, "127.0.0.1" loopback only).
        port: port to bind; 0 lets the system pick (read it from `Server.port`).
        dispatch: `dispatch(conn, request)`, usually a `Dispatcher`.
        max_frame_bytes: largest frame accepted, length prefix included; a peer announcing a
            larger one is disconnected.
        on_close: `on_close(conn)` runs once for every connection when it closes.
        idle_timeout_s: close connections silent for this long; None: never.
        reuse_port: set SO_REUSEPORT (several acceptor processes on one port).
        backlog: listen backlog.

    Returns:
        The running server.

    Raises:
        OSError: the address cannot be bound (in use, not local, permission); nothing listens.
    """
    loop = asyncio.get_running_loop()
    opaques = OpaqueGenerator()
    server = Server(host, port)

    def accept() -> asyncio.Protocol:
        conn = Connection(dispatch, max_frame_bytes=max_frame_bytes,
                          idle_timeout_s=idle_timeout_s, opaques=opaques)
        server._accepted(conn)
        if on_close is not None:
            conn.add_close_callback(on_close)
        return protocol_for(conn)

    listener = await loop.create_server(
        accept, host, port, family=socket.AF_UNSPEC, reuse_address=True,
        reuse_port=reuse_port or None, backlog=backlog)
    server._listener = listener
    server.port = listener.sockets[0].getsockname()[1]
    log.debug("remoting server listening on %s", server.address)
    return server
