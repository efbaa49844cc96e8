"""The peers of `shmq bench tcp`: Redis 7 Streams and NATS JetStream, started by the benchmark.

Each peer is a server binary from a Debian package (`redis-server`, `nats-server`) started on a
free 127.0.0.1 port with a temporary data directory, durable storage on (Redis: appendonly yes,
the default appendfsync everysec; NATS: JetStream file storage), and stopped (SIGTERM, then
SIGKILL) when the context exits. Each has a workload adapter driving it through its usual Python
asyncio client (`redis`, `nats-py`) with the operations tcp.py times: a single send, a batch of
sends, and reading everything back. A shmq "queue" is a Redis stream or a NATS subject.

`missing(name)` says in one line why a peer cannot be measured here (binary or client absent);
nothing in this module imports a peer's client before it is known to be installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["PEERS", "NatsTarget", "RedisTarget", "free_port", "missing", "peer_server"]

#: name -> (server binary, Python module, pip name)
PEERS = {"redis": ("redis-server", "redis", "redis"), "nats": ("nats-server", "nats", "nats-py")}

#: concurrent readers per queue while reading everything back
READERS_PER_QUEUE = 4
CONSUME_GROUP = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(name: str) -> str | None:
    """Why peer `name` cannot be measured here, or None when it can."""
    binary, module, pip_name = PEERS[name]
    if shutil.which(binary) is None:
        return f"{name}: `{binary}` not found (apt-get install -y {binary}); measuring without it"
    if importlib.util.find_spec(module) is None:
        return f"{name}: Python client not installed (pip install {pip_name}); measuring without it"
    return None


def _command(name: str, port: int, data_dir: Path) -> list[str]:
    if name == "redis":
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                "--appendonly", "yes", "--save", "", "--protected-mode", "no",
                "--daemonize", "no", "--logfile", ""]
    return ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir)]


@contextlib.contextmanager
def peer_server(name: str, tmp: Path, timeout_s: float = 15.0) -> Iterator[int]:
    """Run peer `name`'s server on a free port with its data in `tmp`; yield the port."""
    data_dir = tmp / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (tmp / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(_command(name, port, data_dir), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        _wait_listening(name, proc, port, timeout_s, tmp / f"{name}.log")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_listening(name: str, proc: subprocess.Popen[bytes], port: int, timeout_s: float,
                    log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} server exited with {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} server not listening on {port} after {timeout_s} s")
        time.sleep(0.02)


async def _read_all(queues: int, expected: list[int],
                    read: Callable[[int, int], Awaitable[int]]) -> None:
    """Run READERS_PER_QUEUE concurrent `read(queue, reader)` loops per queue until each queue
    has yielded its expected count; readers still waiting for more are then cancelled."""
    got = [0] * queues
    done = [asyncio.Event() for _ in range(queues)]

    async def reader(q: int, k: int) -> None:
        while got[q] < expected[q]:
            n = await read(q, k)  # not `got[q] += await ...`: that reads got[q] before awaiting
            got[q] += n
        done[q].set()

    tasks = [asyncio.create_task(reader(q, k)) for q in range(queues)
             for k in range(READERS_PER_QUEUE)]
    all_done = asyncio.ensure_future(asyncio.gather(*(d.wait() for d in done)))
    try:  # a reader that fails ends the wait, and its exception is raised below
        waits: list[asyncio.Future[Any]] = [all_done, *tasks]
        await asyncio.wait(waits, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        all_done.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(all_done, *tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (err := task.exception()) is not None:
            raise err


class RedisTarget:
    """Redis Streams: one stream per queue, XADD to send, XREADGROUP (NOACK) to read back."""

    def __init__(self, port: int, queues: int) -> None:
        self.queues = queues
        self._port = port
        self._client: Any = None

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[RedisTarget]:
        import redis.asyncio

        self._client = redis.asyncio.Redis(host="127.0.0.1", port=self._port)
        try:
            for q in range(self.queues):
                await self._client.xgroup_create(f"bench{q}", CONSUME_GROUP, id="0",
                                                 mkstream=True)
            yield self
        finally:
            await self._client.aclose()

    async def send(self, queue: int, body: bytes) -> None:
        await self._client.xadd(f"bench{queue}", {"b": body})

    async def send_batch(self, queue: int, bodies: list[bytes]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for body in bodies:
            pipe.xadd(f"bench{queue}", {"b": body})
        await pipe.execute()

    async def consume(self, expected: list[int], per_read: int) -> None:
        async def read(q: int, k: int) -> int:
            reply = await self._client.xreadgroup(CONSUME_GROUP, f"c{q}-{k}", {f"bench{q}": ">"},
                                                  count=per_read, noack=True, block=100)
            return sum(len(entries) for _stream, entries in _stream_items(reply))

        await _read_all(self.queues, expected, read)


def _stream_items(reply: Any) -> list[tuple[Any, Any]]:
    """XREADGROUP's reply as (stream, entries) pairs: a list under RESP2, a dict under RESP3."""
    if not reply:
        return []
    return list(reply.items()) if isinstance(reply, dict) else [tuple(x) for x in reply]


class NatsTarget:
    """NATS JetStream: one file-backed stream, subject bench.<queue>; publish waits for the
    PubAck; read back with pull consumers (one durable per queue, ack policy none, several
    subscriptions bound to it)."""

    def __init__(self, port: int, queues: int) -> None:
        self.queues = queues
        self._port = port
        self._nc: Any = None
        self._js: Any = None

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[NatsTarget]:
        import nats
        from nats.js.api import StorageType

        self._nc = await nats.connect(f"nats://127.0.0.1:{self._port}")
        try:
            self._js = self._nc.jetstream()
            await self._js.add_stream(name="BENCH", subjects=["bench.*"],
                                      storage=StorageType.FILE)
            yield self
        finally:
            await self._nc.close()

    async def send(self, queue: int, body: bytes) -> None:
        await self._js.publish(f"bench.{queue}", body)

    async def send_batch(self, queue: int, bodies: list[bytes]) -> None:
        # JetStream has no batch publish: the batch goes out at once, then its acks are awaited
        acks = [await self._js.publish_async(f"bench.{queue}", body) for body in bodies]
        await asyncio.gather(*acks)

    async def consume(self, expected: list[int], per_read: int) -> None:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig

        subs = {}
        for q in range(self.queues):
            await self._js.add_consumer("BENCH", ConsumerConfig(
                durable_name=f"c{q}", filter_subject=f"bench.{q}", ack_policy=AckPolicy.NONE))
            for k in range(READERS_PER_QUEUE):
                subs[q, k] = await self._js.pull_subscribe_bind(f"c{q}", stream="BENCH")

        async def read(q: int, k: int) -> int:
            try:
                return len(await subs[q, k].fetch(per_read, timeout=0.25))
            except (NatsTimeout, TimeoutError):  # nats-py raises either; the loop asks again
                return 0

        await _read_all(self.queues, expected, read)
