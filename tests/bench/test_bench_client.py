"""`shmq bench client`: both clients against one broker, with a tiny message count; how a
failing or hanging worker ends a run; the mend of the C++ wheel's callback list."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from shmq.bench.client import FIGURES, PHASE_FIGURES, BenchFailed, run_once, run_worker
from shmq.bench.client_worker import _PairedRefs

pytestmark = [pytest.mark.integration, pytest.mark.interop]


def test_run_once_measures_every_figure_of_both_clients() -> None:
    result = run_once(size=128, messages=300, writers=1)
    for figure in FIGURES:
        value = result[figure]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (figure, value)
    for figure in PHASE_FIGURES:
        ratio = result[f"ratio_{figure}"]
        assert ratio == pytest.approx(result[f"shmq_{figure}"] / result[f"cpp_{figure}"])
        # both clients drive the same broker: a factor of 20 either way means a broken phase
        assert 0.05 < ratio < 20, (figure, ratio)
    assert result["shmq_sync_p50_us"] <= result["shmq_sync_p99_us"]
    assert result["cpp_sync_p50_us"] <= result["cpp_sync_p99_us"]


def test_a_failing_worker_raises_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(BenchFailed, match="no-such-role.*FAILED KeyError"):
        run_worker("no-such-role", {}, tmp_path, timeout_s=30)


def test_a_hanging_worker_is_killed_at_its_timeout(tmp_path: Path) -> None:
    # nobody listens there: the C++ consumer starts anyway and waits for messages forever
    args = {"namesrv": "127.0.0.1:1", "topic": "Nothing", "group": "g", "messages": 1,
            "timeout_s": 600}
    t0 = time.monotonic()
    with pytest.raises(BenchFailed, match="no result within 3 s"):
        run_worker("cpp-consume", args, tmp_path, timeout_s=3)
    assert time.monotonic() - t0 < 15


def test_paired_refs_drop_both_callbacks_of_a_send_when_one_is_removed() -> None:
    refs = _PairedRefs()
    ok1, err1, ok2, err2 = object(), object(), object(), object()
    for ref in (ok1, err1, ok2, err2):
        refs.append(ref)
    assert len(refs) == 4
    refs.remove(ok1)  # the first send succeeded: its exception callback goes too
    assert len(refs) == 2
    refs.remove(err2)  # the second failed
    assert len(refs) == 0
    refs.remove(err2)  # removing twice is harmless, as a ref can only run once
    assert len(refs) == 0
