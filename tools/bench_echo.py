"""Loopback request/response round trip between two processes: asyncio's loop vs uvloop.

    python3 tools/bench_echo.py [--runs 5] [--count 5000] [--size 200]

The floor under every TCP figure of shmq on this machine: a server process echoes what it
reads; a client process sends `--size` bytes and waits for them, `--count` times, on one
connection, with each loop kind (both processes use the same kind). Prints one JSON object:
median over `--runs` runs of each kind's p50 and p99 round trip in microseconds, and the
ratio uvloop / asyncio of the p50s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import statistics
import time

import uvloop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def _serve(port: int, kind: str, ready: mp.synchronize.Event) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    _run(main(), kind)


def _run(coro: object, kind: str) -> object:
    factory = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def _client(port: int, count: int, size: int) -> list[float]:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[None]] = []
        got = [0]

        class Client(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                got[0] += len(data)
                if got[0] >= size and waiter and not waiter[0].done():
                    waiter[0].set_result(None)

        transport, _ = await loop.create_connection(Client, "127.0.0.1", port)
        payload, lat = b"x" * size, []
        for _ in range(count):
            got[0] = 0
            waiter[:] = [loop.create_future()]
            started = time.perf_counter()
            transport.write(payload)
            await asyncio.wait_for(waiter[0], 5.0)
            lat.append((time.perf_counter() - started) * 1e6)
        transport.close()
        return sorted(lat)

    return main()  # type: ignore[return-value]


def _once(kind: str, count: int, size: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    port, ready = _free_port(), ctx.Event()
    server = ctx.Process(target=_serve, args=(port, kind, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("echo server did not start")
        lat = _run(_client(port, count, size), kind)
        assert isinstance(lat, list)
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    finally:
        server.kill()
        server.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {"asyncio": [], "uvloop": []}
    for _ in range(args.runs):  # alternating, so that drift of the machine hits both
        for kind, results in runs.items():
            results.append(_once(kind, args.count, args.size))
    out: dict[str, float] = {}
    for kind, results in runs.items():
        out[f"{kind}_p50_us"] = statistics.median(r[0] for r in results)
        out[f"{kind}_p99_us"] = statistics.median(r[1] for r in results)
    out["ratio_uvloop_p50"] = out["uvloop_p50_us"] / out["asyncio_p50_us"]
    print(json.dumps({"runs": args.runs, "count": args.count, "size": args.size, **out}))


if __name__ == "__main__":
    main()
