from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmq.message.encoder import check_batch, encode_batch, patch_batch, patch_one, record_starts
from shmq.message.errors import InvalidRecordField
from shmq.message.msgid import pack_host
from shmq.message.properties import encode_properties
from shmq.message.record import decode_record


@settings(max_examples=40, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=12),
    topic=st.text(min_size=1, max_size=20).filter(lambda t: len(t.encode()) <= 127),
    v6=st.booleans(),
)
def test_encoded_and_patched_records_decode_to_what_was_given(bodies, topic, v6) -> None:
    props = [encode_properties({"TAGS": f"t{i}", "UNIQ_KEY": f"u{i}"}) for i in range(len(bodies))]
    born = ("2001:db8::5", 7) if v6 else ("10.0.0.5", 7)
    batch = encode_batch(topic.encode(), 3, bodies, props, born_timestamp_ms=111,
                         born_host=pack_host(*born), store_host=pack_host("127.0.0.1", 10911),
                         flag=9)
    check_batch(batch.data, batch.sizes)
    buf = bytearray(b"\xee" * 16 + batch.data)  # placed at byte 16 of some log
    starts = record_starts(batch.sizes, 16)
    patch_batch(np.frombuffer(buf, dtype=np.uint8), starts,
                queue_offsets=np.arange(50, 50 + batch.count), phys_offsets=starts + 1000,
                store_timestamp_ms=222, store_timestamp_offset=batch.store_timestamp_offset)
    for i, start in enumerate(starts.tolist()):
        msg = decode_record(bytes(buf), start, check_crc=True)
        assert msg.body == bodies[i] and msg.topic == topic and msg.queue_id == 3
        assert (msg.queue_offset, msg.phys_offset) == (50 + i, start + 1000)
        assert (msg.born_timestamp_ms, msg.store_timestamp_ms, msg.flag) == (111, 222, 9)
        assert (msg.born_host, msg.born_port) == born
        assert msg.properties == {"TAGS": f"t{i}", "UNIQ_KEY": f"u{i}"}


@settings(max_examples=30, deadline=None)
@given(bodies=st.lists(st.binary(max_size=300), min_size=5, max_size=8), v6=st.booleans(),
       at=st.integers(0, 64), queue_offset=st.integers(0, 1 << 40),
       phys=st.integers(0, 1 << 40), stamp=st.integers(0, (1 << 63) - 1))
def test_patch_one_writes_what_patch_batch_writes(bodies: list[bytes], v6: bool, at: int,
                                                  queue_offset: int, phys: int,
                                                  stamp: int) -> None:
    # more records than patch_batch patches one by one: its numpy path is the reference
    host = pack_host("2001:db8::5" if v6 else "10.0.0.5", 7)
    batch = encode_batch(b"T", 1, bodies, [b"UNIQ_KEY\x01u\x02"] * len(bodies),
                         born_timestamp_ms=1, born_host=host, store_host=host)
    one = bytearray(b"\xee" * at + batch.data)
    many = bytearray(one)
    starts = record_starts(batch.sizes, at)
    for i, start in enumerate(starts.tolist()):
        patch_one(one, start, queue_offset=queue_offset + i, phys_offset=phys + start,
                  store_timestamp_ms=stamp, store_timestamp_offset=batch.store_timestamp_offset)
    patch_batch(np.frombuffer(many, dtype=np.uint8), starts,
                queue_offsets=np.arange(queue_offset, queue_offset + len(bodies)),
                phys_offsets=starts + phys, store_timestamp_ms=stamp,
                store_timestamp_offset=batch.store_timestamp_offset)
    assert one == many
    for i, start in enumerate(starts.tolist()):
        msg = decode_record(bytes(one), start, check_crc=True)
        assert (msg.queue_offset, msg.phys_offset, msg.store_timestamp_ms) == (
            queue_offset + i, phys + start, stamp)


def _batch():
    return encode_batch(b"T", 0, [b"a", b"bb"], [b"", b""], born_timestamp_ms=1,
                        born_host=pack_host("1.2.3.4", 5), store_host=pack_host("1.2.3.4", 6))


def test_check_batch_refuses_wrong_sizes() -> None:
    b = _batch()
    with pytest.raises(InvalidRecordField, match="add up"):
        check_batch(b.data, b.sizes + 1)
    with pytest.raises(InvalidRecordField, match="at least one"):
        check_batch(b"", np.zeros(0, dtype=np.int64))


def test_check_batch_refuses_a_bad_header() -> None:
    b = _batch()
    data = bytearray(b.data)
    data[int(b.sizes[0]) + 4] ^= 1  # magic of the second record
    with pytest.raises(InvalidRecordField, match="record 1"):
        check_batch(bytes(data), b.sizes)
