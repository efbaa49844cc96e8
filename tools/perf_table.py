#!/usr/bin/env python3
"""Render the median lines of `shmq bench ... --json` output as a markdown table.

    shmq bench store --json | tee bench.jsonl | python3 tools/perf_table.py store
    shmq bench local --json | python3 tools/perf_table.py local
    shmq bench client --json | python3 tools/perf_table.py client   # a row per figure
    shmq bench tcp --json | python3 tools/perf_table.py tcp         # a row per figure

Cells of the `client` table read "median (min-max)" over the runs.
"""

from __future__ import annotations

import json
import sys

COLUMNS = {
    "store": [("size", "body B"), ("writers", "writers"), ("flush", "flush"),
              ("encode", "encoded by"),
              ("msgs_per_s", "appends/s"), ("mb_per_s", "MB/s"),
              ("ceiling_mb_per_s", "raw copy MB/s"), ("ratio_to_ceiling", "ratio"),
              ("read_msgs_per_s", "filtered reads/s"), ("prefault_mb_per_s", "prefault MB/s")],
    "local": [("size", "body B"), ("producers", "producers"), ("writers", "writers"),
              ("low_latency", "spinning"), ("mode", "mode"),
              ("batch", "batch"), ("msgs_per_s", "msgs/s"), ("p50_us", "ack p50 us"),
              ("p99_us", "ack p99 us"), ("visible_p50_us", "visible p50 us"),
              ("ring_p50_us", "bare ring RTT p50 us"), ("ring_msgs_per_s", "bare ring msgs/s"),
              ("ratio_to_ring", "ratio")],
}

#: `client` mode: (figure, title) rows of each median line, shmq's, the C++ client's, the ratio
CLIENT_ROWS = [("sync_msgs_per_s", "sync send, msgs/s"), ("sync_p50_us", "sync send p50, us"),
               ("sync_p99_us", "sync send p99, us"),
               ("async_msgs_per_s", "async send (64 in flight), msgs/s"),
               ("async_wheel_msgs_per_s", "async send, C++ wheel as shipped, msgs/s"),
               ("batch_msgs_per_s", "batch send (32 per call), msgs/s"),
               ("consume_msgs_per_s", "push consume, msgs/s"),
               ("consume_first_ms", "push consume: first message after, ms"),
               ("consume_longest_pause_ms", "push consume: longest pause, ms")]


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else f"{value:,.0f}"
    return str(value)


def _spread(row: dict[str, object], key: str) -> str:
    if key not in row:
        return ""
    if f"{key}_min" not in row:
        return _fmt(row[key])
    return f"{_fmt(row[key])} ({_fmt(row[f'{key}_min'])}-{_fmt(row[f'{key}_max'])})"


def client_table(rows: list[dict[str, object]]) -> None:
    print("| body B | figure | shmq | C++ | shmq / C++ |")
    print("|---|---|---|---|---|")
    for row in rows:
        for key, title in CLIENT_ROWS:
            cells = [_spread(row, f"{who}_{key}") for who in ("shmq", "cpp", "ratio")]
            print(f"| {row['size']} | {title} | " + " | ".join(cells) + " |")


#: `tcp` mode: (figure, title) rows; shmq, Redis Streams, NATS JetStream, the ratios
TCP_ROWS = [("sync_msgs_per_s", "sync send, msgs/s"), ("sync_p50_us", "sync send p50, us"),
            ("sync_p99_us", "sync send p99, us"),
            ("async_msgs_per_s", "pipelined single sends (64 in flight), msgs/s"),
            ("batch_msgs_per_s", "batches of 32 (8 in flight), msgs/s"),
            ("consume_msgs_per_s", "consume, msgs/s")]


def tcp_table(rows: list[dict[str, object]]) -> None:
    print("| body B | figure | shmq | Redis | NATS | shmq / Redis | shmq / NATS |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for key, title in TCP_ROWS:
            cells = [_fmt(row.get(f"{who}_{key}", "")) for who in ("shmq", "redis", "nats")]
            cells += [_fmt(row.get(f"ratio_{peer}_{key}", "")) for peer in ("redis", "nats")]
            print(f"| {row['size']} | {title} | " + " | ".join(cells) + " |")
        if "cpp_sync_msgs_per_s" in row:
            print(f"| {row['size']} | sync send, C++ client, msgs/s | "
                  f"{_fmt(row['cpp_sync_msgs_per_s'])} |  |  |  |  |")


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "store"
    rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
    rows = [r for r in rows if r.get("median")]
    if kind in ("client", "tcp"):
        (client_table if kind == "client" else tcp_table)(rows)
        return
    cols = COLUMNS[kind]
    print("| " + " | ".join(title for _, title in cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(_fmt(row.get(key, "")) for key, _ in cols) + " |")


if __name__ == "__main__":
    main()
