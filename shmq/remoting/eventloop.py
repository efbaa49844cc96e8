"""Which event loop the remoting roles run on: uvloop when it is importable, else asyncio's.

Theory of operation: every process of shmq that serves or calls the remoting protocol (the
name server, the acceptor, the clients' loop thread, the TCP benchmark) creates its loop here.
uvloop (libuv under a Cython event loop) cuts a loopback request/response round trip on this
kind of machine to 0.49-0.65x asyncio's selector loop (`tools/bench_echo.py`, p50), and the
wake-up of an idle loop is most of what a synchronous send costs. It is a dependency of the
package, but a loop that cannot be made with it (a platform without wheels, or
``SHMQ_EVENT_LOOP=asyncio`` in the environment, e.g. to compare the two) falls back to the
standard loop: nothing in shmq relies on uvloop-only behaviour.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

__all__ = ["ENV_VAR", "loop_kind", "new_event_loop", "run"]

T = TypeVar("T")

#: environment variable choosing the loop: "uvloop" (default) or "asyncio"
ENV_VAR: Final = "SHMQ_EVENT_LOOP"


def loop_kind() -> str:
    """"uvloop" when loops made here are uvloop's, else "asyncio"."""
    if os.environ.get(ENV_VAR, "uvloop").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401 -- optional at run time
    except ImportError:
        return "asyncio"
    return "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind `loop_kind` names (not set as current)."""
    if loop_kind() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on a loop from `new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
