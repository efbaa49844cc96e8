from __future__ import annotations

from pathlib import Path

from shmq.store.recovery import recover
from shmq.store.retention import apply_retention
from shmq.store.store import MessageStore
from shmq.store.verify import verify_store
from tests.store.helpers import SMALL, props

DAY_MS = 86_400_000


def _filled(root: Path) -> MessageStore:
    recover(root, SMALL)
    store = MessageStore(root, SMALL, writer_slot=0)
    for i in range(120):  # ~2.2 KiB each: about 4 segments of 64 KiB
        store.put("R", i % 2, [bytes([i % 256]) * 2000], [props(KEYS=f"k{i}")])
    store.flush()
    store.build_index()
    return store


def test_nothing_is_deleted_before_it_expires(tmp_path: Path) -> None:
    with _filled(tmp_path) as store:
        before = store.commitlog.segments.starts()
        report = apply_retention(store, used_ratio=lambda: 0.1)
        assert report.segments_deleted == [] and store.commitlog.segments.starts() == before


def test_expired_segments_and_what_points_only_into_them_are_deleted(tmp_path: Path) -> None:
    with _filled(tmp_path) as store:
        starts = store.commitlog.segments.starts()
        assert len(starts) >= 4
        cq_files_before = len(store.queue("R", 0).file_paths())
        report = apply_retention(store, now_ms=store_time_plus(DAY_MS * 4),
                                 used_ratio=lambda: 0.1)
        assert report.segments_deleted == starts[:-1]  # never the active segment
        assert store.commitlog.segments.starts() == starts[-1:]
        assert report.cq_files_deleted > 0
        assert len(store.queue("R", 0).file_paths()) < cq_files_before
        cq = store.queue("R", 0)
        assert cq.max_offset == 60 and cq.min_offset > 0  # whole cq files went with the log
        # the newest messages are still readable
        last = cq.read(cq.max_offset - 1, 1)
        assert store.message(int(last["offset"][0]))[4:8] == b"\xda\xa3\x20\xa7"
    report2 = verify_store(tmp_path, SMALL)
    assert report2.consistent, report2.problems


def test_disk_high_water_deletes_oldest_even_if_young(tmp_path: Path) -> None:
    with _filled(tmp_path) as store:
        starts = store.commitlog.segments.starts()
        report = apply_retention(store, used_ratio=lambda: 0.99)
        assert report.segments_deleted == starts[:-1]
        assert all("disk" in r for r in report.reasons)


def test_retention_never_deletes_unflushed_segments(tmp_path: Path) -> None:
    recover(tmp_path, SMALL)
    with MessageStore(tmp_path, SMALL, writer_slot=0) as store:
        for i in range(120):
            store.put("R", 0, [b"x" * 2000], [b""])
        report = apply_retention(store, now_ms=store_time_plus(DAY_MS * 10),
                                 used_ratio=lambda: 0.99)
        assert report.segments_deleted == []  # checkpoint is still at 0


def store_time_plus(ms: int) -> int:
    import time

    return int(time.time() * 1000) + ms
