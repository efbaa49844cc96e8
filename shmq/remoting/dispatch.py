"""The dispatch table: request code -> handler, and REQUEST_CODE_NOT_SUPPORTED for the rest.

Theory of operation: a `Dispatcher` is itself a `RequestHandler`, so it is what a server (or a
client that accepts requests from its peer) is given. Handlers are registered once at start-up,
by code, with `add` or the `register` decorator; a code registered twice is a programming
error. An unknown code is answered REQUEST_CODE_NOT_SUPPORTED (3) with Java's remark
`" request type <code> not supported"` and logged once per code; a oneway request with an
unknown code gets no answer (clients would ignore it anyway, spec/remoting-protocol.md §6).

Handlers are `handler(conn, request)` returning a response, None, or an awaitable of either;
what happens to each, and to exceptions, is described in `connection`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from shmq.protocol import RemotingCommand, ResponseCode, make_response

from .connection import Connection, HandlerResult, RequestHandler

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    """A table from request code to handler; call it as a `RequestHandler`."""

    __slots__ = ("_handlers", "_reported", "name")

    def __init__(self, handlers: Mapping[int, RequestHandler] | None = None, *,
                 name: str = "remoting") -> None:
        """Create a table, optionally filled from `handlers`.

        Args:
            handlers: code -> handler, registered as by `add`.
            name: who answers (for log lines about unsupported codes): "namesrv", "broker".
        """
        self._handlers: dict[int, RequestHandler] = {}
        self._reported: set[int] = set()
        self.name = name
        for code, handler in (handlers or {}).items():
            self.add(code, handler)

    def add(self, code: int, handler: RequestHandler) -> None:
        """Route requests with `code` to `handler`.

        Raises:
            ValueError: `code` already has a handler (registration is a start-up mistake).
        """
        if code in self._handlers:
            raise ValueError(
                f"request code {code} already has a handler: {self._handlers[code]!r}"
            )
        self._handlers[int(code)] = handler

    def register(self, code: int) -> Callable[[RequestHandler], RequestHandler]:
        """Decorator form of `add`: `@dispatcher.register(RequestCode.HEART_BEAT)`."""

        def decorate(handler: RequestHandler) -> RequestHandler:
            self.add(code, handler)
            return handler

        return decorate

    def handler_for(self, code: int) -> RequestHandler | None:
        """The handler of `code`, or None."""
        return self._handlers.get(code)

    def __contains__(self, code: object) -> bool:
        return code in self._handlers

    def __iter__(self) -> Iterator[int]:
        """The registered codes, in registration order."""
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def __call__(self, conn: Connection, request: RemotingCommand) -> HandlerResult:
        """Run the handler of `request.code`, or answer REQUEST_CODE_NOT_SUPPORTED."""
        handler = self._handlers.get(request.code)
        if handler is not None:
            return handler(conn, request)
        if request.code not in self._reported:
            self._reported.add(request.code)
            log.warning("%s: request code %d from %s (%s) is not supported; answering %d "
                        "(logged once per code)", self.name, request.code, conn.remote_address,
                        request.language.name, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
        if request.is_oneway:
            return None
        return make_response(request, ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                             remark=f" request type {request.code} not supported")
