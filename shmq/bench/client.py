"""`shmq bench client`: shmq's Python client next to the RocketMQ C++ client, same broker, same run.

Each run starts a real broker (`shmq start`) on a temporary data dir and free ports. Both clients
then run the same workload against it, each in processes of its own (client_worker.py; no
process ever holds both clients): the C++ client is the `rocketmq==0.4.4` wheel (librocketmq,
rocketmq-client-cpp 1.2.x, under its ctypes wrapper), shmq's is `shmq.client`. Phases, every one
with `messages` messages of `size` bytes, on a topic per client (4 queues, from TBW102):

* ``sync``: single sends one at a time (`Producer.send` / `send_sync`): msgs/s and the
  latency of each call, p50/p99 (us).
* ``batch``: BATCH messages per call, one call at a time (`Producer.send_batch` /
  `send_batch`): msgs/s.
* ``async``: single sends, WINDOW in flight (`AsyncProducer.send` in WINDOW tasks /
  `send_async` with callbacks, a semaphore keeping WINDOW unanswered): msgs/s. The wheel's
  `send_async` leaks one callback per send into a list it scans on every completion; the
  ``cpp_async`` figure mends that (client_worker._PairedRefs) so that the C++ client is not
  charged for it, and ``cpp_async_wheel`` is the wheel as shipped.
* ``consume``: a clustering push consumer of a new group on a topic filled beforehand with
  `messages` messages (one topic per client, filled by the same shmq producer): msgs/s from
  `start()` to the listener's `messages`-th call. Both listeners only count. Also the time to
  the first message and the longest pause between two: the C++ client stops pulling a queue for
  1 s whenever it holds more than 1,000 unconsumed messages of it, which happens in some runs
  and not others, so its consume rate is bimodal (~14 k or ~45 k msgs/s here).

Which client goes first alternates from run to run (the machine's load drifts). Each run is one
flat dict: `<client>_<figure>` (client shmq or cpp) and `ratio_<figure>` = shmq / cpp (above 1:
shmq is faster, except for the latencies). Every worker is bounded by a timeout; a worker that
fails or times out ends the run with `BenchFailed`, the broker and the workers stopped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from shmq.bench.client_worker import WINDOW
from shmq.bench.common import emit, median_of, running_broker, spread_of
from shmq.errors import ShmqError

__all__ = ["FIGURES", "PHASE_FIGURES", "BenchFailed", "run_matrix", "run_once"]

CLIENTS: Final = ("shmq", "cpp")
PHASE_FIGURES: Final = ("sync_msgs_per_s", "sync_p50_us", "sync_p99_us", "async_msgs_per_s",
                        "batch_msgs_per_s", "consume_msgs_per_s")
#: measured for both clients, no ratio: they explain a consume rate
CONSUME_DETAILS: Final = ("consume_first_ms", "consume_longest_pause_ms")
FIGURES: Final = (tuple(f"{c}_{f}" for c in CLIENTS for f in PHASE_FIGURES + CONSUME_DETAILS)
                  + ("cpp_async_wheel_msgs_per_s",)
                  + tuple(f"ratio_{f}" for f in PHASE_FIGURES))
#: the slowest rate that is still progress (msgs/s): below it, a phase counts as hung
MIN_RATE: Final = 100
#: a worker's own start and stop: imports, client start, routes, warm-up, shutdown
WORKER_OVERHEAD_S: Final = 60.0
_TOPIC: Final = {"shmq": "BenchClientShmq", "cpp": "BenchClientCpp"}
_CONSUME_TOPIC: Final = {c: f"{t}Consume" for c, t in _TOPIC.items()}


class BenchFailed(ShmqError):
    """A worker failed or timed out; the message carries the end of what it printed."""

    def __init__(self, role: str, reason: str, output: str) -> None:
        super().__init__(f"{role}: {reason}; its last output: {output.strip()[-1500:]}")
        self.role, self.reason, self.output = role, reason, output


def cpp_available() -> bool:
    return importlib.util.find_spec("rocketmq") is not None


def phase_timeout_s(messages: int) -> float:
    """How long one phase of `messages` messages may take."""
    return 30.0 + messages / MIN_RATE


def run_worker(role: str, args: dict[str, Any], home: Path, timeout_s: float) -> dict[str, float]:
    """Run `role` in a new process (HOME=`home`: the C++ client writes its logs under
    $HOME/logs) and return its figures.

    Raises:
        BenchFailed: it printed FAILED, no result, or did not finish within `timeout_s` (it was
            killed).
    """
    cmd = [sys.executable, "-m", "shmq.bench.client_worker", role, json.dumps(args)]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False,
                              stdin=subprocess.DEVNULL, env=os.environ | {"HOME": str(home)})
    except subprocess.TimeoutExpired as err:  # run() killed it
        raise BenchFailed(role, f"no result within {timeout_s:g} s",
                          _text(err.stdout) + _text(err.stderr) + _log_tail(home)) from None
    out = _text(done.stdout)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            figures: dict[str, float] = json.loads(line[len("RESULT "):])
            return figures
    raise BenchFailed(role, f"exited with {done.returncode} without a result",
                      out + _text(done.stderr) + _log_tail(home))


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _log_tail(home: Path, chars: int = 1500) -> str:
    """The end of the C++ client's own logs, if it wrote any."""
    files = sorted(p for p in home.glob("logs/**/*") if p.is_file())
    text = "".join(p.read_text(errors="replace") for p in files)
    return f"\n[C++ client log] {text[-chars:]}" if text else ""


# --- one run ----------------------------------------------------------------------------------
def run_once(*, size: int, messages: int, cpp_first: bool = False,
             writers: int = 2) -> dict[str, Any]:
    """One run on a fresh broker; the figures of FIGURES.

    Raises:
        BenchFailed: a worker failed; the broker is stopped and the temporary dir removed.
    """
    tmp = Path(tempfile.mkdtemp(prefix="shmq-bench-client-"))
    home = tmp / "home"
    home.mkdir()
    order = ("cpp", "shmq") if cpp_first else CLIENTS
    result: dict[str, Any] = {"size": size, "messages": messages, "first": order[0]}
    phase_s = phase_timeout_s(messages)
    try:
        with running_broker(tmp, writers, "bc") as (_, namesrv):
            common = {"namesrv": namesrv, "size": size, "messages": messages,
                      "timeout_s": phase_s}
            for client in order:
                figures = run_worker(f"{client}-produce",
                                     {**common, "topic": _TOPIC[client], "window": WINDOW},
                                     home, WORKER_OVERHEAD_S + 4 * phase_s)
                result.update({f"{client}_{k}": v for k, v in figures.items()})
            run_worker("fill", {**common, "topics": list(_CONSUME_TOPIC.values())}, home,
                       WORKER_OVERHEAD_S + 2 * phase_s)
            for client in order:
                figures = run_worker(f"{client}-consume",
                                     {**common, "topic": _CONSUME_TOPIC[client],
                                      "group": f"bench-client-{client}-cg"},
                                     home, WORKER_OVERHEAD_S + phase_s)
                result.update({f"{client}_{k}": v for k, v in figures.items()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for figure in PHASE_FIGURES:
        result[f"ratio_{figure}"] = result[f"shmq_{figure}"] / result[f"cpp_{figure}"]
    return result


def run_matrix(*, sizes: Sequence[int], runs: int, messages: int, as_json: bool,
               writers: int = 2) -> list[dict[str, Any]]:
    """`runs` runs per size, one line each, then a line of medians with each figure's min and
    max over the runs (`<figure>_min`, `<figure>_max`).

    Raises:
        BenchFailed: the C++ client is not installed, or a run failed.
    """
    if not cpp_available():
        raise BenchFailed("cpp", "the C++ client is not installed", "pip install rocketmq==0.4.4")
    medians = []
    for size in sizes:
        results = []
        for i in range(runs):
            r = run_once(size=size, messages=messages, cpp_first=i % 2 == 1, writers=writers)
            r["run"] = i
            emit(r, as_json)
            results.append(r)
        med: dict[str, Any] = {"size": size, "messages": messages, "runs": runs, "median": True}
        med.update(median_of(results, FIGURES))
        med.update(spread_of(results, FIGURES))
        emit(med, as_json)
        medians.append(med)
    return medians
