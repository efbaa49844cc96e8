"""Tests of shmq/client/received.py's decoding of pull responses: whatever the records, the
messages (or the error) are those of the straightforward path, `received_message` applied to
each `decode_record`, after every record was decoded."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmq.client import received
from shmq.client.errors import MalformedResponse
from shmq.client.received import ReceivedMessage, decode_pull_response, received_message
from shmq.message.errors import MessageError
from shmq.message.layout import (
    BORN_HOST_OFFSET,
    COMPRESSED_FLAG,
    COMPRESSION_LZ4,
    COMPRESSION_ZLIB,
    IPV4_ADDRESS_BYTES,
    MULTI_TAGS_FLAG,
    STORE_HOST_OFFSET_V4,
    TRANSACTION_COMMIT_TYPE,
)
from shmq.message.record import encode_record, iter_records
from shmq.protocol import MessageQueue, ResponseCode

QUEUE = MessageQueue("T", "broker-a", 3)
RETRY_QUEUE = MessageQueue("%RETRY%G", "broker-a", 0)
HEADER = {"suggestWhichBrokerId": "1", "nextBeginOffset": "90", "minOffset": "7",
          "maxOffset": "12345"}
OFFSETS = {"MIN_OFFSET": "7", "MAX_OFFSET": "12345"}


def straightforward(body: bytes, queue: MessageQueue, tags: frozenset[str]
                    ) -> list[ReceivedMessage]:
    """What decode_pull_response must return for `body`, or raise: every record decoded, then
    each kept one turned into a message."""
    try:
        records = list(iter_records(body))
    except MessageError as err:
        raise MalformedResponse(f"pull body of {queue}: {err}") from err
    return [received_message(r, queue, OFFSETS) for r in records if not tags or r.tags in tags]


def view(message: ReceivedMessage) -> list[Any]:
    """Every field with its type, and the properties in order."""
    values = [getattr(message, f.name) for f in dataclasses.fields(message)]
    return [*((type(v), v) for v in values), list(message.properties.items())]


def outcome(decode: Any, body: bytes, queue: MessageQueue, tags: frozenset[str]) -> Any:
    try:
        return [view(m) for m in decode(body, queue, tags)]
    except MalformedResponse as err:
        return str(err)


def assert_decoded_straightforwardly(body: bytes, queue: MessageQueue = QUEUE,
                                     tags: frozenset[str] = frozenset()) -> Any:
    def decode(body: bytes, queue: MessageQueue, tags: frozenset[str]) -> Any:
        return decode_pull_response(ResponseCode.SUCCESS, HEADER, body, queue, tags).messages

    expected = outcome(straightforward, body, queue, tags)
    assert outcome(decode, body, queue, tags) == expected
    assert outcome(decode, memoryview(body), queue, tags) == expected
    return expected


def record(topic: str = "T", body: bytes = b"body", properties: Mapping[str, str] | bytes = b"",
           **fields: Any) -> bytes:
    args: dict[str, Any] = {"queue_id": 3, "queue_offset": 40, "phys_offset": 1 << 33,
                            "born_host": "10.0.0.7", "born_port": 51234,
                            "store_host": "10.0.0.1", "store_port": 10911,
                            "born_timestamp_ms": 1_700_000_000_000,
                            "store_timestamp_ms": 1_700_000_000_004, **fields}
    return encode_record(topic=topic, body=body, properties=properties, **args)


# --- the fast path is taken and agrees ---------------------------------------------------------


def test_a_typical_pull_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"".join(record(properties={"UNIQ_KEY": f"U{i}", "TAGS": "A", "KEYS": f"k{i} j",
                                       "WAIT": "true", "CLUSTER": "C"},
                           queue_offset=i, phys_offset=1000 * i) for i in range(32))
    expected = assert_decoded_straightforwardly(body)

    def refuse(*args: Any) -> Any:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(received, "_decode_general", refuse)
    result = decode_pull_response(ResponseCode.SUCCESS, HEADER, body, QUEUE)
    assert [view(m) for m in result.messages] == expected
    first = result.messages[0]
    assert (first.msg_id, first.offset_msg_id) == ("U0", "0A00000100002A9F0000000000000000")
    assert (first.born_host, first.store_host) == ("10.0.0.7:51234", "10.0.0.1:10911")
    assert list(first.properties)[-2:] == ["MIN_OFFSET", "MAX_OFFSET"]
    assert result.messages[5].commit_log_offset == 5000 and result.messages[5].keys == ["k5", "j"]


ODD_PROPERTIES = [
    b"",
    b"TAGS\x01A",  # no trailing separator (Java 4.9.7)
    b"TAGS\x01A\x02TAGS\x01B\x02",  # the last one wins
    b"\x01x\x02TAGS\x01A\x02",  # an empty name is skipped
    b"junk\x02TAGS\x01A\x02\x02",  # an item without a name-value separator is skipped
    b"TAGS\x01A\x01B\x02",  # the value keeps later separators
    b"TAGS\x01\xff\xfeA\x02UNIQ_KEY\x01\xe2\x82\x02",  # invalid UTF-8 becomes U+FFFD
    b"MIN_OFFSET\x01x\x02MAX_OFFSET\x01y\x02K\x01v\x02",  # the pull's offsets replace these
    b"UNIQ_KEY\x01\x02",  # an empty UNIQ_KEY: the offset msgId
    "RETRY_TOPIC\x01T\x02TAGS\x01Ü\x02".encode(),
]


@pytest.mark.parametrize("properties", ODD_PROPERTIES)
@pytest.mark.parametrize("tags", [frozenset(), frozenset({"A"}), frozenset({"B", "Ü"})])
def test_odd_properties(properties: bytes, tags: frozenset[str]) -> None:
    body = b"".join(record(properties=p) for p in (properties, b"TAGS\x01A\x02", properties))
    assert_decoded_straightforwardly(body, QUEUE, tags)


HOSTS = ["10.0.0.7", "::1", "fd00::7", "::ffff:10.0.0.9", "0.0.0.0"]


@pytest.mark.parametrize("born", HOSTS)
@pytest.mark.parametrize("store", HOSTS)
def test_hosts(born: str, store: str) -> None:
    body = b"".join(record(born_host=h, store_host=s, born_port=p, store_port=p)
                    for h, s, p in [(born, store, 1), (born, store, 65535), ("10.0.0.7", store, 0),
                                    (born, "10.0.0.1", 80), (born, store, 1)])
    assert_decoded_straightforwardly(body)


def test_retry_topics_compression_and_flags() -> None:
    packed = zlib.compress(b"x" * 300)
    body = b"".join([
        record("%RETRY%G", packed, {"RETRY_TOPIC": "T", "TAGS": "A"}, reconsume_times=2,
               sysflag=COMPRESSED_FLAG | COMPRESSION_ZLIB),
        record("%RETRY%G", packed, {"TAGS": "A"}, sysflag=COMPRESSED_FLAG),  # no RETRY_TOPIC
        record("%RETRY%G", b"lz4", {"RETRY_TOPIC": "T"}, sysflag=COMPRESSED_FLAG | COMPRESSION_LZ4),
        record("T", b"plain", {"RETRY_TOPIC": "X"}),  # not a retry topic: kept
        record("T", packed, sysflag=COMPRESSION_ZLIB),  # a type without the flag: as stored
        record("T", sysflag=MULTI_TAGS_FLAG | TRANSACTION_COMMIT_TYPE, flag=-5),
        record("%RETRY%G", b"again", {"RETRY_TOPIC": "T"}),
    ])
    messages = assert_decoded_straightforwardly(body, RETRY_QUEUE)
    assert messages[0][0] == (str, "T") and messages[0][1] == (bytes, b"x" * 300)
    assert messages[1][0] == (str, "%RETRY%G")


# --- errors: the same, whichever record is bad --------------------------------------------------


def test_errors_are_those_of_the_straightforward_path() -> None:
    good = record()
    bad_zlib = record(body=b"not zlib", sysflag=COMPRESSED_FLAG)
    negative = record(phys_offset=-1)
    cases = {
        "cut": good + good[:-1],
        "inflate": good + bad_zlib + good,
        "inflate before a cut record": good + bad_zlib + good[:-3],
        "negative offset": good + negative,
        "negative offset before a cut record": negative + good[:50],
        "negative offset filtered out": (record(properties={"TAGS": "A"}, phys_offset=-1)
                                         + record(properties={"TAGS": "B"})),
    }
    errors = {name: assert_decoded_straightforwardly(body, QUEUE, frozenset({"B"}) if
                                                      "filtered" in name else frozenset())
              for name, body in cases.items()}
    assert errors["cut"].startswith("pull body of")
    assert errors["inflate"].startswith("a compressed body does not inflate")
    assert errors["inflate before a cut record"].startswith("pull body of")
    assert errors["negative offset"].startswith("record at -1")
    assert errors["negative offset before a cut record"].startswith("pull body of")
    assert isinstance(errors["negative offset filtered out"], list)


def test_a_store_port_out_of_range_fails_the_pull() -> None:
    data = bytearray(record())
    store_port = STORE_HOST_OFFSET_V4 + IPV4_ADDRESS_BYTES
    data[store_port:store_port + 4] = (70000).to_bytes(4, "big")
    for body in (bytes(data), record() + bytes(data)):
        error = assert_decoded_straightforwardly(body)
        assert isinstance(error, str) and "port" in error
    born_port = BORN_HOST_OFFSET + IPV4_ADDRESS_BYTES  # an odd born port is only shown
    data = bytearray(record())
    data[born_port:born_port + 4] = (-3).to_bytes(4, "big", signed=True)
    (message,) = decode_pull_response(ResponseCode.SUCCESS, HEADER, bytes(data), QUEUE).messages
    assert message.born_host == "10.0.0.7:-3"


# --- random records ----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x01\x02"), max_size=8)
_properties = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(["TAGS", "UNIQ_KEY", "KEYS", "RETRY_TOPIC",
                                               "MIN_OFFSET"]), _text.filter(bool)),
                    st.one_of(st.sampled_from(["A", "B", "T", ""]), _text), max_size=6),
    st.lists(st.sampled_from([b"TAGS", b"A", b"UNIQ_KEY", b"\x01", b"\x02", b"\xff", b"K"]),
             max_size=12).map(b"".join),
)
_hosts = st.sampled_from(HOSTS)
_bodies = st.one_of(
    st.binary(max_size=40).map(lambda b: (b, 0)),
    st.binary(max_size=40).map(lambda b: (zlib.compress(b), COMPRESSED_FLAG)),
    st.binary(max_size=40).map(lambda b: (zlib.compress(b), COMPRESSED_FLAG | COMPRESSION_ZLIB)),
    st.binary(max_size=8).map(lambda b: (b, COMPRESSED_FLAG | COMPRESSION_LZ4)),
    st.binary(max_size=8).map(lambda b: (b, COMPRESSED_FLAG)),  # mostly not zlib
)
_records = st.builds(
    lambda topic, body, properties, born, store, port, phys, sysflag, reconsume: record(
        topic, body[0], properties, born_host=born, store_host=store, store_port=port,
        born_port=port // 2, phys_offset=phys, sysflag=body[1] | sysflag,
        reconsume_times=reconsume),
    st.sampled_from(["T", "T", "%RETRY%G", "Ü", ""]), _bodies, _properties, _hosts, _hosts,
    st.sampled_from([10911, 0, 65535]),
    st.one_of(st.integers(0, (1 << 63) - 1), st.just(-1)),
    st.sampled_from([0, MULTI_TAGS_FLAG, TRANSACTION_COMMIT_TYPE]), st.integers(-1, 17),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_records, max_size=6),
       st.sampled_from([frozenset(), frozenset({"A"}), frozenset({"A", "B", ""})]),
       st.sampled_from([QUEUE, RETRY_QUEUE]), st.integers(-1, 600))
def test_random_records(records: list[bytes], tags: frozenset[str], queue: MessageQueue,
                        cut: int) -> None:
    body = b"".join(records)
    if not body:
        return
    assert_decoded_straightforwardly(body, queue, tags)
    if 0 <= cut < len(body):
        assert_decoded_straightforwardly(body[:cut], queue, tags)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                max_size=3))
def test_random_corruption(mutations: list[tuple[int, int]]) -> None:
    data = bytearray(b"".join(record(properties={"TAGS": "A", "UNIQ_KEY": str(i)},
                                     phys_offset=200 * i) for i in range(4)))
    for index, value in mutations:
        data[index % len(data)] = value
    assert_decoded_straightforwardly(bytes(data), QUEUE, frozenset({"A"}))
