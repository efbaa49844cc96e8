"""`shmq bench local` with tiny message counts: every figure of each mode is measured."""

from __future__ import annotations

import math

import pytest

from shmq.bench.local import run_once

pytestmark = pytest.mark.integration


def _positive(result: dict, figures: tuple[str, ...]) -> None:
    for figure in figures:
        value = result[figure]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (figure, value)


def test_sync_run_measures_ack_and_visibility_latency() -> None:
    result = run_once(size=64, producers=1, mode="sync", messages=300, batch=1,
                      low_latency=False, writers=1)
    _positive(result, ("msgs_per_s", "p50_us", "p99_us", "visible_p50_us", "ring_p50_us",
                       "ratio_to_ring"))
    assert result["p50_us"] <= result["p99_us"]
    assert result["mode"] == "sync" and result["batch"] == 1


def test_batch_run_measures_throughput_against_the_ring() -> None:
    result = run_once(size=64, producers=2, mode="batch", messages=4096, batch=64,
                      low_latency=False, writers=2)
    _positive(result, ("msgs_per_s", "ring_msgs_per_s", "ratio_to_ring"))
    assert "p50_us" not in result and result["producers"] == 2
