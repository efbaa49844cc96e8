"""Tests of shmq/message/taghash.py: Java `String.hashCode` and the consume-queue tag code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmq.message.taghash import java_string_hash, tag_hash


def _reference_hash(text: str) -> int:
    """Java's hashCode written from its definition, splitting non-BMP characters by hand."""
    h = 0
    for char in text:
        code = ord(char)
        if code < 0x10000:
            units = [code]
        else:
            code -= 0x10000
            units = [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
        for unit in units:
            h = (31 * h + unit) % (1 << 32)
    return h - (1 << 32) if h >= 1 << 31 else h


# (text, Java's "text".hashCode()); the values were checked against the JVM's definition.
KNOWN = [
    ("A", 65),  # spec §9
    ("TagA", 2598919),  # spec §9
    ("hello", 99162322),
    ("Aa", 2112),
    ("BB", 2112),  # a classic collision with "Aa"
    ("polygenelubricants", -2147483648),  # Integer.MIN_VALUE
    ("中文", 646394),  # BMP: one code unit per character
    ("\U0001f600", 1772899),  # non-BMP: 0xD83D * 31 + 0xDE00
    ("\ud800", 0xD800),  # a lone surrogate (from JSON) hashes as its code unit
]


@pytest.mark.parametrize(("text", "expected"), KNOWN)
def test_known_java_hashes(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


@pytest.mark.parametrize(("text", "expected"), KNOWN)
def test_tag_hash_is_java_hash_of_tags(text: str, expected: int) -> None:
    assert tag_hash(text) == expected


def test_non_bmp_char_hashes_as_its_two_surrogates() -> None:
    assert java_string_hash("\U0001f600") == java_string_hash("\ud83d\ude00") == 1772899
    assert java_string_hash("\U0001f600") == 31 * 0xD83D + 0xDE00


@pytest.mark.parametrize("tags", [None, ""])
def test_absent_or_empty_tags_hash_to_zero(tags: str | None) -> None:
    assert tag_hash(tags) == 0


@given(st.text())
def test_matches_reference_and_is_signed_32_bit(text: str) -> None:
    value = java_string_hash(text)
    assert value == _reference_hash(text)
    assert -(1 << 31) <= value < 1 << 31
