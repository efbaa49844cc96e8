"""The process table and the info document: what `shmq status` reads without any TCP.

Theory of operation
-------------------
The supervisor creates two shared segments before it forks (architecture.md §2), and removes
them on shutdown:

``/shmq.<instance>.proctable`` — a `SharedTable` of `PROC_DTYPE`, one row per process. Row 0
(`SUPERVISOR_ROW`) is the supervisor itself: its `state` is the service's state. Row i > 0 is
the i-th role. Each element has one writer at a time, so no lock is needed (see ipc/table.py):

    field         written by                    meaning
    role          supervisor, at create         "supervisor", "writer-0", ...   (S24, ASCII)
    pid           supervisor after fork         the process running the row (the child
                  (and the child, same value)   also stores its own pid, so there is no gap)
    state         supervisor before fork and    a `ProcState`
                  after reaping; the child in
                  between (ready, draining)
    started_ns    supervisor before fork        CLOCK_MONOTONIC at fork
    heartbeat_ns  the child (supervisor: its    CLOCK_MONOTONIC of the last sign of life
                  own row; also at fork)
    restarts      supervisor                    how often this role was restarted
    exit_code     supervisor after reaping      exit status, or -N for "killed by signal N"

CLOCK_MONOTONIC is one system-wide clock on Linux, so readers compare these stamps with their
own `time.monotonic_ns()`.

``/shmq.<instance>.info`` — a `SharedDocument`: a small JSON object (instance, data dir,
writers, ring size, broker address, supervisor pid, state, version). It has one writer (the
supervisor) and any number of readers, guarded by a sequence counter (a seqlock):

    +0   magic   u64  DOC_MAGIC, written last by `create`: the header is valid
    +8   seq     u64  even: stable; odd: a write is in progress
    +16  length  u64  bytes of JSON in the data area
    +64  data    UTF-8 JSON, at most `capacity` bytes

A writer makes `seq` odd, writes the data and the length, then makes `seq` even again; a reader
copies length and data between two reads of `seq` and retries unless both are the same even
value. Each header word is one aligned 8-byte store (an int64 memoryview), which never tears on
x86-64.

This module is used by the supervisor (create, write), by the children (their own row, through
the supervisor's `RoleContext`) and by `shmq status` (attach, read). It never logs.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import numpy as np

from shmq.ipc.document import DocumentTooLarge, SharedDocument
from shmq.ipc.errors import InvalidLayout, SegmentCorrupt
from shmq.ipc.table import SharedTable

__all__ = [
    "INFO_NAME",
    "PROCTABLE_NAME",
    "PROC_DTYPE",
    "ROLE_NAME_BYTES",
    "SUPERVISOR_ROLE",
    "SUPERVISOR_ROW",
    "DocumentTooLarge",
    "ProcState",
    "ProcessRecord",
    "ProcessTable",
    "SharedDocument",
]

PROCTABLE_NAME: Final = "proctable"  #: segment of the process table
INFO_NAME: Final = "info"  #: segment of the info document
SUPERVISOR_ROW: Final = 0  #: the supervisor's own row
SUPERVISOR_ROLE: Final = "supervisor"  #: role name of row 0
ROLE_NAME_BYTES: Final = 24  #: longest role name (ASCII)

#: One row per process; int64 fields start on 8-byte boundaries (the role takes 24 bytes).
PROC_DTYPE: Final = np.dtype([
    ("role", f"S{ROLE_NAME_BYTES}"),
    ("pid", "<i8"),
    ("state", "<i8"),
    ("started_ns", "<i8"),
    ("heartbeat_ns", "<i8"),
    ("restarts", "<i8"),
    ("exit_code", "<i8"),
])


class ProcState(enum.IntEnum):
    """State of one row; for row 0, the state of the whole service."""

    EMPTY = 0  #: never started (a zeroed row)
    STARTING = 1  #: forked (or, for the service, recovering and forking), not ready yet
    READY = 2  #: `set_ready()` was called (service: every role is ready)
    DRAINING = 3  #: asked to stop; finishing what it holds
    STOPPED = 4  #: exited after being asked to (or returned on its own: exit_code says)
    FAILED = 5  #: died unexpectedly; the supervisor restarts it after a back-off

    @property
    def label(self) -> str:
        """The lower-case name shown by `shmq status`."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """One row of the process table, copied out."""

    row: int
    role: str
    pid: int
    state: ProcState
    started_ns: int
    heartbeat_ns: int
    restarts: int
    exit_code: int

    def uptime_s(self, now_ns: int | None = None) -> float:
        """Seconds since the process was started (0 before it was)."""
        if self.started_ns <= 0:
            return 0.0
        now = time.monotonic_ns() if now_ns is None else now_ns
        return max(0, now - self.started_ns) / 1e9

    def heartbeat_age_s(self, now_ns: int | None = None) -> float:
        """Seconds since the last heartbeat."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        return max(0, now - self.heartbeat_ns) / 1e9


def _state(value: int) -> ProcState:
    try:
        return ProcState(value)
    except ValueError:
        return ProcState.EMPTY  # a torn or foreign value: show the row as unknown, not crash


class ProcessTable:
    """The process table of one instance. `create()` (supervisor) or `attach()` (anyone)."""

    def __init__(self, table: SharedTable) -> None:
        self._table = table
        array = table.array
        if array.dtype != PROC_DTYPE or array.ndim != 1 or len(array) < 1:
            raise SegmentCorrupt(table.posix_name, "dtype", str(PROC_DTYPE), str(array.dtype))
        self._pids = array["pid"]
        self._states = array["state"]
        self._started = array["started_ns"]
        self._beats = array["heartbeat_ns"]
        self._restarts = array["restarts"]
        self._exit_codes = array["exit_code"]
        self._roles = [bytes(r).decode("ascii", "replace") for r in array["role"]]

    @classmethod
    def create(cls, instance: str, roles: Sequence[str]) -> ProcessTable:
        """Create the table with row 0 for the supervisor and one row per role, in order.

        Raises:
            InvalidLayout: a role name is not ASCII, longer than ROLE_NAME_BYTES, or repeated;
                nothing was created.
            SegmentExists: the instance already has a process table; nothing was changed.
            IpcError: the system refused; nothing is left behind.
        """
        names = [SUPERVISOR_ROLE, *roles]
        for name in names:
            if not name.isascii() or not 0 < len(name) <= ROLE_NAME_BYTES:
                raise InvalidLayout("role", name, f"must be 1-{ROLE_NAME_BYTES} ASCII characters")
        if len(set(names)) != len(names):
            raise InvalidLayout("roles", names, "role names must be distinct")
        table = SharedTable.create(instance, PROCTABLE_NAME, len(names), PROC_DTYPE)
        table.array["role"] = [n.encode("ascii") for n in names]
        return cls(table)

    @classmethod
    def attach(cls, instance: str) -> ProcessTable:
        """Map the instance's process table.

        Raises:
            SegmentMissing: the instance has none (it is not running).
            SegmentCorrupt: the segment is not a process table of this version.
            IpcError: the system refused.
        """
        table = SharedTable.attach(instance, PROCTABLE_NAME)
        try:
            return cls(table)
        except BaseException:
            table.detach()
            raise

    # --- reading ------------------------------------------------------------------------------
    @property
    def roles(self) -> list[str]:
        """Role names by row; row 0 is "supervisor"."""
        return list(self._roles)

    def row_of(self, role: str) -> int:
        """The row of `role`.

        Raises:
            KeyError: no such role in this table.
        """
        try:
            return self._roles.index(role)
        except ValueError:
            raise KeyError(role) from None

    def record(self, row: int) -> ProcessRecord:
        """A copy of row `row` (fields read one by one: not one atomic snapshot)."""
        return ProcessRecord(
            row=row, role=self._roles[row], pid=int(self._pids[row]),
            state=_state(int(self._states[row])), started_ns=int(self._started[row]),
            heartbeat_ns=int(self._beats[row]), restarts=int(self._restarts[row]),
            exit_code=int(self._exit_codes[row]),
        )

    def records(self) -> list[ProcessRecord]:
        """Every row, supervisor first."""
        return [self.record(row) for row in range(len(self._roles))]

    def pid(self, row: int) -> int:
        return int(self._pids[row])

    def state(self, row: int) -> ProcState:
        return _state(int(self._states[row]))

    def heartbeat_ns(self, row: int) -> int:
        return int(self._beats[row])

    # --- writing (each field by its one writer, see the module docstring) ---------------------
    def set_pid(self, row: int, pid: int) -> None:
        self._pids[row] = pid

    def set_state(self, row: int, state: ProcState) -> None:
        self._states[row] = int(state)

    def beat(self, row: int, now_ns: int | None = None) -> None:
        """Record a heartbeat of row `row` (now, unless `now_ns` is given)."""
        self._beats[row] = time.monotonic_ns() if now_ns is None else now_ns

    def mark_starting(self, row: int, restarts: int, now_ns: int | None = None) -> None:
        """Before a fork: STARTING, started and heartbeat stamps now, the restart count."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._started[row] = now
        self._beats[row] = now
        self._restarts[row] = restarts
        self._exit_codes[row] = 0
        self._states[row] = int(ProcState.STARTING)

    def mark_exited(self, row: int, state: ProcState, exit_code: int) -> None:
        """After reaping: the exit status (-N: killed by signal N) and STOPPED or FAILED."""
        self._exit_codes[row] = exit_code
        self._states[row] = int(state)

    # --- lifecycle ----------------------------------------------------------------------------
    def detach(self) -> None:
        """Unmap (idempotent); the segment stays until `unlink()`."""
        for name in ("_pids", "_states", "_started", "_beats", "_restarts", "_exit_codes"):
            setattr(self, name, None)
        self._table.detach()

    def unlink(self) -> None:
        """Remove the segment's name (idempotent)."""
        self._table.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.detach()
