"""Helpers of the command-line tests: run `shmq` in-process (click's CliRunner) against a
broker's name server, and read its JSON output."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from click.testing import CliRunner, Result

from shmq.cli import main
from shmq.testing.broker import BrokerProcess


def namesrv_of(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env['SHMQ_NAMESRV_PORT']}"


@dataclass
class Shmq:
    """`shmq ARGS...` with SHMQ_NAMESRV pointing at one name server."""

    namesrv: str

    def __call__(self, *args: str, input: bytes | str | None = None,
                 code: int | None = 0) -> Result:
        """Run; assert the exit status is `code` (None: any)."""
        result = CliRunner().invoke(main, list(args), input=input, prog_name="shmq",
                                    env={"SHMQ_NAMESRV": self.namesrv})
        assert code is None or result.exit_code == code, (
            f"shmq {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}")
        return result

    def json(self, *args: str) -> Any:
        """Run an admin command with --json and parse its output."""
        return json.loads(self(*args, "--json").stdout)

    def lines(self, *args: str, input: bytes | str | None = None) -> list[dict[str, Any]]:
        """Run produce/consume and parse its JSON lines."""
        out = self(*args, input=input).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def only_line(text: str) -> str:
    """The single line of an error output (fails when there are more)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]
