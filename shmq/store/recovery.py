"""Crash recovery: make a store directory consistent before any writer opens it.

Theory of operation. The checkpoint says up to which commit-log offset everything is durable,
final and dispatched. From there, every record is verified (size, magic, body CRC, lengths,
physical offset). A PENDING span (a claim whose writer died before publishing) becomes a BLANK
of the same size, so the records after it stay reachable; nothing in it was acknowledged. At the
first invalid record the log is truncated: the rest of that segment is zeroed and later segments
holding data are deleted. Consume-queue entries pointing past the recovered end are dropped, and
entries for records past the checkpoint are rebuilt from the records themselves (each record
carries its topic, queue id and queue offset). Finally the claim table is reset so the next
append starts at the recovered end, and a new checkpoint is written.

Run by the supervisor (or a test) with the store closed everywhere else.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shmq.message import layout as rec
from shmq.message.taghash import tag_hash
from shmq.store.checkpoint import Checkpoint, CheckpointFile
from shmq.store.claims import ClaimTable
from shmq.store.commitlog import CommitLog
from shmq.store.config import StoreConfig
from shmq.store.consumequeue import ConsumeQueue, list_queues
from shmq.store.index import IndexService
from shmq.store.scan import RecordMeta, RecordProblem, check_record, tags_of
from shmq.store.segments import Segment, SegmentSet
from shmq.store.store import StorePaths, check_layout

__all__ = ["RecoveryReport", "recover"]

_NO_CQ_ENTRY = (rec.TRANSACTION_PREPARED_TYPE, rec.TRANSACTION_ROLLBACK_TYPE)


@dataclass(slots=True)
class RecoveryReport:
    """What recovery found and repaired."""

    start_offset: int = 0
    end_offset: int = 0
    records_checked: int = 0
    pending_blanked: list[tuple[int, int]] = field(default_factory=list)
    truncated_at: int | None = None
    truncate_reason: str | None = None
    truncated_bytes: int = 0
    segments_deleted: list[int] = field(default_factory=list)
    cq_entries_rebuilt: int = 0
    cq_entries_dropped: int = 0
    #: Valid records that no consume-queue entry can reach (a queue-offset gap before them,
    #: left by a batch that was never fully published): blanked, never acknowledged.
    orphans_blanked: list[tuple[int, int]] = field(default_factory=list)

    @property
    def repaired(self) -> bool:
        return bool(
            self.pending_blanked or self.truncated_at is not None or self.segments_deleted
            or self.cq_entries_rebuilt or self.cq_entries_dropped or self.orphans_blanked
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["repaired"] = self.repaired
        return out


def recover(root: Path, config: StoreConfig) -> RecoveryReport:
    """Verify and repair the store under `root`; return what was done.

    Raises:
        ConfigError: `config` has another layout than the store; nothing was changed.
        OSError: the store could not be read or written; it is left as it was found except
            for repairs already reported by earlier successful steps (each step is idempotent,
            so running recovery again is always safe).
    """
    paths = StorePaths(root)
    root.mkdir(parents=True, exist_ok=True)
    check_layout(root, config)
    report = RecoveryReport()
    log = CommitLog(paths.commitlog, config, writable=True)
    segs = log.segments
    ckpt = CheckpointFile(paths.checkpoint)
    try:
        cp = ckpt.read()
        metas = _scan_log(segs, cp, report)
        _delete_unreachable_segments(segs, report)
        _repair_queues(paths, config, report, metas, log)
        _repair_index(paths, config, report, cp)
        end = report.end_offset
        if report.start_offset < end:
            log.flush_range(report.start_offset, end)
        with ClaimTable(paths.claims, slot=0, slot_count=config.writer_slots) as claims:
            claims.initialise(end)
        indexed = min(cp.indexed_offset, end)
        ckpt.write(Checkpoint(end, indexed, cp.physic_timestamp_ms, cp.index_timestamp_ms))
    finally:
        ckpt.close()
        log.close()
    return report


def _scan_log(segs: SegmentSet, cp: Checkpoint, report: RecoveryReport) -> list[RecordMeta]:
    """Walk the log from the checkpoint; blank PENDING spans; truncate at the first bad record."""
    starts = segs.starts()
    if not starts:
        return []
    seg_bytes = segs.segment_bytes
    pos = cp.flushed_offset
    if pos < starts[0] or pos >= starts[-1] + seg_bytes:
        pos = starts[0]
    report.start_offset = pos
    metas: list[RecordMeta] = []
    while True:
        seg_start = pos - pos % seg_bytes
        if seg_start not in starts:
            break
        seg = segs.get(seg_start)
        rel = pos - seg_start
        if rel + rec.BLANK_MIN_BYTES > seg_bytes:
            _truncate(seg, rel, report, "record header crosses the segment end")
            break
        size, magic = rec.SIZE_MAGIC.unpack_from(seg.mm, rel)
        if size == 0 and magic == 0:
            break  # the clean end of the log
        fits = rec.BLANK_MIN_BYTES <= size <= seg_bytes - rel
        if magic in (rec.BLANK_MAGIC, rec.PENDING_MAGIC) and fits:
            if magic == rec.PENDING_MAGIC:
                rec.SIZE_MAGIC.pack_into(seg.mm, rel, size, rec.BLANK_MAGIC)
                report.pending_blanked.append((pos, size))
            pos += size
            continue
        meta = check_record(seg.mm, rel, pos, seg_bytes, check_crc=True)
        if isinstance(meta, RecordProblem):
            _truncate(seg, rel, report, meta.reason)
            break
        metas.append(meta)
        report.records_checked += 1
        pos += size
    report.end_offset = pos
    return metas


def _truncate(seg: Segment, rel: int, report: RecoveryReport, reason: str) -> None:
    """Zero the segment from `rel` to its last non-zero byte."""
    data = np.frombuffer(seg.mm, dtype=np.uint8)
    try:
        nonzero = np.flatnonzero(data[rel:])
        last = rel + int(nonzero[-1]) + 1 if len(nonzero) else rel
        data[rel:last] = 0
    finally:
        del data
    report.truncated_at = seg.start + rel
    report.truncate_reason = reason
    report.truncated_bytes += last - rel


def _delete_unreachable_segments(segs: SegmentSet, report: RecoveryReport) -> None:
    """Delete segments after the end that hold data (unreachable); keep empty preallocated ones."""
    end = report.end_offset
    for start in segs.starts():
        if start <= end - end % segs.segment_bytes:
            continue
        seg = segs.get(start)
        data = np.frombuffer(seg.mm, dtype=np.uint8)
        has_data = bool(data.any())
        del data
        if has_data:
            segs.forget(start)
            os.unlink(segs.path_of(start))
            report.segments_deleted.append(start)
    if report.segments_deleted and report.truncated_at is None:
        report.truncated_at = end
        report.truncate_reason = "data found after the end of the log"


def _repair_queues(
    paths: StorePaths, config: StoreConfig, report: RecoveryReport, metas: list[RecordMeta],
    log: CommitLog,
) -> None:
    """Drop entries past the end; rebuild entries of the records verified past the checkpoint."""
    for topic, queue_id in list_queues(paths.consumequeue):
        cq = ConsumeQueue.open(
            paths.consumequeue, topic, queue_id, entries_per_file=config.cq_entries_per_file
        )
        try:
            before = cq.max_offset
            cq.truncate_to_phys(report.end_offset)
            report.cq_entries_dropped += before - cq.max_offset
            cq.flush()
        finally:
            cq.close()
    _dispatch(paths, config, report, metas, log)


def _drop_orphans(
    cq_max: int, metas: list[RecordMeta], report: RecoveryReport, log: CommitLog
) -> list[RecordMeta]:
    """Keep the records whose queue offsets continue the queue without a gap; blank the rest.

    A writer appends a queue's batches one after another and acknowledges each only once it
    is published, so records after a gap belong to batches that were never acknowledged.
    """
    qoffs = np.fromiter((m.queue_offset for m in metas), dtype=np.int64, count=len(metas))
    first = int(qoffs[0])
    if first > cq_max:
        cut = 0
    else:
        breaks = np.flatnonzero(qoffs != first + np.arange(len(metas)))
        cut = int(breaks[0]) if len(breaks) else len(metas)
    for meta in metas[cut:]:
        seg = log.segments.for_offset(meta.offset)
        rec.SIZE_MAGIC.pack_into(seg.mm, meta.offset - seg.start, meta.size, rec.BLANK_MAGIC)
        report.orphans_blanked.append((meta.offset, meta.size))
    return metas[:cut]


def _rebuild_queue(cq: ConsumeQueue, metas: list[RecordMeta], report: RecoveryReport) -> None:
    first = metas[0].queue_offset
    have = cq.read(first, len(metas))
    offsets = np.fromiter((m.offset for m in metas), dtype=np.int64, count=len(metas))
    same = have["offset"].astype(np.int64) == offsets[: len(have)]
    keep = len(have) if same.all() else int(np.argmin(same))
    if first + keep < cq.max_offset:
        cq.truncate(first + keep)
    rest = metas[keep:]
    if not rest:
        return
    cq.append(
        rest[0].queue_offset,
        offsets[keep:],
        np.fromiter((m.size for m in rest), dtype=np.int64, count=len(rest)),
        np.fromiter((tag_hash(tags_of(m.properties)) for m in rest), dtype=np.int64,
                    count=len(rest)),
    )
    report.cq_entries_rebuilt += len(rest)


def _repair_index(
    paths: StorePaths, config: StoreConfig, report: RecoveryReport, cp: Checkpoint
) -> None:
    if cp.indexed_offset <= report.end_offset or not paths.index.is_dir():
        return
    index = IndexService(paths.index, slots=config.index_slots, max_entries=config.index_max_entries)
    try:
        index.truncate_to_phys(report.end_offset)
    finally:
        index.close()


def settle_claim(root: Path, config: StoreConfig, slot: int) -> str | None:
    """Settle the in-flight claim of writer `slot`, which died; return what was done or None.

    Run while that writer is dead and before it restarts (its queues have no other writer).
    A PENDING claim becomes a blank. A published one keeps its records, and the consume-queue
    entries they lack are written.
    """
    paths = StorePaths(root)
    log = CommitLog(paths.commitlog, config, writable=True)
    outcome: list[str] = []

    def settle(start: int, end: int) -> None:
        seg = log.segments.for_offset(start)
        _size, magic = rec.SIZE_MAGIC.unpack_from(seg.mm, start - seg.start)
        if magic != rec.MESSAGE_MAGIC:
            rec.SIZE_MAGIC.pack_into(seg.mm, start - seg.start, end - start, rec.BLANK_MAGIC)
            outcome.append(f"unpublished claim [{start}, {end}) blanked")
            return
        report = RecoveryReport(start_offset=start, end_offset=end)
        metas = []
        pos = start
        while pos < end:
            meta = check_record(seg.mm, pos - seg.start, pos, seg.size, check_crc=False)
            if not isinstance(meta, RecordMeta):
                break
            metas.append(meta)
            pos += meta.size
        _dispatch(paths, config, report, metas, log)
        outcome.append(f"published claim [{start}, {end}): {report.cq_entries_rebuilt} "
                       f"consume-queue entries written")

    try:
        with ClaimTable(paths.claims, slot=slot, slot_count=config.writer_slots) as claims:
            claims.abandon(slot, settle)
    finally:
        log.close()
    return outcome[0] if outcome else None


def _dispatch(paths: StorePaths, config: StoreConfig, report: RecoveryReport,
              metas: list[RecordMeta], log: CommitLog) -> None:
    """Write the consume-queue entries that `metas` (records in log order) lack."""
    per_queue: dict[tuple[str, int], list[RecordMeta]] = defaultdict(list)
    for meta in metas:
        if meta.sysflag & rec.TRANSACTION_MASK not in _NO_CQ_ENTRY:
            per_queue[(meta.topic, meta.queue_id)].append(meta)
    for (topic, queue_id), todo in per_queue.items():
        cq = ConsumeQueue.open(paths.consumequeue, topic, queue_id,
                               entries_per_file=config.cq_entries_per_file)
        try:
            todo = _drop_orphans(cq.max_offset, todo, report, log)
            if todo:
                _rebuild_queue(cq, todo, report)
            cq.flush()
        finally:
            cq.close()
