"""Tests of shmq/message/record.py: the stored-record codec (spec §2, §3, §7)."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import mmap
import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmq.message import layout
from shmq.message import record as record_module
from shmq.message.crc import body_crc
from shmq.message.errors import (
    BodyTooLarge,
    CorruptRecord,
    InvalidAddress,
    InvalidProperty,
    InvalidRecordField,
    InvalidTopic,
    MessageError,
    PropertiesTooLarge,
    TopicTooLong,
    TruncatedRecord,
)
from shmq.message.msgid import unpack_host
from shmq.message.properties import encode_properties
from shmq.message.record import (
    PulledFields,
    StoredMessage,
    decode_record,
    encode_record,
    encode_record_into,
    iter_pulled_fields,
    iter_records,
)

# --- known records: one table for encoding and decoding ------------------------------------

GOLDEN_V4_MESSAGE = StoredMessage(
    total_size=115,
    magic=layout.MESSAGE_MAGIC,
    body_crc=0x77D18982,
    queue_id=3,
    flag=7,
    queue_offset=42,
    phys_offset=4096,
    sysflag=0,
    born_timestamp_ms=1_700_000_000_000,
    born_host="192.168.0.10",
    born_port=54321,
    store_timestamp_ms=1_700_000_000_123,
    store_host="10.1.2.3",
    store_port=10911,
    reconsume_times=1,
    prepared_tx_offset=0,
    body=b"Hello",
    topic="TopicTest",
    properties={"TAGS": "TagA"},
)
# Written field by field from the spec §2 table, independently of layout.py.
GOLDEN_V4_BYTES = bytes.fromhex(
    "00000073"  # TOTALSIZE 115 = 91 + 5 + 9 + 10
    "DAA320A7"  # MAGICCODE
    "77D18982"  # BODYCRC: zlib.crc32(b"Hello") & 0x7FFFFFFF
    "00000003"  # QUEUEID
    "00000007"  # FLAG
    "000000000000002A"  # QUEUEOFFSET
    "0000000000001000"  # PHYSICALOFFSET
    "00000000"  # SYSFLAG
    "0000018BCFE56800"  # BORNTIMESTAMP 1700000000000
    "C0A8000A"  # BORNHOST address 192.168.0.10
    "0000D431"  # BORNHOST port 54321
    "0000018BCFE5687B"  # STORETIMESTAMP 1700000000123
    "0A010203"  # STOREHOSTADDRESS address 10.1.2.3
    "00002A9F"  # STOREHOSTADDRESS port 10911
    "00000001"  # RECONSUMETIMES
    "0000000000000000"  # PREPARED TRANSACTION OFFSET
    "00000005"  # BODYLENGTH
    "48656C6C6F"  # BODY "Hello"
    "09"  # TOPICLENGTH
    "546F70696354657374"  # TOPIC "TopicTest"
    "000A"  # PROPERTIESLENGTH
    "54414753015461674102"  # PROPERTIES "TAGS\x01TagA\x02"
)

#: TOPICLENGTH of GOLDEN_V4 follows its 5-byte body.
GOLDEN_V4_TOPIC_LENGTH_OFFSET = layout.IPV4_BODY_OFFSET + len(GOLDEN_V4_MESSAGE.body)

GOLDEN_V6_MESSAGE = StoredMessage(
    total_size=116,
    magic=layout.MESSAGE_MAGIC,
    body_crc=0,
    queue_id=0,
    flag=0,
    queue_offset=0,
    phys_offset=0,
    sysflag=0x31,  # COMPRESSED | BORNHOST_V6 | STOREHOSTADDRESS_V6
    born_timestamp_ms=0,
    born_host="2001:db8::1",
    born_port=1,
    store_timestamp_ms=0,
    store_host="::1",
    store_port=10911,
    reconsume_times=0,
    prepared_tx_offset=0,
    body=b"",
    topic="T",
    properties={},
)
GOLDEN_V6_BYTES = bytes.fromhex(
    "00000074"  # TOTALSIZE 116 = 91 + 2 * 12 + 0 + 1 + 0
    "DAA320A7"  # MAGICCODE
    "00000000"  # BODYCRC of the empty body
    "00000000"  # QUEUEID
    "00000000"  # FLAG
    "0000000000000000"  # QUEUEOFFSET
    "0000000000000000"  # PHYSICALOFFSET
    "00000031"  # SYSFLAG
    "0000000000000000"  # BORNTIMESTAMP
    "20010DB8000000000000000000000001"  # BORNHOST address 2001:db8::1
    "00000001"  # BORNHOST port 1
    "0000000000000000"  # STORETIMESTAMP
    "00000000000000000000000000000001"  # STOREHOSTADDRESS address ::1
    "00002A9F"  # STOREHOSTADDRESS port 10911
    "00000000"  # RECONSUMETIMES
    "0000000000000000"  # PREPARED TRANSACTION OFFSET
    "00000000"  # BODYLENGTH (no body)
    "01"  # TOPICLENGTH
    "54"  # TOPIC "T"
    "0000"  # PROPERTIESLENGTH (no properties)
)

GOLDEN = [(GOLDEN_V4_MESSAGE, GOLDEN_V4_BYTES), (GOLDEN_V6_MESSAGE, GOLDEN_V6_BYTES)]
GOLDEN_IDS = ["ipv4", "ipv6"]


def encode_args(message: StoredMessage) -> dict[str, Any]:
    """encode_record keyword arguments that produce `message`."""
    args = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    for computed in ("total_size", "magic", "body_crc"):
        del args[computed]
    return args


def make_record(**overrides: Any) -> bytes:
    return encode_record(**{**encode_args(GOLDEN_V4_MESSAGE), **overrides})


@pytest.mark.parametrize(("message", "data"), GOLDEN, ids=GOLDEN_IDS)
def test_encode_known_record(message: StoredMessage, data: bytes) -> None:
    assert encode_record(**encode_args(message)) == data


@pytest.mark.parametrize(("message", "data"), GOLDEN, ids=GOLDEN_IDS)
def test_decode_known_record_all_at_once(message: StoredMessage, data: bytes) -> None:
    assert decode_record(data, check_crc=True) == message


@pytest.mark.parametrize(("message", "data"), GOLDEN, ids=GOLDEN_IDS)
def test_decode_known_record_byte_by_byte_needs_more_until_the_last(
    message: StoredMessage, data: bytes
) -> None:
    for end in range(len(data)):
        with pytest.raises(TruncatedRecord) as info:
            decode_record(data[:end])
        assert info.value.offset == 0
        assert info.value.actual == end
    assert decode_record(data) == message


@pytest.mark.parametrize(("message", "data"), GOLDEN, ids=GOLDEN_IDS)
def test_decode_known_record_followed_by_extra_bytes(message: StoredMessage, data: bytes) -> None:
    extra = b"\xde\xad\xbe\xef" * 10
    buf = bytearray(data + extra)
    assert decode_record(buf) == message
    assert buf[len(data) :] == extra  # left untouched; the next record starts at total_size


@pytest.mark.parametrize(("message", "data"), GOLDEN, ids=GOLDEN_IDS)
def test_decode_at_an_offset_and_from_every_buffer_kind(
    message: StoredMessage, data: bytes
) -> None:
    padded = b"\x00" * 13 + data
    assert decode_record(padded, 13) == message
    assert decode_record(memoryview(padded), 13) == message
    assert decode_record(bytearray(padded), 13) == message
    mm = mmap.mmap(-1, len(padded))
    try:
        mm[:] = padded
        assert decode_record(mm, 13) == message
        with contextlib.suppress(CorruptRecord):
            decode_record(mm, 0)
    finally:
        mm.close()  # raises BufferError if the decoder left a view of the mapping behind


def test_layout_offsets_point_at_the_golden_fields() -> None:
    data = GOLDEN_V4_BYTES
    assert struct.unpack_from(">i", data, layout.QUEUE_ID_OFFSET)[0] == 3
    assert struct.unpack_from(">i", data, layout.FLAG_OFFSET)[0] == 7
    assert struct.unpack_from(">q", data, layout.QUEUE_OFFSET_OFFSET)[0] == 42
    assert struct.unpack_from(">q", data, layout.PHYSICAL_OFFSET_OFFSET)[0] == 4096
    assert struct.unpack_from(">q", data, layout.STORE_TIMESTAMP_OFFSET_V4)[0] == 1_700_000_000_123
    assert data[layout.STORE_HOST_OFFSET_V4 : layout.STORE_HOST_OFFSET_V4 + 4] == bytes(
        [10, 1, 2, 3]
    )
    assert struct.unpack_from(">i", data, layout.RECONSUME_TIMES_OFFSET_V4)[0] == 1
    assert struct.unpack_from(">i", data, layout.BODY_LENGTH_OFFSET_V4)[0] == 5
    assert data[layout.IPV4_BODY_OFFSET : layout.IPV4_BODY_OFFSET + 5] == b"Hello"


# --- convenience properties ------------------------------------------------------------------


def test_message_convenience_properties() -> None:
    message = decode_record(
        make_record(
            properties={"TAGS": "t1", "KEYS": " k1  k2 ", "UNIQ_KEY": "ABC"},
            store_host="127.0.0.1",
            store_port=10911,
            phys_offset=0,
            sysflag=layout.TRANSACTION_PREPARED_TYPE,
        )
    )
    assert message.tags == "t1"
    assert message.keys == ["k1", "k2"]
    assert message.uniq_key == "ABC"
    assert message.msg_id == "7F00000100002A9F0000000000000000"
    assert message.client_msg_id == "ABC"
    assert message.transaction_type == layout.TRANSACTION_PREPARED_TYPE


def test_message_without_tags_keys_or_uniq_key() -> None:
    message = decode_record(make_record(properties={}))
    assert message.tags is None
    assert message.keys == []
    assert message.uniq_key is None
    assert message.client_msg_id == message.msg_id == "0A01020300002A9F0000000000001000"


def test_stored_message_is_frozen_and_hashable() -> None:
    message = decode_record(GOLDEN_V4_BYTES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.queue_id = 4  # type: ignore[misc]
    assert hash(message) == hash(decode_record(GOLDEN_V4_BYTES))


# --- encoding rules ----------------------------------------------------------------------------


def test_ipv6_flags_follow_the_hosts_not_the_caller() -> None:
    v4 = decode_record(make_record(sysflag=0x31))
    assert v4.sysflag == 0x01
    mixed = decode_record(make_record(born_host="2001:db8::2", sysflag=0x20))
    assert mixed.sysflag == layout.BORNHOST_V6_FLAG
    assert mixed.total_size == len(GOLDEN_V4_BYTES) + 12


def test_ipv4_mapped_hosts_are_stored_as_ipv4() -> None:
    data = make_record(born_host="::ffff:192.168.0.10", store_host="::ffff:10.1.2.3")
    assert data == GOLDEN_V4_BYTES


def test_topic_length_limit() -> None:
    assert decode_record(make_record(topic="t" * 127)).topic == "t" * 127
    with pytest.raises(TopicTooLong) as info:
        make_record(topic="t" * 128)
    assert (info.value.size, info.value.limit) == (128, 127)
    with pytest.raises(TopicTooLong) as info:
        make_record(topic="é" * 64)  # 64 characters, 128 UTF-8 bytes
    assert info.value.size == 128


def test_topic_without_utf8_form_raises() -> None:
    with pytest.raises(InvalidTopic):
        make_record(topic="bad\ud800")


def test_properties_limit() -> None:
    with pytest.raises(PropertiesTooLarge):
        make_record(properties={"k": "v" * 32765})
    with pytest.raises(PropertiesTooLarge):
        make_record(properties=b"x" * 32768)
    with pytest.raises(InvalidProperty):
        make_record(properties={"k": "a\x02b"})
    raw = b"k\x01" + b"v" * 32765
    assert decode_record(make_record(properties=raw)).properties == {"k": "v" * 32765}


def test_body_limit() -> None:
    with pytest.raises(BodyTooLarge) as info:
        make_record(body=b"x" * 11, max_body_bytes=10)
    assert (info.value.size, info.value.limit) == (11, 10)
    assert decode_record(make_record(body=b"x" * 10, max_body_bytes=10)).body == b"x" * 10


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("queue_id", 1 << 31),
        ("flag", -(1 << 31) - 1),
        ("queue_offset", 1 << 63),
        ("sysflag", 1 << 40),
        ("store_timestamp_ms", 1 << 64),
        ("prepared_tx_offset", -(1 << 63) - 1),
    ],
)
def test_field_out_of_range_raises_naming_it(name: str, value: int) -> None:
    with pytest.raises(InvalidRecordField) as info:
        make_record(**{name: value})
    assert (info.value.field, info.value.value) == (name, value)


def test_bad_hosts_raise() -> None:
    with pytest.raises(InvalidAddress):
        make_record(born_host="client.example")
    with pytest.raises(InvalidAddress):
        make_record(store_port=70000)


def test_only_message_or_pending_magic_is_written() -> None:
    with pytest.raises(InvalidRecordField):
        make_record(magic=layout.BLANK_MAGIC)
    with pytest.raises(InvalidRecordField):
        make_record(magic=layout.MESSAGE_MAGIC_V2)


def test_encode_into_then_publish() -> None:
    buf = bytearray(b"\xaa" * 300)
    size = encode_record_into(buf, 7, **encode_args(GOLDEN_V4_MESSAGE), magic=layout.PENDING_MAGIC)
    assert size == len(GOLDEN_V4_BYTES)
    assert buf[:7] == b"\xaa" * 7 and buf[7 + size :] == b"\xaa" * (300 - 7 - size)
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf, 7)
    assert info.value.field == "magic"
    struct.pack_into(">i", buf, 7 + layout.MAGIC_OFFSET, layout.MESSAGE_MAGIC)
    assert buf[7 : 7 + size] == GOLDEN_V4_BYTES


def test_encode_into_mmap_and_memoryview() -> None:
    mm = mmap.mmap(-1, 4096)
    try:
        size = encode_record_into(mm, 100, **encode_args(GOLDEN_V6_MESSAGE))
        assert mm[100 : 100 + size] == GOLDEN_V6_BYTES
    finally:
        mm.close()
    buf = bytearray(200)
    view = memoryview(buf)
    encode_record_into(view, 0, **encode_args(GOLDEN_V4_MESSAGE))
    view.release()
    assert bytes(buf[: len(GOLDEN_V4_BYTES)]) == GOLDEN_V4_BYTES


def test_encode_into_failure_writes_nothing() -> None:
    buf = bytearray(b"\xaa" * 200)
    with pytest.raises(MessageError):
        encode_record_into(buf, 100, **encode_args(GOLDEN_V4_MESSAGE))  # needs 115 bytes
    with pytest.raises(TopicTooLong):
        encode_record_into(buf, 0, **{**encode_args(GOLDEN_V4_MESSAGE), "topic": "t" * 200})
    with pytest.raises(MessageError):
        encode_record_into(buf, -1, **encode_args(GOLDEN_V4_MESSAGE))
    assert buf == bytearray(b"\xaa" * 200)


# --- round trips ---------------------------------------------------------------------------

_prop_text = st.text(st.characters(codec="utf-8", exclude_characters="\x01\x02"), max_size=12)
addresses = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),
)


def _ints(bits: int) -> st.SearchStrategy[int]:
    return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


record_args = st.fixed_dictionaries(
    {
        "topic": st.text(max_size=31),  # at most 124 UTF-8 bytes
        "body": st.binary(max_size=2048),
        "properties": st.dictionaries(_prop_text.filter(bool), _prop_text, max_size=6),
        "queue_id": _ints(32),
        "flag": _ints(32),
        "queue_offset": _ints(64),
        "phys_offset": _ints(64),
        "sysflag": _ints(32),
        "born_timestamp_ms": _ints(64),
        "born_host": addresses.map(str),
        "born_port": st.integers(0, 65535),
        "store_timestamp_ms": _ints(64),
        "store_host": addresses.map(str),
        "store_port": st.integers(0, 65535),
        "reconsume_times": _ints(32),
        "prepared_tx_offset": _ints(64),
    }
)


def _stored(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def assert_round_trip(args: dict[str, Any], message: StoredMessage, data: bytes) -> None:
    """`message`, decoded from `data`, holds what `args` asked encode_record to store."""
    v6_bits = 0
    if _stored(args["born_host"]).version == 6:
        v6_bits |= layout.BORNHOST_V6_FLAG
    if _stored(args["store_host"]).version == 6:
        v6_bits |= layout.STOREHOSTADDRESS_V6_FLAG
    assert message.sysflag == (args["sysflag"] & ~0x30) | v6_bits
    props = encode_properties(args["properties"])
    assert (
        message.total_size
        == len(data)
        == layout.record_size(len(args["body"]), len(args["topic"].encode()), len(props), v6_bits)
    )
    assert message.magic == layout.MESSAGE_MAGIC
    assert message.body_crc == body_crc(args["body"])
    assert ipaddress.ip_address(message.born_host) == _stored(args["born_host"])
    assert ipaddress.ip_address(message.store_host) == _stored(args["store_host"])
    unchanged = set(args) - {"sysflag", "born_host", "store_host"}
    assert {name: getattr(message, name) for name in unchanged} == {
        name: args[name] for name in unchanged
    }


@given(record_args)
def test_record_round_trip(args: dict[str, Any]) -> None:
    data = encode_record(**args)
    message = decode_record(data, check_crc=True)
    assert_round_trip(args, message, data)
    assert encode_record(**encode_args(message)) == data  # decoding lost nothing


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    record_args,
    st.sampled_from([layout.DEFAULT_MAX_BODY_BYTES, layout.DEFAULT_MAX_BODY_BYTES - 1]),
    st.integers(0, 2**32 - 1),
)
def test_record_round_trip_4_mib_body(args: dict[str, Any], size: int, seed: int) -> None:
    args["body"] = random.Random(seed).randbytes(size)
    data = encode_record(**args)
    message = decode_record(data, check_crc=True)
    assert_round_trip(args, message, data)


def test_empty_body_topic_and_properties() -> None:
    data = make_record(body=b"", topic="", properties={})
    assert len(data) == layout.MIN_RECORD_BYTES == 91
    message = decode_record(data, check_crc=True)
    assert (message.body, message.topic, message.properties) == (b"", "", {})


def test_unicode_topic_and_properties() -> None:
    props = {"ключ": "значение", "emoji": "\U0001f600", "TAGS": "标签"}
    message = decode_record(make_record(topic="主题-\U0001f680", properties=props))
    assert message.topic == "主题-\U0001f680"
    assert message.properties == props
    assert message.tags == "标签"


# --- iter_records ----------------------------------------------------------------------------


def test_iter_records_decodes_a_pull_body() -> None:
    records = [make_record(queue_offset=i, body=bytes([i]) * i) for i in range(5)]
    records.append(GOLDEN_V6_BYTES)
    messages = list(iter_records(b"".join(records), check_crc=True))
    assert [m.queue_offset for m in messages] == [0, 1, 2, 3, 4, 0]
    assert [m.total_size for m in messages] == [len(r) for r in records]
    assert messages[-1] == GOLDEN_V6_MESSAGE
    assert list(iter_records(b"")) == []


def test_iter_records_yields_whole_records_then_raises_on_a_cut_one() -> None:
    body = GOLDEN_V4_BYTES * 2 + GOLDEN_V4_BYTES[:50]
    seen: list[StoredMessage] = []
    with pytest.raises(TruncatedRecord) as info:
        seen.extend(iter_records(body))
    assert seen == [GOLDEN_V4_MESSAGE, GOLDEN_V4_MESSAGE]
    assert info.value.offset == 2 * len(GOLDEN_V4_BYTES)


# --- corruption ------------------------------------------------------------------------------


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytearray:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, value)
    return buf


def test_flipped_crc_bit_detected_only_with_check_crc() -> None:
    buf = bytearray(GOLDEN_V4_BYTES)
    buf[layout.BODY_CRC_OFFSET + 3] ^= 0x01
    assert decode_record(buf).body == b"Hello"  # pulls do not check
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf, check_crc=True)
    assert "crc" in info.value.field
    assert info.value.expected == 0x77D18983
    assert info.value.actual == 0x77D18982


def test_flipped_body_bit_detected_with_check_crc() -> None:
    buf = bytearray(GOLDEN_V4_BYTES)
    buf[layout.IPV4_BODY_OFFSET] ^= 0x80
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf, check_crc=True)
    assert info.value.actual == body_crc(b"\xc8ello")


@pytest.mark.parametrize("delta", [1, -1, 12])
def test_wrong_total_size_detected(delta: int) -> None:
    size = len(GOLDEN_V4_BYTES)
    buf = _patched(GOLDEN_V4_BYTES + bytes(16), layout.TOTAL_SIZE_OFFSET, ">i", size + delta)
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf)
    assert not isinstance(info.value, TruncatedRecord)
    assert "total size" in info.value.field
    assert info.value.actual == size + delta


@pytest.mark.parametrize("total", [-1, 0, 8, 90])
def test_total_size_below_minimum_detected(total: int) -> None:
    buf = _patched(GOLDEN_V4_BYTES, layout.TOTAL_SIZE_OFFSET, ">i", total)
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf)
    assert not isinstance(info.value, TruncatedRecord)
    assert info.value.expected == ">= 91"
    assert info.value.actual == total


def test_total_size_beyond_buffer_is_truncation() -> None:
    buf = _patched(GOLDEN_V4_BYTES, layout.TOTAL_SIZE_OFFSET, ">i", 1 << 30)
    with pytest.raises(TruncatedRecord) as info:
        decode_record(buf)
    assert (info.value.expected, info.value.actual) == (1 << 30, len(GOLDEN_V4_BYTES))


@pytest.mark.parametrize(
    "magic", [0, layout.BLANK_MAGIC, layout.PENDING_MAGIC, layout.MESSAGE_MAGIC_V2, -1]
)
def test_wrong_magic_detected(magic: int) -> None:
    buf = _patched(GOLDEN_V4_BYTES, layout.MAGIC_OFFSET, ">i", magic)
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf)
    assert info.value.field == "magic"
    assert f"{magic & 0xFFFFFFFF:08X}" in str(info.value.actual)


def test_sysflag_claiming_ipv6_host_detected() -> None:
    buf = _patched(GOLDEN_V4_BYTES, layout.SYSFLAG_OFFSET, ">i", layout.BORNHOST_V6_FLAG)
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf)
    assert not isinstance(info.value, TruncatedRecord)


@pytest.mark.parametrize("body_len", [-1, 6, 1 << 30])
def test_bad_body_length_detected(body_len: int) -> None:
    buf = _patched(GOLDEN_V4_BYTES, layout.BODY_LENGTH_OFFSET_V4, ">i", body_len)
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf)
    assert not isinstance(info.value, TruncatedRecord)


@pytest.mark.parametrize("topic_len", [-1, 8, 10, 127])
def test_bad_topic_length_detected(topic_len: int) -> None:
    buf = _patched(GOLDEN_V4_BYTES, GOLDEN_V4_TOPIC_LENGTH_OFFSET, ">b", topic_len)
    with pytest.raises(CorruptRecord):
        decode_record(buf)


def test_topic_that_is_not_utf8_detected() -> None:
    buf = bytearray(GOLDEN_V4_BYTES)
    buf[GOLDEN_V4_TOPIC_LENGTH_OFFSET + 1] = 0xFF  # first topic byte
    with pytest.raises(CorruptRecord) as info:
        decode_record(buf)
    assert info.value.field == "topic"


def test_negative_offset_is_rejected() -> None:
    with pytest.raises(CorruptRecord):
        decode_record(GOLDEN_V4_BYTES, -1)


def test_version_2_record_read_only_when_accepted() -> None:
    # v2: the same record with MESSAGE_MAGIC_V2 and a 2-byte TOPICLENGTH.
    topic_at = GOLDEN_V4_TOPIC_LENGTH_OFFSET
    v2 = bytearray(GOLDEN_V4_BYTES[:topic_at] + b"\x00" + GOLDEN_V4_BYTES[topic_at:])
    struct.pack_into(">ii", v2, 0, len(v2), layout.MESSAGE_MAGIC_V2)
    with pytest.raises(CorruptRecord):
        decode_record(v2)
    message = decode_record(v2, check_crc=True, accept_v2=True)
    assert message == dataclasses.replace(
        GOLDEN_V4_MESSAGE, total_size=len(v2), magic=layout.MESSAGE_MAGIC_V2
    )


# --- any bytes: a StoredMessage or a MessageError ----------------------------------------------


def _decode_or_corrupt(data: bytes, check_crc: bool) -> StoredMessage | None:
    try:
        message = decode_record(data, check_crc=check_crc)
    except CorruptRecord:
        return None
    assert message.total_size <= len(data)
    if check_crc:
        assert body_crc(message.body) == message.body_crc
    return message


@given(st.binary(max_size=400), st.booleans())
def test_random_bytes_decode_or_raise_corrupt_record(data: bytes, check_crc: bool) -> None:
    _decode_or_corrupt(data, check_crc)


@given(st.binary(min_size=83, max_size=300), st.integers(0, 0x3F), st.booleans())
def test_random_bytes_behind_valid_size_and_magic(data: bytes, sysflag: int, crc: bool) -> None:
    buf = bytearray(struct.pack(">ii", len(data) + 8, layout.MESSAGE_MAGIC) + data)
    struct.pack_into(">i", buf, layout.SYSFLAG_OFFSET, sysflag)
    _decode_or_corrupt(bytes(buf), crc)


@given(
    st.sampled_from([GOLDEN_V4_BYTES, GOLDEN_V6_BYTES]),
    st.lists(st.tuples(st.integers(0, 115), st.integers(0, 255)), min_size=1, max_size=4),
    st.booleans(),
)
def test_mutated_records_decode_or_raise_corrupt_record(
    data: bytes, mutations: list[tuple[int, int]], check_crc: bool
) -> None:
    buf = bytearray(data)
    for index, value in mutations:
        buf[index % len(buf)] = value
    _decode_or_corrupt(bytes(buf), check_crc)


# --- iter_pulled_fields: what iter_records says, in a consumer's shape -------------------------


def _stored_view(message: StoredMessage) -> tuple[Any, ...]:
    """The fields iter_pulled_fields yields, hosts as (text, port), properties in order."""
    m = message
    return (m.flag, m.queue_offset, m.phys_offset, m.sysflag, m.born_timestamp_ms, m.born_host,
            m.born_port, m.store_timestamp_ms, m.store_host, m.store_port, m.reconsume_times,
            m.body, m.topic, list(m.properties.items()))


def _pulled_view(fields: PulledFields) -> tuple[Any, ...]:
    (flag, queue_offset, phys_offset, sysflag, born_ms, born, store_ms, store, reconsume, body,
     topic, properties) = fields
    assert type(body) is bytes and type(born) is bytes and type(store) is bytes
    return (flag, queue_offset, phys_offset, sysflag, born_ms, *unpack_host(born), store_ms,
            *unpack_host(store), reconsume, body, topic, list(properties.items()))


def _walk(walk: Any, view: Any, data: Any) -> tuple[list[Any], tuple[type, str] | None]:
    """What `walk(data)` yields (through `view`) and the error it ends with, if any."""
    seen: list[Any] = []
    try:
        for item in walk(data):
            seen.append(view(item))
    except CorruptRecord as err:
        return seen, (type(err), str(err))
    return seen, None


def assert_pulled_like_iter_records(data: Any) -> None:
    assert _walk(iter_pulled_fields, _pulled_view, data) == _walk(iter_records, _stored_view, data)


@given(st.lists(record_args, min_size=1, max_size=4), st.booleans())
def test_pulled_fields_are_iter_records_fields(records: list[dict[str, Any]], same: bool) -> None:
    if same:  # one topic: the records after the first take the fast path
        records = [{**args, "topic": records[0]["topic"]} for args in records]
    assert_pulled_like_iter_records(b"".join(encode_record(**args) for args in records))


def test_pulled_fields_of_every_record_kind_and_buffer_kind() -> None:
    records = [make_record(topic="T", queue_offset=i, properties={"K": str(i) * i})
               for i in range(3)]
    records += [GOLDEN_V6_BYTES, make_record(topic="T"), make_record(topic="Ü"),
                make_record(topic="Ü", born_host="::1"), make_record(topic="Ü", body=b""),
                make_record(topic="", properties=b"a\x01b\x02\x02c\x01\x01d\x01\xff")]
    data = b"".join(records)
    for buf in (data, bytearray(data), memoryview(data)):
        assert_pulled_like_iter_records(buf)
    assert len(list(iter_pulled_fields(data))) == len(records)
    assert list(iter_pulled_fields(b"")) == []


def test_valid_records_of_every_host_kind_are_read_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    # decode_record is only there to say what is wrong: a pull of IPv6 records (or of several
    # topics) must not pay for a StoredMessage per record.
    hosts = ["10.0.0.1", "::1"]
    data = b"".join(make_record(topic=topic, born_host=born, store_host=store)
                    for topic in ("T", "Ü", "T") for born in hosts for store in hosts)
    expected = _walk(iter_records, _stored_view, data)

    def refuse(*args: Any) -> Any:
        raise AssertionError("decode_record was needed")

    monkeypatch.setattr(record_module, "_pulled_fields_any", refuse)
    assert _walk(iter_pulled_fields, _pulled_view, data) == expected


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 3 * 160), st.integers(0, 255)), min_size=1, max_size=3),
    st.integers(0, 3 * 160),
)
def test_corrupt_pull_bodies_are_refused_like_iter_records(
    mutations: list[tuple[int, int]], cut: int
) -> None:
    records = [make_record(topic="Topic", queue_offset=i, properties={"TAGS": "A", "K": "v"})
               for i in range(3)]
    buf = bytearray(b"".join(records))
    for index, value in mutations:
        buf[index % len(buf)] = value
    assert_pulled_like_iter_records(bytes(buf))
    assert_pulled_like_iter_records(bytes(buf[:cut]))


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (layout.MAGIC_OFFSET, ">i", layout.BLANK_MAGIC),
        (layout.TOTAL_SIZE_OFFSET, ">i", layout.MIN_RECORD_BYTES - 1),
        (layout.TOTAL_SIZE_OFFSET, ">i", 1 << 20),
        (layout.BODY_LENGTH_OFFSET_V4, ">i", -1),
        (layout.BODY_LENGTH_OFFSET_V4, ">i", 1 << 20),
        (layout.IPV4_BODY_OFFSET + 4, ">b", -1),  # TOPICLENGTH after a 4-byte body
        (layout.IPV4_BODY_OFFSET + 4, ">b", 100),
        (layout.IPV4_BODY_OFFSET + 4 + 1 + 5, ">h", -1),  # PROPERTIESLENGTH after "Topic"
        (layout.IPV4_BODY_OFFSET + 4 + 1 + 5, ">h", 0x7FFF),
        (layout.IPV4_BODY_OFFSET + 4 + 1 + 1, ">b", 0xFF - 256),  # the topic is not UTF-8
        (layout.SYSFLAG_OFFSET, ">i", layout.BORNHOST_V6_FLAG),
    ],
)
def test_each_check_of_a_fast_path_record(offset: int, fmt: str, value: int) -> None:
    record = make_record(topic="Topic", body=b"body", properties={"TAGS": "A"})
    second = _patched(record, offset, fmt, value)
    assert_pulled_like_iter_records(record + bytes(second) + record)
    with pytest.raises(CorruptRecord):
        list(iter_pulled_fields(record + bytes(second)))


def test_a_topic_match_that_overlaps_the_properties_length() -> None:
    # BODYLENGTH at its largest puts the body's end 3 bytes before the record's end, where the
    # properties hold the previous record's TOPICLENGTH and topic: PROPERTIESLENGTH would then
    # start 1 byte before the end of the buffer.
    first = make_record(topic="T", properties=b"")
    second = make_record(topic="T", body=b"ab", properties=b"\x01T\xff")
    second = bytes(_patched(second, layout.BODY_LENGTH_OFFSET_V4, ">i",
                            len(second) - layout.MIN_RECORD_BYTES))
    assert second[-3:-1] == b"\x01T"
    assert_pulled_like_iter_records(first + second)
    with pytest.raises(CorruptRecord, match="topic length"):
        list(iter_pulled_fields(first + second))
