"""Sends: SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
CONSUMER_SEND_MSG_BACK (36) (spec/request-codes.md §3, §4; behaviours.md §2, §7).

Theory of operation
-------------------
A send is checked and turned into stored records on the event loop, then appended through the
broker's appender (the writers' rings) and answered when the writer says the records are
stored. In the order Java's `SendMessageProcessor` checks:

1. The topic name (SYSTEM_ERROR), system topics clients may not send to (NO_PERMISSION), the
   topic's config: known, created on first send from its default topic (`TBW102`), created for
   ``%RETRY%`` topics, or TOPIC_NOT_EXIST with Java's remark; WRITE permission.
2. The messages: one body, or a batch body (flag ``batch`` "1"/"true" on 10/310, always on 320)
   split into its entries after inflating it when the request is COMPRESSED (the 1.2.3-era C++
   client deflates whole batches). Each body must be 1..`max_body_bytes`; each properties
   string at most 32767 bytes (MESSAGE_ILLEGAL, nothing stored).
3. The queue: the requested one (SYSTEM_ERROR when outside the topic's queues) or, for a
   negative id, a random writable one. A ``%RETRY%<group>`` send whose reconsume count reached
   its maximum goes to ``%DLQ%<group>`` queue 0 instead. A TRAN_MSG (half) message goes to
   RMQ_SYS_TRANS_HALF_TOPIC queue 0 with REAL_TOPIC/REAL_QID and its transaction sysflag bits
   cleared, never to its topic (NO_PERMISSION when `BrokerSettings.reject_transaction`); as in
   Java, TRAN_MSG is read like `Boolean.parseBoolean` and ignored on a client-side resend
   (reconsume count and DELAY both set). Its response names the real queue, the half queue's
   offset and, as transactionId, its UNIQ_KEY (`transaction` resolves it later).
4. The properties as stored: WAIT removed (kept by Java only for its flush decisions), CLUSTER
   added; batch entries get the batch's own properties (which win, as the last occurrence in
   Java's stored string does), except that each entry keeps its own UNIQ_KEY. A plain batch
   (not for a retry topic, one FLAG) keeps each entry's bytes and appends the batch's string
   (`plain_batch`, as Java stores it); others are decoded and encoded again.
   The tag code of the consume-queue entry is the Java hash of TAGS.
5. BORNHOST is the TCP peer (`Session.born_host`), STOREHOST the broker's advertised address.

The response always carries msgId (offset message ids, comma-joined for a batch), queueId and
queueOffset as strings, plus MSG_REGION and TRACE_ON as Java adds them (a C++ client crashes
on a SUCCESS without them). A message with DELAY > 0 is parked in SCHEDULE_TOPIC_XXXX until its
delay passed (`schedule`); as in Java, the response names the message's own queue and its
offset in the schedule queue.

CONSUMER_SEND_MSG_BACK re-stores a message a consumer failed, read back from the commit log, in
``%RETRY%<group>`` with its reconsume count + 1 and RETRY_TOPIC / ORIGIN_MESSAGE_ID set, or in
``%DLQ%<group>`` once the count reaches the maximum (16 unless the request says otherwise) or
when the client asks for it (delayLevel < 0). Retries are delayed by level 3 + reconsume count
(10 s, 30 s, 1 min, ... 2 h) unless the request names a level.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from shmq.message import layout as rec
from shmq.message.batch import decode_batch_body
from shmq.message.encoder import EncodedBatch, encode_batch
from shmq.message.errors import CorruptRecord
from shmq.message.msgid import pack_host
from shmq.message.properties import (
    PROPERTY_CLUSTER,
    PROPERTY_DELAY,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_TAGS,
    PROPERTY_TRAN_MSG,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
    decode_properties,
    encode_properties,
)
from shmq.message.record import decode_record
from shmq.message.taghash import tag_hash
from shmq.protocol import (
    ConsumerSendMsgBackRequestHeader,
    MQVersion,
    RemotingCommand,
    ResponseCode,
    SendMessageRequestHeader,
    SendMessageResponseHeader,
    TopicConfig,
    decode_send_message_header,
    make_response,
)

from ..context import Broker, Session
from ..errors import (
    BrokerRejected,
    IllegalQueueId,
    MessageIllegal,
    NoPermission,
    TopicNotExist,
)
from ..schedule import MAX_LEVEL, delay_level, park
from ..topics import (
    NOT_ALLOWED_SEND_TOPICS,
    PERM_RW,
    PERM_WRITE,
    RETRY_GROUP_TOPIC_PREFIX,
    SCHEDULE_TOPIC,
    TRANS_HALF_TOPIC,
    check_topic_name,
    dlq_topic,
    retry_topic,
)
from .common import DEFAULT_MAX_RECONSUME_TIMES
from .plain_batch import plain_batch

__all__ = ["consumer_send_msg_back", "send_message"]

log = logging.getLogger(__name__)

#: sysflag bits a client may set on a send (hosts are the encoder's business)
_CLIENT_SYSFLAG: Final = (rec.COMPRESSED_FLAG | rec.MULTI_TAGS_FLAG | rec.TRANSACTION_MASK
                          | rec.COMPRESSION_TYPE_MASK)
_COMPRESSION_BITS: Final = rec.COMPRESSED_FLAG | rec.COMPRESSION_TYPE_MASK
_MAX_PROPERTIES: Final = rec.MAX_PROPERTIES_BYTES
_random = random.Random()


@dataclass(slots=True)
class _Message:
    body: bytes
    properties: dict[str, str]
    flag: int


@dataclass(slots=True)
class _Target:
    topic: str
    queue_id: int
    sysflag: int
    reconsume_times: int
    #: consume-queue tag code for every message instead of its TAGS hash (delivery time of a
    #: delayed message)
    tag_code: int | None = None
    #: the queue id the response names, when not `queue_id` (a delayed message's real queue)
    reply_queue_id: int | None = None
    #: transactionId of the response (a half message's UNIQ_KEY)
    transaction_id: str | None = None


# -- SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE ---------------------------------------


def send_message(ctx: Session, request: RemotingCommand) -> Awaitable[RemotingCommand]:
    """Codes 10, 310, 320: check and encode now (raising refuses the request before anything
    is sent), then append; the answer comes when the records are stored."""
    header = decode_send_message_header(request)
    broker = ctx.broker
    config = _writable_topic(broker, header)
    body = request.body if request.body is not None else b""
    sysflag = header.sys_flag & _CLIENT_SYSFLAG
    if header.batch:
        raw = _batch_body(broker, header, bytes(body))
        sysflag &= ~_COMPRESSION_BITS
        if not header.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            plain = plain_batch(raw, header.properties, broker.settings.cluster,
                                broker.settings.max_body_bytes)
            if plain is not None:  # the common case: entries' properties kept as they came
                target = _Target(header.topic, _queue_id(config, header.queue_id), sysflag,
                                 header.reconsume_times or 0)
                batch = _encode_records(broker, ctx.born_host, target, plain.bodies,
                                        plain.properties, header.born_timestamp, plain.flag)
                return _append(broker, request, target, batch, plain.tags)
        messages = _batch_messages(broker, header, raw)
    else:
        messages = [_single_message(broker, header, bytes(body))]
    target = _target(broker, header, config, messages, sysflag)
    batch, tags = _encode(broker, ctx.born_host, target, messages, header.born_timestamp)
    return _append(broker, request, target, batch, tags)


async def _append(broker: Broker, request: RemotingCommand, target: _Target,
                  batch: EncodedBatch, tags: np.ndarray, *,
                  with_header: bool = True) -> RemotingCommand:
    """Append, then answer with where the records landed (or, without `with_header`, just
    SUCCESS, as CONSUMER_SEND_MSG_BACK is answered)."""
    appended = await broker.appender.append(target.topic, target.queue_id, batch, tags)
    if not with_header:
        return make_response(request, ResponseCode.SUCCESS)
    ids = broker.msg_ids(appended.first_offset, batch.sizes)
    ext = SendMessageResponseHeader(
        msg_id=ids, queue_id=target.queue_id if target.reply_queue_id is None
        else target.reply_queue_id, queue_offset=appended.queue_offset,
        transaction_id=target.transaction_id, msg_region=broker.settings.region,
        trace_on=True).to_ext_fields()
    return make_response(request, ResponseCode.SUCCESS, ext_fields=ext)


def _writable_topic(broker: Broker, header: SendMessageRequestHeader) -> TopicConfig:
    topic = header.topic
    check_topic_name(topic)
    if topic in NOT_ALLOWED_SEND_TOPICS:
        raise NoPermission(f"Sending message to topic[{topic}] is forbidden.")
    config = broker.topics.get(topic)
    if config is None:
        config = _create_topic(broker, header)
    if not config.perm & PERM_WRITE:
        raise NoPermission(f"the topic[{topic}] sending message is forbidden")
    return config


def _create_topic(broker: Broker, header: SendMessageRequestHeader) -> TopicConfig:
    topic = header.topic
    if topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
        return broker.topics.ensure(topic, 1, PERM_RW)
    on_disk = broker.reader.topic_on_disk(topic)  # written by a same-host producer
    if on_disk:
        return broker.topics.ensure(topic, max(on_disk, broker.settings.default_queues))
    config = broker.topics.create_on_send(topic, header.default_topic,
                                          header.default_topic_queue_nums)
    if config is None:
        log.info("send to unknown topic %s refused (auto-create %s, default topic %s)", topic,
                 "on" if broker.topics.auto_create else "off", header.default_topic)
        raise TopicNotExist(topic)
    return config


def _single_message(broker: Broker, header: SendMessageRequestHeader, body: bytes) -> _Message:
    _check_body(broker, len(body))
    return _Message(body, _properties_of(header.properties), header.flag)


def _batch_body(broker: Broker, header: SendMessageRequestHeader, body: bytes) -> bytes:
    """The batch body, inflated if the client compressed it."""
    if header.sys_flag & rec.COMPRESSED_FLAG:
        compressed = len(body)
        body = _inflate(body, broker.settings.max_frame_bytes)
        log.debug("batch for %s: inflated %d -> %d bytes", header.topic, compressed, len(body))
    return body


def _batch_messages(broker: Broker, header: SendMessageRequestHeader,
                    body: bytes) -> list[_Message]:
    entries = decode_batch_body(body)
    if not entries:
        raise MessageIllegal("the batch body holds no message")
    shared = _properties_of(header.properties)
    messages = []
    for entry in entries:
        _check_body(broker, len(entry.body))
        properties = {**entry.properties, **shared}
        if PROPERTY_UNIQ_KEY in entry.properties:  # each message keeps its own id
            properties[PROPERTY_UNIQ_KEY] = entry.properties[PROPERTY_UNIQ_KEY]
        messages.append(_Message(entry.body, properties, entry.flag))
    return messages


def _check_body(broker: Broker, size: int) -> None:
    limit = broker.settings.max_body_bytes
    if size == 0:
        raise MessageIllegal("the message body is empty; nothing was stored")
    if size > limit:
        raise MessageIllegal(f"the message body of {size} bytes exceeds the {limit}-byte limit "
                             "(broker.max_body_bytes); nothing was stored")


def _inflate(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, limit)
    except zlib.error as err:
        raise MessageIllegal(f"the compressed batch body does not inflate: {err}") from err
    if inflater.unconsumed_tail:
        raise MessageIllegal(f"the compressed batch body inflates past {limit} bytes")
    return raw


def _properties_of(text: str | None) -> dict[str, str]:
    return decode_properties(text.encode()) if text else {}


def _target(broker: Broker, header: SendMessageRequestHeader, config: TopicConfig,
            messages: Sequence[_Message], sysflag: int) -> _Target:
    queue_id = _queue_id(config, header.queue_id)
    target = _Target(header.topic, queue_id, sysflag, header.reconsume_times or 0)
    if header.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
        _dead_letter_if_exhausted(broker, header, target, messages)
    if len(messages) == 1 and _is_half(target, messages[0]):
        _to_half_topic(broker, target, messages[0])
    elif len(messages) == 1:  # batches may not be delayed (clients refuse them)
        _delay_if_asked(broker, target, messages[0])
    return target


def _queue_id(config: TopicConfig, requested: int) -> int:
    if requested < 0:
        return _random.randrange(max(1, config.write_queue_nums))
    queues = max(config.read_queue_nums, config.write_queue_nums)
    if requested >= queues:
        raise IllegalQueueId(config.topic_name, requested, queues)
    return requested


def _dead_letter_if_exhausted(broker: Broker, header: SendMessageRequestHeader, target: _Target,
                              messages: Sequence[_Message]) -> None:
    group = header.topic[len(RETRY_GROUP_TOPIC_PREFIX):]
    limit = DEFAULT_MAX_RECONSUME_TIMES
    if header.max_reconsume_times is not None:
        limit = header.max_reconsume_times
    if target.reconsume_times < limit:
        return
    target.topic, target.queue_id = dlq_topic(group), 0
    broker.topics.ensure(target.topic, 1, PERM_RW)
    for message in messages:
        message.properties.pop(PROPERTY_DELAY, None)
    log.info("message of group %s reconsumed %d times: stored in %s", group,
             target.reconsume_times, target.topic)


def _is_half(target: _Target, message: _Message) -> bool:
    """Java: `Boolean.parseBoolean(TRAN_MSG)`, except on a pre-4.6.1 client's resend."""
    if message.properties.get(PROPERTY_TRAN_MSG, "").lower() != "true":
        return False
    return not (target.reconsume_times > 0 and delay_level(message.properties) > 0)


def _to_half_topic(broker: Broker, target: _Target, message: _Message) -> None:
    if broker.settings.reject_transaction:
        raise NoPermission(f"the broker[{broker.settings.host}] sending transaction message "
                           "is forbidden")
    message.properties[PROPERTY_REAL_TOPIC] = target.topic
    message.properties[PROPERTY_REAL_QID] = str(target.queue_id)
    target.reply_queue_id = target.queue_id  # Java answers the real queue id
    target.transaction_id = message.properties.get(PROPERTY_UNIQ_KEY)
    target.topic, target.queue_id = TRANS_HALF_TOPIC, 0
    target.sysflag &= ~rec.TRANSACTION_MASK
    broker.topics.ensure(TRANS_HALF_TOPIC, 1, PERM_RW)


def _delay_if_asked(broker: Broker, target: _Target, message: _Message) -> None:
    level = delay_level(message.properties)
    if level <= 0:
        message.properties.pop(PROPERTY_DELAY, None)
        return
    target.reply_queue_id = target.queue_id
    target.topic, target.queue_id, target.tag_code = park(
        message.properties, target.topic, target.queue_id, level, broker.clock_ms())
    broker.topics.ensure(SCHEDULE_TOPIC, MAX_LEVEL, PERM_RW)


def _encode(broker: Broker, born_host: bytes, target: _Target, messages: Sequence[_Message],
            born_timestamp_ms: int) -> tuple[EncodedBatch, np.ndarray]:
    cluster = broker.settings.cluster
    tags = np.empty(len(messages), dtype=np.int64)
    bodies, props = [], []
    for i, message in enumerate(messages):
        properties = message.properties
        properties.pop(PROPERTY_WAIT, None)
        properties[PROPERTY_CLUSTER] = cluster
        tags[i] = tag_hash(properties.get(PROPERTY_TAGS)) if target.tag_code is None \
            else target.tag_code
        props.append(encode_properties(properties))
        bodies.append(message.body)
    flags = {message.flag for message in messages}
    if len(flags) == 1:
        batch = _encode_records(broker, born_host, target, bodies, props, born_timestamp_ms,
                                flags.pop())
    else:  # batch entries each carry their own FLAG
        parts = [_encode_records(broker, born_host, target, [b], [p], born_timestamp_ms, m.flag)
                 for b, p, m in zip(bodies, props, messages)]
        batch = EncodedBatch(b"".join(bytes(part.data) for part in parts),
                             np.concatenate([part.sizes for part in parts]), parts[0].sysflag)
    return batch, tags


def _encode_records(broker: Broker, born_host: bytes, target: _Target, bodies: list[bytes],
                    props: list[bytes], born_timestamp_ms: int, flag: int) -> EncodedBatch:
    return encode_batch(target.topic.encode(), target.queue_id, bodies, props,
                        born_timestamp_ms=born_timestamp_ms, born_host=born_host,
                        store_host=broker.store_host, flag=flag, sysflag=target.sysflag,
                        reconsume_times=target.reconsume_times)


# -- CONSUMER_SEND_MSG_BACK ---------------------------------------------------------------------


def consumer_send_msg_back(ctx: Session,
                           request: RemotingCommand) -> Awaitable[RemotingCommand]:
    """Code 36: store a failed message again for the group's retry topic (or its DLQ)."""
    header = ConsumerSendMsgBackRequestHeader.from_ext_fields(request.ext_fields)
    broker = ctx.broker
    found = broker.reader.record(header.offset)
    if found is None:
        raise BrokerRejected(f"look message by offset failed, {header.offset}")
    try:
        original = decode_record(found[0])
    except CorruptRecord as err:
        raise BrokerRejected(f"look message by offset failed, {header.offset}: {err}") from err
    properties = dict(original.properties)
    properties.setdefault(PROPERTY_RETRY_TOPIC, original.topic)
    origin = properties.get(PROPERTY_ORIGIN_MESSAGE_ID) or header.origin_msg_id
    properties[PROPERTY_ORIGIN_MESSAGE_ID] = origin or properties.get(
        PROPERTY_UNIQ_KEY, broker.msg_id(header.offset))
    limit = DEFAULT_MAX_RECONSUME_TIMES
    if header.max_reconsume_times is not None and request.version >= MQVersion.V3_4_9:
        limit = header.max_reconsume_times
    if original.reconsume_times >= limit or header.delay_level < 0:
        topic, queue_id = dlq_topic(header.group), 0
        properties.pop(PROPERTY_DELAY, None)
        broker.topics.ensure(topic, 1, PERM_RW)
    else:
        topic = retry_topic(header.group)
        config = broker.topics.ensure(topic, 1, PERM_RW)
        queue_id = _random.randrange(max(1, config.write_queue_nums))
        level = header.delay_level or 3 + original.reconsume_times
        properties[PROPERTY_DELAY] = str(level)
    sysflag = original.sysflag & _CLIENT_SYSFLAG & ~rec.TRANSACTION_MASK
    target = _Target(topic, queue_id, sysflag, original.reconsume_times + 1)
    message = _Message(original.body, properties, original.flag)
    _delay_if_asked(broker, target, message)
    born_host = pack_host(original.born_host, original.born_port)
    batch, tags = _encode(broker, born_host, target, [message], original.born_timestamp_ms)
    log.debug("message at %d of group %s sent back to %s (reconsume %d)", header.offset,
              header.group, topic, target.reconsume_times)
    return _append(broker, request, target, batch, tags, with_header=False)
