"""Tests of shmq/ipc/layout.py: the rules the ring and table layouts promise."""

from __future__ import annotations

import pytest

from shmq.ipc import layout
from shmq.ipc.errors import InvalidLayout

pytestmark = pytest.mark.timeout(30)


def test_each_writer_has_its_own_cache_line() -> None:
    lines = {
        "identity": layout.MAGIC_OFFSET // layout.CACHE_LINE,
        "head": layout.HEAD_OFFSET // layout.CACHE_LINE,
        "tail": layout.TAIL_OFFSET // layout.CACHE_LINE,
        "consumer": layout.CONSUMER_STATE_OFFSET // layout.CACHE_LINE,
        "producer": layout.PRODUCER_STATE_OFFSET // layout.CACHE_LINE,
    }
    assert len(set(lines.values())) == len(lines)
    assert layout.CONSUMER_PID_OFFSET // layout.CACHE_LINE == lines["consumer"]
    assert layout.PRODUCER_PID_OFFSET // layout.CACHE_LINE == lines["producer"]
    assert layout.DATA_OFFSET % layout.CACHE_LINE == 0
    assert layout.DATA_OFFSET > layout.PRODUCER_PID_OFFSET


def test_header_fields_are_aligned_int64s() -> None:
    offsets = [
        layout.MAGIC_OFFSET,
        layout.VERSION_OFFSET,
        layout.CAPACITY_OFFSET,
        layout.HEAD_OFFSET,
        layout.TAIL_OFFSET,
        layout.CONSUMER_STATE_OFFSET,
        layout.CONSUMER_PID_OFFSET,
        layout.PRODUCER_STATE_OFFSET,
        layout.PRODUCER_PID_OFFSET,
    ]
    assert [layout.slot(offset) * 8 for offset in offsets] == offsets
    with pytest.raises(InvalidLayout, match="aligned"):
        layout.slot(12)


@pytest.mark.parametrize(
    ("payload_bytes", "record_bytes"), [(0, 8), (1, 16), (7, 16), (8, 16), (9, 24), (128, 136)]
)
def test_record_bytes_pads_to_eight(payload_bytes: int, record_bytes: int) -> None:
    assert layout.record_bytes(payload_bytes) == record_bytes


def test_record_header_is_len_kind_flags_little_endian() -> None:
    assert layout.RECORD_HEADER.pack(0x01020304, 0x0506, layout.FLAG_PAD) == bytes(
        [4, 3, 2, 1, 6, 5, 1, 0]
    )


@pytest.mark.parametrize("capacity", [64, 128, 1 << 20, 1 << 32])
def test_valid_capacities(capacity: int) -> None:
    assert layout.validate_capacity(capacity) == capacity


@pytest.mark.parametrize("capacity", [0, 32, 100, 3 << 20, (1 << 32) + 1, 1 << 33, -64])
def test_invalid_capacities(capacity: int) -> None:
    with pytest.raises(InvalidLayout) as info:
        layout.validate_capacity(capacity)
    assert info.value.value == capacity
    assert "capacity_bytes" in str(info.value)


def test_largest_record_and_its_padding_fit_together() -> None:
    for capacity in (64, 4096, 1 << 20):
        largest = layout.record_bytes(layout.max_payload_bytes(capacity))
        worst_padding = largest - layout.RECORD_ALIGN  # record just misses the end of the area
        assert largest + worst_padding <= capacity
        assert layout.record_bytes(layout.max_payload_bytes(capacity) + 1) > capacity // 2


def test_table_data_is_cache_line_aligned() -> None:
    for meta_bytes in (1, 23, 24, 25, 100, 1000):
        offset = layout.table_data_offset(meta_bytes)
        assert offset % layout.TABLE_DATA_ALIGN == 0
        assert offset >= layout.TABLE_META_OFFSET + meta_bytes
