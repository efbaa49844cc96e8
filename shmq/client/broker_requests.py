"""Operator requests a broker relays to a consumer: RESET_CONSUMER_CLIENT_OFFSET (220, oneway)
and GET_CONSUMER_RUNNING_INFO (307) (spec/request-codes.md §6; Java `ClientRemotingProcessor`).

Theory of operation: `ClientInstance` hands these two codes to `answer_member_request` with a
lookup of its consumers by group. The consumer does the work through two optional methods
(duck-typed, so a consumer without them is answered as Java answers an unknown group):

* `async reset_offsets(topic, offsets)`: the group's offsets on `topic` were moved by an
  operator (`shmq admin consumer reset-offset`, mqadmin resetOffsetByTime); the consumer
  consumes its queues of `topic` from those offsets on. The request is oneway: nothing is
  answered; failures are logged.
* `running_info() -> ConsumerRunningInfo`: its settings, subscriptions and queues; this module
  adds the instance-wide properties Java adds (name servers, consume type, client version) and,
  when asked (`jstackEnable`), the stacks of this process's threads.

Runs on the client's event loop; never blocks.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final

from shmq.protocol import (
    BodyFormatError,
    HeaderFieldError,
    MessageQueue,
    MQVersion,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    make_response,
)
from shmq.protocol.admin import (
    ConsumerRunningInfo,
    GetConsumerRunningInfoRequestHeader,
    ResetOffsetBody,
    ResetOffsetRequestHeader,
)

if TYPE_CHECKING:
    from .instance import ClientInstance

__all__ = [
    "MEMBER_REQUESTS",
    "PROP_CLIENT_VERSION",
    "PROP_CONSUMER_START_TIMESTAMP",
    "PROP_CONSUME_ORDERLY",
    "PROP_CONSUME_TYPE",
    "PROP_NAMESERVER_ADDR",
    "PROP_THREADPOOL_CORE_SIZE",
    "answer_member_request",
]

log = logging.getLogger(__name__)

#: the request codes `answer_member_request` handles
MEMBER_REQUESTS: Final = frozenset({RequestCode.RESET_CONSUMER_CLIENT_OFFSET,
                                    RequestCode.GET_CONSUMER_RUNNING_INFO})

#: ConsumerRunningInfo property names (Java `ConsumerRunningInfo.PROP_*`)
PROP_NAMESERVER_ADDR: Final = "PROP_NAMESERVER_ADDR"
PROP_THREADPOOL_CORE_SIZE: Final = "PROP_THREADPOOL_CORE_SIZE"
PROP_CONSUME_ORDERLY: Final = "PROP_CONSUMEORDERLY"
PROP_CONSUME_TYPE: Final = "PROP_CONSUME_TYPE"
PROP_CLIENT_VERSION: Final = "PROP_CLIENT_VERSION"
PROP_CONSUMER_START_TIMESTAMP: Final = "PROP_CONSUMER_START_TIMESTAMP"


def answer_member_request(instance: ClientInstance, request: RemotingCommand,
                          member_of: Callable[[str], object | None],
                          ) -> RemotingCommand | Coroutine[Any, Any, None] | None:
    """Handle a request of `MEMBER_REQUESTS` for the consumer `member_of(group)`.

    Returns:
        The response (307), or a coroutine doing the reset (220, oneway: no response), or None
        when there is nothing to do.
    """
    try:
        if request.code == RequestCode.RESET_CONSUMER_CLIENT_OFFSET:
            return _reset(request, member_of)
        return _running_info(instance, request, member_of)
    except (HeaderFieldError, BodyFormatError) as err:
        log.warning("client %s: unreadable request %d from a broker: %s", instance.client_id,
                    request.code, err)
        return make_response(request, ResponseCode.SYSTEM_ERROR, str(err))


def _reset(request: RemotingCommand, member_of: Callable[[str], object | None],
           ) -> Coroutine[Any, Any, None] | None:
    header = ResetOffsetRequestHeader.from_ext_fields(request.ext_fields)
    table = ResetOffsetBody.decode(request.body).offset_table if request.body else {}
    reset = getattr(member_of(header.group), "reset_offsets", None)
    if reset is None:
        log.info("offset reset of group %s on %s: no such consumer here", header.group,
                 header.topic)
        return None
    log.info("offset reset of group %s on %s (timestamp %d): %s", header.group, header.topic,
             header.timestamp, {f"{mq.broker_name}/{mq.queue_id}": off
                                for mq, off in table.items()})
    return _run_reset(reset, header.topic, table)


async def _run_reset(reset: Callable[[str, Mapping[MessageQueue, int]], Any], topic: str,
                     table: Mapping[MessageQueue, int]) -> None:
    try:
        await reset(topic, table)
    except Exception:  # a oneway request: nobody to answer, so log it
        log.exception("offset reset of %s failed", topic)


def _running_info(instance: ClientInstance, request: RemotingCommand,
                  member_of: Callable[[str], object | None]) -> RemotingCommand:
    header = GetConsumerRunningInfoRequestHeader.from_ext_fields(request.ext_fields)
    member = member_of(header.consumer_group)
    running_info = getattr(member, "running_info", None)
    if running_info is None:
        return make_response(request, ResponseCode.SYSTEM_ERROR,
                             f"The Consumer Group <{header.consumer_group}> not exist in this "
                             "consumer")
    info: ConsumerRunningInfo = running_info()
    info.properties[PROP_NAMESERVER_ADDR] = "".join(
        f"{addr};" for addr in instance.routes.namesrv_addrs)
    info.properties[PROP_CLIENT_VERSION] = MQVersion.V4_9_7.name
    if header.jstack_enable:
        info = ConsumerRunningInfo(info.properties, info.subscription_set, info.mq_table,
                                   info.status_table, _thread_stacks())
    return make_response(request, ResponseCode.SUCCESS, body=info.encode())


def _thread_stacks() -> str:
    """Every thread's Python stack (the `jstack` of a Java client)."""
    parts = []
    for thread_id, frame in sys._current_frames().items():
        parts.append(f"Thread {thread_id}:\n{''.join(traceback.format_stack(frame))}")
    return "\n".join(parts)
