"""Client requests: HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38),
LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ (42) (spec/request-codes.md §4; behaviours.md §3, §10).

A heartbeat registers the connection under each producer and consumer group it names, with the
consumers' subscriptions (C++ sends tag codes that are garbage; `HeartbeatData` recomputes them
from the expression), creates each consumer group's ``%RETRY%<group>`` topic, and, when a
group's members or topics changed, sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member
so they rebalance at once. Unregistering (or the connection closing, see dispatch) does the
same for the members left.
"""

from __future__ import annotations

import logging

from shmq.protocol import (
    ConsumerListBody,
    GetConsumerListByGroupRequestHeader,
    HeartbeatData,
    LockBatchRequestBody,
    LockBatchResponseBody,
    RemotingCommand,
    ResponseCode,
    UnlockBatchRequestBody,
    UnregisterClientRequestHeader,
    make_response,
)

from ..clients import ClientChannel
from ..context import Session
from ..errors import BrokerRejected
from ..topics import PERM_RW, retry_topic

__all__ = [
    "get_consumer_list_by_group",
    "heart_beat",
    "lock_batch_mq",
    "unlock_batch_mq",
    "unregister_client",
]

log = logging.getLogger(__name__)


def heart_beat(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 34: register the client's groups; notify consumer groups that changed."""
    data = HeartbeatData.decode(request.body or b"{}")
    broker = ctx.broker
    now = broker.monotonic()
    channel = ClientChannel(ctx.conn, data.client_id, request.language.name, request.version,
                            now)
    for consumer in data.consumer_data_set:
        broker.topics.ensure(retry_topic(consumer.group_name), 1, PERM_RW)
        if broker.clients.register_consumer(consumer, channel):
            log.info("consumer group %s: %s (%s) registered, subscriptions %s",
                     consumer.group_name, data.client_id, ctx.conn.remote_address,
                     sorted(s.topic for s in consumer.subscription_data_set))
            broker.notify_consumer_ids_changed(consumer.group_name)
    for producer in data.producer_data_set:
        broker.clients.register_producer(producer.group_name, channel)
    return make_response(request, ResponseCode.SUCCESS)


def unregister_client(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 35: the client is shutting down (C++ sends "" for the group it does not have)."""
    header = UnregisterClientRequestHeader.from_ext_fields(request.ext_fields)
    broker = ctx.broker
    if header.consumer_group and broker.clients.unregister_consumer(
            header.consumer_group, ctx.conn, header.client_id):
        log.info("consumer group %s: %s unregistered", header.consumer_group, header.client_id)
        broker.notify_consumer_ids_changed(header.consumer_group)
    if header.producer_group:
        broker.clients.unregister_producer(header.producer_group, ctx.conn)
    return make_response(request, ResponseCode.SUCCESS)


def get_consumer_list_by_group(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 38: the client ids of the group's live channels, or SYSTEM_ERROR when none."""
    header = GetConsumerListByGroupRequestHeader.from_ext_fields(request.ext_fields)
    ids = ctx.broker.clients.consumer_ids(header.consumer_group)
    if not ids:
        raise BrokerRejected(f"no consumer for this group, {header.consumer_group}")
    return make_response(request, ResponseCode.SUCCESS,
                         body=ConsumerListBody(tuple(ids)).encode())


def lock_batch_mq(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 41: lock what can be locked; answer the queues the client holds."""
    body = LockBatchRequestBody.decode(request.body or b"{}")
    broker = ctx.broker
    held = broker.locks.lock(body.consumer_group, body.client_id, body.mq_set,
                             broker.monotonic())
    return make_response(request, ResponseCode.SUCCESS,
                         body=LockBatchResponseBody(tuple(held)).encode())


def unlock_batch_mq(ctx: Session, request: RemotingCommand) -> RemotingCommand:
    """Code 42: release the client's own locks."""
    body = UnlockBatchRequestBody.decode(request.body or b"{}")
    ctx.broker.locks.unlock(body.consumer_group, body.client_id, body.mq_set)
    return make_response(request, ResponseCode.SUCCESS)
