"""Topic administration and message lookups: UPDATE_AND_CREATE_TOPIC (17), GET_ALL_TOPIC_CONFIG
(21), DELETE_TOPIC_IN_BROKER (215), VIEW_MESSAGE_BY_ID (33), QUERY_MESSAGE (12)
(spec/request-codes.md §4, §8).

Topic changes go through the topic table, which persists them and makes the acceptor
re-register with the name servers at once. Deleting a topic forgets its config and the
groups' offsets on it; its stored messages stay until retention removes them (deleting consume
queues under a running writer is not safe from this process).

Lookups read the commit log directly: VIEW_MESSAGE_BY_ID answers the record at a commit-log
offset (decoded from an offset message id by the client), QUERY_MESSAGE the records the key
index lists under ``topic#key`` in a time range, checked against the topic and the key because
index hashes collide.
"""

from __future__ import annotations

from typing import Final

from shmq.protocol import (
    CreateTopicRequestHeader,
    DeleteTopicRequestHeader,
    QueryMessageRequestHeader,
    QueryMessageResponseHeader,
    RemotingCommand,
    ResponseCode,
    TopicConfig,
    ViewMessageRequestHeader,
    make_response,
)
from shmq.protocol.body_json import encode_json
from shmq.store.scan import index_keys_of

from ..context import Session
from ..errors import BrokerRejected, NotFound
from ..topics import check_topic_name

__all__ = [
    "delete_topic_in_broker",
    "get_all_topic_config",
    "query_message",
    "update_and_create_topic",
    "view_message_by_id",
]

#: defaultQueryMaxNum: at most this many messages per query
DEFAULT_QUERY_MAX_NUM: Final = 32


def update_and_create_topic(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 17: create or replace a topic's config."""
    header = CreateTopicRequestHeader.from_ext_fields(request.ext_fields)
    settings = ctx.broker.settings
    if header.topic in (settings.cluster, settings.name):
        raise BrokerRejected(f"the topic[{header.topic}] is conflict with system reserved words.")
    config = TopicConfig(header.topic, header.read_queue_nums, header.write_queue_nums,
                         header.perm, header.topic_filter_type, header.topic_sys_flag or 0,
                         header.order)
    ctx.broker.topics.put(config)
    return make_response(request, ResponseCode.SUCCESS)


def delete_topic_in_broker(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 215: forget a topic and the offsets on it (its messages age out)."""
    header = DeleteTopicRequestHeader.from_ext_fields(request.ext_fields)
    ctx.broker.topics.delete(header.topic)
    ctx.broker.offsets.remove_topic(header.topic)
    return make_response(request, ResponseCode.SUCCESS)


def get_all_topic_config(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 21: the topic table (TopicConfigSerializeWrapper JSON)."""
    body = encode_json(ctx.broker.topics.wrapper().to_json())
    return make_response(request, ResponseCode.SUCCESS, body=body)


def view_message_by_id(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 33: the record at a commit-log offset, or SYSTEM_ERROR."""
    header = ViewMessageRequestHeader.from_ext_fields(request.ext_fields)
    found = ctx.broker.reader.record(header.offset)
    if found is None:
        raise BrokerRejected(f"can not find message by the offset, {header.offset}")
    return make_response(request, ResponseCode.SUCCESS, body=found[0])


def query_message(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 12: the records indexed under topic#key in a time range, or QUERY_NOT_FOUND."""
    header = QueryMessageRequestHeader.from_ext_fields(request.ext_fields)
    check_topic_name(header.topic)
    reader = ctx.broker.reader
    max_num = DEFAULT_QUERY_MAX_NUM if header.unique_key_query else min(
        max(header.max_num, 0), DEFAULT_QUERY_MAX_NUM)
    offsets = reader.query_index(f"{header.topic}#{header.key}", header.begin_timestamp,
                                 header.end_timestamp, max_num)
    records = []
    for offset in offsets:
        found = reader.record(offset)
        if found is not None and found[1].topic == header.topic \
                and header.key in index_keys_of(found[1].properties):
            records.append(found[0])
    if not records:
        raise NotFound("can not find message, maybe time range not correct")
    stamp, phys = reader.index_status()
    ext = QueryMessageResponseHeader(stamp, phys).to_ext_fields()
    return make_response(request, ResponseCode.SUCCESS, ext_fields=ext,
                         body=b"".join(records))
