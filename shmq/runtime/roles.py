"""The contract between the supervisor and the processes it forks.

Every child process runs one *role*: a function taking a `RoleContext` and returning when the
role is done (normally after `ctx.should_stop()` became true). The supervisor installs signal
handlers in the child that only set the stop flag (style.md §4), updates the process table from
`heartbeat()`/`set_ready()`, and treats a return as a clean exit (exit code 0) and an
exception as a crash (logged, exit code 1, restarted with back-off).

Roles of one `shmq start` (architecture.md §1): ``namesrv`` (if enabled), ``acceptor``,
``writer-<i>`` for i in range(config.writers), ``housekeeper``. Their main functions live with
their packages (broker/, namesrv/) and are wired up in `role_table`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shmq.runtime.config import Config

__all__ = ["RoleContext", "RoleMain", "RoleSpec"]


class RoleContext(Protocol):
    """What a role's main function gets from the supervisor."""

    @property
    def config(self) -> Config: ...

    @property
    def role(self) -> str:
        """"writer-0", "housekeeper", "namesrv", "acceptor"."""

    @property
    def index(self) -> int:
        """The writer index for writer roles, 0 otherwise."""

    def should_stop(self) -> bool:
        """True once SIGTERM/SIGINT arrived (drain and return) — cheap, call it often."""

    def is_fast_stop(self) -> bool:
        """True once a second signal asked for a fast stop (return at once)."""

    def heartbeat(self) -> None:
        """Tell the supervisor this process is alive and making progress (call >= 1/s)."""

    def set_ready(self) -> None:
        """The role has finished starting (READY=1 is sent once every role is ready)."""


RoleMain = Callable[[RoleContext], None]


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """One child process of the service."""

    name: str
    index: int
    main: RoleMain
