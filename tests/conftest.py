"""Suite-wide hygiene: no shmq process or shared-memory segment may outlive the tests.

A segment (or semaphore, or FIFO bell) that appeared in /dev/shm during the session counts as
ours unless another process, neither this one nor one of its (killed) children, maps or holds
open an object of the same instance at the end: that is another suite or broker running on the
same machine, whose objects come and go on their own schedule.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest


def _shm_segments() -> set[str]:
    shm = Path("/dev/shm")
    return {p.name for p in shm.glob("shmq.*")} if shm.is_dir() else set()


def _held_by_others() -> set[str]:
    """/dev/shm names that processes other than this one map or hold open."""
    held: set[str] = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/maps") as maps:
                for line in maps:
                    at = line.find("/dev/shm/")
                    if at >= 0:
                        held.add(line[at + 9:].split()[0])
            for fd in os.listdir(f"/proc/{entry}/fd"):
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    held.add(target[9:].split()[0])
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return held


def _instance_of(name: str) -> str:
    """The instance part of "shmq.<instance>.<rest>" or "sem.shmq.<instance>.<rest>"."""
    parts = name.split(".")
    return parts[2] if parts[0] == "sem" and len(parts) > 2 else parts[1] if len(parts) > 1 else name


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers() -> Iterator[None]:
    before = _shm_segments()
    yield
    me = psutil.Process(os.getpid())
    children = me.children(recursive=True)
    for child in children:
        child.kill()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.wait(5)
    leaked = _shm_segments() - before
    foreign = {_instance_of(name) for name in _held_by_others()}
    leaked = {name for name in leaked if _instance_of(name) not in foreign}
    assert not children, f"test suite left child processes: {[c.pid for c in children]}"
    assert not leaked, f"test suite left shared-memory segments: {sorted(leaked)}"
