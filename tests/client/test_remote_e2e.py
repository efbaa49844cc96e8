"""The remote clients end to end through a real `shmq start` (name server, acceptor, writers):
send, pull, offsets, tag filtering, push consumers, and the C++ reference client on the other
side of the same broker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shmq.client import (
    AsyncPullConsumer,
    ConsumeStatus,
    Message,
    Producer,
    PullConsumer,
    PushConsumer,
    ReceivedMessage,
)
from shmq.client.consumer_api import ConsumerApi
from shmq.client.instance import ClientInstance
from shmq.protocol import ConsumeFromWhere, MessageModel, MessageQueue, SubscriptionData
from shmq.testing.broker import BrokerProcess, running_broker

from ..broker import cpp_clients as cpp
from ..broker.test_acceptor import broker_env
from ..broker.test_interop import consume, consumer, create_topic, messages, produce
from .helpers import run

pytestmark = pytest.mark.integration

FIRST = ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("remote"), writers=2,
                        env=broker_env()) as running:
        yield running


def namesrv(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env['SHMQ_NAMESRV_PORT']}"


def poll_all(c: PullConsumer, count: int, timeout_s: float = 15.0) -> list[ReceivedMessage]:
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += c.poll(timeout_s=min(2.0, max(deadline - time.monotonic(), 0.1)))
    return got


def wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def test_sent_messages_come_back_from_a_pull_consumer(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    with Producer("e2e-p", ns) as producer:
        sent = [producer.send("E2eTrip", b"body-%d" % i, tags="AB"[i % 2], keys=[f"k{i}"],
                              properties={"seq": str(i)}) for i in range(12)]
        big = producer.send("E2eTrip", Message(b"z" * 20_000, tags="A"))
        batch = producer.send_batch("E2eTrip", [Message(b"b0", "A"), Message(b"b1", "B")])
    assert {r.status for r in sent} == {"SEND_OK"} and len({r.queue_id for r in sent}) == 4
    with PullConsumer("e2e-trip", ns, consume_from=FIRST, auto_commit=False) as c:
        c.subscribe("E2eTrip", "*")
        got = poll_all(c, 15)
    assert len(got) == 15
    by_id = {m.msg_id: m for m in got}
    for i, result in enumerate(sent):
        m = by_id[result.msg_id]
        assert (m.body, m.tags, m.keys, m.properties["seq"]) == (
            b"body-%d" % i, "AB"[i % 2], [f"k{i}"], str(i))
        assert (m.queue_id, m.queue_offset, m.offset_msg_id) == (
            result.queue_id, result.queue_offset, result.offset_msg_id)
        assert m.reconsume_times == 0 and m.store_host.startswith("127.0.0.1:")
    assert by_id[big.msg_id].body == b"z" * 20_000  # compressed on the wire, whole here
    assert [by_id[k].body for k in batch.msg_ids] == [b"b0", b"b1"]
    assert [by_id[k].queue_offset for k in batch.msg_ids] == [batch.queue_offset,
                                                              batch.queue_offset + 1]


def test_tags_are_filtered_by_the_broker_and_again_by_the_client(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    with Producer("e2e-p", ns) as producer:
        for i in range(9):
            producer.send("E2eTags", b"t%d" % i, tags="ABC"[i % 3], queue=0)
        producer.send("E2eTags", b"untagged", queue=0)
    with PullConsumer("e2e-tags", ns, consume_from=FIRST) as c:
        c.subscribe("E2eTags", "A || C")
        got = poll_all(c, 6)
    assert sorted(m.body for m in got) == [b"t0", b"t2", b"t3", b"t5", b"t6", b"t8"]

    async def raw_pull() -> list[bytes]:
        instance = ClientInstance(ns)
        try:
            await instance.routes.route("E2eTags")
            api = ConsumerApi(instance, "e2e-raw")
            # tags_set left empty: no client-side re-filter, we see what the broker sent
            sub = SubscriptionData("E2eTags", "B", (), (66,), 1)
            result = await api.pull(MessageQueue("E2eTags", "broker-a", 0), 0, sub)
            assert result.next_begin_offset == 10  # filtered entries are skipped for good
            return [m.body for m in result.messages]
        finally:
            await instance.close()

    assert run(raw_pull()) == [b"t1", b"t4", b"t7"]


def test_a_group_resumes_after_its_commit(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    with Producer("e2e-p", ns) as producer:
        for i in range(10):
            producer.send("E2eResume", b"r%d" % i, queue=i % 2)
    queues = [MessageQueue("E2eResume", "broker-a", q) for q in range(2)]
    with PullConsumer("e2e-resume", ns, consume_from=FIRST, auto_commit=False,
                      max_poll_messages=3) as c:
        c.assign(queues)
        first = poll_all(c, 3)
        committed = c.commit()
        assert sum(committed.values()) == 3
    with PullConsumer("e2e-resume", ns, consume_from=FIRST) as c:
        c.assign(queues)
        assert {q: c.committed(q) for q in queues} == committed
        rest = poll_all(c, 7)
    assert sorted(m.body for m in first + rest) == sorted(b"r%d" % i for i in range(10))


def test_long_polling_returns_as_soon_as_a_message_arrives(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    with Producer("e2e-p", ns) as producer, PullConsumer("e2e-long", ns) as c:
        producer.send("E2eLong", b"create the topic", queue=0)
        c.assign([MessageQueue("E2eLong", "broker-a", 0)])
        c.seek_to_end(MessageQueue("E2eLong", "broker-a", 0))
        assert c.poll(timeout_s=0.5) == []
        timer = threading.Timer(1.0, lambda: producer.send("E2eLong", b"late", queue=0))
        timer.start()
        started = time.monotonic()
        got = c.poll(timeout_s=10)
        elapsed = time.monotonic() - started
        timer.join()
    assert [m.body for m in got] == [b"late"]
    assert 0.8 < elapsed < 4.0, elapsed


def test_new_topics_are_created_through_tbw102_and_sharding_keys_pin_a_queue(
        broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    with Producer("e2e-p", ns) as producer:
        first = producer.send("E2eFresh", b"x")
        same = {producer.send("E2eFresh", b"k", sharding_key="customer-7").queue_id
                for _ in range(6)}
        assert first.status == "SEND_OK" and len(same) == 1
        queues = producer.publish_queues("E2eFresh")
    assert [q.queue_id for q in queues] == [0, 1, 2, 3]  # min(4, TBW102's 8)


def test_push_consumers_share_the_queues_and_failures_come_back(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    create_topic(broker, "E2ePush")
    seen: list[tuple[str, int, bytes, int, str]] = []
    lock = threading.Lock()

    def listener(name: str) -> Any:
        def on_message(m: ReceivedMessage) -> ConsumeStatus | None:
            with lock:
                seen.append((name, m.queue_id, m.body, m.reconsume_times, m.topic))
            if m.body == b"p3" and m.reconsume_times == 0:
                return ConsumeStatus.RECONSUME_LATER
            return None
        return on_message

    members = [PushConsumer("e2e-push", ns, listener=listener(n), consume_from=FIRST)
               for n in ("one", "two")]
    try:
        for member in members:
            member.subscribe("E2ePush", "*")
            member.start()
        wait(lambda: all(len([q for q in m.queues() if q.topic == "E2ePush"]) == 2
                         for m in members), 15, "two queues each")
        owned = [{q.queue_id for q in m.queues() if q.topic == "E2ePush"} for m in members]
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == {0, 1, 2, 3}
        with Producer("e2e-p", ns) as producer:
            for i in range(20):
                producer.send("E2ePush", b"p%d" % i)
        # p3 fails once, goes back through %RETRY%e2e-push (delay level 3: 10 s)
        wait(lambda: any(s[2] == b"p3" and s[3] == 1 for s in seen), 30, "p3 redelivered")
    finally:
        for member in members:
            member.shutdown()
    bodies = Counter(s[2] for s in seen)
    assert set(bodies) == {b"p%d" % i for i in range(20)}
    assert bodies[b"p3"] >= 2
    retried = [s for s in seen if s[2] == b"p3" and s[3] == 1]
    assert retried[0][4] == "E2ePush"  # the original topic, restored from RETRY_TOPIC
    for name, owned_ids in zip(("one", "two"), owned, strict=True):
        assert {s[1] for s in seen if s[0] == name and s[3] == 0} <= owned_ids


def test_broadcasting_consumers_each_get_every_message(broker: BrokerProcess,
                                                       tmp_path: Path) -> None:
    ns = namesrv(broker)
    create_topic(broker, "E2eBroadcast")
    got: list[list[bytes]] = [[], []]
    members = [PushConsumer("e2e-broadcast", ns, listener=lambda m, n=n: got[n].append(m.body),
                            message_model=MessageModel.BROADCASTING, consume_from=FIRST,
                            offset_dir=tmp_path / str(n)) for n in range(2)]
    try:
        for member in members:
            member.subscribe("E2eBroadcast")
            member.start()
        with Producer("e2e-p", ns) as producer:
            for i in range(8):
                producer.send("E2eBroadcast", b"b%d" % i)
        wait(lambda: all(len(g) >= 8 for g in got), 15, "both members")
    finally:
        for member in members:
            member.shutdown()
    assert all(sorted(g) == sorted(b"b%d" % i for i in range(8)) for g in got)
    table = json.loads((tmp_path / "0" / "e2e-broadcast" / "offsets.json").read_text())
    assert sum(e["offset"] for e in table["offsetTable"]) == 8


def test_an_orderly_consumer_sees_each_key_in_order(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    create_topic(broker, "E2eOrder")
    seen: list[tuple[str, int]] = []
    failed: set[int] = set()

    def on_message(m: ReceivedMessage) -> bool:
        key, seq = m.keys[0], int(m.properties["seq"])
        if seq == 5 and seq not in failed:
            failed.add(seq)
            return False  # suspends the queue a moment, then the same message again
        seen.append((key, seq))
        return True

    member = PushConsumer("e2e-order", ns, listener=on_message, orderly=True,
                          consume_from=FIRST, suspend_current_queue_s=0.1)
    try:
        member.subscribe("E2eOrder")
        member.start()
        with Producer("e2e-p", ns) as producer:
            for seq in range(30):
                key = f"key{seq % 3}"
                producer.send("E2eOrder", b"o", keys=key, sharding_key=key,
                              properties={"seq": str(seq)})
        wait(lambda: len(seen) >= 30, 20, "all 30 messages")
    finally:
        member.shutdown()
    for key in ("key0", "key1", "key2"):
        order = [seq for k, seq in seen if k == key]
        assert order == sorted(order) and len(order) == 10


def test_async_pull_consumer_in_an_asyncio_program(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    with Producer("e2e-p", ns) as producer:
        for i in range(4):
            producer.send("E2eAsync", b"a%d" % i)

    async def scenario() -> list[bytes]:
        async with AsyncPullConsumer("e2e-async", ns, consume_from=FIRST) as c:
            await c.subscribe("E2eAsync")
            got: list[bytes] = []
            while len(got) < 4:
                batch = await c.poll(timeout_s=3)
                assert batch, f"only {got}"
                got += [m.body for m in batch]
            return got

    assert sorted(run(scenario())) == [b"a0", b"a1", b"a2", b"a3"]


# -- the C++ reference client on the other side --------------------------------------------


@pytest.fixture
def cpp_runs() -> Iterator[list[cpp.ClientRun]]:
    started: list[cpp.ClientRun] = []
    yield started
    for client in started:
        if client.proc.poll() is None:
            cpp.kill(client)
        cpp.finish(client, 10)


@pytest.mark.interop
def test_what_the_cpp_producer_sends_our_consumer_reads(broker: BrokerProcess,
                                                        tmp_path: Path) -> None:
    items = messages(12, "cpp2py")
    produce(broker, tmp_path / "producer", "E2eFromCpp", items)
    with PullConsumer("e2e-from-cpp", namesrv(broker), consume_from=FIRST) as c:
        c.subscribe("E2eFromCpp", "A || B")
        got = poll_all(c, 8)
    wanted = [i for i in items if i["tags"] in ("A", "B")]
    assert sorted(m.properties["acc_seq"] for m in got) == sorted(
        i["props"]["acc_seq"] for i in wanted)
    for m in got:
        item = items[int(m.properties["acc_seq"])]
        assert (m.body.decode(), m.tags, " ".join(m.keys)) == (
            item["body"], item["tags"], item["keys"])
        assert len(m.msg_id) == 32  # the C++ client's UNIQ_KEY


@pytest.mark.interop
def test_what_we_send_the_cpp_consumer_reads(broker: BrokerProcess, tmp_path: Path,
                                             cpp_runs: list[cpp.ClientRun]) -> None:
    create_topic(broker, "E2eToCpp")
    ns = namesrv(broker)
    client = consumer(broker, tmp_path / "consumer", "E2eToCpp", "e2e-to-cpp", cpp_runs,
                      expect=10)
    time.sleep(3)  # let it join the group before we send
    with Producer("e2e-p", ns) as producer:
        for i in range(8):
            producer.send("E2eToCpp", f"body-{i}".encode(), tags="A", keys=f"key{i}",
                          properties={"acc_seq": str(i), "acc_run": "py2cpp"})
        producer.send_batch("E2eToCpp", [
            Message(f"body-{i}".encode(), "A", properties={"acc_seq": str(i),
                                                            "acc_run": "py2cpp"})
            for i in (8, 9)])
    got = consume(client)
    assert sorted(int(m["seq"]) for m in got) == list(range(10))
    assert {m["body"] for m in got} == {f"body-{i}" for i in range(10)}


def test_the_one_call_tools_for_the_cli(broker: BrokerProcess) -> None:
    from shmq.client.errors import NoRouteInfo
    from shmq.client.tools import consume_messages, message_record, send_messages, topic_route

    ns = namesrv(broker)
    results = send_messages(ns, "E2eTools", [b"one", b"two", b"\xff"], tags="T",
                            properties={"k": "v"})
    assert [r.status for r in results] == ["SEND_OK"] * 3
    route = topic_route(ns, "E2eTools")
    assert route["queueDatas"][0]["writeQueueNums"] == 4 and len(route["publishQueues"]) == 4
    with pytest.raises(NoRouteInfo):
        topic_route(ns, "E2eNoSuchTopic")
    got = [message_record(m) for m in consume_messages(ns, "E2eTools", count=3,
                                                       from_beginning=True, idle_timeout_s=3)]
    assert sorted(g["body"] for g in got) == ["ff", "one", "two"]
    assert {g["bodyEncoding"] for g in got if g["body"] == "ff"} == {"hex"}
    assert all(g["properties"]["k"] == "v" and g["tags"] == "T" for g in got)
    json.dumps(got)  # printable as JSON lines
    # without commit the group's offsets are untouched: the same messages again
    again = list(consume_messages(ns, "E2eTools", from_beginning=True, idle_timeout_s=2))
    assert len(again) == 3


def test_a_seek_during_a_held_pull_takes_effect_at_once(broker: BrokerProcess) -> None:
    ns = namesrv(broker)
    with Producer("e2e-p", ns) as producer:
        for i in range(3):
            producer.send("E2eSeek", b"s%d" % i, queue=0)
    mq = MessageQueue("E2eSeek", "broker-a", 0)

    async def scenario() -> tuple[list[bytes], float]:
        async with AsyncPullConsumer("e2e-seek", ns) as c:
            await c.assign([mq])
            await c.seek_to_end(mq)
            loop = asyncio.get_running_loop()
            started = loop.time()
            polling = asyncio.ensure_future(c.poll(timeout_s=12))
            await asyncio.sleep(0.5)  # the pull is now held at the broker
            c.seek(mq, 1)
            got = await polling
            return [m.body for m in got], loop.time() - started

    bodies, elapsed = run(scenario())
    assert bodies == [b"s1", b"s2"] and elapsed < 3.0, elapsed
