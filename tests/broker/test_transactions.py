"""Transactional messages in the broker (broker/transaction.py, handlers/transaction.py): half
messages, END_TRANSACTION and the check-back service, on an in-process broker whose store is
appended to directly and whose clock the tests move."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from shmq.broker.clients import ClientChannel
from shmq.broker.offsets import ConsumerOffsets
from shmq.broker.transaction import (
    CHECK_GROUP,
    TransactionChecker,
    TransactionSettings,
)
from shmq.message import layout as rec
from shmq.message.msgid import decode_offset_msg_id
from shmq.message.record import StoredMessage, decode_record, iter_records
from shmq.protocol import (
    CheckTransactionStateRequestHeader,
    EndTransactionRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    make_request,
)

from .helpers import InProcessBroker, in_process_broker, pull_request, run, send_request

HALF = "RMQ_SYS_TRANS_HALF_TOPIC"
OP = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
GIVEN_UP = "TRANS_CHECK_MAX_TIME_TOPIC"
#: born long ago (send_request's born timestamp is fixed in 2023), never too old to check
SETTINGS = TransactionSettings(check_interval_ms=10, timeout_ms=1000, check_max=2,
                               retention_ms=10**13)


def records(response: RemotingCommand) -> list[StoredMessage]:
    return list(iter_records(response.body or b""))


async def pull(b: InProcessBroker, topic: str, queue_id: int = 0) -> list[StoredMessage]:
    response = await b.call(pull_request("g", topic, queue_id, 0))
    if response.code != ResponseCode.SUCCESS:
        return []
    return records(response)


async def send_half(b: InProcessBroker, topic: str = "Tx", body: bytes = b"payload",
                    group: str = "pg", uniq: str = "UNIQ-1") -> RemotingCommand:
    response = await b.call(send_request(
        topic, body, tags="TagA", keys="k1 k2", queue_id=2, sys_flag=rec.TRANSACTION_PREPARED_TYPE,
        properties={"TRAN_MSG": "true", "PGROUP": group, "UNIQ_KEY": uniq, "color": "red"}))
    assert response.code == ResponseCode.SUCCESS, response.remark
    return response


def end_request(sent: RemotingCommand | tuple[int, int], state: int, *, group: str = "pg",
                oneway: bool = False, from_check: bool = False) -> RemotingCommand:
    if isinstance(sent, RemotingCommand):
        offset = decode_offset_msg_id(sent.ext_fields["msgId"])[2]
        queue_offset = int(sent.ext_fields["queueOffset"])
    else:
        offset, queue_offset = sent
    header = EndTransactionRequestHeader(
        producer_group=group, tran_state_table_offset=queue_offset, commit_log_offset=offset,
        commit_or_rollback=state, msg_id="UNIQ-1", from_transaction_check=from_check)
    return make_request(RequestCode.END_TRANSACTION, 0, header.to_ext_fields(), oneway=oneway)


class FakeProducerConnection:
    """A producer connection as the registry holds it: records the requests written to it."""

    remote_address = "127.0.0.1:1"

    def __init__(self) -> None:
        self.sent: list[RemotingCommand] = []

    def oneway(self, request: RemotingCommand) -> None:
        self.sent.append(request)


def register_producer(b: InProcessBroker, group: str = "pg") -> FakeProducerConnection:
    conn = FakeProducerConnection()
    b.broker.clients.register_producer(group, ClientChannel(
        conn, "client-1", "PYTHON", 0, time.monotonic()))  # type: ignore[arg-type]
    return conn


def test_a_half_message_is_answered_like_java_and_not_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            sent = await send_half(b)
            assert sent.ext_fields["queueId"] == "2"  # the real queue, as Java answers
            assert sent.ext_fields["queueOffset"] == "0"  # its offset in the half queue
            assert sent.ext_fields["transactionId"] == "UNIQ-1"
            assert await pull(b, "Tx", 2) == []
            [half] = await pull(b, HALF)
            assert half.phys_offset == decode_offset_msg_id(sent.ext_fields["msgId"])[2]
            assert half.transaction_type == rec.TRANSACTION_NOT_TYPE
            assert (half.properties["REAL_TOPIC"], half.properties["REAL_QID"]) == ("Tx", "2")

    run(scenario())


def test_commit_stores_the_real_message_and_an_op_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            sent = await send_half(b)
            done = await b.call(end_request(sent, rec.TRANSACTION_COMMIT_TYPE))
            assert done.code == ResponseCode.SUCCESS, done.remark
            [real] = await pull(b, "Tx", 2)
            half_offset = decode_offset_msg_id(sent.ext_fields["msgId"])[2]
            assert (real.body, real.tags, real.keys) == (b"payload", "TagA", ["k1", "k2"])
            assert real.properties["color"] == "red" and real.uniq_key == "UNIQ-1"
            assert "REAL_TOPIC" not in real.properties and "REAL_QID" not in real.properties
            assert real.properties["TRAN_MSG"] == "true"  # Java keeps it
            assert real.transaction_type == rec.TRANSACTION_COMMIT_TYPE
            assert real.prepared_tx_offset == half_offset
            [op] = await pull(b, OP)
            assert (op.body, op.tags) == (b"0", "d")

    run(scenario())


def test_rollback_writes_only_the_op_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            sent = await send_half(b)
            done = await b.call(end_request(sent, rec.TRANSACTION_ROLLBACK_TYPE))
            assert done.code == ResponseCode.SUCCESS, done.remark
            assert await pull(b, "Tx", 2) == []
            assert [op.body for op in await pull(b, OP)] == [b"0"]

    run(scenario())


def test_unknown_state_does_nothing_and_is_not_answered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            sent = await send_half(b)
            await b.client.invoke_oneway(b.address, end_request(sent, 0, oneway=True))
            try:
                await b.call(end_request(sent, 0), timeout_s=0.3)
            except Exception as err:  # noqa: BLE001 - Java answers nothing: a timeout
                assert "0.3" in str(err) or "timed out" in str(err).lower(), err
            else:
                raise AssertionError("an UNKNOWN END_TRANSACTION request was answered")
            assert await pull(b, "Tx", 2) == [] and await pull(b, OP) == []

    run(scenario())


def test_bad_end_transactions_get_clear_errors_and_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            normal = await b.call(send_request("Tx", b"plain", queue_id=0))
            sent = await send_half(b)
            offset = decode_offset_msg_id(sent.ext_fields["msgId"])[2]
            cases = [
                ((offset + 1, 0), "pg", "Find prepared transaction message failed"),
                ((10**12, 0), "pg", "Find prepared transaction message failed"),
                ((decode_offset_msg_id(normal.ext_fields["msgId"])[2], 0), "pg",
                 "Find prepared transaction message failed"),
                ((offset, 0), "other", "The producer group wrong"),
                ((offset, 5), "pg", "The transaction state table offset wrong"),
            ]
            for target, group, remark in cases:
                bad = await b.call(end_request(target, rec.TRANSACTION_COMMIT_TYPE, group=group))
                assert bad.code == ResponseCode.SYSTEM_ERROR, (target, group)
                assert bad.remark is not None and bad.remark.startswith(remark), bad.remark
            assert await pull(b, "Tx", 2) == [] and await pull(b, OP) == []
            good = await b.call(end_request(sent, rec.TRANSACTION_COMMIT_TYPE))
            assert good.code == ResponseCode.SUCCESS
            assert [m.body for m in await pull(b, "Tx", 2)] == [b"payload"]

    run(scenario())


def test_reject_transaction_answers_no_permission(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            b.broker.settings = dataclasses.replace(b.broker.settings, reject_transaction=True)
            refused = await b.call(send_request(
                "Tx", b"x", queue_id=0, properties={"TRAN_MSG": "TRUE", "PGROUP": "pg"}))
            assert refused.code == ResponseCode.NO_PERMISSION
            assert refused.remark and "transaction message is forbidden" in refused.remark
            assert await pull(b, HALF) == [] and await pull(b, "Tx") == []
            plain = await b.call(send_request("Tx", b"y", queue_id=0))
            assert plain.code == ResponseCode.SUCCESS

    run(scenario())


def test_check_back_asks_the_producer_about_a_copy_and_its_commit_delivers(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            conn = register_producer(b)
            sent = await send_half(b)
            checker = TransactionChecker(b.broker, tmp_path / "store" / "config", SETTINGS)
            b.clock[0] = int(time.time() * 1000) + 10
            report = await checker.check_once()
            assert (report.checked, report.sent, report.half_offset) == (1, 1, 1)
            [check] = conn.sent
            assert check.code == RequestCode.CHECK_TRANSACTION_STATE and check.is_oneway
            header = CheckTransactionStateRequestHeader.from_ext_fields(check.ext_fields)
            copy = decode_record(check.body or b"")
            assert (copy.topic, copy.queue_id, copy.body) == ("Tx", 2, b"payload")
            assert copy.properties["TRANSACTION_CHECK_TIMES"] == "1"
            assert header.tran_state_table_offset == 1 == copy.queue_offset
            assert header.commit_log_offset == copy.phys_offset
            assert header.commit_log_offset != decode_offset_msg_id(sent.ext_fields["msgId"])[2]
            assert header.msg_id == header.transaction_id == "UNIQ-1"
            done = await b.call(end_request((header.commit_log_offset, 1),
                                            rec.TRANSACTION_COMMIT_TYPE, from_check=True))
            assert done.code == ResponseCode.SUCCESS
            assert [m.body for m in await pull(b, "Tx", 2)] == [b"payload"]
            b.clock[0] = int(time.time() * 1000) + 10
            again = await checker.check_once()
            assert (again.checked, again.resolved, again.half_offset) == (0, 1, 2)
            assert again.op_offset == 1 and len(conn.sent) == 1
            offsets = b.broker.offsets
            assert offsets.query(CHECK_GROUP, HALF, 0) == 2
            assert ConsumerOffsets(tmp_path / "store" / "config").query(CHECK_GROUP, OP, 0) == 1

    run(scenario())


def test_a_young_half_message_is_not_checked_yet(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            conn = register_producer(b)
            await send_half(b)
            checker = TransactionChecker(b.broker, tmp_path / "store" / "config", SETTINGS)
            b.clock[0] = 1_700_000_000_500  # 0.5 s after its born time: inside the timeout
            assert (await checker.check_once()).checked == 0
            b.clock[0] = int(time.time() * 1000) + 10
            assert (await checker.check_once()).checked == 1 and len(conn.sent) == 1

    run(scenario())


def test_after_check_max_checks_the_half_message_is_given_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            register_producer(b, "someone-else")  # nobody of "pg": checks count all the same
            await send_half(b)
            checker = TransactionChecker(b.broker, tmp_path / "store" / "config", SETTINGS)
            reports = []
            for _ in range(4):
                b.clock[0] = int(time.time() * 1000) + 10
                reports.append(await checker.check_once())
            assert [(r.checked, r.sent, r.discarded) for r in reports] == [
                (1, 0, 0), (1, 0, 0), (0, 0, 1), (0, 0, 0)]
            [given_up] = await pull(b, GIVEN_UP)
            assert given_up.body == b"payload"
            assert given_up.properties["TRANSACTION_CHECK_TIMES"] == "2"
            assert given_up.properties["REAL_TOPIC"] == "Tx"
            assert await pull(b, "Tx", 2) == []

    run(scenario())


def test_only_one_checker_per_store(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            config = tmp_path / "store" / "config"
            first = TransactionChecker(b.broker, config, SETTINGS)
            second = TransactionChecker(b.broker, config, SETTINGS)
            assert first.try_acquire() and not second.try_acquire()
            first.close()
            assert second.try_acquire()
            second.close()

    run(scenario())
