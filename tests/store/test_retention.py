from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shmq.store.recovery import recover
from shmq.store.retention import apply_retention
from shmq.store.store import MessageStore
from shmq.store.verify import verify_store
from tests.store.helpers import SMALL as _SMALL
from tests.store.helpers import props

SMALL = replace(_SMALL, cq_entries_per_file=8, index_max_entries=20)

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
        assert report.cq_files_deleted > 0 and report.index_files_deleted > 0
        assert store.index.query("R#k119", 0, 2**62) != []  # newest keys still indexed
        assert store.index.query("R#k0", 0, 2**62) == []  # oldest went with their segment
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


def test_a_full_file_system_refuses_appends_and_loses_nothing(tmp_path: Path) -> None:
    """A real 1 MiB tmpfs: appends fail with DiskFull once no segment fits; every
    acknowledged message survives and the store verifies clean."""
    import subprocess

    from shmq.store.errors import DiskFull

    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        cfg = replace(SMALL, segment_bytes=256 * 1024, min_free_bytes=0)
        root = mnt / "store"
        recover(root, cfg)
        acked = []
        with MessageStore(root, cfg, writer_slot=0) as store:
            with pytest.raises(DiskFull) as err:
                for i in range(10_000):
                    res = store.put("F", 0, [bytes([i % 251]) * 3000], [b""])
                    acked.append((int(res.offsets[0]), i))
            assert "store.min_free_bytes" in str(err.value)
            assert len(acked) > 100
            claimed = store.claims.load_claimed() if store.claims else -1
            with pytest.raises(DiskFull):  # still refused, nothing claimed meanwhile
                store.put("F", 0, [b"x" * 3000], [b""])
            assert store.claims is not None and store.claims.load_claimed() == claimed
        report = verify_store(root, cfg)
        assert report.consistent, report.problems
        assert report.records == len(acked)
        assert not recover(root, cfg).repaired
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
