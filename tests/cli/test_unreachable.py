"""Client commands against a name server that is not there: one line on stderr, exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shmq.runtime.launcher import free_port

from .helpers import Shmq, only_line

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def nowhere() -> Shmq:
    """SHMQ_NAMESRV names a port nobody listens on."""
    return Shmq(f"127.0.0.1:{free_port()}")


@pytest.mark.parametrize("command", [
    ["admin", "cluster", "list"], ["admin", "topic", "list"], ["admin", "topic", "status", "T"],
    ["admin", "topic", "create", "T"], ["admin", "broker", "status"],
    ["admin", "consumer", "progress", "g"], ["admin", "message", "key", "T", "k"],
    ["admin", "consumer", "reset-offset", "g", "T", "-s", "now"],
    ["produce", "T", "-c", "2"], ["consume", "T", "--timeout", "1"],
])
def test_an_unreachable_name_server_is_one_line_and_exit_1(nowhere: Shmq,
                                                            command: list[str]) -> None:
    out = nowhere(*command, code=1)
    assert out.stdout == ""
    line = only_line(out.stderr)
    assert line.startswith(f"shmq {' '.join(command[:3 if command[0] == 'admin' else 1])}: ")
    assert f"no name server of {nowhere.namesrv} answered" in line
    assert "refused" in line.lower()


def test_the_name_server_option_beats_the_environment(nowhere: Shmq) -> None:
    other = f"127.0.0.1:{free_port()}"
    out = nowhere("admin", "topic", "list", "-n", other, "--json", code=1)
    assert f"no name server of {other} answered" in only_line(out.stderr)


def test_an_unreachable_broker_is_one_line_and_exit_1(nowhere: Shmq) -> None:
    addr = f"127.0.0.1:{free_port()}"
    out = nowhere("admin", "broker", "config", "-b", addr, code=1)
    assert only_line(out.stderr) == (f"shmq admin broker config: cannot reach {addr}: "
                                     "Connection refused")


def test_the_installed_command_prints_no_log_lines_or_traceback() -> None:
    """The real entry point (a subprocess): the client's retry warnings stay quiet."""
    namesrv = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SHMQ_NAMESRV": namesrv}
    script = Path(sys.executable).parent / "shmq"  # the console script next to the interpreter
    for command in (["consume", "T", "--timeout", "1"], ["admin", "topic", "status", "T"]):
        done = subprocess.run([str(script), *command], env=env, capture_output=True,
                              text=True, timeout=30, check=False)
        assert done.returncode == 1 and done.stdout == ""
        line = only_line(done.stderr)
        assert line.startswith(f"shmq {command[0]}")
        assert f"no name server of {namesrv} answered" in line
