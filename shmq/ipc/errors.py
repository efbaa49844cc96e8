"""Errors of the shared-memory layer, all below `shmq.errors.IpcError` (style.md §4).

Named by cause: *Exists* / *Missing* / *Corrupt* for segments, *Closed* (a side closed the ring
on purpose), *PeerGone* (the other side's process died), *Busy* (a one-user role claimed twice),
*Full* / *Empty* (a blocking call waited `timeout_s` in vain; the `try_*` twins return a value
instead). Each error keeps its evidence as attributes and repeats it in the message.
"""

from __future__ import annotations

from shmq.errors import IpcError

__all__ = [
    "InvalidLayout",
    "InvalidName",
    "IpcTimeout",
    "PeerGone",
    "RecordTooLarge",
    "RingBusy",
    "RingClosed",
    "RingEmpty",
    "RingFull",
    "SegmentCorrupt",
    "SegmentExists",
    "SegmentMissing",
]


class InvalidName(IpcError, ValueError):
    """An instance or segment name that cannot be part of `/shmq.<instance>.<name>`."""

    def __init__(self, kind: str, value: str, rule: str) -> None:
        super().__init__(f"invalid {kind} name {value!r}: {rule}")
        self.kind, self.value, self.rule = kind, value, rule


class InvalidLayout(IpcError, ValueError):
    """A size or shape that breaks a layout rule (power-of-two capacity, alignment, limits)."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        super().__init__(f"{field} = {value} is invalid: {rule}")
        self.field, self.value, self.rule = field, value, rule


class SegmentExists(IpcError):
    """Creating a segment or semaphore whose name is taken (often left by a killed process)."""

    def __init__(self, posix_name: str) -> None:
        super().__init__(
            f"shared-memory object {posix_name} already exists; if it was left by a killed "
            f"process, remove the instance's stale objects (shmq.ipc.remove_stale) first"
        )
        self.posix_name = posix_name


class SegmentMissing(IpcError):
    """Attaching to (or unlinking) a segment or semaphore that does not exist."""

    def __init__(self, posix_name: str) -> None:
        super().__init__(
            f"shared-memory object {posix_name} does not exist; is the instance running, "
            f"and was it created under this instance name?"
        )
        self.posix_name = posix_name


class SegmentCorrupt(IpcError):
    """A segment whose header is not what its kind requires (wrong magic, version or size)."""

    def __init__(self, posix_name: str, field: str, expected: object, actual: object) -> None:
        super().__init__(
            f"shared-memory segment {posix_name}: {field} is {actual!r}, expected {expected!r} "
            f"(not initialised yet, another kind of segment, or another shmq version)"
        )
        self.posix_name, self.field = posix_name, field
        self.expected, self.actual = expected, actual


class RecordTooLarge(IpcError, ValueError):
    """A record whose payload can never fit the ring (more than half its capacity)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"ring record payload of {size} bytes exceeds the {limit}-byte limit")
        self.size, self.limit = size, limit


class RingClosed(IpcError):
    """The ring was closed by one side; `closed_by` is "producer" or "consumer"."""

    def __init__(self, ring: str, closed_by: str) -> None:
        super().__init__(f"ring {ring} was closed by its {closed_by}")
        self.ring, self.closed_by = ring, closed_by


class PeerGone(IpcError):
    """The process at the other end of a ring died while we waited for it."""

    def __init__(self, ring: str, role: str, pid: int) -> None:
        super().__init__(f"ring {ring}: the {role} (pid {pid}) is gone")
        self.ring, self.role, self.pid = ring, role, pid


class RingBusy(IpcError):
    """A ring's producer or consumer role is already held by a live end."""

    def __init__(self, ring: str, role: str, pid: int) -> None:
        super().__init__(
            f"ring {ring}: the {role} role is held by live pid {pid}; a ring has exactly one "
            f"{role} (close that end, or end that process, first)"
        )
        self.ring, self.role, self.pid = ring, role, pid


class IpcTimeout(IpcError, TimeoutError):
    """A blocking call waited `timeout_s` seconds without its condition becoming true."""

    def __init__(self, message: str, timeout_s: float) -> None:
        super().__init__(message)
        self.timeout_s = timeout_s


class RingFull(IpcTimeout):
    """`write()` timed out: the ring stayed too full for the record, which was not written."""

    def __init__(self, ring: str, needed: int, free: int, timeout_s: float) -> None:
        super().__init__(
            f"ring {ring} stayed full for {timeout_s:g} s: the record needs {needed} bytes, "
            f"{free} are free; the consumer is not keeping up",
            timeout_s,
        )
        self.ring, self.needed, self.free = ring, needed, free


class RingEmpty(IpcTimeout):
    """`read()` timed out: no record arrived within `timeout_s`."""

    def __init__(self, ring: str, timeout_s: float) -> None:
        super().__init__(f"ring {ring} stayed empty for {timeout_s:g} s", timeout_s)
        self.ring = ring
