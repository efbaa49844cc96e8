"""`shmq status`: the JSON shape, the human output, extra sections, and "not running".

Most tests build a stand-in instance in this process (a process table and info document whose
processes are this test process, over a real store directory), so they need no service; one
test runs `shmq status` as a subprocess against a real `shmq start`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from shmq import __version__
from shmq.cli import main
from shmq.ipc.segment import remove_stale
from shmq.runtime.proctable import (
    INFO_NAME,
    SUPERVISOR_ROW,
    ProcessTable,
    ProcState,
    SharedDocument,
)
from shmq.runtime.status import collect_status
from shmq.store.recovery import recover
from shmq.store.store import MessageStore
from tests.runtime.test_supervisor import REPO, ROLES, Service, service, shm_leftovers
from tests.store.helpers import SMALL

__all__ = ["service"]  # the fixture, shared with test_supervisor

PROCESS_KEYS = {"pid", "role", "state", "uptime_s", "restarts", "cpu_percent", "rss_bytes",
                "heartbeat_age_s"}
TOP_KEYS = {"instance", "state", "version", "supervisor_pid", "data_dir", "uptime_s",
            "processes", "disk", "commitlog"}
FAKE_ROLES = ["writer-0", "writer-1", "housekeeper"]


class FakeInstance:
    """The shared memory of a running instance, with this process standing in for all."""

    def __init__(self, data_dir: Path, supervisor_pid: int) -> None:
        self.name = f"st{uuid.uuid4().hex[:16]}"
        self.table = ProcessTable.create(self.name, FAKE_ROLES)
        for row in range(len(FAKE_ROLES) + 1):
            self.table.mark_starting(row, restarts=row)
            self.table.set_pid(row, supervisor_pid if row == SUPERVISOR_ROW else os.getpid())
            self.table.set_state(row, ProcState.READY)
        self.info = SharedDocument.create(self.name, INFO_NAME, {
            "instance": self.name, "data_dir": str(data_dir), "version": __version__,
            "state": "ready"})

    def close(self) -> None:
        for segment in (self.table, self.info):
            segment.unlink()
            segment.detach()
        remove_stale(self.name)


@pytest.fixture
def store_dir(tmp_path: Path) -> tuple[Path, int]:
    """A data dir whose store holds two records (claimed > 0), never flushed past 0."""
    root = tmp_path / "store"
    recover(root, SMALL)
    with MessageStore(root, SMALL, writer_slot=0) as store:
        store.put("T", 0, [b"a" * 40, b"b" * 40], [b""] * 2)
    claimed = int.from_bytes((root / "claims").read_bytes()[8:16], "big")
    return tmp_path, claimed


@pytest.fixture
def fake(store_dir: tuple[Path, int]) -> Iterator[FakeInstance]:
    instance = FakeInstance(store_dir[0], os.getpid())
    yield instance
    instance.close()
    assert not shm_leftovers(instance.name)


def run_status(*args: str) -> Any:
    return CliRunner().invoke(main, ["status", "--cpu-interval", "0.05", *args])


def test_json_shape(fake: FakeInstance, store_dir: tuple[Path, int]) -> None:
    result = run_status("--json", "--instance", fake.name)
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1, "one JSON object on one line"
    report = json.loads(result.output)
    assert TOP_KEYS <= set(report)
    assert report["instance"] == fake.name and report["state"] == "ready"
    assert report["supervisor_pid"] == os.getpid() and report["version"] == __version__
    assert [p["role"] for p in report["processes"]] == ["supervisor", *FAKE_ROLES]
    for row, proc in enumerate(report["processes"]):
        assert set(proc) == PROCESS_KEYS
        assert proc["pid"] == os.getpid() and proc["state"] == "ready"
        assert proc["restarts"] == row
        assert isinstance(proc["cpu_percent"], float) and proc["rss_bytes"] > 1 << 20
        assert 0 <= proc["uptime_s"] < 60
    disk = report["disk"]
    assert disk["path"] == str(store_dir[0]) and disk["store_bytes"] > 0
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]
    claimed = store_dir[1]
    assert claimed > 0
    assert report["commitlog"] == {"claimed_offset": claimed, "flushed_offset": 0,
                                   "unflushed_bytes": claimed}


def test_a_stopped_process_has_no_cpu_or_rss(fake: FakeInstance) -> None:
    row = fake.table.row_of("writer-1")
    fake.table.mark_exited(row, ProcState.FAILED, -9)
    report = collect_status(fake.name, cpu_interval_s=0)
    writer = report["processes"][row]
    assert writer["state"] == "failed"
    assert writer["cpu_percent"] is None and writer["rss_bytes"] is None
    assert writer["uptime_s"] == 0.0


def test_human_output_mentions_every_role(fake: FakeInstance) -> None:
    result = run_status("--instance", fake.name)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"instance {fake.name}: ready" in text
    for role in ["supervisor", *FAKE_ROLES]:
        assert any(line.startswith(role + " ") for line in text.splitlines()), role
    assert "commit log: claimed offset" in text and "data dir" in text


def test_extra_sections_are_merged_and_failures_reported(fake: FakeInstance) -> None:
    seen: list[tuple[str, str]] = []

    def rings(instance: str, info: Any) -> dict[str, Any]:
        seen.append((instance, info["instance"]))
        return {"rings": {"writer-0": {"depth_bytes": 128}}}

    def broken(instance: str, info: Any) -> dict[str, Any]:
        raise KeyError("no such ring")

    def clashing(instance: str, info: Any) -> dict[str, Any]:
        return {"state": "hijacked"}

    sections: list[Callable[[str, Any], Any]] = [rings, broken, clashing]
    report = collect_status(fake.name, sections=sections, cpu_interval_s=0)
    assert seen == [(fake.name, fake.name)]
    assert report["rings"] == {"writer-0": {"depth_bytes": 128}}
    assert report["state"] == "ready"
    errors = report["section_errors"]
    assert len(errors) == 2 and "no such ring" in errors[0] and "taken" in errors[1]


def test_unknown_instance_exits_1() -> None:
    name = f"st{uuid.uuid4().hex[:16]}"
    result = run_status("--instance", name)
    assert result.exit_code == 1
    assert f"instance {name!r} is not running" in result.output
    assert run_status("--json", "--instance", name).exit_code == 1


def test_instance_whose_supervisor_is_gone_exits_1(store_dir: tuple[Path, int]) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    instance = FakeInstance(store_dir[0], dead.pid)
    try:
        result = run_status("--json", "--instance", instance.name)
    finally:
        instance.close()
    assert result.exit_code == 1
    assert f"its supervisor (pid {dead.pid}) is gone" in result.output


def test_status_command_against_a_running_service(service: Callable[..., Service]) -> None:
    svc = service().start()
    svc.wait_ready()
    out = subprocess.run([sys.executable, "-m", "shmq.cli", "status", "--json"], env=svc.env,
                         cwd=REPO, capture_output=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["instance"] == svc.instance and report["state"] == "ready"
    assert [p["role"] for p in report["processes"]] == ["supervisor", *ROLES]
    assert report["processes"][0]["pid"] == svc.pid
    assert all(p["rss_bytes"] > 0 for p in report["processes"])
    # each child names itself after its role, for ps/top (15 bytes at most: the kernel's limit)
    names = {p["role"]: psutil.Process(p["pid"]).name() for p in report["processes"][1:]}
    assert names == {role: f"shmq-{role}"[:15] for role in ROLES}
    assert report["commitlog"]["claimed_offset"] == 0
    human = subprocess.run([sys.executable, "-m", "shmq.cli", "status"], env=svc.env, cwd=REPO,
                           capture_output=True, timeout=30, check=False, text=True)
    assert human.returncode == 0, human.stderr
    for role in ROLES:
        assert role in human.stdout
