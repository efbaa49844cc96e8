"""Helpers shared by the ipc tests: unique instance names, leftover checks, waiting."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Callable
from typing import Final

from shmq.ipc.segment import SHM_DIR

#: Every instance made by this test session starts with this, so the session-end check finds
#: exactly our objects (other sessions may run in parallel on the same machine).
SESSION_TAG: Final = f"ipct{uuid.uuid4().hex[:8]}"


#: How the tests start child processes. 'fork' rather than 'spawn': spawn starts
#: multiprocessing's resource tracker, a process that would outlive the test.
CTX: Final = multiprocessing.get_context("fork")


def unique_instance() -> str:
    """A fresh instance name for one test (or one Hypothesis example)."""
    return f"{SESSION_TAG}-{uuid.uuid4().hex[:10]}"


def leftovers(prefix: str) -> list[str]:
    """/dev/shm entries (segments and semaphores) whose shmq name starts with `prefix`."""
    wanted = (f"shmq.{prefix}", f"sem.shmq.{prefix}")
    return sorted(entry for entry in os.listdir(SHM_DIR) if entry.startswith(wanted))


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Return when `condition()` holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.001)
