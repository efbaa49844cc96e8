"""Tests of shmq/message/properties.py: the properties string (spec §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmq.message import properties as p
from shmq.message.errors import InvalidProperty, MessageError, PropertiesTooLarge
from shmq.message.properties import (
    append_properties,
    decode_properties,
    encode_properties,
    properties_bytes,
)

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x01\x02"), max_size=20)
property_maps = st.dictionaries(_text.filter(bool), _text, max_size=8)

# (properties, encoded bytes): one table for encoding and decoding.
CASES: list[tuple[dict[str, str], bytes]] = [
    ({}, b""),
    ({"TAGS": "TagA"}, b"TAGS\x01TagA\x02"),
    ({"TAGS": "TagA", "KEYS": "k1 k2"}, b"TAGS\x01TagA\x02KEYS\x01k1 k2\x02"),
    ({"empty": ""}, b"empty\x01\x02"),
    ({"主题": "値 ✓"}, "主题\x01値 ✓\x02".encode()),
]


@pytest.mark.parametrize(("props", "data"), CASES)
def test_encode_known(props: dict[str, str], data: bytes) -> None:
    assert encode_properties(props) == data


@pytest.mark.parametrize(("props", "data"), CASES)
def test_decode_known_with_and_without_trailing_separator(
    props: dict[str, str], data: bytes
) -> None:
    assert decode_properties(data) == props
    assert decode_properties(data.removesuffix(b"\x02")) == props  # Java 4.9.7's form
    assert decode_properties(memoryview(data)) == props
    assert decode_properties(bytearray(data)) == props


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x02\x02a\x011\x02", {"a": "1"}),  # empty items skipped
        (b"noseparator\x02a\x011", {"a": "1"}),  # item without 0x01 skipped
        (b"\x01v\x02a\x011\x02", {"a": "1"}),  # empty name skipped
        (b"a\x011\x02b\x012\x02a\x013\x02", {"a": "3", "b": "2"}),  # last occurrence wins
        (b"k\x01v\x01w\x02", {"k": "v\x01w"}),  # split at the first 0x01 only
        (b"k\x01\xff\xfe\x02", {"k": "\ufffd\ufffd"}),  # invalid UTF-8 replaced, like Java
        (b"\xffk\x01v", {"\ufffdk": "v"}),
        (b"", {}),
        (b"\x02", {}),
    ],
)
def test_decode_is_lenient(data: bytes, expected: dict[str, str]) -> None:
    assert decode_properties(data) == expected


@pytest.mark.parametrize(
    "props",
    [
        {"": "v"},
        {"a\x01b": "v"},
        {"a\x02b": "v"},
        {"k": "v\x01"},
        {"k": "v\x02w"},
        {"k": "\ud800"},
        {"\udfff": "v"},
    ],
)
def test_unrepresentable_property_raises(props: dict[str, str]) -> None:
    with pytest.raises(InvalidProperty) as info:
        encode_properties(props)
    assert info.value.name == next(iter(props))
    assert info.value.response_code == 13  # MESSAGE_ILLEGAL


def test_size_limit_is_32767_bytes() -> None:
    # "k" 0x01 value 0x02 = 3 + len(value) bytes.
    assert len(encode_properties({"k": "v" * (32767 - 3)})) == 32767
    with pytest.raises(PropertiesTooLarge) as info:
        encode_properties({"k": "v" * (32768 - 3)})
    assert (info.value.size, info.value.limit) == (32768, 32767)


def test_size_limit_counts_utf8_bytes() -> None:
    with pytest.raises(PropertiesTooLarge) as info:
        encode_properties({"k": "é" * 16383})  # 3 + 2 * 16383 = 32769 bytes
    assert info.value.size == 32769


@given(property_maps)
def test_round_trip(props: dict[str, str]) -> None:
    data = encode_properties(props)
    assert decode_properties(data) == props
    assert decode_properties(data.removesuffix(b"\x02")) == props
    assert data == b"" or data.endswith(b"\x02")


@given(st.binary(max_size=512))
def test_decode_any_bytes_gives_clean_pairs(data: bytes) -> None:
    props = decode_properties(data)
    for name, value in props.items():
        assert name and "\x01" not in name and "\x02" not in name
        assert "\x02" not in value
    # What was decoded can be encoded again unless a value kept a 0x01 (Java allows that).
    if not any("\x01" in value for value in props.values()):
        assert decode_properties(encode_properties(props)) == props


def test_append_properties_inserts_separator_when_missing() -> None:
    assert append_properties(b"a\x011", {"CLUSTER": "c"}) == b"a\x011\x02CLUSTER\x01c\x02"
    assert append_properties(b"a\x011\x02", {"CLUSTER": "c"}) == b"a\x011\x02CLUSTER\x01c\x02"
    assert append_properties(b"", {"CLUSTER": "c"}) == b"CLUSTER\x01c\x02"
    assert append_properties(b"a\x011\x02", {}) == b"a\x011\x02"


def test_appended_properties_win_over_entry_properties() -> None:
    raw = append_properties(b"WAIT\x01false\x02TAGS\x01t", {"WAIT": "true"})
    assert decode_properties(raw) == {"WAIT": "true", "TAGS": "t"}


def test_append_properties_checks_the_total_size() -> None:
    raw = encode_properties({"k": "v" * (32767 - 3)})
    with pytest.raises(PropertiesTooLarge):
        append_properties(raw, {"a": "b"})


def test_properties_bytes_passes_encoded_strings_through() -> None:
    assert properties_bytes(b"x\x01y") == b"x\x01y"
    assert properties_bytes(memoryview(b"x\x01y")) == b"x\x01y"
    assert properties_bytes({"x": "y"}) == b"x\x01y\x02"
    with pytest.raises(PropertiesTooLarge):
        properties_bytes(b"x" * 32768)


def test_errors_are_message_errors() -> None:
    assert issubclass(InvalidProperty, MessageError)
    assert issubclass(PropertiesTooLarge, MessageError)


@pytest.mark.parametrize(
    ("constant", "spelling"),
    [
        (p.PROPERTY_KEYS, "KEYS"),
        (p.PROPERTY_TAGS, "TAGS"),
        (p.PROPERTY_UNIQ_KEY, "UNIQ_KEY"),
        (p.PROPERTY_WAIT, "WAIT"),
        (p.PROPERTY_DELAY, "DELAY"),
        (p.PROPERTY_RETRY_TOPIC, "RETRY_TOPIC"),
        (p.PROPERTY_REAL_TOPIC, "REAL_TOPIC"),
        (p.PROPERTY_REAL_QID, "REAL_QID"),
        (p.PROPERTY_TRAN_MSG, "TRAN_MSG"),
        (p.PROPERTY_PGROUP, "PGROUP"),
        (p.PROPERTY_MIN_OFFSET, "MIN_OFFSET"),
        (p.PROPERTY_MAX_OFFSET, "MAX_OFFSET"),
        (p.PROPERTY_ORIGIN_MESSAGE_ID, "ORIGIN_MESSAGE_ID"),
        (p.PROPERTY_RECONSUME_TIME, "RECONSUME_TIME"),
        (p.PROPERTY_MAX_RECONSUME_TIMES, "MAX_RECONSUME_TIMES"),
        (p.PROPERTY_CLUSTER, "CLUSTER"),
        (p.PROPERTY_TRANSACTION_ID, "__transactionId__"),
        (p.PROPERTY_TRAN_PREPARED_QUEUE_OFFSET, "TRAN_PREPARED_QUEUE_OFFSET"),
        (p.PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS, "CHECK_IMMUNITY_TIME_IN_SECONDS"),
        (p.PROPERTY_SHARDING_KEY, "__SHARDINGKEY"),
        (p.PROPERTY_ONS_SHARDING_KEY, "__SHARDING_KEY"),
        (p.PROPERTY_ONS_START_DELIVER_TIME, "__STARTDELIVERTIME"),
    ],
)
def test_well_known_key_spelling(constant: str, spelling: str) -> None:
    assert constant == spelling
