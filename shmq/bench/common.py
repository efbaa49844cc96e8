"""Helpers shared by the benchmarks: medians and spreads, JSON lines, a broker on free ports,
the raw-copy ceiling."""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import statistics
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shmq.ipc.segment import remove_stale
from shmq.runtime.launcher import free_port, start_broker
from shmq.store.segments import MADV_POPULATE_WRITE

__all__ = ["copy_ceiling", "emit", "median_of", "running_broker", "spread_of"]


def median_of(runs: Iterable[dict[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    runs = list(runs)
    return {k: statistics.median(r[k] for r in runs) for k in keys if all(k in r for r in runs)}


def spread_of(runs: Iterable[dict[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    """`<key>_min` and `<key>_max` over `runs` of each key that every run has."""
    runs = list(runs)
    spread = {}
    for k in keys:
        if runs and all(k in r for r in runs):
            spread[f"{k}_min"] = min(r[k] for r in runs)
            spread[f"{k}_max"] = max(r[k] for r in runs)
    return spread


@contextlib.contextmanager
def running_broker(tmp: Path, writers: int, prefix: str) -> Iterator[tuple[str, str]]:
    """A `shmq start` on free ports with its data in `tmp`; yields (broker address, name server
    address) once it is ready, and stops it (and removes whatever shared memory a broker that
    died left) on the way out, whatever happened."""
    broker_port, namesrv_port = free_port(), free_port()
    broker = start_broker(tmp, writers=writers, instance=f"{prefix}{uuid.uuid4().hex[:10]}", env={
        "SHMQ_BROKER_PORT": str(broker_port), "SHMQ_NAMESRV_PORT": str(namesrv_port)})
    try:
        broker.wait_ready(60)
        yield f"127.0.0.1:{broker_port}", f"127.0.0.1:{namesrv_port}"
    finally:
        try:
            broker.stop()
        finally:
            remove_stale(broker.instance)


def emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, sort_keys=True), flush=True)
    else:
        items = ", ".join(f"{k}={_fmt(v)}" for k, v in obj.items())
        print(items, flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if v < 100 else f"{v:,.0f}"
    return str(v)


def copy_ceiling(directory: Path, chunk_bytes: int, total_bytes: int) -> float:
    """MB/s of a raw numpy copy of `total_bytes` — as many distinct bytes as the benchmark
    appended, so the source is no more cache-hot than the appender's — in `chunk_bytes`
    pieces into a populated mmap'd file: what the hardware allows an appender at best."""
    path = directory / "ceiling.bin"
    size = -(-total_bytes // chunk_bytes) * chunk_bytes
    src = np.arange(size, dtype=np.uint64).view(np.uint8)[:size]  # touched, distinct bytes
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        mm = mmap.mmap(fd, size)
        try:
            mm.madvise(MADV_POPULATE_WRITE, 0, size)
        except OSError:
            pass
        dst = np.frombuffer(mm, dtype=np.uint8)
        t0 = time.perf_counter()
        for pos in range(0, size, chunk_bytes):
            dst[pos : pos + chunk_bytes] = src[pos : pos + chunk_bytes]
        elapsed = time.perf_counter() - t0
        del dst
        mm.close()
    finally:
        os.close(fd)
        path.unlink()
    return size / elapsed / 1e6
