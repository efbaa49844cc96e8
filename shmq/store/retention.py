"""Retention: delete whole commit-log segments that are too old, or the oldest ones while the
disk is fuller than the high-water mark, then the consume-queue and index files that only point
into deleted segments.

A segment is a candidate only when it is entirely below the checkpoint's flushed offset and is
not the segment being written, so retention never touches data that is not yet durable and
never the active tail. A segment's age is the store time of the first record *after* it (the
first record of the next segment), i.e. when it stopped receiving appends. Processes that still
map a deleted segment keep reading it until they unmap it; consumers asking for offsets below
the new minimum get the queue's new min offset.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shmq.message import layout as rec
from shmq.store.scan import RecordMeta, check_record
from shmq.store.store import MessageStore

__all__ = ["RetentionReport", "apply_retention"]


@dataclass(slots=True)
class RetentionReport:
    segments_deleted: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    cq_files_deleted: int = 0
    index_files_deleted: int = 0
    min_offset: int = 0


def disk_used_ratio(path: str) -> float:
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return 1.0 - free / total if total else 0.0


def apply_retention(
    store: MessageStore,
    *,
    now_ms: int | None = None,
    used_ratio: Callable[[], float] | None = None,
) -> RetentionReport:
    """Delete expired segments (and what only points into them); return what was deleted.

    Raises:
        OSError: a file could not be deleted; what was deleted before is reported by a later run.
    """
    cfg = store.config
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    used = used_ratio or (lambda: disk_used_ratio(str(store.paths.root)))
    report = RetentionReport()
    segs = store.commitlog.segments
    starts = segs.starts()
    flushed = store.checkpoint.read().flushed_offset
    limit_ms = now_ms - int(cfg.retention_hours * 3600_000)
    for start, nxt in itertools.pairwise(starts):
        if start + segs.segment_bytes > flushed or nxt > flushed:
            break
        first_ts = _first_store_time(store, nxt)
        if first_ts is not None and first_ts < limit_ms:
            reason = f"older than {cfg.retention_hours} h"
        elif used() > cfg.disk_high_water_ratio:
            reason = f"disk above {cfg.disk_high_water_ratio:.0%} used"
        else:
            break
        segs.forget(start)
        os.unlink(segs.path_of(start))
        report.segments_deleted.append(start)
        report.reasons.append(reason)
    remaining = segs.starts()
    report.min_offset = remaining[0] if remaining else 0
    if report.segments_deleted:
        for topic, queue_id in store.queues_on_disk():
            report.cq_files_deleted += store.queue(topic, queue_id).delete_files_before_phys(
                report.min_offset
            )
        report.index_files_deleted += store.index.delete_files_before_phys(report.min_offset)
    return report


def _first_store_time(store: MessageStore, seg_start: int) -> int | None:
    """Store time of the first record in the segment at `seg_start` (skipping blanks)."""
    seg = store.commitlog.segments.get(seg_start)
    rel = 0
    while rel + rec.BLANK_MIN_BYTES <= seg.size:
        size, magic = rec.SIZE_MAGIC.unpack_from(seg.mm, rel)
        if magic == rec.MESSAGE_MAGIC:
            meta = check_record(seg.mm, rel, seg_start + rel, seg.size, check_crc=False)
            return meta.store_timestamp_ms if isinstance(meta, RecordMeta) else None
        if magic not in (rec.BLANK_MAGIC, rec.PENDING_MAGIC) or size < rec.BLANK_MIN_BYTES:
            return None
        rel += size
    return None
