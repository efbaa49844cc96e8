"""Heartbeats, consumer lists, notifications, locks, offsets, send-back and lookups, through a
real server in this process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shmq.broker.schedule import DELAY_LEVELS_MS
from shmq.message.msgid import decode_offset_msg_id
from shmq.message.record import StoredMessage, iter_records
from shmq.protocol import (
    ConsumeFromWhere,
    ConsumerData,
    ConsumerListBody,
    ConsumerSendMsgBackRequestHeader,
    ConsumeType,
    GetConsumerListByGroupRequestHeader,
    GetEarliestMsgStoretimeRequestHeader,
    GetMaxOffsetRequestHeader,
    GetMinOffsetRequestHeader,
    HeartbeatData,
    LockBatchRequestBody,
    LockBatchResponseBody,
    MessageModel,
    MessageQueue,
    ProducerData,
    QueryConsumerOffsetRequestHeader,
    QueryMessageRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SearchOffsetRequestHeader,
    SubscriptionData,
    UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader,
    ViewMessageRequestHeader,
    make_request,
)
from shmq.remoting import Connection, RemotingClient

from .helpers import InProcessBroker, in_process_broker, pull_request, run, send_request


def heartbeat(client_id: str, group: str, topic: str, expression: str = "*",
              sub_version: int = 1) -> RemotingCommand:
    data = HeartbeatData(client_id, (ProducerData("pg"),), (ConsumerData(
        group, ConsumeType.CONSUME_PASSIVELY, MessageModel.CLUSTERING,
        ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
        (SubscriptionData.of_tags(topic, expression, sub_version),)),))
    return make_request(RequestCode.HEART_BEAT, 0, body=data.encode())


def records(body: bytes | memoryview | None) -> list[StoredMessage]:
    return list(iter_records(body or b""))


async def ok(b: InProcessBroker, request: RemotingCommand) -> RemotingCommand:
    response = await b.call(request)
    assert response.code == ResponseCode.SUCCESS, (response.code, response.remark)
    return response


def test_heartbeats_list_consumers_and_notify_the_group(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            second_seen: list[RemotingCommand] = []

            def on_request(conn: Connection, request: RemotingCommand) -> None:
                second_seen.append(request)

            await ok(b, heartbeat("c1", "grp", "T"))
            assert b.broker.topics.get("%RETRY%grp") is not None
            async with RemotingClient(on_request=on_request) as other:
                await other.invoke(b.address, heartbeat("c2", "grp", "T"), 5)
                await asyncio.sleep(0.1)
                notes = [n for n in b.notifications
                         if n.code == RequestCode.NOTIFY_CONSUMER_IDS_CHANGED]
                assert notes and notes[-1].ext_fields["consumerGroup"] == "grp"
                assert notes[-1].is_oneway
                listed = await ok(b, make_request(
                    RequestCode.GET_CONSUMER_LIST_BY_GROUP, 0,
                    GetConsumerListByGroupRequestHeader("grp").to_ext_fields()))
                assert ConsumerListBody.decode(listed.body or b"").consumer_id_list == (
                    "c1", "c2")
                b.notifications.clear()
                await ok(b, heartbeat("c1", "grp", "T"))  # nothing changed: no notification
                await asyncio.sleep(0.05)
                assert not b.notifications
            await asyncio.sleep(0.1)  # the second client's connection closed
            assert any(n.code == RequestCode.NOTIFY_CONSUMER_IDS_CHANGED
                       for n in b.notifications)
            assert b.broker.clients.consumer_ids("grp") == ["c1"]
            await ok(b, make_request(RequestCode.UNREGISTER_CLIENT, 0,
                                     UnregisterClientRequestHeader(
                                         "c1", "", "grp").to_ext_fields()))
            empty = await b.call(make_request(
                RequestCode.GET_CONSUMER_LIST_BY_GROUP, 0,
                GetConsumerListByGroupRequestHeader("grp").to_ext_fields()))
            assert empty.code == ResponseCode.SYSTEM_ERROR
            assert empty.remark == "no consumer for this group, grp"
            assert second_seen  # the second client was told too, while it was there

    run(scenario())


def test_pulls_without_a_subscription_use_the_heartbeat_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            for tag in "ABA":
                await ok(b, send_request("Sub", tag.encode(), tags=tag, queue_id=0))
            missing = await b.call(pull_request("grp", "Sub", 0, 0, sub=None))
            assert missing.code == ResponseCode.SUBSCRIPTION_NOT_EXIST
            await ok(b, heartbeat("c1", "grp", "Sub", "A", sub_version=5))
            pulled = await ok(b, pull_request("grp", "Sub", 0, 0, sub=None))
            assert [m.body for m in records(pulled.body)] == [b"A", b"A"]
            newer = pull_request("grp", "Sub", 0, 0, sub=None)
            newer.ext_fields["subVersion"] = "6"
            outdated = await b.call(newer)
            assert outdated.code == ResponseCode.SUBSCRIPTION_NOT_LATEST

    run(scenario())


def test_queue_locks(tmp_path: Path) -> None:
    queues = (MessageQueue("T", "broker-a", 0), MessageQueue("T", "broker-a", 1))

    def lock(client: str, code: int = RequestCode.LOCK_BATCH_MQ) -> RemotingCommand:
        return make_request(code, 0, body=LockBatchRequestBody("grp", client, queues).encode())

    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            first = await ok(b, lock("c1"))
            assert LockBatchResponseBody.decode(first.body or b"").lock_ok_mq_set == queues
            assert b'"queueId":0' in bytes(first.body or b"")  # a JSON number for C++
            second = await ok(b, lock("c2"))
            assert LockBatchResponseBody.decode(second.body or b"").lock_ok_mq_set == ()
            await ok(b, lock("c1", RequestCode.UNLOCK_BATCH_MQ))
            third = await ok(b, lock("c2"))
            assert LockBatchResponseBody.decode(third.body or b"").lock_ok_mq_set == queues

    run(scenario())


def test_consumer_offsets_and_queue_bounds(tmp_path: Path) -> None:
    def query(queue_id: int) -> RemotingCommand:
        return make_request(RequestCode.QUERY_CONSUMER_OFFSET, 0,
                            QueryConsumerOffsetRequestHeader("grp", "Off", queue_id)
                            .to_ext_fields())

    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            stamps = []
            for i in range(4):
                response = await ok(b, send_request("Off", b"m%d" % i, queue_id=0))
                offset = decode_offset_msg_id(response.ext_fields["msgId"])[2]
                stamp = b.broker.reader.store_timestamp(offset)
                assert stamp is not None
                stamps.append(stamp)
                await asyncio.sleep(0.005)
            young = await ok(b, query(0))  # a new group on a young queue starts at 0
            assert young.ext_fields == {"offset": "0"}
            await b.client.invoke_oneway(b.address, make_request(
                RequestCode.UPDATE_CONSUMER_OFFSET, 0, UpdateConsumerOffsetRequestHeader(
                    "grp", "Off", 0, 3).to_ext_fields(), oneway=True))
            await asyncio.sleep(0.05)
            assert (await ok(b, query(0))).ext_fields == {"offset": "3"}
            await ok(b, pull_request("grp", "Off", 0, 2, commit_offset=2))
            assert (await ok(b, query(0))).ext_fields == {"offset": "2"}
            bounds = [await ok(b, make_request(code, 0, header("Off", 0).to_ext_fields()))
                      for code, header in ((RequestCode.GET_MAX_OFFSET, GetMaxOffsetRequestHeader),
                                           (RequestCode.GET_MIN_OFFSET, GetMinOffsetRequestHeader))]
            assert [r.ext_fields["offset"] for r in bounds] == ["4", "0"]
            earliest = await ok(b, make_request(
                RequestCode.GET_EARLIEST_MSG_STORETIME, 0,
                GetEarliestMsgStoretimeRequestHeader("Off", 0).to_ext_fields()))
            assert earliest.ext_fields["timestamp"] == str(stamps[0])
            found = await ok(b, make_request(
                RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, 0,
                SearchOffsetRequestHeader("Off", 0, stamps[2]).to_ext_fields()))
            assert found.ext_fields["offset"] == "2"
            unknown = await ok(b, make_request(RequestCode.GET_MAX_OFFSET, 0,
                                               GetMaxOffsetRequestHeader("Nope", 0)
                                               .to_ext_fields()))
            assert unknown.ext_fields["offset"] == "0"

    run(scenario())


def send_back(offset: int, group: str = "grp", delay_level: int = 0) -> RemotingCommand:
    return make_request(RequestCode.CONSUMER_SEND_MSG_BACK, 0, ConsumerSendMsgBackRequestHeader(
        offset, group, delay_level, origin_msg_id="ORIG").to_ext_fields())


def test_sent_back_messages_go_to_the_retry_topic_then_the_dlq(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            response = await ok(b, send_request("Fail", b"payload", tags="T1", queue_id=1,
                                                properties={"UNIQ_KEY": "U1"}))
            offset = decode_offset_msg_id(response.ext_fields["msgId"])[2]
            for attempt in range(16):
                answer = await ok(b, send_back(offset))
                assert not answer.ext_fields
                level = 3 + attempt  # 10 s, 30 s, 1 min, ...
                parked = records((await ok(b, pull_request(
                    "grp", "SCHEDULE_TOPIC_XXXX", level - 1, b.broker.reader.bounds(
                        "SCHEDULE_TOPIC_XXXX", level - 1)[1] - 1))).body)
                assert [m.properties["REAL_TOPIC"] for m in parked] == ["%RETRY%grp"]
                assert parked[0].properties["DELAY"] == str(level)
                assert await b.scheduler.release_due() > 0 and b.scheduler.released == attempt
                b.clock[0] += DELAY_LEVELS_MS[level - 1]
                await b.scheduler.release_due()
                assert b.scheduler.released == attempt + 1
                retried = records((await ok(b, pull_request(
                    "grp", "%RETRY%grp", 0, attempt))).body)
                assert len(retried) == 1
                message = retried[0]
                assert message.reconsume_times == attempt + 1
                assert message.body == b"payload" and message.topic == "%RETRY%grp"
                assert message.properties["RETRY_TOPIC"] == "Fail"
                assert message.properties["ORIGIN_MESSAGE_ID"] == "ORIG"
                assert message.properties["TAGS"] == "T1"
                assert "DELAY" not in message.properties
                offset = message.phys_offset
            await ok(b, send_back(offset))  # the 17th failure: dead letter, no delay
            dead = records((await ok(b, pull_request("grp", "%DLQ%grp", 0, 0))).body)
            assert [m.reconsume_times for m in dead] == [17]
            assert "DELAY" not in dead[0].properties
            missing = await b.call(send_back(123_456_789))
            assert missing.code == ResponseCode.SYSTEM_ERROR

    run(scenario())


def test_delayed_messages_wait_for_their_level(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            await ok(b, send_request("Later", b"now", queue_id=2))
            sent = await ok(b, send_request("Later", b"later", queue_id=2, tags="X",
                                            properties={"DELAY": "2"}))
            assert sent.ext_fields["queueId"] == "2"
            visible = records((await ok(b, pull_request("g", "Later", 0 + 2, 0))).body)
            assert [m.body for m in visible] == [b"now"]
            b.clock[0] += 4_000
            await b.scheduler.release_due()
            assert b.scheduler.released == 0  # level 2 is 5 s
            b.clock[0] += 1_000
            await b.scheduler.release_due()
            released = records((await ok(b, pull_request("g", "Later", 2, 1, sub="X"))).body)
            assert [m.body for m in released] == [b"later"]
            assert released[0].properties["REAL_TOPIC"] == "Later"
            assert "DELAY" not in released[0].properties
            b.scheduler.save()
            saved = (tmp_path / "store" / "config" / "delayOffset.json").read_text()
            assert '"2":1' in saved

    run(scenario())


def test_a_retry_topic_send_past_its_maximum_goes_to_the_dlq(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            response = await ok(b, send_request("%RETRY%g2", b"x", reconsume_times=3,
                                                max_reconsume_times=3))
            assert response.ext_fields["queueId"] == "0"
            dead = records((await ok(b, pull_request("g2", "%DLQ%g2", 0, 0))).body)
            assert [m.body for m in dead] == [b"x"]

    run(scenario())


def test_half_messages_are_not_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            await ok(b, send_request("Tx", b"visible", queue_id=0))
            await ok(b, send_request("Tx", b"half", queue_id=0,
                                     properties={"TRAN_MSG": "true", "PGROUP": "pg"}))
            pulled = records((await ok(b, pull_request("g", "Tx", 0, 0))).body)
            assert [m.body for m in pulled] == [b"visible"]
            half = records((await ok(b, pull_request(
                "g", "RMQ_SYS_TRANS_HALF_TOPIC", 0, 0))).body)
            assert [m.properties["REAL_TOPIC"] for m in half] == ["Tx"]

    run(scenario())


def test_messages_by_offset_id_and_by_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            await ok(b, send_request("Look", b"one", keys="order-1 shared", queue_id=0))
            second = await ok(b, send_request("Look", b"two", keys="order-2 shared",
                                              queue_id=0))
            offset = decode_offset_msg_id(second.ext_fields["msgId"])[2]
            viewed = await ok(b, make_request(RequestCode.VIEW_MESSAGE_BY_ID, 0,
                                              ViewMessageRequestHeader(offset).to_ext_fields()))
            assert [m.body for m in records(viewed.body)] == [b"two"]
            bad = await b.call(make_request(RequestCode.VIEW_MESSAGE_BY_ID, 0,
                                            ViewMessageRequestHeader(offset + 1).to_ext_fields()))
            assert bad.code == ResponseCode.SYSTEM_ERROR
            b.store.build_index()

            def query(key: str) -> RemotingCommand:
                return make_request(RequestCode.QUERY_MESSAGE, 0, QueryMessageRequestHeader(
                    "Look", key, 32, 0, 1 << 62).to_ext_fields())

            shared = await ok(b, query("shared"))
            assert sorted(m.body for m in records(shared.body)) == [b"one", b"two"]
            assert int(shared.ext_fields["indexLastUpdatePhyoffset"]) >= offset
            none = await b.call(query("order-9"))
            assert none.code == ResponseCode.QUERY_NOT_FOUND

    run(scenario())


def test_topic_administration(tmp_path: Path) -> None:
    from shmq.protocol import (
        CreateTopicRequestHeader,
        DeleteTopicRequestHeader,
        TopicConfigSerializeWrapper,
        loads_fastjson,
    )

    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            await ok(b, make_request(RequestCode.UPDATE_AND_CREATE_TOPIC, 0,
                                     CreateTopicRequestHeader("Admin", "TBW102", 8, 8, 6,
                                                              "SINGLE_TAG").to_ext_fields()))
            listed = await ok(b, make_request(RequestCode.GET_ALL_TOPIC_CONFIG, 0))
            table = TopicConfigSerializeWrapper.from_json(
                loads_fastjson(listed.body or b""), "body").topic_config_table
            assert table["Admin"].write_queue_nums == 8
            response = await ok(b, send_request("Admin", b"x", queue_id=7))
            assert response.ext_fields["queueId"] == "7"
            await ok(b, make_request(RequestCode.DELETE_TOPIC_IN_BROKER, 0,
                                     DeleteTopicRequestHeader("Admin").to_ext_fields()))
            assert b.broker.topics.get("Admin") is None

    run(scenario())
