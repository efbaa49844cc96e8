"""`shmq bench local`: same-host produce through shared-memory rings, against a bare ring.

Each run starts a real broker (`shmq start`, writers as configured) on a temporary data dir.
Producers are forked processes with a LocalProducer each:

* ``sync``: one message per send, waiting for each acknowledgement: msgs/s and the latency
  send -> acknowledged (p50/p99); then, in a second pass of its own (a busy-polling reader
  takes one of the two cores), send -> visible to a LocalConsumer polling the queue in
  another process (p50).
* ``batch``: batches of `batch` messages sent asynchronously with up to `window` batches in
  flight: msgs/s persisted (acknowledged).

The ceiling, measured in the same run: a bare SPSC ring round trip (request ring + answer
ring, two processes, same payload size) and a bare ring's batched one-way rate.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from shmq.bench.common import emit, median_of
from shmq.client.local import LocalProducer
from shmq.client.local_consumer import LocalConsumer
from shmq.ipc.ring import Ring
from shmq.ipc.segment import remove_stale
from shmq.ipc.wakeup import DEFAULT_POLICY, LOW_LATENCY_POLICY, WaitPolicy
from shmq.runtime.launcher import start_broker

__all__ = ["run_matrix"]

_CTX = mp.get_context("fork")
#: Messages of the send -> visible pass (sync mode)
_VISIBLE_MESSAGES = 5000
FIGURES = ("msgs_per_s", "p50_us", "p99_us", "visible_p50_us", "ring_p50_us", "ratio_to_ring",
           "ring_msgs_per_s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# --- shmq producers ---------------------------------------------------------------------------
def _sync_producer(instance: str, size: int, count: int, topic: str, out: Any) -> None:
    body = b"s" * size
    lat: list[float] = []
    with LocalProducer(instance) as p:
        warmup = bytes(8) + body[8:]  # no send time: the watcher skips these
        for _ in range(min(200, count)):
            p.send(topic, warmup, queue_id=0)
        t0 = time.perf_counter()
        for _ in range(count):
            t = time.perf_counter_ns()
            p.send(topic, t.to_bytes(8, "little") + body[8:], queue_id=0)
            lat.append((time.perf_counter_ns() - t) / 1000)
        out.put((time.perf_counter() - t0, lat))


def _batch_producer(instance: str, size: int, count: int, batch: int, window: int,
                    topic: str, out: Any) -> None:
    msgs = [b"b" * size] * batch
    with LocalProducer(instance) as p:
        p.send_batch(topic, msgs[:10])
        t0 = time.perf_counter()
        inflight = []
        for _ in range(count // batch):
            inflight.append(p.send_batch_async(topic, msgs))
            if len(inflight) >= window:
                inflight.pop(0).result(30)
        for f in inflight:
            f.result(30)
        out.put((time.perf_counter() - t0, []))


def _watcher(instance: str, topic: str, expected: int, out: Any) -> None:
    """Poll queue 0 of `topic`; record now - send time (the body's first 8 bytes; zero in
    warm-up messages, which are skipped)."""
    seen: list[float] = []
    offset = 0
    deadline = time.monotonic() + 120
    with LocalConsumer(instance) as c:
        offset = c.offsets(topic, 0)[1]
        while len(seen) < expected and time.monotonic() < deadline:
            res = c.pull(topic, 0, offset, max_messages=256)
            now = time.perf_counter_ns()
            sent = [int.from_bytes(m.body[:8], "little") for m in res.messages]
            seen += [(now - t) / 1000 for t in sent if t]
            offset = res.next_offset
    out.put(seen)


# --- the bare ring ceiling --------------------------------------------------------------------
def _echo(instance: str, policy: WaitPolicy, count: int) -> None:
    with Ring.attach(instance, "bench.req") as req, Ring.attach(instance, "bench.ans") as ans:
        consumer, producer = req.consumer(policy), ans.producer(policy)
        for _ in range(count):
            _kind, payload = consumer.read(10)
            producer.write(payload[:16], timeout_s=10)


def ring_round_trip(size: int, count: int, policy: WaitPolicy) -> list[float]:
    """Latencies (us) of a bare request/answer exchange over two rings between processes."""
    instance = f"bench{uuid.uuid4().hex[:8]}"
    with Ring.create(instance, "bench.req", 1 << 20) as req, \
            Ring.create(instance, "bench.ans", 1 << 20) as ans:
        echo = _CTX.Process(target=_echo, args=(instance, policy, count + 100), daemon=True)
        echo.start()
        producer, consumer = req.producer(policy), ans.consumer(policy)
        payload = b"r" * size
        lat = []
        for i in range(count + 100):
            t = time.perf_counter_ns()
            producer.write(payload, timeout_s=10)
            consumer.read(10)
            if i >= 100:
                lat.append((time.perf_counter_ns() - t) / 1000)
        echo.join(10)
        req.unlink()
        ans.unlink()
    remove_stale(instance)
    return lat


def ring_batched_rate(size: int, count: int) -> float:
    """Messages/s one-way through a bare ring, published 32 at a time."""
    instance = f"bench{uuid.uuid4().hex[:8]}"
    out = _CTX.Queue()
    with Ring.create(instance, "bench.tput", 4 << 20) as ring:
        def consume() -> None:
            with Ring.attach(instance, "bench.tput") as r:
                c = r.consumer(DEFAULT_POLICY)
                got = 0
                while got < count:
                    got += len(c.read_batch(256)) or (c.wait_readable(1) and 0)
            out.put(got)
        proc = _CTX.Process(target=consume, daemon=True)
        proc.start()
        producer = ring.producer(DEFAULT_POLICY)
        chunk = [b"t" * size] * 32
        t0 = time.perf_counter()
        sent = 0
        while sent < count:
            n = producer.try_write_many(chunk)
            if not n:
                producer.wait_writable(size, 10)
            sent += n
        out.get(timeout=60)
        rate = count / (time.perf_counter() - t0)
        proc.join(10)
        ring.unlink()
    remove_stale(instance)
    return rate


# --- one run ----------------------------------------------------------------------------------
def run_once(*, size: int, producers: int, mode: str, messages: int, batch: int,
             low_latency: bool, writers: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="shmq-bench-local-"))
    env = {"SHMQ_RING_LOW_LATENCY": "true" if low_latency else "false"}
    broker = start_broker(tmp, writers=writers, env=env)
    try:
        broker.wait_ready(60)
        result = _measure(broker.instance, size, producers, mode, messages, batch)
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    policy = LOW_LATENCY_POLICY if low_latency else DEFAULT_POLICY
    ring = ring_round_trip(size, 2000, policy)
    result["ring_p50_us"] = statistics.median(ring)
    if mode == "sync":
        result["ratio_to_ring"] = result["ring_p50_us"] / result["p50_us"]
    else:
        result["ring_msgs_per_s"] = ring_batched_rate(size, 200_000)
        result["ratio_to_ring"] = result["msgs_per_s"] / result["ring_msgs_per_s"]
    result.update(size=size, producers=producers, mode=mode, batch=batch if mode != "sync" else 1,
                  low_latency=low_latency, writers=writers)
    return result


def _measure(instance: str, size: int, producers: int, mode: str, messages: int,
             batch: int) -> dict[str, Any]:
    per = messages // producers
    topic = f"Bench{uuid.uuid4().hex[:6]}"
    if mode == "sync":
        target: Any = _sync_producer
        args: tuple[Any, ...] = (instance, size, per, topic)
    else:
        target, args = _batch_producer, (instance, size, per, batch, 16, topic)
    elapsed, lat = _run_producers(producers, target, args)
    figures: dict[str, Any] = {"msgs_per_s": per * producers / elapsed}
    if lat:
        figures["p50_us"] = _percentile(lat, 0.5)
        figures["p99_us"] = _percentile(lat, 0.99)
    if mode == "sync":
        figures["visible_p50_us"] = _visible_p50(instance, size, min(per, _VISIBLE_MESSAGES))
    return figures


def _run_producers(n: int, target: Any, args: tuple[Any, ...]) -> tuple[float, list[float]]:
    """Run `n` producer processes; (the slowest one's seconds, everyone's latencies)."""
    out = _CTX.Queue()
    procs = [_CTX.Process(target=target, args=(*args, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    return max(r[0] for r in results), [x for r in results for x in r[1]]


def _visible_p50(instance: str, size: int, count: int) -> float | None:
    """send -> visible to a LocalConsumer, in a pass of its own: the watcher busy-polls, which
    on a 2-core machine takes a core the producer and the writer would otherwise have, so
    the acknowledgement latencies are measured without it."""
    topic = f"Visible{uuid.uuid4().hex[:6]}"
    watch_q = _CTX.Queue()
    watcher = _CTX.Process(target=_watcher, args=(instance, topic, count, watch_q), daemon=True)
    watcher.start()
    time.sleep(0.3)
    _run_producers(1, _sync_producer, (instance, size, count, topic))
    seen = watch_q.get(timeout=180)
    watcher.join(10)
    return _percentile(seen, 0.5) if seen else None


def run_matrix(*, sizes: list[int], producers: list[int], modes: list[str], runs: int,
               messages: int | None, batch: int, low_latency: bool, writers: int,
               as_json: bool) -> list[dict[str, Any]]:
    medians = []
    for size in sizes:
        for n in producers:
            for mode in modes:
                count = messages or (20_000 if mode == "sync" else 400_000)
                results = []
                for i in range(runs):
                    r = run_once(size=size, producers=n, mode=mode, messages=count, batch=batch,
                                 low_latency=low_latency, writers=writers)
                    r["run"] = i
                    emit(r, as_json)
                    results.append(r)
                med = {"size": size, "producers": n, "mode": mode, "runs": runs,
                       "writers": writers, "low_latency": low_latency, "median": True,
                       "batch": batch if mode != "sync" else 1}
                med.update(median_of(results, FIGURES))
                emit(med, as_json)
                medians.append(med)
    return medians
