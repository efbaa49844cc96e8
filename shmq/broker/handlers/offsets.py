"""Offset requests: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15),
SEARCH_OFFSET_BY_TIMESTAMP (29), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
GET_EARLIEST_MSG_STORETIME (32) (spec/request-codes.md §4; behaviours.md §5).

Queue bounds come from the store (refreshed per request); a topic or queue never written reads
as 0 everywhere, as Java's lookup creates an empty queue. A group with no committed offset on a
queue whose first message is still stored (nothing aged out: min offset 0) gets offset 0 — a new
group on a young queue reads it from the start, as a Java broker answers; otherwise
QUERY_NOT_FOUND at once (the client then applies its consume-from-where policy).
"""

from __future__ import annotations

from shmq.protocol import (
    GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader,
    GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader,
    QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader,
    RemotingCommand,
    ResponseCode,
    SearchOffsetRequestHeader,
    SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
    make_response,
)

from ..context import Broker, Session
from ..errors import IllegalTopic, NotFound
from ..topics import check_topic_name

__all__ = [
    "get_earliest_msg_storetime",
    "get_max_offset",
    "get_min_offset",
    "query_consumer_offset",
    "search_offset_by_timestamp",
    "update_consumer_offset",
]


def _bounds(broker: Broker, topic: str, queue_id: int) -> tuple[int, int]:
    """(min, max) of a queue; (0, 0) for a bad name or a queue never written."""
    if queue_id < 0 or not _is_valid_topic(topic):
        return 0, 0
    return broker.reader.bounds(topic, queue_id)


def _is_valid_topic(topic: str) -> bool:
    try:
        check_topic_name(topic)
    except IllegalTopic:  # such a topic has no queue: it reads as never written
        return False
    return True


def query_consumer_offset(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 14: the group's committed offset; 0 for a young queue; else QUERY_NOT_FOUND."""
    header = QueryConsumerOffsetRequestHeader.from_ext_fields(request.ext_fields)
    broker = ctx.broker
    offset = broker.offsets.query(header.consumer_group, header.topic, header.queue_id)
    if offset is None:
        low, _high = _bounds(broker, header.topic, header.queue_id)
        if low > 0:
            raise NotFound("Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
        offset = 0
    ext = QueryConsumerOffsetResponseHeader(offset).to_ext_fields()
    return make_response(request, ResponseCode.SUCCESS, ext_fields=ext)


def update_consumer_offset(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 15 (usually oneway): remember the group's offset; negative offsets are ignored."""
    header = UpdateConsumerOffsetRequestHeader.from_ext_fields(request.ext_fields)
    ctx.broker.offsets.commit(header.consumer_group, header.topic, header.queue_id,
                              header.commit_offset)
    return make_response(request, ResponseCode.SUCCESS)


def get_max_offset(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 30: the next queue offset to be written."""
    header = GetMaxOffsetRequestHeader.from_ext_fields(request.ext_fields)
    _low, high = _bounds(ctx.broker, header.topic, header.queue_id)
    return make_response(request, ResponseCode.SUCCESS,
                         ext_fields=GetMaxOffsetResponseHeader(high).to_ext_fields())


def get_min_offset(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 31: the first queue offset still stored."""
    header = GetMinOffsetRequestHeader.from_ext_fields(request.ext_fields)
    low, _high = _bounds(ctx.broker, header.topic, header.queue_id)
    return make_response(request, ResponseCode.SUCCESS,
                         ext_fields=GetMinOffsetResponseHeader(low).to_ext_fields())


def search_offset_by_timestamp(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 29: the queue offset of the message stored nearest to a time (ms)."""
    header = SearchOffsetRequestHeader.from_ext_fields(request.ext_fields)
    offset = 0
    if header.queue_id >= 0 and _is_valid_topic(header.topic):
        offset = ctx.broker.reader.search_offset(header.topic, header.queue_id,
                                                 header.timestamp)
    return make_response(request, ResponseCode.SUCCESS,
                         ext_fields=SearchOffsetResponseHeader(offset).to_ext_fields())


def get_earliest_msg_storetime(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 32: store time of the queue's first message (-1 when empty)."""
    header = GetEarliestMsgStoretimeRequestHeader.from_ext_fields(request.ext_fields)
    stamp = -1
    if header.queue_id >= 0 and _is_valid_topic(header.topic):
        stamp = ctx.broker.reader.earliest_store_time(header.topic, header.queue_id)
    return make_response(request, ResponseCode.SUCCESS,
                         ext_fields=GetEarliestMsgStoretimeResponseHeader(stamp).to_ext_fields())
