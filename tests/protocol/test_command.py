"""Tests of shmq/protocol/command.py."""

from __future__ import annotations

import pytest

from shmq.protocol import (
    LanguageCode,
    OpaqueGenerator,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SerializeType,
    decode_frame,
    encode_command_bytes,
    make_request,
    make_response,
)


def test_flags_classify_requests_responses_and_oneway() -> None:
    assert not RemotingCommand(code=10, flag=0).is_response
    assert RemotingCommand(code=0, flag=1).is_response
    assert RemotingCommand(code=15, flag=2).is_oneway
    assert not RemotingCommand(code=15, flag=0).is_oneway
    # C++ copies the request's flag into a response before OR-ing 1: still a response, not oneway
    assert RemotingCommand(code=0, flag=3).is_response
    assert not RemotingCommand(code=0, flag=3).is_oneway
    assert RemotingCommand(code=15, flag=2 | 0x100).is_oneway  # unknown bits are ignored


@pytest.mark.parametrize("serialize_type", list(SerializeType))
def test_make_response_answers_in_the_request_encoding_with_its_opaque(
    serialize_type: SerializeType,
) -> None:
    request = RemotingCommand(
        code=RequestCode.PULL_MESSAGE,
        language=LanguageCode.CPP,
        version=63,
        opaque=123,
        flag=0,
        ext_fields={"topic": "T"},
        serialize_type=serialize_type,
    )
    response = make_response(
        request, ResponseCode.PULL_NOT_FOUND, remark="none", ext_fields={"minOffset": "0"}
    )
    assert response.opaque == 123
    assert response.serialize_type == serialize_type
    assert response.is_response and not response.is_oneway
    assert response.code == ResponseCode.PULL_NOT_FOUND
    assert (response.language, response.version) == (LanguageCode.JAVA, 407)
    assert (response.remark, response.ext_fields, response.body) == (
        "none",
        {"minOffset": "0"},
        None,
    )
    assert decode_frame(encode_command_bytes(response)) == response


def test_make_response_copies_ext_fields() -> None:
    fields = {"offset": "1"}
    response = make_response(RemotingCommand(code=14, opaque=1), 0, ext_fields=fields)
    fields["offset"] = "2"
    assert response.ext_fields == {"offset": "1"}


def test_make_request() -> None:
    request = make_request(RequestCode.UPDATE_CONSUMER_OFFSET, 5, {"queueId": "1"}, oneway=True)
    assert (request.code, request.opaque, request.flag) == (15, 5, 2)
    assert request.is_oneway and not request.is_response
    assert request.serialize_type == SerializeType.JSON
    assert make_request(10, 6, body=b"x").ext_fields == {}


def test_body_bytes() -> None:
    assert RemotingCommand(code=0).body_bytes == 0
    assert RemotingCommand(code=0, body=b"abc").body_bytes == 3
    assert RemotingCommand(code=0, body=memoryview(b"abcdefgh").cast("I")).body_bytes == 8


def test_opaque_generator_counts_and_wraps_to_zero() -> None:
    generator = OpaqueGenerator(start=2**31 - 2)
    assert [generator.next_opaque() for _ in range(4)] == [2**31 - 2, 2**31 - 1, 0, 1]
    fresh = OpaqueGenerator()
    assert (fresh(), fresh()) == (0, 1)
    with pytest.raises(ValueError, match="outside"):
        OpaqueGenerator(start=-1)
