"""Logging for `shmq start`: one line per event, naming the process's pid and role.

Theory of operation
-------------------
The supervisor calls `configure_logging(config.log)` once, before it forks; every child inherits
the handler (standard error, or `log.file` opened in append mode, so lines of several processes
interleave whole) and calls `set_process_role(role)` right after the fork. A filter on the
handler stamps each record with that role, so a line reads

    2024-05-01 12:00:00,123 INFO  writer-1[4242] shmq.broker.writer: ...

The role lives in a module variable because it is a fact about the process, not about any
object in it (style.md §6 forbids module globals for configuration, not for this).
"""

from __future__ import annotations

import logging
import sys
from typing import Final

from shmq.runtime.config import LogSection

__all__ = ["LOG_FORMAT", "configure_logging", "flush_logs", "process_role", "set_process_role"]

LOG_FORMAT: Final = "%(asctime)s %(levelname)-7s %(role)s[%(process)d] %(name)s: %(message)s"

_role = "supervisor"


def set_process_role(role: str) -> None:
    """Name this process's role in every later log line (called in a child after fork)."""
    global _role
    _role = role


def process_role() -> str:
    """The role set by `set_process_role` ("supervisor" until then)."""
    return _role


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        return True


def configure_logging(section: LogSection) -> logging.Handler:
    """Send the root logger's records at `section.level` and above to `section.file` (appended)
    or standard error; return the handler. Earlier handlers of the root logger are removed.

    Raises:
        OSError: the log file cannot be opened; logging is left as it was.
    """
    handler: logging.Handler
    if section.file is not None:
        section.file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(section.file, mode="a", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_RoleFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(section.level.number)
    return handler


def flush_logs() -> None:
    """Flush every handler of the root logger (a child calls it before `os._exit`)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
