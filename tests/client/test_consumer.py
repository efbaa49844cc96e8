"""Tests of the remote consumers' parts: pull-body decoding, process queues, subscriptions and
offset files (pure), then the pull and push consumers against a name server and a broker kept
in memory in this process (tests/client/helpers.py `MemoryStore`)."""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from shmq.client.assignment import Subscriptions, retry_topic
from shmq.client.consumer import AsyncPullConsumer
from shmq.client.errors import ConsumerClosed, MalformedResponse
from shmq.client.instance import ClientInstance
from shmq.client.offsets import LocalOffsetStore
from shmq.client.producer import COMPRESSION_ZLIB_TYPE
from shmq.client.push_consumer import AsyncPushConsumer, ConsumeStatus, ProcessQueue
from shmq.client.received import PullStatus, ReceivedMessage, decode_pull_response
from shmq.message.layout import COMPRESSED_FLAG
from shmq.namesrv import NameServer
from shmq.protocol import (
    ConsumeFromWhere,
    MessageModel,
    MessageQueue,
    NotifyConsumerIdsChangedRequestHeader,
    RequestCode,
    ResponseCode,
    make_request,
)

from .helpers import FakeBroker, MemoryStore, fake_brokers, name_server, record, run, wait_for

MQ = MessageQueue("T", "broker-a", 1)
HEADER = {"suggestWhichBrokerId": "0", "nextBeginOffset": "9", "minOffset": "0",
          "maxOffset": "12"}


# -- decoding pull responses (pure) -------------------------------------------------------------


def test_found_messages_are_refiltered_by_tag_and_get_min_max_offsets() -> None:
    body = b"".join([record("T", 1, 5, b"a", {"TAGS": "A", "UNIQ_KEY": "U1"}),
                     record("T", 1, 6, b"b", {"TAGS": "B"}),  # a hash collision let it through
                     record("T", 1, 7, b"c", {})])
    result = decode_pull_response(ResponseCode.SUCCESS, HEADER, body, MQ, frozenset({"A"}))
    assert result.status is PullStatus.FOUND and result.next_begin_offset == 9
    assert [m.body for m in result.messages] == [b"a"]
    msg = result.messages[0]
    assert (msg.queue, msg.queue_offset, msg.msg_id, msg.tags) == (MQ, 5, "U1", "A")
    assert msg.properties["MIN_OFFSET"] == "0" and msg.properties["MAX_OFFSET"] == "12"
    assert msg.offset_msg_id.startswith("7F00000100002A9F")
    everything = decode_pull_response(ResponseCode.SUCCESS, HEADER, body, MQ)
    assert [m.body for m in everything.messages] == [b"a", b"b", b"c"]
    assert everything.messages[1].msg_id == everything.messages[1].offset_msg_id  # no UNIQ_KEY


def test_compressed_bodies_are_inflated_and_retry_topics_restored() -> None:
    packed = zlib.compress(b"x" * 5000)
    body = record("%RETRY%G", 0, 0, packed, {"RETRY_TOPIC": "T"}, reconsume_times=2,
                  sysflag=COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE)
    retry = MessageQueue("%RETRY%G", "broker-a", 0)
    (msg,) = decode_pull_response(ResponseCode.SUCCESS, HEADER, body, retry).messages
    assert msg.body == b"x" * 5000 and msg.topic == "T" and msg.is_retry
    assert msg.reconsume_times == 2 and msg.queue == retry
    lz4 = record("T", 0, 0, b"opaque", sysflag=COMPRESSED_FLAG | 0x100)
    (kept,) = decode_pull_response(ResponseCode.SUCCESS, HEADER, lz4, MQ).messages
    assert kept.body == b"opaque"  # LZ4 is not ours to inflate: handed over as stored


def test_the_other_pull_codes_and_bad_answers() -> None:
    statuses = {code: decode_pull_response(code, HEADER, None, MQ).status
                for code in (ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_RETRY_IMMEDIATELY,
                             ResponseCode.PULL_OFFSET_MOVED)}
    assert list(statuses.values()) == [PullStatus.NO_NEW_MSG, PullStatus.NO_MATCHED_MSG,
                                       PullStatus.OFFSET_ILLEGAL]
    good = record("T", 1, 5, b"a")
    with pytest.raises(MalformedResponse, match="pull body"):
        decode_pull_response(ResponseCode.SUCCESS, HEADER, good[:-1], MQ)
    with pytest.raises(MalformedResponse, match="is missing"):
        decode_pull_response(ResponseCode.SUCCESS, {"minOffset": "0"}, good, MQ)
    with pytest.raises(MalformedResponse, match="not a pull status"):
        decode_pull_response(ResponseCode.SYSTEM_ERROR, HEADER, None, MQ)
    broken = record("T", 0, 0, b"not zlib", sysflag=COMPRESSED_FLAG)
    with pytest.raises(MalformedResponse, match="inflate"):
        decode_pull_response(ResponseCode.SUCCESS, HEADER, broken, MQ)


# -- process queues, subscriptions, offset files (pure) -----------------------------------------


def message(offset: int) -> ReceivedMessage:
    (msg,) = decode_pull_response(ResponseCode.SUCCESS, HEADER, record("T", 1, offset, b"m"),
                                  MQ).messages
    return msg


def test_offsets_never_pass_a_message_still_being_consumed() -> None:
    pq = ProcessQueue(MQ, 10)
    assert pq.finish([]) is None  # nothing pulled yet: nothing to commit
    pq.put([message(o) for o in (10, 11, 12, 13)])
    pq.put([message(12)])  # a duplicate is ignored
    assert len(pq) == 4
    assert pq.finish([12]) == 10  # 10 and 11 are still in flight
    assert pq.finish([11]) == 10
    assert pq.finish([10]) == 13
    assert pq.finish([13]) == 14  # all done: one past the largest pulled


def test_subscriptions_parse_tags_and_versions_always_grow() -> None:
    subs = Subscriptions()
    first = subs.add("T", "A || B ||  ")
    assert first.tags_set == ("A", "B") and first.code_set == (65, 66)
    second = subs.add("T", None)
    assert second.sub_string == "*" and second.tags_set == ()
    assert second.sub_version > first.sub_version
    assert list(subs) == ["T"] and retry_topic("G") == "%RETRY%G"


def test_broadcast_offsets_live_in_a_local_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalOffsetStore("G", tmp_path)
        assert await store.read_store(MQ) is None
        store.update(MQ, 7)
        store.update(MQ, 5, increase_only=True)  # never backwards
        store.update(MQ, -1)  # never negative
        await store.persist([MQ], wait=True)
        table = json.loads((tmp_path / "G" / "offsets.json").read_text())
        assert table == {"offsetTable": [{"brokerName": "broker-a", "offset": 7, "queueId": 1,
                                          "topic": "T"}]}
        assert await LocalOffsetStore("G", tmp_path).read_store(MQ) == 7
        (tmp_path / "G" / "offsets.json").write_text("{not json")
        assert await LocalOffsetStore("G", tmp_path).read_store(MQ) is None  # logged, ignored
        assert [p.name for p in (tmp_path / "G").iterdir()] == ["offsets.json"]  # no temp left
    run(scenario())


# -- consumers against a broker kept in memory ------------------------------------------------


@asynccontextmanager
async def memory_cluster(queues: int = 2, topic: str = "T",
                         ) -> AsyncIterator[tuple[NameServer, FakeBroker, MemoryStore]]:
    store = MemoryStore()
    async with name_server() as ns, fake_brokers("broker-a", handler=store.handle) as (broker,):
        await broker.register(ns, {topic: (queues, queues, 6), retry_topic("G"): (1, 1, 6)})
        yield ns, broker, store


@pytest.mark.integration
def test_assigned_queues_are_polled_committed_and_sought() -> None:
    async def scenario() -> None:
        async with memory_cluster() as (ns, _broker, store):
            for i in range(5):
                store.append("T", i % 2, b"m%d" % i, {"TAGS": "AB"[i % 2]})
            consumer = AsyncPullConsumer("G", ns.address, auto_commit=False,
                                         consume_from=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
            async with consumer:
                queues = await consumer.fetch_queues("T")
                assert [q.queue_id for q in queues] == [0, 1]
                await consumer.assign(queues)
                got = await consumer.poll(timeout_s=2)
                while len(got) < 5:
                    more = await consumer.poll(timeout_s=2)
                    assert more, f"only {len(got)} of 5 messages"
                    got += more
                assert sorted(m.body for m in got) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
                assert await consumer.poll(timeout_s=0.3) == []
                committed = await consumer.commit()
                assert committed == {queues[0]: 3, queues[1]: 2}
                assert store.offsets[("G", "T", 0)] == 3 and store.offsets[("G", "T", 1)] == 2
                consumer.seek(queues[0], 1)
                again = await consumer.poll(timeout_s=2)
                assert [m.body for m in again] == [b"m2", b"m4"]
                with pytest.raises(ValueError, match="exclusive"):
                    await consumer.subscribe("T")
            with pytest.raises(ConsumerClosed):
                await consumer.poll(0.1)
    run(scenario())


@pytest.mark.integration
def test_a_group_resumes_from_its_commit_and_filters_by_tag() -> None:
    async def scenario() -> None:
        async with memory_cluster(queues=1) as (ns, _broker, store):
            for i in range(6):
                store.append("T", 0, b"m%d" % i, {"TAGS": "AB"[i % 2]})
            store.consumer_ids["G"] = []  # filled once the consumer's id is known
            first = AsyncPullConsumer("G", ns.address, auto_commit=True,
                                      consume_from=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
            store.consumer_ids["G"] = [first.instance.client_id]
            async with first:
                await first.subscribe("T", "A")
                got = await first.poll(timeout_s=3, max_messages=2)
                assert [m.body for m in got] == [b"m0", b"m2"]
                assert first.assignment() == {MessageQueue("T", "broker-a", 0)}
            # closing committed the consumed position: m4's (m3 was filtered out)
            assert store.offsets[("G", "T", 0)] == 4
            second = AsyncPullConsumer("G", ns.address)
            store.consumer_ids["G"] = [second.instance.client_id]
            async with second:
                await second.subscribe("T", "A")
                assert [m.body for m in await second.poll(timeout_s=3)] == [b"m4"]
    run(scenario())


@pytest.mark.integration
def test_a_new_group_starts_at_the_end_and_the_broker_is_told_of_member_changes() -> None:
    async def scenario() -> None:
        async with memory_cluster(queues=4) as (ns, broker, store):
            store.append("T", 0, b"old")
            instance = ClientInstance(ns.address)
            consumer = AsyncPullConsumer("G", instance=instance)
            store.consumer_ids["G"] = [instance.client_id, "zzz@other"]
            await consumer.subscribe("T")
            await consumer.start()
            await wait_for(lambda: len(consumer.assignment()) == 2, what="half the queues")
            assert sorted(q.queue_id for q in consumer.assignment()) == [0, 1]
            assert await consumer.poll(timeout_s=1) == []  # "old" predates the group
            store.append("T", 0, b"new")
            assert [m.body for m in await consumer.poll(timeout_s=3)] == [b"new"]
            # the other member leaves; the broker says so; the consumer takes every queue
            store.consumer_ids["G"] = [instance.client_id]
            conn = broker.connections[-1]
            conn.oneway(make_request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, 0,
                                     NotifyConsumerIdsChangedRequestHeader("G").to_ext_fields(),
                                     oneway=True))
            await wait_for(lambda: len(consumer.assignment()) == 4, what="all four queues")
            await consumer.close()
            await instance.close()
            heartbeats = [r for r in broker.requests if r.code == RequestCode.HEART_BEAT]
            body = json.loads(bytes(heartbeats[0].body or b""))
            assert body["consumerDataSet"][0]["consumeType"] == "CONSUME_ACTIVELY"
            assert body["consumerDataSet"][0]["subscriptionDataSet"][0]["topic"] == "T"
            assert RequestCode.UNREGISTER_CLIENT in broker.codes()
    run(scenario())


async def push(ns: NameServer, listener: Callable[[ReceivedMessage], Any],
               **options: Any) -> AsyncPushConsumer:
    options.setdefault("persist_interval_s", 0.2)
    consumer = AsyncPushConsumer("G", ns.address, listener=listener,
                                 consume_from=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
                                 **options)
    consumer.subscribe("T", "*")
    return consumer


@pytest.mark.integration
def test_push_consumer_commits_and_sends_failures_back() -> None:
    async def scenario() -> None:
        async with memory_cluster() as (ns, _broker, store):
            for i in range(10):
                store.append("T", i % 2, b"m%d" % i)
            seen: list[bytes] = []
            lock = threading.Lock()

            def listener(msg: ReceivedMessage) -> ConsumeStatus | None:
                with lock:
                    seen.append(msg.body)
                if msg.body == b"m3":
                    return ConsumeStatus.RECONSUME_LATER
                if msg.body == b"m4":
                    raise RuntimeError("boom")  # an exception is a failure too
                return None

            consumer = await push(ns, listener)
            store.consumer_ids["G"] = [consumer.instance.client_id]
            await consumer.start()
            await wait_for(lambda: len(seen) >= 10 and len(store.sent_back) == 2, 10,
                           "every message consumed and the failures sent back")
            await wait_for(lambda: store.offsets.get(("G", "T", 0)) == 5
                           and store.offsets.get(("G", "T", 1)) == 5, 5, "offsets committed")
            assert sorted(seen) == sorted(b"m%d" % i for i in range(10))
            assert consumer.failed == 2 and consumer.sent_back == 2
            assert sorted(store.sent_back) == [3000, 4000]  # the failed records' log offsets
            await consumer.shutdown()
            sub = {s.topic for s in consumer.subscriptions.values()}
            assert sub == {"T", "%RETRY%G"}  # clustering consumers read their retry topic
    run(scenario())


@pytest.mark.integration
def test_broadcasting_consumers_each_get_everything_and_keep_offsets_locally(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with memory_cluster() as (ns, broker, store):
            for i in range(6):
                store.append("T", i % 2, b"m%d" % i)
            got: list[list[bytes]] = [[], []]

            def collect(n: int) -> Callable[[ReceivedMessage], None]:
                return lambda m: got[n].append(m.body)

            consumers = [await push(ns, collect(n), message_model=MessageModel.BROADCASTING,
                                    offset_dir=tmp_path / f"c{n}") for n in range(2)]
            for consumer in consumers:
                await consumer.start()
            await wait_for(lambda: all(len(g) == 6 for g in got), 10, "both consumers")
            for consumer in consumers:
                await consumer.shutdown()
            assert not any(key[0] == "G" for key in store.offsets)  # never at the broker
            saved = json.loads((tmp_path / "c0" / "G" / "offsets.json").read_text())
            assert sorted(e["offset"] for e in saved["offsetTable"]) == [3, 3]
            assert RequestCode.GET_CONSUMER_LIST_BY_GROUP not in broker.codes()
    run(scenario())


@pytest.mark.integration
def test_orderly_consumption_keeps_queue_order_and_retries_in_place() -> None:
    async def scenario() -> None:
        async with memory_cluster(queues=1) as (ns, broker, store):
            for i in range(8):
                store.append("T", 0, b"m%d" % i)
            seen: list[tuple[bytes, int]] = []
            failures = {b"m2": 2}

            def listener(msg: ReceivedMessage) -> bool:
                seen.append((msg.body, msg.reconsume_times))
                if failures.get(msg.body, 0) > 0:
                    failures[msg.body] -= 1
                    return False
                return True

            consumer = await push(ns, listener, orderly=True, suspend_current_queue_s=0.05,
                                  consume_threads=3)
            store.consumer_ids["G"] = [consumer.instance.client_id]
            await consumer.start()
            await wait_for(lambda: len(seen) == 10, 10, "every message, two retries")
            await wait_for(lambda: store.offsets.get(("G", "T", 0)) == 8, 5, "offset 8")
            await consumer.shutdown()
            assert [body for body, _ in seen] == [
                b"m0", b"m1", b"m2", b"m2", b"m2", b"m3", b"m4", b"m5", b"m6", b"m7"]
            assert [n for body, n in seen if body == b"m2"] == [0, 1, 2]
            assert store.sent_back == []  # orderly failures are retried locally
            assert ("G", MessageQueue("T", "broker-a", 0)) in store.locks
            assert RequestCode.UNLOCK_BATCH_MQ in broker.codes()
    run(scenario())


@pytest.mark.integration
def test_an_orderly_queue_locked_by_another_client_is_not_consumed() -> None:
    async def scenario() -> None:
        async with memory_cluster(queues=1) as (ns, broker, store):
            store.append("T", 0, b"m0")
            store.locks[("G", MessageQueue("T", "broker-a", 0))] = "someone@else"
            seen: list[bytes] = []
            consumer = await push(ns, lambda m: seen.append(m.body), orderly=True)
            store.consumer_ids["G"] = [consumer.instance.client_id]
            await consumer.start()
            await wait_for(lambda: RequestCode.LOCK_BATCH_MQ in broker.codes(), 5, "a lock try")
            await asyncio.sleep(0.3)
            assert {q for q in consumer.queues if q.topic == "T"} == set() and seen == []
            await consumer.shutdown()
    run(scenario())


@pytest.mark.integration
def test_shutdown_lets_listeners_in_progress_finish_and_commits_them() -> None:
    async def scenario() -> None:
        async with memory_cluster(queues=1) as (ns, _broker, store):
            store.append("T", 0, b"slow")
            started, finished = threading.Event(), threading.Event()

            def listener(msg: ReceivedMessage) -> None:
                started.set()
                finished.wait(5)

            consumer = await push(ns, listener, persist_interval_s=60)
            store.consumer_ids["G"] = [consumer.instance.client_id]
            await consumer.start()
            await wait_for(started.is_set, 5, "the listener to start")
            asyncio.get_running_loop().call_later(0.3, finished.set)
            await consumer.shutdown()
            assert finished.is_set() and store.offsets[("G", "T", 0)] == 1
    run(scenario())
