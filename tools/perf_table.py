#!/usr/bin/env python3
"""Render the median lines of `shmq bench ... --json` output as a markdown table.

    shmq bench store --json | tee bench.jsonl | python3 tools/perf_table.py store
    shmq bench local --json | python3 tools/perf_table.py local
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
    "local": [("size", "body B"), ("producers", "producers"), ("mode", "mode"),
              ("batch", "batch"), ("msgs_per_s", "msgs/s"), ("p50_us", "ack p50 us"),
              ("p99_us", "ack p99 us"), ("visible_p50_us", "visible p50 us"),
              ("ring_p50_us", "bare ring RTT p50 us"), ("ring_msgs_per_s", "bare ring msgs/s"),
              ("ratio_to_ring", "ratio")],
}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else f"{value:,.0f}"
    return str(value)


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "store"
    cols = COLUMNS[kind]
    rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
    rows = [r for r in rows if r.get("median")]
    print("| " + " | ".join(title for _, title in cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(_fmt(row.get(key, "")) for key, _ in cols) + " |")


if __name__ == "__main__":
    main()
