"""shmq.runtime: the top of the stack (see docs/architecture.md §1, §6).

- `config`: the settings table, `load_config`, the frozen `Config`.
- `roles`: the contract between the supervisor and its children (`RoleContext`, `RoleSpec`).
- `supervisor`: `run_service` / `start_service` behind `shmq start`; `default_roles`.
- `proctable`: the shared process table and info document the supervisor publishes.
- `status`: `collect_status` / `format_status` behind `shmq status`.
- `sdnotify`: systemd readiness and watchdog notifications.
- `logging_setup`: one log line per event, stamped with the process's role and pid.

The public names below are imported on first use, so that importing `shmq.runtime.config`
(every command line does) does not load the supervisor, the store and psutil as well.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AlreadyRunning",
    "Config",
    "InstanceNotRunning",
    "ProcState",
    "ProcessTable",
    "RoleContext",
    "RoleSpec",
    "SharedDocument",
    "Supervisor",
    "collect_status",
    "default_roles",
    "format_status",
    "load_config",
    "run_service",
    "start_service",
]

_WHERE = {
    "AlreadyRunning": "supervisor", "Supervisor": "supervisor", "default_roles": "supervisor",
    "run_service": "supervisor", "start_service": "supervisor",
    "Config": "config", "load_config": "config",
    "RoleContext": "roles", "RoleSpec": "roles",
    "ProcState": "proctable", "ProcessTable": "proctable", "SharedDocument": "proctable",
    "InstanceNotRunning": "status", "collect_status": "status", "format_status": "status",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
