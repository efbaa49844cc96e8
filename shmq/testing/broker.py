"""A real `shmq start` for tests, on a temporary data dir and a unique instance name.

    with running_broker(tmp_path, writers=2) as broker:
        with LocalProducer(broker.instance) as p: ...

On exit it sends SIGTERM, waits for the supervisor, and checks that no process and no
shared-memory object of the instance is left. When the broker fails to start, the log it wrote
is in the exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from shmq.ipc.segment import list_segments, list_semaphores, remove_stale
from shmq.runtime.launcher import BrokerProcess, start_broker, wait_until

__all__ = ["BrokerProcess", "running_broker", "start_broker", "wait_until"]


@contextmanager
def running_broker(tmp_path: Path, **kwargs: Any) -> Iterator[BrokerProcess]:
    broker = start_broker(tmp_path, **kwargs)
    try:
        broker.wait_ready()
        yield broker
    finally:
        try:
            code = broker.stop()
        finally:
            leftovers = _leftovers(broker)
            remove_stale(broker.instance)
        assert code == 0, f"shmq start exited with {code}:\n{broker.log()}"
        assert not leftovers, f"left behind: {leftovers}\n{broker.log()}"


def _leftovers(broker: BrokerProcess) -> list[str]:
    left = list_segments(broker.instance) + list_semaphores(broker.instance)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if broker.instance in cmd and proc.pid != os.getpid():
            left.append(f"process {proc.pid}: {cmd}")
    return left
