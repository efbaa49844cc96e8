"""Tests of shmq/namesrv/roles.py: the supervisor's `namesrv` role and `shmq namesrv`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shmq.namesrv import bind_host_for, namesrv_main
from shmq.protocol import RequestCode, ResponseCode, make_request
from shmq.remoting import RemotingClient
from shmq.runtime.config import Config, load_config

from ..remoting.helpers import run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("advertised", "bound"), [
    ("127.0.0.1", "127.0.0.1"), ("127.0.1.1", "127.0.0.1"), ("::1", "127.0.0.1"),
    ("localhost", "127.0.0.1"), ("10.0.0.5", "0.0.0.0"), ("broker.example", "0.0.0.0"),
])
def test_the_role_listens_where_the_broker_is_reachable(advertised: str, bound: str) -> None:
    assert bind_host_for(advertised) == bound


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StandInContext:
    """What the supervisor hands a role, minus the process machinery."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.role, self.index = "namesrv", 0
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.heartbeats = 0

    def should_stop(self) -> bool:
        return self.stop.is_set()

    def is_fast_stop(self) -> bool:
        return False

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def set_ready(self) -> None:
        self.ready.set()


@pytest.mark.integration
def test_the_namesrv_role_serves_until_asked_to_stop() -> None:
    port = _free_port()
    config = load_config(env={"SHMQ_NAMESRV_PORT": str(port)})
    ctx = StandInContext(config)
    failure: list[BaseException] = []

    def role() -> None:
        try:
            namesrv_main(ctx)
        except BaseException as err:  # noqa: BLE001 -- reported by the assertion below
            failure.append(err)

    thread = threading.Thread(target=role, name="namesrv-role")
    thread.start()
    try:
        assert ctx.ready.wait(10), f"the role did not become ready: {failure}"

        async def ask() -> int:
            async with RemotingClient() as client:
                response = await client.invoke(
                    f"127.0.0.1:{port}",
                    make_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, 0, {"topic": "T"}), 5)
                return response.code

        assert run(ask()) == ResponseCode.TOPIC_NOT_EXIST
        assert ctx.heartbeats >= 1
    finally:
        ctx.stop.set()
        thread.join(10)
    assert not thread.is_alive() and not failure


@pytest.mark.integration
def test_shmq_namesrv_prints_its_address_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHMQ")}
    env["PYTHONPATH"] = str(REPO)
    with (tmp_path / "stderr.log").open("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shmq.cli", "namesrv", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=tmp_path)
        try:
            line = _first_line(proc, timeout_s=15)
            assert line.startswith("shmq namesrv: listening on 127.0.0.1:"), line
            address = line.rsplit(" ", 1)[1]

            async def ask() -> int:
                async with RemotingClient() as client:
                    response = await client.invoke(
                        address, make_request(RequestCode.GET_BROKER_CLUSTER_INFO, 0), 5)
                    return response.code

            assert run(ask()) == ResponseCode.SUCCESS
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        stderr.seek(0)
        assert "name server listening on 127.0.0.1:" in stderr.read()


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The child's first line on stdout, without hanging if it never comes."""
    stdout = proc.stdout
    assert stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not lines:
        raise AssertionError(f"`shmq namesrv` printed nothing within {timeout_s} s")
    return lines[0].strip()
