"""Consume queue: files, append/read, select with tag filters, truncation, retention, readers."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shmq
from shmq.message.taghash import tag_hash
from shmq.store.consumequeue import (
    DEFAULT_SCAN_ENTRIES,
    ConsumeQueue,
    ConsumeQueueError,
    CorruptConsumeQueue,
    NonSequentialAppend,
    OffsetOutOfRange,
    list_queues,
)
from shmq.store.cqlayout import (
    CQ_ENTRY_BYTES,
    CQ_FILLER_SIZE,
    CQ_OFFSET_OFFSET,
    CQ_SIZE_OFFSET,
    CQ_TAG_HASH_OFFSET,
)

TAG_A, TAG_B = tag_hash("TagA"), tag_hash("TagB")
#: Sign-extended int32 values, the extremes included, and enough of them for the np.isin path.
TAG_POOL = [0, -1, -(2**31), 2**31 - 1] + [tag_hash(f"Tag{i}") for i in range(21)]


def columns(
    n: int, *, first_phys: int = 0, seed: int = 0, tags: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, sizes, tag hashes) of `n` records laid end to end from `first_phys`."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 500, n).astype(np.int32)
    offsets = first_phys + np.cumsum(sizes, dtype=np.int64) - sizes
    tag_col = np.asarray(tags if tags is not None else rng.choice([TAG_A, TAG_B], n), np.int64)
    return offsets.astype(np.int64), sizes, tag_col


def open_cq(root: Path, **kwargs: object) -> ConsumeQueue:
    return ConsumeQueue.open(root, "TopicTest", 3, **kwargs)  # type: ignore[arg-type]


def test_append_read_round_trip_across_file_boundaries(tmp_path: Path) -> None:
    offsets, sizes, tags = columns(48)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        q = 0
        for batch in (1, 7, 8, 20, 3, 0, 9):
            cq.append(q, offsets[q : q + batch], sizes[q : q + batch], tags[q : q + batch])
            q += batch
        assert cq.max_offset == 48 and cq.min_offset == 0
        got = cq.read(0, 100)
        assert got["offset"].tolist() == offsets.tolist()
        assert got["size"].tolist() == sizes.tolist()
        assert got["tag_hash"].tolist() == tags.tolist()
        assert cq.read(5, 10)["offset"].tolist() == offsets[5:15].tolist()
        assert len(cq.read(47, 10)) == 1 and len(cq.read(48, 10)) == 0
        assert cq.last_phys_end() == int(offsets[-1]) + int(sizes[-1])
    files = sorted((tmp_path / "TopicTest" / "3").iterdir())
    assert [f.name for f in files] == [f"{i * 8 * 20:020d}" for i in range(6)]
    assert {f.stat().st_size for f in files} == {160}


def test_entry_bytes_on_disk_follow_spec(tmp_path: Path) -> None:
    with open_cq(tmp_path, entries_per_file=64) as cq:
        cq.append_one(0, 7, 11, 13)
        cq.append_one(1, 0x0102030405060708, 0x11223344, -2)
        cq.flush()
    raw = (tmp_path / "TopicTest" / "3" / "00000000000000000000").read_bytes()
    assert len(raw) == 64 * 20
    assert raw[20:40] == bytes.fromhex("0102030405060708 11223344 fffffffffffffffe")
    base = CQ_ENTRY_BYTES
    assert struct.unpack_from(">q", raw, base + CQ_OFFSET_OFFSET)[0] == 0x0102030405060708
    assert struct.unpack_from(">i", raw, base + CQ_SIZE_OFFSET)[0] == 0x11223344
    assert struct.unpack_from(">q", raw, base + CQ_TAG_HASH_OFFSET)[0] == -2
    assert raw[40:] == bytes(len(raw) - 40)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 16, 17, 23])
def test_reopen_finds_max_offset(tmp_path: Path, n: int) -> None:
    offsets, sizes, tags = columns(n + 1)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets[:n], sizes[:n], tags[:n])
    with open_cq(tmp_path, entries_per_file=8) as cq:
        assert cq.max_offset == n
        assert cq.last_phys_end() == (int(offsets[n]) if n else None)
        cq.append(n, offsets[n:], sizes[n:], tags[n:])
        assert cq.read(0, 100)["offset"].tolist() == offsets.tolist()


def test_reopen_walks_back_over_files_created_ahead(tmp_path: Path) -> None:
    """A crash after the writer created a batch's files but before it wrote them."""
    offsets, sizes, tags = columns(12)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets[:4], sizes[:4], tags[:4])
    directory = tmp_path / "TopicTest" / "3"
    for name in ("00000000000000000160", "00000000000000000320"):
        (directory / name).write_bytes(bytes(160))
    with open_cq(tmp_path, entries_per_file=8) as cq:
        assert cq.max_offset == 4
        cq.append(4, offsets[4:], sizes[4:], tags[4:])
    with open_cq(tmp_path, entries_per_file=8, writable=False) as cq:
        assert cq.max_offset == 12
        assert cq.read(0, 20)["offset"].tolist() == offsets.tolist()


def test_non_sequential_append_raises_and_writes_nothing(tmp_path: Path) -> None:
    offsets, sizes, tags = columns(5)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets[:3], sizes[:3], tags[:3])
        with pytest.raises(NonSequentialAppend) as info:
            cq.append(4, offsets[3:], sizes[3:], tags[3:])
        assert (info.value.queue_offset, info.value.max_offset) == (4, 3)
        with pytest.raises(NonSequentialAppend):
            cq.append(2, offsets[3:], sizes[3:], tags[3:])
        assert cq.max_offset == 3
        assert cq.read(0, 10)["offset"].tolist() == offsets[:3].tolist()


@pytest.mark.parametrize("bad_size", [0, -5, CQ_FILLER_SIZE])
def test_append_rejects_sizes_that_mean_unwritten_or_filler(tmp_path: Path, bad_size: int) -> None:
    offsets, sizes, tags = columns(4)
    sizes[2] = bad_size
    with open_cq(tmp_path, entries_per_file=8) as cq:
        with pytest.raises(ConsumeQueueError, match="sizes"):
            cq.append(0, offsets, sizes, tags)
        assert cq.max_offset == 0
        with pytest.raises(ConsumeQueueError, match="length"):
            cq.append(0, offsets, sizes[:3], tags)


def test_empty_queue_starting_mid_file_is_padded_with_filler(tmp_path: Path) -> None:
    offsets, sizes, tags = columns(3, first_phys=1000)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(13, offsets, sizes, tags)
        assert (cq.min_offset, cq.max_offset) == (13, 16)
        selection = cq.select(0, 10, None)
        assert selection.queue_offsets.tolist() == [13, 14, 15]
        assert selection.next_offset == 16
        with pytest.raises(OffsetOutOfRange):
            cq.read(12, 2)
        assert cq.read(13, 5)["offset"].tolist() == offsets.tolist()
        cq.truncate_to_phys(0)  # every record is past the end: the fillers stay
        assert (cq.min_offset, cq.max_offset) == (13, 13)
        cq.append(13, offsets, sizes, tags)
    raw = (tmp_path / "TopicTest" / "3" / "00000000000000000160").read_bytes()
    filler = struct.pack(">qiq", 0, CQ_FILLER_SIZE, 0)
    assert raw[: 5 * 20] == filler * 5
    assert raw[5 * 20 : 6 * 20] == struct.pack(">qiq", 1000, int(sizes[0]), int(tags[0]))
    for writable in (True, False):
        with open_cq(tmp_path, entries_per_file=8, writable=writable) as cq:
            assert (cq.min_offset, cq.max_offset) == (13, 16)
            assert cq.last_phys_end() == int(offsets[-1]) + int(sizes[-1])


def model_select(
    entries: dict[int, tuple[int, int, int]],
    min_offset: int,
    max_offset: int,
    start: int,
    max_count: int,
    wanted: list[int] | None,
    max_bytes: int | None,
    scan_limit: int | None,
) -> tuple[list[int], int]:
    """The documented select, one entry at a time: (chosen queue offsets, next_offset)."""
    first = max(start, min_offset)
    if wanted is None:
        span = max_count if scan_limit is None else min(scan_limit, max_count)
    else:
        span = max(DEFAULT_SCAN_ENTRIES, max_count) if scan_limit is None else scan_limit
    end = min(first + span, max_offset)
    chosen: list[int] = []
    total = 0
    for q in range(first, end):
        _, size, tag = entries[q]
        if wanted is not None and tag not in wanted:
            continue
        if len(chosen) == max_count or (
            max_bytes is not None and chosen and total + size > max_bytes
        ):
            return chosen, chosen[-1] + 1
        chosen.append(q)
        total += size
    return chosen, max(end, first)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_select_matches_model(data: st.DataObject) -> None:
    epf = data.draw(st.sampled_from([1, 3, 8, 64]), label="entries_per_file")
    first_q = data.draw(st.integers(0, 20), label="first queue offset")
    n = data.draw(st.integers(0, 60), label="entries")
    tags = data.draw(st.lists(st.sampled_from(TAG_POOL), min_size=n, max_size=n))
    offsets, sizes, tag_col = columns(n, first_phys=5000, tags=tags, seed=n)
    start = data.draw(st.integers(0, first_q + n + 5), label="start")
    max_count = data.draw(st.integers(1, 40), label="max_count")
    wanted = data.draw(st.none() | st.lists(st.sampled_from([*TAG_POOL, 12345]), max_size=20))
    max_bytes = data.draw(st.none() | st.integers(1, 3000), label="max_bytes")
    scan_limit = data.draw(st.none() | st.integers(1, 70), label="scan_limit")
    reader = data.draw(st.booleans(), label="read-only instance")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with open_cq(root, entries_per_file=epf) as writer:
            writer.append(first_q, offsets, sizes, tag_col)
            if reader:
                cq = open_cq(root, entries_per_file=epf, writable=False)
            else:
                cq = writer
            with cq:
                min_offset, max_offset = (first_q, first_q + n) if n else (0, 0)
                assert (cq.min_offset, cq.max_offset) == (min_offset, max_offset)
                entries = {first_q + i: (int(offsets[i]), int(sizes[i]), tags[i]) for i in range(n)}
                wanted_arr = None if wanted is None else np.asarray(wanted, dtype=np.int64)
                got = cq.select(
                    start, max_count, wanted_arr, max_bytes=max_bytes, scan_limit=scan_limit
                )
                chosen, next_offset = model_select(
                    entries, min_offset, max_offset, start, max_count, wanted, max_bytes, scan_limit
                )
                assert got.queue_offsets.tolist() == chosen
                assert got.offsets.tolist() == [entries[q][0] for q in chosen]
                assert got.sizes.tolist() == [entries[q][1] for q in chosen]
                assert got.next_offset == next_offset


@settings(max_examples=60, deadline=None)
@given(
    tags=st.lists(st.sampled_from([TAG_A, TAG_B, 0]), max_size=120),
    max_count=st.integers(1, 10),
    scan_limit=st.integers(1, 15),
)
def test_pulling_until_max_offset_returns_each_match_once(
    tags: list[int], max_count: int, scan_limit: int
) -> None:
    offsets, sizes, tag_col = columns(len(tags), tags=tags)
    wanted = np.asarray([TAG_A, 0], dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp, open_cq(Path(tmp), entries_per_file=16) as cq:
        cq.append(0, offsets, sizes, tag_col)
        seen: list[int] = []
        pos = 0
        while pos < cq.max_offset:
            selection = cq.select(pos, max_count, wanted, scan_limit=scan_limit)
            assert selection.next_offset > pos
            seen += selection.queue_offsets.tolist()
            pos = selection.next_offset
        assert seen == [q for q, tag in enumerate(tags) if tag in (TAG_A, 0)]


def test_select_max_bytes_stops_before_exceeding_but_returns_one(tmp_path: Path) -> None:
    sizes = np.asarray([100, 200, 300, 400], dtype=np.int32)
    offsets = np.asarray([0, 100, 300, 600], dtype=np.int64)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets, sizes, np.zeros(4, dtype=np.int64))
        cases = {350: ([0, 1], 2), 600: ([0, 1, 2], 3), 50: ([0], 1), 10_000: ([0, 1, 2, 3], 4)}
        for max_bytes, (chosen, next_offset) in cases.items():
            got = cq.select(0, 32, None, max_bytes=max_bytes)
            assert got.queue_offsets.tolist() == chosen, max_bytes
            assert got.next_offset == next_offset
        got = cq.select(0, 32, np.asarray([0], dtype=np.int64), max_bytes=350)
        assert got.queue_offsets.tolist() == [0, 1] and got.next_offset == 2


def test_select_without_match_advances_over_the_scanned_range(tmp_path: Path) -> None:
    n = 1000
    offsets, sizes, tags = columns(n, tags=[TAG_B] * n)
    only_a = np.asarray([TAG_A], dtype=np.int64)
    with open_cq(tmp_path, entries_per_file=64) as cq:
        cq.append(0, offsets, sizes, tags)
        got = cq.select(0, 32, only_a)
        assert len(got) == 0 and got.next_offset == DEFAULT_SCAN_ENTRIES
        assert cq.select(got.next_offset, 32, only_a).next_offset == n
        assert cq.select(n, 32, only_a).next_offset == n
        assert cq.select(n + 7, 32, None).next_offset == n + 7
        assert len(cq.select(0, 32, np.asarray([], dtype=np.int64))) == 0


def test_truncate_drops_entries_and_later_files(tmp_path: Path) -> None:
    offsets, sizes, tags = columns(30)
    directory = tmp_path / "TopicTest" / "3"
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets, sizes, tags)
        cq.truncate(13)
        assert cq.max_offset == 13
        assert sorted(p.name for p in directory.iterdir()) == [
            "00000000000000000000",
            "00000000000000000160",
        ]
        cq.truncate(20)  # past the end: nothing happens
        assert cq.max_offset == 13
    with open_cq(tmp_path, entries_per_file=8) as cq:
        assert cq.max_offset == 13
        assert cq.read(0, 100)["offset"].tolist() == offsets[:13].tolist()
        cq.append(13, offsets[13:], sizes[13:], tags[13:])
        assert cq.read(0, 100)["offset"].tolist() == offsets.tolist()
        cq.truncate(0)
        assert (cq.min_offset, cq.max_offset) == (0, 0)
        assert [p.name for p in directory.iterdir()] == ["00000000000000000000"]
    with open_cq(tmp_path, entries_per_file=8) as cq:
        assert cq.max_offset == 0


@pytest.mark.parametrize("cut", [0, 1, 2, 7, 8, 9, 15, 16, 29, 30])
def test_truncate_to_phys_drops_records_past_the_end(tmp_path: Path, cut: int) -> None:
    offsets, sizes, tags = columns(30)
    ends = (offsets + sizes).tolist()
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets, sizes, tags)
        phys_end = ends[cut - 1] if cut else 0
        for candidate in (phys_end, phys_end + 1 if cut < 30 else phys_end):
            cq.truncate_to_phys(candidate)
            assert cq.max_offset == cut
        if cut < 30:
            cq.truncate_to_phys(ends[cut] - 1)  # the next record ends one byte too late
            assert cq.max_offset == cut
        assert cq.last_phys_end() == (ends[cut - 1] if cut else None)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        assert cq.max_offset == cut


def test_retention_deletes_old_files_and_moves_min_offset(tmp_path: Path) -> None:
    sizes = np.full(40, 10, dtype=np.int32)
    offsets = np.arange(40, dtype=np.int64) * 10
    directory = tmp_path / "TopicTest" / "3"
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets, sizes, np.zeros(40, dtype=np.int64))
        assert cq.delete_files_before_phys(0) == 0
        assert cq.delete_files_before_phys(170) == 2  # files of entries 0-7 and 8-15
        assert cq.min_offset == 16
        assert len(list(directory.iterdir())) == 3
        assert cq.select(0, 4, None).queue_offsets.tolist() == [16, 17, 18, 19]
        with pytest.raises(OffsetOutOfRange):
            cq.read(15, 1)
        assert cq.delete_files_before_phys(10**12) == 2  # the file of entry 39 stays
        assert (cq.min_offset, cq.max_offset) == (32, 40)
        assert cq.last_phys_end() == 400
    with open_cq(tmp_path, entries_per_file=8, writable=False) as cq:
        assert (cq.min_offset, cq.max_offset) == (32, 40)


def test_retention_keeps_the_file_of_the_last_entry(tmp_path: Path) -> None:
    """After truncate(16) the newest file is empty; entry 15's file must survive retention."""
    offsets, sizes, tags = columns(20)
    with open_cq(tmp_path, entries_per_file=8) as cq:
        cq.append(0, offsets, sizes, tags)
        cq.truncate(16)
        assert len(cq.file_paths()) == 3
        assert cq.delete_files_before_phys(10**12) == 1
        assert (cq.min_offset, cq.max_offset) == (8, 16)
        assert cq.last_phys_end() == int(offsets[15]) + int(sizes[15])


def test_reader_sees_truncate_and_files_created_again(tmp_path: Path) -> None:
    offsets, sizes, tags = columns(20)
    new_offsets = offsets + 100_000
    with (
        open_cq(tmp_path, entries_per_file=8) as writer,
        open_cq(tmp_path, entries_per_file=8, writable=False) as reader,
    ):
        assert reader.max_offset == 0
        writer.append(0, offsets, sizes, tags)
        assert reader.max_offset == 0
        reader.refresh()
        assert reader.read(0, 30)["offset"].tolist() == offsets.tolist()
        writer.truncate(4)
        writer.append(4, new_offsets[4:], sizes[4:], tags[4:])
        reader.refresh()
        expected = [*offsets[:4].tolist(), *new_offsets[4:].tolist()]
        assert reader.read(0, 30)["offset"].tolist() == expected
        with pytest.raises(ConsumeQueueError, match="read-only"):
            reader.append(20, offsets[:1], sizes[:1], tags[:1])


_READER_SCRIPT = """
import json, sys
from pathlib import Path
from shmq.store.consumequeue import ConsumeQueue
cq = ConsumeQueue.open(Path(sys.argv[1]), "TopicTest", 3, entries_per_file=8, writable=False)
for line in sys.stdin:
    cq.refresh()
    lo, hi = cq.min_offset, cq.max_offset
    offsets = cq.read(lo, hi - lo)["offset"].tolist() if hi > lo else []
    print(json.dumps([lo, hi, offsets]), flush=True)
"""


def test_reader_in_another_process_sees_appends_after_refresh(tmp_path: Path) -> None:
    offsets, sizes, tags = columns(30)
    env = {**os.environ, "PYTHONPATH": str(Path(shmq.__file__).parent.parent)}
    with (
        open_cq(tmp_path, entries_per_file=8) as writer,
        subprocess.Popen(
            [sys.executable, "-c", _READER_SCRIPT, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        ) as child,
    ):
        stdin, stdout = child.stdin, child.stdout
        assert stdin is not None and stdout is not None

        def ask() -> list[object]:
            stdin.write("refresh\n")
            stdin.flush()
            answer: list[object] = json.loads(stdout.readline())
            return answer

        try:
            assert ask() == [0, 0, []]
            writer.append(0, offsets[:5], sizes[:5], tags[:5])
            assert ask() == [0, 5, offsets[:5].tolist()]
            writer.append(5, offsets[5:30], sizes[5:30], tags[5:30])  # three more files
            assert ask() == [0, 30, offsets.tolist()]
            writer.delete_files_before_phys(int(offsets[9]))
            assert ask() == [8, 30, offsets[8:].tolist()]
        finally:
            stdin.close()
            assert child.wait(timeout=30) == 0


def test_list_queues(tmp_path: Path) -> None:
    assert list_queues(tmp_path / "missing") == []
    for topic, queue_id in (("B", 1), ("A", 3), ("A", 0), ("A", 10)):
        ConsumeQueue.open(tmp_path, topic, queue_id).close()
    (tmp_path / "A" / "not-a-queue").mkdir()
    (tmp_path / "A" / "7").write_text("a file, not a directory")
    (tmp_path / "stray-file").write_text("x")
    assert list_queues(tmp_path) == [("A", 0), ("A", 3), ("A", 10), ("B", 1)]


def test_open_rejects_files_that_do_not_fit_the_geometry(tmp_path: Path) -> None:
    directory = tmp_path / "TopicTest" / "3"
    directory.mkdir(parents=True)
    (directory / "00000000000000000000").write_bytes(bytes(160))
    with pytest.raises(CorruptConsumeQueue, match="entries_per_file"):
        open_cq(tmp_path, entries_per_file=16)
    (directory / "00000000000000000320").write_bytes(bytes(160))
    with pytest.raises(CorruptConsumeQueue, match="gap"):
        open_cq(tmp_path, entries_per_file=8)
    with pytest.raises(ConsumeQueueError, match="topic"):
        ConsumeQueue.open(tmp_path, "../escape", 0)


def test_closed_queue_refuses_calls_and_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    directory = tmp_path / "TopicTest" / "3"
    directory.mkdir(parents=True)
    (directory / ".00000000000000000000.tmp").write_bytes(b"half made")
    cq = open_cq(tmp_path, entries_per_file=8)
    assert list(directory.iterdir()) == []
    cq.append_one(0, 0, 10, 0)
    cq.flush()
    cq.close()
    cq.close()
    with pytest.raises(ConsumeQueueError, match="closed"):
        cq.select(0, 1, None)


def test_select_short_window_gives_the_same_next_offset_as_a_full_scan(tmp_path: Path) -> None:
    """Regression: the short first window returned its own end as next_offset when it held
    exactly max_count matches, where a full scan continues past them."""
    n = 300
    tags = [TAG_A if i < 32 else TAG_B for i in range(n)]  # exactly 32 matches, all early
    offsets, sizes, tag_col = columns(n, first_phys=5000, tags=tags, seed=1)
    with open_cq(tmp_path, entries_per_file=1000) as cq:
        cq.append(0, offsets, sizes, tag_col)
        sel = cq.select(0, 32, np.asarray([TAG_A], dtype=np.int64))
        assert sel.queue_offsets.tolist() == list(range(32))
        assert sel.next_offset == n  # the whole range was scanned, nothing else matched
        more = cq.select(0, 16, np.asarray([TAG_A], dtype=np.int64))
        assert more.next_offset == 16  # cut short by the count
