"""shmq.ipc: shared-memory segments, SPSC byte rings, wake-ups and shared tables.

Bytes, not messages: nothing here knows what a record means (architecture.md §2, §6). It may
import only `shmq.errors`, the standard library, numpy and posix_ipc.

- `segment`: POSIX shared-memory segments `/shmq.<instance>.<name>`; stale-object cleanup.
- `layout`: the one place for the ring and table header offsets.
- `ring`: the SPSC byte ring (`Ring`, `RingProducer`, `RingConsumer`).
- `wakeup`: spin-then-park on POSIX semaphores, posted only to a sleeper.
- `table`: numpy arrays over shared memory, attached by name.
"""

from __future__ import annotations

from shmq.ipc.errors import (
    InvalidLayout,
    InvalidName,
    IpcTimeout,
    PeerGone,
    RecordTooLarge,
    RingBusy,
    RingClosed,
    RingEmpty,
    RingFull,
    SegmentCorrupt,
    SegmentExists,
    SegmentMissing,
)
from shmq.ipc.layout import max_payload_bytes, record_bytes
from shmq.ipc.ring import BytesLike, Ring, RingConsumer, RingProducer, RingStatistics
from shmq.ipc.segment import (
    Segment,
    list_segments,
    list_semaphores,
    posix_name,
    remove_stale,
    unlink_segment,
    unlink_semaphore,
)
from shmq.ipc.table import SharedTable
from shmq.ipc.wakeup import (
    DEFAULT_POLICY,
    LOW_LATENCY_POLICY,
    WaitPolicy,
    WaitStatistics,
    is_process_alive,
)

__all__ = [
    "DEFAULT_POLICY",
    "LOW_LATENCY_POLICY",
    "BytesLike",
    "InvalidLayout",
    "InvalidName",
    "IpcTimeout",
    "PeerGone",
    "RecordTooLarge",
    "Ring",
    "RingBusy",
    "RingClosed",
    "RingConsumer",
    "RingEmpty",
    "RingFull",
    "RingProducer",
    "RingStatistics",
    "Segment",
    "SegmentCorrupt",
    "SegmentExists",
    "SegmentMissing",
    "SharedTable",
    "WaitPolicy",
    "WaitStatistics",
    "is_process_alive",
    "list_segments",
    "list_semaphores",
    "max_payload_bytes",
    "posix_name",
    "record_bytes",
    "remove_stale",
    "unlink_segment",
    "unlink_semaphore",
]
