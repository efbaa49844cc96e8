"""Transactional messages: resolving half messages and checking back on the ones nobody
resolved (spec/behaviours.md §9; request-codes.md §3 END_TRANSACTION, §6
CHECK_TRANSACTION_STATE).

Theory of operation
-------------------
A send with TRAN_MSG=true is a *half* message (`handlers.send`): it is stored in
``RMQ_SYS_TRANS_HALF_TOPIC`` queue 0 with REAL_TOPIC / REAL_QID, so no consumer of its topic
sees it. Everything after that is appends of new records; nothing is ever changed in place:

* **Commit** (`resolve` with COMMIT, from END_TRANSACTION): a copy of the half record goes to
  REAL_TOPIC / REAL_QID with the transaction sysflag bits set to COMMIT (8),
  PREPAREDTRANSACTIONOFFSET = the half record's commit-log offset and the properties Java's
  `EndTransactionProcessor.endMessageTransaction` leaves (all of them but REAL_TOPIC and
  REAL_QID: TRAN_MSG=true and PGROUP stay, as consumers of a Java broker see them). It gets a
  normal consume-queue entry and is delivered. Then an *op* record marks the half done.
* **Rollback**: only the op record.
* **Op record**: ``RMQ_SYS_TRANS_OP_HALF_TOPIC`` queue 0 (the half queue's id), tag ``d``, body
  the half message's queue offset in decimal. An op whose append fails is logged; the half
  message is then checked back later (as in Java, the END_TRANSACTION still succeeds).

`TransactionChecker` is Java's `TransactionalMessageCheckService`. Every
`TransactionSettings.check_interval_ms` it walks the half queue from its saved position:

1. a half offset named by an op record is done: skip it;
2. a record stored after the round began (a copy made by this round) ends the round;
3. a record checked `check_max` times (its TRANSACTION_CHECK_TIMES property), or born longer
   ago than the store's retention, is given up: copied to ``TRANS_CHECK_MAX_TIME_TOPIC`` queue
   0 (never delivered to the real topic) and skipped;
4. a record younger than `timeout_ms` (or its CHECK_IMMUNITY_TIME_IN_SECONDS) ends the round:
   its producer may still resolve it (everything behind it is younger or a copy);
5. otherwise it is *checked*: a copy with TRANSACTION_CHECK_TIMES + 1 is appended to the half
   queue, and CHECK_TRANSACTION_STATE (oneway) carrying the copy's offsets, with the copy as
   body (topic and queue id put back to the real ones), goes to one live connection of the
   PGROUP producer group (registered by its heartbeats, `clients.ClientRegistry`). Without one
   the check is only logged, but it counts, so an abandoned half message is given up after
   `check_max` rounds. The producer answers END_TRANSACTION (fromTransactionCheck=true) for
   the *copy*; the original is behind the saved position and never looked at again.

Progress is Java's: the next half offset and the next op offset are consumer offsets of group
``CID_RMQ_SYS_TRANS`` on the two system topics (``consumerOffset.json``), committed and flushed
after every round, so a restarted broker resumes where it stopped. The op offset moves past an
op only once the half offset it names is behind the half position. A crash between a check's
copy and the saved position sends that check again (at-least-once, like Java).

Differences from Java, on purpose: an END_TRANSACTION naming a record that is not a half
message is refused (Java would look no further than PGROUP and the offsets); a half message
younger than its CHECK_IMMUNITY_TIME_IN_SECONDS ends the round instead of being re-put with
TRAN_PREPARED_QUEUE_OFFSET (shmq's producer never sets that property).

One checker per store: it holds an exclusive `flock` on ``config/transaction.lock`` while it
runs (`try_acquire`), so a second acceptor stays idle. Everything runs on the acceptor's event
loop; a round yields to it every `_YIELD_EVERY` entries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from shmq.errors import ShmqError
from shmq.message import layout as rec
from shmq.message.encoder import EncodedBatch, encode_batch
from shmq.message.errors import MessageError
from shmq.message.properties import (
    PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS,
    PROPERTY_PGROUP,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TAGS,
    PROPERTY_TRANSACTION_CHECK_TIMES,
    encode_properties,
)
from shmq.message.record import StoredMessage, decode_record, encode_record
from shmq.message.taghash import tag_hash
from shmq.protocol import (
    CheckTransactionStateRequestHeader,
    EndTransactionRequestHeader,
    RemotingCommand,
    RequestCode,
    make_request,
)
from shmq.protocol.errors import LocalProtocolError
from shmq.remoting import ConnectionClosed
from shmq.store.consumequeue import ConsumeQueue

from .appender import reencode
from .context import Broker
from .errors import BrokerRejected
from .jsonfile import try_exclusive_lock
from .topics import PERM_RW, TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC

__all__ = [
    "CHECK_GROUP",
    "HALF_QUEUE_ID",
    "REMOVE_TAG",
    "CheckReport",
    "HalfMessageMismatch",
    "HalfMessageNotFound",
    "TransactionChecker",
    "TransactionSettings",
    "find_half",
    "resolve",
]

log = logging.getLogger(__name__)

#: MixAll.CID_SYS_RMQ_TRANS: the group whose consumer offsets hold the checker's progress
CHECK_GROUP: Final = "CID_RMQ_SYS_TRANS"
#: TransactionalMessageUtil.REMOVETAG: the tag of an op record
REMOVE_TAG: Final = "d"
#: half messages live in queue 0; their op records in the op topic's queue of the same id
HALF_QUEUE_ID: Final = 0
#: entries read from a consume queue at a time
_READ_BATCH: Final = 32
#: a round gives the event loop a turn this often (entries examined)
_YIELD_EVERY: Final = 256
#: Java's MAX_QUEUE_PROCESS_TIME: a round stops (and saves its progress) after this long
MAX_ROUND_S: Final = 60.0
_HOST_FLAGS: Final = rec.BORNHOST_V6_FLAG | rec.STOREHOSTADDRESS_V6_FLAG
_COMMIT: Final = rec.TRANSACTION_COMMIT_TYPE
_ROLLBACK: Final = rec.TRANSACTION_ROLLBACK_TYPE


@dataclass(frozen=True, slots=True)
class TransactionSettings:
    """The `[transaction]` settings the checker uses (see docs/config.md)."""

    check_interval_ms: int = 60_000  #: transactionCheckInterval
    timeout_ms: int = 6_000  #: transactionTimeOut
    check_max: int = 15  #: transactionCheckMax
    retention_ms: int = 72 * 3600 * 1000  #: fileReservedTime: older half messages are given up


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What one round of the checker did."""

    examined: int = 0  #: half records looked at (resolved ones included)
    resolved: int = 0  #: skipped because an op record names them
    checked: int = 0  #: copies made and checks counted
    sent: int = 0  #: CHECK_TRANSACTION_STATE requests written to a producer
    discarded: int = 0  #: given up, copied to TRANS_CHECK_MAX_TIME_TOPIC
    half_offset: int = 0  #: the saved half position after the round
    op_offset: int = 0  #: the saved op position after the round


# -- errors -----------------------------------------------------------------------------------


class HalfMessageNotFound(BrokerRejected):
    """END_TRANSACTION names a commit-log offset without a half message there. Nothing was
    stored or changed."""

    def __init__(self, offset: int, detail: str) -> None:
        # Java's remark first: clients and operators match on it
        super().__init__(f"Find prepared transaction message failed: {detail} (commitLogOffset "
                         f"{offset}); nothing was changed")
        self.offset = offset


class HalfMessageMismatch(BrokerRejected):
    """END_TRANSACTION's producer group or offsets do not match the half message. Nothing was
    stored or changed."""

    def __init__(self, java_remark: str, offset: int, expected: object, actual: object) -> None:
        super().__init__(f"{java_remark}: the half message at {offset} has {expected!r}, the "
                         f"request says {actual!r}; nothing was changed")
        self.offset, self.expected, self.actual = offset, expected, actual


# -- resolving (END_TRANSACTION) --------------------------------------------------------------


def find_half(broker: Broker, header: EndTransactionRequestHeader) -> StoredMessage:
    """The half message END_TRANSACTION names, checked as Java's `checkPrepareMessage` does.

    Raises:
        HalfMessageNotFound: no valid record at `commitLogOffset`, or one that is not a half
            message.
        HalfMessageMismatch: PGROUP, the half-queue offset or the commit-log offset differs.
    """
    offset = header.commit_log_offset
    found = broker.reader.record(offset)
    if found is None:
        raise HalfMessageNotFound(offset, "no message starts at this offset")
    try:
        half = decode_record(found[0])
    except MessageError as err:
        raise HalfMessageNotFound(offset, f"the record is unreadable ({err})") from err
    if half.topic != TRANS_HALF_TOPIC:
        raise HalfMessageNotFound(offset, f"the message there is on topic {half.topic!r}, not a "
                                          "half message")
    group = half.properties.get(PROPERTY_PGROUP)
    if group != header.producer_group:
        raise HalfMessageMismatch("The producer group wrong", offset, group,
                                  header.producer_group)
    if half.queue_offset != header.tran_state_table_offset:
        raise HalfMessageMismatch("The transaction state table offset wrong", offset,
                                  half.queue_offset, header.tran_state_table_offset)
    if half.phys_offset != offset:  # cannot differ for a valid record; Java checks it anyway
        raise HalfMessageMismatch("The commit log offset wrong", offset, half.phys_offset,
                                  offset)
    return half


async def resolve(broker: Broker, half: StoredMessage, commit_or_rollback: int) -> None:
    """Commit (store the real message, then the op record) or roll back (only the op record)
    the half message `half` (see the module docstring).

    Raises:
        ValueError: `commit_or_rollback` is neither COMMIT (8) nor ROLLBACK (12).
        BrokerRejected: the real message was not stored (or its outcome is unknown, as the
            error says); no op record was written, so the half message stays pending and is
            checked back. A failed op append is only logged.
    """
    if commit_or_rollback not in (_COMMIT, _ROLLBACK):
        raise ValueError(f"commitOrRollback {commit_or_rollback} is neither COMMIT nor ROLLBACK")
    if commit_or_rollback == _COMMIT:
        topic, queue_id, batch, tags = _committed(broker, half)
        await broker.appender.append(topic, queue_id, batch, tags)
    try:
        await _append_op(broker, half.queue_offset)
    except BrokerRejected as err:
        log.warning("half message %d (queue offset %d): op record not written (%s); it will be "
                    "checked back", half.phys_offset, half.queue_offset, err)


def _real_queue(half: StoredMessage) -> tuple[str, int]:
    """REAL_TOPIC / REAL_QID of a half message.

    Raises:
        BrokerRejected: either is missing or not a queue id.
    """
    topic = half.properties.get(PROPERTY_REAL_TOPIC, "")
    queue_text = half.properties.get(PROPERTY_REAL_QID, "")
    if not topic or not queue_text.isdigit():
        raise BrokerRejected(f"the half message at {half.phys_offset} has no valid REAL_TOPIC/"
                             f"REAL_QID ({topic!r}, {queue_text!r}); nothing was stored")
    return topic, int(queue_text)


def _committed(broker: Broker, half: StoredMessage
               ) -> tuple[str, int, EncodedBatch, np.ndarray]:
    """The real message of a committed half message, encoded (Java's endMessageTransaction)."""
    topic, queue_id = _real_queue(half)
    properties = dict(half.properties)
    del properties[PROPERTY_REAL_TOPIC], properties[PROPERTY_REAL_QID]
    sysflag = (half.sysflag & ~rec.TRANSACTION_MASK) | _COMMIT
    batch, tags = reencode(half, topic, queue_id, properties, broker.store_host,
                           sysflag=sysflag, prepared_tx_offset=half.phys_offset)
    return topic, queue_id, batch, tags


async def _append_op(broker: Broker, half_queue_offset: int) -> None:
    broker.topics.ensure(TRANS_OP_HALF_TOPIC, 1, PERM_RW)
    props = encode_properties({PROPERTY_TAGS: REMOVE_TAG})
    batch = encode_batch(TRANS_OP_HALF_TOPIC.encode(), HALF_QUEUE_ID,
                         [str(half_queue_offset).encode()], [props],
                         born_timestamp_ms=broker.clock_ms(), born_host=broker.store_host,
                         store_host=broker.store_host)
    tags = np.array([tag_hash(REMOVE_TAG)], dtype=np.int64)
    await broker.appender.append(TRANS_OP_HALF_TOPIC, HALF_QUEUE_ID, batch, tags)


# -- checking back ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Round:
    """One round's state: the op records read so far and the counters."""

    started_ms: int
    op_next: int  #: next op queue offset to read
    removed: dict[int, int]  #: half queue offset -> op queue offset
    ops: list[tuple[int, int]]  #: (op queue offset, half queue offset), in op order
    examined: int = 0
    resolved: int = 0
    checked: int = 0
    sent: int = 0
    discarded: int = 0


class TransactionChecker:
    """Checks back on unresolved half messages; see the module docstring.

    Args:
        broker: the acceptor's shared state (reader, appender, topics, offsets, clients).
        config_dir: ``data_dir/store/config`` (the lock file lives there).
        settings: interval, timeout, check maximum, retention.
    """

    def __init__(self, broker: Broker, config_dir: Path, settings: TransactionSettings) -> None:
        self._broker = broker
        self.settings = settings
        self._lock_path = config_dir / "transaction.lock"
        self._lock_fd: int | None = None
        self.rounds = 0  #: rounds done since start
        self.last_report = CheckReport()

    # -- ownership -------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Become the store's only checker if no other process is; True on success."""
        if self._lock_fd is not None:
            return True
        self._lock_fd = try_exclusive_lock(self._lock_path)
        return self._lock_fd is not None

    def close(self) -> None:
        """Give the checker up (its progress is already saved after every round)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the service -----------------------------------------------------------------------------

    async def run(self) -> None:
        """A round every `check_interval_ms` until cancelled or the broker drains (call
        `try_acquire` first). A failed round is logged; the next one starts from the saved
        position."""
        interval_s = self.settings.check_interval_ms / 1000
        while not self._broker.draining:
            await asyncio.sleep(interval_s)
            if self._broker.draining:
                return
            try:
                report = await self.check_once()
            except (ShmqError, OSError) as err:
                log.warning("transaction check round failed (next round retries): %s", err)
                continue
            if report.checked or report.discarded:
                log.info("transaction check: %s", report)

    async def check_once(self) -> CheckReport:
        """One round (module docstring); returns what it did.

        Raises:
            StoreError: a consume queue of the system topics is corrupt. The saved positions
                are unchanged.
        """
        broker = self._broker
        half_cq = broker.reader.queue(TRANS_HALF_TOPIC, HALF_QUEUE_ID)
        half_cq.refresh()
        op_cq = broker.reader.queue(TRANS_OP_HALF_TOPIC, HALF_QUEUE_ID)
        op_cq.refresh()
        half_start = self._position(TRANS_HALF_TOPIC, half_cq)
        op_start = self._position(TRANS_OP_HALF_TOPIC, op_cq)
        state = _Round(broker.clock_ms(), op_start, {}, [])
        self._read_ops(op_cq, state)
        half_next = await self._walk(half_cq, half_start, op_cq, state)
        op_next = op_start
        for op_offset, half_offset in state.ops:  # ops of halves behind us are done
            if half_offset >= half_next:
                break
            op_next = op_offset + 1
        self._save(half_start, half_next, op_start, op_next)
        self.rounds += 1
        self.last_report = CheckReport(state.examined, state.resolved, state.checked, state.sent,
                                       state.discarded, half_next, op_next)
        return self.last_report

    def _position(self, topic: str, cq: ConsumeQueue) -> int:
        """The saved position, within the queue's bounds: retention may have removed its
        start, and crash recovery may have cut entries the position had passed (the offsets
        are then reused by new records, which must be looked at)."""
        saved = self._broker.offsets.query(CHECK_GROUP, topic, HALF_QUEUE_ID)
        if saved is None:
            return cq.min_offset
        return min(max(cq.min_offset, saved), cq.max_offset)

    def _save(self, half_start: int, half_next: int, op_start: int, op_next: int) -> None:
        if half_next == half_start and op_next == op_start:
            return
        offsets = self._broker.offsets
        offsets.commit(CHECK_GROUP, TRANS_HALF_TOPIC, HALF_QUEUE_ID, half_next)
        offsets.commit(CHECK_GROUP, TRANS_OP_HALF_TOPIC, HALF_QUEUE_ID, op_next)
        try:
            offsets.flush()
        except OSError as err:  # the acceptor's periodic flush tries again
            log.error("cannot persist the transaction check position (will retry): %s", err)

    def _read_ops(self, op_cq: ConsumeQueue, state: _Round) -> None:
        """Read the op records from `state.op_next` to the queue's end into `state`."""
        while state.op_next < op_cq.max_offset:
            entries = op_cq.read(state.op_next, _READ_BATCH)
            if not len(entries):
                return
            for entry in entries:
                half_offset = self._op_target(int(entry["offset"]), state.op_next)
                state.ops.append((state.op_next, half_offset))
                if half_offset >= 0:
                    state.removed[half_offset] = state.op_next
                state.op_next += 1

    def _op_target(self, phys_offset: int, op_offset: int) -> int:
        """The half queue offset an op record names; -1 for an unreadable one (done)."""
        found = self._broker.reader.record(phys_offset)
        try:
            op = decode_record(found[0]) if found is not None else None
        except MessageError:
            op = None
        if op is None or op.tags != REMOVE_TAG or not op.body.strip().isdigit():
            log.warning("op record %d (commit-log offset %d) is unreadable or not a remove "
                        "mark; ignored", op_offset, phys_offset)
            return -1
        return int(op.body)

    async def _walk(self, half_cq: ConsumeQueue, start: int, op_cq: ConsumeQueue,
                    state: _Round) -> int:
        """Examine half records from `start`; return the next position to save."""
        end = half_cq.max_offset  # copies this round appends lie beyond it
        deadline = time.monotonic() + MAX_ROUND_S
        position = start
        while position < end and time.monotonic() < deadline:
            entries = half_cq.read(position, _READ_BATCH)
            if not len(entries):
                break
            for entry in entries:
                state.examined += 1
                if state.examined % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                if not await self._examine(position, int(entry["offset"]), op_cq, state):
                    return position
                position += 1
        return position

    async def _examine(self, queue_offset: int, phys_offset: int, op_cq: ConsumeQueue,
                       state: _Round) -> bool:
        """Handle one half record; False ends the round with it still pending."""
        if queue_offset in state.removed:
            state.resolved += 1
            return True
        half = self._half_at(phys_offset, queue_offset)
        if half is None:
            return True
        if half.store_timestamp_ms >= state.started_ms:
            return False  # a copy this round made (or a brand-new half message)
        if self._is_exhausted(half, state.started_ms):
            if not await self._discard(half):
                return False
            state.discarded += 1
            return True
        age_ms = state.started_ms - half.born_timestamp_ms
        if 0 <= age_ms < self._immunity_ms(half):
            return False  # its producer may still resolve it; all later ones are younger
        op_cq.refresh()  # an op may have arrived since the round began
        self._read_ops(op_cq, state)
        if queue_offset in state.removed:
            state.resolved += 1
            return True
        return await self._check(half, state)

    def _half_at(self, phys_offset: int, queue_offset: int) -> StoredMessage | None:
        found = self._broker.reader.record(phys_offset)
        try:
            half = decode_record(found[0]) if found is not None else None
        except MessageError:
            half = None
        if half is None:
            log.warning("half message %d (commit-log offset %d) is missing or unreadable; "
                        "skipped", queue_offset, phys_offset)
        return half

    def _is_exhausted(self, half: StoredMessage, now_ms: int) -> bool:
        if _check_times(half) >= self.settings.check_max:
            return True
        if now_ms - half.born_timestamp_ms > self.settings.retention_ms:
            return True
        try:
            _real_queue(half)
        except BrokerRejected as err:
            log.warning("%s: given up", err)
            return True
        return False

    def _immunity_ms(self, half: StoredMessage) -> int:
        text = half.properties.get(PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS, "")
        if text.isdigit() and int(text) > 0:
            return int(text) * 1000
        return self.settings.timeout_ms

    async def _discard(self, half: StoredMessage) -> bool:
        """Copy `half` to TRANS_CHECK_MAX_TIME_TOPIC; False to retry next round."""
        broker = self._broker
        broker.topics.ensure(TRANS_CHECK_MAX_TIME_TOPIC, 1, PERM_RW)
        batch, tags = reencode(half, TRANS_CHECK_MAX_TIME_TOPIC, 0, dict(half.properties),
                               broker.store_host)
        try:
            await broker.appender.append(TRANS_CHECK_MAX_TIME_TOPIC, 0, batch, tags)
        except BrokerRejected as err:
            log.warning("half message %d: moving it to %s failed (%s); retrying next round",
                        half.queue_offset, TRANS_CHECK_MAX_TIME_TOPIC, err)
            return False
        log.warning("half message %d of group %s (msgId %s, topic %s) checked %d times: given "
                    "up, copied to %s", half.queue_offset, half.properties.get(PROPERTY_PGROUP),
                    half.uniq_key, half.properties.get(PROPERTY_REAL_TOPIC), _check_times(half),
                    TRANS_CHECK_MAX_TIME_TOPIC)
        return True

    async def _check(self, half: StoredMessage, state: _Round) -> bool:
        """Re-put `half` with one more check and ask its producer; False to retry next round."""
        broker = self._broker
        properties = dict(half.properties)
        properties[PROPERTY_TRANSACTION_CHECK_TIMES] = str(_check_times(half) + 1)
        batch, tags = reencode(half, TRANS_HALF_TOPIC, HALF_QUEUE_ID, properties,
                               broker.store_host)
        try:
            copy = await broker.appender.append(TRANS_HALF_TOPIC, HALF_QUEUE_ID, batch, tags)
        except BrokerRejected as err:
            log.warning("half message %d: re-putting it for a check failed (%s); retrying next "
                        "round", half.queue_offset, err)
            return False
        state.checked += 1
        topic, queue_id = _real_queue(half)
        body = encode_record(
            topic=topic, body=half.body, properties=properties, queue_id=queue_id,
            flag=half.flag, queue_offset=copy.queue_offset, phys_offset=copy.first_offset,
            sysflag=half.sysflag, born_timestamp_ms=half.born_timestamp_ms,
            born_host=half.born_host, born_port=half.born_port,
            store_timestamp_ms=copy.store_timestamp_ms, store_host=half.store_host,
            store_port=half.store_port, reconsume_times=half.reconsume_times,
            prepared_tx_offset=half.prepared_tx_offset)
        header = CheckTransactionStateRequestHeader(
            copy.queue_offset, copy.first_offset, msg_id=half.uniq_key,
            transaction_id=half.uniq_key, offset_msg_id=broker.msg_id(copy.first_offset))
        group = half.properties.get(PROPERTY_PGROUP, "")
        request = make_request(RequestCode.CHECK_TRANSACTION_STATE, 0, header.to_ext_fields(),
                               body, oneway=True)
        if self._send_check(group, request):
            state.sent += 1
        else:
            log.warning("half message %s of group %r: no live producer connection to check "
                        "with (check %s of %d)", half.uniq_key, group,
                        properties[PROPERTY_TRANSACTION_CHECK_TIMES], self.settings.check_max)
        return True

    def _send_check(self, group: str, request: RemotingCommand) -> bool:
        """Write the check to one live connection of `group`; False when none took it."""
        for conn in self._broker.clients.producer_connections(group):
            try:
                conn.oneway(request)
            except (ConnectionClosed, LocalProtocolError) as err:
                log.debug("cannot check back with %r of group %s: %s", conn, group, err)
                continue
            return True
        return False


def _check_times(half: StoredMessage) -> int:
    """TRANSACTION_CHECK_TIMES (0 when absent or not a number)."""
    text = half.properties.get(PROPERTY_TRANSACTION_CHECK_TIMES, "")
    return int(text) if text.isdigit() else 0
