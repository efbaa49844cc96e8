"""The supervisor of `shmq start`: recover, create shared memory, fork the roles, watch, drain.

Theory of operation
-------------------
`run_service(config, roles)` is the service's main process (architecture.md §1). In order:

1. **Exclusion.** An exclusive `flock` on `<data_dir>/lock`, held (and inherited by the
   children) for the life of the service; the file holds the supervisor's pid, which a refused
   second start names. A live process table of the same instance (another data dir, same
   shared-memory names) is refused too. Nothing else happens before both checks pass.
2. **Clean slate.** `remove_stale(instance)` removes what a killed earlier run left in /dev/shm,
   then the process table and info document are created (so `shmq status` shows "starting"),
   then crash recovery runs on `<data_dir>/store` before any role opens it.
3. **Fork.** The `setup(config)` hook creates other packages' segments and returns their
   teardown; then each role is forked (`os.fork`, never exec). A child resets its signal
   handlers to flag-setting ones, runs `spec.main(ctx)` and leaves with `os._exit` — it never
   returns into this module's parent code. Children get their own process group (a terminal's
   Ctrl-C reaches only the supervisor, which forwards one orderly SIGTERM) and SIGTERM from
   the kernel if the supervisor dies (PR_SET_PDEATHSIG), so a kill -9 of the supervisor
   drains its children instead of orphaning them.
4. **Supervise.** The parent sleeps in `select` on a self-pipe fed by `signal.set_wakeup_fd`
   (SIGCHLD, SIGTERM, SIGINT, and SIGUSR1 that a child sends on `set_ready()`), with a timeout
   of at most `_TICK_S`: an idle service costs no CPU. Signal handlers only count. Each wake-up
   reaps with `waitpid(-1, WNOHANG)`; a dead role is restarted after a back-off that doubles
   from `supervisor.restart_backoff_s` to `supervisor.restart_backoff_max_s`, after the
   `on_child_death` hook ran. More than `supervisor.max_restarts` deaths of one role within
   `supervisor.restart_window_s` stop the service with exit code 1.
5. **systemd.** READY=1 once recovery is done and every role called `set_ready()`;
   WATCHDOG=1 every half watchdog interval while every role is alive with a heartbeat younger
   than `HEARTBEAT_STALE_S`; STATUS on restarts; STOPPING=1 when the drain begins.
6. **Drain.** The first SIGTERM/SIGINT stops intake and drains in stages (`_DRAIN_STAGES`):
   the acceptor first, then the writers (they finish their rings), then the housekeeper (last
   flush, offsets), then the name server; each stage gets SIGTERM once the stages before it
   have exited. After `supervisor.shutdown_timeout_s` in all, what is left is killed. A second
   signal is a fast stop: SIGKILL now. Either way the teardown hook runs, every segment and
   semaphore of the instance is removed, the lock is released and the exit code is 0 (1 after
   the restart limit or a start-up failure). A fast stop loses nothing acknowledged: it is in
   the page cache or on disk, and the next start runs recovery.

The process table (proctable.py) is the only state shared with children and `shmq status`:
the supervisor writes a row's pid, start and exit; the child writes its heartbeat and
ready/draining state.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import fnmatch
import importlib
import logging
import os
import select
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Final, NoReturn

import psutil

from shmq import __version__
from shmq.errors import ConfigError, IpcError, ShmqError
from shmq.ipc.segment import remove_stale
from shmq.ipc.wakeup import is_process_alive
from shmq.runtime.config import Config
from shmq.runtime.logging_setup import flush_logs, set_process_role
from shmq.runtime.proctable import (
    INFO_NAME,
    SUPERVISOR_ROW,
    ProcessTable,
    ProcState,
    SharedDocument,
)
from shmq.runtime.roles import RoleContext, RoleSpec
from shmq.runtime.sdnotify import Notifier
from shmq.store.recovery import RecoveryReport, recover
from shmq.store.store import config_for

__all__ = [
    "HEARTBEAT_PERIOD_S",
    "HEARTBEAT_STALE_S",
    "TEST_ROLES_ENV",
    "AlreadyRunning",
    "ChildContext",
    "OnChildDeath",
    "ServiceError",
    "Setup",
    "Supervisor",
    "default_roles",
    "placeholder_main",
    "run_service",
    "start_service",
]

log = logging.getLogger(__name__)

#: `setup(config)` runs after recovery, before the first fork; it returns the teardown, called
#: once at exit (after every child is gone, before the instance's segments are removed).
Setup = Callable[[Config], Callable[[], None]]
#: `on_child_death(spec, pid)` runs in the supervisor after role `spec` (process `pid`) died
#: unexpectedly and before it is restarted. If it raises, the service stops (exit code 1).
OnChildDeath = Callable[[RoleSpec, int], None]

HEARTBEAT_PERIOD_S: Final = 1.0  #: roles call heartbeat() at least this often
HEARTBEAT_STALE_S: Final = 5.0  #: an older heartbeat withholds the systemd watchdog ping
#: Test-only: "pattern=module:function,..." replaces the main function of the roles whose name
#: matches the fnmatch pattern ("writer-1", "writer-*", "*"). Read by `default_roles` only. It is
#: not an SHMQ_* variable because load_config refuses unknown SHMQ_* variables.
TEST_ROLES_ENV: Final = "SHMQTEST_ROLES"

_TICK_S: Final = 1.0  #: longest sleep of the main loop (own heartbeat, stale checks)
_REAP_AFTER_KILL_S: Final = 5.0  #: how long to wait for SIGKILLed children to be reaped
_PR_SET_PDEATHSIG: Final = 1  #: prctl(2) option
_PR_SET_NAME: Final = 15  #: prctl(2) option: the thread's name (`ps -o comm`, top), 15 bytes
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_HANDLED_SIGNALS: Final = (*_STOP_SIGNALS, signal.SIGCHLD, signal.SIGUSR1)
#: Drain order by role-name pattern: intake first, the housekeeper's last flush after the
#: writers, routes last. A role matching no pattern stops with the first stage.
_DRAIN_STAGES: Final = (("acceptor*",), ("writer-*",), ("replicator*", "housekeeper*"),
                        ("namesrv*",))


class ServiceError(ShmqError):
    """The service could not start, or had to stop."""


class AlreadyRunning(ServiceError):
    """Another supervisor holds the data dir or the instance; nothing was changed."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


# --- the child's side -------------------------------------------------------------------------
class ChildContext:
    """The `RoleContext` a forked role gets (runtime/roles.py), plus `wait()`.

    Signal handlers only count: the first SIGTERM/SIGINT sets `should_stop()`, the second
    `is_fast_stop()`. The row of the process table is written by `heartbeat()` (the stamp),
    `set_ready()` (READY, then SIGUSR1 to wake the supervisor) and the first `should_stop()`
    that returns True (DRAINING).
    """

    def __init__(self, config: Config, spec: RoleSpec, table: ProcessTable, row: int,
                 supervisor_pid: int) -> None:
        self._config = config
        self._spec = spec
        self._table = table
        self._row = row
        self._supervisor_pid = supervisor_pid
        self._signals = 0
        self._marked_draining = False
        self._wake_r = -1  # the self-pipe of `wait()`, made in the child by `_install()`

    @property
    def config(self) -> Config:
        return self._config

    @property
    def role(self) -> str:
        return self._spec.name

    @property
    def index(self) -> int:
        return self._spec.index

    def should_stop(self) -> bool:
        if self._signals and not self._marked_draining:
            self._marked_draining = True
            self._table.set_state(self._row, ProcState.DRAINING)
        return self._signals > 0

    def is_fast_stop(self) -> bool:
        return self._signals > 1

    def heartbeat(self) -> None:
        self._table.beat(self._row)

    def set_ready(self) -> None:
        self._table.beat(self._row)
        if not self._signals:  # already draining: keep showing that
            self._table.set_state(self._row, ProcState.READY)
        if os.getppid() == self._supervisor_pid:  # never signal a process that reused its pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._supervisor_pid, signal.SIGUSR1)

    def wait(self, timeout_s: float) -> bool:
        """Sleep until a stop signal arrives or `timeout_s` passes (no CPU meanwhile); return
        `should_stop()`."""
        if not self.should_stop():
            select.select([self._wake_r], [], [], max(timeout_s, 0.0))
            _drain_pipe(self._wake_r)
        return self.should_stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1

    def _install(self) -> None:
        """Reset the inherited handlers and arm ours (signals are still blocked here)."""
        for sig in (signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self._table.set_pid(self._row, os.getpid())
        _die_with_parent()
        if os.getppid() != self._supervisor_pid:  # it died before prctl took effect
            self._signals += 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable; children outlive a killed supervisor")


def process_name(role: str) -> bytes:
    """The name `ps`/`top` show for a child: "shmq-" and its role, cut to the kernel's 15
    bytes ("shmq-writer-0", "shmq-acceptor", "shmq-housekeepe")."""
    return f"shmq-{role}".encode()[:15]


def _name_process(role: str) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(process_name(role)), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        log.debug("prctl(PR_SET_NAME) unavailable; children keep the supervisor's name")


def _child_process(ctx: ChildContext, spec: RoleSpec, inherited_fds: Sequence[int]) -> NoReturn:
    """The whole life of a forked child: never returns, never unwinds into the parent's code."""
    code = 1
    try:
        set_process_role(spec.name)
        _name_process(spec.name)
        for fd in inherited_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setpgid(0, 0)
        ctx._install()
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        code = _call_role(spec, ctx)
    except BaseException:  # the child must reach os._exit whatever happened
        log.exception("%s (pid %d) failed while starting", spec.name, os.getpid())
    finally:
        flush_logs()
        os._exit(code)


def _call_role(spec: RoleSpec, ctx: ChildContext) -> int:
    log.info("%s (pid %d) starting", spec.name, os.getpid())
    try:
        spec.main(ctx)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        log.info("%s (pid %d) exited with code %d", spec.name, os.getpid(), code)
        return code
    except Exception:
        log.exception("%s (pid %d) crashed", spec.name, os.getpid())
        return 1
    log.info("%s (pid %d) stopped", spec.name, os.getpid())
    return 0


# --- placeholder roles ------------------------------------------------------------------------
def placeholder_main(ctx: RoleContext) -> None:
    """A role whose package does not provide one yet: ready at once, then idle until asked to
    stop, with a heartbeat per `HEARTBEAT_PERIOD_S` and no CPU in between."""
    ctx.set_ready()
    while not ctx.should_stop():
        ctx.heartbeat()
        _idle(ctx, HEARTBEAT_PERIOD_S)


def _idle(ctx: RoleContext, timeout_s: float) -> None:
    if isinstance(ctx, ChildContext):
        ctx.wait(timeout_s)
    else:  # a stand-in context (tests): poll
        time.sleep(min(timeout_s, 0.05))


# --- the supervisor's side --------------------------------------------------------------------
@dataclass(slots=True)
class _Child:
    """The supervisor's record of one role."""

    spec: RoleSpec
    row: int
    stage: int
    pid: int = 0
    alive: bool = False
    restarts: int = 0
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    stale_logged: bool = False


@dataclass(slots=True)
class _Signals:
    """Counters set by the supervisor's signal handlers (and nothing else)."""

    stop: int = 0
    child: int = 0
    ready: int = 0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if signum in _STOP_SIGNALS:
            self.stop += 1
        elif signum == signal.SIGCHLD:
            self.child += 1
        else:
            self.ready += 1


class _ServiceLock:
    """The exclusive `flock` on `<data_dir>/lock`, which names its holder's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (without waiting) and write this process's pid into the file.

        Raises:
            AlreadyRunning: another process holds the lock; nothing was changed.
            OSError: the data dir or the file cannot be created.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(_locked_message(self.path, holder), holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _locked_message(path: Path, pid: int | None) -> str:
    if pid is None:
        return (f"{path.parent} is in use by another shmq supervisor (lock {path} is held); "
                f"stop it first, or use another data dir")
    if is_process_alive(pid):
        return (f"{path.parent} is in use by another shmq supervisor (pid {pid}, lock {path}); "
                f"stop it first (kill -TERM {pid}), or use another data dir")
    return (f"{path.parent} is locked ({path}) by processes of a shmq supervisor that is gone "
            f"(pid {pid}); end its remaining children first")


def _check_instance_free(instance: str) -> None:
    """Refuse an instance whose process table names a live supervisor (another data dir)."""
    try:
        table = ProcessTable.attach(instance)
    except IpcError:
        return  # none, or unreadable: remove_stale will deal with it
    try:
        holder = table.record(SUPERVISOR_ROW)
    finally:
        table.detach()
    if holder.pid in (0, os.getpid()) or not _is_live_supervisor(instance, holder.pid):
        return
    raise AlreadyRunning(
        f"instance {instance!r} is already running (supervisor pid {holder.pid}); stop it "
        f"first (kill -TERM {holder.pid}), or choose another instance name", holder.pid)


def _is_live_supervisor(instance: str, pid: int) -> bool:
    if not is_process_alive(pid):
        return False
    try:
        with SharedDocument.attach(instance, INFO_NAME) as doc:
            started_at = float(doc.read().get("started_at", 0.0))
        created = float(psutil.Process(pid).create_time())
    except (IpcError, psutil.Error, ValueError, TypeError):
        return True  # cannot tell a reused pid apart: assume the worst
    return created <= started_at + 1.0  # a later-born process has only reused the pid


class Supervisor:
    """Runs one service: see the module docstring. Use `run()` once."""

    def __init__(self, config: Config, roles: Sequence[RoleSpec], *,
                 notifier: Notifier | None = None, setup: Setup | None = None,
                 on_child_death: OnChildDeath | None = None) -> None:
        names = [spec.name for spec in roles]
        if len(set(names)) != len(names) or not names:
            raise ServiceError(f"role names must be distinct and at least one: {names}")
        self._config = config
        self._notifier = notifier if notifier is not None else Notifier()
        self._setup = setup
        self._on_child_death = on_child_death
        self._children = [_Child(spec, row, _drain_stage(spec.name))
                          for row, spec in enumerate(roles, start=SUPERVISOR_ROW + 1)]
        self._by_pid: dict[int, _Child] = {}
        self._signals = _Signals()
        self._signals_at_drain = 0
        self._phase = ProcState.STARTING
        self._table: ProcessTable | None = None
        self._info: SharedDocument | None = None
        self._teardown: Callable[[], None] | None = None
        self._failure: str | None = None
        self._exit_code = 0
        self._ready_sent = False
        self._drain_stage = -1
        self._drain_deadline = 0.0
        self._next_watchdog = 0.0
        self._started_at = time.time()
        self._wake_r = self._wake_w = -1
        self._old_handlers: dict[int, Any] = {}

    # --- the whole run ------------------------------------------------------------------------
    def run(self) -> int:
        """Run the service until it is stopped; return the exit code (0 stopped by a signal,
        1 stopped by the restart limit or a start-up failure).

        Raises:
            AlreadyRunning: another supervisor holds the data dir or the instance; nothing was
                changed.
            OSError: the data dir or its lock file cannot be created; nothing was changed.
        """
        lock = _ServiceLock(self._config.data_dir / "lock")
        lock.acquire()
        try:
            _check_instance_free(self._config.instance)
            with self._signal_handlers():
                self._run_locked()
        finally:
            lock.release()
        return self._exit_code

    def _run_locked(self) -> None:
        instance = self._config.instance
        log.info("shmq %s starting instance %r (pid %d, data dir %s, %d roles)", __version__,
                 instance, os.getpid(), self._config.data_dir, len(self._children))
        try:
            self._prepare()
            if self._signals.stop:
                log.info("stop requested during start-up; the roles are not started")
            else:
                self._start_all()
                self._supervise()
        except Exception:
            log.exception("instance %r failed; stopping", instance)
            self._exit_code = 1
        finally:
            self._kill_leftovers()
            self._remove_segments()
        log.info("instance %r stopped (exit code %d)", instance, self._exit_code)

    def _prepare(self) -> None:
        instance = self._config.instance
        removed = remove_stale(instance)
        if removed:
            log.warning("removed %d stale shared-memory objects of instance %r left by an "
                        "earlier run: %s", len(removed), instance, " ".join(removed))
        roles = [child.spec.name for child in self._children]
        self._table = ProcessTable.create(instance, roles)
        self._table.set_pid(SUPERVISOR_ROW, os.getpid())
        self._table.mark_starting(SUPERVISOR_ROW, 0)
        self._info = SharedDocument.create(instance, INFO_NAME, self._info_document())
        self._recover()
        if self._setup is not None:
            self._teardown = self._setup(self._config)

    def _recover(self) -> None:
        root = self._config.data_dir / "store"
        self._notifier.status("recovering the store")
        started = time.monotonic()
        report = recover(root, config_for(root, self._config.store_config()))
        line = _recovery_line(report, time.monotonic() - started)
        if report.repaired:
            log.warning("%s", line)
        else:
            log.info("%s", line)

    def _info_document(self) -> dict[str, Any]:
        cfg = self._config
        return {
            "instance": cfg.instance, "data_dir": str(cfg.data_dir), "writers": cfg.writers,
            "ring_bytes": cfg.ring.bytes, "broker_host": cfg.broker.host,
            "broker_port": cfg.broker.port, "namesrv_port": cfg.namesrv.port,
            "namesrv_enabled": cfg.namesrv.enabled, "supervisor_pid": os.getpid(),
            "state": self._phase.label, "version": __version__,
            "started_at": self._started_at,
            "roles": [child.spec.name for child in self._children],
        }

    def _set_phase(self, phase: ProcState) -> None:
        self._phase = phase
        if self._table is not None:
            self._table.set_state(SUPERVISOR_ROW, phase)
        if self._info is not None:
            self._info.write(self._info_document())

    # --- forking ------------------------------------------------------------------------------
    def _start_all(self) -> None:
        self._notifier.status(f"starting {len(self._children)} processes")
        for child in self._children:
            self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        table = self._live_table()
        table.mark_starting(child.row, child.restarts)
        ctx = ChildContext(self._config, child.spec, table, child.row, os.getpid())
        # Blocked across the fork, so that a SIGTERM sent to the new child before it installed
        # its handlers waits for them instead of running ours.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _child_process(ctx, child.spec, (self._wake_r, self._wake_w))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        child.pid, child.alive, child.stale_logged = pid, True, False
        table.set_pid(child.row, pid)
        self._by_pid[pid] = child
        again = f" (restart {child.restarts})" if child.restarts else ""
        log.info("started %s (pid %d)%s", child.spec.name, pid, again)

    # --- the main loop ------------------------------------------------------------------------
    def _supervise(self) -> None:
        while True:
            self._sleep(self._next_timeout())
            self._reap()
            now = time.monotonic()
            if self._phase is not ProcState.DRAINING:
                if self._signals.stop or self._failure:
                    self._begin_drain(now)
                else:
                    self._restart_due(now)
                    self._check_ready()
            if self._phase is ProcState.DRAINING and self._drain_step(now):
                return
            self._tick(now)

    def _next_timeout(self) -> float:
        now = time.monotonic()
        wake = now + _TICK_S
        if self._watchdog_period_s() is not None:
            wake = min(wake, self._next_watchdog)
        if self._phase is ProcState.DRAINING:
            wake = min(wake, self._drain_deadline)
        pending = [c.restart_at for c in self._children if c.restart_at is not None]
        if pending and self._phase is not ProcState.DRAINING:
            wake = min(wake, *pending)
        return max(0.0, wake - now)

    def _sleep(self, timeout_s: float) -> None:
        # A signal that arrived since the last sleep left a byte in the pipe (set_wakeup_fd),
        # so this returns at once; no flag needs checking first.
        select.select([self._wake_r], [], [], timeout_s)
        _drain_pipe(self._wake_r)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._by_pid.pop(pid, None)
            if child is None:
                log.debug("reaped pid %d, not one of the roles", pid)
                continue
            self._on_exit(child, pid, status)

    def _on_exit(self, child: _Child, pid: int, status: int) -> None:
        how, code = _describe_exit(status)
        child.alive = False
        name = child.spec.name
        table = self._live_table()
        if self._phase is ProcState.DRAINING:
            table.mark_exited(child.row, ProcState.STOPPED if code == 0 else ProcState.FAILED,
                              code)
            log.info("%s (pid %d) exited during shutdown: %s", name, pid, how)
            return
        table.mark_exited(child.row, ProcState.FAILED, code)
        log.warning("%s (pid %d) died: %s", name, pid, how)
        now = time.monotonic()
        child.deaths.append(now)
        window = self._config.supervisor.restart_window_s
        while child.deaths and child.deaths[0] < now - window:
            child.deaths.popleft()
        deaths = len(child.deaths)
        if deaths > self._config.supervisor.max_restarts:
            times = "time" if deaths == 1 else "times"
            self._fail(f"{name} died {deaths} {times} in {window:g} s (last: {how}); "
                       f"stopping; see the log")
            return
        if not self._run_death_hook(child, pid):
            return
        backoff = self._backoff_s(deaths)
        child.restart_at = now + backoff
        log.info("restarting %s in %.2f s (%d deaths in the last %g s)", name, backoff, deaths,
                 window)

    def _run_death_hook(self, child: _Child, pid: int) -> bool:
        if self._on_child_death is None:
            return True
        try:
            self._on_child_death(child.spec, pid)
        except Exception as err:
            log.exception("recovery after the death of %s (pid %d) failed", child.spec.name, pid)
            self._fail(f"recovery after the death of {child.spec.name} (pid {pid}) failed: "
                       f"{err}; stopping; see the log")
            return False
        return True

    def _backoff_s(self, deaths: int) -> float:
        sup = self._config.supervisor
        return float(min(sup.restart_backoff_s * 2 ** max(deaths - 1, 0),
                         sup.restart_backoff_max_s))

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
            log.error("%s", message)
        self._exit_code = 1

    def _restart_due(self, now: float) -> None:
        for child in self._children:
            if child.restart_at is not None and child.restart_at <= now:
                child.restart_at = None
                child.restarts += 1
                self._spawn(child)
                self._notifier.status(f"{child.spec.name} restarted (pid {child.pid}, "
                                      f"{child.restarts} restarts)")

    def _check_ready(self) -> None:
        if self._ready_sent:
            return
        table = self._live_table()
        if not all(c.alive and table.state(c.row) is ProcState.READY for c in self._children):
            return
        self._ready_sent = True
        self._set_phase(ProcState.READY)
        text = (f"ready: instance {self._config.instance}, {len(self._children)} processes, "
                f"data dir {self._config.data_dir}")
        log.info("%s", text)
        self._notifier.ready(text)

    def _tick(self, now: float) -> None:
        table = self._live_table()
        table.beat(SUPERVISOR_ROW)
        healthy = self._is_healthy(table)
        period = self._watchdog_period_s()
        if period is None or now < self._next_watchdog:
            return
        self._next_watchdog = now + period
        if healthy and self._phase is not ProcState.DRAINING:
            self._notifier.watchdog()

    def _watchdog_period_s(self) -> float | None:
        interval = self._notifier.watchdog_interval_s()
        if interval is None or not self._config.supervisor.watchdog:
            return None
        return interval / 2

    def _is_healthy(self, table: ProcessTable) -> bool:
        """Every role alive with a fresh heartbeat (logs each role that goes stale, once)."""
        healthy = True
        now_ns = time.monotonic_ns()
        for child in self._children:
            if not child.alive:
                healthy = False
                continue
            age_s = (now_ns - table.heartbeat_ns(child.row)) / 1e9
            if age_s < HEARTBEAT_STALE_S:
                child.stale_logged = False
                continue
            healthy = False
            if not child.stale_logged and self._phase is not ProcState.DRAINING:
                child.stale_logged = True
                log.warning("%s (pid %d) sent no heartbeat for %.1f s; withholding the "
                            "watchdog ping", child.spec.name, child.pid, age_s)
        return healthy

    # --- stopping -----------------------------------------------------------------------------
    def _begin_drain(self, now: float) -> None:
        self._signals_at_drain = self._signals.stop
        reason = self._failure or "stop signal received"
        self._set_phase(ProcState.DRAINING)
        self._notifier.stopping(f"draining: {reason}")
        timeout = self._config.supervisor.shutdown_timeout_s
        self._drain_deadline = now + timeout
        for child in self._children:
            child.restart_at = None
        log.info("draining (%s): stopping %d processes in stages, %g s in all", reason,
                 sum(c.alive for c in self._children), timeout)

    def _drain_step(self, now: float) -> bool:
        """Advance the drain; True once every child is gone."""
        if self._signals.stop > self._signals_at_drain:
            self._kill_all("second stop signal: fast stop; killing %s (pid %d); nothing "
                           "acknowledged is lost, the next start runs recovery")
            return True
        if not any(c.alive for c in self._children):
            return True
        if now >= self._drain_deadline:
            timeout = self._config.supervisor.shutdown_timeout_s
            self._kill_all(f"%s (pid %d) did not stop within {timeout:g} s; killing it")
            return True
        self._advance_stage()
        return False

    def _advance_stage(self) -> None:
        while self._drain_stage < len(_DRAIN_STAGES):
            stage = self._drain_stage
            if any(c.alive and c.stage <= stage for c in self._children):
                return
            self._drain_stage += 1
            for child in self._children:
                if child.alive and child.stage == self._drain_stage:
                    self._live_table().set_state(child.row, ProcState.DRAINING)
                    _signal(child.pid, signal.SIGTERM)
                    log.info("asked %s (pid %d) to stop", child.spec.name, child.pid)

    def _kill_all(self, message: str) -> None:
        """SIGKILL every live child (`message` % (role, pid) logged for each), then reap."""
        for child in self._children:
            if child.alive:
                log.warning(message, child.spec.name, child.pid)
                _signal(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + _REAP_AFTER_KILL_S
        while any(c.alive for c in self._children) and time.monotonic() < deadline:
            select.select([self._wake_r], [], [], 0.05)
            _drain_pipe(self._wake_r)
            self._reap()
        for child in self._children:
            if child.alive:
                log.error("%s (pid %d) survived SIGKILL for %g s", child.spec.name, child.pid,
                          _REAP_AFTER_KILL_S)

    def _kill_leftovers(self) -> None:
        if self._phase is not ProcState.DRAINING:
            self._phase = ProcState.DRAINING  # exits are no deaths any more
        if any(c.alive for c in self._children):
            self._kill_all("%s (pid %d) still runs while the supervisor exits; killing it")

    def _remove_segments(self) -> None:
        if self._teardown is not None:
            try:
                self._teardown()
            except Exception:
                log.exception("the setup hook's teardown failed; removing the instance's "
                              "shared memory anyway")
        if self._table is not None:
            self._table.set_state(SUPERVISOR_ROW, ProcState.FAILED if self._exit_code
                                  else ProcState.STOPPED)
        for segment in (self._table, self._info):
            if segment is not None:
                segment.unlink()
                segment.detach()
        self._table = self._info = None
        left = remove_stale(self._config.instance)
        if left:
            log.info("removed the instance's remaining shared-memory objects: %s",
                     " ".join(left))

    def _live_table(self) -> ProcessTable:
        assert self._table is not None, "the process table exists while children run"
        return self._table

    # --- signals ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            for sig in _HANDLED_SIGNALS:
                self._old_handlers[sig] = signal.signal(sig, self._signals.handle)
            yield
        finally:
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(old_fd)
            os.close(self._wake_r)
            os.close(self._wake_w)


def _drain_stage(name: str) -> int:
    for stage, patterns in enumerate(_DRAIN_STAGES):
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return stage
    return 0


def _drain_pipe(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _describe_exit(status: int) -> tuple[str, int]:
    """("exit code 3", 3) or ("killed by SIGKILL", -9) from a `waitpid` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}", -sig
    code = os.waitstatus_to_exitcode(status)
    return f"exit code {code}", code


def _recovery_line(report: RecoveryReport, seconds: float) -> str:
    line = (f"store recovery took {seconds:.2f} s: offsets {report.start_offset}.."
            f"{report.end_offset}, {report.records_checked} records checked")
    if not report.repaired:
        return line + ", nothing to repair"
    done = [f"{key}={value}" for key, value in report.to_dict().items()
            if key not in ("start_offset", "end_offset", "records_checked", "repaired")
            and value not in (None, 0, [])]
    return line + "; repaired: " + ", ".join(done)


# --- entry points -----------------------------------------------------------------------------
def run_service(config: Config, roles: Sequence[RoleSpec], *, notifier: Notifier | None = None,
                setup: Setup | None = None, on_child_death: OnChildDeath | None = None) -> int:
    """Run the service in the foreground until it is stopped; return the exit code.

    Args:
        config: the validated configuration.
        roles: the children to fork, in start order (names distinct, <= 24 ASCII characters).
        notifier: systemd notifications; default `Notifier()` from the environment.
        setup: called once after recovery, before the first fork; returns the teardown.
        on_child_death: called with (role, pid) after a role died, before it is restarted.

    Returns:
        0 after a stop signal; 1 when a role exceeded its restart limit, a hook failed or the
        start failed (the log says why). Every shared-memory object of the instance is gone.

    Raises:
        AlreadyRunning: another supervisor holds the data dir or the instance; nothing changed.
        BadNotifyEnvironment: NOTIFY_SOCKET/WATCHDOG_* are malformed; nothing changed.
        OSError: the data dir or its lock file cannot be created; nothing changed.
    """
    own = notifier is None
    active = Notifier() if notifier is None else notifier
    try:
        return Supervisor(config, roles, notifier=active, setup=setup,
                          on_child_death=on_child_death).run()
    finally:
        if own:
            active.close()


def start_service(config: Config, *, notifier: Notifier | None = None) -> int:
    """`shmq start`: `run_service` with `default_roles` and the broker's hooks, if any."""
    broker = _optional_module("shmq.broker.roles")
    setup = getattr(broker, "setup", None)
    return run_service(config, default_roles(config), notifier=notifier, setup=setup,
                       on_child_death=_writer_death_hook(broker, config))


def _writer_death_hook(broker: ModuleType | None, config: Config) -> OnChildDeath | None:
    on_writer_death = getattr(broker, "on_writer_death", None)
    if on_writer_death is None:
        return None

    def hook(spec: RoleSpec, pid: int) -> None:
        if fnmatch.fnmatchcase(spec.name, "writer-*"):
            on_writer_death(config, spec.index)

    return hook


def default_roles(config: Config) -> list[RoleSpec]:
    """The roles of one `shmq start`: namesrv (if enabled), writer-0..W-1, housekeeper,
    acceptor. Main functions come from `shmq.broker.roles` and `shmq.namesrv.roles` where
    those define them, else `placeholder_main`; `SHMQTEST_ROLES` (tests only) overrides.

    Raises:
        ConfigError: SHMQTEST_ROLES names a module or function that does not exist.
    """
    broker, namesrv = "shmq.broker.roles", "shmq.namesrv.roles"
    roles: list[RoleSpec] = []
    if config.namesrv.enabled:
        roles.append(RoleSpec("namesrv", 0, _main_of(namesrv, "namesrv_main")))
    writer_main = _main_of(broker, "writer_main")
    roles += [RoleSpec(f"writer-{i}", i, writer_main) for i in range(config.writers)]
    roles.append(RoleSpec("housekeeper", 0, _main_of(broker, "housekeeper_main")))
    roles.append(RoleSpec("acceptor", 0, _main_of(broker, "acceptor_main")))
    return _apply_test_overrides(roles, os.environ.get(TEST_ROLES_ENV, ""))


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:  # the module exists but something it imports does not: a bug
            raise
        return None


def _main_of(module_name: str, attribute: str) -> Callable[[RoleContext], None]:
    main = getattr(_optional_module(module_name), attribute, None)
    if main is None:
        log.info("%s.%s is not available yet; using the placeholder role", module_name,
                 attribute)
        return placeholder_main
    return main  # type: ignore[no-any-return]


def _apply_test_overrides(roles: list[RoleSpec], text: str) -> list[RoleSpec]:
    for item in filter(None, (part.strip() for part in text.split(","))):
        pattern, sep, target = item.partition("=")
        if not sep:
            raise ConfigError(f"{TEST_ROLES_ENV}: {item!r} is not pattern=module:function")
        main = _load_function(target)
        roles = [RoleSpec(r.name, r.index, main) if fnmatch.fnmatchcase(r.name, pattern) else r
                 for r in roles]
    return roles


def _load_function(target: str) -> Callable[[RoleContext], None]:
    module_name, _, function = target.partition(":")
    try:
        main = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{TEST_ROLES_ENV}: cannot load {target!r}: {err}") from err
    if not callable(main):
        raise ConfigError(f"{TEST_ROLES_ENV}: {target!r} is not callable")
    return main  # type: ignore[no-any-return]
