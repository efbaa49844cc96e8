"""`shmq admin` against a real broker: clusters, brokers, topics, consumer groups (progress,
connections, running info of a live push consumer, offset resets that live consumers obey)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from shmq.client import PushConsumer, ReceivedMessage
from shmq.protocol import ConsumeFromWhere
from shmq.testing.broker import BrokerProcess

from .helpers import Shmq, only_line, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def broker_addr(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env['SHMQ_BROKER_PORT']}"


def test_cluster_list(shmq: Shmq, broker: BrokerProcess) -> None:
    data = shmq.json("admin", "cluster", "list")
    [entry] = data["brokers"]
    assert (entry["cluster"], entry["brokerName"], entry["brokerId"], entry["addr"]) == (
        "DefaultCluster", "broker-a", 0, broker_addr(broker))
    assert entry["reachable"] and entry["runtime"]["brokerVersion"] == "407"
    text = shmq("admin", "cluster", "list").stdout
    assert "DefaultCluster" in text and broker_addr(broker) in text


def test_broker_status_and_config(shmq: Shmq, broker: BrokerProcess) -> None:
    shmq("produce", "AdmBroker", "-c", "2", "-q")
    addr = broker_addr(broker)
    status = shmq.json("admin", "broker", "status")[addr]
    assert status["brokerName"] == "broker-a"
    assert int(status["commitLogMaxOffset"]) > 0 and int(status["msgStoredTotal"]) >= 2
    assert int(status["bootTimestamp"]) <= int(time.time() * 1000)
    assert status["commitLogDirCapacity"].startswith("Total : ")
    by_name = shmq.json("admin", "broker", "status", "-b", "broker-a")
    assert list(by_name) == [addr]
    config = shmq.json("admin", "broker", "config", "-b", addr)[addr]
    assert config["brokerName"] == "broker-a" and config["listenPort"] == addr.split(":")[1]
    assert config["brokerClusterName"] == "DefaultCluster" and config["brokerId"] == "0"
    text = shmq("admin", "broker", "config").stdout
    assert text.splitlines()[0] == f"broker broker-a at {addr}" and "#Key" in text
    out = shmq("admin", "broker", "status", "-b", "broker-zz", code=1)
    assert "no broker named 'broker-zz'" in only_line(out.stderr)


def test_topic_life_cycle(shmq: Shmq, broker: BrokerProcess) -> None:
    created = shmq.json("admin", "topic", "create", "AdmTopic", "-q", "2")
    assert created["created"] == {"broker-a": broker_addr(broker)}
    [queues] = created["route"]["queueDatas"]
    assert (queues["readQueueNums"], queues["writeQueueNums"], queues["perm"]) == (2, 2, 6)
    assert "AdmTopic" in shmq.json("admin", "topic", "list")["topics"]

    updated = shmq.json("admin", "topic", "update", "AdmTopic", "-r", "3", "-w", "3")
    [queues] = updated["route"]["queueDatas"]
    assert (queues["readQueueNums"], queues["writeQueueNums"]) == (3, 3)
    route = shmq.json("admin", "topic", "route", "AdmTopic")
    assert route["brokerDatas"][0]["brokerAddrs"] == {"0": broker_addr(broker)}
    assert "RW" in shmq("admin", "topic", "route", "AdmTopic").stdout

    sent = shmq.lines("produce", "AdmTopic", "-c", "7")
    status = shmq.json("admin", "topic", "status", "AdmTopic")
    assert status["messages"] == 7 and len(status["queues"]) == 3
    for q in status["queues"]:
        mine = [s for s in sent if s["queue"] == q["queueId"]]
        assert (q["minOffset"], q["maxOffset"]) == (0, len(mine))
        assert (q["lastUpdateTimestamp"] > 0) == bool(mine)
    assert "7 messages stored in 3 queues" in shmq("admin", "topic", "status", "AdmTopic").stdout

    deleted = shmq.json("admin", "topic", "delete", "AdmTopic")
    assert deleted["deleted"] == {"broker-a": broker_addr(broker)}
    out = shmq("admin", "topic", "route", "AdmTopic", code=1)
    assert only_line(out.stderr) == ("shmq admin topic route: no route info for topic "
                                     "'AdmTopic': the name servers do not know it")


def test_unknown_topics_fail_with_one_line(shmq: Shmq) -> None:
    for command in (["topic", "status", "AdmNope"], ["topic", "route", "AdmNope"],
                    ["topic", "update", "AdmNope", "-q", "2"], ["topic", "delete", "AdmNope"],
                    ["message", "key", "AdmNope", "k"]):
        out = shmq("admin", *command, code=1)
        assert out.stdout == ""
        assert "no route info for topic 'AdmNope'" in only_line(out.stderr)
    out = shmq("consume", "AdmNope", "--timeout", "1", code=1)
    assert only_line(out.stderr).startswith("shmq consume: no route info for topic 'AdmNope'")


def test_unknown_groups_fail_with_one_line(shmq: Shmq) -> None:
    shmq("produce", "AdmGroups", "-c", "1", "-q")
    for command in (["consumer", "progress", "adm-nobody"],
                    ["consumer", "connections", "adm-nobody"],
                    ["consumer", "running-info", "adm-nobody"],
                    ["consumer", "reset-offset", "adm-nobody", "AdmGroups", "-s", "now"]):
        out = shmq("admin", *command, code=1)
        assert out.stdout == "" and "consumer group 'adm-nobody'" in only_line(out.stderr)


def test_bad_arguments_are_usage_errors(shmq: Shmq) -> None:
    out = shmq("admin", "consumer", "reset-offset", "g", "t", "-s", "yesterday", code=2)
    assert "'yesterday': give epoch milliseconds, 'now' or an ISO 8601" in out.stderr
    shmq("admin", "topic", "create", "AdmBad", "-p", "X", code=2)
    out = shmq("admin", "topic", "list", "-n", "", code=2)
    assert only_line(out.stderr) == "shmq admin topic list: no name-server address in ''"


def test_progress_lag_consume_and_reset_by_time(shmq: Shmq) -> None:
    topic, group = "AdmLag", "adm-lag"
    shmq("produce", topic, "-c", "1", "-b", "warm-up", "-q")
    assert len(shmq.lines("consume", topic, "-g", group, "-c", "1")) == 1
    progress = shmq.json("admin", "consumer", "progress", group)
    assert progress["totalLag"] == 0 and {q["topic"] for q in progress["queues"]} == {topic}

    time.sleep(1.0)  # the reset time below is nearer to the new messages than to the warm-up
    before_ms = int(time.time() * 1000)
    time.sleep(0.05)
    shmq("produce", topic, "-c", "10", "-q")
    progress = shmq.json("admin", "consumer", "progress", group, "-t", topic)
    assert progress["totalLag"] == 10
    assert sum(q["brokerOffset"] for q in progress["queues"]) == 11
    assert "Total lag: 10" in shmq("admin", "consumer", "progress", group).stdout

    first = shmq.lines("consume", topic, "-g", group, "-c", "10")
    assert sorted(m["body"] for m in first) == sorted(f"message {i}" for i in range(10))
    progress = shmq.json("admin", "consumer", "progress", group)
    assert progress["totalLag"] == 0
    assert all(q["lastTimestamp"] >= before_ms for q in progress["queues"]
               if q["consumerOffset"] > 0)

    reset = shmq.json("admin", "consumer", "reset-offset", group, topic, "-s", str(before_ms))
    assert reset["timestamp"] == before_ms and len(reset["offsets"]) == 4
    assert shmq.json("admin", "consumer", "progress", group)["totalLag"] == 10
    again = shmq.lines("consume", topic, "-g", group, "-c", "10")
    assert sorted(m["msgId"] for m in again) == sorted(m["msgId"] for m in first)

    text = shmq("admin", "consumer", "reset-offset", group, topic, "-s", "now").stdout
    assert "reset to the end of each queue" in text
    assert shmq.json("admin", "consumer", "progress", group)["totalLag"] == 0


@pytest.fixture
def push_consumer(shmq: Shmq) -> Iterator[tuple[PushConsumer, list[ReceivedMessage]]]:
    shmq("admin", "topic", "create", "AdmPush", "-q", "2")
    got: list[ReceivedMessage] = []
    lock = threading.Lock()

    def listener(msg: ReceivedMessage) -> None:
        with lock:
            got.append(msg)

    consumer = PushConsumer("adm-push", shmq.namesrv,
                            consume_from=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe("AdmPush", "*")
    consumer.register_listener(listener)
    consumer.start()
    try:
        wait_for(lambda: len([q for q in consumer.queues() if q.topic == "AdmPush"]) == 2, 20,
                 "the push consumer to own the topic's queues")
        yield consumer, got
    finally:
        consumer.shutdown()


def test_connections_and_running_info_of_a_push_consumer(
        shmq: Shmq, push_consumer: tuple[PushConsumer, list[ReceivedMessage]]) -> None:
    consumer, got = push_consumer
    shmq("produce", "AdmPush", "-c", "3", "-q")
    wait_for(lambda: len(got) == 3, 20, "three messages")

    connections = shmq.json("admin", "consumer", "connections", "adm-push")
    [client] = connections["connections"]
    assert client["clientId"] == consumer.client_id and client["version"] == 407
    assert connections["subscriptions"] == {"AdmPush": "*", "%RETRY%adm-push": "*"}
    assert (connections["consumeType"], connections["messageModel"]) == (
        "CONSUME_PASSIVELY", "CLUSTERING")

    infos = shmq.json("admin", "consumer", "running-info", "adm-push")
    info = infos[consumer.client_id]
    props = info["properties"]
    assert props["PROP_CONSUME_TYPE"] == "CONSUME_PASSIVELY"
    assert props["PROP_CONSUMEORDERLY"] == "false" and props["consumerGroup"] == "adm-push"
    assert props["PROP_NAMESERVER_ADDR"] == f"{shmq.namesrv};"
    assert int(props["PROP_CONSUMER_START_TIMESTAMP"]) > 0
    assert info["subscriptions"] == {"AdmPush": "*", "%RETRY%adm-push": "*"}
    mine = [q for q in info["queues"] if q["topic"] == "AdmPush"]
    assert sorted(q["queueId"] for q in mine) == [0, 1]
    assert sum(q["commitOffset"] for q in mine) == 3  # everything consumed is committed here
    assert any(q["lastConsumeTimestamp"] > 0 for q in mine)

    one = shmq.json("admin", "consumer", "running-info", "adm-push", "--client-id",
                    consumer.client_id, "--jstack")
    assert "Thread" in one[consumer.client_id]["jstack"]
    out = shmq("admin", "consumer", "running-info", "adm-push", "--client-id", "nobody@1",
               code=1)
    assert "client 'nobody@1' is not online" in only_line(out.stderr)


def test_a_reset_reaches_a_live_push_consumer(
        shmq: Shmq, push_consumer: tuple[PushConsumer, list[ReceivedMessage]]) -> None:
    _consumer, got = push_consumer
    time.sleep(1.0)  # older messages of the topic are further from the reset time than these
    start_ms = int(time.time() * 1000)
    shmq("produce", "AdmPush", "-c", "4", "-b", "live {i}", "-q")
    wait_for(lambda: len(got) == 4, 20, "four messages")
    wait_for(lambda: shmq.json("admin", "consumer", "progress", "adm-push", "-t", "AdmPush")
             ["totalLag"] == 0, 20, "the consumer's offsets to be committed")

    shmq("admin", "consumer", "reset-offset", "adm-push", "AdmPush", "-s", str(start_ms))
    wait_for(lambda: len(got) == 8, 30, "the four messages again after the reset")
    bodies = sorted(m.body.decode() for m in got)
    assert bodies == sorted([f"live {i}" for i in range(4)] * 2)
    wait_for(lambda: shmq.json("admin", "consumer", "progress", "adm-push", "-t", "AdmPush")
             ["totalLag"] == 0, 20, "the offsets committed again")


def test_every_admin_command_prints_json(shmq: Shmq, broker: BrokerProcess) -> None:
    sent = shmq.lines("produce", "AdmJson", "-c", "2", "-k", "jk{i}")
    shmq("consume", "AdmJson", "-g", "adm-json", "-c", "2")
    wait_for(lambda: shmq("admin", "message", "key", "AdmJson", "jk0", code=None)
             .exit_code == 0, 10, "the key index")
    for command in (
            ["cluster", "list"], ["broker", "status"], ["broker", "config"],
            ["topic", "list"], ["topic", "route", "AdmJson"], ["topic", "status", "AdmJson"],
            ["topic", "update", "AdmJson", "-p", "RW"],
            ["consumer", "progress", "adm-json"],
            ["consumer", "reset-offset", "adm-json", "AdmJson", "-s", "now"],
            ["message", "key", "AdmJson", "jk1"],
            ["message", "id", sent[0]["offsetMsgId"]],
            ["message", "offset", "AdmJson", str(sent[0]["queue"]), str(sent[0]["offset"])],
            ["topic", "create", "AdmJson2"], ["topic", "delete", "AdmJson2"]):
        out = shmq("admin", *command, "--json").stdout
        assert json.loads(out), command
