"""Tests of shmq/protocol/fastjson.py (spec request-codes.md §9.4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmq.protocol import BodyFormatError, loads_fastjson
from shmq.protocol.fastjson import MAX_DEPTH


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{0:"10.0.0.1:10911",1:"10.0.0.2:10911"}', {"0": "10.0.0.1:10911", "1": "10.0.0.2:10911"}),
        ('{"offsetTable":{"T@g":{0:12,1:7}}}', {"offsetTable": {"T@g": {"0": 12, "1": 7}}}),
        ('{"offsetTable":{1:0,2:15,18:3}}', {"offsetTable": {"1": 0, "2": 15, "18": 3}}),
        ("{-1:true, 2.5 : null}", {"-1": True, "2.5": None}),
        ("{ key : [1, {x:2}] }", {"key": [1, {"x": 2}]}),
        ('{"a":"x\x01y"}', {"a": "x\x01y"}),  # raw control character
        ("[]", []),
        ("  {}  ", {}),
        ('{"n":-0.5e3,"b":false,"s":"\\u00e9"}', {"n": -500.0, "b": False, "s": "é"}),
    ],
)
def test_unquoted_keys_and_standard_json(text: str, value: Any) -> None:
    assert loads_fastjson(text) == value
    assert loads_fastjson(text.encode()) == value


def test_object_literal_keys_become_their_canonical_json_text() -> None:
    text = (
        '{"offsetTable":{{"topic":"T","queueId":0,"brokerName":"b"}:123,'
        '{"brokerName":"b","queueId":1,"topic":"T"}:456}}'
    )
    table = loads_fastjson(text)["offsetTable"]
    assert table == {
        '{"brokerName":"b","queueId":0,"topic":"T"}': 123,
        '{"brokerName":"b","queueId":1,"topic":"T"}': 456,
    }
    assert json.loads(next(iter(table))) == {"brokerName": "b", "queueId": 0, "topic": "T"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "{0:}",
        "{0 1}",
        '{"a":1,}x',
        "{:1}",
        "[1 2]",
        "{a:b}",
        '{"a":"unterminated}',
        "{1:2} extra",
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + " x",
        "[" * 100_000,
        "{0:" + "9" * 5000 + "}",
    ],
)
def test_garbage_raises_body_format_error(text: str) -> None:
    with pytest.raises(BodyFormatError):
        loads_fastjson(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_standard_json_reads_as_json_does(value: Any) -> None:
    assert loads_fastjson(json.dumps(value)) == value


def _fastjson_text(value: Any) -> str:
    """Write `value` with fastjson's unquoted integer keys wherever a key is an integer."""
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            written = key if key.lstrip("-").isdigit() and key.isascii() else json.dumps(key)
            parts.append(f"{written}:{_fastjson_text(item)}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_fastjson_text(item) for item in value) + "]"
    return json.dumps(value)


@given(
    st.recursive(
        st.integers() | st.text(max_size=5),
        lambda children: (
            st.dictionaries(st.integers(-5, 1000).map(str), children, max_size=4)
            | st.lists(children, max_size=3)
        ),
        max_leaves=15,
    )
)
def test_unquoted_integer_keys_read_as_their_quoted_form(value: Any) -> None:
    assert loads_fastjson(_fastjson_text(value)) == value


@given(st.text(max_size=100))
def test_any_text_gives_a_value_or_body_format_error(text: str) -> None:
    try:
        loads_fastjson(text)
    except BodyFormatError:
        pass
