"""Start a real `shmq start` in a subprocess (for tests and benchmarks): a unique instance
name, a data dir of the caller's choosing, readiness from the process table, and the log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shmq.runtime.status import InstanceNotRunning, collect_status

__all__ = ["SMALL_ENV", "BrokerProcess", "start_broker", "wait_until"]

#: Small, fast settings for tests and benchmarks (a 4 MiB ring carries 2 MiB records: bodies up to 1 MiB).
SMALL_ENV = {
    "SHMQ_STORE_SEGMENT_BYTES": str(64 << 20),
    "SHMQ_STORE_CQ_ENTRIES_PER_FILE": "100000",
    "SHMQ_STORE_MIN_FREE_BYTES": "0",
    "SHMQ_BROKER_MAX_BODY_BYTES": str(1 << 20),
    "SHMQ_SUPERVISOR_RESTART_BACKOFF_S": "0.2",
    "SHMQ_STORE_INDEX_SLOTS": "1000",
    "SHMQ_STORE_INDEX_MAX_ENTRIES": "100000",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (and its VIP twin, port - 2, as the acceptor binds
    both)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port > 1026 and _is_free(port - 2):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(cond: Any, timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll `cond()` until it returns something truthy; raise TimeoutError after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout_s} s")
        time.sleep(0.02)


@dataclass
class BrokerProcess:
    instance: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        return collect_status(self.instance, cpu_interval_s=0.0)

    def pid_of(self, role: str) -> int:
        return int(next(p["pid"] for p in self.status()["processes"] if p["role"] == role))

    def is_ready(self) -> bool:
        try:
            report = self.status()
        except InstanceNotRunning:
            return False
        return bool(report["state"] == "ready")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"shmq start exited with {self.proc.returncode}:\n{self.log()}")
            return self.is_ready()
        wait_until(ready, timeout_s, "broker ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise


def start_broker(tmp_path: Path, *, writers: int = 2, env: dict[str, str] | None = None,
                 instance: str | None = None) -> BrokerProcess:
    instance = instance or f"t{uuid.uuid4().hex[:10]}"
    data_dir = tmp_path / f"data-{instance}"
    log_path = tmp_path / f"broker-{instance}.log"
    # Free ports unless the caller chose them: tests never bind the default 9876/10911.
    ports = {"SHMQ_NAMESRV_PORT": str(free_port()), "SHMQ_BROKER_PORT": str(free_port())}
    full_env = {**os.environ, **SMALL_ENV, **ports, **(env or {})}  # later ones win
    full_env.pop("NOTIFY_SOCKET", None)
    cmd = [sys.executable, "-m", "shmq.cli", "start", "--instance", instance,
           "--data-dir", str(data_dir), "--writers", str(writers)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    return BrokerProcess(instance, data_dir, proc, log_path, full_env)
