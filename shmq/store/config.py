"""Settings of the storage engine. The runtime builds one from the service config (§6 of the
style guide); tests build one directly."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shmq.errors import ConfigError

__all__ = ["FlushMode", "StoreConfig"]


class FlushMode(enum.Enum):
    """What an acknowledgement promises.

    ASYNC: the record is in the page cache; a process crash loses nothing, a power loss may
    lose up to `flush_interval_ms` of acknowledged records. SYNC: the record (and every byte of
    the log before it) was msync'ed before the acknowledgement; a power loss loses nothing
    acknowledged.
    """

    ASYNC = "async"
    SYNC = "sync"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Storage settings; units are in the names."""

    segment_bytes: int = 1 << 30
    cq_entries_per_file: int = 300_000
    flush: FlushMode = FlushMode.ASYNC
    flush_interval_ms: int = 500
    retention_hours: float = 72.0
    #: Delete the oldest segments while the disk is fuller than this (RocketMQ diskMaxUsedSpaceRatio).
    disk_high_water_ratio: float = 0.75
    #: Refuse appends when the file system has less free space than this.
    min_free_bytes: int = 512 << 20
    max_body_bytes: int = 4 << 20
    index_slots: int = 500_000
    index_max_entries: int = 2_000_000
    #: Advertised broker address stored in every record (STOREHOSTADDRESS); part of message ids.
    store_host: str = "127.0.0.1"
    store_port: int = 10911
    #: Populate (page-fault) this many bytes of the segment ahead of the write position.
    prefault_ahead_bytes: int = 32 << 20
    writer_slots: int = 64

    def __post_init__(self) -> None:
        if self.segment_bytes < 4096 or self.segment_bytes % 4096:
            raise ConfigError(f"segment_bytes={self.segment_bytes}: must be a multiple of 4096")
        if self.cq_entries_per_file < 1:
            raise ConfigError("cq_entries_per_file must be >= 1")
        if not 0.0 < self.disk_high_water_ratio <= 1.0:
            raise ConfigError("disk_high_water_ratio must be in (0, 1]")
