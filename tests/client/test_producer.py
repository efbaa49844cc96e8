"""Tests of shmq/client/producer.py: message preparation (pure), then sends through a real name
server to fake brokers in this process (queue choice, retries, timeouts, TBW102), then the
synchronous facade."""

from __future__ import annotations

import asyncio
import concurrent.futures
import zlib
from collections import Counter
from collections.abc import Iterator

import pytest

from shmq.client.errors import (
    ERRORS_BY_CODE,
    BrokerError,
    BrokerUnreachable,
    InvalidMessage,
    MessageIllegal,
    ProducerClosed,
    SendTimeout,
    SystemBusy,
    TopicNotExist,
    error_for_response,
)
from shmq.client.loop import LoopThread
from shmq.client.message import Message
from shmq.client.producer import (
    COMPRESSION_ZLIB_TYPE,
    AsyncProducer,
    Producer,
    prepare_batch,
    prepare_message,
    select_by_hash,
)
from shmq.message.batch import decode_batch_body
from shmq.message.layout import COMPRESSED_FLAG
from shmq.message.msgid import UniqKeyGenerator
from shmq.message.properties import decode_properties
from shmq.message.taghash import java_string_hash
from shmq.namesrv import NameServer
from shmq.protocol import (
    MessageQueue,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SendMessageRequestHeaderV2,
    make_request,
    make_response,
)

from .helpers import FakeBroker, Handler, fake_brokers, name_server, run, stored

UNIQ = UniqKeyGenerator("127.0.0.1")


# -- preparing messages (pure) ---------------------------------------------------------------


def test_a_message_gets_its_uniq_key_tags_and_keys() -> None:
    out = prepare_message("T", Message(b"hi", "TagA", ["k1", "k2"], {"p": "v"}, flag=7), UNIQ,
                          delay_level=3)
    props = decode_properties(out.properties.encode())
    assert props == {"p": "v", "TAGS": "TagA", "KEYS": "k1 k2", "DELAY": "3",
                     "UNIQ_KEY": out.uniq_keys[0]}
    assert len(out.uniq_keys[0]) == 32 and out.flag == 7 and out.sys_flag == 0
    assert out.body == b"hi" and not out.batch


def test_bodies_of_4_kib_and_more_are_zlib_compressed_like_java() -> None:
    small = prepare_message("T", Message(b"x" * 4095), UNIQ)
    assert small.sys_flag == 0 and small.body == b"x" * 4095
    big = prepare_message("T", Message(b"x" * 4096), UNIQ)
    assert big.sys_flag == COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE
    assert zlib.decompress(big.body) == b"x" * 4096 and len(big.body) < 100


@pytest.mark.parametrize("topic", ["", "a b", "x" * 128, "SCHEDULE_TOPIC_XXXX", "TBW102"])
def test_bad_topics_are_refused_before_sending(topic: str) -> None:
    with pytest.raises(InvalidMessage, match="topic"):
        prepare_message(topic, Message(b"x"), UNIQ)


def test_empty_oversized_and_unencodable_messages_are_refused() -> None:
    with pytest.raises(InvalidMessage, match="empty"):
        prepare_message("T", Message(b""), UNIQ)
    with pytest.raises(InvalidMessage, match="exceeds the 10-byte limit"):
        prepare_message("T", Message(b"x" * 11), UNIQ, max_body_bytes=10)
    with pytest.raises(InvalidMessage, match="properties"):
        prepare_message("T", Message(b"x", properties={"a\x01": "b"}), UNIQ)


def test_a_batch_body_holds_each_message_with_its_own_uniq_key() -> None:
    out = prepare_batch("T", [Message(b"a", "A"), Message(b"b" * 5000, keys="k", flag=2)], UNIQ)
    assert out.batch and out.sys_flag == 0 and out.properties == ""
    entries = decode_batch_body(out.body)
    assert [e.body for e in entries] == [b"a", b"b" * 5000]  # never compressed
    assert [e.flag for e in entries] == [0, 2]
    assert [e.properties["UNIQ_KEY"] for e in entries] == out.uniq_keys
    assert len(set(out.uniq_keys)) == 2
    assert entries[0].properties["TAGS"] == "A" and entries[1].properties["KEYS"] == "k"


def test_batches_refuse_delay_retry_topics_and_emptiness() -> None:
    with pytest.raises(InvalidMessage, match="delayed"):
        prepare_batch("T", [Message(b"a", properties={"DELAY": "1"})], UNIQ)
    with pytest.raises(InvalidMessage, match="retry topic"):
        prepare_batch("%RETRY%g", [Message(b"a")], UNIQ)
    with pytest.raises(InvalidMessage, match="at least one"):
        prepare_batch("T", [], UNIQ)
    with pytest.raises(InvalidMessage, match="batch body"):
        prepare_batch("T", [Message(b"a" * 8), Message(b"b" * 8)], UNIQ, max_body_bytes=40)


def test_sharding_keys_select_queues_like_javas_select_by_hash() -> None:
    for key in ["abc", "order-1", "zzzzzzzzzz", "polygenelubricants", ""]:
        h = java_string_hash(key)
        java_mod = int(abs(h) % 7) * (1 if h >= 0 else -1)
        assert select_by_hash(key, 7) == abs(java_mod)
    assert select_by_hash("abc", 4) == 96354 % 4


def test_response_codes_map_to_typed_errors() -> None:
    request = make_request(RequestCode.SEND_MESSAGE_V2, 1)
    busy = error_for_response(make_response(request, ResponseCode.SYSTEM_BUSY, "busy"), "b:1", 310)
    assert isinstance(busy, SystemBusy) and busy.retriable and busy.code == 2
    assert "SYSTEM_BUSY (2)" in str(busy) and "SEND_MESSAGE_V2" in str(busy)
    odd = error_for_response(make_response(request, 777, None), "b:1", 310)
    assert type(odd) is BrokerError and odd.code == 777 and not odd.retriable
    gone = error_for_response(make_response(request, ResponseCode.TOPIC_NOT_EXIST), "b:1", 310)
    assert isinstance(gone, TopicNotExist) and gone.refresh_route
    assert not ERRORS_BY_CODE[ResponseCode.MESSAGE_ILLEGAL].retriable
    assert all(cls.response_code == code for code, cls in ERRORS_BY_CODE.items())


# -- sending to fake brokers --------------------------------------------------------------------


def header(request: RemotingCommand) -> SendMessageRequestHeaderV2:
    return SendMessageRequestHeaderV2.from_ext_fields(request.ext_fields)


def answer(code: int) -> Handler:
    def handler(broker: FakeBroker, request: RemotingCommand) -> RemotingCommand:
        return make_response(request, code, f"{broker.name} says {code}")
    return handler


@pytest.mark.integration
def test_round_robin_over_every_master_queue_with_v2_headers() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a", "broker-b") as (a, b):
            await a.register(ns, {"T": (2, 2, 6)})
            await b.register(ns, {"T": (2, 2, 6)})
            async with AsyncProducer("P", ns.address) as producer:
                results = [await producer.send("T", b"m%d" % i, tags="A") for i in range(8)]
            assert {r.status for r in results} == {"SEND_OK"}
            used = Counter((h.b, broker.name, h.e) for broker in (a, b)
                           for h in map(header, broker.sends))
            assert sorted(used.values()) == [2, 2, 2, 2] and len(used) == 4
            first = header(a.sends[0])
            assert (first.a, first.b, first.c, first.d) == ("P", "T", "TBW102", 4)
            assert a.sends[0].code == RequestCode.SEND_MESSAGE_V2
            uniq = [decode_properties((header(r).i or "").encode())["UNIQ_KEY"]
                    for r in a.sends + b.sends]
            assert sorted(uniq) == sorted(r.msg_id for r in results)
    run(scenario())


@pytest.mark.integration
def test_a_busy_broker_is_retried_on_the_other_one() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a") as (a,), \
                fake_brokers("broker-b", handler=answer(ResponseCode.SYSTEM_BUSY)) as (b,):
            await a.register(ns, {"T": (1, 1, 6)})
            await b.register(ns, {"T": (1, 1, 6)})
            async with AsyncProducer("P", ns.address, retry_times=2) as producer:
                for i in range(6):
                    assert (await producer.send("T", b"x")).status == "SEND_OK"
                assert len(a.sends) == 6 and 1 <= len(b.sends) <= 6
                none_left = AsyncProducer("P", ns.address, retry_times=0,
                                          instance=producer.instance)
                with pytest.raises(SystemBusy):
                    for _ in range(4):  # round robin reaches broker-b within two sends
                        await none_left.send("T", b"x")
    run(scenario())


@pytest.mark.integration
def test_a_refused_message_is_not_retried() -> None:
    async def scenario() -> None:
        async with name_server() as ns, \
                fake_brokers("broker-a", handler=answer(ResponseCode.MESSAGE_ILLEGAL)) as (a,):
            await a.register(ns, {"T": (4, 4, 6)})
            async with AsyncProducer("P", ns.address) as producer:
                with pytest.raises(MessageIllegal, match="broker-a says 13"):
                    await producer.send("T", b"x")
            assert len(a.sends) == 1
    run(scenario())


@pytest.mark.integration
def test_a_silent_broker_times_out_or_is_retried_elsewhere() -> None:
    def silent(broker: FakeBroker, request: RemotingCommand) -> None:
        return None

    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a", handler=silent) as (a,), \
                fake_brokers("broker-b") as (b,):
            await a.register(ns, {"T": (1, 1, 6)})
            async with AsyncProducer("P", ns.address, send_timeout_s=0.5) as producer:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(SendTimeout, match="may or may not"):
                    await producer.send("T", b"x")
                assert 0.4 < loop.time() - started < 2.0
            await b.register(ns, {"T": (1, 1, 6)})
            async with AsyncProducer("P", ns.address, send_timeout_s=3,
                                     attempt_timeout_s=0.3) as producer:
                for _ in range(4):
                    assert (await producer.send("T", b"x")).status == "SEND_OK"
                assert len(b.sends) == 4
    run(scenario())


@pytest.mark.integration
def test_a_dead_broker_is_skipped() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a", "broker-b") as (a, b):
            await a.register(ns, {"T": (1, 1, 6)})
            await b.register(ns, {"T": (1, 1, 6)})
            assert a.server is not None
            await a.server.aclose()  # still registered, but refuses connections
            async with AsyncProducer("P", ns.address) as producer:
                for _ in range(4):
                    assert (await producer.send("T", b"x")).status == "SEND_OK"
                with pytest.raises(BrokerUnreachable):
                    await producer.send("T", b"x", queue=MessageQueue("T", "broker-a", 0))
            assert len(b.sends) == 4
    run(scenario())


@pytest.mark.integration
def test_an_unknown_topic_is_sent_through_tbw102() -> None:
    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a") as (a,):
            await a.register(ns, {"TBW102": (8, 8, 7)})
            async with AsyncProducer("P", ns.address) as producer:
                for _ in range(8):
                    await producer.send("Fresh", b"x")
            ids = {header(r).e for r in a.sends}
            assert ids == {0, 1, 2, 3}  # capped at defaultTopicQueueNums
            assert {(header(r).b, header(r).c, header(r).d) for r in a.sends} == {
                ("Fresh", "TBW102", 4)}
    run(scenario())


@pytest.mark.integration
def test_explicit_queues_selectors_sharding_keys_and_batches() -> None:
    def batch_aware(broker: FakeBroker, request: RemotingCommand) -> RemotingCommand:
        if request.code != RequestCode.SEND_BATCH_MESSAGE:
            return stored(broker, request)
        n = len(decode_batch_body(request.body or b""))
        ids = ",".join(f"7F00000100002A9F{i * 100:016X}" for i in range(n))
        return make_response(request, ResponseCode.FLUSH_DISK_TIMEOUT, ext_fields={
            "msgId": ids, "queueId": str(header(request).e), "queueOffset": "40"})

    async def scenario() -> None:
        async with name_server() as ns, fake_brokers("broker-a", handler=batch_aware) as (a,):
            await a.register(ns, {"T": (8, 8, 6)})
            async with AsyncProducer("P", ns.address) as producer:
                await producer.send("T", b"x", queue=5)
                await producer.send("T", b"x", queue=lambda qs: qs[-1])
                await producer.send("T", b"x", queue=MessageQueue("T", "broker-a", 2))
                for _ in range(3):
                    await producer.send("T", b"x", sharding_key="order-42")
                with pytest.raises(InvalidMessage, match="queue index 8"):
                    await producer.send("T", b"x", queue=8)
                result = await producer.send_batch("T", [b"a", Message(b"b", "B")], queue=3)
                await producer.send_oneway("T", b"one", queue=1)
                await asyncio.sleep(0.2)
            ids = [header(r).e for r in a.sends]
            assert ids[:3] == [5, 7, 2]
            assert ids[3:6] == [select_by_hash("order-42", 8)] * 3
            assert a.sends[6].code == RequestCode.SEND_BATCH_MESSAGE and header(a.sends[6]).m
            assert result.status == "FLUSH_DISK_TIMEOUT" and len(result) == 2
            assert result.queue_id == 3 and result.queue_offset == 40
            assert [r.queue_offset for r in result.results] == [40, 41]
            assert result.offset_msg_ids[1].endswith("64")
            assert ids[7] == 1 and a.sends[7].is_oneway
    run(scenario())


# -- the synchronous facade -------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[tuple[str, list[FakeBroker]]]:
    """A name server and two fake brokers on a background loop (sync code calls them)."""
    thread = LoopThread("test-cluster")
    brokers = [FakeBroker("broker-a"), FakeBroker("broker-b")]
    ns = NameServer("127.0.0.1", 0)

    async def up() -> None:
        await ns.start()
        for broker in brokers:
            await broker.start()
            await broker.register(ns, {"T": (2, 2, 6)})

    async def down() -> None:
        for broker in brokers:
            await broker.aclose()
        await ns.aclose()

    thread.run(up(), 10)
    try:
        yield ns.address, brokers
    finally:
        thread.run(down(), 10)
        thread.close()


@pytest.mark.integration
def test_the_sync_producer(cluster: tuple[str, list[FakeBroker]]) -> None:
    namesrv, brokers = cluster
    with Producer("P", namesrv) as producer:
        assert producer.send("T", b"sync").status == "SEND_OK"
        futures = [producer.send_async("T", b"async %d" % i) for i in range(20)]
        done, _ = concurrent.futures.wait(futures, timeout=10)
        assert len(done) == 20 and all(f.result().status == "SEND_OK" for f in futures)
        called: list[object] = []
        producer.send_async("T", b"cb", callback=called.append).result(5)
        assert len(called) == 1
        batch = producer.send_batch("T", [b"1", b"2"])
        assert len(batch) == 2 and batch.status == "SEND_OK"
        assert len(producer.publish_queues("T")) == 4
        with pytest.raises(InvalidMessage):
            producer.send("T", b"")
    assert sum(len(b.sends) for b in brokers) == 23
    with pytest.raises(ProducerClosed):
        producer.send("T", b"after close")
    with pytest.raises(ProducerClosed):
        producer.send_async("T", b"after close")
    producer.close()  # idempotent
