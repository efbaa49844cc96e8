"""Transactional messages end to end: `TransactionProducer` against a real `shmq start` whose
check-back runs every 200 ms (timeout 1 s, 3 checks at most): commit, rollback, check-backs,
giving up, a broker restart with an unresolved half message, bad END_TRANSACTIONs.

Negative outcomes ("never delivered") are asserted once the broker's checker has moved past the
half message (its saved position, CID_RMQ_SYS_TRANS on the half topic, is read with
QUERY_CONSUMER_OFFSET) and a marker sent after it to the same queue was consumed."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shmq.client import (
    BrokerError,
    Message,
    PullConsumer,
    ReceivedMessage,
    TransactionProducer,
    TransactionState,
)
from shmq.message.msgid import decode_offset_msg_id
from shmq.message.record import StoredMessage, iter_records
from shmq.protocol import (
    ConsumeFromWhere,
    EndTransactionRequestHeader,
    QueryConsumerOffsetRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    make_request,
)
from shmq.remoting import RemotingClient
from shmq.testing.broker import BrokerProcess, running_broker

from ..broker.helpers import pull_request, send_request

pytestmark = pytest.mark.integration

COMMIT, ROLLBACK, UNKNOWN = TransactionState.COMMIT, TransactionState.ROLLBACK, \
    TransactionState.UNKNOWN
TX_ENV = {"SHMQ_TRANSACTION_CHECK_INTERVAL_MS": "200", "SHMQ_TRANSACTION_TIMEOUT_MS": "1000",
          "SHMQ_TRANSACTION_CHECK_MAX": "3"}
HALF = "RMQ_SYS_TRANS_HALF_TOPIC"
GIVEN_UP = "TRANS_CHECK_MAX_TIME_TOPIC"


class Listener:
    """Answers with fixed states and records what it was asked."""

    def __init__(self, execute: TransactionState, check: TransactionState) -> None:
        self.execute, self.check = execute, check
        self.executed: list[tuple[Message, Any]] = []
        self.checked: list[ReceivedMessage] = []
        self._lock = threading.Lock()

    def execute_local_transaction(self, message: Message, arg: Any) -> TransactionState:
        with self._lock:
            self.executed.append((message, arg))
        return self.execute

    def check_local_transaction(self, message: ReceivedMessage) -> TransactionState:
        with self._lock:
            self.checked.append(message)
        return self.check


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("tx"), writers=2, env=dict(TX_ENV)) as running:
        yield running


def namesrv(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env['SHMQ_NAMESRV_PORT']}"


def address(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.env['SHMQ_BROKER_PORT']}"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def producer(broker: BrokerProcess, group: str, listener: Listener) -> TransactionProducer:
    return TransactionProducer(group, namesrv(broker), listener=listener,
                               heartbeat_interval_s=0.3)


def wait(cond: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)
    return value


def call(addr: str, request: RemotingCommand, timeout_s: float = 5.0) -> RemotingCommand:
    async def go() -> RemotingCommand:
        async with RemotingClient() as client:
            return await client.invoke(addr, request, timeout_s)

    return asyncio.run(asyncio.wait_for(go(), timeout_s + 5))


def checker_position(broker: BrokerProcess) -> int:
    """The next half-queue offset the broker's checker will look at."""
    response = call(address(broker), make_request(
        RequestCode.QUERY_CONSUMER_OFFSET, 0,
        QueryConsumerOffsetRequestHeader("CID_RMQ_SYS_TRANS", HALF, 0).to_ext_fields()))
    return int(response.ext_fields["offset"]) if response.code == ResponseCode.SUCCESS else 0


def wait_checker_past(broker: BrokerProcess, half_queue_offset: int) -> None:
    wait(lambda: checker_position(broker) > half_queue_offset, 15,
         f"the checker to move past half message {half_queue_offset}")


def pulled(broker: BrokerProcess, topic: str, queue_id: int = 0) -> list[StoredMessage]:
    response = call(address(broker), pull_request("tx-test", topic, queue_id, 0))
    return list(iter_records(response.body or b"")) if response.code == ResponseCode.SUCCESS \
        else []


def consume_until(broker: BrokerProcess, topic: str, done: Any,
                  timeout_s: float = 15.0) -> list[ReceivedMessage]:
    """Everything on `topic` from the start, until `done(messages)` is true."""
    got: list[ReceivedMessage] = []
    with PullConsumer(unique("tx-c"), namesrv(broker), auto_commit=False,
                      consume_from=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET) as consumer:
        consumer.subscribe(topic, "*")
        deadline = time.monotonic() + timeout_s
        while not done(got):
            assert time.monotonic() < deadline, f"timed out consuming {topic}: got {got}"
            got += consumer.poll(timeout_s=0.5)
    return got


def bodies(messages: list[ReceivedMessage]) -> list[bytes]:
    return [m.body for m in messages]


def test_commit_delivers_the_message_intact(broker: BrokerProcess) -> None:
    topic, listener = unique("TxCommit"), Listener(COMMIT, UNKNOWN)
    with producer(broker, unique("tx-p"), listener) as p:
        result = p.send_message_in_transaction(
            topic, Message(b"order-1", tags="created", keys=["o-1", "c-9"],
                           properties={"amount": "42"}), arg={"id": 1})
        assert (result.status, result.local_state) == ("SEND_OK", COMMIT)
        [(message, arg)] = listener.executed
        assert arg == {"id": 1} and message.properties["UNIQ_KEY"] == result.msg_id
        assert result.transaction_id == result.msg_id
        [got] = consume_until(broker, topic, lambda got: got)
        wait_checker_past(broker, result.queue_offset)
    assert (got.body, got.tags, got.keys, got.msg_id) == (b"order-1", "created", ["o-1", "c-9"],
                                                         result.msg_id)
    assert got.properties["amount"] == "42" and got.queue_id == result.queue_id
    assert got.sysflag & 0xC == 0x8  # TRANSACTION_COMMIT_TYPE
    assert "REAL_TOPIC" not in got.properties
    assert listener.checked == []  # resolved at once: never checked back


def test_rollback_is_never_delivered(broker: BrokerProcess) -> None:
    topic, listener = unique("TxRollback"), Listener(ROLLBACK, COMMIT)
    with producer(broker, unique("tx-p"), listener) as p:
        result = p.send_message_in_transaction(topic, b"cancelled", queue=0)
        assert result.local_state == ROLLBACK
        wait_checker_past(broker, result.queue_offset)
        p.send(topic, b"marker", queue=0)
        got = consume_until(broker, topic, lambda got: b"marker" in bodies(got))
    assert bodies(got) == [b"marker"]
    assert listener.checked == []  # a check answered COMMIT would have delivered it


def test_unknown_then_check_back_commits(broker: BrokerProcess) -> None:
    topic, listener = unique("TxCheckCommit"), Listener(UNKNOWN, COMMIT)
    with producer(broker, unique("tx-p"), listener) as p:
        result = p.send_message_in_transaction(topic, Message(b"late", tags="t", keys="k"))
        assert result.local_state == UNKNOWN
        got = consume_until(broker, topic, lambda got: got)
        [check] = listener.checked
        wait_checker_past(broker, check.queue_offset)  # the copy it was asked about
        p.send(topic, b"marker", queue=result.queue_id)
        got += consume_until(broker, topic, lambda got: b"marker" in bodies(got))
    assert (check.msg_id, check.topic, check.body) == (result.msg_id, topic, b"late")
    assert check.queue_id == result.queue_id and check.tags == "t"
    assert check.properties["TRANSACTION_CHECK_TIMES"] == "1"
    assert bodies(got).count(b"late") == 2  # once per consumer: delivered exactly once
    assert len(listener.checked) == 1


def test_check_back_rollback_drops_the_message(broker: BrokerProcess) -> None:
    topic, listener = unique("TxCheckRollback"), Listener(UNKNOWN, ROLLBACK)
    with producer(broker, unique("tx-p"), listener) as p:
        result = p.send_message_in_transaction(topic, b"doomed", queue=1)
        [check] = wait(lambda: list(listener.checked), 15, "a check-back")
        wait_checker_past(broker, check.queue_offset)
        p.send(topic, b"marker", queue=1)
        got = consume_until(broker, topic, lambda got: b"marker" in bodies(got))
    assert check.msg_id == result.msg_id
    assert bodies(got) == [b"marker"]
    assert len(listener.checked) == 1  # the rollback's op record ended the checks


def test_after_check_max_checks_the_message_is_given_up(broker: BrokerProcess) -> None:
    topic, listener = unique("TxGiveUp"), Listener(UNKNOWN, UNKNOWN)
    with producer(broker, unique("tx-p"), listener) as p:
        result = p.send_message_in_transaction(topic, b"undecided", queue=2)
        given_up = wait(lambda: [m for m in pulled(broker, GIVEN_UP)
                                 if m.uniq_key == result.msg_id], 20, "the message given up")
        p.send(topic, b"marker", queue=2)
        got = consume_until(broker, topic, lambda got: b"marker" in bodies(got))
    assert [m.properties["TRANSACTION_CHECK_TIMES"] for m in listener.checked] == ["1", "2", "3"]
    [message] = given_up
    assert (message.body, message.properties["REAL_TOPIC"]) == (b"undecided", topic)
    assert bodies(got) == [b"marker"]
    # the half message and its check copies live in the half topic only
    halves = [m for m in pulled(broker, HALF) if m.uniq_key == result.msg_id]
    assert len(halves) == 4 and {m.properties["REAL_TOPIC"] for m in halves} == {topic}


def test_bad_end_transaction_is_refused_and_loses_nothing(broker: BrokerProcess) -> None:
    topic, addr = unique("TxBad"), address(broker)
    sent = call(addr, send_request(topic, b"kept", queue_id=0, sys_flag=0x4,
                                   properties={"TRAN_MSG": "true", "PGROUP": "tx-raw",
                                               "UNIQ_KEY": unique("U")}))
    assert sent.code == ResponseCode.SUCCESS, sent.remark
    offset = decode_offset_msg_id(sent.ext_fields["msgId"])[2]
    queue_offset = int(sent.ext_fields["queueOffset"])

    def end(commit_log_offset: int, group: str = "tx-raw") -> RemotingCommand:
        header = EndTransactionRequestHeader(group, queue_offset, commit_log_offset, 8, "m")
        return call(addr, make_request(RequestCode.END_TRANSACTION, 0, header.to_ext_fields()))

    for bad_offset, group, remark in [(offset + 7, "tx-raw", "Find prepared transaction"),
                                      (1 << 40, "tx-raw", "Find prepared transaction"),
                                      (offset, "intruder", "The producer group wrong")]:
        refused = end(bad_offset, group)
        assert refused.code == ResponseCode.SYSTEM_ERROR
        assert refused.remark is not None and refused.remark.startswith(remark), refused.remark
    assert pulled(broker, topic) == []
    assert end(offset).code == ResponseCode.SUCCESS
    assert [m.body for m in pulled(broker, topic)] == [b"kept"]


def test_an_unresolved_half_message_is_checked_after_a_broker_restart(tmp_path: Path) -> None:
    env = {**TX_ENV, "SHMQ_TRANSACTION_CHECK_MAX": "15", "SHMQ_TRANSACTION_CHECK_INTERVAL_MS":
           "300"}
    instance, topic, group = unique("tr"), unique("TxRestart"), unique("tx-p")
    before = Listener(UNKNOWN, UNKNOWN)
    with running_broker(tmp_path, writers=1, env=env, instance=instance) as first, \
            producer(first, group, before) as p:
        result = p.send_message_in_transaction(topic, b"survivor", queue=0)
        wait(lambda: before.checked, 15, "a check-back before the restart")
    after = Listener(UNKNOWN, COMMIT)
    with running_broker(tmp_path, writers=1, env=env, instance=instance) as second, \
            producer(second, group, after) as p:
        p.publish_queues(topic)  # learn the broker: heartbeats reach it from now on
        got = consume_until(second, topic, lambda got: got, timeout_s=20)
        wait_checker_past(second, after.checked[0].queue_offset)
        p.send(topic, b"marker", queue=0)
        got += consume_until(second, topic, lambda got: b"marker" in bodies(got))
    assert bodies(got).count(b"survivor") == 2  # once per consumer: no duplicate commit
    assert after.checked[0].msg_id == result.msg_id
    # the checker resumed from its saved position: it asked about the newest copy, not the
    # original half message (which would say 1)
    times_before = max(int(m.properties["TRANSACTION_CHECK_TIMES"]) for m in before.checked)
    assert int(after.checked[0].properties["TRANSACTION_CHECK_TIMES"]) > times_before


def test_a_broker_that_rejects_transactions_says_no_permission(tmp_path: Path) -> None:
    with running_broker(tmp_path, writers=1,
                        env={"SHMQ_TRANSACTION_REJECT": "true"}) as rejecting:
        listener = Listener(COMMIT, COMMIT)
        with producer(rejecting, unique("tx-p"), listener) as p:
            with pytest.raises(BrokerError) as refused:
                p.send_message_in_transaction(unique("TxNo"), b"x")
            assert p.send(unique("TxYes"), b"plain").status == "SEND_OK"
    assert refused.value.code == ResponseCode.NO_PERMISSION
    assert "transaction message is forbidden" in str(refused.value)
    assert listener.executed == []
