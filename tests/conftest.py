"""Suite-wide hygiene: no shmq process or shared-memory segment may outlive the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest


def _shm_segments() -> set[str]:
    shm = Path("/dev/shm")
    return {p.name for p in shm.glob("shmq.*")} if shm.is_dir() else set()


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers() -> Iterator[None]:
    before = _shm_segments()
    yield
    me = psutil.Process(os.getpid())
    children = me.children(recursive=True)
    for child in children:
        child.kill()
    leaked = _shm_segments() - before
    assert not children, f"test suite left child processes: {[c.pid for c in children]}"
    assert not leaked, f"test suite left shared-memory segments: {sorted(leaked)}"
