"""`shmq store verify`: a read-only consistency check of a whole store directory.

It never writes. It walks every segment from the first record, checking each record as recovery
would (CRC included), then checks every consume-queue entry against the records it points at
(same offset, size, topic, queue id and queue offset, consecutive queue offsets).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shmq.message import layout as rec
from shmq.store.config import StoreConfig
from shmq.store.consumequeue import ConsumeQueue, list_queues
from shmq.store.cqlayout import CQ_ENTRY_BYTES
from shmq.store.scan import RecordProblem, check_record
from shmq.store.segments import SegmentSet
from shmq.store.store import StorePaths, read_layout

__all__ = ["VerifyReport", "verify_store"]

_MAX_PROBLEMS = 100


@dataclass(slots=True)
class VerifyReport:
    """What `verify_store` found; `consistent` is False when anything is damaged."""

    store: str
    segments: list[dict[str, int | str]] = field(default_factory=list)
    records: int = 0
    blanks: int = 0
    min_offset: int | None = None
    max_offset: int = 0
    queues: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.problems

    def problem(self, kind: str, offset: int | None, detail: str, **extra: Any) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append({"kind": kind, "offset": offset, "detail": detail, **extra})

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "consistent": self.consistent, "segments": self.segments,
            "segment_count": len(self.segments), "records": self.records, "blanks": self.blanks,
            "min_offset": self.min_offset, "max_offset": self.max_offset,
            "queues": self.queues, "problems": self.problems,
        }


def infer_segment_bytes(commitlog: Path) -> int | None:
    """Segment size of a store, from its files (all segments have the same size)."""
    for path in sorted(commitlog.iterdir()) if commitlog.is_dir() else []:
        if path.name.isdigit():
            return path.stat().st_size
    return None


def verify_store(root: Path, config: StoreConfig | None = None) -> VerifyReport:
    """Check the store under `root` without modifying it.

    Raises:
        FileNotFoundError: `root` is not a store directory (no commitlog/ inside).
    """
    paths = StorePaths(root)
    if not paths.commitlog.is_dir():
        raise FileNotFoundError(f"{root} is not a shmq store: no commitlog/ directory")
    layout = read_layout(root) or {}
    seg_bytes = layout.get("segment_bytes") or infer_segment_bytes(paths.commitlog) or (
        config.segment_bytes if config else 1 << 30)
    cq_per_file = layout.get("cq_entries_per_file") or (
        config.cq_entries_per_file if config else None)
    report = VerifyReport(str(root))
    segs = SegmentSet(paths.commitlog, seg_bytes, writable=False)
    try:
        records = _scan(segs, report)
    finally:
        segs.close()
    _check_queues(paths, report, records, cq_per_file)
    return report


@dataclass(frozen=True, slots=True)
class _Records:
    """Every valid record found, as columns (commit-log order)."""

    offset: np.ndarray
    size: np.ndarray
    qkey: np.ndarray  # index into keymap's values
    qoff: np.ndarray  # -1 for records without a consume-queue entry
    keymap: dict[tuple[str, int], int]


def _scan(segs: SegmentSet, report: VerifyReport) -> _Records:
    starts = segs.starts()
    seg_bytes = segs.segment_bytes
    offs: list[int] = []
    sizes: list[int] = []
    qkeys: list[tuple[str, int]] = []
    qoffs: list[int] = []
    for start in starts:
        report.segments.append({"name": segs.path_of(start).name, "start": start, "bytes": seg_bytes})
    for prev, nxt in itertools.pairwise(starts):
        if nxt != prev + seg_bytes:
            report.problem("segment_gap", prev + seg_bytes, f"no segment between {prev} and {nxt}")
    pos = starts[0] if starts else 0
    while starts and pos - pos % seg_bytes in starts:
        seg = segs.get(pos - pos % seg_bytes)
        rel = pos - seg.start
        if rel + rec.BLANK_MIN_BYTES > seg_bytes:
            report.problem("bad_record", pos, "record header crosses the segment end")
            break
        size, magic = rec.SIZE_MAGIC.unpack_from(seg.mm, rel)
        if size == 0 and magic == 0:
            _check_tail_zero(seg.mm, rel, pos, report)
            break
        if magic in (rec.BLANK_MAGIC, rec.PENDING_MAGIC) and rec.BLANK_MIN_BYTES <= size <= seg_bytes - rel:
            if magic == rec.PENDING_MAGIC:
                report.problem("pending", pos, f"unpublished claim of {size} bytes (run recovery)")
            report.blanks += 1
            pos += size
            continue
        meta = check_record(seg.mm, rel, pos, seg_bytes, check_crc=True)
        if isinstance(meta, RecordProblem):
            report.problem("bad_record", pos, meta.reason)
            break
        if report.min_offset is None:
            report.min_offset = pos
        report.records += 1
        offs.append(pos)
        sizes.append(meta.size)
        qkeys.append((meta.topic, meta.queue_id))
        qoffs.append(meta.queue_offset if meta.sysflag & rec.TRANSACTION_MASK in (0, 8) else -1)
        pos += size
    report.max_offset = pos
    for start in starts:
        if start > pos:
            seg = segs.get(start)
            if np.frombuffer(seg.mm, dtype=np.uint8).any():
                report.problem("data_after_end", start, "segment past the end of the log holds data")
    keys = {k: i for i, k in enumerate(sorted(set(qkeys)))}
    return _Records(
        np.asarray(offs, dtype=np.int64), np.asarray(sizes, dtype=np.int64),
        np.asarray([keys[k] for k in qkeys], dtype=np.int64), np.asarray(qoffs, dtype=np.int64),
        keys,
    )


def _check_records_reachable(
    report: VerifyReport, records: _Records, key: int, lo: int, entries: np.ndarray | None,
    topic: str, queue_id: int,
) -> None:
    """Every record of a queue must be the target of the entry at its queue offset."""
    mine = np.flatnonzero((records.qkey == key) & (records.qoff >= lo))
    if not len(mine):
        return
    qoffs = records.qoff[mine]
    count = 0 if entries is None else len(entries)
    inside = qoffs < lo + count
    ok = np.zeros(len(mine), dtype=bool)
    if entries is not None and inside.any():
        pointed = entries["offset"].astype(np.int64)[qoffs[inside] - lo]
        ok[inside] = pointed == records.offset[mine[inside]]
    bad = np.flatnonzero(~ok)
    if len(bad):
        first = int(mine[bad[0]])
        report.problem(
            "unreachable_record", int(records.offset[first]),
            f"record {topic}/{queue_id} queue offset {int(records.qoff[first])} has no "
            f"consume-queue entry pointing at it ({len(bad)} such records)",
            topic=topic, queue_id=queue_id,
        )


def _cq_entries_per_file(directory: Path) -> int:
    """Entries per consume-queue file, from the size of the queue's files."""
    for path in sorted(directory.iterdir()):
        if path.name.isdigit():
            return max(1, path.stat().st_size // CQ_ENTRY_BYTES)
    return 300_000


def _check_tail_zero(mm: Any, rel: int, pos: int, report: VerifyReport) -> None:
    data = np.frombuffer(mm, dtype=np.uint8)
    nz = np.flatnonzero(data[rel:])
    if len(nz):
        report.problem("data_after_end", pos + int(nz[0]), "non-zero bytes after the end of the log")


def _check_queues(
    paths: StorePaths, report: VerifyReport, records: _Records, cq_per_file: int | None
) -> None:
    keymap = records.keymap
    offs, sizes, qkey, qoff = records.offset, records.size, records.qkey, records.qoff
    on_disk = list_queues(paths.consumequeue)
    for topic, queue_id in sorted(set(keymap) - set(on_disk)):
        key = keymap[(topic, queue_id)]
        if ((qkey == key) & (qoff >= 0)).any():
            report.problem("missing_queue", None, f"records of {topic}/{queue_id} have no "
                           "consume queue", topic=topic, queue_id=queue_id)
    for topic, queue_id in on_disk:
        per_file = cq_per_file or _cq_entries_per_file(paths.consumequeue / topic / str(queue_id))
        cq = ConsumeQueue.open(paths.consumequeue, topic, queue_id, writable=False,
                               entries_per_file=per_file)
        try:
            lo, hi = cq.min_offset, cq.max_offset
            entries = cq.read(lo, hi - lo) if hi > lo else None
        finally:
            cq.close()
        info: dict[str, Any] = {"topic": topic, "queue_id": queue_id,
                                "min_queue_offset": lo, "max_queue_offset": hi}
        report.queues.append(info)
        _check_records_reachable(report, records, keymap.get((topic, queue_id), -1), lo,
                                 entries, topic, queue_id)
        if entries is None:
            continue
        e_off = entries["offset"].astype(np.int64)
        log_start = int(offs[0]) if len(offs) else report.max_offset
        live = np.flatnonzero(e_off >= log_start)  # older entries point into deleted segments
        first_live = int(live[0]) if len(live) else len(e_off)
        info["expired_entries"] = first_live
        entries, e_off, lo = entries[first_live:], e_off[first_live:], lo + first_live
        if not len(entries):
            continue
        idx = np.searchsorted(offs, e_off)
        idx_c = np.minimum(idx, max(len(offs) - 1, 0))
        key = keymap.get((topic, queue_id), -1)
        if len(offs):
            ok = (offs[idx_c] == e_off) & (sizes[idx_c] == entries["size"].astype(np.int64))
            ok &= (qkey[idx_c] == key) & (qoff[idx_c] == np.arange(lo, hi))
        else:
            ok = np.zeros(len(entries), dtype=bool)
        bad = np.flatnonzero(~ok)
        if len(bad):
            first = int(bad[0])
            report.problem(
                "bad_cq_entry", int(e_off[first]),
                f"{topic}/{queue_id} entry {lo + first} does not point at its record "
                f"({len(bad)} bad entries)", topic=topic, queue_id=queue_id,
                queue_offset=lo + first,
            )
