"""The requests a consumer sends to brokers: pulls, offsets, send-back, consumer lists and
queue locks (spec/request-codes.md §4; behaviours.md §4-§7, §10, §13.1).

Theory of operation: `ConsumerApi` turns each operation into one request to the right broker
and its answer into a value or a typed `ClientError`. Where requests go:

* pulls go to the broker id the last pull of that queue suggested (`suggestWhichBrokerId`,
  initially the master), else to the master, else to any member (a slave keeps serving reads
  when the master is gone); the COMMIT_OFFSET flag is only set towards a master;
* offsets, send-back and locks go to the master of the queue's broker name (offsets fall back to
  any member, like Java's `findBrokerAddressInAdmin`);
* the group's consumer list comes from one broker serving the topic (every member heartbeats
  every broker, so any one has the whole list).

Pulls always carry the subscription (PullSysFlag SUBSCRIPTION, as the C++ client does), so the
broker never needs the heartbeat's copy to filter, and a suspended pull (long polling) waits
`suspend_ms` at the broker plus 15 s of network slack (Java: 15 s hold, 30 s timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from shmq.protocol import (
    BodyFormatError,
    ConsumerListBody,
    ConsumerSendMsgBackRequestHeader,
    GetConsumerListByGroupRequestHeader,
    GetMaxOffsetRequestHeader,
    GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader,
    HeaderFieldError,
    LockBatchRequestBody,
    LockBatchResponseBody,
    MessageQueue,
    PullMessageRequestHeader,
    PullSysFlag,
    QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader,
    RequestCode,
    ResponseCode,
    SearchOffsetRequestHeader,
    SearchOffsetResponseHeader,
    SubscriptionData,
    UnlockBatchRequestBody,
    UpdateConsumerOffsetRequestHeader,
    make_request,
)

from .errors import BrokerError, MalformedResponse, NoRouteInfo, error_for_response
from .instance import ClientInstance
from .received import PullResult, ReceivedMessage, decode_pull_response, pull_status
from .routes import MASTER_ID

__all__ = [
    "DEFAULT_PULL_BATCH_SIZE",
    "DEFAULT_SUSPEND_MS",
    "PULL_COMMIT_OFFSET",
    "PULL_SUBSCRIPTION",
    "PULL_SUSPEND",
    "ConsumerApi",
]

log = logging.getLogger(__name__)

PULL_COMMIT_OFFSET: Final = PullSysFlag.COMMIT_OFFSET
PULL_SUSPEND: Final = PullSysFlag.SUSPEND
PULL_SUBSCRIPTION: Final = PullSysFlag.SUBSCRIPTION
#: messages asked for per pull (all three reference clients: 32)
DEFAULT_PULL_BATCH_SIZE: Final = 32
#: long-poll hold asked of the broker (all three reference clients: 15 s)
DEFAULT_SUSPEND_MS: Final = 15_000
#: network slack added to a suspended pull's hold (Java waits 30 s for a 15 s hold)
_SUSPEND_SLACK_S: Final = 15.0
#: per-message retry limit sent with CONSUMER_SEND_MSG_BACK (the broker's group default)
DEFAULT_MAX_RECONSUME_TIMES: Final = 16


class ConsumerApi:
    """One consumer group's requests to brokers; see the module docstring."""

    def __init__(self, instance: ClientInstance, group: str) -> None:
        self.instance = instance
        self.group = group
        self._suggested: dict[MessageQueue, int] = {}

    # -- addresses -----------------------------------------------------------------------------
    async def _known(self, broker_name: str, topic: str) -> None:
        """Fetch `topic`'s route if `broker_name`'s addresses are not known yet (a queue given
        by the caller, not found through a route)."""
        if self.instance.routes.broker_addr(broker_name) is None:
            await self.instance.routes.route(topic, refresh=True)

    async def _pull_addr(self, mq: MessageQueue) -> tuple[str, bool]:
        await self._known(mq.broker_name, mq.topic)
        routes = self.instance.routes
        addr = routes.broker_addr(mq.broker_name, self._suggested.get(mq, MASTER_ID))
        if addr is None:
            raise NoRouteInfo(mq.topic, f"no address of broker {mq.broker_name}")
        return addr, addr == routes.master_addr(mq.broker_name)

    async def _admin_addr(self, broker_name: str, topic: str) -> str:
        await self._known(broker_name, topic)
        addr = self.instance.routes.broker_addr(broker_name)
        if addr is None:
            raise NoRouteInfo(topic, f"no address of broker {broker_name}")
        return addr

    async def _master_addr(self, broker_name: str, topic: str) -> str:
        await self._known(broker_name, topic)
        addr = self.instance.routes.master_addr(broker_name)
        if addr is None:
            raise NoRouteInfo(topic, f"broker {broker_name} has no master now")
        return addr

    # -- pulls ---------------------------------------------------------------------------------
    async def pull(self, mq: MessageQueue, offset: int, subscription: SubscriptionData, *,
                   max_nums: int = DEFAULT_PULL_BATCH_SIZE, suspend_ms: int = 0,
                   commit_offset: int | None = None) -> PullResult:
        """Pull `mq` from `offset`.

        Args:
            mq: the queue.
            offset: queue offset to read from.
            subscription: the filter (TAG expression; its tags re-filter the result).
            max_nums: most messages wanted.
            suspend_ms: > 0: let the broker hold the pull that long when nothing is there.
            commit_offset: > 0: also store this as the group's offset (master only).

        Raises:
            BrokerError subclasses: an error code (SubscriptionNotLatest, NoPermission...).
            BrokerUnreachable, RequestTimeout, ConnectionLost, MalformedResponse, NoRouteInfo.
        """
        addr, to_master = await self._pull_addr(mq)
        commit = commit_offset if commit_offset is not None and commit_offset > 0 else 0
        sys_flag = PULL_SUBSCRIPTION | (PULL_SUSPEND if suspend_ms > 0 else 0)
        if commit and to_master:
            sys_flag |= PULL_COMMIT_OFFSET
        header = PullMessageRequestHeader(
            consumer_group=self.group, topic=mq.topic, queue_id=mq.queue_id,
            queue_offset=offset, max_msg_nums=max_nums, sys_flag=sys_flag,
            commit_offset=commit, suspend_timeout_millis=max(suspend_ms, 0),
            sub_version=subscription.sub_version, subscription=subscription.sub_string,
            expression_type=subscription.expression_type)
        timeout = (suspend_ms / 1000 + _SUSPEND_SLACK_S if suspend_ms > 0
                   else self.instance.request_timeout_s)
        request = make_request(RequestCode.PULL_MESSAGE, 0, header.to_ext_fields())
        response = await self.instance.invoke(addr, request, timeout)
        if pull_status(response.code) is None:
            raise error_for_response(response, addr, request.code)
        result = decode_pull_response(response.code, response.ext_fields, response.body, mq,
                                      frozenset(subscription.tags_set))
        self._suggested[mq] = result.suggest_which_broker_id
        return result

    # -- offsets -------------------------------------------------------------------------------
    async def query_offset(self, mq: MessageQueue) -> int | None:
        """The group's stored offset of `mq`; None when the broker has none (QUERY_NOT_FOUND,
        or any error code: Java treats both as "no offset").

        Raises:
            BrokerUnreachable, RequestTimeout, ConnectionLost, NoRouteInfo: unknown (Java -2:
                skip the queue this rebalance).
        """
        addr = await self._admin_addr(mq.broker_name, mq.topic)
        header = QueryConsumerOffsetRequestHeader(self.group, mq.topic, mq.queue_id)
        response = await self.instance.invoke(
            addr, make_request(RequestCode.QUERY_CONSUMER_OFFSET, 0, header.to_ext_fields()))
        if response.code != ResponseCode.SUCCESS:
            return None
        try:
            return QueryConsumerOffsetResponseHeader.from_ext_fields(response.ext_fields).offset
        except HeaderFieldError as err:
            raise MalformedResponse(f"offset of {mq} from {addr}: {err}") from err

    async def update_offset(self, mq: MessageQueue, offset: int, *, oneway: bool = True) -> None:
        """Store `offset` (the next message to consume) as the group's offset of `mq`.

        Raises:
            BrokerError (not oneway), BrokerUnreachable, RequestTimeout, ConnectionLost,
            NoRouteInfo.
        """
        addr = await self._admin_addr(mq.broker_name, mq.topic)
        header = UpdateConsumerOffsetRequestHeader(self.group, mq.topic, mq.queue_id, offset)
        request = make_request(RequestCode.UPDATE_CONSUMER_OFFSET, 0, header.to_ext_fields(),
                               oneway=oneway)
        if oneway:
            await self.instance.invoke_oneway(addr, request)
        else:
            await self.instance.invoke_ok(addr, request)

    async def max_offset(self, mq: MessageQueue) -> int:
        """The queue's max offset (the next to be written)."""
        header = GetMaxOffsetRequestHeader(mq.topic, mq.queue_id)
        return await self._offset(mq, RequestCode.GET_MAX_OFFSET, header.to_ext_fields(),
                                  GetMaxOffsetResponseHeader)

    async def min_offset(self, mq: MessageQueue) -> int:
        """The queue's min offset (the first still stored)."""
        header = GetMinOffsetRequestHeader(mq.topic, mq.queue_id)
        return await self._offset(mq, RequestCode.GET_MIN_OFFSET, header.to_ext_fields(),
                                  GetMinOffsetResponseHeader)

    async def search_offset(self, mq: MessageQueue, timestamp_ms: int) -> int:
        """The queue offset of the message stored at (or nearest to) `timestamp_ms`."""
        header = SearchOffsetRequestHeader(mq.topic, mq.queue_id, timestamp_ms)
        return await self._offset(mq, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP,
                                  header.to_ext_fields(), SearchOffsetResponseHeader)

    async def _offset(self, mq: MessageQueue, code: int, fields: dict[str, str],
                      answer: type[GetMaxOffsetResponseHeader | GetMinOffsetResponseHeader
                                   | SearchOffsetResponseHeader]) -> int:
        addr = await self._admin_addr(mq.broker_name, mq.topic)
        response = await self.instance.invoke_ok(addr, make_request(code, 0, fields))
        try:
            return answer.from_ext_fields(response.ext_fields).offset
        except HeaderFieldError as err:
            raise MalformedResponse(f"offset of {mq} from {addr}: {err}") from err

    # -- failures ------------------------------------------------------------------------------
    async def send_back(self, message: ReceivedMessage, *, delay_level: int = 0,
                        max_reconsume_times: int = DEFAULT_MAX_RECONSUME_TIMES) -> None:
        """CONSUMER_SEND_MSG_BACK: have the broker redeliver `message` through
        `%RETRY%<group>` after a delay (level 0: the broker's 3 + reconsume count), or put it
        in the dead-letter queue once it failed `max_reconsume_times` times.

        Raises:
            BrokerError and transport errors: the message was not sent back (the caller
                retries it locally).
        """
        addr = await self._master_addr(message.broker_name, message.topic)
        header = ConsumerSendMsgBackRequestHeader(
            offset=message.commit_log_offset, group=self.group, delay_level=delay_level,
            origin_msg_id=message.msg_id, origin_topic=message.topic,
            max_reconsume_times=max_reconsume_times)
        await self.instance.invoke_ok(
            addr, make_request(RequestCode.CONSUMER_SEND_MSG_BACK, 0, header.to_ext_fields()))

    # -- group membership and locks ------------------------------------------------------------
    async def consumer_ids(self, topic: str) -> list[str] | None:
        """The client ids of the group's members, from one broker serving `topic`; [] when the
        broker knows none; None when no broker of the topic could be asked."""
        for broker_name in sorted(self.instance.routes.broker_names(topic)):
            addr = self.instance.routes.broker_addr(broker_name)
            if addr is None:
                continue
            header = GetConsumerListByGroupRequestHeader(self.group)
            try:
                response = await self.instance.invoke(addr, make_request(
                    RequestCode.GET_CONSUMER_LIST_BY_GROUP, 0, header.to_ext_fields()))
            except Exception as err:  # noqa: BLE001 - logged; the next broker is asked
                log.warning("group %s: consumer list from %s failed: %s", self.group, addr, err)
                continue
            if response.code != ResponseCode.SUCCESS:
                return []  # "no consumer for this group" (SYSTEM_ERROR)
            try:
                return list(ConsumerListBody.decode(response.body or b"").consumer_id_list)
            except BodyFormatError as err:
                log.warning("group %s: unreadable consumer list from %s: %s", self.group,
                            addr, err)
        return None

    async def lock(self, broker_name: str, mqs: Iterable[MessageQueue]) -> set[MessageQueue]:
        """LOCK_BATCH_MQ at `broker_name`'s master: the queues of `mqs` this client now holds.

        Raises:
            BrokerError, transport errors, NoRouteInfo, NameServerUnavailable: nothing is
                known to be held.
        """
        queues = tuple(mqs)
        if not queues:
            return set()
        addr = await self._master_addr(broker_name, queues[0].topic)
        body = LockBatchRequestBody(self.group, self.instance.client_id, queues).encode()
        response = await self.instance.invoke_ok(
            addr, make_request(RequestCode.LOCK_BATCH_MQ, 0, body=body))
        try:
            return set(LockBatchResponseBody.decode(response.body or b"").lock_ok_mq_set)
        except BodyFormatError as err:
            raise MalformedResponse(f"lock answer from {addr}: {err}") from err

    async def unlock(self, broker_name: str, mqs: Iterable[MessageQueue]) -> None:
        """UNLOCK_BATCH_MQ at `broker_name`'s master (best effort: failures are logged)."""
        queues = tuple(mqs)
        if not queues:
            return
        try:
            addr = await self._master_addr(broker_name, queues[0].topic)
            body = UnlockBatchRequestBody(self.group, self.instance.client_id, queues).encode()
            await self.instance.invoke_ok(addr, make_request(RequestCode.UNLOCK_BATCH_MQ, 0,
                                                             body=body))
        except (BrokerError, NoRouteInfo) as err:
            log.warning("group %s: unlock at %s failed: %s", self.group, broker_name, err)
        except Exception as err:  # noqa: BLE001 - transport: the lock expires in 60 s anyway
            log.warning("group %s: unlock at %s failed: %s", self.group, broker_name, err)

    def forget(self, mq: MessageQueue) -> None:
        """Drop what is remembered about `mq` (its suggested broker)."""
        self._suggested.pop(mq, None)
