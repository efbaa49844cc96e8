"""`shmq bench tcp`: produce and consume over TCP, against Redis Streams and NATS JetStream.

Each run starts a real broker (`shmq start`) on a temporary data dir and free ports, and drives
it from this one process with shmq's own protocol code (asyncio, one `RemotingClient`
connection, requests multiplexed by opaque). The same workload, through the same driver, then
runs against each peer (peers.py), started fresh for the run. Phases, each on a topic (stream)
of 4 queues, messages spread round-robin over the queues:

* ``sync``: N single sends (SEND_MESSAGE_V2), one in flight: msgs/s, latency p50/p99.
* ``async``: N single sends, ASYNC_WINDOW in flight: msgs/s.
* ``batch``: N messages in batches of BATCH (SEND_BATCH_MESSAGE), BATCH_WINDOW batches in
  flight: msgs/s.
* ``consume``: everything sent above read back and decoded into messages as shmq's consumers do
  (PULL_MESSAGE, PER_PULL per pull, PULL_WINDOW
  pulls in flight per queue): msgs/s.

A send counts once it is acknowledged (shmq: SUCCESS; Redis: XADD's reply; NATS: the PubAck).
Each run's result is one flat dict: `<target>_<figure>` (target shmq, redis, nats) plus
`ratio_<peer>_<figure>` = shmq / peer (above 1: shmq is faster, except for latency), and, if
asked, `cpp_sync_msgs_per_s`: the reference C++ client's (rocketmq==0.4.4) `send_sync` loop
against the same broker, timed inside its own subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from shmq.bench.common import emit, median_of, running_broker
from shmq.bench.peers import NatsTarget, RedisTarget, missing, peer_server
from shmq.client.received import decode_pull_response
from shmq.message.batch import encode_batch_body
from shmq.protocol import (
    MessageQueue,
    PullMessageRequestHeader,
    RequestCode,
    ResponseCode,
    SendMessageRequestHeaderV2,
    make_request,
)
from shmq.remoting import RemotingClient, run_loop

__all__ = ["FIGURES", "run_matrix", "run_once"]

QUEUES = 4
ASYNC_WINDOW = 64
BATCH = 32
BATCH_WINDOW = 8
PER_PULL = 32
PULL_WINDOW = 4  # peers.READERS_PER_QUEUE is the same for Redis and NATS
TIMEOUT_S = 30.0
WARMUP = 200
TOPIC = "BenchTcp"
PHASE_FIGURES = ("sync_msgs_per_s", "sync_p50_us", "sync_p99_us", "async_msgs_per_s",
                 "batch_msgs_per_s", "consume_msgs_per_s")
TARGETS = ("shmq", "redis", "nats")
RATIO_FIGURES = ("sync_msgs_per_s", "sync_p50_us", "async_msgs_per_s", "batch_msgs_per_s",
                 "consume_msgs_per_s")
FIGURES = tuple(f"{t}_{f}" for t in TARGETS for f in PHASE_FIGURES) + tuple(
    f"ratio_{p}_{f}" for p in TARGETS[1:] for f in RATIO_FIGURES) + ("cpp_sync_msgs_per_s",)


class Target(Protocol):
    queues: int

    async def send(self, queue: int, body: bytes) -> None: ...
    async def send_batch(self, queue: int, bodies: list[bytes]) -> None: ...
    async def consume(self, expected: list[int], per_read: int) -> None: ...


# --- shmq over TCP ----------------------------------------------------------------------------
class ShmqTarget:
    """A broker at `addr`, driven as a RocketMQ client would: V2 sends, batch sends, pulls."""

    def __init__(self, addr: str, queues: int) -> None:
        self.queues = queues
        self._addr = addr
        self._client = RemotingClient()
        # headers are built once: encoding the JSON header is the client's per-request cost
        self._fields = [self._send_fields(q) for q in range(queues)]
        self._batch_fields = [self._send_fields(q, batch=True) for q in range(queues)]
        self._queues = [MessageQueue(TOPIC, "bench", q) for q in range(queues)]

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[ShmqTarget]:
        try:
            yield self
        finally:
            await self._client.close()

    @staticmethod
    def _send_fields(queue: int, *, batch: bool = False) -> dict[str, str]:
        # m: the batch flag, set by the Java client on batch sends (as here)
        return SendMessageRequestHeaderV2(
            a="bench-pg", b=TOPIC, c="TBW102", d=QUEUES, e=queue, f=0,
            g=int(time.time() * 1000), h=0, i="WAIT\x01true\x02", m=batch).to_ext_fields()

    async def _call(self, code: int, fields: dict[str, str], body: bytes | None) -> Any:
        response = await self._client.invoke(self._addr, make_request(code, 0, fields, body),
                                             TIMEOUT_S)
        if response.code != ResponseCode.SUCCESS:
            raise RuntimeError(f"request {code} answered {response.code}: {response.remark}")
        return response

    async def send(self, queue: int, body: bytes) -> None:
        await self._call(RequestCode.SEND_MESSAGE_V2, self._fields[queue], body)

    async def send_batch(self, queue: int, bodies: list[bytes]) -> None:
        payload = encode_batch_body((0, b, b"") for b in bodies)
        await self._call(RequestCode.SEND_BATCH_MESSAGE, self._batch_fields[queue], payload)

    async def consume(self, expected: list[int], per_read: int) -> None:
        async def reader(q: int, k: int) -> None:
            for start in range(k * per_read, expected[q], PULL_WINDOW * per_read):
                offset, end = start, min(start + per_read, expected[q])
                while offset < end:
                    offset = await self._pull(q, offset, end - offset)

        await asyncio.gather(*(reader(q, k) for q in range(self.queues)
                               for k in range(PULL_WINDOW)))

    async def _pull(self, queue: int, offset: int, count: int) -> int:
        """Pull up to `count` messages of `queue` from `offset`; return the next offset."""
        header = PullMessageRequestHeader(
            consumer_group="bench-cg", topic=TOPIC, queue_id=queue, queue_offset=offset,
            max_msg_nums=count, sys_flag=0x4, commit_offset=0, suspend_timeout_millis=0,
            sub_version=0, subscription="*")
        response = await self._client.invoke(
            self._addr, make_request(RequestCode.PULL_MESSAGE, 0, header.to_ext_fields()),
            TIMEOUT_S)
        if response.code == ResponseCode.SUCCESS:
            # decoded into messages as shmq's consumers do (not just counted)
            result = decode_pull_response(response.code, response.ext_fields, response.body,
                                          self._queues[queue])
            return offset + len(result.messages)
        if response.code in (ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_RETRY_IMMEDIATELY):
            await asyncio.sleep(0.001)
            return offset
        raise RuntimeError(f"pull answered {response.code}: {response.remark}")


# --- the workload -----------------------------------------------------------------------------
def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(target: Target, size: int, messages: int) -> dict[str, float]:
    """Run the four phases against `target`; return the figures of PHASE_FIGURES."""
    body = b"t" * size
    queues = target.queues
    sent = [0] * queues
    for i in range(WARMUP):  # connections, topic creation, first pages: not timed
        await target.send(i % queues, body)
        sent[i % queues] += 1
    lat = []
    t0 = time.perf_counter()
    for i in range(messages):
        t = time.perf_counter_ns()
        await target.send(i % queues, body)
        lat.append((time.perf_counter_ns() - t) / 1000)
        sent[i % queues] += 1
    figures = {"sync_msgs_per_s": messages / (time.perf_counter() - t0)}
    lat.sort()
    figures.update(sync_p50_us=_percentile(lat, 0.5), sync_p99_us=_percentile(lat, 0.99))

    async def sender(w: int) -> None:
        for i in range(w, messages, ASYNC_WINDOW):
            await target.send(i % queues, body)

    t0 = time.perf_counter()
    await asyncio.gather(*(sender(w) for w in range(ASYNC_WINDOW)))
    figures["async_msgs_per_s"] = messages / (time.perf_counter() - t0)
    for i in range(messages):
        sent[i % queues] += 1

    batches = max(1, messages // BATCH)
    bodies = [body] * BATCH

    async def batcher(w: int) -> None:
        for b in range(w, batches, BATCH_WINDOW):
            await target.send_batch(b % queues, bodies)

    t0 = time.perf_counter()
    await asyncio.gather(*(batcher(w) for w in range(BATCH_WINDOW)))
    figures["batch_msgs_per_s"] = batches * BATCH / (time.perf_counter() - t0)
    for b in range(batches):
        sent[b % queues] += BATCH

    t0 = time.perf_counter()
    await asyncio.wait_for(target.consume(sent, PER_PULL), 10 * TIMEOUT_S)
    figures["consume_msgs_per_s"] = sum(sent) / (time.perf_counter() - t0)
    return figures


# --- targets' lifetimes -----------------------------------------------------------------------
def _measure_shmq(addr: str, size: int, messages: int) -> dict[str, float]:
    async def go() -> dict[str, float]:
        async with ShmqTarget(addr, QUEUES).session() as target:
            return await measure(target, size, messages)

    return run_loop(go())


def _measure_peer(name: str, tmp: Path, size: int, messages: int) -> dict[str, float]:
    with peer_server(name, tmp) as port:
        async def go() -> dict[str, float]:
            peer = RedisTarget(port, QUEUES) if name == "redis" else NatsTarget(port, QUEUES)
            async with peer.session() as target:
                return await measure(target, size, messages)

        return run_loop(go())


# --- the C++ client ---------------------------------------------------------------------------
_CPP_PRODUCER = r"""
import os, sys, time
try:
    from rocketmq.client import Message, Producer
    namesrv, topic, size, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    producer = Producer("shmq-bench-cpp")
    producer.set_namesrv_addr(namesrv)
    producer.set_timeout(3000)
    producer.start()
    message = Message(topic)
    message.set_body("c" * size)
    for _ in range(50):
        producer.send_sync(message)
    t0 = time.perf_counter()
    for _ in range(count):
        producer.send_sync(message)
    print("ELAPSED", time.perf_counter() - t0, flush=True)
except Exception as err:
    print("FAILED", type(err).__name__, str(err).replace("\n", " "), flush=True)
finally:
    sys.stdout.flush()
    os._exit(0)
"""


def cpp_available() -> bool:
    return importlib.util.find_spec("rocketmq") is not None


def cpp_sync_rate(namesrv: str, tmp: Path, size: int, count: int) -> float | None:
    """msgs/s of the C++ client's send_sync loop (None, with a line on stderr, if it fails).
    HOME is a temporary directory: the client writes its logs under $HOME/logs."""
    home = tmp / "cpp-home"
    home.mkdir(exist_ok=True)
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CPP_PRODUCER, namesrv, "BenchCpp", str(size), str(count)],
            check=False, capture_output=True, text=True, timeout=120 + count / 500,
            env=os.environ | {"HOME": str(home)}).stdout
    except subprocess.TimeoutExpired:
        out = "FAILED timed out"
    for line in out.splitlines():
        if line.startswith("ELAPSED "):
            return count / float(line.split()[1])
    print(f"cpp: the C++ producer did not finish: {out.strip()[-300:]}", file=sys.stderr)
    return None


# --- one run ----------------------------------------------------------------------------------
def run_once(*, size: int, messages: int, peers: Sequence[str] = (), cpp: bool = False,
             writers: int = 2) -> dict[str, Any]:
    """One run: shmq, then each of `peers` (already checked with peers.missing), on fresh
    temporary dirs; the figures named in FIGURES that apply."""
    tmp = Path(tempfile.mkdtemp(prefix="shmq-bench-tcp-"))
    result: dict[str, Any] = {"size": size, "messages": messages}
    try:
        with running_broker(tmp, writers, "bt") as (addr, namesrv):
            result.update(_prefixed("shmq", _measure_shmq(addr, size, messages)))
            if cpp:
                rate = cpp_sync_rate(namesrv, tmp, size, messages)
                if rate is not None:
                    result["cpp_sync_msgs_per_s"] = rate
        for name in peers:
            result.update(_prefixed(name, _measure_peer(name, tmp, size, messages)))
            for fig in RATIO_FIGURES:
                result[f"ratio_{name}_{fig}"] = result[f"shmq_{fig}"] / result[f"{name}_{fig}"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _prefixed(target: str, figures: dict[str, float]) -> dict[str, float]:
    return {f"{target}_{k}": v for k, v in figures.items()}


def available_peers(wanted: Sequence[str]) -> list[str]:
    """The peers of `wanted` that can run here; one line on stdout for each that cannot."""
    usable = []
    for name in wanted:
        reason = missing(name)
        if reason is None:
            usable.append(name)
        else:
            print(reason, flush=True)
    return usable


def run_matrix(*, sizes: list[int], runs: int, messages: int, peers: Sequence[str],
               cpp: bool, as_json: bool) -> list[dict[str, Any]]:
    usable = available_peers(peers)
    cpp = cpp and cpp_available()
    medians = []
    for size in sizes:
        results = []
        for i in range(runs):
            r = run_once(size=size, messages=messages, peers=usable, cpp=cpp)
            r["run"] = i
            emit(r, as_json)
            results.append(r)
        med: dict[str, Any] = {"size": size, "messages": messages, "runs": runs, "median": True}
        med.update(median_of(results, FIGURES))
        emit(med, as_json)
        medians.append(med)
    return medians
