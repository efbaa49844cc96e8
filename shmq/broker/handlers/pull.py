"""PULL_MESSAGE (11): read a queue with broker-side tag filtering and long polling
(spec/request-codes.md §4; behaviours.md §4).

Theory of operation
-------------------
1. Checks, as Java's `PullMessageProcessor`: the topic exists (TOPIC_NOT_EXIST) and is readable
   (NO_PERMISSION); the queue id is below its read queues (SYSTEM_ERROR).
2. The filter: with the SUBSCRIPTION flag, from the request's expression (TAG only; SQL92 is
   refused with Java's remark); without it (Java push consumers), from the subscription the
   group registered by heartbeat (SUBSCRIPTION_NOT_EXIST, SUBSCRIPTION_NOT_LATEST). A TAG
   expression becomes a set of tag codes compared with the consume-queue entries in one
   vectorised pass; "*" reads everything.
3. The COMMIT_OFFSET flag stores the request's commitOffset as the group's offset (as
   UPDATE_CONSUMER_OFFSET would).
4. The read (`StoreReader.pull`) gives the code and offsets; the response always carries
   nextBeginOffset, minOffset, maxOffset and suggestWhichBrokerId as strings (clients read
   them on every code) and, on SUCCESS, the records verbatim.
5. PULL_NOT_FOUND with the SUSPEND flag parks the pull (`longpoll.PullHolds`) for the client's
   suspend timeout (capped at `MAX_HOLD_S`, below the clients' 30 s request timeout). When the
   queue grows it is read again: messages are answered at once; entries that do not match the
   filter are skipped and the pull stays parked, so a filtered consumer is not woken for
   messages it will not get. At the deadline (or when the broker drains) it answers
   PULL_NOT_FOUND with nextBeginOffset past the skipped entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Final

import numpy as np
import numpy.typing as npt

from shmq.protocol import (
    EXPRESSION_TAG,
    PullMessageRequestHeader,
    PullMessageResponseHeader,
    PullSysFlag,
    RemotingCommand,
    ResponseCode,
    make_response,
)

from ..context import Broker, Session
from ..errors import (
    BrokerRejected,
    NoPermission,
    SubscriptionMissing,
    SubscriptionOutdated,
)
from ..reader import PullResult
from ..topics import PERM_READ
from .common import readable_topic

__all__ = [
    "FLAG_CLASS_FILTER",
    "FLAG_COMMIT_OFFSET",
    "FLAG_SUBSCRIPTION",
    "FLAG_SUSPEND",
    "MAX_HOLD_S",
    "pull_message",
]

FLAG_COMMIT_OFFSET: Final = PullSysFlag.COMMIT_OFFSET
FLAG_SUSPEND: Final = PullSysFlag.SUSPEND
FLAG_SUBSCRIPTION: Final = PullSysFlag.SUBSCRIPTION
FLAG_CLASS_FILTER: Final = PullSysFlag.CLASS_FILTER
#: longest hold: the clients give a suspended pull 30 s
MAX_HOLD_S: Final = 25.0

_STATUS: Final[dict[int, str]] = {
    ResponseCode.SUCCESS: "FOUND",
    ResponseCode.PULL_NOT_FOUND: "NO_NEW_MESSAGE",
    ResponseCode.PULL_RETRY_IMMEDIATELY: "NO_MATCHED_MESSAGE",
    ResponseCode.PULL_OFFSET_MOVED: "OFFSET_ILLEGAL",
}


def pull_message(ctx: Session, request: RemotingCommand
                 ) -> RemotingCommand | Awaitable[RemotingCommand]:
    """Code 11; see the module docstring."""
    header = PullMessageRequestHeader.from_ext_fields(request.ext_fields)
    broker = ctx.broker
    config = readable_topic(broker, header.topic)
    if not config.perm & PERM_READ:
        raise NoPermission(f"the topic[{header.topic}] pulling message is forbidden")
    if not 0 <= header.queue_id < config.read_queue_nums:
        raise BrokerRejected(
            f"queueId[{header.queue_id}] is illegal, topic:[{header.topic}] "
            f"topicConfig.readQueueNums:[{config.read_queue_nums}] "
            f"consumer:[{ctx.conn.remote_address}]")
    codes = _tag_codes(broker, header)
    if header.sys_flag & FLAG_COMMIT_OFFSET:
        broker.offsets.commit(header.consumer_group, header.topic, header.queue_id,
                              header.commit_offset)
    result = broker.reader.pull(header.topic, header.queue_id, header.queue_offset,
                                header.max_msg_nums, codes)
    if (result.code == ResponseCode.PULL_NOT_FOUND and header.sys_flag & FLAG_SUSPEND
            and header.suspend_timeout_millis > 0 and not broker.holds.is_closing):
        return _long_poll(broker, request, header, codes, result)
    return _response(request, result)


def _tag_codes(broker: Broker, header: PullMessageRequestHeader
               ) -> npt.NDArray[np.int64] | None:
    if header.sys_flag & FLAG_CLASS_FILTER:
        return None
    if header.sys_flag & FLAG_SUBSCRIPTION:
        _check_expression_type(header.expression_type or EXPRESSION_TAG)
        return broker.tag_codes(header.subscription)
    group = broker.clients.consumer_group(header.consumer_group)
    if group is None:
        raise SubscriptionMissing(
            f"the consumer's group info not exist, group: {header.consumer_group}")
    sub = group.subscriptions.get(header.topic)
    if sub is None:
        raise SubscriptionMissing(f"the consumer's subscription not exist, group: "
                                  f"{header.consumer_group}, topic: {header.topic}")
    if sub.sub_version < header.sub_version:
        raise SubscriptionOutdated(f"the consumer's subscription not latest, group: "
                                   f"{header.consumer_group}, topic: {header.topic}")
    _check_expression_type(sub.expression_type)
    return broker.tag_codes(sub.sub_string)


def _check_expression_type(expression_type: str) -> None:
    if expression_type != EXPRESSION_TAG:
        raise BrokerRejected("The broker does not support consumer to filter message by "
                             f"{expression_type}")


async def _long_poll(broker: Broker, request: RemotingCommand, header: PullMessageRequestHeader,
                     codes: npt.NDArray[np.int64] | None, first: PullResult) -> RemotingCommand:
    holds, reader = broker.holds, broker.reader
    hold_s = min(header.suspend_timeout_millis / 1000.0, MAX_HOLD_S)
    deadline = holds.time() + hold_s
    offset, result = first.next_begin_offset, first
    while True:
        if result.code == ResponseCode.PULL_RETRY_IMMEDIATELY:
            offset = result.next_begin_offset  # nothing matched: skip those entries for good
            if offset < result.max_offset:
                await asyncio.sleep(0)  # more to scan now; let others run first
            else:
                await holds.wait(header.topic, header.queue_id, offset, deadline)
        elif result.code == ResponseCode.PULL_NOT_FOUND:
            if holds.time() >= deadline or holds.is_closing:
                break
            await holds.wait(header.topic, header.queue_id, offset, deadline)
        else:
            return _response(request, result)
        result = reader.pull(header.topic, header.queue_id, offset, header.max_msg_nums, codes)
        if result.code == ResponseCode.PULL_RETRY_IMMEDIATELY and (
                holds.time() >= deadline or holds.is_closing):
            offset = result.next_begin_offset
            break
    return _response(request, PullResult(ResponseCode.PULL_NOT_FOUND, offset,
                                         result.min_offset, result.max_offset))


def _response(request: RemotingCommand, result: PullResult) -> RemotingCommand:
    ext = PullMessageResponseHeader(
        suggest_which_broker_id=0, next_begin_offset=result.next_begin_offset,
        min_offset=result.min_offset, max_offset=result.max_offset).to_ext_fields()
    return make_response(request, result.code, remark=_STATUS.get(result.code), ext_fields=ext,
                         body=result.body if result.code == ResponseCode.SUCCESS else None)
