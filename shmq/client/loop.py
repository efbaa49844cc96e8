"""An asyncio event loop on a background thread: what the synchronous client facades run on.

Theory of operation: the remote clients are asyncio code (`AsyncProducer`, `AsyncPullConsumer`,
the push consumer's pull loops). A synchronous caller (`Producer.send`) hands a coroutine to
`LoopThread.run`, which schedules it on the loop thread and blocks the caller until it finishes
(or a deadline passes: a caller never hangs on a wedged loop). `submit` returns the
`concurrent.futures.Future` instead. Coroutines never run on the caller's thread, so one client
is driven from one loop however many threads call it.

Calling `run` from the loop thread itself would deadlock; it raises instead. `close` stops the
loop after cancelling what still runs, and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

from shmq.remoting import new_event_loop

__all__ = ["LoopThread"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how long `close` waits for the loop thread to finish cancelled work
_CLOSE_JOIN_S: Final = 10.0


class LoopThread:
    """An event loop running forever on a daemon thread named `name`."""

    def __init__(self, name: str) -> None:
        self._loop = new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (schedule on it only with thread-safe calls)."""
        return self._loop

    @property
    def is_running(self) -> bool:
        """True until `close`."""
        return self._thread.is_alive() and not self._loop.is_closed()

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop; return a future of its result.

        Raises:
            RuntimeError: the loop is closed (`coro` is closed, never run).
        """
        if not self.is_running:
            coro.close()
            raise RuntimeError("the client's event loop is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def finish(self, coro: Coroutine[Any, Any, Any], timeout_s: float) -> None:
        """Run `coro` (a client's close) if the loop still runs, then `close` the loop
        whatever it raised (the synchronous facades' `close`). Idempotent."""
        if not self.is_running:
            coro.close()
            return
        try:
            self.run(coro, timeout_s)
        finally:
            self.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None) -> T:
        """Run `coro` on the loop and wait for its result (or exception).

        Args:
            coro: the coroutine.
            timeout_s: give up after this long (None: wait for ever); the coroutine is
                cancelled then. Callers pass their own timeout plus a margin, so that the
                coroutine's own, typed timeout fires first.

        Raises:
            TimeoutError: `timeout_s` passed.
            RuntimeError: called from the loop thread (it would deadlock) or after `close`.
            Whatever `coro` raises.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("a synchronous client call was made on the client's own event "
                               "loop thread; use the async API there")
        future = self.submit(coro)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the client did not finish within {timeout_s:g} s") from None

    def close(self) -> None:
        """Cancel the loop's tasks, stop it and join its thread (idempotent)."""
        if not self.is_running:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CLOSE_JOIN_S)
        if self._thread.is_alive():
            log.warning("client loop thread %s did not stop in %g s", self._thread.name,
                        _CLOSE_JOIN_S)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._cancel_leftovers()
            self._loop.close()

    def _cancel_leftovers(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(
                    asyncio.gather(*tasks, return_exceptions=True))
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
