"""`shmq bench tcp` against shmq alone, with a tiny message count: every figure is measured."""

from __future__ import annotations

import math

import pytest

from shmq.bench.tcp import PHASE_FIGURES, run_once

pytestmark = pytest.mark.integration


def test_run_once_measures_every_phase_of_shmq() -> None:
    result = run_once(size=64, messages=100, peers=(), cpp=False, writers=1)
    for figure in PHASE_FIGURES:
        value = result[f"shmq_{figure}"]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (figure, value)
    assert not any(k.startswith(("redis_", "nats_", "ratio_", "cpp_")) for k in result)
