"""The client side of `shmq bench client`: one client in one process, one role per run.

    python -m shmq.bench.client_worker ROLE '{"namesrv": "127.0.0.1:9876", ...}'

Roles (client.py starts them, each in a fresh process):

* ``shmq-produce`` / ``cpp-produce``: WARMUP sync sends (not timed: connections, route, topic
  creation), then the timed phases, each of `messages` messages:
  sync (`send` / `send_sync`, one in flight; latency of each call), batch (BATCH messages per
  call, one call in flight), async (`window` sends in flight: shmq's `AsyncProducer`, the C++
  client's `send_async` with callbacks, its wrapper's leak mended, see `_PairedRefs`; then
  `send_async` exactly as the wheel ships it: ``async_wheel``).
* ``shmq-consume`` / ``cpp-consume``: a clustering push consumer of a new group on a topic that
  already holds `messages` messages; msgs/s from `start()` to the listener's `messages`-th call.
* ``fill``: shmq's `Producer` writes `messages` messages into each topic consumed later.

Each role prints one line, ``RESULT {json of figures}`` or ``FAILED <reason>``, and leaves with
`os._exit` (the C++ wheel's finalisers can hang at exit). The C++ roles import the rocketmq wheel
and no shmq client code. Every wait is bounded by `timeout_s` (sends by their own timeouts).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Final

__all__ = ["BATCH", "WARMUP", "WINDOW", "main"]

#: untimed sync sends before the phases
WARMUP: Final = 200
#: messages per batch send
BATCH: Final = 32
#: async sends in flight
WINDOW: Final = 64
#: each send's own timeout (both clients)
SEND_TIMEOUT_S: Final = 3.0


# --- what both clients share ------------------------------------------------------------------
def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed_sync(send: Callable[[], object], messages: int) -> dict[str, float]:
    """`messages` calls of `send`, one at a time: msgs/s and call latency p50/p99 (us)."""
    lat = []
    t0 = time.perf_counter()
    for _ in range(messages):
        t = time.perf_counter_ns()
        send()
        lat.append((time.perf_counter_ns() - t) / 1000)
    rate = messages / (time.perf_counter() - t0)
    lat.sort()
    return {"sync_msgs_per_s": rate, "sync_p50_us": _percentile(lat, 0.5),
            "sync_p99_us": _percentile(lat, 0.99)}


def _timed_batches(send_batch: Callable[[], object], messages: int) -> float:
    """msgs/s of `messages // BATCH` (at least 1) batch calls, one at a time."""
    calls = max(1, messages // BATCH)
    t0 = time.perf_counter()
    for _ in range(calls):
        send_batch()
    return calls * BATCH / (time.perf_counter() - t0)


class _Completions:
    """Counts completions reported from other threads; `done` is set at the `expected`-th."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.failures: list[str] = []
        self.first_at = 0.0  #: perf_counter() of the first completion
        self.last_at = 0.0  #: perf_counter() of the latest completion, the expected-th once done
        self.longest_gap_s = 0.0  #: longest time between two consecutive completions
        self.done = threading.Event()
        self._lock = threading.Lock()

    def record(self, failure: str | None = None) -> None:
        now = time.perf_counter()
        with self._lock:
            if failure is not None and len(self.failures) < 5:
                self.failures.append(failure)
            self.count += 1
            if self.count == 1:
                self.first_at = now
            elif self.count <= self.expected:
                self.longest_gap_s = max(self.longest_gap_s, now - self.last_at)
            if self.count <= self.expected:
                self.last_at = now
            if self.count == self.expected:
                self.done.set()

    def wait(self, timeout_s: float, what: str) -> None:
        """Raise TimeoutError unless all are done within `timeout_s`; RuntimeError if any
        completion was a failure."""
        if not self.done.wait(timeout_s):
            raise TimeoutError(f"{what}: {self.count} of {self.expected} after {timeout_s:g} s")
        if self.failures:
            raise RuntimeError(f"{what}: failures, e.g. {self.failures}")


def _consume(start: Callable[[], object], arrivals: _Completions,
             timeout_s: float) -> dict[str, float]:
    """Call `start` and wait for every arrival: msgs/s from the call to the last arrival, the
    time to the first (ms) and the longest pause between two arrivals (ms; the C++ client stops
    pulling a queue for 1 s when it holds over 1,000 unconsumed messages of it)."""
    t0 = time.perf_counter()
    start()
    arrivals.wait(timeout_s, "consume")
    return {"consume_msgs_per_s": arrivals.expected / (arrivals.last_at - t0),
            "consume_first_ms": (arrivals.first_at - t0) * 1000,
            "consume_longest_pause_ms": arrivals.longest_gap_s * 1000}


# --- shmq -------------------------------------------------------------------------------------
def _shmq_produce(args: dict[str, Any]) -> dict[str, float]:
    from shmq.client import Producer
    from shmq.remoting import run_loop  # uvloop, as the Producer's own loop thread

    topic, messages = args["topic"], args["messages"]
    body = b"c" * args["size"]
    bodies = [body] * BATCH
    with Producer("bench-client-shmq-pg", args["namesrv"],
                  send_timeout_s=SEND_TIMEOUT_S) as producer:
        for _ in range(WARMUP):
            producer.send(topic, body)
        figures = _timed_sync(lambda: producer.send(topic, body), messages)
        figures["batch_msgs_per_s"] = _timed_batches(
            lambda: producer.send_batch(topic, bodies), messages)
    figures["async_msgs_per_s"] = run_loop(asyncio.wait_for(
        _shmq_async(args["namesrv"], topic, body, messages, args["window"]), args["timeout_s"]))
    return figures


async def _shmq_async(namesrv: str, topic: str, body: bytes, messages: int,
                      window: int) -> float:
    from shmq.client import AsyncProducer

    async with AsyncProducer("bench-client-shmq-apg", namesrv,
                             send_timeout_s=SEND_TIMEOUT_S) as producer:
        for _ in range(window):  # its own connection and route: not timed
            await producer.send(topic, body)

        async def sender(w: int) -> None:
            for _ in range(w, messages, window):
                await producer.send(topic, body)

        t0 = time.perf_counter()
        await asyncio.gather(*(sender(w) for w in range(window)))
        return messages / (time.perf_counter() - t0)


def _shmq_consume(args: dict[str, Any]) -> dict[str, float]:
    from shmq.client import PushConsumer

    arrivals = _Completions(args["messages"])
    consumer = PushConsumer(args["group"], args["namesrv"])
    try:
        consumer.subscribe(args["topic"], "*")
        consumer.register_listener(lambda _msg: arrivals.record())
        return _consume(consumer.start, arrivals, args["timeout_s"])
    finally:
        consumer.shutdown()


def _fill(args: dict[str, Any]) -> dict[str, float]:
    from shmq.client import Producer

    body = b"c" * args["size"]
    with Producer("bench-client-fill-pg", args["namesrv"]) as producer:
        for topic in args["topics"]:
            for start in range(0, args["messages"], BATCH):
                producer.send_batch(topic, [body] * min(BATCH, args["messages"] - start))
    return {"filled": float(args["messages"])}


# --- the C++ client (the rocketmq==0.4.4 wheel) -------------------------------------------------
class _PairedRefs:
    """Stands in for the wheel's `Producer._callback_refs` list (`_refs_mended`).

    The wheel's `send_async` appends two ctypes callbacks per send to a list and, when one of
    them runs, removes only that one with `list.remove`: the list grows by one per send and each
    completion scans it, so N sends cost O(N^2) (N = 20,000: 1.8x slower). Here the two
    callbacks of a send are paired as they are appended, and removing either drops both, in
    O(1); a callback is still dropped only once one of its pair has run, as in the wheel.
    """

    def __init__(self) -> None:
        self._pairs: dict[int, tuple[object, object]] = {}
        self._first: object | None = None

    def append(self, ref: object) -> None:
        if self._first is None:
            self._first = ref
            return
        pair = (self._first, ref)
        self._pairs[id(self._first)] = self._pairs[id(ref)] = pair
        self._first = None

    def remove(self, ref: object) -> None:
        pair = self._pairs.pop(id(ref), None)
        if pair is not None:
            self._pairs.pop(id(pair[0] if pair[1] is ref else pair[1]), None)

    def __len__(self) -> int:
        return len(self._pairs)


def _cpp_produce(args: dict[str, Any]) -> dict[str, float]:
    from rocketmq.client import Message, Producer, SendStatus

    topic, messages = args["topic"], args["messages"]
    producer = Producer("bench-client-cpp-pg")
    producer.set_namesrv_addr(args["namesrv"])
    producer.set_timeout(int(SEND_TIMEOUT_S * 1000))
    producer.start()

    def new_message() -> Any:
        message = Message(topic)
        message.set_body("c" * args["size"])  # the wheel cuts bodies at a NUL byte
        return message

    message, batch = new_message(), [new_message() for _ in range(BATCH)]

    def send() -> None:
        status = producer.send_sync(message).status
        if status != SendStatus.OK:
            raise RuntimeError(f"send_sync returned {status}")

    def send_batch() -> None:
        status = producer.send_batch(batch).status
        if status != SendStatus.OK:
            raise RuntimeError(f"send_batch returned {status}")

    for _ in range(WARMUP):
        send()
    figures = _timed_sync(send, messages)
    figures["batch_msgs_per_s"] = _timed_batches(send_batch, messages)
    shipped_refs = producer._callback_refs
    producer._callback_refs = _PairedRefs()
    figures["async_msgs_per_s"] = _cpp_async(producer, message, args)
    producer._callback_refs = shipped_refs
    figures["async_wheel_msgs_per_s"] = _cpp_async(producer, message, args)
    return figures


def _cpp_async(producer: Any, message: Any, args: dict[str, Any]) -> float:
    """msgs/s of `messages` send_async calls with at most `window` unanswered, after an untimed
    round of `window` (as `_shmq_async` has)."""
    messages: int = args["messages"]
    window: int = args["window"]
    deadline = time.monotonic() + args["timeout_s"]
    _cpp_async_round(producer, message, window, window, deadline)
    return messages / _cpp_async_round(producer, message, messages, window, deadline)


def _cpp_async_round(producer: Any, message: Any, messages: int, window: int,
                     deadline: float) -> float:
    """Seconds from the first send_async to the `messages`-th answer."""
    from rocketmq.client import SendStatus

    slots = threading.Semaphore(window)
    acks = _Completions(messages)

    def on_success(result: Any) -> None:
        acks.record(None if result.status == SendStatus.OK else f"status {result.status}")
        slots.release()

    def on_exception(err: Exception) -> None:
        acks.record(f"{type(err).__name__}: {err}")
        slots.release()

    t0 = time.perf_counter()
    for _ in range(messages):
        if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"send_async: {acks.count} of {messages} answered in time")
        producer.send_async(message, on_success, on_exception)
    acks.wait(max(0.0, deadline - time.monotonic()), "send_async")
    return acks.last_at - t0


def _cpp_consume(args: dict[str, Any]) -> dict[str, float]:
    from rocketmq.client import PushConsumer

    arrivals = _Completions(args["messages"])
    consumer = PushConsumer(args["group"])  # clustering, the default
    consumer.set_namesrv_addr(args["namesrv"])
    consumer.subscribe(args["topic"], lambda _msg: arrivals.record())  # returning: consumed
    # no shutdown: os._exit follows, and the wheel's shutdown can hang (client-quirks.md)
    return _consume(consumer.start, arrivals, args["timeout_s"])


# --- entry point ------------------------------------------------------------------------------
ROLES: Final[dict[str, Callable[[dict[str, Any]], dict[str, float]]]] = {
    "shmq-produce": _shmq_produce,
    "cpp-produce": _cpp_produce,
    "shmq-consume": _shmq_consume,
    "cpp-consume": _cpp_consume,
    "fill": _fill,
}


def _print_result(figures: dict[str, float]) -> None:
    print("RESULT " + json.dumps(figures), flush=True)


def main(argv: list[str]) -> None:
    """Run role `argv[0]` with the JSON arguments `argv[1]`; print its line; exit (never
    returns)."""
    code = 1
    try:
        role, args = argv[0], json.loads(argv[1])
        _print_result(ROLES[role](args))
        code = 0
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises
        print("FAILED", type(err).__name__, str(err).replace("\n", " ")[:500], flush=True)
        traceback.print_exc(file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
