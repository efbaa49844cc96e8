"""Admin headers and bodies (shmq/protocol/admin.py): MessageQueue-keyed maps written as
fastjson writes them, and read back from that form and from string keys."""

from __future__ import annotations

import pytest

from shmq.protocol import BodyFormatError, MessageQueue, SubscriptionData
from shmq.protocol.admin import (
    ConsumerRunningInfo,
    ConsumeStats,
    GetConsumeStatsRequestHeader,
    OffsetWrapper,
    ProcessQueueInfo,
    ResetOffsetBody,
    ResetOffsetRequestHeader,
    TopicOffset,
    TopicStatsTable,
    parse_properties_text,
    properties_text,
)

MQ0 = MessageQueue("T", "broker-a", 0)
MQ1 = MessageQueue("T", "broker-a", 1)


def test_topic_stats_are_written_with_object_keys_like_fastjson() -> None:
    body = TopicStatsTable({MQ1: TopicOffset(0, 7, 1700), MQ0: TopicOffset(2, 5, 0)}).encode()
    assert body == (
        b'{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:'
        b'{"lastUpdateTimestamp":0,"maxOffset":5,"minOffset":2},'
        b'{"brokerName":"broker-a","queueId":1,"topic":"T"}:'
        b'{"lastUpdateTimestamp":1700,"maxOffset":7,"minOffset":0}}}')
    assert TopicStatsTable.decode(body).offset_table == {MQ0: TopicOffset(2, 5, 0),
                                                         MQ1: TopicOffset(0, 7, 1700)}


def test_consume_stats_from_a_java_broker() -> None:
    java = (b'{"consumeTps":1.5,"offsetTable":{{"brokerName":"b","queueId":3,"topic":"X"}:'
            b'{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":99}}}')
    stats = ConsumeStats.decode(java)
    assert stats.consume_tps == 1.5
    assert stats.offset_table == {MessageQueue("X", "b", 3): OffsetWrapper(10, 4, 99)}
    quoted = b'{"offsetTable":{"{\\"brokerName\\":\\"b\\",\\"queueId\\":3,\\"topic\\":\\"X\\"}":' \
             b'{"brokerOffset":10,"consumerOffset":4}}}'
    assert ConsumeStats.decode(quoted).offset_table[MessageQueue("X", "b", 3)].broker_offset == 10
    with pytest.raises(BodyFormatError):
        ConsumeStats.decode(b'{"offsetTable":{"not a queue":{}}}')


def test_reset_offset_body_in_both_forms() -> None:
    body = ResetOffsetBody({MQ0: 3, MQ1: 0})
    assert ResetOffsetBody.decode(body.encode()) == body
    assert body.encode_for_c() == (
        b'{"offsetTable":[{"brokerName":"broker-a","offset":3,"queueId":0,"topic":"T"},'
        b'{"brokerName":"broker-a","offset":0,"queueId":1,"topic":"T"}]}')
    assert ResetOffsetBody.decode(body.encode_for_c()) == body


def test_running_info_round_trip() -> None:
    info = ConsumerRunningInfo({"PROP_CONSUME_TYPE": "CONSUME_PASSIVELY"},
                               (SubscriptionData.of_tags("T", "a || b", 5),),
                               {MQ0: ProcessQueueInfo(commit_offset=4, locked=True)})
    body = info.encode()
    assert b'"droped":false' in body and b'"cachedMsgSizeInMiB":0' in body
    back = ConsumerRunningInfo.decode(body)
    assert back.properties == info.properties and back.mq_table == info.mq_table
    assert back.subscription_set[0].tags_set == ("a", "b")


def test_headers_and_properties_text() -> None:
    assert GetConsumeStatsRequestHeader("g").to_ext_fields() == {"consumerGroup": "g"}
    header = ResetOffsetRequestHeader.from_ext_fields(
        {"topic": "T", "group": "g", "timestamp": "-1", "isForce": "false"})
    assert (header.timestamp, header.is_force) == (-1, False)
    text = properties_text({"b": 2, "a": True, "c": "x=y"})
    assert text == b"a=true\nb=2\nc=x=y\n"
    assert parse_properties_text(b"# comment\n" + text) == {"a": "true", "b": "2", "c": "x=y"}
