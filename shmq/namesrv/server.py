"""The name server process's network side: a remoting server over the route registry.

Theory of operation: `NameServer` owns a `RouteRegistry`, the `Dispatcher` of its handlers and,
once started, a `shmq.remoting` server and one background task that drops silent brokers:
every `scan_interval_s` (10 s; the first scan `first_scan_delay_s` = 5 s after start, as in
Java) it runs `scan_not_active_broker` and closes the connections of the brokers it dropped.
A closed connection drops the brokers registered on it at once (`on_channel_destroy`). Every
request is counted by code for `statistics()`.

Name servers are independent of each other: each broker registers with every one, clients
pick any. Nothing is persisted; a restarted name server is filled again by the brokers'
next registrations (every 30 s).

All of it runs on one event loop; the registry needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from shmq.protocol import RemotingCommand
from shmq.protocol.layout import DEFAULT_MAX_FRAME_BYTES
from shmq.remoting import DEFAULT_IDLE_TIMEOUT_S, Connection, HandlerResult, Server, serve

from .handlers import NamesrvContext, build_dispatcher
from .registry import DEFAULT_BROKER_EXPIRY_S, ExpiredBroker, RouteRegistry

__all__ = [
    "DEFAULT_NAMESRV_PORT",
    "FIRST_SCAN_DELAY_S",
    "SCAN_INTERVAL_S",
    "NameServer",
    "NamesrvStatistics",
]

log = logging.getLogger(__name__)

#: RocketMQ's name server port
DEFAULT_NAMESRV_PORT: Final = 9876
#: how often silent brokers are looked for (Java: every 10 s)
SCAN_INTERVAL_S: Final = 10.0
#: delay of the first scan after start (Java: 5 s)
FIRST_SCAN_DELAY_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class NamesrvStatistics:
    """Counters of a running name server."""

    requests_by_code: dict[int, int]  #: requests received, by request code
    connections: int  #: open now
    clusters: int
    broker_names: int
    broker_addrs: int
    topics: int


class NameServer:
    """A name server on one address; see the module docstring."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_NAMESRV_PORT,
        *,
        broker_expiry_s: float = DEFAULT_BROKER_EXPIRY_S,
        scan_interval_s: float = SCAN_INTERVAL_S,
        first_scan_delay_s: float = FIRST_SCAN_DELAY_S,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        order_message_enable: bool = False,
        clock: Callable[[], float] = time.monotonic,
        on_request: Callable[[Connection, RemotingCommand], None] | None = None,
    ) -> None:
        """Create a stopped name server (`start` binds it).

        Args:
            host: address to bind ("0.0.0.0": every IPv4 interface).
            port: port to bind; 0 picks a free one (see `port` after `start`).
            broker_expiry_s: drop brokers not registered for this long.
            scan_interval_s: how often to look for such brokers.
            first_scan_delay_s: when to look first.
            max_frame_bytes: largest request frame accepted (length prefix included).
            idle_timeout_s: close connections silent for this long; None: never.
            order_message_enable: put `orderTopicConf` (KV ORDER_TOPIC_CONFIG) in routes.
            clock: monotonic seconds, for broker liveness (tests inject their own).
            on_request: sees every request before it is handled (tracing, tests); it must
                not block or raise.
        """
        self.host = host
        self.port = port
        self.registry = RouteRegistry(broker_expiry_s=broker_expiry_s,
                                      order_message_enable=order_message_enable)
        self._clock = clock
        self._dispatcher = build_dispatcher(NamesrvContext(self.registry, clock))
        self._scan_interval_s = scan_interval_s
        self._first_scan_delay_s = first_scan_delay_s
        self._max_frame_bytes = max_frame_bytes
        self._idle_timeout_s = idle_timeout_s
        self._requests: Counter[int] = Counter()
        self._on_request = on_request
        self._server: Server | None = None
        self._scanner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<NameServer {self.address} {'running' if self._server else 'stopped'}>"

    @property
    def address(self) -> str:
        """"host:port" (the bound port once started)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving, and start the expiry scans.

        Raises:
            OSError: the address cannot be bound; nothing was started.
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError(f"{self!r} is already started")
        self._server = await serve(
            self.host, self.port, self._dispatch, max_frame_bytes=self._max_frame_bytes,
            on_close=self._on_connection_closed, idle_timeout_s=self._idle_timeout_s)
        self.port = self._server.port
        self._scanner = asyncio.get_running_loop().create_task(self._scan_forever())
        log.info("name server listening on %s (brokers expire after %g s)", self.address,
                 self.registry.broker_expiry_s)

    async def aclose(self) -> None:
        """Stop the scans, stop listening, close every connection (idempotent)."""
        if self._scanner is not None:
            self._scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scanner
            self._scanner = None
        if self._server is not None:
            await self._server.aclose()
            self._server = None
            log.info("name server on %s stopped", self.address)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def scan_now(self) -> list[ExpiredBroker]:
        """Drop the brokers silent longer than the expiry time and close their connections.

        Returns:
            The dropped broker addresses.
        """
        expired = self.registry.scan_not_active_broker(self._clock())
        for gone in expired:
            log.warning("broker %s expired: no registration for %.1f s (limit %g s)",
                        gone.broker_addr, gone.silent_s, self.registry.broker_expiry_s)
            if isinstance(gone.channel, Connection):
                gone.channel.close(f"broker {gone.broker_addr} expired")
        return expired

    def statistics(self) -> NamesrvStatistics:
        """Request counters and table sizes, as of now."""
        tables = self.registry.statistics()
        return NamesrvStatistics(
            requests_by_code=dict(self._requests),
            connections=len(self._server.connections) if self._server is not None else 0,
            clusters=tables.clusters,
            broker_names=tables.broker_names,
            broker_addrs=tables.broker_addrs,
            topics=tables.topics,
        )

    def _dispatch(self, conn: Connection, request: RemotingCommand) -> HandlerResult:
        self._requests[request.code] += 1
        if self._on_request is not None:
            self._on_request(conn, request)
        return self._dispatcher(conn, request)

    def _on_connection_closed(self, conn: Connection) -> None:
        for addr in self.registry.on_channel_destroy(conn):
            log.warning("broker %s dropped: its connection closed (%s)", addr,
                        conn.close_reason)

    async def _scan_forever(self) -> None:
        await asyncio.sleep(self._first_scan_delay_s)
        while True:
            try:
                self.scan_now()
            except Exception:  # a bug; keep scanning rather than keep dead brokers forever
                log.exception("name server %s: expiry scan failed", self.address)
            await asyncio.sleep(self._scan_interval_s)
