"""Tests of shmq/message/batch.py: SEND_BATCH_MESSAGE bodies (spec §8)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmq.message import layout
from shmq.message.batch import BatchEntry, RawBatchEntry, decode_batch_body, encode_batch_body
from shmq.message.errors import InvalidRecordField, MalformedBatch, PropertiesTooLarge

# Two entries, written field by field from the spec §8 table (as Java encodeMessage does).
GOLDEN_ENTRIES = [
    BatchEntry(flag=1, body=b"x", properties={"a": "b"}),
    BatchEntry(flag=-2, body=b"", properties={}),
]
GOLDEN_RAW = [
    RawBatchEntry(flag=1, body=b"x", properties=b"a\x01b\x02"),
    RawBatchEntry(flag=-2, body=b"", properties=b""),
]
GOLDEN_BYTES = bytes.fromhex(
    "0000001B"  # TOTALSIZE 27 = 20 + 1 + 2 + 4
    "00000000"  # MAGICCODE 0
    "00000000"  # BODYCRC 0
    "00000001"  # FLAG
    "00000001"  # BODYLEN
    "78"  # BODY "x"
    "0004"  # PROPLEN
    "61016202"  # PROPERTIES "a\x01b\x02"
    "00000016"  # TOTALSIZE 22
    "00000000"  # MAGICCODE
    "00000000"  # BODYCRC
    "FFFFFFFE"  # FLAG -2
    "00000000"  # BODYLEN
    "0000"  # PROPLEN
)


def test_encode_known() -> None:
    assert encode_batch_body(GOLDEN_ENTRIES) == GOLDEN_BYTES
    assert encode_batch_body(GOLDEN_RAW) == GOLDEN_BYTES


def test_decode_known() -> None:
    assert decode_batch_body(GOLDEN_BYTES) == GOLDEN_ENTRIES
    assert decode_batch_body(GOLDEN_BYTES, raw_properties=True) == GOLDEN_RAW
    assert decode_batch_body(memoryview(GOLDEN_BYTES)) == GOLDEN_ENTRIES


def test_empty_body_has_no_entries() -> None:
    assert decode_batch_body(b"") == []
    assert encode_batch_body([]) == b""


def test_magic_and_crc_are_ignored() -> None:
    buf = bytearray(GOLDEN_BYTES)
    struct.pack_into(">ii", buf, layout.BATCH_MAGIC_OFFSET, layout.MESSAGE_MAGIC, 12345)
    assert decode_batch_body(bytes(buf)) == GOLDEN_ENTRIES


def test_raw_properties_kept_byte_for_byte() -> None:
    raw = b"WAIT\x01true\x02TAGS\x01t"  # Java 4.9.7 form, no trailing separator
    (entry,) = decode_batch_body(encode_batch_body([(0, b"b", raw)]), raw_properties=True)
    assert entry.properties == raw


FIRST_SIZE = 27  #: bytes of GOLDEN_BYTES' first entry
FIRST_PROPLEN_OFFSET = layout.BATCH_ENTRY_HEADER.size + len(GOLDEN_ENTRIES[0].body)


def test_every_cut_is_an_error_or_a_whole_entry_prefix() -> None:
    whole = {0: [], FIRST_SIZE: GOLDEN_ENTRIES[:1]}
    for end in range(len(GOLDEN_BYTES)):
        if end in whole:
            assert decode_batch_body(GOLDEN_BYTES[:end]) == whole[end]
        else:
            with pytest.raises(MalformedBatch):
                decode_batch_body(GOLDEN_BYTES[:end])


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (layout.BATCH_TOTAL_SIZE_OFFSET, ">i", 26),  # one short of 20 + 1 + 2 + 4
        (layout.BATCH_TOTAL_SIZE_OFFSET, ">i", 28),  # one long
        (layout.BATCH_TOTAL_SIZE_OFFSET, ">i", 21),  # below the 22-byte minimum
        (layout.BATCH_TOTAL_SIZE_OFFSET, ">i", -1),
        (layout.BATCH_TOTAL_SIZE_OFFSET, ">i", 1 << 30),  # beyond the body
        (layout.BATCH_BODY_LEN_OFFSET, ">i", -1),
        (layout.BATCH_BODY_LEN_OFFSET, ">i", 6),  # past TOTALSIZE
        (FIRST_PROPLEN_OFFSET, ">h", -1),
        (FIRST_PROPLEN_OFFSET, ">h", 3),  # inconsistent with TOTALSIZE
    ],
)
def test_inconsistent_entry_raises(offset: int, fmt: str, value: int) -> None:
    buf = bytearray(GOLDEN_BYTES)
    struct.pack_into(fmt, buf, offset, value)
    with pytest.raises(MalformedBatch) as info:
        decode_batch_body(bytes(buf))
    assert info.value.offset == 0


def test_error_names_the_offset_of_the_bad_entry() -> None:
    buf = bytearray(GOLDEN_BYTES)
    struct.pack_into(">i", buf, FIRST_SIZE + layout.BATCH_BODY_LEN_OFFSET, 1)
    with pytest.raises(MalformedBatch) as info:
        decode_batch_body(bytes(buf))
    assert info.value.offset == FIRST_SIZE
    assert f"offset {FIRST_SIZE}" in str(info.value)


def test_encode_errors() -> None:
    with pytest.raises(InvalidRecordField):
        encode_batch_body([(1 << 31, b"", {})])
    with pytest.raises(PropertiesTooLarge):
        encode_batch_body([(0, b"", {"k": "v" * 32765})])


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x01\x02"), max_size=10)
entries = st.lists(
    st.builds(
        BatchEntry,
        st.integers(-(1 << 31), (1 << 31) - 1),
        st.binary(max_size=300),
        st.dictionaries(_text.filter(bool), _text, max_size=4),
    ),
    max_size=6,
)


@given(entries)
def test_round_trip(batch: list[BatchEntry]) -> None:
    data = encode_batch_body(batch)
    assert len(data) == sum(20 + len(e.body) + 2 + len(_props(e)) for e in batch)  # spec §8
    assert decode_batch_body(data) == batch


def _props(entry: BatchEntry) -> bytes:
    return b"".join(f"{k}\x01{v}\x02".encode() for k, v in entry.properties.items())


@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_malformed_batch(data: bytes) -> None:
    try:
        batch = decode_batch_body(data, raw_properties=True)
    except MalformedBatch:
        return
    assert encode_batch_body(batch) == _zero_magic_and_crc(data, batch)


def _zero_magic_and_crc(data: bytes, batch: list[RawBatchEntry]) -> bytes:
    """`data` with each entry's ignored MAGIC and CRC fields set to 0, as the encoder writes."""
    buf = bytearray(data)
    pos = 0
    for entry in batch:
        struct.pack_into(">ii", buf, pos + layout.BATCH_MAGIC_OFFSET, 0, 0)
        pos += layout.BATCH_ENTRY_OVERHEAD + len(entry.body) + len(entry.properties)
    return bytes(buf)
