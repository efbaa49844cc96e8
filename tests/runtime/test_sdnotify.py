"""shmq.runtime.sdnotify: the exact datagrams a Notifier sends, the watchdog rules, and that it
never raises once built. Each test plays systemd with its own socket; every read has a timeout."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shmq.errors import ConfigError
from shmq.runtime.sdnotify import (
    MAX_STATUS_BYTES,
    BadNotifyEnvironment,
    ListenerClosed,
    Notifier,
    NotifyListener,
    NotifyTimeout,
)

pytestmark = pytest.mark.integration

READ_TIMEOUT_S = 5.0


@dataclass
class Systemd:
    """A bound datagram socket standing in for systemd's, and the NOTIFY_SOCKET naming it."""

    sock: socket.socket
    address: str

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address, **extra}

    def receive(self) -> bytes:
        return self.sock.recv(65536)  # the socket has a timeout: a missing datagram fails

    def assert_nothing_then(self, notifier: Notifier) -> None:
        """Nothing was sent before now: the next datagram is a marker sent after the fact."""
        assert notifier.status("marker")
        assert self.receive() == b"STATUS=marker"


def _bound(address: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(READ_TIMEOUT_S)
    return sock


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Systemd]:
    if request.param == "path":
        path = tmp_path / "notify"
        sock, address = _bound(os.fsencode(path)), str(path)
    else:
        name = f"shmq-test-{secrets.token_hex(8)}"
        sock, address = _bound(b"\0" + name.encode()), "@" + name
    with sock:
        yield Systemd(sock, address)


def test_ready_with_status_is_one_datagram(systemd: Systemd) -> None:
    with Notifier(systemd.env()) as notifier:
        assert notifier.ready("serving on :10911")
        assert systemd.receive() == b"READY=1\nSTATUS=serving on :10911"


def test_each_call_sends_its_exact_datagram(systemd: Systemd) -> None:
    with Notifier(systemd.env(WATCHDOG_USEC="30000000")) as notifier:
        assert notifier.is_enabled and notifier.address == systemd.address
        calls: list[tuple[Callable[..., bool], tuple[object, ...], bytes]] = [
            (notifier.ready, (), b"READY=1"),
            (notifier.status, ("recovering segment 7/40",), b"STATUS=recovering segment 7/40"),
            (notifier.watchdog, (), b"WATCHDOG=1"),
            (notifier.stopping, (), b"STOPPING=1"),
            (notifier.stopping, ("draining",), b"STOPPING=1\nSTATUS=draining"),
            (notifier.main_pid, (4321,), b"MAINPID=4321"),
            (notifier.extend_timeout, (90.5,), b"EXTEND_TIMEOUT_USEC=90500000"),
        ]
        for method, args, expected in calls:
            assert method(*args), method.__name__
            assert systemd.receive() == expected, method.__name__


def test_reloading_carries_the_monotonic_time(systemd: Systemd) -> None:
    with Notifier(systemd.env()) as notifier:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        first, second = systemd.receive().split(b"\n")
        assert first == b"RELOADING=1"
        key, _, usec = second.partition(b"=")
        assert key == b"MONOTONIC_USEC" and before <= int(usec) <= after


def test_a_status_stays_one_line_and_fits_a_datagram(systemd: Systemd) -> None:
    with Notifier(systemd.env()) as notifier:
        assert notifier.status("line one\nline two\r\nREADY=1")
        assert systemd.receive() == b"STATUS=line one line two READY=1"
        assert notifier.status("é" * 4000)  # 8000 bytes of UTF-8, cut on a character boundary
        sent = systemd.receive().removeprefix(b"STATUS=")
        assert sent == ("é" * (MAX_STATUS_BYTES // 2)).encode()


# --- watchdog ------------------------------------------------------------------------------------
def test_watchdog_interval_is_watchdog_usec_in_seconds(systemd: Systemd) -> None:
    with Notifier(systemd.env(WATCHDOG_USEC="30000000")) as notifier:
        assert notifier.watchdog_interval_s() == 30.0
    with Notifier(systemd.env(WATCHDOG_USEC="1500")) as notifier:
        assert notifier.watchdog_interval_s() == 0.0015


def test_watchdog_pid_naming_us_keeps_the_watchdog(systemd: Systemd) -> None:
    env = systemd.env(WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid()))
    with Notifier(env) as notifier:
        assert notifier.watchdog_interval_s() == 2.0
        assert notifier.watchdog()
        assert systemd.receive() == b"WATCHDOG=1"


def test_watchdog_pid_naming_another_process_is_not_ours(systemd: Systemd) -> None:
    env = systemd.env(WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid() + 1))
    with Notifier(env) as notifier:
        assert notifier.watchdog_interval_s() is None
        assert not notifier.watchdog()
        systemd.assert_nothing_then(notifier)


def test_no_watchdog_usec_means_no_watchdog(systemd: Systemd) -> None:
    with Notifier(systemd.env(WATCHDOG_PID=str(os.getpid()))) as notifier:
        assert notifier.watchdog_interval_s() is None
        assert not notifier.watchdog()
        systemd.assert_nothing_then(notifier)


# --- off, malformed, failing -----------------------------------------------------------------------
@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "30000000"}])
def test_without_notify_socket_every_call_is_a_no_op(env: dict[str, str]) -> None:
    with Notifier(env) as notifier:
        assert not notifier.is_enabled and notifier.address is None
        assert notifier.watchdog_interval_s() == (30.0 if env.get("WATCHDOG_USEC") else None)
        results = [notifier.ready("x"), notifier.status("x"), notifier.stopping(),
                   notifier.reloading(), notifier.main_pid(1), notifier.extend_timeout(1)]
        assert results == [False] * 6
        assert notifier.failed_sends == 0


@pytest.mark.parametrize(("key", "value"), [
    ("NOTIFY_SOCKET", "run/systemd/notify"),
    ("NOTIFY_SOCKET", "vsock:2:1234"),
    ("NOTIFY_SOCKET", "/" + "x" * 200),
    ("WATCHDOG_USEC", "30s"),
    ("WATCHDOG_USEC", "0"),
    ("WATCHDOG_USEC", "-5"),
    ("WATCHDOG_PID", "me"),
])
def test_a_malformed_environment_is_a_config_error(key: str, value: str) -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", key: value}
    with pytest.raises(BadNotifyEnvironment) as caught:
        Notifier(env)
    assert isinstance(caught.value, ConfigError)
    assert (caught.value.key, caught.value.value) == (key, value)
    assert key in str(caught.value) and repr(value) in str(caught.value)


def test_a_vanished_socket_is_logged_once_and_never_raises(
    systemd: Systemd, caplog: pytest.LogCaptureFixture
) -> None:
    with Notifier(systemd.env(WATCHDOG_USEC="1000000")) as notifier:
        assert notifier.ready()
        assert systemd.receive() == b"READY=1"
        systemd.sock.close()  # systemd went away (a path stays behind, nobody reads it)
        with caplog.at_level(logging.DEBUG, logger="shmq.runtime.sdnotify"):
            results = [notifier.watchdog(), notifier.status("x"), notifier.stopping()]
        assert results == [False, False, False]
        assert notifier.failed_sends == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and systemd.address in warnings[0].getMessage()


def test_a_forked_child_sends_nothing(systemd: Systemd) -> None:
    with Notifier(systemd.env(WATCHDOG_USEC="1000000")) as notifier:
        pid = os.fork()
        if pid == 0:  # the child: every call must be a no-op that returns False
            sent = [notifier.ready(), notifier.watchdog(), notifier.status("child")]
            ok = not any(sent) and not notifier.is_enabled and notifier.watchdog_interval_s() is None
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        systemd.assert_nothing_then(notifier)


def test_close_makes_later_calls_no_ops(systemd: Systemd) -> None:
    notifier = Notifier(systemd.env())
    notifier.close()
    notifier.close()
    assert not notifier.is_enabled
    assert not notifier.ready()
    assert notifier.failed_sends == 0


def test_unset_environment_removes_the_variables(
    systemd: Systemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    with Notifier(unset_environment=True) as notifier:
        assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(os.environ)
        assert notifier.watchdog_interval_s() == 4.0
        assert notifier.ready()
        assert systemd.receive() == b"READY=1"


# --- NotifyListener ------------------------------------------------------------------------------
@pytest.mark.parametrize("abstract", [False, True])
def test_listener_collects_fields_and_the_senders_pid(abstract: bool) -> None:
    with NotifyListener(abstract=abstract) as listener:
        assert listener.address.startswith("@" if abstract else "/")
        env = listener.environment(watchdog_usec=3_000_000, watchdog_pid=os.getpid())
        assert env == {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "3000000",
                       "WATCHDOG_PID": str(os.getpid())}
        with Notifier(env) as notifier:
            assert notifier.status("starting") and notifier.ready("up")
        ready = listener.wait_for("READY", "1", timeout_s=READ_TIMEOUT_S)
        assert ready.fields == {"READY": "1", "STATUS": "up"}
        assert ready.raw == b"READY=1\nSTATUS=up"
        assert ready.pid == os.getpid()
        assert [m.fields for m in listener.messages] == [{"STATUS": "starting"}, ready.fields]


def test_listener_times_out_instead_of_hanging() -> None:
    with NotifyListener() as listener, Notifier(listener.environment()) as notifier:
        assert notifier.status("not ready yet")
        started = time.monotonic()
        with pytest.raises(NotifyTimeout) as caught:
            listener.wait_for("READY", timeout_s=0.2)
        assert time.monotonic() - started < READ_TIMEOUT_S
        assert caught.value.skipped == 1 and isinstance(caught.value, TimeoutError)
        assert [m.raw for m in listener.messages] == [b"STATUS=not ready yet"]
        with pytest.raises(NotifyTimeout):
            listener.receive(timeout_s=0)


def test_listener_close_removes_its_socket_and_a_sender_carries_on() -> None:
    listener = NotifyListener()
    path = Path(listener.address)
    assert path.is_socket()
    with Notifier(listener.environment()) as notifier:
        listener.close()
        listener.close()
        assert not path.exists() and not path.parent.exists()
        assert not notifier.ready()
        assert notifier.failed_sends == 1
    with pytest.raises(ListenerClosed):
        listener.receive(timeout_s=READ_TIMEOUT_S)


def test_listener_in_a_given_directory(tmp_path: Path) -> None:
    with NotifyListener(directory=tmp_path) as listener:
        assert listener.address == str(tmp_path / "notify")
    assert tmp_path.is_dir() and not (tmp_path / "notify").exists()
