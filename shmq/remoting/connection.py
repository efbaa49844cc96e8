"""One remoting connection over asyncio: frames in, commands dispatched, responses matched.

Theory of operation
-------------------
A `Connection` owns one TCP transport and a `FrameDecoder` (spec/remoting-protocol.md §2, §6).
It is the same object on both sides: the server wraps every accepted socket in one, and
`RemotingClient` wraps every socket it opens. Bytes from the socket are fed to the decoder;
each complete command is then either

* a **response** (`flag & 1`): it completes the future of our request with the same `opaque`
  (matching is per connection; an unknown opaque — a response that came after its timeout — is
  dropped), or
* a **request**: it goes to the connection's `RequestHandler`, `handler(conn, command)`, which
  returns a `RemotingCommand` (written at once), an awaitable of one (awaited in a task of this
  connection, so a long-polling pull does not hold up the requests behind it), or None (nothing
  to send now: a oneway request, or a handler that will answer later with `send_response`).

What is written back:

* Responses go out in the request's header encoding (`make_response` copies it), and never for
  a oneway request (`flag & 2`), whatever the handler returned.
* A handler that raises gets an error response from `response_for_error`, the one place where
  exceptions become wire codes: a `ShmqError` answers its `response_code` (SYSTEM_ERROR when it
  has none) with its message as remark; anything else answers SYSTEM_ERROR and its traceback
  is logged (it is a bug).
* Requests we originate (`request`, `oneway`) get a fresh opaque from the connection's
  `OpaqueGenerator` and the header encoding the peer last used on this connection (JSON until
  it has sent something): the C++ and Node clients read JSON only.

Commands are queued as `encode_command(...)`'s buffers (header and body apart, so a body that
is a memoryview of the commit log is not copied by us) and everything queued during one turn
of the event loop goes out in one `transport.writelines` at its end: pipelined requests whose
answers complete together (a batch of completions from a writer, a burst of pulls) cost one
send system call, not one each (uvloop sends the buffers with one writev; Python 3.11's
selector transport joins them).

A frame the decoder rejects (malformed, or longer than `max_frame_bytes`) closes this
connection — there is no command to answer — with the reason logged; other connections are not
affected. A connection with no traffic in either direction for `idle_timeout_s` (Java's
`serverChannelMaxIdleTimeSeconds`, 120 s) is aborted, unless requests are in flight on it (a
held pull is not idleness). While the transport's write buffer is above its high-water mark,
reading from the peer is paused, so a client that does not read its responses cannot make us
buffer without bound.

Closing is idempotent. `close` lets responses already written drain, for at most
`CLOSE_GRACE_S`, then aborts; `abort` drops them at once. When the connection is lost, every
request still waiting for its answer fails with `ConnectionClosed`, handler tasks still
running are cancelled, and the close callbacks run once (the server forgets the connection,
the broker drops the client's registrations, the client table reconnects on next use).

Everything here runs on the event loop's thread; nothing is thread-safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias, cast

from shmq.errors import ShmqError
from shmq.protocol import (
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    FrameDecoder,
    LanguageCode,
    LocalProtocolError,
    OpaqueGenerator,
    RemoteProtocolError,
    RemotingCommand,
    ResponseCode,
    SerializeType,
    encode_command,
    make_response,
)

from .errors import ConnectionClosed, RemotingTimeout

__all__ = [
    "CLOSE_GRACE_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "CloseCallback",
    "Connection",
    "HandlerResult",
    "RequestHandler",
    "response_for_error",
]

log = logging.getLogger(__name__)

#: close a connection after this long without traffic (Java serverChannelMaxIdleTimeSeconds)
DEFAULT_IDLE_TIMEOUT_S: Final = 120.0
#: after `close`, wait this long for buffered responses to flush before dropping them
CLOSE_GRACE_S: Final = 5.0

_connection_ids = itertools.count(1)


class Connection:
    """One remoting connection; see the module docstring.

    Public attributes (read-only):
        id: a number unique in this process, for logs.
        remote_address: the peer as "ip:port".
        local_address: our end as "ip:port".
        peer_language, peer_version: from the peer's last request (None until one arrived).
    """

    __slots__ = (
        "_close_callbacks",
        "_close_reason",
        "_closed",
        "_decoder",
        "_handler",
        "_idle_timeout_s",
        "_idle_timer",
        "_last_activity",
        "_loop",
        "_opaques",
        "_out",
        "_pending",
        "_serialize_type",
        "_tasks",
        "_transport",
        "id",
        "local_address",
        "peer_language",
        "peer_version",
        "remote_address",
    )

    def __init__(
        self,
        handler: RequestHandler | None,
        *,
        max_frame_bytes: int,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        opaques: OpaqueGenerator | None = None,
        serialize_type: SerializeType = SerializeType.JSON,
    ) -> None:
        """Create a connection object; it becomes live when asyncio hands it a transport.

        Args:
            handler: called for every request the peer sends; None answers every request
                REQUEST_CODE_NOT_SUPPORTED (Java's behaviour without a processor).
            max_frame_bytes: largest frame accepted from the peer, length prefix included.
            idle_timeout_s: close after this long without traffic; None: never.
            opaques: request ids for our requests (shared by a server's connections).
            serialize_type: header encoding of our requests until the peer sends one.
        """
        self.id = next(_connection_ids)
        self._handler = handler
        self._decoder = FrameDecoder(max_frame_bytes)
        self._idle_timeout_s = idle_timeout_s
        self._opaques = opaques if opaques is not None else OpaqueGenerator()
        self._serialize_type = serialize_type
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[RemotingCommand]] = {}
        self._out: list[bytes | memoryview] = []  # written at the end of this loop turn
        self._tasks: set[asyncio.Future[None]] = set()
        self._close_callbacks: list[CloseCallback] = []
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._close_reason: str | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_activity = self._loop.time()
        self.remote_address = "?"
        self.local_address = "?"
        self.peer_language: LanguageCode | None = None
        self.peer_version: int | None = None

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        return f"<Connection #{self.id} {self.local_address} <-> {self.remote_address} {state}>"

    # -- public API ------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once `close` was called or the peer went away."""
        return self._close_reason is not None

    @property
    def close_reason(self) -> str | None:
        """Why the connection closed ("peer closed the connection", "idle for 120 s", ...)."""
        return self._close_reason

    @property
    def serialize_type(self) -> SerializeType:
        """Header encoding of the requests we send: the one the peer last used."""
        return self._serialize_type

    @property
    def in_flight(self) -> int:
        """Our requests awaiting a response plus the peer's requests still being handled."""
        return len(self._pending) + len(self._tasks)

    async def request(self, command: RemotingCommand, timeout_s: float) -> RemotingCommand:
        """Send request `command` and return the peer's response.

        The command is sent with a fresh opaque and the connection's `serialize_type` (its own
        opaque, flag and serialize type are ignored).

        Args:
            command: the request (code, ext_fields, body, remark are sent).
            timeout_s: how long to wait for the response.

        Returns:
            The response command (any response code; checking it is the caller's job).

        Raises:
            ConnectionClosed: the connection was closed before the request could be sent
                (nothing sent) or before the response came (the peer may have executed it).
            RemotingTimeout: no response within `timeout_s`; the request was sent and may have
                been executed; the connection stays open and a late response is dropped.
            LocalProtocolError: the command cannot be encoded; nothing was sent.
        """
        transport = self._live_transport()
        opaque = self._next_free_opaque()
        outgoing = dataclasses.replace(
            command, opaque=opaque, flag=0, serialize_type=self._serialize_type
        )
        buffers = encode_command(outgoing)
        future: asyncio.Future[RemotingCommand] = self._loop.create_future()
        self._pending[opaque] = future
        timer = self._loop.call_later(timeout_s, self._expire, opaque, command.code, timeout_s)
        try:
            self._write(transport, buffers)
            return await future
        finally:
            timer.cancel()
            if self._pending.get(opaque) is future:
                del self._pending[opaque]

    def oneway(self, command: RemotingCommand) -> None:
        """Send `command` as a oneway request (the peer does not answer).

        Like `request`, the command gets a fresh opaque and the connection's serialize type.

        Raises:
            ConnectionClosed: the connection is closed; nothing was sent.
            LocalProtocolError: the command cannot be encoded; nothing was sent.
        """
        transport = self._live_transport()
        outgoing = dataclasses.replace(
            command,
            opaque=self._opaques(),
            flag=FLAG_ONEWAY,
            serialize_type=self._serialize_type,
        )
        self._write(transport, encode_command(outgoing))

    def send_response(self, response: RemotingCommand) -> bool:
        """Write `response` (built with `make_response`) as it is.

        For handlers that returned None and answer later (held pulls). A response that cannot
        be encoded is replaced by SYSTEM_ERROR (logged).

        Returns:
            False when the connection is already closed (nothing sent: the peer is gone).
        """
        transport = self._transport
        if transport is None or self._close_reason is not None:
            log.debug("%r: dropping response opaque %d: closed", self, response.opaque)
            return False
        try:
            buffers = encode_command(response)
        except LocalProtocolError as err:
            log.error("%r: cannot encode response code %d (opaque %d): %s",
                      self, response.code, response.opaque, err)
            buffers = encode_command(_unencodable(response, err))
        self._write(transport, buffers)
        return True

    def close(self, reason: str = "closed by us") -> None:
        """Close the connection (idempotent); pending requests fail with `ConnectionClosed`.

        Nothing more is read. Responses already written are flushed first, for at most
        `CLOSE_GRACE_S` (a peer that does not read cannot keep the connection alive).
        """
        if self._close_reason is not None:
            return
        self._close_reason = reason
        if self._transport is not None:
            self._flush()  # what was answered before the close still goes out
            self._transport.close()  # connection_lost() follows and finishes the job
            self._loop.call_later(CLOSE_GRACE_S, self._abort_unflushed)
        else:
            self._finish_close()

    def abort(self, reason: str = "aborted by us") -> None:
        """Close at once, dropping anything not yet written (idempotent)."""
        if self._close_reason is None:
            self._close_reason = reason
        if self._transport is not None and not self._closed.done():
            self._transport.abort()
        else:
            self._finish_close()

    async def wait_closed(self) -> None:
        """Return once the connection is closed and its close callbacks have run."""
        await asyncio.shield(self._closed)

    def add_close_callback(self, callback: CloseCallback) -> None:
        """Call `callback(conn)` once when the connection closes (at once if it already has)."""
        if self._closed.done():
            callback(self)
        else:
            self._close_callbacks.append(callback)

    # -- transport events (called by _ProtocolAdapter) -----------------------------------------

    def _on_connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.remote_address = _format_address(transport.get_extra_info("peername"))
        self.local_address = _format_address(transport.get_extra_info("sockname"))
        self._last_activity = self._loop.time()
        self._arm_idle_timer(self._last_activity)
        if self._close_reason is not None:  # closed before the transport arrived
            transport.close()

    def _on_data(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        decoder = self._decoder
        try:
            decoder.feed(data)
            for command in decoder.commands():
                if command.flag & FLAG_RESPONSE:
                    self._on_response(command)
                else:
                    self._on_request(command)
                if self._close_reason is not None:  # a handler closed us
                    return
        except RemoteProtocolError as err:
            log.warning("%r: malformed frame, closing the connection: %s", self, err)
            self.close(f"malformed frame: {err}")

    def _on_connection_lost(self, exc: Exception | None) -> None:
        if self._close_reason is None:
            self._close_reason = (
                "peer closed the connection" if exc is None else f"connection lost: {exc}"
            )
        self._finish_close()

    def _pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and self._close_reason is None:
            self._transport.resume_reading()

    # -- requests and responses ------------------------------------------------------------------

    def _on_response(self, response: RemotingCommand) -> None:
        future = self._pending.pop(response.opaque, None)
        if future is None:
            log.debug("%r: response code %d with unknown opaque %d dropped (late?)",
                      self, response.code, response.opaque)
        elif not future.done():
            future.set_result(response)

    def _on_request(self, request: RemotingCommand) -> None:
        self._serialize_type = request.serialize_type
        self.peer_language = request.language
        self.peer_version = request.version
        handler = self._handler
        if handler is None:
            self._answer(request, make_response(
                request, ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                remark=f" request type {request.code} not supported"))
            return
        try:
            result = handler(self, request)
        except Exception as err:  # noqa: BLE001 -- answered and logged by response_for_error
            self._answer(request, response_for_error(request, err))
            return
        if result is None or isinstance(result, RemotingCommand):
            self._answer(request, result)
            return
        task = asyncio.ensure_future(self._answer_later(request, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_later(
        self, request: RemotingCommand, pending: Awaitable[RemotingCommand | None]
    ) -> None:
        try:
            response = await pending
        except Exception as err:  # noqa: BLE001 -- as above; CancelledError propagates
            response = response_for_error(request, err)
        self._answer(request, response)

    def _answer(self, request: RemotingCommand, response: RemotingCommand | None) -> None:
        if response is None:
            return
        if request.is_oneway:
            log.debug("%r: not answering oneway request code %d", self, request.code)
            return
        self.send_response(response)

    def _expire(self, opaque: int, code: int, timeout_s: float) -> None:
        future = self._pending.pop(opaque, None)
        if future is not None and not future.done():
            future.set_exception(RemotingTimeout(self.remote_address, code, opaque, timeout_s))

    def _next_free_opaque(self) -> int:
        opaque = self._opaques()
        while opaque in self._pending:  # only after 2^31 requests, with one still in flight
            opaque = self._opaques()
        return opaque

    # -- writing, idleness, closing ------------------------------------------------------------

    def _live_transport(self) -> asyncio.Transport:
        transport = self._transport
        if transport is None or self._close_reason is not None:
            raise ConnectionClosed(self.remote_address, self._close_reason or "not connected")
        return transport

    def _write(self, transport: asyncio.Transport, buffers: list[bytes | memoryview]) -> None:
        """Queue `buffers`; everything queued in one turn of the loop goes out in one write
        (`_flush`, scheduled by the first of them)."""
        out = self._out
        if not out:
            self._loop.call_soon(self._flush)
        out += buffers
        self._last_activity = self._loop.time()

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self._transport
        if out and transport is not None and not transport.is_closing():
            transport.writelines(out)

    def _arm_idle_timer(self, now: float) -> None:
        if self._idle_timeout_s is not None and self._close_reason is None:
            when = max(now, self._last_activity) + self._idle_timeout_s
            self._idle_timer = self._loop.call_at(when, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        idle_timeout_s = self._idle_timeout_s
        assert idle_timeout_s is not None
        now = self._loop.time()
        if self._pending or self._tasks:  # requests in flight: not idle
            self._arm_idle_timer(now)
        elif now - self._last_activity >= idle_timeout_s:
            log.info("%r: no traffic for %g s, closing", self, idle_timeout_s)
            self.abort(f"idle for {idle_timeout_s:g} s")
        else:
            self._arm_idle_timer(self._last_activity)

    def _abort_unflushed(self) -> None:
        if self._transport is not None and not self._closed.done():
            log.info("%r: peer did not read its last responses within %g s; dropping them",
                     self, CLOSE_GRACE_S)
            self._transport.abort()

    def _finish_close(self) -> None:
        if self._closed.done():
            return
        reason = self._close_reason or "closed"
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionClosed(self.remote_address, reason))
        for task in list(self._tasks):
            task.cancel()
        self._closed.set_result(None)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            _run_close_callback(callback, self)


class _ProtocolAdapter(asyncio.Protocol):
    """asyncio's side of a `Connection` (kept apart so Connection's API stays small)."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not a subclass of asyncio.Transport)
        self.connection._on_connection_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self.connection._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection._on_connection_lost(exc)

    def pause_writing(self) -> None:
        self.connection._pause_reading()

    def resume_writing(self) -> None:
        self.connection._resume_reading()


def protocol_for(connection: Connection) -> asyncio.Protocol:
    """The asyncio protocol object to hand to `create_server` / `create_connection`."""
    return _ProtocolAdapter(connection)


def response_for_error(request: RemotingCommand, err: BaseException) -> RemotingCommand:
    """The response to `request` when its handler raised `err` (style.md §4).

    A `ShmqError` answers its class's `response_code` (SYSTEM_ERROR when None) with the error's
    message as remark, logged in one line; any other exception is a bug: SYSTEM_ERROR with the
    exception's type and message as remark, traceback logged.
    """
    if isinstance(err, ShmqError):
        code = err.response_code if err.response_code is not None else ResponseCode.SYSTEM_ERROR
        log.info("request code %d (opaque %d) refused with %d: %s",
                 request.code, request.opaque, code, err)
        return make_response(request, code, remark=str(err))
    log.error("request code %d (opaque %d) failed", request.code, request.opaque, exc_info=err)
    return make_response(request, ResponseCode.SYSTEM_ERROR, remark=f"{type(err).__name__}: {err}")


def _unencodable(response: RemotingCommand, err: LocalProtocolError) -> RemotingCommand:
    return RemotingCommand(
        code=ResponseCode.SYSTEM_ERROR,
        opaque=response.opaque,
        flag=FLAG_RESPONSE,
        remark=f"response could not be encoded: {err}"[:1000],
        serialize_type=response.serialize_type,
    )


def _run_close_callback(callback: CloseCallback, connection: Connection) -> None:
    try:
        callback(connection)
    except Exception:  # one faulty callback must not keep the others from running
        log.exception("%r: close callback %r failed", connection, callback)


def _format_address(address: object) -> str:
    """"ip:port" from a socket address tuple (IPv6 in brackets); "?" when unknown."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "?"


#: what a request handler may return: a response, nothing, or an awaitable of either
HandlerResult: TypeAlias = RemotingCommand | None | Awaitable[RemotingCommand | None]
#: `handler(conn, request)`, called on the event loop for every request of a connection
RequestHandler: TypeAlias = Callable[[Connection, RemotingCommand], HandlerResult]
#: `callback(conn)`, called once when a connection closes
CloseCallback: TypeAlias = Callable[[Connection], None]
