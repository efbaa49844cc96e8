"""`shmq bench store`: append and read-back throughput of the storage engine.

Each run uses a fresh store in a temporary directory, W writer processes (forked) appending
batches to the queues they own, and a helper process populating segments ahead of them (as the
runtime's housekeeper does). Messages carry realistic properties (UNIQ_KEY, TAGS, KEYS);
building them is the producer's work and is done before the clock starts. The ceiling is a raw
numpy copy of the same number of bytes into a warm mmap'd file, measured in the same run.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from shmq.bench.common import copy_ceiling, emit, median_of
from shmq.message.encoder import encode_batch
from shmq.message.taghash import tag_hash
from shmq.store.config import FlushMode, StoreConfig
from shmq.store.prefault import Prefaulter
from shmq.store.recovery import recover
from shmq.store.store import MessageStore

__all__ = ["run_matrix", "run_once"]

TOPIC = "BenchTopic"
QUEUES_PER_WRITER = 4
FIGURES = ("msgs_per_s", "mb_per_s", "ceiling_mb_per_s", "ratio_to_ceiling", "read_msgs_per_s",
           "prefault_mb_per_s")


def _messages(count: int, size: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    rng = np.random.default_rng(seed)
    body = rng.bytes(size)
    bodies = [body] * count
    props = []
    for i in range(count):
        tag = b"TagA" if i % 2 == 0 else b"TagB"
        props.append(
            b"UNIQ_KEY\x01%032X\x02TAGS\x01%s\x02KEYS\x01k%d\x02WAIT\x01true\x02"
            % (seed * 1_000_000_007 + i, tag, i)
        )
    return bodies, props


def _writer(root: str, cfg: StoreConfig, slot: int, writers: int, count: int, size: int,
            batch: int, encode: str, start_evt: Any, done_q: Any, ready_q: Any) -> None:
    bodies, props = _messages(count, size, slot + 1)
    tags = np.asarray([tag_hash("TagA" if i % 2 == 0 else "TagB") for i in range(count)],
                      dtype=np.int64)
    queues = [slot + writers * k for k in range(QUEUES_PER_WRITER)]
    with MessageStore(Path(root), cfg, writer_slot=slot) as store:
        for q in queues:
            store.queue(TOPIC, q)
        chunks = [(queues[i % len(queues)], lo, min(count, lo + batch))
                  for i, lo in enumerate(range(0, count, batch))]
        if encode == "producer":  # as with LocalProducer: records encoded before the writer
            host = store.commitlog.store_host
            encoded = [encode_batch(TOPIC.encode(), q, bodies[lo:hi], props[lo:hi],
                                    born_timestamp_ms=1, born_host=host, store_host=host)
                       for q, lo, hi in chunks]
        ready_q.put(slot)  # prepared: the clock may start
        start_evt.wait()
        t0 = time.perf_counter()
        if encode == "producer":
            for (q, lo, hi), enc in zip(chunks, encoded):
                store.put_encoded(TOPIC, q, enc, tags[lo:hi])
        else:
            for q, lo, hi in chunks:
                store.put(TOPIC, q, bodies[lo:hi], props[lo:hi], tag_hashes=tags[lo:hi])
        done_q.put((slot, time.perf_counter() - t0))


def _prefaulter(root: str, cfg: StoreConfig, ahead: int, stop_evt: Any, ready: Any) -> None:
    """Populate `ahead` bytes of segments, say how fast, then keep ahead until stopped."""
    pf = Prefaulter(Path(root), cfg, ahead_bytes=ahead)
    try:
        t0 = time.perf_counter()
        while pf.step():
            pass
        ready.put(ahead / (time.perf_counter() - t0) / 1e6)
        while not stop_evt.is_set():
            if not pf.step():
                time.sleep(0.002)
    finally:
        pf.close()


def run_once(*, size: int, messages: int, writers: int, flush: FlushMode, batch: int,
             directory: Path | None = None, segment_bytes: int = 1 << 30,
             encode: str = "writer") -> dict[str, Any]:
    """One benchmark run; returns its figures. `encode`: "writer" times encoding (CRC
    included) and appending in the writer; "producer" encodes before the clock starts, as
    the runtime does (LocalProducer and the acceptor encode, writers only append)."""
    tmp = Path(tempfile.mkdtemp(prefix="shmq-bench-", dir=directory))
    try:
        return _run(tmp, size, messages, writers, flush, batch, segment_bytes, encode)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(tmp: Path, size: int, messages: int, writers: int, flush: FlushMode, batch: int,
         segment_bytes: int, encode: str) -> dict[str, Any]:
    root = tmp / "store"
    cfg = replace(StoreConfig(), segment_bytes=segment_bytes, flush=flush, min_free_bytes=0,
                  writer_slots=8)
    recover(root, cfg)
    ctx = mp.get_context("fork")
    start_evt, stop_evt, done_q, ready = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    writers_ready = ctx.Queue()
    # Segments are populated off the hot path, ahead of the writers, as the runtime's
    # housekeeper does; the clock starts once the helper is ahead of the whole run.
    ahead = messages * (size + 200) + (64 << 20)
    helper = ctx.Process(target=_prefaulter, args=(str(root), cfg, ahead, stop_evt, ready),
                         daemon=True)
    helper.start()
    per = messages // writers
    procs = [ctx.Process(target=_writer, args=(str(root), cfg, w, writers, per, size, batch,
                                               encode, start_evt, done_q, writers_ready),
                         daemon=True)
             for w in range(writers)]
    for p in procs:
        p.start()
    prefault_mb_per_s = ready.get(timeout=600)
    for _ in procs:
        writers_ready.get(timeout=600)
    t0 = time.perf_counter()
    start_evt.set()
    times = [done_q.get(timeout=600)[1] for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    stop_evt.set()
    helper.join(30)
    total = per * writers
    with MessageStore(root, cfg, writer_slot=0) as store:
        end = store.claims.committed() if store.claims else 0
        read = _read_back(store, writers)
    record_bytes = end / total
    ceiling = copy_ceiling(tmp, int(record_bytes) * batch, end)
    # The rate is timed by the writers themselves (first append to last acknowledgement), so
    # process start-up and the parent's queue latency do not count.
    elapsed = max(times)
    mb = total * record_bytes / elapsed / 1e6
    return {
        "size": size, "messages": total, "writers": writers, "flush": flush.value,
        "encode": encode,
        "batch": batch, "msgs_per_s": total / elapsed, "mb_per_s": mb,
        "ceiling_mb_per_s": ceiling, "ceiling_msgs_per_s": ceiling * 1e6 / record_bytes,
        "ratio_to_ceiling": mb / ceiling, "writer_s_max": max(times),
        "read_msgs_per_s": read, "prefault_mb_per_s": prefault_mb_per_s,
    }


def _read_back(store: MessageStore, writers: int) -> float:
    """Messages/s read through the consume queues with a tag filter (TagA = half the
    messages), up to 32 per pull as a RocketMQ pull returns, as zero-copy views of the commit
    log (a pull response's buffers)."""
    wanted = np.asarray([tag_hash("TagA")], dtype=np.int64)
    t0 = time.perf_counter()
    got = 0
    for q in range(writers * QUEUES_PER_WRITER):
        cq = store.queue(TOPIC, q)
        pos, end = cq.min_offset, cq.max_offset
        while pos < end:
            sel = cq.select(pos, 32, wanted)
            got += len(store.views(sel.offsets, sel.sizes))
            pos = sel.next_offset
    elapsed = time.perf_counter() - t0
    return got / elapsed if elapsed else 0.0


def run_matrix(*, sizes: list[int], messages: int | None, writers: list[int],
               flushes: list[FlushMode], runs: int, batch: int, as_json: bool,
               directory: Path | None, encodes: tuple[str, ...] = ("writer",),
               ) -> list[dict[str, Any]]:
    """Run every combination `runs` times; print each run and each median; return medians."""
    out = []
    for size, w, flush, encode in itertools.product(sizes, writers, flushes, encodes):
        n = messages or _default_count(size, flush)
        results = []
        for i in range(runs):
            r = run_once(size=size, messages=n, writers=w, flush=flush, batch=batch,
                         directory=directory, encode=encode)
            r["run"] = i
            results.append(r)
            emit(r, as_json)
        med = {"size": size, "writers": w, "flush": flush.value, "batch": batch,
               "encode": encode, "messages": results[0]["messages"], "runs": runs,
               "median": True}
        med.update(median_of(results, FIGURES))
        emit(med, as_json)
        out.append(med)
    return out


def _default_count(size: int, flush: FlushMode) -> int:
    budget = 1_000_000 if size <= 1024 else 200_000
    return budget // 2 if flush is FlushMode.SYNC else budget

