"""Transactional producers: `AsyncTransactionProducer` (asyncio) and `TransactionProducer`
(synchronous), Java's `TransactionMQProducer` (spec/behaviours.md §9).

Theory of operation
-------------------
`send_message_in_transaction(topic, message, arg)` is two-phase:

1. **Half message**: the message goes out as a normal send (routing, queue choice and retries
   as `AsyncProducer.send`) with properties TRAN_MSG=true and PGROUP=<group> and sysflag
   TRANSACTION_PREPARED, and without DELAY (Java drops it). The broker keeps it out of sight
   of consumers. A send error is raised as by `send`, and nothing else happens.
2. **Local transaction**: `listener.execute_local_transaction(message, arg)` runs — only when
   the half message was stored with SEND_OK; for FLUSH_DISK_TIMEOUT / FLUSH_SLAVE_TIMEOUT /
   SLAVE_NOT_AVAILABLE the state is ROLLBACK without running it (Java). The `message` it gets
   carries UNIQ_KEY (the transaction id), TRAN_MSG and PGROUP in its properties. Returning
   None, or raising, means UNKNOWN (the exception is kept in the result and sent to the
   broker as the remark, as Java does; it is not raised).
3. **End**: END_TRANSACTION (oneway) to the broker that stored the half message, naming it by
   its commit-log offset (decoded from the offset msgId) and half-queue offset: COMMIT makes
   the broker store the real message, ROLLBACK drops it, UNKNOWN leaves it for a check-back.
   A failure to send it is logged, not raised: the broker will check back.

**Check-back**: a broker that holds a half message older than its transaction timeout sends
CHECK_TRANSACTION_STATE to one connection of the group. The `ClientInstance` passes it here
(`on_check_transaction_state`); `listener.check_local_transaction(message)` is called with
the half message as a `ReceivedMessage` (topic and queue the real ones, `msg_id` = UNIQ_KEY),
and its answer goes back as END_TRANSACTION with fromTransactionCheck=true on the same
connection. An exception or None answers UNKNOWN (the broker asks again later, up to its
check maximum, then gives the message up).

Listeners: methods may return the state or an awaitable of it. `AsyncTransactionProducer` calls
them on its event loop (keep them short, or make them `async`). `TransactionProducer` runs
`execute_local_transaction` in the calling thread and `check_local_transaction` in a worker
thread, so neither blocks the client's loop.

For the broker to find this producer, its group must be in the heartbeats the broker got: the
producer heartbeats every broker it sends a half message to as soon as it has a new connection
to it, and then every `heartbeat_interval_s` (an instance option, 30 s by default; it is also
how a restarted broker learns about the producer again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shmq.message.errors import MessageError
from shmq.message.layout import TRANSACTION_PREPARED_TYPE
from shmq.message.msgid import decode_offset_msg_id
from shmq.message.properties import (
    PROPERTY_DELAY,
    PROPERTY_PGROUP,
    PROPERTY_TRAN_MSG,
    PROPERTY_TRANSACTION_ID,
    PROPERTY_UNIQ_KEY,
)
from shmq.message.record import StoredMessage
from shmq.protocol import (
    CheckTransactionStateRequestHeader,
    EndTransactionRequestHeader,
    MessageQueue,
    RemotingCommand,
    RequestCode,
    make_request,
)
from shmq.protocol.errors import LocalProtocolError
from shmq.remoting import Connection, ConnectionClosed

from .errors import NoRouteInfo
from .loop import LoopThread
from .message import Message, SendResult
from .producer import AsyncProducer, Outgoing, Producer, QueueChoice, prepare_message, send_status
from .received import ReceivedMessage, received_message
from .routes import DEFAULT_NAMESRV

__all__ = [
    "AsyncTransactionProducer",
    "HalfMessage",
    "TransactionListener",
    "TransactionProducer",
    "TransactionSendResult",
    "TransactionState",
]

log = logging.getLogger(__name__)


class TransactionState(enum.IntEnum):
    """A local transaction's outcome (Java `LocalTransactionState`); the values are the
    END_TRANSACTION commitOrRollback codes (MessageSysFlag)."""

    UNKNOWN = 0  #: not decided yet: the broker checks back later
    COMMIT = 8  #: deliver the message
    ROLLBACK = 12  #: drop the message


class TransactionListener(Protocol):
    """The application's side of a transaction (Java `TransactionListener`). Either method may
    return the state or an awaitable of it; None counts as UNKNOWN."""

    def execute_local_transaction(self, message: Message, arg: Any) -> Any:
        """Run the local transaction of the half message just stored."""

    def check_local_transaction(self, message: ReceivedMessage) -> Any:
        """Say how the local transaction of `message` (`message.msg_id` is its UNIQ_KEY)
        ended; the broker asks when it heard nothing for its transaction timeout."""


@dataclass(frozen=True, slots=True)
class TransactionSendResult(SendResult):
    """A `SendResult` of the half message plus the local transaction's outcome."""

    local_state: TransactionState = TransactionState.UNKNOWN
    transaction_id: str | None = None  #: the broker's transactionId, else the UNIQ_KEY
    #: what `execute_local_transaction` raised (the state is then UNKNOWN)
    local_error: BaseException | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class HalfMessage:
    """A stored half message, between phases 1 and 3 (see the module docstring)."""

    message: Message  #: as the local transaction sees it (UNIQ_KEY, TRAN_MSG, PGROUP added)
    result: SendResult
    broker_name: str
    transaction_id: str

    def outcome(self, state: TransactionState,
                error: BaseException | None = None) -> TransactionSendResult:
        """The result `send_message_in_transaction` returns."""
        r = self.result
        return TransactionSendResult(r.status, r.msg_id, r.offset_msg_id, r.topic, r.queue_id,
                                     r.queue_offset, state, self.transaction_id, error)


async def _state_of(call: Callable[..., Any], *args: Any) -> TransactionState:
    """Call a listener method; await what it returns if needed; None -> UNKNOWN.

    Raises:
        Whatever the listener raises; TypeError when it returns something else than a state.
    """
    value = call(*args)
    if inspect.isawaitable(value):
        value = await value
    if value is None:
        return TransactionState.UNKNOWN
    return TransactionState(int(value))


class AsyncTransactionProducer(AsyncProducer):
    """A transactional producer for asyncio code; see the module docstring.

    Args:
        group: producer group; the broker checks back with a member of it.
        namesrv: name-server addresses.
        listener: runs and checks local transactions.
        **options: as `AsyncProducer` (`heartbeat_interval_s` etc. go to the instance).
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV, *,
                 listener: TransactionListener, **options: Any) -> None:
        super().__init__(group, namesrv, **options)
        self.listener = listener
        self._half_queues: dict[str, MessageQueue] = {}  #: UNIQ_KEY -> queue, during a send
        self._heartbeats: dict[str, Connection] = {}  #: addr -> connection last heartbeated
        self._broker_names: dict[str, str] = {}  #: addr -> broker name (for check messages)
        self._checks: set[asyncio.Task[None]] = set()
        self._registered = False

    def __repr__(self) -> str:
        return f"<AsyncTransactionProducer {self.group} {self.instance.client_id}>"

    async def start(self) -> None:
        """Start as `AsyncProducer.start`, and take the group's check-back requests."""
        await super().start()
        if not self._registered:
            self.instance.register_transaction_checker(self)
            self._registered = True

    async def close(self) -> None:
        """Stop answering check-backs (those in progress are cancelled), then close."""
        if self._registered:
            self.instance.unregister_transaction_checker(self)
            self._registered = False
        for task in list(self._checks):
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        await super().close()

    # -- the transaction -----------------------------------------------------------------------
    async def send_message_in_transaction(
            self, topic: str, body: bytes | Message, arg: Any = None, *,
            tags: str | None = None, keys: str | Sequence[str] | None = None,
            properties: Mapping[str, str] | None = None, queue: QueueChoice = None,
            sharding_key: str | None = None,
            timeout_s: float | None = None) -> TransactionSendResult:
        """Send a half message, run the local transaction, end it (module docstring).

        Returns:
            The half message's send result with the local state.

        Raises:
            As `AsyncProducer.send` for the half message; then nothing else happened (no local
            transaction ran).
        """
        half = await self.send_half(topic, body, tags=tags, keys=keys, properties=properties,
                                    queue=queue, sharding_key=sharding_key, timeout_s=timeout_s)
        state, error = TransactionState.ROLLBACK, None
        if half.result.status == "SEND_OK":
            try:
                state = await _state_of(self.listener.execute_local_transaction, half.message,
                                        arg)
            except Exception as err:  # noqa: BLE001 - Java: UNKNOWN, reason to the broker
                log.warning("producer %s: local transaction of %s raised; state UNKNOWN: %r",
                            self.group, half.transaction_id, err)
                state, error = TransactionState.UNKNOWN, err
        await self.end_transaction(half, state, error)
        return half.outcome(state, error)

    async def send_half(self, topic: str, body: bytes | Message, *, tags: str | None = None,
                        keys: str | Sequence[str] | None = None,
                        properties: Mapping[str, str] | None = None, queue: QueueChoice = None,
                        sharding_key: str | None = None,
                        timeout_s: float | None = None) -> HalfMessage:
        """Phase 1 only: store the half message (module docstring).

        Raises:
            As `AsyncProducer.send`.
        """
        message = body if isinstance(body, Message) else Message(bytes(body), tags, keys,
                                                                  properties or {})
        props = {k: v for k, v in message.properties.items() if k != PROPERTY_DELAY}
        props[PROPERTY_TRAN_MSG] = "true"
        props[PROPERTY_PGROUP] = self.group
        message = dataclasses.replace(message, properties=props)
        out = prepare_message(topic, message, self._uniq, wait_store=self.wait_store,
                              compress_over_bytes=self.compress_over_bytes,
                              compress_level=self.compress_level,
                              max_body_bytes=self.max_body_bytes)
        out = dataclasses.replace(out, sys_flag=out.sys_flag | TRANSACTION_PREPARED_TYPE)
        uniq_key = out.uniq_keys[0]
        try:
            response = await self._send(out, queue, sharding_key, timeout_s, oneway=False)
            mq = self._half_queues[uniq_key]
        finally:
            self._half_queues.pop(uniq_key, None)
        assert response is not None
        header = self._response_header(response)
        result = SendResult(send_status(response.code) or "SEND_OK", uniq_key, header.msg_id,
                            topic, header.queue_id, header.queue_offset)
        await self._heartbeat_if_new(mq.broker_name)
        transaction_id = header.transaction_id or uniq_key
        props[PROPERTY_UNIQ_KEY] = uniq_key
        if header.transaction_id:
            props[PROPERTY_TRANSACTION_ID] = header.transaction_id
        return HalfMessage(dataclasses.replace(message, properties=props), result,
                           mq.broker_name, transaction_id)

    async def end_transaction(self, half: HalfMessage, state: TransactionState,
                              error: BaseException | None = None) -> None:
        """Phase 3 only: send END_TRANSACTION (oneway) for `half`. Failures are logged: the
        broker checks back."""
        try:
            _host, _port, offset = decode_offset_msg_id(half.result.offset_msg_id)
        except MessageError as err:
            log.warning("producer %s: cannot end transaction %s, bad offset msgId %r: %s",
                        self.group, half.transaction_id, half.result.offset_msg_id, err)
            return
        header = EndTransactionRequestHeader(
            producer_group=self.group, tran_state_table_offset=half.result.queue_offset,
            commit_log_offset=offset, commit_or_rollback=int(state), msg_id=half.result.msg_id,
            from_transaction_check=False, transaction_id=half.transaction_id)
        remark = f"executeLocalTransactionBranch exception: {error!r}" if error else None
        request = make_request(RequestCode.END_TRANSACTION, 0, header.to_ext_fields(),
                               oneway=True, remark=remark)
        addr = self.instance.routes.master_addr(half.broker_name)
        try:
            if addr is None:
                raise NoRouteInfo(half.result.topic, f"broker {half.broker_name} has no master")
            await self.instance.invoke_oneway(addr, request)
        except Exception as err:  # noqa: BLE001 - Java: logged; the broker checks back
            log.warning("producer %s: local transaction %s is %s but END_TRANSACTION was not "
                        "sent (%s); the broker will check back", self.group,
                        half.transaction_id, state.name, err)

    # -- check-backs ---------------------------------------------------------------------------
    def on_check_transaction_state(self, conn: Connection,
                                   header: CheckTransactionStateRequestHeader,
                                   message: StoredMessage) -> None:
        """From the instance: answer a broker's check-back in a task of our own."""
        if not self._registered:
            return
        task = asyncio.get_running_loop().create_task(self._answer_check(conn, header, message))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _answer_check(self, conn: Connection, header: CheckTransactionStateRequestHeader,
                            record: StoredMessage) -> None:
        error: BaseException | None = None
        try:
            queue = MessageQueue(record.topic, self._broker_names.get(conn.remote_address, ""),
                                 record.queue_id)
            state = await _state_of(self.listener.check_local_transaction,
                                    received_message(record, queue))
        except Exception as err:  # noqa: BLE001 - Java: UNKNOWN, reason to the broker
            log.warning("producer %s: checking transaction %s raised; answering UNKNOWN: %r",
                        self.group, header.transaction_id, err)
            state, error = TransactionState.UNKNOWN, err
        end = EndTransactionRequestHeader(
            producer_group=self.group, tran_state_table_offset=header.tran_state_table_offset,
            commit_log_offset=header.commit_log_offset, commit_or_rollback=int(state),
            msg_id=record.uniq_key or header.offset_msg_id or "", from_transaction_check=True,
            transaction_id=header.transaction_id)
        remark = f"checkLocalTransactionState Exception: {error!r}" if error else None
        try:
            conn.oneway(make_request(RequestCode.END_TRANSACTION, 0, end.to_ext_fields(),
                                     oneway=True, remark=remark))
        except (ConnectionClosed, LocalProtocolError) as err:
            log.warning("producer %s: answer %s to the check of %s not sent: %s", self.group,
                        state.name, header.transaction_id, err)

    # -- plumbing ------------------------------------------------------------------------------
    async def _attempt(self, out: Outgoing, mq: MessageQueue, oneway: bool,
                       timeout_s: float) -> RemotingCommand | None:
        """`AsyncProducer._attempt`, remembering which queue a half message went to (its
        END_TRANSACTION goes to that broker)."""
        response = await super()._attempt(out, mq, oneway, timeout_s)
        if out.sys_flag & TRANSACTION_PREPARED_TYPE:
            self._half_queues[out.uniq_keys[0]] = mq
        return response

    async def _heartbeat_if_new(self, broker_name: str) -> None:
        """Heartbeat at once when the connection to the broker is new, so that it can check
        back before the next periodic heartbeat."""
        addr = self.instance.routes.master_addr(broker_name)
        if addr is None:
            return
        self._broker_names[addr] = broker_name
        conn = self.instance.remoting.connections.get(addr)
        if conn is None or self._heartbeats.get(addr) is conn:
            return
        self._heartbeats[addr] = conn
        await self.instance.send_heartbeats()


class _ThreadedListener:
    """Runs a synchronous listener's check-backs in a worker thread (off the client loop)."""

    def __init__(self, listener: TransactionListener) -> None:
        self._listener = listener

    def execute_local_transaction(self, message: Message, arg: Any) -> Any:
        return self._listener.execute_local_transaction(message, arg)

    def check_local_transaction(self, message: ReceivedMessage) -> Awaitable[Any]:
        return asyncio.to_thread(self._listener.check_local_transaction, message)


class TransactionProducer(Producer):
    """A synchronous transactional producer: an `AsyncTransactionProducer` on a background
    event loop; every `Producer` method works too.

        with TransactionProducer("tx-group", "127.0.0.1:9876", listener=MyListener()) as p:
            result = p.send_message_in_transaction("Orders", Message(b"..."), arg=order)
            result.local_state   # TransactionState.COMMIT, ...

    `execute_local_transaction` runs in the calling thread, `check_local_transaction` in a
    worker thread. Methods are thread-safe.
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV, *,
                 listener: TransactionListener, **options: Any) -> None:
        # Producer's attributes, with the transactional implementation
        self._tx = AsyncTransactionProducer(group, namesrv, listener=_ThreadedListener(listener),
                                            **options)
        self._impl = self._tx
        self._thread = LoopThread(f"shmq-tx-producer-{group}")
        self.group = group
        self.listener = listener

    def __repr__(self) -> str:
        return f"<TransactionProducer {self.group} {self.client_id}>"

    def send_message_in_transaction(self, topic: str, body: bytes | Message, arg: Any = None, *,
                                    timeout_s: float | None = None,
                                    **options: Any) -> TransactionSendResult:
        """See `AsyncTransactionProducer.send_message_in_transaction`; the local transaction
        runs in this thread."""
        half = self._run(self._tx.send_half(topic, body, timeout_s=timeout_s, **options),
                         timeout_s)
        state, error = TransactionState.ROLLBACK, None
        if half.result.status == "SEND_OK":
            try:
                value = self.listener.execute_local_transaction(half.message, arg)
                state = TransactionState.UNKNOWN if value is None else TransactionState(
                    int(value))
            except Exception as err:  # noqa: BLE001 - Java: UNKNOWN, reason to the broker
                log.warning("producer %s: local transaction of %s raised; state UNKNOWN: %r",
                            self.group, half.transaction_id, err)
                state, error = TransactionState.UNKNOWN, err
        self._run(self._tx.end_transaction(half, state, error))
        return half.outcome(state, error)
