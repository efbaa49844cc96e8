"""Helpers shared by the benchmarks: medians, JSON lines, the raw-copy ceiling."""

from __future__ import annotations

import json
import mmap
import os
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from shmq.store.segments import MADV_POPULATE_WRITE

__all__ = ["copy_ceiling", "emit", "median_of"]


def median_of(runs: Iterable[dict[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    runs = list(runs)
    return {k: statistics.median(r[k] for r in runs) for k in keys if all(k in r for r in runs)}


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
