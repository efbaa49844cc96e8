"""Tests of shmq/protocol/frame.py (and, through it, both header encodings)."""

from __future__ import annotations

import contextlib
import struct
import time
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmq.errors import ProtocolError
from shmq.protocol import (
    FrameDecoder,
    FrameTooLarge,
    LanguageCode,
    LocalProtocolError,
    RemoteProtocolError,
    RemotingCommand,
    SerializeType,
    decode_frame,
    encode_command,
    encode_command_bytes,
    make_request,
)

from .frame_cases import CANONICAL, LENIENT, MALFORMED, Case, frame

ALL_DECODE_CASES = CANONICAL + LENIENT
#: an int where the codec expects a str or an enum
WRONG_TYPE: Any = 1
#: the start of another valid frame: must stay buffered after the frame under test
NEXT_FRAME = encode_command_bytes(RemotingCommand(code=99, opaque=4242, body=b"next"))
EXTRA = NEXT_FRAME[:11]


def decode_all(data: bytes, max_frame_bytes: int = 1 << 24) -> list[RemotingCommand]:
    decoder = FrameDecoder(max_frame_bytes=max_frame_bytes)
    decoder.feed(data)
    return list(decoder.commands())


# -- every decoder case, three ways ---------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_DECODE_CASES, ids=lambda c: c.name)
def test_decode_all_at_once(case: Case) -> None:
    assert decode_all(case.frame) == [case.command]


@pytest.mark.parametrize("case", ALL_DECODE_CASES, ids=lambda c: c.name)
def test_decode_one_byte_at_a_time(case: Case) -> None:
    decoder = FrameDecoder()
    for index in range(len(case.frame) - 1):
        decoder.feed(case.frame[index : index + 1])
        assert list(decoder.commands()) == [], f"yielded a command after byte {index}"
    decoder.feed(case.frame[-1:])
    assert list(decoder.commands()) == [case.command]
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize("case", ALL_DECODE_CASES, ids=lambda c: c.name)
def test_decode_followed_by_extra_bytes(case: Case) -> None:
    decoder = FrameDecoder()
    decoder.feed(case.frame + EXTRA)
    assert list(decoder.commands()) == [case.command]
    assert decoder.buffered_bytes == len(EXTRA)
    decoder.feed(NEXT_FRAME[len(EXTRA) :])
    assert list(decoder.commands()) == [decode_frame(NEXT_FRAME)]
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize("case", CANONICAL, ids=lambda c: c.name)
def test_encode_canonical(case: Case) -> None:
    assert encode_command_bytes(case.command) == case.frame


@pytest.mark.parametrize("case", ALL_DECODE_CASES, ids=lambda c: c.name)
def test_reencoding_a_decoded_command_round_trips(case: Case) -> None:
    command = decode_frame(case.frame)
    assert decode_frame(encode_command_bytes(command)) == command


# -- malformed frames, three ways --------------------------------------------------------------


@pytest.mark.parametrize(("name", "data"), MALFORMED, ids=[n for n, _ in MALFORMED])
def test_malformed_all_at_once(name: str, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(data)


@pytest.mark.parametrize(("name", "data"), MALFORMED, ids=[n for n, _ in MALFORMED])
def test_malformed_one_byte_at_a_time(name: str, data: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError):
        for index in range(len(data)):
            decoder.feed(data[index : index + 1])
            assert list(decoder.commands()) == []
        list(decoder.commands())


@pytest.mark.parametrize(("name", "data"), MALFORMED, ids=[n for n, _ in MALFORMED])
def test_malformed_followed_by_extra_bytes(name: str, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(data + NEXT_FRAME)


def test_commands_before_a_bad_frame_are_yielded_then_the_decoder_stays_failed() -> None:
    good = CANONICAL[0]
    decoder = FrameDecoder()
    decoder.feed(good.frame + frame(b"[]") + good.frame)
    received: list[RemotingCommand] = []
    with pytest.raises(RemoteProtocolError, match="not an object"):
        received.extend(decoder.commands())  # keeps what was yielded before the error
    assert received == [good.command]
    with pytest.raises(RemoteProtocolError, match="not an object"):
        decoder.feed(good.frame)
    with pytest.raises(RemoteProtocolError, match="not an object"):
        list(decoder.commands())


# -- limits --------------------------------------------------------------------------------------


def test_oversized_frame_is_rejected_from_its_prefix() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(FrameTooLarge) as caught:
        decoder.feed(struct.pack(">i", 1021))  # 4 + 1021 = 1025 bytes with its prefix
    assert (caught.value.frame_bytes, caught.value.limit) == (1025, 1024)
    assert "1025" in str(caught.value) and "1024" in str(caught.value)


def test_oversized_prefix_split_across_feeds_is_rejected_before_the_frame_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    decoder.feed(b"\x00\x00")
    assert list(decoder.commands()) == []
    with pytest.raises(FrameTooLarge):  # 1024 + 4 > 1024: no need to wait for 1024 bytes
        decoder.feed(b"\x04\x00")
        list(decoder.commands())


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    header = b'{"code":1,"opaque":1}'
    data = frame(header, b"x" * (1024 - 8 - len(header)))
    assert len(data) == 1024
    assert decode_all(data, max_frame_bytes=1024)[0].body == b"x" * (1024 - 8 - len(header))
    with pytest.raises(FrameTooLarge):
        decode_all(data, max_frame_bytes=1023)


def test_default_limit_is_javas_16_mib_including_the_prefix() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">i", (16 << 20) - 4))  # exactly 16 MiB: waits for the rest
    assert list(decoder.commands()) == []
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(struct.pack(">i", (16 << 20) - 3))


def test_max_frame_bytes_must_hold_a_frame() -> None:
    with pytest.raises(ValueError, match="below"):
        FrameDecoder(max_frame_bytes=7)


def test_many_small_frames_in_one_chunk_decode_in_linear_time() -> None:
    one = encode_command_bytes(make_request(10, 1, {"topic": "T"}, b"x"))
    count = 40_000
    decoder = FrameDecoder()
    started = time.perf_counter()
    decoder.feed(one * count)
    decoded = sum(1 for _ in decoder.commands())
    elapsed = time.perf_counter() - started
    assert decoded == count
    # Linear: ~10 us per frame. Quadratic copying of a 4 MB buffer 40k times takes minutes.
    assert elapsed < 10, f"{elapsed:.1f} s for {count} frames"
    assert decoder.buffered_bytes == 0


def test_consumed_bytes_are_released() -> None:
    one = encode_command_bytes(make_request(10, 1, {"topic": "T"}, b"x" * 1000))
    decoder = FrameDecoder()
    for _ in range(200):
        decoder.feed(one + one[:10])
        list(decoder.commands())
        decoder.feed(one[10:])
        list(decoder.commands())
    assert decoder.buffered_bytes == 0
    assert len(decoder._buffer) < 4 * len(one)  # white-box: nothing accumulates


# -- encoding -------------------------------------------------------------------------------------


def test_encode_returns_the_body_object_uncopied() -> None:
    store = bytearray(b"0123456789" * 100)
    body = memoryview(store)[100:600]
    command = RemotingCommand(code=0, opaque=1, flag=1, body=body)
    buffers = encode_command(command)
    assert len(buffers) == 2 and buffers[1] is body
    assert decode_frame(b"".join(buffers)).body == bytes(store[100:600])


def test_encode_counts_bytes_of_a_multibyte_memoryview_body() -> None:
    body = memoryview(struct.pack(">4i", 1, 2, 3, 4)).cast("i")  # 4 items, 16 bytes
    data = encode_command_bytes(RemotingCommand(code=0, opaque=1, body=body))
    assert decode_frame(data).body == body.tobytes()


def test_empty_body_is_not_sent_and_reads_back_as_none() -> None:
    buffers = encode_command(RemotingCommand(code=0, opaque=1, body=b""))
    assert len(buffers) == 1
    assert decode_frame(buffers[0]).body is None


def test_encode_writes_the_serialize_type_in_the_top_byte_of_the_mark() -> None:
    binary = encode_command_bytes(
        RemotingCommand(code=1, opaque=1, serialize_type=SerializeType.ROCKETMQ)
    )
    json_ = encode_command_bytes(RemotingCommand(code=1, opaque=1))
    assert binary[4] == 1 and json_[4] == 0  # C++ and Node read bytes 4..7 unmasked: JSON only


@pytest.mark.parametrize(
    ("command", "match"),
    [
        (RemotingCommand(code=200050, opaque=1, serialize_type=SerializeType.ROCKETMQ), "int16"),
        (
            RemotingCommand(code=1, version=40000, opaque=1, serialize_type=SerializeType.ROCKETMQ),
            "int16",
        ),
        (
            RemotingCommand(
                code=1, opaque=1, ext_fields={"": "v"}, serialize_type=SerializeType.ROCKETMQ
            ),
            "key",
        ),
        (
            RemotingCommand(
                code=1, opaque=1, ext_fields={"k": "\udc80"}, serialize_type=SerializeType.ROCKETMQ
            ),
            "UTF-8",
        ),
        (RemotingCommand(code=1, opaque=1, ext_fields={"k": WRONG_TYPE}), "str"),
        (
            RemotingCommand(
                code=1,
                opaque=1,
                ext_fields={"k": WRONG_TYPE},
                serialize_type=SerializeType.ROCKETMQ,
            ),
            "str",
        ),
        (RemotingCommand(code=cast(Any, 1.0), opaque=1), "int"),
        (RemotingCommand(code=True, opaque=1), "int"),
        (RemotingCommand(code=1, opaque=1 << 31), "int32"),
        (RemotingCommand(code=1, opaque=1, remark=WRONG_TYPE), "remark"),
        (RemotingCommand(code=1, opaque=1, language=WRONG_TYPE), "LanguageCode"),
        (RemotingCommand(code=1, opaque=1, serialize_type=cast(Any, 7)), "serialize type"),
    ],
)
def test_encoding_illegal_commands_raises_local_protocol_error(
    command: RemotingCommand, match: str
) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        encode_command(command)


def test_int_enum_fields_encode_as_numbers() -> None:
    from shmq.protocol import RequestCode

    data = encode_command_bytes(RemotingCommand(code=RequestCode.SEND_MESSAGE, opaque=1))
    assert b'"code":10,' in data


def test_decode_frame_requires_exactly_one_frame() -> None:
    data = CANONICAL[0].frame
    with pytest.raises(RemoteProtocolError):
        decode_frame(data + b"x")
    with pytest.raises(RemoteProtocolError):
        decode_frame(data[:-1])
    with pytest.raises(RemoteProtocolError):
        decode_frame(data[:5])


# -- properties --------------------------------------------------------------------------------

int32 = st.integers(-(1 << 31), (1 << 31) - 1)
int16 = st.integers(-(1 << 15), (1 << 15) - 1)
languages = st.sampled_from(list(LanguageCode))
bodies = st.none() | st.binary(min_size=1, max_size=64)

json_commands = st.builds(
    RemotingCommand,
    code=int32,
    language=languages,
    version=int32,
    opaque=int32,
    flag=int32,
    remark=st.none() | st.text(max_size=20),
    ext_fields=st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=6),
    body=bodies,
    serialize_type=st.just(SerializeType.JSON),
)
# The binary encoding cannot carry "" (a zero length means null): remark None or non-empty,
# keys and values non-empty.
binary_commands = st.builds(
    RemotingCommand,
    code=int16,
    language=languages,
    version=int16,
    opaque=int32,
    flag=int32,
    remark=st.none() | st.text(min_size=1, max_size=20),
    ext_fields=st.dictionaries(
        st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=12), max_size=6
    ),
    body=bodies,
    serialize_type=st.just(SerializeType.ROCKETMQ),
)


@given(json_commands | binary_commands)
def test_round_trip_both_header_encodings(command: RemotingCommand) -> None:
    assert decode_all(encode_command_bytes(command)) == [command]


@settings(max_examples=50)
@given(st.lists(json_commands | binary_commands, min_size=1, max_size=5), st.data())
def test_any_split_of_a_stream_decodes_the_same(
    commands: list[RemotingCommand], data: st.DataObject
) -> None:
    stream = b"".join(encode_command_bytes(c) for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    received: list[RemotingCommand] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoder.feed(stream[start:end])
        received.extend(decoder.commands())
    assert received == commands


def _feed_and_drain(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_bytes=1 << 16)
    with contextlib.suppress(ProtocolError):
        decoder.feed(data)
        list(decoder.commands())


@given(st.binary(max_size=4096))
def test_decoder_returns_commands_or_protocol_error(data: bytes) -> None:
    _feed_and_drain(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
header_keys = st.sampled_from(
    ["code", "opaque", "flag", "version", "language", "remark", "extFields", "x"]
)


@given(st.dictionaries(header_keys, json_values, max_size=8), st.binary(max_size=16))
def test_decoder_survives_any_json_header_shape(header: dict[str, object], body: bytes) -> None:
    import json

    _feed_and_drain(frame(json.dumps(header).encode(), body))


@given(st.binary(max_size=80), st.sampled_from([0, 1]))
def test_decoder_survives_any_header_bytes(header: bytes, serialize_type: int) -> None:
    _feed_and_drain(frame(header, b"body", serialize_type))


@given(st.sampled_from(CANONICAL + LENIENT), st.data())
def test_decoder_survives_corrupted_valid_frames(case: Case, data: st.DataObject) -> None:
    corrupted = bytearray(case.frame)
    for _ in range(data.draw(st.integers(1, 4))):
        corrupted[data.draw(st.integers(0, len(corrupted) - 1))] = data.draw(st.integers(0, 255))
    _feed_and_drain(bytes(corrupted))


def test_errors_report_the_offset_in_the_stream() -> None:
    good = CANONICAL[1].frame
    decoder = FrameDecoder()
    for _ in range(3):
        decoder.feed(good)
        list(decoder.commands())  # consumed frames are dropped from the buffer
    decoder.feed(good[:5])
    list(decoder.commands())  # a partial frame stays
    with pytest.raises(RemoteProtocolError, match=f"stream offset {4 * len(good)}\\b"):
        decoder.feed(good[5:] + struct.pack(">i", 2))
        list(decoder.commands())


@given(json_commands)
def test_json_header_is_what_json_dumps_writes_in_javas_key_order(command: RemotingCommand) -> None:
    import json

    from shmq.protocol.json_header import encode_json_header

    expected: dict[str, object] = {"code": command.code}
    if command.ext_fields:
        expected["extFields"] = command.ext_fields
    expected |= {"flag": command.flag, "language": command.language.name, "opaque": command.opaque}
    if command.remark is not None:
        expected["remark"] = command.remark
    expected |= {"serializeTypeCurrentRPC": "JSON", "version": command.version}
    assert encode_json_header(command) == json.dumps(expected, separators=(",", ":")).encode()
