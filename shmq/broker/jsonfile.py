"""The broker's configuration files (``data_dir/store/config/*.json``), shared by acceptors.

Theory of operation: a `JsonFile` is one file such as ``topics.json`` with a ``.bak`` copy
(RocketMQ keeps one next to each config file) and a ``.lock`` file. Several acceptor processes
may share it:

* Writers take an exclusive `flock` on the lock file (the kernel drops it if the holder dies),
  re-read the file if someone else changed it, apply their change and write the result
  atomically: the new text goes to ``<name>.tmp`` and is fsync'ed, the previous text is copied
  to ``<name>.bak`` the same way, then ``<name>.tmp`` is renamed over ``<name>`` and the
  directory is fsync'ed. A reader (or a crash at any point) sees either the old or the new
  file, never a torn one.
* Readers notice changes by the file's signature (inode, size, mtime in ns) with one `stat`.
* A file that is missing or does not parse is replaced by its ``.bak`` (logged); when both are
  unusable the caller starts empty.

Blocking I/O: callers run it on the event loop only for rare events (a topic created) or on a
timer (offsets every few seconds), where a few hundred microseconds do not matter.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from shmq.protocol import BodyFormatError, loads_fastjson

__all__ = ["JsonFile"]

log = logging.getLogger(__name__)

Signature = tuple[int, int, int]


class JsonFile:
    """One shared JSON config file; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup = path.with_name(path.name + ".bak")
        self._lock_path = path.with_name(path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)

    def signature(self) -> Signature | None:
        """(inode, size, mtime ns) of the file, or None when it does not exist."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def read(self) -> tuple[object | None, Signature | None]:
        """The parsed file (or its backup) and the signature it was read at.

        Returns:
            (None, signature) when neither the file nor its backup holds valid JSON.
        """
        signature = self.signature()
        for candidate in (self.path, self.backup):
            try:
                text = candidate.read_bytes()
            except FileNotFoundError:
                continue
            try:
                return loads_fastjson(text, candidate.name), signature
            except BodyFormatError as err:
                log.error("%s is not valid JSON (%s); trying its backup", candidate, err)
        return None, signature

    def write(self, data: bytes) -> Signature | None:
        """Replace the file atomically with `data` (previous text kept in the .bak copy).

        Call it holding `locked()` when other processes may write too.

        Raises:
            OSError: the file could not be written; the old file (or its backup) is intact.
        """
        if self.path.exists():
            _write_durably(self.backup, self.path.read_bytes())
        _write_durably(self.path, data)
        return self.signature()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's exclusive lock (across processes)."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_exclusive_lock(path: Path) -> int | None:
    """Take an exclusive `flock` on `path` (created if missing) without waiting; return the
    descriptor holding it (close it to release), or None when another process holds it.

    Used for the jobs one acceptor of a store runs (the delay timer, the transaction
    check-back): the kernel drops the lock when its holder dies, so a restarted acceptor
    takes over.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
