"""Operator requests (mqadmin, consoles, `shmq admin`): GET_BROKER_CONFIG (26),
GET_BROKER_RUNTIME_INFO (28), GET_TOPIC_STATS_INFO (202), GET_CONSUMER_CONNECTION_LIST (203),
GET_CONSUME_STATS (208), INVOKE_BROKER_TO_RESET_OFFSET (222) and the GET_CONSUMER_RUNNING_INFO
(307) relay (spec/request-codes.md §6, §8; Java `AdminBrokerProcessor`, `Broker2Client`).

Bodies have the shapes Java writes (`shmq.protocol.admin`), MessageQueue-keyed maps included,
so the Java admin tools read them.

Rules that differ from a Java 4.9 broker, on purpose:

* Queue counts: stats and resets cover the topic's *read* queues (what consumers read; Java
  uses the write queues for 202 and 222, the read queues for 208).
* GET_CONSUME_STATS without a topic covers the topics the group has offsets on *and* the topics
  its live consumers subscribe to (Java: offsets only), so a group that subscribed but never
  committed shows its whole backlog. A group the broker knows nothing of (no offset, no
  registered consumer) is answered SUBSCRIPTION_GROUP_NOT_EXIST, as 5.x brokers do.
* INVOKE_BROKER_TO_RESET_OFFSET stores the new offsets itself before telling the live consumers
  (RESET_CONSUMER_CLIENT_OFFSET, oneway; C++ channels get the C++ body form), so a reset works
  with no consumer online too (Java answers CONSUMER_NOT_ONLINE and the tool falls back to
  updating offsets one queue at a time).
* Runtime info has no rates (the acceptor does not count messages); it reports what the store
  shows: commit-log bounds, disk use, message count per the consume queues, boot time.

The 307 relay is the only handler here that waits: it forwards the request to the client's
connection and answers with the client's response (CONSUME_MSG_TIMEOUT after 10 s).
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Final

import psutil

from shmq import __version__
from shmq.protocol import (
    KVTable,
    LanguageCode,
    MessageQueue,
    MQVersion,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicConfig,
    make_request,
    make_response,
)
from shmq.protocol.admin import (
    ClientConnection,
    ConsumerConnection,
    ConsumeStats,
    GetConsumerConnectionListRequestHeader,
    GetConsumerRunningInfoRequestHeader,
    GetConsumeStatsRequestHeader,
    GetTopicStatsInfoRequestHeader,
    OffsetWrapper,
    ResetOffsetBody,
    ResetOffsetRequestHeader,
    TopicOffset,
    TopicStatsTable,
    properties_text,
)
from shmq.protocol.errors import LocalProtocolError
from shmq.remoting import Connection, ConnectionClosed, RemotingTimeout
from shmq.store import layout

from ..context import Broker, Session
from ..errors import BrokerRejected, TopicNotExist

__all__ = [
    "get_broker_config",
    "get_broker_runtime_info",
    "get_consume_stats",
    "get_consumer_connection_list",
    "get_consumer_running_info",
    "get_topic_stats_info",
    "invoke_broker_to_reset_offset",
]

log = logging.getLogger(__name__)

#: how long the relay waits for a client (Java `Broker2Client.callClient`: 10 s)
CALL_CLIENT_TIMEOUT_S: Final = 10.0
_CLAIMED: Final = struct.Struct(">q")
_MAGIC: Final = struct.Struct(">Q")
#: this process's start (the acceptor's boot time)
_BOOT_MS: Final = int(psutil.Process(os.getpid()).create_time() * 1000)


class ConsumerNotOnline(BrokerRejected):
    """The consumer group has no live client here."""

    response_code = ResponseCode.CONSUMER_NOT_ONLINE


class GroupNotExist(BrokerRejected):
    """Neither offsets nor live consumers of the group are known here."""

    response_code = ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST

    def __init__(self, group: str, detail: str = "it has no offsets and no consumer online "
                                                "on this broker") -> None:
        super().__init__(f"the consumer group[{group}] not exist: {detail}")
        self.group = group


# -- broker ----------------------------------------------------------------------------------


def get_broker_runtime_info(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 28: a KVTable of what the store and this process show."""
    broker = ctx.broker
    root = broker.reader.root
    now_ms = int(time.time() * 1000)
    table = {
        "brokerVersionDesc": f"shmq {__version__} (protocol V4_9_7)",
        "brokerVersion": str(int(MQVersion.V4_9_7)),
        "bootTimestamp": str(_BOOT_MS),
        "runtime": _runtime_text(now_ms - _BOOT_MS),
        "commitLogMinOffset": str(_commit_log_min(broker)),
        "commitLogMaxOffset": str(_claimed_offset(root)),
        "earliestMessageTimeStamp": str(_earliest_message_time(broker)),
        "msgStoredTotal": str(_messages_in_queues(broker)),
        "topicCount": str(len(broker.topics.topics())),
    }
    table.update(_disk(root))
    return make_response(request, ResponseCode.SUCCESS, body=KVTable(table).encode())


def get_broker_config(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 26: the broker's settings as `key=value` lines (Java names where Java has one)."""
    s = ctx.broker.settings
    store = ctx.broker.reader.config
    root = ctx.broker.reader.root
    config: dict[str, object] = {
        "brokerName": s.name, "brokerClusterName": s.cluster, "brokerIP1": s.host,
        "listenPort": s.port, "brokerId": s.broker_id,
        "brokerRole": "ASYNC_MASTER" if s.broker_id == 0 else "SLAVE",
        "autoCreateTopicEnable": s.auto_create_topic, "defaultTopicQueueNums": s.default_queues,
        "maxMessageSize": s.max_body_bytes, "maxFrameBytes": s.max_frame_bytes,
        "regionId": s.region, "storePathRootDir": str(root),
        "storePathCommitLog": str(root / "commitlog"),
        "mappedFileSizeCommitLog": store.segment_bytes,
        "mappedFileSizeConsumeQueue": store.cq_entries_per_file * 20,
        "flushDiskType": "SYNC_FLUSH" if store.flush.value == "sync" else "ASYNC_FLUSH",
        "flushIntervalCommitLog": store.flush_interval_ms,
        "fileReservedTime": store.retention_hours,
        "diskMaxUsedSpaceRatio": int(store.disk_high_water_ratio * 100),
        "maxHashSlotNum": store.index_slots, "maxIndexNum": store.index_max_entries,
    }
    return make_response(request, ResponseCode.SUCCESS, body=properties_text(config))


def _runtime_text(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"[ {days} days, {hours} hours, {minutes} minutes, {seconds} seconds ]"


def _claimed_offset(root: Path) -> int:
    """The next commit-log append offset (the claim table's `claimed`), 0 when unknown."""
    try:
        with open(root / "claims", "rb") as f:
            head = f.read(layout.CLAIMS_SLOTS_OFFSET)
    except OSError:
        return 0
    if len(head) < layout.CLAIMS_CLAIMED_OFFSET + _CLAIMED.size:
        return 0
    if _MAGIC.unpack_from(head, layout.CLAIMS_MAGIC_OFFSET)[0] != layout.CLAIMS_MAGIC:
        return 0
    return int(_CLAIMED.unpack_from(head, layout.CLAIMS_CLAIMED_OFFSET)[0])


def _commit_log_min(broker: Broker) -> int:
    starts = broker.reader.store.commitlog.segments.starts()
    return starts[0] if starts else 0


def _queues(broker: Broker) -> list[tuple[str, int]]:
    return broker.reader.store.queues_on_disk()


def _messages_in_queues(broker: Broker) -> int:
    total = 0
    for topic, queue_id in _queues(broker):
        low, high = broker.reader.bounds(topic, queue_id)
        total += high - low
    return total


def _earliest_message_time(broker: Broker) -> int:
    stamps = [broker.reader.earliest_store_time(t, q) for t, q in _queues(broker)]
    stamps = [s for s in stamps if s > 0]
    return min(stamps) if stamps else 0


def _disk(root: Path) -> dict[str, str]:
    try:
        usage = shutil.disk_usage(root)
    except OSError:
        return {}
    ratio = (usage.total - usage.free) / usage.total if usage.total else 0.0
    return {
        "commitLogDirCapacity": f"Total : {_human(usage.total)}, Free : {_human(usage.free)}.",
        "commitLogDiskRatio": f"{ratio:.4f}",
        "consumeQueueDiskRatio": f"{ratio:.4f}",
    }


def _human(size: int) -> str:
    """Java `MixAll.humanReadableByteCount(size, false)`: 1024-based, one decimal."""
    if size < 1024:
        return f"{size} B"
    value, unit = float(size), "B"
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}iB"


# -- topics ----------------------------------------------------------------------------------


def get_topic_stats_info(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 202: each queue's min and max offset and its last message's store time."""
    header = GetTopicStatsInfoRequestHeader.from_ext_fields(request.ext_fields)
    broker = ctx.broker
    config = _topic(broker, header.topic)
    table = {}
    for queue_id in range(config.read_queue_nums):
        low, high = broker.reader.bounds(header.topic, queue_id)
        stamp = _store_time(broker, header.topic, queue_id, high - 1) if high > 0 else 0
        table[MessageQueue(header.topic, broker.settings.name, queue_id)] = TopicOffset(
            low, high, stamp)
    return make_response(request, ResponseCode.SUCCESS, body=TopicStatsTable(table).encode())


def _topic(broker: Broker, topic: str) -> TopicConfig:
    config = broker.topics.get(topic)
    if config is None:
        raise TopicNotExist(topic)
    return config


def _store_time(broker: Broker, topic: str, queue_id: int, queue_offset: int) -> int:
    """Store time of the message at `queue_offset` (0 when it is gone)."""
    if queue_offset < 0:
        return 0
    entry = broker.reader.queue(topic, queue_id).read(queue_offset, 1)
    if not len(entry):
        return 0
    stamp = broker.reader.store_timestamp(int(entry["offset"][0]))
    return stamp or 0


# -- consumer groups -------------------------------------------------------------------------


def get_consumer_connection_list(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 203: the group's live channels, subscriptions and settings; CONSUMER_NOT_ONLINE
    when it has none."""
    header = GetConsumerConnectionListRequestHeader.from_ext_fields(request.ext_fields)
    group = ctx.broker.clients.consumer_group(header.consumer_group)
    if group is None or not group.channels:
        raise ConsumerNotOnline(f"the consumer group[{header.consumer_group}] not online")
    connections = tuple(
        ClientConnection(ch.client_id, ch.conn.remote_address, ch.language, ch.version)
        for ch in sorted(group.channels.values(), key=lambda ch: ch.client_id))
    body = ConsumerConnection(connections, dict(group.subscriptions), group.consume_type,
                              group.message_model, group.consume_from_where)
    return make_response(request, ResponseCode.SUCCESS, body=body.encode())


def _group_topics(broker: Broker, group: str) -> list[str]:
    """Topics the group has offsets on or subscribes to (see the module docstring)."""
    topics = {t for t in broker.topics.topics() if group in broker.offsets.groups_of(t)}
    info = broker.clients.consumer_group(group)
    if info is not None and info.channels:
        topics |= set(info.subscriptions)
    return sorted(topics)


def _is_known(broker: Broker, group: str, topics: list[str]) -> bool:
    info = broker.clients.consumer_group(group)
    return bool(topics) or (info is not None and bool(info.channels))


def get_consume_stats(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 208: per queue the max offset, the group's offset and the store time of the last
    message consumed."""
    header = GetConsumeStatsRequestHeader.from_ext_fields(request.ext_fields)
    broker, group = ctx.broker, header.consumer_group
    known_topics = _group_topics(broker, group)
    if not _is_known(broker, group, known_topics):
        raise GroupNotExist(group)
    topics = [header.topic] if header.topic else known_topics
    info = broker.clients.consumer_group(group)
    subscribed = set(info.subscriptions) if info is not None and info.channels else set()
    table: dict[MessageQueue, OffsetWrapper] = {}
    for topic in topics:
        config = broker.topics.get(topic)
        if config is None or (subscribed and topic not in subscribed
                              and group not in broker.offsets.groups_of(topic)):
            continue
        for queue_id in range(config.read_queue_nums):
            _low, high = broker.reader.bounds(topic, queue_id)
            committed = broker.offsets.query(group, topic, queue_id) or 0
            table[MessageQueue(topic, broker.settings.name, queue_id)] = OffsetWrapper(
                high, committed, _store_time(broker, topic, queue_id, committed - 1))
    return make_response(request, ResponseCode.SUCCESS, body=ConsumeStats(table).encode())


def invoke_broker_to_reset_offset(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 222: move the group's offsets on a topic to the messages stored at a time (-1: the
    end), store them, and tell the group's live consumers (see the module docstring)."""
    header = ResetOffsetRequestHeader.from_ext_fields(request.ext_fields)
    broker, group, topic = ctx.broker, header.group, header.topic
    config = _topic(broker, topic)
    info = broker.clients.consumer_group(group)
    online = info is not None and bool(info.channels)
    if group not in broker.offsets.groups_of(topic) and not (
            online and info is not None and topic in info.subscriptions):
        raise GroupNotExist(group, f"it has no offsets on {topic} and no consumer online "
                                   "subscribed to it")
    table = {}
    for queue_id in range(config.read_queue_nums):
        target = (broker.reader.bounds(topic, queue_id)[1] if header.timestamp == -1
                  else broker.reader.search_offset(topic, queue_id, header.timestamp))
        current = broker.offsets.query(group, topic, queue_id)
        if not header.is_force and current is not None and current <= target:
            target = current
        broker.offsets.commit(group, topic, queue_id, target)
        table[MessageQueue(topic, broker.settings.name, queue_id)] = target
    body = ResetOffsetBody(table)
    notified = _tell_consumers(broker, header, body)
    log.info("offsets of group %s on %s reset to %s (timestamp %d); %d consumers told", group,
             topic, [table[mq] for mq in sorted(table, key=lambda q: q.queue_id)],
             header.timestamp, notified)
    return make_response(request, ResponseCode.SUCCESS, body=body.encode())


def _tell_consumers(broker: Broker, header: ResetOffsetRequestHeader,
                    body: ResetOffsetBody) -> int:
    info = broker.clients.consumer_group(header.group)
    if info is None:
        return 0
    fields = header.to_ext_fields()
    told = 0
    for channel in list(info.channels.values()):
        payload = body.encode_for_c() if channel.language == LanguageCode.CPP.name \
            else body.encode()
        request = make_request(RequestCode.RESET_CONSUMER_CLIENT_OFFSET, 0, fields, payload)
        try:
            channel.conn.oneway(request)
            told += 1
        except (ConnectionClosed, LocalProtocolError) as err:
            log.info("cannot tell %s of group %s about the reset: %s", channel.client_id,
                     header.group, err)
    return told


def get_consumer_running_info(ctx: Session,
                              request: RemotingCommand) -> Awaitable[RemotingCommand]:
    """Code 307: ask the named client of the group for its running info; relay the answer."""
    header = GetConsumerRunningInfoRequestHeader.from_ext_fields(request.ext_fields)
    info = ctx.broker.clients.consumer_group(header.consumer_group)
    channel = None
    if info is not None:
        channel = next((ch for ch in info.channels.values()
                        if ch.client_id == header.client_id), None)
    if channel is None:
        raise BrokerRejected(f"The Consumer <{header.consumer_group}> <{header.client_id}> "
                             "not online")
    return _call_client(request, channel.conn, header)


async def _call_client(request: RemotingCommand, conn: Connection,
                       header: GetConsumerRunningInfoRequestHeader) -> RemotingCommand:
    forwarded = make_request(request.code, 0, dict(request.ext_fields), request.body)
    try:
        answer = await conn.request(forwarded, CALL_CLIENT_TIMEOUT_S)
    except RemotingTimeout:
        return make_response(request, ResponseCode.CONSUME_MSG_TIMEOUT,
                             f"consumer <{header.consumer_group}> <{header.client_id}> Timeout")
    except (ConnectionClosed, LocalProtocolError) as err:
        return make_response(request, ResponseCode.SYSTEM_ERROR,
                             f"invoke consumer <{header.consumer_group}> <{header.client_id}> "
                             f"Exception: {err}")
    return make_response(request, answer.code, answer.remark, dict(answer.ext_fields),
                         answer.body)
