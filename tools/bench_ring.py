#!/usr/bin/env python3
"""Benchmark of shmq.ipc rings between two processes.

Figures, per run:

- `single_msgs_per_s`: records of `--size` bytes, producer `try_write()` one at a time, consumer
  `try_read()` one at a time.
- `batched_msgs_per_s`: producer `try_write_many()` of `--batch` records, consumer
  `read_batch(--batch)`.
- `rtt_<mode>_p50_us` / `_p99_us`: round trips of a `--size`-byte ping over a request ring and
  back over a reply ring (an echo process in between), for the wait modes
  `spin` (LOW_LATENCY_POLICY), `default` (DEFAULT_POLICY), `park` (no spinning: every wait
  parks on the semaphore, so each leg pays a wake-up) and `idle` (DEFAULT_POLICY with
  `--idle-gap-us` between pings, so the echo has parked before each one).

Each run prints one JSON object; after `--runs` runs a last object gives each figure's median.
Producers and consumers are forked children; the rings live under a fresh instance name and
are removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from shmq.ipc import (
    DEFAULT_POLICY,
    LOW_LATENCY_POLICY,
    Ring,
    RingClosed,
    WaitPolicy,
    remove_stale,
)

_CTX = multiprocessing.get_context("fork")
_NO_SPIN = WaitPolicy(spin_us=0.0, min_spin_us=0.0, max_spin_us=0.0)
_POLICIES = {"spin": LOW_LATENCY_POLICY, "default": DEFAULT_POLICY, "park": _NO_SPIN}


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


# --- throughput -------------------------------------------------------------------------------


def _produce(instance: str, count: int, size: int, batch: int, cpu: int | None) -> None:
    _pin(cpu)
    payload = b"p" * size
    with Ring.attach(instance, "tput") as ring:
        producer = ring.producer()
        if batch <= 1:
            try_write = producer.try_write
            for _ in range(count):
                while not try_write(payload):
                    producer.wait_writable(size, None)
        else:
            payloads = [payload] * batch
            sent = 0
            while sent < count:
                chunk = payloads if count - sent >= batch else payloads[: count - sent]
                written = producer.try_write_many(chunk)
                if written == 0:
                    producer.wait_writable(size, None)
                sent += written
        producer.close()


def _consume(instance: str, count: int, batch: int, cpu: int | None, conn: Connection) -> None:
    _pin(cpu)
    with Ring.attach(instance, "tput") as ring:
        consumer = ring.consumer()
        consumer.wait_readable(None)
        start = time.perf_counter()
        cpu_start = time.process_time()
        received = 0
        if batch <= 1:
            try_read = consumer.try_read
            while received < count:
                if try_read() is None:
                    consumer.wait_readable(None)
                else:
                    received += 1
        else:
            read_batch = consumer.read_batch
            while received < count:
                got = len(read_batch(batch))
                if got == 0:
                    consumer.wait_readable(None)
                received += got
        elapsed = time.perf_counter() - start
        cpu_used = time.process_time() - cpu_start
    conn.send((received, elapsed, cpu_used))


def throughput(args: argparse.Namespace, batch: int, count: int) -> tuple[float, float]:
    """Messages per second and consumer CPU ns per message, producer -> consumer."""
    instance = f"bench{uuid.uuid4().hex[:10]}"
    try:
        with Ring.create(instance, "tput", args.capacity):
            receiver, sender = _CTX.Pipe(duplex=False)
            cpus = (0, 1) if args.pin else (None, None)
            consumer = _CTX.Process(target=_consume, args=(instance, count, batch, cpus[1], sender))
            producer = _CTX.Process(
                target=_produce, args=(instance, count, args.size, batch, cpus[0])
            )
            consumer.start()
            producer.start()
            received, elapsed, cpu_used = receiver.recv()
            producer.join()
            consumer.join()
        if received != count:
            raise SystemExit(f"received {received} of {count} records")
        return count / elapsed, cpu_used / count * 1e9
    finally:
        remove_stale(instance)


# --- round trips -------------------------------------------------------------------------------


def _echo(instance: str, policy: WaitPolicy, cpu: int | None) -> None:
    _pin(cpu)
    with Ring.attach(instance, "req") as req, Ring.attach(instance, "rep") as rep:
        consumer, producer = req.consumer(policy), rep.producer(policy)
        try:
            while True:
                kind, payload = consumer.read(timeout_s=60)
                producer.write(payload, kind, timeout_s=60)
        except RingClosed:
            producer.close()


def _ping(
    instance: str,
    policy: WaitPolicy,
    count: int,
    size: int,
    gap_s: float,
    cpu: int | None,
    conn: Connection,
) -> None:
    _pin(cpu)
    payload = b"q" * size
    warmup = max(count // 10, 10)
    latencies: list[int] = []
    with Ring.attach(instance, "req") as req, Ring.attach(instance, "rep") as rep:
        producer, consumer = req.producer(policy), rep.consumer(policy)
        clock = time.perf_counter_ns
        for i in range(warmup + count):
            start = clock()
            producer.write(payload, timeout_s=10)
            consumer.read(timeout_s=10)
            end = clock()
            if i >= warmup:
                latencies.append(end - start)
            if gap_s:
                time.sleep(gap_s)
        producer.close()
    conn.send(latencies)


def round_trip(args: argparse.Namespace, policy: WaitPolicy, count: int, gap_s: float) -> list[int]:
    """Round-trip times in ns of `count` pings through an echo process."""
    instance = f"bench{uuid.uuid4().hex[:10]}"
    try:
        with Ring.create(instance, "req", 1 << 16), Ring.create(instance, "rep", 1 << 16):
            receiver, sender = _CTX.Pipe(duplex=False)
            cpus = (0, 1) if args.pin else (None, None)
            echo = _CTX.Process(target=_echo, args=(instance, policy, cpus[1]))
            ping = _CTX.Process(
                target=_ping, args=(instance, policy, count, args.size, gap_s, cpus[0], sender)
            )
            echo.start()
            ping.start()
            latencies: list[int] = receiver.recv()
            ping.join()
            echo.join()
        return latencies
    finally:
        remove_stale(instance)


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000.0


# --- driver ------------------------------------------------------------------------------------


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if "tput" in args.only:
        rate, cpu_ns = throughput(args, 1, args.records)
        figures["single_msgs_per_s"] = round(rate)
        figures["single_consumer_cpu_ns_per_msg"] = round(cpu_ns)
        rate, cpu_ns = throughput(args, args.batch, args.records * 3)
        figures["batched_msgs_per_s"] = round(rate)
        figures["batched_consumer_cpu_ns_per_msg"] = round(cpu_ns)
    if "rtt" in args.only:
        modes: list[tuple[str, WaitPolicy, int, float]] = [
            (name, policy, args.round_trips, 0.0) for name, policy in _POLICIES.items()
        ]
        modes.append(("idle", DEFAULT_POLICY, args.idle_round_trips, args.idle_gap_us * 1e-6))
        for name, policy, count, gap_s in modes:
            latencies = round_trip(args, policy, count, gap_s)
            figures[f"rtt_{name}_p50_us"] = round(_percentile(latencies, 0.50), 2)
            figures[f"rtt_{name}_p99_us"] = round(_percentile(latencies, 0.99), 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs; the last line gives medians")
    parser.add_argument("--records", type=int, default=1_000_000, help="records per single run")
    parser.add_argument("--size", type=int, default=128, help="payload bytes")
    parser.add_argument("--batch", type=int, default=32, help="records per batched call")
    parser.add_argument("--capacity", type=int, default=1 << 18, help="ring byte-area size")
    parser.add_argument("--round-trips", type=int, default=20_000, help="pings per RTT mode")
    parser.add_argument("--idle-round-trips", type=int, default=1000, help="pings, idle mode")
    parser.add_argument("--idle-gap-us", type=float, default=1000.0, help="pause, idle mode")
    parser.add_argument("--pin", action="store_true", help="pin the two processes to CPUs 0, 1")
    parser.add_argument(
        "--only", nargs="+", choices=["tput", "rtt"], default=["tput", "rtt"], help="parts"
    )
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    for index in range(args.runs):
        started = time.time()
        figures = one_run(args)
        runs.append(figures)
        line = {"run": index + 1, "size": args.size, "batch": args.batch, **figures}
        line["seconds"] = round(time.time() - started, 1)
        print(json.dumps(line), flush=True)
    names: list[str] = list(runs[0])
    median: Callable[[str], float] = lambda name: statistics.median(r[name] for r in runs)
    summary = {"median_of": len(runs), "size": args.size, "batch": args.batch}
    summary.update({name: median(name) for name in names})
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    summary["loadavg_1m"] = round(load[0], 2) if load else None
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
