"""shmq.namesrv: the name server — route registry, its request handlers and its server
(architecture.md §1, spec/behaviours.md §1).

`registry` is pure (no I/O, no clock); `handlers` turn requests into registry calls and
responses; `server` runs them on a `shmq.remoting` server with the periodic expiry scan;
`roles` holds the process entry points (`namesrv_main` for the supervisor, `run_standalone`
for `shmq namesrv`).

    async with NameServer("127.0.0.1", 0) as ns:      # port 0: ns.port is the bound port
        ...
"""

from __future__ import annotations

from .handlers import HANDLERS, NamesrvContext, build_dispatcher, topic_not_exist_remark
from .registry import (
    DEFAULT_BROKER_EXPIRY_S,
    MASTER_ID,
    NAMESPACE_ORDER_TOPIC_CONFIG,
    PERM_INHERIT,
    PERM_PRIORITY,
    PERM_READ,
    PERM_WRITE,
    ExpiredBroker,
    RegisterBrokerResult,
    RegistryStatistics,
    RouteRegistry,
)
from .roles import bind_host_for, namesrv_main, run_standalone
from .server import DEFAULT_NAMESRV_PORT, NameServer, NamesrvStatistics

__all__ = [
    "DEFAULT_BROKER_EXPIRY_S",
    "DEFAULT_NAMESRV_PORT",
    "HANDLERS",
    "MASTER_ID",
    "NAMESPACE_ORDER_TOPIC_CONFIG",
    "PERM_INHERIT",
    "PERM_PRIORITY",
    "PERM_READ",
    "PERM_WRITE",
    "ExpiredBroker",
    "NameServer",
    "NamesrvContext",
    "NamesrvStatistics",
    "RegisterBrokerResult",
    "RegistryStatistics",
    "RouteRegistry",
    "bind_host_for",
    "build_dispatcher",
    "namesrv_main",
    "run_standalone",
    "topic_not_exist_remark",
]
