"""`shmq start` as a real process: readiness, restarts, the restart limit, drain, fast stop,
exclusion, stale segments, systemd notifications and idle CPU.

Every test starts its own service (unique instance name, temporary data dir) through the
`service` fixture, whose finaliser kills whatever is left and removes the instance's shared
memory, so one failure cannot cascade. Roles that misbehave on purpose are injected with the
test-only SHMQTEST_ROLES variable and live at the bottom of this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from shmq.cli import main
from shmq.ipc.segment import SHM_DIR, Segment, list_segments, list_semaphores, remove_stale
from shmq.ipc.wakeup import create_semaphore, is_process_alive
from shmq.runtime.config import load_config
from shmq.runtime.roles import RoleContext
from shmq.runtime.sdnotify import NotifyListener, NotifyTimeout
from shmq.runtime.supervisor import TEST_ROLES_ENV

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
ROLES = ["namesrv", "writer-0", "writer-1", "housekeeper", "acceptor"]
START_TIMEOUT_S = 30.0
THIS = "tests.runtime.test_supervisor"


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Return the first true value of `condition()`; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


def service_env(data_dir: Path, instance: str) -> dict[str, str]:
    """The environment of a small, fast test service (ports 0, tiny store and rings)."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith("SHMQ") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC",
                                                      "WATCHDOG_PID")}
    return keep | {
        "PYTHONPATH": str(REPO),
        "SHMQ_INSTANCE": instance,
        "SHMQ_DATA_DIR": str(data_dir),
        "SHMQ_WRITERS": "2",
        "SHMQ_STORE_SEGMENT_BYTES": "1MiB",
        "SHMQ_BROKER_MAX_BODY_BYTES": "64KiB",
        "SHMQ_STORE_MIN_FREE_BYTES": "0",
        "SHMQ_STORE_CQ_ENTRIES_PER_FILE": "1000",
        "SHMQ_STORE_INDEX_SLOTS": "1000",
        "SHMQ_STORE_INDEX_MAX_ENTRIES": "4000",
        "SHMQ_BROKER_PORT": "0",
        "SHMQ_NAMESRV_PORT": "0",
        "SHMQ_NAMESRV_ADDRESSES": "127.0.0.1:9876",
        "SHMQ_RING_BYTES": "64KiB",
        "SHMQ_RING_MAX_PRODUCERS": "4",
        "SHMQ_SUPERVISOR_RESTART_BACKOFF_S": "0.1",
        "SHMQ_SUPERVISOR_RESTART_BACKOFF_MAX_S": "0.5",
        "SHMQ_SUPERVISOR_SHUTDOWN_TIMEOUT_S": "5",
    }


def status_of(instance: str) -> dict[str, Any] | None:
    """`shmq status --json` (in-process), or None while the instance is not running."""
    result = CliRunner().invoke(
        main, ["status", "--json", "--instance", instance, "--cpu-interval", "0"])
    if result.exit_code != 0:
        return None
    report: dict[str, Any] = json.loads(result.output)
    return report


def shm_leftovers(instance: str) -> list[str]:
    return sorted(e for e in os.listdir(SHM_DIR)
                  if e.startswith((f"shmq.{instance}.", f"sem.shmq.{instance}.")))


class Service:
    """One `shmq start` subprocess; its log (standard error) goes to a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.instance = f"sv{uuid.uuid4().hex[:16]}"
        self.data_dir = tmp_path / "data"
        self.env = service_env(self.data_dir, self.instance)
        self.log_path = tmp_path / f"{self.instance}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "shmq.cli", "start", *args]

    def start(self, *args: str) -> Service:
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(self.command(*args), env=self.env, cwd=REPO,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log_file)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict[str, Any] | None:
        return status_of(self.instance)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            assert self.proc is not None and self.proc.poll() is None, \
                f"shmq start exited with {self.proc and self.proc.poll()}:\n{self.log()}"
            report = self.status()
            if report and report["state"] == "ready" and all(
                    p["state"] == "ready" for p in report["processes"]):
                return report
            return None

        report: dict[str, Any] = wait_until(ready, timeout_s, "every role is ready")
        return report

    def role_pids(self, report: dict[str, Any]) -> dict[str, int]:
        return {p["role"]: p["pid"] for p in report["processes"] if p["role"] != "supervisor"}

    def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"shmq start still runs after {timeout_s} s:\n"
                                 f"{self.log()}") from None

    def logged_pids(self) -> set[int]:
        """Every child pid the supervisor reported starting."""
        return {int(p) for p in re.findall(r"started \S+ \(pid (\d+)\)", self.log())}

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in self.logged_pids():
            _kill_if_ours(pid)
        remove_stale(self.instance)


def _kill_if_ours(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        if "shmq.cli" in " ".join(proc.cmdline()):
            proc.kill()
            proc.wait(timeout=5)
    except psutil.Error:
        pass


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(**env: str) -> Service:
        svc = Service(tmp_path / f"s{len(made)}")
        svc.log_path.parent.mkdir(parents=True, exist_ok=True)
        svc.env |= env
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.cleanup()


def assert_nothing_left(svc: Service, pids: set[int]) -> None:
    alive = [pid for pid in pids if is_process_alive(pid)]
    assert not alive, f"processes left behind: {alive}\n{svc.log()}"
    left = shm_leftovers(svc.instance)
    assert not left, f"shared memory left behind: {left}\n{svc.log()}"


# --- the tests --------------------------------------------------------------------------------
def test_start_becomes_ready_with_every_role(service: Callable[..., Service]) -> None:
    svc = service().start()
    report = svc.wait_ready()
    assert [p["role"] for p in report["processes"]] == ["supervisor", *ROLES]
    assert report["supervisor_pid"] == svc.pid
    for pid in svc.role_pids(report).values():
        assert psutil.Process(pid).ppid() == svc.pid
    assert "ready: instance" in svc.log()


def test_print_config_round_trips(service: Callable[..., Service], tmp_path: Path) -> None:
    svc = service()
    out = subprocess.run(svc.command("--print-config", "--writers", "3"), env=svc.env, cwd=REPO,
                         capture_output=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr.decode()
    printed = tmp_path / "printed.toml"
    printed.write_bytes(out.stdout)
    expected = load_config(env=svc.env, overrides={"writers": "3"})
    assert load_config(printed, env={}) == expected
    assert expected.writers == 3 and expected.instance == svc.instance
    assert not svc.data_dir.exists(), "--print-config must not create anything"


def test_kill_9_of_each_role_restarts_it(service: Callable[..., Service]) -> None:
    svc = service().start()
    before = svc.role_pids(svc.wait_ready())
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)

    def all_restarted() -> dict[str, Any] | None:
        report = svc.status()
        if report is None:
            return None
        rows = {p["role"]: p for p in report["processes"]}
        done = all(rows[r]["restarts"] == 1 and rows[r]["state"] == "ready"
                   and rows[r]["pid"] != before[r] for r in ROLES)
        return report if done else None

    report = wait_until(all_restarted, 20, "every killed role is restarted and ready")
    after = svc.role_pids(report)
    log = svc.log()
    for role in ROLES:
        assert after[role] != before[role]
        assert is_process_alive(after[role])
        assert f"{role} (pid {before[role]}) died: killed by SIGKILL" in log
        assert f"started {role} (pid {after[role]}) (restart 1)" in log
    assert report["state"] == "ready"
    assert svc.proc is not None and svc.proc.poll() is None


def test_kill_9_of_the_supervisor_drains_its_children_and_the_next_start_recovers(
        service: Callable[..., Service]) -> None:
    svc = service().start()
    pids = set(svc.role_pids(svc.wait_ready()).values())
    os.kill(svc.pid, signal.SIGKILL)
    assert svc.wait_exit(10) == -signal.SIGKILL
    wait_until(lambda: not any(is_process_alive(pid) for pid in pids), 10,
               "the orphaned children notice and exit")
    assert "proctable" in list_segments(svc.instance), "a killed supervisor leaves segments"
    assert status_of(svc.instance) is None
    svc.start().wait_ready()
    assert re.search(r"removed \d+ stale shared-memory objects", svc.log())


@pytest.mark.parametrize(("role_main", "how"), [
    ("role_killing_itself", "killed by SIGKILL"),
    ("role_raising", "exit code 1"),
])
def test_a_role_that_keeps_dying_stops_the_service(service: Callable[..., Service],
                                                    role_main: str, how: str) -> None:
    svc = service(**{TEST_ROLES_ENV: f"writer-1={THIS}:{role_main}",
                     "SHMQ_SUPERVISOR_MAX_RESTARTS": "2",
                     "SHMQ_SUPERVISOR_RESTART_BACKOFF_S": "0.05"}).start()
    assert svc.wait_exit(30) == 1
    log = svc.log()
    assert f"writer-1 died 3 times in 60 s (last: {how}); stopping; see the log" in log
    if role_main == "role_raising":
        assert "RuntimeError: boom from the test role" in log
    assert len(re.findall(r"started writer-1 \(pid", log)) == 3
    assert_nothing_left(svc, svc.logged_pids())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_drains_and_leaves_nothing(service: Callable[..., Service],
                                               signum: int) -> None:
    svc = service().start()
    report = svc.wait_ready()
    pids = set(svc.role_pids(report).values())
    assert "proctable" in list_segments(svc.instance)
    started = time.monotonic()
    os.kill(svc.pid, signum)
    assert svc.wait_exit(5 + 5) == 0
    assert time.monotonic() - started < 5 + 2
    assert_nothing_left(svc, pids | svc.logged_pids())
    log = svc.log()
    assert "draining" in log and "stopped (exit code 0)" in log
    assert "did not stop" not in log and "killing" not in log
    with open(svc.data_dir / "lock", "rb") as lock:  # released
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert status_of(svc.instance) is None


def test_second_signal_forces_a_fast_stop(service: Callable[..., Service]) -> None:
    svc = service(**{TEST_ROLES_ENV: f"housekeeper={THIS}:role_ignoring_stop",
                     "SHMQ_SUPERVISOR_SHUTDOWN_TIMEOUT_S": "60"}).start()
    report = svc.wait_ready()
    pids = set(svc.role_pids(report).values())
    os.kill(svc.pid, signal.SIGTERM)
    wait_until(lambda: "asked housekeeper" in svc.log(), 10, "the housekeeper is asked to stop")
    with pytest.raises(subprocess.TimeoutExpired):
        assert svc.proc is not None
        svc.proc.wait(timeout=0.5)  # it keeps draining: the housekeeper does not stop
    started = time.monotonic()
    os.kill(svc.pid, signal.SIGTERM)
    assert svc.wait_exit(10) == 0
    assert time.monotonic() - started < 5
    assert "fast stop" in svc.log()
    assert_nothing_left(svc, pids | svc.logged_pids())


def test_drain_timeout_kills_what_is_left(service: Callable[..., Service]) -> None:
    svc = service(**{TEST_ROLES_ENV: f"housekeeper={THIS}:role_ignoring_stop",
                     "SHMQ_SUPERVISOR_SHUTDOWN_TIMEOUT_S": "1"}).start()
    pids = set(svc.role_pids(svc.wait_ready()).values())
    started = time.monotonic()
    os.kill(svc.pid, signal.SIGTERM)
    assert svc.wait_exit(10) == 0
    assert 1.0 <= time.monotonic() - started < 6
    assert re.search(r"housekeeper \(pid \d+\) did not stop within 1 s; killing it", svc.log())
    assert_nothing_left(svc, pids | svc.logged_pids())


def test_second_start_is_refused_while_the_first_runs(service: Callable[..., Service],
                                                      tmp_path: Path) -> None:
    first = service().start()
    before = first.wait_ready()
    same_dir = subprocess.run(first.command(), env=first.env, cwd=REPO, capture_output=True,
                              timeout=30, check=False)
    assert same_dir.returncode == 1, same_dir.stderr.decode()
    assert f"in use by another shmq supervisor (pid {first.pid}" in same_dir.stderr.decode()
    other_dir = first.env | {"SHMQ_DATA_DIR": str(tmp_path / "other")}
    same_instance = subprocess.run(first.command(), env=other_dir, cwd=REPO,
                                   capture_output=True, timeout=30, check=False)
    assert same_instance.returncode == 1, same_instance.stderr.decode()
    assert (f"instance {first.instance!r} is already running (supervisor pid {first.pid})"
            in same_instance.stderr.decode())
    after = first.status()  # the refused starts touched nothing of the first
    assert after is not None and after["state"] == "ready"
    assert first.role_pids(after) == first.role_pids(before)


def test_stale_segments_of_the_instance_are_removed_at_start(
        service: Callable[..., Service]) -> None:
    svc = service()
    Segment.create(svc.instance, "ring.stale", 4096).close()
    create_semaphore(svc.instance, "stale.wake").close()
    assert "ring.stale" in list_segments(svc.instance)
    svc.start().wait_ready()
    assert "ring.stale" not in list_segments(svc.instance)
    assert "stale.wake" not in list_semaphores(svc.instance)
    assert "removed 2 stale shared-memory objects" in svc.log()


def test_systemd_ready_status_watchdog_and_stopping(service: Callable[..., Service]) -> None:
    with NotifyListener() as listener:
        svc = service(**listener.environment(watchdog_usec=2_000_000)).start()
        ready = listener.wait_for("READY", "1", timeout_s=START_TIMEOUT_S)
        assert ready.pid == svc.pid
        assert ready.fields.get("STATUS", "").startswith("ready")
        assert svc.status() is not None
        first = listener.wait_for("WATCHDOG", "1", timeout_s=2.5)
        second = listener.wait_for("WATCHDOG", "1", timeout_s=2.5)
        assert first.pid == second.pid == svc.pid
        os.kill(svc.pid, signal.SIGTERM)
        stopping = listener.wait_for("STOPPING", "1", timeout_s=10)
        assert stopping.pid == svc.pid
        assert svc.wait_exit(10) == 0
        assert {m.pid for m in listener.messages} == {svc.pid}, "only the supervisor notifies"


def test_watchdog_is_withheld_while_a_heartbeat_is_stale(
        service: Callable[..., Service]) -> None:
    with NotifyListener() as listener:
        svc = service(**listener.environment(watchdog_usec=1_000_000),
                      **{TEST_ROLES_ENV: f"housekeeper={THIS}:role_without_heartbeats"}).start()
        listener.wait_for("READY", "1", timeout_s=START_TIMEOUT_S)
        listener.wait_for("WATCHDOG", "1", timeout_s=2)  # fresh at first
        wait_until(lambda: re.search(r"housekeeper \(pid \d+\) sent no heartbeat", svc.log()),
                   10, "the stale heartbeat is logged")
        with contextlib.suppress(NotifyTimeout):  # pings sent before it went stale
            while True:
                listener.receive(timeout_s=0.05)
        with pytest.raises(NotifyTimeout):
            listener.wait_for("WATCHDOG", "1", timeout_s=1.5)


def test_idle_cpu_stays_near_zero(service: Callable[..., Service]) -> None:
    svc = service().start()
    report = svc.wait_ready()
    procs = [psutil.Process(p["pid"]) for p in report["processes"]]
    time.sleep(1.0)  # let start-up work (prefaulting the first segment) settle
    for proc in procs:
        proc.cpu_percent(None)
    time.sleep(2.0)
    total = sum(proc.cpu_percent(None) for proc in procs)
    assert total < 10.0, f"idle service uses {total:.1f}% of a core"


# --- test roles, injected through SHMQTEST_ROLES -------------------------------------------
def role_killing_itself(ctx: RoleContext) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def role_raising(ctx: RoleContext) -> None:
    raise RuntimeError("boom from the test role")


def role_ignoring_stop(ctx: RoleContext) -> None:
    """Ready, heartbeating, and deaf to SIGTERM (only SIGKILL ends it)."""
    ctx.set_ready()
    while True:
        ctx.heartbeat()
        time.sleep(0.1)


def role_without_heartbeats(ctx: RoleContext) -> None:
    """Ready, but never sends a heartbeat (a hung role); stops when asked."""
    ctx.set_ready()
    while not ctx.should_stop():
        time.sleep(0.05)
