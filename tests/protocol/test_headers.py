"""Tests of shmq/protocol/headers.py."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmq.protocol import (
    ConsumerSendMsgBackRequestHeader,
    CreateTopicRequestHeader,
    EndTransactionRequestHeader,
    ExtHeader,
    GetRouteInfoRequestHeader,
    HeaderFieldError,
    LocalProtocolError,
    PullMessageRequestHeader,
    PullMessageResponseHeader,
    QueryMessageRequestHeader,
    RegisterBrokerRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SendMessageRequestHeader,
    SendMessageRequestHeaderV2,
    SendMessageResponseHeader,
    UnregisterClientRequestHeader,
    decode_frame,
    decode_send_message_header,
    headers,
    make_request,
    parse_bool,
)

from .frame_cases import CPP_PULL_HEADER, JAVA_SEND_RESPONSE_HEADER, NODE_SEND_V2_HEADER, frame

HEADER_CLASSES: list[type[ExtHeader]] = [
    getattr(headers, name)
    for name in headers.__all__
    if name.endswith("Header") and name != "ExtHeader"
]

_RANGES = {"I": (-(2**31), 2**31 - 1), "L": (-(2**63), 2**63 - 1)}


def _kind(item: dataclasses.Field[Any]) -> str:
    return {"a string": "S", "an int32": "I", "an int64": "L", "a boolean": "B"}[
        item.metadata["kind"].value
    ]


def _field_strategy(item: dataclasses.Field[Any]) -> st.SearchStrategy[Any]:
    kind = _kind(item)
    required = item.default is dataclasses.MISSING
    if kind == "S":
        # "" reads back as absent for optional fields (C++ sends "" for unused groups)
        value: st.SearchStrategy[Any] = st.text(min_size=0 if required else 1, max_size=12)
    elif kind == "B":
        value = st.booleans()
    else:
        low, high = _RANGES[kind]
        value = st.integers(low, high)
    return value if required or item.default is not None else st.none() | value


def _header_strategy(cls: type[ExtHeader]) -> st.SearchStrategy[ExtHeader]:
    fields = {item.name: _field_strategy(item) for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return st.builds(cls, **fields)


@pytest.mark.parametrize("cls", HEADER_CLASSES, ids=lambda c: c.__name__)
def test_annotations_agree_with_wire_kinds(cls: type[ExtHeader]) -> None:
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        expected = {"S": str, "I": int, "L": int, "B": bool}[_kind(item)]
        required = item.default is dataclasses.MISSING
        allowed = {expected} if required else {expected, expected | None}
        assert hints[item.name] in allowed | {expected | None}, item.name


@pytest.mark.parametrize("cls", HEADER_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=40)  # 33 classes: keep the directory well under 20 s
@given(data=st.data())
def test_every_header_round_trips_through_ext_fields(
    cls: type[ExtHeader], data: st.DataObject
) -> None:
    header = data.draw(_header_strategy(cls))
    ext = header.to_ext_fields()
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in ext.items())
    assert cls.from_ext_fields(ext) == header


@given(_header_strategy(SendMessageRequestHeader))
def test_v2_and_v1_convert_both_ways(header: ExtHeader) -> None:
    assert isinstance(header, SendMessageRequestHeader)
    v2 = SendMessageRequestHeaderV2.from_v1(header)
    assert v2.to_v1() == header
    command = make_request(RequestCode.SEND_MESSAGE_V2, 1, v2.to_ext_fields())
    assert decode_send_message_header(command) == header
    command = make_request(RequestCode.SEND_MESSAGE, 1, header.to_ext_fields())
    assert decode_send_message_header(command) == header


def test_v2_short_names_follow_java() -> None:
    v2 = SendMessageRequestHeaderV2(
        a="P", b="T", c="TBW102", d=4, e=2, f=1, g=17, h=8, i="p", j=3, k=True, l=16, m=True, n="bn"
    )
    assert v2.to_v1() == SendMessageRequestHeader(
        producer_group="P",
        topic="T",
        default_topic="TBW102",
        default_topic_queue_nums=4,
        queue_id=2,
        sys_flag=1,
        born_timestamp=17,
        flag=8,
        properties="p",
        reconsume_times=3,
        unit_mode=True,
        max_reconsume_times=16,
        batch=True,
        bname="bn",
    )
    assert v2.to_ext_fields() == {
        "a": "P", "b": "T", "c": "TBW102", "d": "4", "e": "2", "f": "1", "g": "17", "h": "8",
        "i": "p", "j": "3", "k": "true", "l": "16", "m": "true", "n": "bn",
    }  # fmt: skip


def test_node_send_v2_from_the_spec() -> None:
    header = decode_send_message_header(decode_frame(frame(NODE_SEND_V2_HEADER)))
    assert header == SendMessageRequestHeader(
        producer_group="P",
        topic="T",
        default_topic="TBW102",
        default_topic_queue_nums=4,
        queue_id=2,
        sys_flag=0,
        born_timestamp=1700000000000,
        flag=0,
        properties="TAGS\x01A\x02",
        reconsume_times=0,
        unit_mode=False,
    )


def test_cpp_send_v1_with_numbers_and_batch_flag_one() -> None:
    text = (
        b'{"code":10,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN","Signature":"s",'
        b'"batch":"1","bornTimestamp":"1700000000000","defaultTopic":"TBW102",'
        b'"defaultTopicQueueNums":4,"flag":0,"producerGroup":"G","properties":"",'
        b'"queueId":-1,"reconsumeTimes":"0","sysFlag":0,"topic":"T","unitMode":"0"},'
        b'"flag":0,"language":"CPP","opaque":1,"remark":"","version":63}\n'
    )
    header = decode_send_message_header(decode_frame(frame(text, b"batch-body")))
    assert header.batch is True
    assert header.unit_mode is False
    assert header.queue_id == -1
    assert header.properties is None  # "" is absent for an optional field
    assert header.max_reconsume_times is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("True", True)]
    + [("0", False), ("false", False), ("", False), ("yes", False), ("2", False), (" 1", False)],
)
def test_booleans_accept_true_and_one(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected
    fields = SendMessageRequestHeaderV2.from_v1(_send_header()).to_ext_fields() | {"m": text}
    command = make_request(RequestCode.SEND_MESSAGE_V2, 1, fields)
    assert decode_send_message_header(command).batch is (expected if text else False)


def test_send_batch_message_is_always_a_batch() -> None:
    fields = SendMessageRequestHeaderV2.from_v1(_send_header()).to_ext_fields() | {"m": "false"}
    assert decode_send_message_header(make_request(RequestCode.SEND_BATCH_MESSAGE, 1, fields)).batch
    assert not decode_send_message_header(
        make_request(RequestCode.SEND_MESSAGE_V2, 1, fields)
    ).batch


def test_decode_send_message_header_refuses_other_codes() -> None:
    with pytest.raises(LocalProtocolError, match="not a send request"):
        decode_send_message_header(make_request(RequestCode.PULL_MESSAGE, 1, {}))


def test_cpp_pull_request_from_the_spec() -> None:
    command = decode_frame(frame(CPP_PULL_HEADER))
    assert PullMessageRequestHeader.from_ext_fields(command.ext_fields) == PullMessageRequestHeader(
        consumer_group="g",
        topic="T",
        queue_id=0,
        queue_offset=0,
        max_msg_nums=32,
        sys_flag=6,
        commit_offset=0,
        suspend_timeout_millis=15000,
        sub_version=0,
        subscription="*",
    )


def test_java_send_response_from_the_spec() -> None:
    command = decode_frame(frame(JAVA_SEND_RESPONSE_HEADER))
    assert command.code == ResponseCode.SUCCESS
    assert SendMessageResponseHeader.from_ext_fields(
        command.ext_fields
    ) == SendMessageResponseHeader(
        msg_id="7F00000100002A9F0000000000000000",
        queue_id=1,
        queue_offset=0,
        msg_region="DefaultRegion",
        trace_on=True,
    )


def test_response_values_are_strings_and_none_fields_are_left_out() -> None:
    assert SendMessageResponseHeader("ID", 3, 42).to_ext_fields() == {
        "msgId": "ID",
        "queueId": "3",
        "queueOffset": "42",
    }
    assert PullMessageResponseHeader(0, 5, 0, 9).to_ext_fields() == {
        "suggestWhichBrokerId": "0",
        "nextBeginOffset": "5",
        "minOffset": "0",
        "maxOffset": "9",
    }


@pytest.mark.parametrize(
    ("cls", "ext", "field", "value"),
    [
        (PullMessageRequestHeader, {"topic": "T"}, "consumerGroup", None),
        (GetRouteInfoRequestHeader, {}, "topic", None),
        (UnregisterClientRequestHeader, {"clientId": "wrong case"}, "clientID", None),
        (ConsumerSendMsgBackRequestHeader, {"offset": "x", "group": "g", "delayLevel": "0"}, "offset", "x"),
        (ConsumerSendMsgBackRequestHeader, {"offset": "1", "group": "g", "delayLevel": ""}, "delayLevel", ""),
        (ConsumerSendMsgBackRequestHeader, {"offset": "1.5", "group": "g", "delayLevel": "0"}, "offset", "1.5"),
        (ConsumerSendMsgBackRequestHeader, {"offset": "1_0", "group": "g", "delayLevel": "0"}, "offset", "1_0"),
        (ConsumerSendMsgBackRequestHeader, {"offset": "\u0663", "group": "g", "delayLevel": "0"}, "offset", "\u0663"),
        (ConsumerSendMsgBackRequestHeader, {"offset": "1", "group": "g", "delayLevel": "2147483648"}, "delayLevel", "2147483648"),
        (ConsumerSendMsgBackRequestHeader, {"offset": "9223372036854775808", "group": "g", "delayLevel": "0"}, "offset", "9223372036854775808"),
        (ConsumerSendMsgBackRequestHeader, {"offset": "1", "group": "g", "delayLevel": "0", "maxReconsumeTimes": "-"}, "maxReconsumeTimes", "-"),
        (ConsumerSendMsgBackRequestHeader, {"offset": "9" * 5000, "group": "g", "delayLevel": "0"}, "offset", "9" * 5000),
    ],
)  # fmt: skip
def test_missing_or_bad_fields_raise_a_typed_error_naming_them(
    cls: type[ExtHeader], ext: dict[str, str], field: str, value: str | None
) -> None:
    with pytest.raises(HeaderFieldError) as caught:
        cls.from_ext_fields(ext)
    assert (caught.value.header, caught.value.field, caught.value.value) == (
        cls.__name__,
        field,
        value,
    )
    assert field in str(caught.value)
    assert caught.value.response_code == ResponseCode.SYSTEM_ERROR


def test_ints_accept_signs_and_the_full_range() -> None:
    header = ConsumerSendMsgBackRequestHeader.from_ext_fields(
        {
            "offset": "9223372036854775807",
            "group": "g",
            "delayLevel": "-1",
            "maxReconsumeTimes": "+16",
        }
    )
    assert (header.offset, header.delay_level, header.max_reconsume_times) == (2**63 - 1, -1, 16)


def test_unregister_client_empty_groups_are_absent_and_unknown_keys_ignored() -> None:
    header = UnregisterClientRequestHeader.from_ext_fields(
        {
            "clientID": "1-10.0.0.1@DEFAULT",
            "producerGroup": "",
            "consumerGroup": "G",
            "Signature": "s",
        }
    )
    assert header == UnregisterClientRequestHeader("1-10.0.0.1@DEFAULT", None, "G")


def test_defaults_of_optional_fields_follow_java() -> None:
    create = CreateTopicRequestHeader.from_ext_fields(
        {
            "topic": "T",
            "defaultTopic": "TBW102",
            "readQueueNums": "8",
            "writeQueueNums": "8",
            "perm": "6",
            "topicFilterType": "SINGLE_TAG",
        }
    )
    assert (create.order, create.topic_sys_flag) == (False, None)
    register = RegisterBrokerRequestHeader.from_ext_fields(
        {
            "brokerName": "b",
            "brokerAddr": "1.2.3.4:10911",
            "clusterName": "c",
            "haServerAddr": "1.2.3.4:10912",
            "brokerId": "0",
        }
    )
    assert (register.compressed, register.body_crc32) == (False, 0)
    end = EndTransactionRequestHeader.from_ext_fields(
        {
            "producerGroup": "P",
            "tranStateTableOffset": "3",
            "commitLogOffset": "100",
            "commitOrRollback": "8",
            "msgId": "M",
            "fromTransactionCheck": "1",
        }
    )
    assert end.from_transaction_check is True and end.transaction_id is None


def test_query_message_unique_key_flag() -> None:
    ext = {"topic": "T", "key": "K", "maxNum": "32", "beginTimestamp": "0", "endTimestamp": "9"}
    assert QueryMessageRequestHeader.from_ext_fields(ext).unique_key_query is None
    flagged = QueryMessageRequestHeader.from_ext_fields(ext | {"_UNIQUE_KEY_QUERY": "true"})
    assert flagged.unique_key_query is True
    assert flagged.to_ext_fields()["_UNIQUE_KEY_QUERY"] == "true"


def test_headers_are_frozen() -> None:
    header = GetRouteInfoRequestHeader.from_ext_fields({"topic": "T"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.topic = "U"  # type: ignore[misc]
    assert header == GetRouteInfoRequestHeader("T") and hash(header) == hash(
        GetRouteInfoRequestHeader("T")
    )


def _send_header() -> SendMessageRequestHeader:
    return SendMessageRequestHeader(
        producer_group="P",
        topic="T",
        default_topic="TBW102",
        default_topic_queue_nums=4,
        queue_id=0,
        sys_flag=0,
        born_timestamp=1,
        flag=0,
    )


def test_send_header_used_in_a_command_round_trip() -> None:
    command = RemotingCommand(
        code=RequestCode.SEND_MESSAGE, opaque=1, ext_fields=_send_header().to_ext_fields()
    )
    assert decode_send_message_header(command) == _send_header()
