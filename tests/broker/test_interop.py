"""Acceptance with the real RocketMQ C++ client (rocketmq==0.4.4) against `shmq start`.

Clients run in subprocesses (tests/broker/cpp_clients.py) with a deadline, and their output
is the evidence: what the producer was told, what each consumer received.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shmq.protocol import CreateTopicRequestHeader, RequestCode, ResponseCode, make_request
from shmq.testing.broker import BrokerProcess, running_broker

from . import cpp_clients as cpp
from .helpers import run
from .test_acceptor import address, broker_env, call

pytestmark = [pytest.mark.integration, pytest.mark.interop]

CLIENT_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("interop"), writers=2,
                        env=broker_env()) as running:
        yield running


@pytest.fixture
def clients() -> Iterator[list[cpp.ClientRun]]:
    """Client processes a test started; whatever is still running at the end is killed."""
    started: list[cpp.ClientRun] = []
    yield started
    for client in started:
        if client.proc.poll() is None:
            cpp.kill(client)
        cpp.finish(client, 10)


def namesrv(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env.get('SHMQ_NAMESRV_PORT', '9876')}"


def messages(count: int, run: str, tags: str = "ABC") -> list[dict[str, Any]]:
    return [{"body": f"body-{run}-{i}", "tags": tags[i % len(tags)], "keys": f"key{i} alt{i}",
             "props": {"acc_seq": str(i), "acc_run": run, "acc_prop": f"p{i}"}}
            for i in range(count)]


def produce(broker: BrokerProcess, home: Path, topic: str, items: list[dict[str, Any]],
            **extra: Any) -> dict[str, str]:
    args = {"group": "acc-producer", "namesrv": namesrv(broker), "topic": topic,
            "messages": items, **extra}
    client = cpp.start(cpp.PRODUCER, json.dumps(args), home)
    lines = cpp.finish(client, CLIENT_TIMEOUT_S)
    statuses = cpp.sent(lines)
    assert statuses == {str(i): "OK" for i in range(len(items))}, \
        "\n".join(lines) + "\n" + client.log_tail()
    return statuses


def consumer(broker: BrokerProcess, home: Path, topic: str, group: str,
             started: list[cpp.ClientRun], **extra: Any) -> cpp.ClientRun:
    args = {"group": group, "namesrv": namesrv(broker), "topic": topic, "seconds": 40,
            **extra}
    client = cpp.start(cpp.CONSUMER, json.dumps(args), home)
    started.append(client)
    return client


def consume(client: cpp.ClientRun) -> list[dict[str, Any]]:
    lines = cpp.finish(client, CLIENT_TIMEOUT_S)
    assert "DONE" in lines, "\n".join(lines[-30:]) + "\n" + client.log_tail()
    return cpp.received(lines)


def test_clustering_consumer_gets_exactly_the_matching_messages(
        broker: BrokerProcess, tmp_path: Path,
        clients: list[cpp.ClientRun]) -> None:
    items = messages(30, "r1")
    produce(broker, tmp_path / "producer", "AccTags", items)
    wanted = [item for item in items if item["tags"] in ("A", "C")]
    got = consume(consumer(broker, tmp_path / "consumer", "AccTags", "acc-tags", clients,
                           expression="A || C", expect=len(wanted)))
    assert Counter(m["seq"] for m in got) == Counter(i["props"]["acc_seq"] for i in wanted)
    by_seq = {m["seq"]: m for m in got}
    for item in wanted:
        m = by_seq[item["props"]["acc_seq"]]
        assert (m["body"], m["tags"], m["keys"], m["run"], m["prop"]) == (
            item["body"], item["tags"], item["keys"], "r1", item["props"]["acc_prop"])
        assert m["reconsume"] == 0
    # per queue, in stored order
    for queue in {m["queue"] for m in got}:
        offsets = [m["offset"] for m in got if m["queue"] == queue]
        assert offsets == sorted(offsets)


def create_topic(broker: BrokerProcess, topic: str, queues: int = 4) -> None:
    """Create `topic` through the broker, so that consumers find its route at start (they
    look routes up again only every 30 s)."""
    request = make_request(RequestCode.UPDATE_AND_CREATE_TOPIC, 0, CreateTopicRequestHeader(
        topic, "TBW102", queues, queues, 6, "SINGLE_TAG").to_ext_fields())
    response = run(call(address(broker), request))
    assert response.code == ResponseCode.SUCCESS, response.remark


def test_batches_from_the_cpp_producer_arrive_message_by_message(
        broker: BrokerProcess, tmp_path: Path,
        clients: list[cpp.ClientRun]) -> None:
    items = messages(20, "batch", tags="AB")
    for item in items[:10]:
        item["body"] = item["body"] + "-" + "x" * 1000  # > 4 KiB in all: deflated as a whole
    produce(broker, tmp_path / "producer", "AccBatch", items,
            batches=[list(range(10)), list(range(10, 20))])
    got = consume(consumer(broker, tmp_path / "consumer", "AccBatch", "acc-batch", clients,
                           expression="A", expect=10))
    assert Counter(m["seq"] for m in got) == Counter(str(i) for i in range(0, 20, 2))
    by_seq = {m["seq"]: m for m in got}
    for item in items[::2]:
        m = by_seq[item["props"]["acc_seq"]]
        assert (m["body"], m["keys"], m["prop"]) == (
            item["body"], item["keys"], item["props"]["acc_prop"])


def test_two_consumers_of_a_group_split_the_queues(
        broker: BrokerProcess, tmp_path: Path,
        clients: list[cpp.ClientRun]) -> None:
    create_topic(broker, "AccSplit")
    first = consumer(broker, tmp_path / "c1", "AccSplit", "acc-split", clients, instance="one",
                     seconds=25)
    second = consumer(broker, tmp_path / "c2", "AccSplit", "acc-split", clients, instance="two",
                      seconds=25)
    try:
        assert cpp.wait_for_line(first, "STARTED", 20)
        assert cpp.wait_for_line(second, "STARTED", 20)
        time.sleep(3)  # both registered and rebalanced (NOTIFY_CONSUMER_IDS_CHANGED)
        items = messages(40, "split", tags="A")
        produce(broker, tmp_path / "producer", "AccSplit", items)
    finally:
        got_first = consume(first)
        got_second = consume(second)
    queues_first = {m["queue"] for m in got_first}
    queues_second = {m["queue"] for m in got_second}
    assert got_first and got_second, (queues_first, queues_second)
    assert not queues_first & queues_second
    seqs = Counter(m["seq"] for m in got_first + got_second)
    assert seqs == Counter(str(i) for i in range(40))


def test_broadcasting_consumers_each_get_everything(
        broker: BrokerProcess, tmp_path: Path,
        clients: list[cpp.ClientRun]) -> None:
    # broadcasting consumers keep offsets client-side and start at the queues' end, so the
    # messages come after they started
    create_topic(broker, "AccBroadcast")
    runs = [consumer(broker, tmp_path / f"c{i}", "AccBroadcast", "acc-broadcast", clients,
                     instance=f"b{i}", broadcasting=True, expect=12, seconds=30)
            for i in range(2)]
    for client in runs:
        assert cpp.wait_for_line(client, "STARTED", 20)
    time.sleep(3)
    produce(broker, tmp_path / "producer", "AccBroadcast", messages(12, "bc", tags="A"))
    for client in runs:
        got = consume(client)
        assert Counter(m["seq"] for m in got) == Counter(str(i) for i in range(12))


def test_orderly_consumer_gets_each_queue_in_order(
        broker: BrokerProcess, tmp_path: Path,
        clients: list[cpp.ClientRun]) -> None:
    items = messages(20, "ord", tags="A")
    for i, item in enumerate(items):
        item["shard"] = i % 2  # two ordered streams
    produce(broker, tmp_path / "producer", "AccOrderly", items, orderly=True)
    got = consume(consumer(broker, tmp_path / "consumer", "AccOrderly", "acc-orderly", clients,
                           orderly=True, expect=20))
    assert Counter(m["seq"] for m in got) == Counter(str(i) for i in range(20))
    for queue in {m["queue"] for m in got}:
        in_queue = [int(m["seq"]) for m in got if m["queue"] == queue]
        assert in_queue == sorted(in_queue), f"queue {queue} out of order: {in_queue}"


def test_a_failed_message_comes_back_through_the_retry_topic(
        broker: BrokerProcess, tmp_path: Path,
        clients: list[cpp.ClientRun]) -> None:
    items = messages(5, "retry", tags="A")
    produce(broker, tmp_path / "producer", "AccRetry", items)
    got = consume(consumer(broker, tmp_path / "consumer", "AccRetry", "acc-retry", clients,
                           fail=["3"], expect=5))
    assert [m["reconsume"] for m in got if m["seq"] == "3"] == [0, 1]
    retried = [m for m in got if m["seq"] == "3"][1]
    assert retried["topic"] == "AccRetry" and retried["body"] == "body-retry-3"
    assert Counter(m["seq"] for m in got if m["reconsume"] == 0) == Counter(
        str(i) for i in range(5))


def test_messages_survive_a_broker_restart_between_produce_and_consume(
        tmp_path: Path, clients: list[cpp.ClientRun]) -> None:
    env = broker_env()
    instance = "ti" + uuid.uuid4().hex[:10]
    items = messages(15, "restart", tags="AB")
    with running_broker(tmp_path, writers=2, env=env, instance=instance) as broker:
        produce(broker, tmp_path / "producer", "AccRestart", items)
    with running_broker(tmp_path, writers=2, env=env, instance=instance) as broker:
        got = consume(consumer(broker, tmp_path / "consumer", "AccRestart", "acc-restart", clients,
                               expression="B", expect=7))
    assert Counter(m["seq"] for m in got) == Counter(str(i) for i in range(1, 15, 2))
