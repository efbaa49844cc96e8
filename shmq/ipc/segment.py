"""POSIX shared-memory segments: create, attach, unlink, list, and clean up after a crash.

Theory of operation
-------------------
A segment is a POSIX shared-memory object named `/shmq.<instance>.<name>`, sized once by its
creator and mapped with `mmap` (MAP_SHARED, and MAP_POPULATE so that its pages are faulted in
at map time rather than on the hot path). Its file descriptor is closed right after mapping: the
mapping keeps the memory alive, and the name keeps it findable until `unlink()`.

Names: `instance` identifies one running shmq service (one supervisor); it may not contain a
dot, so the prefix `shmq.<instance>.` names exactly that instance's objects. `name` may contain
dots (`ring.p0.w1`). Semaphores that belong to the instance (see `wakeup.py`) use the same
`/shmq.<instance>.<name>` scheme; Linux keeps them in /dev/shm as `sem.shmq.<instance>.<name>`.

Cleanup: a clean shutdown unlinks every object it created. After a kill -9 nobody did, so the
supervisor calls `remove_stale(instance)` at start, before it creates anything, and removes
whatever its instance left in /dev/shm. Unlinking only removes the name: a process that still
maps a segment keeps using its memory, detached from any new segment of the same name.

This module never interprets a segment's bytes; `ring.py` and `table.py` do. Linux only (the
listing reads /dev/shm).
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

import posix_ipc

from shmq.errors import IpcError
from shmq.ipc.errors import InvalidLayout, InvalidName, SegmentExists, SegmentMissing

__all__ = [
    "SEGMENT_PREFIX",
    "SHM_DIR",
    "Segment",
    "list_segments",
    "list_semaphores",
    "posix_name",
    "remove_stale",
    "unlink_segment",
    "unlink_semaphore",
    "validate_instance",
]

SHM_DIR: Final = "/dev/shm"  #: where Linux keeps POSIX shared memory and named semaphores
SEGMENT_PREFIX: Final = "shmq"  #: first part of every object name
_SEM_FILE_PREFIX: Final = "sem."  #: Linux's prefix for named semaphores in SHM_DIR
_INSTANCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
DEFAULT_MODE: Final = 0o600  #: owner read/write only (architecture.md §2)


def validate_instance(instance: str) -> str:
    """Return `instance` if it can name an instance.

    Raises:
        InvalidName: empty, longer than 64, or characters other than letters, digits, `_`, `-`.
    """
    if not _INSTANCE_RE.fullmatch(instance):
        raise InvalidName("instance", instance, "use 1-64 letters, digits, '_' or '-'")
    return instance


def posix_name(instance: str, name: str) -> str:
    """The POSIX name `/shmq.<instance>.<name>` of an instance's segment or semaphore.

    Raises:
        InvalidName: `instance` or `name` breaks the naming rules.
    """
    validate_instance(instance)
    if not _NAME_RE.fullmatch(name):
        raise InvalidName(
            "segment", name, "use 1-128 letters, digits, '_', '-' or '.', not starting with '.'"
        )
    return f"/{SEGMENT_PREFIX}.{instance}.{name}"


class Segment:
    """One mapped shared-memory segment. Use `create()` or `attach()`; `close()` unmaps it.

    `buf` is the writable mapping. The segment stays in /dev/shm after `close()` until someone
    calls `unlink()` (or `unlink_segment()` / `remove_stale()`).
    """

    def __init__(self, instance: str, name: str, buf: mmap.mmap) -> None:
        self.instance: Final = instance
        self.name: Final = name
        self.posix_name: Final = posix_name(instance, name)
        self.buf: Final = buf
        self.size_bytes: Final = len(buf)

    @classmethod
    def create(
        cls,
        instance: str,
        name: str,
        size_bytes: int,
        *,
        mode: int = DEFAULT_MODE,
        populate: bool = True,
    ) -> Segment:
        """Create segment `/shmq.<instance>.<name>` of `size_bytes` zero bytes and map it.

        Args:
            mode: permission bits, applied exactly (the umask does not narrow them).
            populate: fault every page in now (MAP_POPULATE) instead of on first touch.

        Raises:
            InvalidName: bad `instance` or `name`; nothing was created.
            InvalidLayout: `size_bytes` < 1; nothing was created.
            SegmentExists: the name is taken; nothing was changed.
            IpcError: the system refused (permissions, no memory); nothing is left behind.
        """
        pname = posix_name(instance, name)
        if size_bytes < 1:
            raise InvalidLayout("size_bytes", size_bytes, "a segment needs at least one byte")
        try:
            shm = posix_ipc.SharedMemory(pname, posix_ipc.O_CREX, mode=mode, size=size_bytes)
        except posix_ipc.ExistentialError as err:
            raise SegmentExists(pname) from err
        except (posix_ipc.Error, OSError, ValueError) as err:
            raise IpcError(f"cannot create shared-memory segment {pname}: {err}") from err
        try:
            os.fchmod(shm.fd, mode)
            buf = _map(shm, populate)
        except OSError as err:
            _unlink_quietly(pname)
            raise IpcError(f"cannot map new shared-memory segment {pname}: {err}") from err
        finally:
            shm.close_fd()
        return cls(instance, name, buf)

    @classmethod
    def attach(cls, instance: str, name: str, *, populate: bool = True) -> Segment:
        """Map the existing segment `/shmq.<instance>.<name>`, read-write.

        Raises:
            InvalidName: bad `instance` or `name`.
            SegmentMissing: no such segment.
            IpcError: the system refused (permissions) or the segment is empty.
        """
        pname = posix_name(instance, name)
        try:
            shm = posix_ipc.SharedMemory(pname)
        except posix_ipc.ExistentialError as err:
            raise SegmentMissing(pname) from err
        except (posix_ipc.Error, OSError) as err:
            raise IpcError(f"cannot open shared-memory segment {pname}: {err}") from err
        try:
            if shm.size < 1:
                raise IpcError(f"shared-memory segment {pname} is empty (creator died early?)")
            buf = _map(shm, populate)
        except OSError as err:
            raise IpcError(f"cannot map shared-memory segment {pname}: {err}") from err
        finally:
            shm.close_fd()
        return cls(instance, name, buf)

    @property
    def is_closed(self) -> bool:
        """Whether `close()` has unmapped this segment."""
        return self.buf.closed

    def close(self) -> None:
        """Unmap the segment (idempotent). The segment itself stays until unlinked.

        If memoryviews or numpy arrays over `buf` are still alive, the mapping cannot be closed
        now; it is unmapped when the last of them is garbage-collected. Views created by this
        package are released by their owners (`Ring.detach()`, `SharedTable.detach()`) first.
        """
        try:
            self.buf.close()
        except BufferError:
            # Exported views still point into the mapping; unmapping now would leave them
            # dangling, so mmap refuses. The mapping goes when the last view goes.
            pass

    def unlink(self) -> None:
        """Remove the segment's name; mappings (this one included) keep working.

        Raises:
            SegmentMissing: it was already removed.
        """
        unlink_segment(self.instance, self.name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Segment({self.posix_name!r}, {self.size_bytes} bytes)"


def _map(shm: posix_ipc.SharedMemory, populate: bool) -> mmap.mmap:
    flags = mmap.MAP_SHARED
    if populate and hasattr(mmap, "MAP_POPULATE"):
        flags |= mmap.MAP_POPULATE
    return mmap.mmap(shm.fd, shm.size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _unlink_quietly(pname: str) -> None:
    try:
        posix_ipc.unlink_shared_memory(pname)
    except posix_ipc.ExistentialError:
        pass  # already gone: the goal of this call


def unlink_segment(instance: str, name: str, *, missing_ok: bool = False) -> bool:
    """Remove segment `/shmq.<instance>.<name>`; return whether it existed.

    Raises:
        InvalidName: bad `instance` or `name`.
        SegmentMissing: it does not exist and `missing_ok` is false.
    """
    pname = posix_name(instance, name)
    try:
        posix_ipc.unlink_shared_memory(pname)
    except posix_ipc.ExistentialError as err:
        if missing_ok:
            return False
        raise SegmentMissing(pname) from err
    return True


def unlink_semaphore(instance: str, name: str, *, missing_ok: bool = False) -> bool:
    """Remove named semaphore `/shmq.<instance>.<name>`; return whether it existed.

    Raises:
        InvalidName: bad `instance` or `name`.
        SegmentMissing: it does not exist and `missing_ok` is false.
    """
    pname = posix_name(instance, name)
    try:
        posix_ipc.unlink_semaphore(pname)
    except posix_ipc.ExistentialError as err:
        if missing_ok:
            return False
        raise SegmentMissing(pname) from err
    return True


def _names_in_shm_dir(file_prefix: str) -> list[str]:
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(entry[len(file_prefix) :] for entry in entries if entry.startswith(file_prefix))


def list_segments(instance: str) -> list[str]:
    """Names (the `<name>` part) of the instance's shared-memory segments, sorted.

    Raises:
        InvalidName: bad `instance`.
    """
    validate_instance(instance)
    return _names_in_shm_dir(f"{SEGMENT_PREFIX}.{instance}.")


def list_semaphores(instance: str) -> list[str]:
    """Names (the `<name>` part) of the instance's named semaphores, sorted.

    Raises:
        InvalidName: bad `instance`.
    """
    validate_instance(instance)
    return _names_in_shm_dir(f"{_SEM_FILE_PREFIX}{SEGMENT_PREFIX}.{instance}.")


def remove_stale(instance: str) -> list[str]:
    """Remove every segment and semaphore of `instance`; return the /dev/shm entries removed.

    Meant for a supervisor at start, before it creates its objects: whatever is there was left
    by an earlier run that did not shut down cleanly. Processes that still map a removed
    segment keep their (now nameless) memory; end them first if they might still write.

    Raises:
        InvalidName: bad `instance`.
    """
    # Names found in /dev/shm are used as they are (not validated): whatever the instance's
    # prefix covers is removed, even a name this module would not have created.
    prefix = f"/{SEGMENT_PREFIX}.{instance}."
    removed = [
        f"{SEGMENT_PREFIX}.{instance}.{name}"
        for name in list_segments(instance)
        if _unlink(posix_ipc.unlink_shared_memory, prefix + name)
    ]
    removed += [
        f"{_SEM_FILE_PREFIX}{SEGMENT_PREFIX}.{instance}.{name}"
        for name in list_semaphores(instance)
        if _unlink(posix_ipc.unlink_semaphore, prefix + name)
    ]
    return removed


def _unlink(unlink: Callable[[str], None], pname: str) -> bool:
    try:
        unlink(pname)
    except posix_ipc.ExistentialError:
        return False  # removed by someone else meanwhile
    return True
