"""shmq.remoting: the asyncio glue between sockets and `shmq.protocol` (architecture.md §4, §6).

The only package where a socket meets the protocol. Server side::

    dispatcher = Dispatcher(name="namesrv")

    @dispatcher.register(RequestCode.GET_ROUTEINFO_BY_TOPIC)
    def route(conn: Connection, request: RemotingCommand) -> RemotingCommand: ...

    server = await serve("0.0.0.0", 9876, dispatcher, max_frame_bytes=16 << 20)
    ...
    await server.aclose()

Client side::

    async with RemotingClient() as client:
        response = await client.invoke("127.0.0.1:9876", request, timeout_s=3.0)

Modules: `connection` (one connection: framing, dispatch, opaque matching, idle close),
`dispatch` (the code -> handler table), `server` (`serve`), `client` (`RemotingClient`),
`eventloop` (uvloop when available: `new_event_loop`, `run_loop`), `errors`.
"""

from __future__ import annotations

from .client import DEFAULT_CONNECT_TIMEOUT_S, RemotingClient, parse_address
from .connection import (
    CLOSE_GRACE_S,
    DEFAULT_IDLE_TIMEOUT_S,
    CloseCallback,
    Connection,
    HandlerResult,
    RequestHandler,
    response_for_error,
)
from .dispatch import Dispatcher
from .errors import ConnectFailed, ConnectionClosed, RemotingError, RemotingTimeout
from .eventloop import loop_kind, new_event_loop
from .eventloop import run as run_loop
from .server import Server, serve

__all__ = [
    "CLOSE_GRACE_S",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "CloseCallback",
    "ConnectFailed",
    "Connection",
    "ConnectionClosed",
    "Dispatcher",
    "HandlerResult",
    "RemotingClient",
    "RemotingError",
    "RemotingTimeout",
    "RequestHandler",
    "Server",
    "loop_kind",
    "new_event_loop",
    "parse_address",
    "response_for_error",
    "run_loop",
    "serve",
]
