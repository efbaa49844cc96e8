"""systemd readiness and watchdog notifications (sd_notify(3)) without libsystemd.

Theory of operation
-------------------
systemd starts a `Type=notify` service with `NOTIFY_SOCKET` in its environment: the address of a
datagram AF_UNIX socket, either a path (`/run/systemd/notify`) or, when it starts with `@`, a
name in the abstract namespace (the `@` stands for a leading NUL byte). Each notification is one
datagram of newline-separated `KEY=VALUE` lines:

    READY=1\\nSTATUS=serving on :10911     the service is up (systemd finishes `start`)
    STATUS=recovering segment 7/40         free text shown by `systemctl status`
    WATCHDOG=1                             keep-alive; missing it for WatchdogSec kills us
    STOPPING=1 / RELOADING=1               we began to shut down / to reload
    EXTEND_TIMEOUT_USEC=300000000          starting (recovery) takes longer than TimeoutStartSec
    MAINPID=1234                           the main process is another pid

With `WatchdogSec=` set, systemd also passes `WATCHDOG_USEC` (the timeout) and `WATCHDOG_PID`
(the process it expects pings from). The watchdog is ours only when `WATCHDOG_PID` is unset or
names this process; the supervisor then pings at half of `watchdog_interval_s()`. systemd arms
the watchdog only after READY=1, so crash recovery is bounded by TimeoutStartSec alone (and may
be prolonged with `extend_timeout()`).

`Notifier` owns one unconnected datagram socket and is used by the supervisor only: the unit
says `NotifyAccess=main`, so systemd drops datagrams from any other pid. A `Notifier` inherited
by a forked child therefore does nothing in the child. Without `NOTIFY_SOCKET` (run from a
shell, in tests) every call is a no-op.

A notification must never take the service down: a failed send (systemd restarted, socket
gone, queue full past the send timeout) is logged once at warning level, counted in
`failed_sends`, and the call returns False. Only a malformed environment raises, at
construction, because that is a deployment mistake best seen at start-up.

`NotifyListener` plays systemd's side for tests: it binds a socket, gives the value to put in
`NOTIFY_SOCKET`, and collects datagrams with the sender's pid (SCM_CREDENTIALS), with timeouts.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from shmq.errors import ConfigError, ShmqError

__all__ = [
    "ENVIRONMENT_KEYS",
    "BadNotifyEnvironment",
    "ListenerClosed",
    "Notifier",
    "NotifyListener",
    "NotifyMessage",
    "NotifyTimeout",
]

log = logging.getLogger(__name__)

#: Environment variables systemd sets for a notify service with a watchdog (sd_notify(3)).
ENVIRONMENT_KEYS: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

#: A blocked send (systemd not reading its queue) gives up after this long; the caller carries on.
SEND_TIMEOUT_S: Final = 1.0

#: systemd reads at most PIPE_BUF (4096) bytes per datagram and drops longer ones; STATUS texts
#: are cut to this many UTF-8 bytes so a whole message always fits.
MAX_STATUS_BYTES: Final = 1024

#: Longest AF_UNIX address (sizeof sun_path minus the terminating NUL).
_MAX_UNIX_ADDRESS_BYTES: Final = 107

_UCRED: Final = struct.Struct("=iII")  # struct ucred: pid, uid, gid
_RECEIVE_BYTES: Final = 65536  # more than systemd accepts, so an oversized datagram is seen whole


class BadNotifyEnvironment(ConfigError):
    """NOTIFY_SOCKET, WATCHDOG_USEC or WATCHDOG_PID holds a value systemd would never set."""

    def __init__(self, key: str, value: str, rule: str) -> None:
        super().__init__(
            f"environment variable {key}={value!r} is invalid: {rule}; "
            f"unset it or fix the unit file that sets it"
        )
        self.key, self.value, self.rule = key, value, rule


class ListenerClosed(ShmqError):
    """`NotifyListener.receive()` or `wait_for()` was called after `close()`."""

    def __init__(self, address: str) -> None:
        super().__init__(f"notify listener on {address} is closed")
        self.address = address


class NotifyTimeout(ShmqError, TimeoutError):
    """`NotifyListener` saw no (matching) datagram before the deadline."""

    def __init__(self, waited_for: str, timeout_s: float, skipped: int) -> None:
        super().__init__(
            f"no notification {waited_for} within {timeout_s:g} s "
            f"({skipped} non-matching datagrams skipped)"
        )
        self.waited_for, self.timeout_s, self.skipped = waited_for, timeout_s, skipped


def _socket_address(value: str) -> bytes:
    """Turn a NOTIFY_SOCKET value into a sockaddr_un path ('@name' -> abstract b'\\0name')."""
    if value.startswith("@"):
        address = b"\0" + os.fsencode(value[1:])
    elif value.startswith("/"):
        address = os.fsencode(value)
    else:
        raise BadNotifyEnvironment(
            "NOTIFY_SOCKET", value, "expected an absolute path or '@' and an abstract name"
        )
    if len(address) > _MAX_UNIX_ADDRESS_BYTES:
        raise BadNotifyEnvironment(
            "NOTIFY_SOCKET", value,
            f"{len(address)} bytes exceeds the {_MAX_UNIX_ADDRESS_BYTES}-byte AF_UNIX limit",
        )
    return address


def _positive_int(env: Mapping[str, str], key: str) -> int | None:
    """Parse env[key] as a positive decimal integer; None when absent or empty."""
    text = env.get(key, "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise BadNotifyEnvironment(key, text, "expected a positive decimal integer")
    return int(text)


def _one_line(text: str) -> str:
    """A STATUS value: newlines would start new keys, and systemd drops datagrams over 4 KiB."""
    flat = " ".join(text.splitlines())
    return flat.encode()[:MAX_STATUS_BYTES].decode(errors="ignore")


class Notifier:
    """Sends sd_notify(3) messages for the process that created it (the supervisor).

    Every method returns True when the datagram was handed to the kernel, False when nothing was
    sent: no NOTIFY_SOCKET, closed, called in a forked child, or the send failed (logged).
    """

    def __init__(
        self, env: Mapping[str, str] | None = None, *, unset_environment: bool = False
    ) -> None:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from `env` (default os.environ).

        Args:
            env: the environment to read; tests pass a dict.
            unset_environment: remove the three variables from os.environ afterwards, so that
                programs the supervisor later executes do not try to notify systemd.

        Raises:
            BadNotifyEnvironment: a variable is malformed; nothing was opened.
            OSError: the datagram socket could not be created (out of file descriptors).
        """
        source = os.environ if env is None else env
        value = source.get("NOTIFY_SOCKET", "")
        self._address_text: str | None = value or None
        self._address = _socket_address(value) if value else None
        watchdog_usec = _positive_int(source, "WATCHDOG_USEC")
        watchdog_pid = _positive_int(source, "WATCHDOG_PID")
        self._pid = os.getpid()
        is_ours = watchdog_pid is None or watchdog_pid == self._pid
        self._watchdog_usec = watchdog_usec if is_ours else None
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.settimeout(SEND_TIMEOUT_S)
        self._failed_sends = 0
        if unset_environment:
            _unset(os.environ)

    @property
    def address(self) -> str | None:
        """The NOTIFY_SOCKET value in use, or None when notifications are off."""
        return self._address_text

    @property
    def is_enabled(self) -> bool:
        """Whether calls in this process send anything (socket set, open, same process)."""
        return self._sock is not None and os.getpid() == self._pid

    @property
    def failed_sends(self) -> int:
        """How many sends failed so far (only the first is logged at warning level)."""
        return self._failed_sends

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd the service is up (READY=1), optionally with a STATUS text."""
        return self._send({"READY": "1"}, status)

    def status(self, text: str) -> bool:
        """Set the one-line STATUS shown by `systemctl status` (newlines become spaces)."""
        return self._send({}, text)

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd we began an orderly shutdown (STOPPING=1)."""
        return self._send({"STOPPING": "1"}, status)

    def reloading(self, status: str | None = None) -> bool:
        """Tell systemd we began reloading (RELOADING=1); call `ready()` when done.

        MONOTONIC_USEC is included because `Type=notify-reload` (systemd 253+) requires it;
        older managers ignore the key.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send({"RELOADING": "1", "MONOTONIC_USEC": str(now_usec)}, status)

    def extend_timeout(self, timeout_s: float) -> bool:
        """Ask for `timeout_s` more seconds to finish starting or stopping (EXTEND_TIMEOUT_USEC).

        For a crash recovery that outlasts TimeoutStartSec: send it again before each extension
        runs out, as long as recovery makes progress.
        """
        return self._send({"EXTEND_TIMEOUT_USEC": str(max(0, round(timeout_s * 1_000_000)))}, None)

    def watchdog(self) -> bool:
        """Ping the watchdog (WATCHDOG=1); a no-op when the watchdog is not ours."""
        if self.watchdog_interval_s() is None:
            return False
        return self._send({"WATCHDOG": "1"}, None)

    def watchdog_interval_s(self) -> float | None:
        """The watchdog timeout in seconds, or None when there is none for this process.

        Ping at half of it, so that one late tick does not get the service killed.
        """
        if self._watchdog_usec is None or os.getpid() != self._pid:
            return None
        return self._watchdog_usec / 1_000_000

    def main_pid(self, pid: int) -> bool:
        """Tell systemd that `pid` is now the service's main process (MAINPID=)."""
        return self._send({"MAINPID": str(pid)}, None)

    def close(self) -> None:
        """Close the socket; later calls send nothing. Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, fields: Mapping[str, str], status: str | None) -> bool:
        if not self.is_enabled:
            return False
        assert self._sock is not None and self._address is not None
        lines = [f"{key}={value}" for key, value in fields.items()]
        if status is not None:
            lines.append(f"STATUS={_one_line(status)}")
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as err:  # includes TimeoutError: systemd is not reading
            self._failed_sends += 1
            if self._failed_sends == 1:
                log.warning(
                    "systemd notification to %s failed: %s; carrying on without it "
                    "(later failures are logged at debug level)", self._address_text, err,
                )
            else:
                log.debug("systemd notification to %s failed again (%d failures): %s",
                          self._address_text, self._failed_sends, err)
            return False
        return True


def _unset(env: MutableMapping[str, str]) -> None:
    for key in ENVIRONMENT_KEYS:
        env.pop(key, None)


@dataclass(frozen=True, slots=True)
class NotifyMessage:
    """One datagram received by `NotifyListener`."""

    raw: bytes
    #: sender's pid from SCM_CREDENTIALS (None if the kernel attached none)
    pid: int | None
    fields: Mapping[str, str] = field(default_factory=dict)


class NotifyListener:
    """A stand-in for systemd's notify socket, for tests of the supervisor.

    ```python
    with NotifyListener() as listener:
        proc = subprocess.Popen(["shmq", "start", ...], env=os.environ | listener.environment())
        ready = listener.wait_for("READY", "1", timeout_s=30)
        assert ready.pid == proc.pid             # NotifyAccess=main: only the supervisor reports
    ```
    """

    def __init__(self, *, abstract: bool = False, directory: Path | None = None) -> None:
        """Bind the socket at once; close it with `close()` or a `with` block.

        Args:
            abstract: bind an abstract-namespace name (NOTIFY_SOCKET starts with '@').
            directory: where to create the socket file (default: a new temporary directory,
                kept short because AF_UNIX paths are limited to 107 bytes).

        Raises:
            OSError: the socket could not be bound (path too long, no such directory);
                nothing is left behind.
        """
        self._abstract = abstract
        self._own_directory: Path | None = None
        #: every datagram received so far, in order
        self.messages: list[NotifyMessage] = []
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            name = f"shmq-notify-{os.getpid()}-{secrets.token_hex(6)}"
            if abstract:
                sock.bind(b"\0" + name.encode())
                self._address = "@" + name
            else:
                if directory is None:
                    directory = self._own_directory = Path(tempfile.mkdtemp(prefix="shmq-"))
                self._address = str(directory / "notify")
                sock.bind(os.fsencode(self._address))
        except OSError:
            sock.close()
            self._remove_directory()
            raise
        self._sock: socket.socket | None = sock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket and remove its file; a sender then gets ECONNREFUSED. Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if not self._abstract:
                Path(self._address).unlink(missing_ok=True)
        self._remove_directory()

    @property
    def address(self) -> str:
        """The value to put in NOTIFY_SOCKET."""
        return self._address

    def environment(
        self, *, watchdog_usec: int | None = None, watchdog_pid: int | None = None
    ) -> dict[str, str]:
        """The variables systemd would set: NOTIFY_SOCKET, and the watchdog ones if given."""
        env = {"NOTIFY_SOCKET": self._address}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid is not None:
            env["WATCHDOG_PID"] = str(watchdog_pid)
        return env

    def receive(self, *, timeout_s: float) -> NotifyMessage:
        """The next datagram (also appended to `messages`).

        Raises:
            NotifyTimeout: nothing arrived within `timeout_s`.
            ListenerClosed: `close()` was called.
        """
        if self._sock is None:
            raise ListenerClosed(self._address)
        self._sock.settimeout(max(timeout_s, 0.001))  # 0 would make the socket non-blocking
        try:
            data, ancillary, _flags, _addr = self._sock.recvmsg(
                _RECEIVE_BYTES, socket.CMSG_SPACE(_UCRED.size)
            )
        except TimeoutError:
            raise NotifyTimeout("of any kind", timeout_s, 0) from None
        message = NotifyMessage(raw=data, pid=_sender_pid(ancillary), fields=_parse(data))
        self.messages.append(message)
        return message

    def wait_for(self, key: str, value: str | None = None, *, timeout_s: float) -> NotifyMessage:
        """Receive until a datagram carries `key` (with `value`, if given) and return it.

        Raises:
            NotifyTimeout: no such datagram within `timeout_s`; what did arrive is in `messages`.
            ListenerClosed: `close()` was called.
        """
        wanted = key if value is None else f"{key}={value}"
        deadline = time.monotonic() + timeout_s
        skipped = 0
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = self.receive(timeout_s=remaining)
            except NotifyTimeout:
                break
            if key in message.fields and value in (None, message.fields[key]):
                return message
            skipped += 1
        raise NotifyTimeout(f"with {wanted}", timeout_s, skipped)

    def _remove_directory(self) -> None:
        if self._own_directory is not None:
            shutil.rmtree(self._own_directory)
            self._own_directory = None


def _parse(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode(errors="replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, _uid, _gid = _UCRED.unpack_from(data)
            return int(pid)
    return None
