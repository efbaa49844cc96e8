"""Helpers for tests that run an event loop and talk to servers over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from shmq.protocol import RemotingCommand, decode_frame, encode_command_bytes

T = TypeVar("T")

#: a test's whole scenario must finish within this (pytest-timeout is the last resort)
SCENARIO_TIMEOUT_S = 20.0


def run(coro: Coroutine[Any, Any, T], timeout_s: float = SCENARIO_TIMEOUT_S) -> T:
    """Run `coro` on a fresh event loop, failing (not hanging) after `timeout_s`."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def wait_until(predicate: Any, timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll `predicate()` until true; AssertionError naming `what` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


class RawPeer:
    """A bare TCP peer that writes bytes and reads frames, to test what a server tolerates."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawPeer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_command(self, command: RemotingCommand) -> None:
        await self.send(encode_command_bytes(command))

    async def read_command(self, timeout_s: float = 5.0) -> RemotingCommand:
        prefix = await asyncio.wait_for(self.reader.readexactly(4), timeout_s)
        rest = await asyncio.wait_for(
            self.reader.readexactly(int.from_bytes(prefix, "big")), timeout_s)
        return decode_frame(prefix + rest)

    async def is_closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        """True when the server closed the connection (EOF or reset) within `timeout_s`."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
