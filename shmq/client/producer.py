"""Remote producers: `AsyncProducer` (asyncio) and `Producer` (synchronous facade), speaking
SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) to the brokers a topic's route names
(spec/request-codes.md §3; behaviours.md §2, §15).

Theory of operation
-------------------
A send goes through four steps:

1. **Prepare** (pure, `prepare_message` / `prepare_batch`): check the topic and body, add the
   message's `UNIQ_KEY` (its msgId, `message.msgid.UniqKeyGenerator`), TAGS, KEYS, DELAY, and
   zlib-compress a single body of 4 KiB or more, setting sysflag COMPRESSED|ZLIB like the Java
   client (batches are never compressed).
2. **Route** (`routes.RouteTable.publish_route`): the topic's write queues on masters; for a
   topic nobody knows, TBW102's queues, so the broker auto-creates it.
3. **Pick a queue**: the given `MessageQueue`, an index into the route's queue list, a selector
   function, a sharding key (Java `SelectMessageQueueByHash`: the key's Java hash mod the queue
   count), or round-robin per topic — a retry of a round-robin send avoids the broker that just
   failed, like Java's `selectOneMessageQueue(lastBrokerName)`.
4. **Send and retry**: a retriable failure (`SystemBusy`, `BrokerSystemError`, timeouts,
   connection errors, TOPIC_NOT_EXIST, NO_PERMISSION...) is retried up to `retry_times` more
   times on a newly picked queue, re-fetching the route first when the error asks for it, all
   within the send's timeout. Sends to an explicit queue, selector or sharding key are tried
   once (they must not move to another queue), as are oneway sends.

The outcome a caller sees: a `SendResult` (status SEND_OK, or FLUSH_DISK_TIMEOUT /
FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE when the broker stored the message but could not
honour the durability asked for), or a `ClientError`. `SendTimeout`, `ConnectionLost` and
`RequestTimeout` mean "may or may not be stored"; every other error means nothing was stored
by the last attempt (an earlier attempt that timed out may still have stored it: delivery is
at-least-once, behaviours.md §15).

The synchronous `Producer` runs an `AsyncProducer` on a `LoopThread`; `send_async` returns a
`concurrent.futures.Future`. Asyncio code uses `AsyncProducer` directly on its own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import random
import re
import time
import zlib
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self, TypeVar

from shmq.errors import ClientError
from shmq.message.errors import MessageError
from shmq.message.layout import COMPRESSED_FLAG, MAX_TOPIC_BYTES
from shmq.message.msgid import UniqKeyGenerator
from shmq.message.properties import (
    PROPERTY_DELAY,
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
    encode_properties,
)
from shmq.message.taghash import java_string_hash
from shmq.protocol import (
    HeaderFieldError,
    MessageQueue,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SendMessageRequestHeaderV2,
    SendMessageResponseHeader,
    make_request,
)

from .errors import (
    InvalidMessage,
    NoRouteInfo,
    ProducerClosed,
    SendFailed,
    SendTimeout,
    error_for_response,
)
from .instance import ClientInstance
from .loop import LoopThread
from .message import BatchSendResult, Message, SendResult
from .routes import DEFAULT_NAMESRV, TBW102, TopicRoute

__all__ = [
    "COMPRESSION_ZLIB_TYPE",
    "DEFAULT_COMPRESS_OVER_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "AsyncProducer",
    "Outgoing",
    "Producer",
    "QueueChoice",
    "QueueSelector",
    "prepare_batch",
    "prepare_message",
    "select_by_hash",
    "send_status",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: sysflag compression-type bits for zlib (message-format.md §4; 4.9.x+ Java sets them)
COMPRESSION_ZLIB_TYPE: Final = 0x300
#: Java `compressMsgBodyOverHowmuch`: bodies this large or larger are compressed
DEFAULT_COMPRESS_OVER_BYTES: Final = 4096
#: Java `compressLevel` (zlib level 5)
DEFAULT_COMPRESS_LEVEL: Final = 5
#: Java `maxMessageSize`
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
#: Java `sendMsgTimeout`
DEFAULT_SEND_TIMEOUT_S: Final = 3.0
#: Java `retryTimesWhenSendFailed`
DEFAULT_RETRY_TIMES: Final = 2
#: extra time a synchronous call waits for the loop beyond the send's own timeout
_FACADE_MARGIN_S: Final = 10.0
#: topic names clients may use (behaviours.md §2)
_TOPIC_NAME: Final = re.compile(r"^[%|a-zA-Z0-9_-]+$")
#: response codes meaning "stored" -> SendResult status (Java `SendStatus`)
_STORED: Final[dict[int, str]] = {
    ResponseCode.SUCCESS: "SEND_OK",
    ResponseCode.FLUSH_DISK_TIMEOUT: "FLUSH_DISK_TIMEOUT",
    ResponseCode.FLUSH_SLAVE_TIMEOUT: "FLUSH_SLAVE_TIMEOUT",
    ResponseCode.SLAVE_NOT_AVAILABLE: "SLAVE_NOT_AVAILABLE",
}
#: topics clients may not send to (request-codes.md §3 step 2)
_NOT_ALLOWED: Final = frozenset({
    "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC", "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT", TBW102})

#: picks one queue of the route's publish list
QueueSelector = Callable[[Sequence[MessageQueue]], MessageQueue]
#: an explicit queue, an index into the publish list, a selector, or None (round-robin)
QueueChoice = MessageQueue | int | QueueSelector | None


def send_status(code: int) -> str | None:
    """The SendResult status for a response code that means "stored", else None."""
    return _STORED.get(code)


def select_by_hash(key: str, count: int) -> int:
    """Java `SelectMessageQueueByHash`: `abs(key.hashCode() % count)`, which is
    `abs(hash) % count` (Java's `%` takes the dividend's sign)."""
    return abs(java_string_hash(key)) % count


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A prepared send: what goes in the request (pure data, see `prepare_message`)."""

    topic: str
    body: bytes
    sys_flag: int
    flag: int
    properties: str
    #: UNIQ_KEY block: (head, first counter, count); key i = head + hex4(first + i)
    keys: tuple[str, int, int]
    batch: bool = False

    @property
    def uniq_keys(self) -> list[str]:
        """The messages' UNIQ_KEYs in order."""
        head, first, n = self.keys
        return [f"{head}{(first + i) & 0xFFFF:04X}" for i in range(n)]


def check_topic(topic: str) -> None:
    """Raise `InvalidMessage` unless clients may send to `topic` (behaviours.md §2)."""
    if not topic or not _TOPIC_NAME.match(topic) or len(topic.encode()) > MAX_TOPIC_BYTES:
        raise InvalidMessage(f"illegal topic name {topic!r}: use 1..{MAX_TOPIC_BYTES} "
                             "characters of [%|a-zA-Z0-9_-]")
    if topic in _NOT_ALLOWED:
        raise InvalidMessage(f"topic {topic!r} is reserved by the broker; clients cannot send to it")


def _message_properties(msg: Message, uniq_key: str | None, delay_level: int | None,
                        wait_store: bool) -> dict[str, str]:
    props = dict(msg.properties)
    if msg.tags:
        props[PROPERTY_TAGS] = msg.tags
    if msg.keys:
        props[PROPERTY_KEYS] = msg.keys if isinstance(msg.keys, str) else " ".join(msg.keys)
    if delay_level:
        props[PROPERTY_DELAY] = str(delay_level)
    if not wait_store:
        props[PROPERTY_WAIT] = "false"
    if uniq_key is not None:
        props[PROPERTY_UNIQ_KEY] = uniq_key
    return props


def _check_body(body: bytes, max_body_bytes: int) -> None:
    if not body:
        raise InvalidMessage("the message body is empty")
    if len(body) > max_body_bytes:
        raise InvalidMessage(f"message body of {len(body)} bytes exceeds the "
                             f"{max_body_bytes}-byte limit (max_body_bytes)")


def _encoded(props: Mapping[str, str]) -> bytes:
    try:
        return encode_properties(props)
    except MessageError as err:
        raise InvalidMessage(f"bad message properties: {err}") from err


def prepare_message(topic: str, msg: Message, uniq: UniqKeyGenerator, *,
                    delay_level: int | None = None, wait_store: bool = True,
                    compress_over_bytes: int = DEFAULT_COMPRESS_OVER_BYTES,
                    compress_level: int = DEFAULT_COMPRESS_LEVEL,
                    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Outgoing:
    """Build what a single send carries (steps 1 of the module docstring).

    Raises:
        InvalidMessage: bad topic, empty or oversized body, unencodable properties.
    """
    check_topic(topic)
    body = bytes(msg.body)
    _check_body(body, max_body_bytes)
    head, first = uniq.new_key_block(1)
    props = _message_properties(msg, f"{head}{first & 0xFFFF:04X}", delay_level, wait_store)
    sys_flag = 0
    if len(body) >= compress_over_bytes:
        body = zlib.compress(body, compress_level)
        sys_flag |= COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE
    return Outgoing(topic, body, sys_flag, msg.flag, _encoded(props).decode(), (head, first, 1))


def prepare_batch(topic: str, messages: Sequence[Message], uniq: UniqKeyGenerator, *,
                  max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Outgoing:
    """Build a SEND_BATCH_MESSAGE (message-format.md §8): each entry with its own UNIQ_KEY,
    uncompressed; the request's own properties are empty.

    Raises:
        InvalidMessage: no message, a retry topic, a DELAY property (brokers refuse delayed
            batches), or any message `prepare_message` would refuse; `max_body_bytes`
            bounds the whole batch body, as Java's check of the encoded batch does.
    """
    from shmq.message.batch import encode_batch_body

    check_topic(topic)
    if not messages:
        raise InvalidMessage("a batch needs at least one message")
    if topic.startswith("%RETRY%"):
        raise InvalidMessage("batches cannot be sent to a retry topic")
    head, first = uniq.new_key_block(len(messages))
    entries = []
    for i, msg in enumerate(messages):
        _check_body(bytes(msg.body), max_body_bytes)
        if PROPERTY_DELAY in msg.properties:
            raise InvalidMessage("a batch cannot carry delayed messages (DELAY property)")
        props = _message_properties(msg, f"{head}{(first + i) & 0xFFFF:04X}", None, True)
        entries.append((msg.flag, bytes(msg.body), _encoded(props)))
    body = encode_batch_body(entries)
    if len(body) > max_body_bytes:
        raise InvalidMessage(f"the batch body of {len(body)} bytes exceeds the "
                             f"{max_body_bytes}-byte limit; send smaller batches")
    return Outgoing(topic, body, 0, 0, "", (head, first, len(messages)), batch=True)


def _as_message(body: bytes | Message, tags: str | None, keys: str | Sequence[str] | None,
                properties: Mapping[str, str] | None) -> Message:
    if isinstance(body, Message):
        return body
    return Message(bytes(body), tags, keys, properties or {})


class AsyncProducer:
    """A producer for asyncio code; see the module docstring.

    Args:
        group: producer group (named in heartbeats; transaction check-backs go to it).
        namesrv: name-server addresses, "a:9876;b:9876" or a list.
        instance: share this `ClientInstance` (its owner closes it); default: a new one.
        send_timeout_s: default time a send may take, retries included.
        retry_times: extra attempts for retriable failures of round-robin sends.
        compress_over_bytes: compress single bodies this large or larger.
        max_body_bytes: largest body (or batch body) accepted.
        wait_store: False asks the broker not to wait for flush/replication (WAIT=false).
        attempt_timeout_s: longest wait for one attempt's answer, so that a timed-out
            attempt leaves time for a retry (None: an attempt may use all the time left,
            as in Java, and a timeout then ends the send).
        instance_options: passed to `ClientInstance` when one is created here.
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV, *,
                 instance: ClientInstance | None = None,
                 send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
                 retry_times: int = DEFAULT_RETRY_TIMES,
                 compress_over_bytes: int = DEFAULT_COMPRESS_OVER_BYTES,
                 compress_level: int = DEFAULT_COMPRESS_LEVEL,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 wait_store: bool = True,
                 attempt_timeout_s: float | None = None,
                 **instance_options: Any) -> None:
        if not group:
            raise ValueError("a producer needs a group name")
        self.group = group
        self._owns_instance = instance is None
        self.instance = instance or ClientInstance(namesrv, **instance_options)
        self.send_timeout_s = send_timeout_s
        self.retry_times = retry_times
        self.compress_over_bytes = compress_over_bytes
        self.compress_level = compress_level
        self.max_body_bytes = max_body_bytes
        self.wait_store = wait_store
        self.attempt_timeout_s = attempt_timeout_s
        self._uniq = UniqKeyGenerator(self.instance.client_ip)
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<AsyncProducer {self.group} {self.instance.client_id}>"

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Register the group and start the instance's route refresh and heartbeats
        (idempotent; the first send starts the producer too)."""
        if self._closed:
            raise ProducerClosed(f"producer {self.group} is closed")
        if not self._started:
            self._started = True
            self.instance.register_producer(self.group)
            await self.instance.start()

    async def close(self) -> None:
        """Unregister and, if the instance is ours, close it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_instance:
            await self.instance.close()
        elif self._started:
            self.instance.unregister_producer(self.group)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending -------------------------------------------------------------------------------
    async def send(self, topic: str, body: bytes | Message, *, tags: str | None = None,
                   keys: str | Sequence[str] | None = None,
                   properties: Mapping[str, str] | None = None,
                   delay_level: int | None = None, queue: QueueChoice = None,
                   sharding_key: str | None = None,
                   timeout_s: float | None = None) -> SendResult:
        """Send one message and wait until the broker stored it.

        Args:
            topic: the topic (auto-created through TBW102 if the brokers allow it).
            body: the body, or a complete `Message` (then tags/keys/properties are ignored).
            tags: the message's tag (consumers filter on it).
            keys: business keys (indexed for lookups).
            properties: user properties.
            delay_level: 1..18, deliver after that level's delay (behaviours.md §8).
            queue: explicit queue, index, selector, or None for round-robin.
            sharding_key: pick the queue by the key's hash (same key, same queue).
            timeout_s: overrides `send_timeout_s`.

        Returns:
            Where the message was stored; `msg_id` is its UNIQ_KEY.

        Raises:
            InvalidMessage: nothing was sent. NoRouteInfo, NameServerUnavailable: no queue
            to send to. SendTimeout, ConnectionLost: the outcome is unknown. BrokerError
            (and subclasses): the last attempt was refused. ProducerClosed.
        """
        out = prepare_message(topic, _as_message(body, tags, keys, properties), self._uniq,
                              delay_level=delay_level, wait_store=self.wait_store,
                              compress_over_bytes=self.compress_over_bytes,
                              compress_level=self.compress_level,
                              max_body_bytes=self.max_body_bytes)
        response = await self._send(out, queue, sharding_key, timeout_s, oneway=False)
        assert response is not None
        header = self._response_header(response)
        return SendResult(send_status(response.code) or "SEND_OK", out.uniq_keys[0],
                          header.msg_id, topic, header.queue_id, header.queue_offset)

    async def send_oneway(self, topic: str, body: bytes | Message, *, tags: str | None = None,
                          keys: str | Sequence[str] | None = None,
                          properties: Mapping[str, str] | None = None,
                          delay_level: int | None = None, queue: QueueChoice = None,
                          sharding_key: str | None = None) -> None:
        """Send one message without waiting for the broker (no retry, no result).

        Raises:
            InvalidMessage, NoRouteInfo, NameServerUnavailable, BrokerUnreachable,
            ConnectionLost: the message was not sent. Otherwise it was written to the socket,
            and may still be lost.
        """
        out = prepare_message(topic, _as_message(body, tags, keys, properties), self._uniq,
                              delay_level=delay_level, wait_store=self.wait_store,
                              compress_over_bytes=self.compress_over_bytes,
                              compress_level=self.compress_level,
                              max_body_bytes=self.max_body_bytes)
        await self._send(out, queue, sharding_key, None, oneway=True)

    async def send_batch(self, topic: str, messages: Sequence[Message | bytes], *,
                         queue: QueueChoice = None, sharding_key: str | None = None,
                         timeout_s: float | None = None) -> BatchSendResult:
        """Send messages to ONE queue as one batch (stored contiguously, in order).

        Raises:
            As `send`; InvalidMessage also for a DELAY property or a retry topic.
        """
        batch = [m if isinstance(m, Message) else Message(bytes(m)) for m in messages]
        out = prepare_batch(topic, batch, self._uniq, max_body_bytes=self.max_body_bytes)
        response = await self._send(out, queue, sharding_key, timeout_s, oneway=False)
        assert response is not None
        header = self._response_header(response)
        ids = header.msg_id.split(",")
        result = BatchSendResult(topic, header.queue_id, header.queue_offset, out.keys,
                                 [int(i[-16:], 16) for i in ids], ids[0][:-16])
        result.status = send_status(response.code) or "SEND_OK"
        return result

    async def publish_queues(self, topic: str) -> tuple[MessageQueue, ...]:
        """The queues `topic` is sent to (Java `fetchPublishMessageQueues`).

        Raises:
            NoRouteInfo, NameServerUnavailable.
        """
        await self.start()
        self.instance.routes.watch(topic)
        return (await self.instance.routes.publish_route(topic)).publish_queues

    # -- the send loop -------------------------------------------------------------------------
    async def _send(self, out: Outgoing, queue: QueueChoice, sharding_key: str | None,
                    timeout_s: float | None, *, oneway: bool) -> RemotingCommand | None:
        await self.start()
        timeout = self.send_timeout_s if timeout_s is None else timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                return await self._attempts(out, queue, sharding_key, oneway, deadline)
        except TimeoutError:
            raise SendTimeout(f"send to {out.topic} did not finish within {timeout:g} s; the "
                              "message may or may not be stored") from None

    async def _attempts(self, out: Outgoing, queue: QueueChoice, sharding_key: str | None,
                        oneway: bool, deadline: float) -> RemotingCommand | None:
        routes = self.instance.routes
        if out.topic not in routes.watched:
            routes.watch(out.topic)
        free = queue is None and sharding_key is None
        attempts = 1 + self.retry_times if free and not oneway else 1
        last_broker: str | None = None
        refresh = False
        failure: ClientError | None = None
        for attempt in range(attempts):
            route = await routes.publish_route(out.topic, refresh=refresh)
            mq = self._pick(route, queue, sharding_key, last_broker)
            left = deadline - asyncio.get_running_loop().time()
            limit = min(left, self.attempt_timeout_s or left)
            try:
                return await self._attempt(out, mq, oneway, limit)
            except ClientError as err:
                failure, last_broker = err, mq.broker_name
                refresh = bool(getattr(err, "refresh_route", False))
                if not err.retriable or attempt + 1 == attempts:
                    raise
                log.info("send to %s on %s failed (attempt %d of %d), retrying: %s",
                         out.topic, mq.broker_name, attempt + 1, attempts, err)
        assert failure is not None
        raise failure

    async def _attempt(self, out: Outgoing, mq: MessageQueue, oneway: bool,
                       timeout_s: float) -> RemotingCommand | None:
        addr = self.instance.routes.master_addr(mq.broker_name)
        if addr is None:
            raise NoRouteInfo(out.topic, f"broker {mq.broker_name} has no master address")
        request = self._request(out, mq)
        if oneway:
            await self.instance.invoke_oneway(addr, request)
            return None
        response = await self.instance.invoke(addr, request, timeout_s, send=True)
        if response.code not in _STORED:
            raise error_for_response(response, addr, request.code)
        return response

    def _pick(self, route: TopicRoute, queue: QueueChoice, sharding_key: str | None,
              last_broker: str | None) -> MessageQueue:
        queues = route.publish_queues
        if isinstance(queue, MessageQueue):
            return queue
        if isinstance(queue, int):
            if not 0 <= queue < len(queues):
                raise InvalidMessage(f"queue index {queue} is outside 0..{len(queues) - 1} "
                                     f"of {route.topic}'s {len(queues)} queues")
            return queues[queue]
        if queue is not None:
            return queue(queues)
        if sharding_key is not None:
            return queues[select_by_hash(sharding_key, len(queues))]
        return self._next_queue(route.topic, queues, last_broker)

    def _next_queue(self, topic: str, queues: Sequence[MessageQueue],
                    last_broker: str | None) -> MessageQueue:
        counter = self._round_robin.get(topic)
        if counter is None:  # random start, like Java's sendWhichQueue: producers spread
            counter = self._round_robin[topic] = itertools.count(random.randrange(1 << 16))
        for _ in range(len(queues)):
            mq = queues[next(counter) % len(queues)]
            if last_broker is None or mq.broker_name != last_broker:
                return mq
        return queues[next(counter) % len(queues)]

    def _request(self, out: Outgoing, mq: MessageQueue) -> RemotingCommand:
        routes = self.instance.routes
        header = SendMessageRequestHeaderV2(
            a=self.group, b=out.topic, c=routes.create_topic_key,
            d=routes.default_topic_queue_nums, e=mq.queue_id, f=out.sys_flag,
            g=int(time.time() * 1000), h=out.flag, i=out.properties or None, j=0, k=False,
            m=out.batch)
        code = RequestCode.SEND_BATCH_MESSAGE if out.batch else RequestCode.SEND_MESSAGE_V2
        return make_request(code, 0, header.to_ext_fields(), out.body)

    @staticmethod
    def _response_header(response: RemotingCommand) -> SendMessageResponseHeader:
        try:
            return SendMessageResponseHeader.from_ext_fields(response.ext_fields)
        except HeaderFieldError as err:
            raise SendFailed(f"the broker stored the message but its answer is unreadable: "
                             f"{err}", "BAD_RESPONSE") from err


class Producer:
    """A synchronous producer: an `AsyncProducer` on a background event loop.

        with Producer("my-group", "127.0.0.1:9876") as producer:
            result = producer.send("Orders", b"...", tags="created", keys=["order-42"])
            future = producer.send_async("Orders", b"...")   # concurrent.futures.Future

    Arguments, results and errors are those of `AsyncProducer`. Methods are thread-safe.
    """

    def __init__(self, group: str, namesrv: str | Iterable[str] = DEFAULT_NAMESRV,
                 **options: Any) -> None:
        self._impl = AsyncProducer(group, namesrv, **options)
        self._thread = LoopThread(f"shmq-producer-{group}")
        self.group = group

    @property
    def client_id(self) -> str:
        """The client id brokers see."""
        return self._impl.instance.client_id

    def __repr__(self) -> str:
        return f"<Producer {self.group} {self.client_id}>"

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        if not self._thread.is_running:
            coro.close()
            raise ProducerClosed(f"producer {self.group} is closed")
        limit = (self._impl.send_timeout_s if timeout_s is None else timeout_s) + _FACADE_MARGIN_S
        return self._thread.run(coro, limit)

    def start(self) -> None:
        """Start now (optional: the first send starts the producer)."""
        self._run(self._impl.start())

    def close(self) -> None:
        """Unregister from the brokers, close connections, stop the loop (idempotent)."""
        self._thread.finish(self._impl.close(), _FACADE_MARGIN_S)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, topic: str, body: bytes | Message, *, timeout_s: float | None = None,
             **options: Any) -> SendResult:
        """Send and wait; see `AsyncProducer.send`."""
        return self._run(self._impl.send(topic, body, timeout_s=timeout_s, **options), timeout_s)

    def send_async(self, topic: str, body: bytes | Message, *,
                   callback: Callable[[concurrent.futures.Future[SendResult]], None] | None = None,
                   **options: Any) -> concurrent.futures.Future[SendResult]:
        """Send without waiting; `callback(future)` runs when it completes (on the client's
        loop thread: keep it short)."""
        if not self._thread.is_running:
            raise ProducerClosed(f"producer {self.group} is closed")
        future = self._thread.submit(self._impl.send(topic, body, **options))
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def send_oneway(self, topic: str, body: bytes | Message, **options: Any) -> None:
        """Send without any answer; see `AsyncProducer.send_oneway`."""
        self._run(self._impl.send_oneway(topic, body, **options))

    def send_batch(self, topic: str, messages: Sequence[Message | bytes], *,
                   timeout_s: float | None = None, **options: Any) -> BatchSendResult:
        """Send a batch to one queue and wait; see `AsyncProducer.send_batch`."""
        return self._run(self._impl.send_batch(topic, messages, timeout_s=timeout_s, **options),
                         timeout_s)

    def publish_queues(self, topic: str) -> tuple[MessageQueue, ...]:
        """The queues `topic` is sent to."""
        return self._run(self._impl.publish_queues(topic))
