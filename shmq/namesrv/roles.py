"""Entry points of a name server process: the supervisor's `namesrv` role and `shmq namesrv`.

Theory of operation: both run a `NameServer` on a fresh event loop until asked to stop.

* `namesrv_main(ctx)` is the role `shmq start` forks (shmq/runtime/roles.py describes the
  contract). It binds `namesrv.port`, reports ready once listening, heartbeats, and returns
  when `ctx.should_stop()` becomes true (the supervisor's signal handler only sets that flag,
  so the loop polls it every `STOP_POLL_S`). The bind address follows what the broker
  advertises: a broker advertising a loopback address is reachable from this host only, so the
  name server listens on 127.0.0.1 too; otherwise it listens on every interface (0.0.0.0), as
  Java's does, so that remote clients and brokers reach it.
* `run_standalone(...)` is `shmq namesrv`: one name server in the foreground, stopped by
  SIGTERM or SIGINT (handled on the loop: the handler only sets an event).

This package may not import `shmq.runtime`, so the role describes the few settings it reads
with `typing.Protocol`s that the runtime's `Config` satisfies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from collections.abc import Callable
from typing import Final, Protocol

from shmq.protocol.layout import DEFAULT_MAX_FRAME_BYTES
from shmq.remoting import run_loop

from .registry import DEFAULT_BROKER_EXPIRY_S
from .server import NameServer

__all__ = [
    "STOP_POLL_S",
    "NamesrvRoleContext",
    "bind_host_for",
    "namesrv_main",
    "run_standalone",
]

log = logging.getLogger(__name__)

#: how often the role checks `should_stop()` (and at most how long a stop waits for it)
STOP_POLL_S: Final = 0.2
#: how often the role calls `heartbeat()` (the supervisor wants at least 1/s)
_HEARTBEAT_S: Final = 0.5


class _NamesrvSettings(Protocol):
    @property
    def port(self) -> int: ...

    @property
    def broker_expiry_s(self) -> float: ...


class _BrokerSettings(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def max_frame_bytes(self) -> int: ...


class _Settings(Protocol):
    @property
    def namesrv(self) -> _NamesrvSettings: ...

    @property
    def broker(self) -> _BrokerSettings: ...


class NamesrvRoleContext(Protocol):
    """The part of the supervisor's `RoleContext` the name server role uses."""

    @property
    def config(self) -> _Settings: ...

    def should_stop(self) -> bool: ...

    def heartbeat(self) -> None: ...

    def set_ready(self) -> None: ...


def bind_host_for(advertised_host: str) -> str:
    """Where the name server of a broker advertising `advertised_host` listens: 127.0.0.1 for
    a loopback address (or "localhost"), else 0.0.0.0."""
    if advertised_host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(advertised_host).is_loopback
    except ValueError:  # a host name: it is meant to be reached from elsewhere
        loopback = False
    return "127.0.0.1" if loopback else "0.0.0.0"


def namesrv_main(ctx: NamesrvRoleContext) -> None:
    """The `namesrv` role: serve until `ctx.should_stop()`.

    Raises:
        OSError: the port cannot be bound (the supervisor logs it and restarts the role).
    """
    run_loop(_serve_role(ctx))


async def _serve_role(ctx: NamesrvRoleContext) -> None:
    config = ctx.config
    server = NameServer(
        bind_host_for(config.broker.host), config.namesrv.port,
        broker_expiry_s=config.namesrv.broker_expiry_s,
        max_frame_bytes=config.broker.max_frame_bytes)
    async with server:
        ctx.set_ready()
        loop = asyncio.get_running_loop()
        next_heartbeat = 0.0
        while not ctx.should_stop():
            if loop.time() >= next_heartbeat:
                ctx.heartbeat()
                next_heartbeat = loop.time() + _HEARTBEAT_S
            await asyncio.sleep(STOP_POLL_S)
        log.info("name server on %s stopping", server.address)


def run_standalone(
    host: str,
    port: int,
    *,
    broker_expiry_s: float = DEFAULT_BROKER_EXPIRY_S,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    on_listening: Callable[[NameServer], None] | None = None,
) -> None:
    """`shmq namesrv`: serve on `host:port` until SIGTERM or SIGINT.

    Args:
        host: address to bind.
        port: port to bind (0: a free one; `on_listening` sees which).
        broker_expiry_s: drop brokers not registered for this long.
        max_frame_bytes: largest request frame accepted.
        on_listening: called once the server listens (to print its address).

    Raises:
        OSError: the address cannot be bound.
    """
    run_loop(_serve_until_signal(
        NameServer(host, port, broker_expiry_s=broker_expiry_s, max_frame_bytes=max_frame_bytes),
        on_listening))


async def _serve_until_signal(server: NameServer,
                              on_listening: Callable[[NameServer], None] | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with server:
            if on_listening is not None:
                on_listening(server)
            await stop.wait()
            log.info("name server on %s stopping (signal)", server.address)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
