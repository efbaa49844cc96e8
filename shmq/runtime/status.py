"""`shmq status`: what a running instance is doing, read from shared memory and files (no TCP).

Theory of operation
-------------------
`collect_status(instance)` attaches the supervisor's process table and info document
(proctable.py), copies them out and detaches; it never writes to them. It then adds, from
outside the shared memory:

* per process: CPU% over `cpu_interval_s` and RSS, from psutil (None for a process that is
  not running, such as a role waiting for its restart);
* the data dir's file system (psutil.disk_usage) and the bytes the store occupies on disk;
* the commit log's positions: `claimed` (the next append offset) read from `store/claims`
  with a read-only `struct` unpack at `store.layout.CLAIMS_CLAIMED_OFFSET`, and the checkpoint's
  `flushed` offset (`CheckpointFile.read()`);
* extra sections: callables `(instance, info) -> dict` whose keys are merged into the report
  (the broker adds ring depths and per-writer rates through `status_sections()` in
  `shmq.broker.roles`, picked up by `default_sections()`).

An instance is "running" when its process table exists and names a live supervisor;
otherwise `InstanceNotRunning` says which of the two is missing. `format_status` renders the
report for people; `--json` prints the report itself, one object:

    {"instance", "state", "version", "supervisor_pid", "data_dir", "uptime_s",
     "processes": [{"pid", "role", "state", "uptime_s", "restarts", "cpu_percent",
                    "rss_bytes", "heartbeat_age_s"}, ...],
     "disk": {"path", "total_bytes", "used_bytes", "free_bytes", "used_percent",
              "store_bytes"},
     "commitlog": {"claimed_offset", "flushed_offset", "unflushed_bytes"},
     ...extra sections, "section_errors" if a section failed}
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import psutil

from shmq.errors import IpcError, ShmqError
from shmq.ipc.errors import SegmentMissing
from shmq.ipc.wakeup import is_process_alive
from shmq.runtime.proctable import (
    INFO_NAME,
    SUPERVISOR_ROW,
    ProcessRecord,
    ProcessTable,
    ProcState,
    SharedDocument,
)
from shmq.store import layout
from shmq.store.checkpoint import CheckpointFile
from shmq.store.store import store_paths

__all__ = [
    "DEFAULT_CPU_INTERVAL_S",
    "InstanceNotRunning",
    "StatusSection",
    "collect_status",
    "default_sections",
    "format_status",
]

#: An extra section: `(instance, info document) -> {key: JSON-serialisable value}`.
StatusSection = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]

DEFAULT_CPU_INTERVAL_S: Final = 0.2  #: how long CPU use is sampled
_CLAIMS_WORD: Final = struct.Struct(">q")  #: claims fields are big-endian (store/layout.py)
_CLAIMS_MAGIC_WORD: Final = struct.Struct(">Q")
_STOPPED_STATES: Final = (ProcState.EMPTY, ProcState.STOPPED, ProcState.FAILED)


class InstanceNotRunning(ShmqError):
    """No supervisor of `instance` runs on this host."""

    def __init__(self, instance: str, reason: str) -> None:
        super().__init__(f"instance {instance!r} is not running: {reason}")
        self.instance, self.reason = instance, reason


def collect_status(instance: str, *, sections: Sequence[StatusSection] = (),
                   cpu_interval_s: float = DEFAULT_CPU_INTERVAL_S) -> dict[str, Any]:
    """The status report of `instance` (shape in the module docstring).

    Raises:
        InstanceNotRunning: no process table, or its supervisor is gone.
        InvalidName: `instance` cannot name an instance.
    """
    records, info = _read_shared(instance)
    supervisor = records[SUPERVISOR_ROW]
    if not is_process_alive(supervisor.pid):
        raise InstanceNotRunning(instance, f"its supervisor (pid {supervisor.pid}) is gone; "
                                           f"the next `shmq start` removes what it left")
    data_dir = Path(str(info.get("data_dir", "")))
    report: dict[str, Any] = {
        "instance": instance,
        "state": supervisor.state.label,
        "version": info.get("version"),
        "supervisor_pid": supervisor.pid,
        "data_dir": str(data_dir),
        "uptime_s": round(supervisor.uptime_s(), 3),
        "processes": _processes(records, cpu_interval_s),
        "disk": _disk(data_dir),
        "commitlog": _commitlog(data_dir / "store"),
    }
    _add_sections(report, instance, info, sections)
    return report


def _read_shared(instance: str) -> tuple[list[ProcessRecord], dict[str, Any]]:
    try:
        with ProcessTable.attach(instance) as table:
            records = table.records()
        with SharedDocument.attach(instance, INFO_NAME) as doc:
            info = doc.read()
    except SegmentMissing as err:
        raise InstanceNotRunning(instance, f"no shared-memory segment {err.posix_name}") from err
    except IpcError as err:
        raise InstanceNotRunning(instance, f"its shared memory is unreadable ({err})") from err
    return records, info


def _processes(records: Sequence[ProcessRecord], cpu_interval_s: float) -> list[dict[str, Any]]:
    running = {r.row: _process(r) for r in records if r.state not in _STOPPED_STATES}
    for proc in running.values():
        _cpu_percent(proc)  # the first call starts the measurement
    if any(running.values()):
        time.sleep(max(cpu_interval_s, 0.0))
    now_ns = time.monotonic_ns()
    out = []
    for r in records:
        proc = running.get(r.row)
        out.append({
            "pid": r.pid, "role": r.role, "state": r.state.label,
            "uptime_s": round(r.uptime_s(now_ns), 3) if proc else 0.0,
            "restarts": r.restarts,
            "cpu_percent": _cpu_percent(proc),
            "rss_bytes": _rss(proc),
            "heartbeat_age_s": round(r.heartbeat_age_s(now_ns), 3) if proc else None,
        })
    return out


def _process(record: ProcessRecord) -> psutil.Process | None:
    if record.pid <= 0:
        return None
    try:
        return psutil.Process(record.pid)
    except psutil.Error:
        return None


def _cpu_percent(proc: psutil.Process | None) -> float | None:
    if proc is None:
        return None
    try:
        return float(proc.cpu_percent(None))
    except psutil.Error:
        return None


def _rss(proc: psutil.Process | None) -> int | None:
    if proc is None:
        return None
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return None


def _disk(data_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(data_dir), "store_bytes": _allocated_bytes(data_dir /
                                                                                   "store")}
    try:
        usage = psutil.disk_usage(str(data_dir))
    except OSError:
        return out | {"total_bytes": None, "used_bytes": None, "free_bytes": None,
                      "used_percent": None}
    return out | {"total_bytes": usage.total, "used_bytes": usage.used,
                  "free_bytes": usage.free, "used_percent": usage.percent}


def _allocated_bytes(root: Path) -> int:
    """Bytes allocated on disk to the files under `root` (preallocated segments count whole)."""
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except FileNotFoundError:
                continue  # deleted meanwhile (retention)
    return total


def _commitlog(root: Path) -> dict[str, Any]:
    paths = store_paths(root)
    claimed = _read_claimed(paths.claims)
    flushed = _read_flushed(paths.checkpoint)
    unflushed = claimed - flushed if claimed is not None and flushed is not None else None
    return {"claimed_offset": claimed, "flushed_offset": flushed, "unflushed_bytes": unflushed}


def _read_claimed(path: Path) -> int | None:
    """The claim table's `claimed` offset, read-only; None when missing or not initialised."""
    try:
        with open(path, "rb") as f:
            head = f.read(layout.CLAIMS_SLOTS_OFFSET)
    except OSError:
        return None
    if len(head) < layout.CLAIMS_CLAIMED_OFFSET + _CLAIMS_WORD.size:
        return None
    (magic,) = _CLAIMS_MAGIC_WORD.unpack_from(head, layout.CLAIMS_MAGIC_OFFSET)
    if magic != layout.CLAIMS_MAGIC:
        return None
    return int(_CLAIMS_WORD.unpack_from(head, layout.CLAIMS_CLAIMED_OFFSET)[0])


def _read_flushed(path: Path) -> int | None:
    if not path.exists():
        return None
    try:
        ckpt = CheckpointFile(path)
    except OSError:
        return None
    try:
        return ckpt.read().flushed_offset
    finally:
        ckpt.close()


def _add_sections(report: dict[str, Any], instance: str, info: Mapping[str, Any],
                  sections: Sequence[StatusSection]) -> None:
    errors = []
    for section in sections:
        name = getattr(section, "__qualname__", repr(section))
        try:
            extra = dict(section(instance, info))
        except (ShmqError, OSError, ValueError, KeyError) as err:
            errors.append(f"{name}: {err}")
            continue
        clash = sorted(set(extra) & set(report))
        if clash:
            errors.append(f"{name}: keys {clash} are taken")
            continue
        report.update(extra)
    if errors:
        report["section_errors"] = errors


def default_sections() -> list[StatusSection]:
    """The extra sections other packages offer: `shmq.broker.roles.status_sections()`."""
    try:
        broker = importlib.import_module("shmq.broker.roles")
    except ModuleNotFoundError as err:
        if err.name != "shmq.broker.roles":  # it exists, but an import inside it fails: a bug
            raise
        return []
    provider = getattr(broker, "status_sections", None)
    return list(provider()) if provider is not None else []


# --- for people -------------------------------------------------------------------------------
def format_status(report: Mapping[str, Any]) -> str:
    """`report` as a few lines of text: header, data dir, commit log, process table, extras."""
    header = (f"instance {report['instance']}: {report['state']} (supervisor pid "
              f"{report['supervisor_pid']}, up {_duration(report['uptime_s'])}, shmq "
              f"{report['version']})")
    columns = (f"{'ROLE':<14}{'PID':>8}  {'STATE':<10}{'UPTIME':>9}{'RESTARTS':>10}"
               f"{'CPU%':>7}{'RSS':>11}")
    lines = [header, _disk_line(report["disk"]), _commitlog_line(report["commitlog"]), "",
             columns]
    for p in report["processes"]:
        cpu = "-" if p["cpu_percent"] is None else f"{p['cpu_percent']:.1f}"
        lines.append(f"{p['role']:<14}{p['pid']:>8}  {p['state']:<10}"
                     f"{_duration(p['uptime_s']):>9}{p['restarts']:>10}{cpu:>7}"
                     f"{_size(p['rss_bytes']):>11}")
    known = {"instance", "state", "version", "supervisor_pid", "data_dir", "uptime_s",
             "processes", "disk", "commitlog"}
    extras = [f"{key}: {json.dumps(value, sort_keys=True)}" for key, value in report.items()
              if key not in known]
    return "\n".join(lines + ([""] + extras if extras else [])) + "\n"


def _disk_line(disk: Mapping[str, Any]) -> str:
    line = f"data dir {disk['path']}: store {_size(disk['store_bytes'])} on disk"
    if disk.get("free_bytes") is None:
        return line
    return (f"{line}; file system {_size(disk['free_bytes'])} free of "
            f"{_size(disk['total_bytes'])} ({disk['used_percent']:.1f}% used)")


def _commitlog_line(commitlog: Mapping[str, Any]) -> str:
    def show(value: int | None) -> str:
        return "unknown" if value is None else str(value)

    return (f"commit log: claimed offset {show(commitlog['claimed_offset'])}, flushed offset "
            f"{show(commitlog['flushed_offset'])}")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
