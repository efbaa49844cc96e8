"""Key index: RocketMQ file layout, put/query, collisions, rolling, time ranges, recovery cuts."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmq.message.taghash import java_string_hash
from shmq.store.index import (
    CorruptIndexFile,
    IndexFileError,
    IndexService,
    index_key_hash,
    index_key_hashes,
)

T0 = 1_700_000_000_000  #: a store timestamp (ms) on a whole second
EVERYTHING = (0, 2**62)  #: a time range that holds every entry


def java_hash_by_hand(text: str) -> int:
    """String.hashCode of an ASCII string, written out independently of shmq."""
    h = 0
    for char in text:
        h = (31 * h + ord(char)) % 2**32
    return h - 2**32 if h >= 2**31 else h


def test_key_hash_vector() -> None:
    key = "TopicTest#k1"
    expected = abs(java_hash_by_hand(key))
    assert expected == abs(java_string_hash(key))
    assert index_key_hash(key) == expected
    assert index_key_hashes([key]).tolist() == [expected]
    # "polygenelubricants".hashCode() is Integer.MIN_VALUE, whose abs overflows: Java uses 0.
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert index_key_hash("polygenelubricants") == 0
    assert index_key_hashes(["polygenelubricants", ""]).tolist() == [0, 0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=20))
def test_vectorised_key_hashes_equal_java_hash(keys: list[str]) -> None:
    expected = []
    for key in keys:
        h = abs(java_string_hash(key))
        expected.append(0 if h == 2**31 else h)
    assert index_key_hashes(keys).tolist() == expected


def test_file_layout_follows_spec(tmp_path: Path) -> None:
    slots, max_entries = 11, 10
    k1, k2 = "TopicTest#k1", "TopicTest#k2"
    h1, h2 = index_key_hash(k1), index_key_hash(k2)
    with IndexService(tmp_path, slots=slots, max_entries=max_entries) as index:
        index.put(k1, 1234, T0)
        index.put(k2, 5678, T0 + 2500)
        index.flush()
    (path,) = tmp_path.iterdir()
    assert len(path.name) == 17 and path.name.isdigit()
    raw = path.read_bytes()
    assert len(raw) == 40 + slots * 4 + max_entries * 20
    same_slot = h1 % slots == h2 % slots
    header = (T0, T0 + 2500, 1234, 5678, 1 if same_slot else 2, 3)
    assert struct.unpack_from(">qqqqii", raw, 0) == header
    assert struct.unpack_from(">q", raw, 24)[0] == 5678  # endPhyOffset
    assert struct.unpack_from(">i", raw, 36)[0] == 3  # indexCount
    assert struct.unpack_from(">i", raw, 40 + (h2 % slots) * 4)[0] == 2
    if not same_slot:
        assert struct.unpack_from(">i", raw, 40 + (h1 % slots) * 4)[0] == 1
    entries = 40 + slots * 4
    assert raw[entries : entries + 20] == bytes(20)  # entry 0 is never used
    assert struct.unpack_from(">iqii", raw, entries + 20) == (h1, 1234, 0, 0)
    assert struct.unpack_from(">iqii", raw, entries + 40) == (h2, 5678, 2, 1 if same_slot else 0)
    used = {h1 % slots, h2 % slots}
    for slot in range(slots):
        if slot not in used:
            assert struct.unpack_from(">i", raw, 40 + slot * 4)[0] == 0


def test_put_query_round_trip(tmp_path: Path) -> None:
    with IndexService(tmp_path, slots=101, max_entries=1000) as index:
        assert index.query("T#a", *EVERYTHING) == []
        assert index.last_phys_offset is None
        index.put_many(["T#a", "T#b", "T#a", "T#c", "T#a"], [0, 100, 200, 300, 400], [T0] * 5)
        assert index.query("T#a", *EVERYTHING) == [400, 200, 0]
        assert index.query("T#b", *EVERYTHING) == [100]
        assert index.query("T#c", *EVERYTHING) == [300]
        assert index.query("T#d", *EVERYTHING) == []
        assert index.query("U#a", *EVERYTHING) == []
        assert index.last_phys_offset == 400


def test_keys_with_the_same_hash_are_both_returned(tmp_path: Path) -> None:
    """Keys "Aa" and "BB" have the same String.hashCode: the caller must re-check the key."""
    assert index_key_hash("T#Aa") == index_key_hash("T#BB")
    with IndexService(tmp_path, slots=7, max_entries=100) as index:
        index.put_many(["T#Aa", "T#BB", "T#x"], [10, 20, 30], [T0] * 3)
        assert index.query("T#Aa", *EVERYTHING) == [20, 10]


KEY_POOL = ["T#Aa", "T#BB", *(f"T#key{i}" for i in range(8)), "Topic#\U0001f600", "T#"]


@settings(max_examples=80, deadline=None)
@given(
    keys=st.lists(st.sampled_from(KEY_POOL), max_size=60),
    slots=st.sampled_from([1, 3, 7]),
    max_entries=st.sampled_from([2, 5, 9, 1000]),
    batch=st.integers(1, 16),
    max_num=st.integers(1, 70),
)
def test_queries_match_a_model_with_collisions_and_rolling(
    keys: list[str], slots: int, max_entries: int, batch: int, max_num: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with IndexService(Path(tmp), slots=slots, max_entries=max_entries) as index:
            for lo in range(0, len(keys), batch):
                chunk = keys[lo : lo + batch]
                offsets = [100 * i for i in range(lo, lo + len(chunk))]
                index.put_many(chunk, offsets, [T0 + 10 * i for i in range(lo, lo + len(chunk))])
            files = index.files
            assert len(files) == -(-len(keys) // (max_entries - 1))
            assert [f.path.name for f in files] == sorted({f.path.name for f in files})
            for key in set(KEY_POOL):
                same_hash = [
                    100 * i for i, k in enumerate(keys) if index_key_hash(k) == index_key_hash(key)
                ]
                assert index.query(key, *EVERYTHING, max_num=max_num) == same_hash[::-1][:max_num]
        with IndexService(Path(tmp), slots=slots, max_entries=max_entries) as reopened:
            for key in set(keys):
                assert reopened.query(key, *EVERYTHING, max_num=100) == [
                    100 * i
                    for i, k in reversed(list(enumerate(keys)))
                    if index_key_hash(k) == index_key_hash(key)
                ]


def test_rolls_to_a_new_file_when_full(tmp_path: Path) -> None:
    with IndexService(tmp_path, slots=5, max_entries=5) as index:  # 4 entries per file
        index.put_many(["T#k"] * 10, [i * 10 for i in range(10)], [T0 + i for i in range(10)])
        files = index.files
        assert [f.index_count for f in files] == [5, 5, 3]
        assert [f.begin_phys_offset for f in files] == [0, 40, 80]
        assert [f.end_phys_offset for f in files] == [30, 70, 90]
        names = [f.path.name for f in files]
        assert names == sorted(set(names))
        assert index.query("T#k", *EVERYTHING) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
        assert index.query("T#k", *EVERYTHING, max_num=3) == [90, 80, 70]
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_time_range_bounds_are_whole_seconds(tmp_path: Path) -> None:
    with IndexService(tmp_path, slots=13, max_entries=100) as index:
        index.put_many(
            ["T#k"] * 10, [i * 10 for i in range(10)], [T0 + i * 1000 for i in range(10)]
        )
        index.put("T#k", 100, T0 + 10_999)  # stored as T0 + 10 s
        assert index.query("T#k", T0 + 3000, T0 + 6000) == [60, 50, 40, 30]
        assert index.query("T#k", T0 + 3001, T0 + 5999) == [50, 40]
        assert index.query("T#k", T0 + 10_500, T0 + 20_000) == []
        assert index.query("T#k", T0 + 10_000, T0 + 10_000) == [100]
        assert index.query("T#k", T0 + 20_000, T0 + 30_000) == []
        assert index.query("T#k", 0, T0 - 1) == []
        assert index.query("T#k", T0, T0 + 9000, max_num=2) == [90, 80]


def test_query_skips_files_outside_the_time_range(tmp_path: Path) -> None:
    with IndexService(tmp_path, slots=3, max_entries=3) as index:  # 2 entries per file
        stamps = [T0, T0 + 1000, T0 + 60_000, T0 + 61_000, T0 + 120_000]
        index.put_many(["T#k"] * 5, [0, 10, 20, 30, 40], stamps)
        assert len(index.files) == 3
        assert index.query("T#k", T0 + 30_000, T0 + 90_000) == [30, 20]
        assert index.query("T#k", T0 + 61_000, T0 + 200_000) == [40, 30]
        assert index.query("T#k", T0, T0 + 500) == [0]


def test_reopen_continues_in_the_newest_file(tmp_path: Path) -> None:
    with IndexService(tmp_path, slots=17, max_entries=50) as index:
        index.put_many([f"T#k{i % 3}" for i in range(10)], range(0, 100, 10), [T0] * 10)
    with IndexService(tmp_path, slots=17, max_entries=50) as index:
        assert index.last_phys_offset == 90
        assert index.query("T#k0", *EVERYTHING) == [90, 60, 30, 0]
        index.put("T#k0", 100, T0 + 5000)
        (only,) = index.files
        assert only.index_count == 12
        assert index.query("T#k0", *EVERYTHING) == [100, 90, 60, 30, 0]
    with pytest.raises(CorruptIndexFile, match="settings"):
        IndexService(tmp_path, slots=19, max_entries=50)


def test_delete_files_before_phys_keeps_the_newest(tmp_path: Path) -> None:
    with IndexService(tmp_path, slots=5, max_entries=5) as index:  # 4 entries per file
        index.put_many(["T#k"] * 12, [i * 100 for i in range(12)], [T0] * 12)
        assert index.delete_files_before_phys(300) == 0  # first file ends at 300
        assert index.delete_files_before_phys(301) == 1
        assert index.query("T#k", *EVERYTHING)[-1] == 400
        assert index.delete_files_before_phys(10**9) == 1
        assert len(index.files) == 1 and len(list(tmp_path.iterdir())) == 1
        assert index.query("T#k", *EVERYTHING) == [1100, 1000, 900, 800]


def test_truncate_to_phys_forgets_records_past_the_end(tmp_path: Path) -> None:
    keys = [f"T#k{i % 2}" for i in range(20)]
    with IndexService(tmp_path, slots=3, max_entries=5) as index:  # 4 entries per file
        index.put_many(keys, [i * 100 for i in range(20)], [T0] * 20)
        index.truncate_to_phys(1050)
        assert index.last_phys_offset == 1000
        assert len(index.files) == 3
        assert index.files[-1].index_count == 4
        assert index.query("T#k0", *EVERYTHING) == [1000, 800, 600, 400, 200, 0]
        assert index.query("T#k1", *EVERYTHING) == [900, 700, 500, 300, 100]
        index.put_many(["T#k1", "T#k0"], [1050, 1100], [T0, T0])
        assert index.query("T#k1", *EVERYTHING) == [1050, 900, 700, 500, 300, 100]
        index.truncate_to_phys(800)
        assert index.last_phys_offset == 700
        assert index.query("T#k0", *EVERYTHING) == [600, 400, 200, 0]
        index.truncate_to_phys(0)
        assert index.last_phys_offset is None and index.files == []
    with IndexService(tmp_path, slots=3, max_entries=5) as index:
        assert index.query("T#k0", *EVERYTHING) == []


def test_uncommitted_batch_does_not_hide_older_entries(tmp_path: Path) -> None:
    """A crash after a batch wrote its entries and slots but before the header's indexCount."""
    slots, key = 7, "T#k"
    with IndexService(tmp_path, slots=slots, max_entries=20) as index:
        index.put_many([key] * 3, [0, 100, 200], [T0] * 3)  # entries 1-3, indexCount 4
    (path,) = tmp_path.iterdir()
    raw = bytearray(path.read_bytes())
    h = index_key_hash(key)
    struct.pack_into(">iqii", raw, 40 + slots * 4 + 4 * 20, h, 300, 0, 3)  # entry 4
    struct.pack_into(">i", raw, 40 + (h % slots) * 4, 4)  # the slot points at it
    path.write_bytes(bytes(raw))
    with IndexService(tmp_path, slots=slots, max_entries=20) as index:
        assert index.query(key, *EVERYTHING) == [200, 100, 0]
        index.put(key, 300, T0)
        assert index.query(key, *EVERYTHING) == [300, 200, 100, 0]


def test_put_many_rejects_bad_batches_and_writes_nothing(tmp_path: Path) -> None:
    with IndexService(tmp_path, slots=7, max_entries=20) as index:
        index.put("T#a", 500, T0)
        with pytest.raises(IndexFileError, match="decrease"):
            index.put_many(["T#a", "T#b"], [600, 550], [T0, T0])
        with pytest.raises(IndexFileError, match="decrease"):
            index.put("T#b", 499, T0)
        with pytest.raises(IndexFileError, match="length"):
            index.put_many(["T#a", "T#b"], [600], [T0, T0])
        assert index.query("T#b", *EVERYTHING) == []
        assert index.files[0].index_count == 2
    with pytest.raises(IndexFileError, match="max_entries"):
        IndexService(tmp_path, slots=7, max_entries=1)
