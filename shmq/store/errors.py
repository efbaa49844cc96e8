"""Errors of the storage engine. Each says what state the store is in after it is raised."""

from __future__ import annotations

from shmq.errors import StoreError

__all__ = ["BatchTooLarge", "DiskFull", "StoreClosed", "StoreCorrupt", "StoreLocked"]


class DiskFull(StoreError):
    """Free space is below the configured floor: nothing was claimed; the log is unchanged."""

    response_code = 14  # ResponseCode.SERVICE_NOT_AVAILABLE: the client may retry elsewhere

    def __init__(self, path: str, free_bytes: int, floor_bytes: int) -> None:
        super().__init__(
            f"free space {_human(free_bytes)} on {path} is below the {_human(floor_bytes)} "
            "needed (store.min_free_bytes, or a new segment of store.segment_bytes); appends "
            "are refused until old data is deleted or the floor is lowered"
        )
        self.path, self.free_bytes, self.floor_bytes = path, free_bytes, floor_bytes


class BatchTooLarge(StoreError):
    """A batch does not fit in one commit-log segment; nothing was written."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"batch of {size} bytes does not fit in a {limit}-byte commit-log segment "
            "(store.segment_bytes); split the batch"
        )
        self.size, self.limit = size, limit


class StoreClosed(StoreError):
    """The store (or this part of it) was closed by its owner."""


class StoreLocked(StoreError):
    """Another process holds the store's exclusive lock (a second broker on one data dir)."""


class StoreCorrupt(StoreError):
    """Damage that recovery cannot repair without losing data; the message names the offset."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (commit-log offset {offset})")
        self.offset = offset


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


class DispatchFailed(StoreError):
    """Records were published but their consume-queue entries could not be written.

    Nothing was acknowledged. The claim stays in flight, which holds back the committed
    position: the writer must stop, so that `recovery.settle_claim` (run by the supervisor
    before the restart) writes the missing entries.
    """
