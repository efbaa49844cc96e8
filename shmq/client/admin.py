"""The operator's client: `AsyncAdmin` and its synchronous facade `Admin` (Java
`DefaultMQAdminExt`; the commands of `shmq admin`, mqadmin's most used ones).

Theory of operation
-------------------
An admin client is a `ClientInstance` that is never started: no heartbeats, no groups, only its
connections and route lookups. Requests go where Java's admin tool sends them:

* name-server requests (cluster info 106, topic list 206, KV config 100) to the first name
  server that answers; DELETE_TOPIC_IN_NAMESRV (216) to every name server;
* topic requests to the brokers of the topic's route (its master of each broker name, else any
  member): UPDATE_AND_CREATE_TOPIC (17) to the masters of the chosen clusters, topic stats
  (202), key queries (12), offset resets (222);
* group requests to the brokers of the route of `%RETRY%<group>`, the topic every consumer
  group gets when it first heartbeats (consume stats 208, connections 203, running info 307
  relayed to the client).

Answers from several brokers are merged (MessageQueue-keyed tables). Errors are `ClientError`s
an operator can act on: `NoRouteInfo` (unknown topic), `GroupNotFound`, `MessageNotFound`,
`BrokerNotFound`, `NameServerUnavailable` / `BrokerUnreachable` (nothing answered), and the
typed `BrokerError`s for refusals.

Offset resets (`reset_offset`) send INVOKE_BROKER_TO_RESET_OFFSET; a Java 4.9 broker with no
consumer of the group online answers CONSUMER_NOT_ONLINE, and then, as mqadmin does, the
offsets are moved queue by queue with UPDATE_CONSUMER_OFFSET (a shmq broker stores them
itself and answers SUCCESS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Self, TypeVar

from shmq.errors import ClientError
from shmq.message.errors import MessageError
from shmq.message.msgid import decode_offset_msg_id
from shmq.message.record import iter_records
from shmq.protocol import (
    BodyFormatError,
    BrokerData,
    ClusterInfo,
    CreateTopicRequestHeader,
    DeleteTopicFromNamesrvRequestHeader,
    DeleteTopicRequestHeader,
    KVTable,
    MessageQueue,
    PutKVConfigRequestHeader,
    QueryMessageRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SubscriptionData,
    TopicList,
    TopicRouteData,
    ViewMessageRequestHeader,
    make_request,
)
from shmq.protocol.admin import (
    ConsumerConnection,
    ConsumerRunningInfo,
    ConsumeStats,
    GetConsumerConnectionListRequestHeader,
    GetConsumerRunningInfoRequestHeader,
    GetConsumeStatsRequestHeader,
    GetTopicStatsInfoRequestHeader,
    ResetOffsetBody,
    ResetOffsetRequestHeader,
    TopicStatsTable,
    parse_properties_text,
)

from .consumer_api import ConsumerApi
from .errors import (
    BrokerError,
    BrokerUnreachable,
    ConnectionLost,
    MalformedResponse,
    NameServerUnavailable,
    NoRouteInfo,
    RequestTimeout,
    SubscriptionGroupNotExist,
    error_for_response,
)
from .instance import ClientInstance
from .loop import LoopThread
from .received import RETRY_GROUP_TOPIC_PREFIX, PullStatus, ReceivedMessage, received_message
from .routes import DEFAULT_NAMESRV, MASTER_ID, PERM_READ, PERM_WRITE

__all__ = [
    "DEFAULT_ADMIN_TIMEOUT_S",
    "Admin",
    "AsyncAdmin",
    "BrokerNotFound",
    "GroupNotFound",
    "MessageNotFound",
    "TopicSpec",
]

T = TypeVar("T")

#: how long one admin request may take
DEFAULT_ADMIN_TIMEOUT_S: Final = 5.0
#: how long `create_topic` / `update_topic` wait for the name servers to show the change
DEFAULT_ROUTE_WAIT_S: Final = 10.0
#: MixAll.TOOLS_CONSUMER_GROUP: the group of admin pulls (no offsets are committed)
TOOLS_CONSUMER_GROUP: Final = "TOOLS_CONSUMER"
#: the KV namespace of globally ordered topics (request-codes.md §2)
ORDER_TOPIC_CONFIG: Final = "ORDER_TOPIC_CONFIG"
_INT64_MAX: Final = (1 << 63) - 1
_ROUTE_POLL_S: Final = 0.2
_FACADE_MARGIN_S: Final = 10.0
#: transport failures: the next name server or broker may answer
_UNREACHABLE: Final = (BrokerUnreachable, RequestTimeout, ConnectionLost)


class GroupNotFound(ClientError):
    """No broker knows the consumer group (or none of its consumers is online, for requests
    that need one)."""

    def __init__(self, group: str, detail: str) -> None:
        super().__init__(f"consumer group {group!r}: {detail}")
        self.group = group


class MessageNotFound(ClientError):
    """No message matches the id, key or offset asked for."""


class BrokerNotFound(ClientError):
    """The broker name or address is not in the name servers' cluster table."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What `create_topic` / `update_topic` set (None: keep the current value on update)."""

    read_queue_nums: int | None = None
    write_queue_nums: int | None = None
    perm: int | None = None
    order: bool = False


class AsyncAdmin:
    """An admin client for asyncio code; see the module docstring.

    Args:
        namesrv: name-server addresses, "a:9876;b:9876" or a list.
        timeout_s: how long one request may take.
    """

    def __init__(self, namesrv: str | Iterable[str] = DEFAULT_NAMESRV, *,
                 timeout_s: float = DEFAULT_ADMIN_TIMEOUT_S) -> None:
        self.instance = ClientInstance(namesrv, request_timeout_s=timeout_s,
                                       instance_name=f"admin-{time.time_ns()}")
        self.timeout_s = timeout_s

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        await self.instance.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- name servers --------------------------------------------------------------------------
    async def _ask_namesrv(self, request: RemotingCommand) -> tuple[str, RemotingCommand]:
        """The first name server's answer (any code); the next one when one does not answer."""
        reasons = []
        for addr in self.instance.routes.namesrv_addrs:
            try:
                return addr, await self.instance.invoke(addr, request)
            except _UNREACHABLE as err:
                reasons.append(str(err))
        raise NameServerUnavailable(self.instance.routes.namesrv_addrs, "; ".join(reasons))

    async def _namesrv_ok(self, code: int, ext: dict[str, str] | None = None) -> bytes:
        addr, response = await self._ask_namesrv(make_request(code, 0, ext))
        if response.code != ResponseCode.SUCCESS:
            raise error_for_response(response, addr, code)
        return bytes(response.body or b"")

    async def cluster_info(self) -> ClusterInfo:
        """GET_BROKER_CLUSTER_INFO: every cluster and broker the name servers know."""
        body = await self._namesrv_ok(RequestCode.GET_BROKER_CLUSTER_INFO)
        return _decoded(ClusterInfo.decode, body, "cluster info")

    async def topic_list(self) -> list[str]:
        """Every topic the name servers know, sorted."""
        body = await self._namesrv_ok(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
        return sorted(_decoded(TopicList.decode, body, "topic list").topic_list)

    async def route(self, topic: str) -> TopicRouteData:
        """The topic's route.

        Raises:
            NoRouteInfo: the name servers do not know the topic.
        """
        data = await self.instance.routes.fetch(topic)
        if data is None:
            raise NoRouteInfo(topic, "the name servers do not know it")
        return data

    # -- brokers -------------------------------------------------------------------------------
    async def broker_addrs(self, broker: str | None = None, cluster: str | None = None,
                           ) -> dict[str, str]:
        """Master addresses by broker name: `broker` (a name or "host:port"), the masters of
        `cluster`, or every master.

        Raises:
            BrokerNotFound: no such broker or cluster, or it has no master now.
        """
        if broker is not None and ":" in broker:
            return {await self._name_of(broker): broker}
        info = await self.cluster_info()
        names = list(info.broker_addr_table)
        if cluster is not None:
            if cluster not in info.cluster_addr_table:
                raise BrokerNotFound(f"no cluster named {cluster!r}; the name servers know "
                                     f"{sorted(info.cluster_addr_table) or 'none'}")
            names = list(info.cluster_addr_table[cluster])
        if broker is not None:
            if broker not in info.broker_addr_table:
                raise BrokerNotFound(f"no broker named {broker!r}; the name servers know "
                                     f"{sorted(info.broker_addr_table) or 'none'}")
            names = [broker]
        found = {}
        for name in sorted(names):
            addr = _select_addr(info.broker_addr_table[name]) \
                if name in info.broker_addr_table else None
            if addr is not None:
                found[name] = addr
        if not found:
            raise BrokerNotFound("no broker with a live address is registered")
        return found

    async def _name_of(self, addr: str) -> str:
        """The broker name registered for `addr` ("?" when the name servers do not list it)."""
        try:
            info = await self.cluster_info()
        except (NameServerUnavailable, BrokerError):
            return "?"
        for name, data in info.broker_addr_table.items():
            if addr in data.broker_addrs.values():
                return name
        return "?"

    async def _broker_ok(self, addr: str, code: int, ext: dict[str, str] | None = None,
                         body: bytes | None = None) -> RemotingCommand:
        return await self.instance.invoke_ok(addr, make_request(code, 0, ext, body))

    async def broker_runtime_info(self, addr: str) -> dict[str, str]:
        """GET_BROKER_RUNTIME_INFO of the broker at `addr`."""
        response = await self._broker_ok(addr, RequestCode.GET_BROKER_RUNTIME_INFO)
        return dict(_decoded(KVTable.decode, response.body, "runtime info").table)

    async def broker_config(self, addr: str) -> dict[str, str]:
        """GET_BROKER_CONFIG of the broker at `addr`."""
        response = await self._broker_ok(addr, RequestCode.GET_BROKER_CONFIG)
        return parse_properties_text(bytes(response.body or b""))

    # -- topics --------------------------------------------------------------------------------
    async def _topic_brokers(self, topic: str) -> dict[str, str]:
        """Broker name -> address to ask about `topic` (master, else any member)."""
        route = await self.route(topic)
        found = {b.broker_name: _select_addr(b) for b in route.broker_datas}
        return {name: addr for name, addr in sorted(found.items()) if addr is not None}

    async def create_topic(self, topic: str, spec: TopicSpec, *, broker: str | None = None,
                           cluster: str | None = None,
                           wait_s: float = DEFAULT_ROUTE_WAIT_S) -> dict[str, str]:
        """UPDATE_AND_CREATE_TOPIC on the chosen masters (default: every master), then wait
        until the name servers route the topic to each of them.

        Returns:
            The masters written to, by broker name.
        """
        targets = await self.broker_addrs(broker, cluster)
        read = spec.read_queue_nums or spec.write_queue_nums or 4
        write = spec.write_queue_nums or read
        perm = PERM_READ | PERM_WRITE if spec.perm is None else spec.perm
        for addr in targets.values():
            await self._put_topic(addr, topic, read, write, perm, spec.order)
        if spec.order:
            conf = ";".join(f"{name}:{write}" for name in targets)
            await self._namesrv_ok(RequestCode.PUT_KV_CONFIG, PutKVConfigRequestHeader(
                ORDER_TOPIC_CONFIG, topic, conf).to_ext_fields())
        await self._wait_for_route(topic, lambda route: all(
            any(q.broker_name == name and q.read_queue_nums == read
                and q.write_queue_nums == write and q.perm == perm for q in route.queue_datas)
            for name in targets), wait_s)
        return targets

    async def update_topic(self, topic: str, spec: TopicSpec, *,
                           wait_s: float = DEFAULT_ROUTE_WAIT_S) -> dict[str, str]:
        """Change an existing topic on every broker of its route (unset values are kept).

        Raises:
            NoRouteInfo: the topic does not exist.
        """
        route = await self.route(topic)
        targets = await self._topic_brokers(topic)
        wanted = {}
        for qd in route.queue_datas:
            addr = targets.get(qd.broker_name)
            if addr is None:
                continue
            wanted[qd.broker_name] = (spec.read_queue_nums or qd.read_queue_nums,
                                      spec.write_queue_nums or qd.write_queue_nums,
                                      qd.perm if spec.perm is None else spec.perm)
            await self._put_topic(addr, topic, *wanted[qd.broker_name], spec.order)
        await self._wait_for_route(topic, lambda r: all(
            any(q.broker_name == name and (q.read_queue_nums, q.write_queue_nums, q.perm) == w
                for q in r.queue_datas) for name, w in wanted.items()), wait_s)
        return {name: targets[name] for name in wanted}

    async def _put_topic(self, addr: str, topic: str, read: int, write: int, perm: int,
                         order: bool) -> None:
        header = CreateTopicRequestHeader(topic, "TBW102", read, write, perm, "SINGLE_TAG", 0,
                                          order)
        await self._broker_ok(addr, RequestCode.UPDATE_AND_CREATE_TOPIC, header.to_ext_fields())

    async def _wait_for_route(self, topic: str, done: Callable[[TopicRouteData], bool],
                              wait_s: float) -> None:
        """Poll the route until `done(route)`; give up quietly after `wait_s` (the brokers
        register with the name servers on their own; this only makes scripts less racy)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            data = await self.instance.routes.fetch(topic)
            if data is not None and done(data):
                return
            await asyncio.sleep(_ROUTE_POLL_S)

    async def delete_topic(self, topic: str) -> dict[str, str]:
        """DELETE_TOPIC_IN_BROKER on the topic's brokers, then DELETE_TOPIC_IN_NAMESRV on every
        name server.

        Raises:
            NoRouteInfo: the topic does not exist.
        """
        targets = await self._topic_brokers(topic)
        ext = DeleteTopicRequestHeader(topic).to_ext_fields()
        for addr in targets.values():
            await self._broker_ok(addr, RequestCode.DELETE_TOPIC_IN_BROKER, ext)
        ns_ext = DeleteTopicFromNamesrvRequestHeader(topic).to_ext_fields()
        for addr in self.instance.routes.namesrv_addrs:
            await self.instance.invoke_ok(
                addr, make_request(RequestCode.DELETE_TOPIC_IN_NAMESRV, 0, ns_ext))
        return targets

    async def topic_stats(self, topic: str) -> TopicStatsTable:
        """GET_TOPIC_STATS_INFO from every broker of the topic, merged.

        Raises:
            NoRouteInfo: the topic does not exist.
        """
        table = {}
        ext = GetTopicStatsInfoRequestHeader(topic).to_ext_fields()
        for addr in (await self._topic_brokers(topic)).values():
            response = await self._broker_ok(addr, RequestCode.GET_TOPIC_STATS_INFO, ext)
            table.update(_decoded(TopicStatsTable.decode, response.body, "topic stats")
                         .offset_table)
        return TopicStatsTable(table)

    # -- consumer groups -----------------------------------------------------------------------
    async def _group_brokers(self, group: str, topic: str | None = None) -> dict[str, str]:
        """Brokers that know the group: those of `%RETRY%<group>` (else of `topic`)."""
        try:
            return await self._topic_brokers(RETRY_GROUP_TOPIC_PREFIX + group)
        except NoRouteInfo:
            if topic is None:
                raise GroupNotFound(group, "no broker knows it (no %RETRY% topic: it never "
                                           "connected)") from None
            return await self._topic_brokers(topic)

    async def consume_stats(self, group: str, topic: str | None = None) -> ConsumeStats:
        """GET_CONSUME_STATS from the group's brokers, merged: per queue the broker's max
        offset and the group's offset (their difference is the lag).

        Raises:
            GroupNotFound: no broker has offsets or consumers of the group.
        """
        ext = GetConsumeStatsRequestHeader(group, topic).to_ext_fields()
        table, tps = {}, 0.0
        for addr in (await self._group_brokers(group, topic)).values():
            try:
                response = await self._broker_ok(addr, RequestCode.GET_CONSUME_STATS, ext)
            except SubscriptionGroupNotExist:
                continue
            stats = _decoded(ConsumeStats.decode, response.body, "consume stats")
            table.update(stats.offset_table)
            tps += stats.consume_tps
        if topic is not None:
            table = {mq: w for mq, w in table.items() if mq.topic == topic}
        if not table:
            where = f" on topic {topic!r}" if topic else ""
            raise GroupNotFound(group, f"no offsets{where}: it never consumed, or the broker "
                                       "does not know it")
        return ConsumeStats(table, tps)

    async def consumer_connection(self, group: str) -> tuple[str, ConsumerConnection]:
        """GET_CONSUMER_CONNECTION_LIST: the group's live clients, from the first of its
        brokers that has some; returns (that broker's address, the connections).

        Raises:
            GroupNotFound: no consumer of the group is online.
        """
        ext = GetConsumerConnectionListRequestHeader(group).to_ext_fields()
        for addr in (await self._group_brokers(group)).values():
            response = await self.instance.invoke(
                addr, make_request(RequestCode.GET_CONSUMER_CONNECTION_LIST, 0, ext))
            if response.code == ResponseCode.CONSUMER_NOT_ONLINE:
                continue
            if response.code != ResponseCode.SUCCESS:
                raise error_for_response(response, addr, RequestCode.GET_CONSUMER_CONNECTION_LIST)
            return addr, _decoded(ConsumerConnection.decode, response.body, "connections")
        raise GroupNotFound(group, "no consumer of it is online")

    async def consumer_running_info(self, group: str, client_id: str | None = None, *,
                                    jstack: bool = False) -> dict[str, ConsumerRunningInfo]:
        """GET_CONSUMER_RUNNING_INFO of the group's clients (or of `client_id`), relayed by
        the broker they are connected to; by client id.

        Raises:
            GroupNotFound: no consumer of the group (or no `client_id`) is online.
            BrokerError: a client did not answer (CONSUME_MSG_TIMEOUT) or refused.
        """
        addr, connection = await self.consumer_connection(group)
        ids = [c.client_id for c in connection.connection_set]
        if client_id is not None:
            if client_id not in ids:
                raise GroupNotFound(group, f"client {client_id!r} is not online (online: "
                                           f"{', '.join(ids)})")
            ids = [client_id]
        infos = {}
        for cid in ids:
            ext = GetConsumerRunningInfoRequestHeader(group, cid, jstack).to_ext_fields()
            response = await self.instance.invoke_ok(
                addr, make_request(RequestCode.GET_CONSUMER_RUNNING_INFO, 0, ext),
                self.timeout_s + 10.0)
            infos[cid] = _decoded(ConsumerRunningInfo.decode, response.body, "running info")
        return infos

    async def reset_offset(self, group: str, topic: str, timestamp_ms: int, *,
                           force: bool = True) -> dict[MessageQueue, int]:
        """Move the group's offsets on `topic` to the messages stored at `timestamp_ms` (-1:
        the end of each queue); live consumers are told by their brokers. Without `force`, an
        offset only moves back.

        Returns:
            The new offset of each queue.

        Raises:
            NoRouteInfo: unknown topic. GroupNotFound: the broker knows no such group.
        """
        header = ResetOffsetRequestHeader(topic, group, timestamp_ms, force)
        table: dict[MessageQueue, int] = {}
        for name, addr in (await self._topic_brokers(topic)).items():
            response = await self.instance.invoke(addr, make_request(
                RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, 0, header.to_ext_fields()))
            if response.code == ResponseCode.SUCCESS:
                table.update(_decoded(ResetOffsetBody.decode, response.body, "reset offsets")
                             .offset_table)
            elif response.code == ResponseCode.CONSUMER_NOT_ONLINE:
                table.update(await self._reset_queue_by_queue(name, addr, group, topic,
                                                              timestamp_ms, force))
            elif response.code == ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST:
                raise GroupNotFound(group, response.remark or "the broker does not know it")
            else:
                raise error_for_response(response, addr,
                                         RequestCode.INVOKE_BROKER_TO_RESET_OFFSET)
        return table

    async def _reset_queue_by_queue(self, broker_name: str, addr: str, group: str, topic: str,
                                    timestamp_ms: int, force: bool) -> dict[MessageQueue, int]:
        """mqadmin's fallback (`resetOffsetByTimestampOld`) for brokers that only tell live
        consumers: search each queue's offset and store it with UPDATE_CONSUMER_OFFSET."""
        api = ConsumerApi(self.instance, group)
        route = await self.route(topic)
        queues = next((q.read_queue_nums for q in route.queue_datas
                       if q.broker_name == broker_name), 0)
        table = {}
        for queue_id in range(queues):
            mq = MessageQueue(topic, broker_name, queue_id)
            target = (await api.max_offset(mq) if timestamp_ms == -1
                      else await api.search_offset(mq, timestamp_ms))
            current = await api.query_offset(mq)
            if not force and current is not None and current <= target:
                target = current
            await api.update_offset(mq, target, oneway=False)
            table[mq] = target
        return table

    # -- messages ------------------------------------------------------------------------------
    async def view_message(self, msg_id: str, topic: str | None = None) -> list[ReceivedMessage]:
        """The message with `msg_id`: a client msgId (UNIQ_KEY, looked up in `topic`'s key
        index) or an offset msgId (store host + commit-log offset: VIEW_MESSAGE_BY_ID).

        Raises:
            MessageNotFound: neither finds it.
        """
        if topic is not None:
            try:
                return await self.query_by_key(topic, msg_id, unique_key=True)
            except MessageNotFound:
                pass
        hint = "" if topic else "; for a client msgId (UNIQ_KEY) give the topic"
        try:
            host, port, offset = decode_offset_msg_id(msg_id)
        except MessageError:
            where = f"not found by key in topic {topic!r}, and it" if topic else "it"
            raise MessageNotFound(f"no message with id {msg_id}: {where} is not an offset "
                                  f"msgId{hint}") from None
        addr = f"{host}:{port}"
        known = {a for b in (await self.cluster_info()).broker_addr_table.values()
                 for a in b.broker_addrs.values()}
        if addr not in known:
            raise MessageNotFound(f"no message with id {msg_id}: not found by key in topic "
                                  f"{topic!r} and {addr} is not a broker" if topic else
                                  f"{msg_id} decodes to broker {addr}, which is not "
                                  f"registered{hint}")
        ext = ViewMessageRequestHeader(offset).to_ext_fields()
        response = await self.instance.invoke(
            addr, make_request(RequestCode.VIEW_MESSAGE_BY_ID, 0, ext))
        if response.code != ResponseCode.SUCCESS:
            raise MessageNotFound(f"no message with id {msg_id} at {addr}: "
                                  f"{response.remark or response.code}")
        return _messages(response.body, await self._name_of(addr))

    async def query_by_key(self, topic: str, key: str, *, max_num: int = 32,
                           begin_ms: int = 0, end_ms: int = _INT64_MAX,
                           unique_key: bool = False) -> list[ReceivedMessage]:
        """Messages of `topic` whose KEYS (or, with `unique_key`, UNIQ_KEY) include `key`,
        from every broker of the topic (QUERY_MESSAGE).

        Raises:
            NoRouteInfo: unknown topic. MessageNotFound: none.
        """
        header = QueryMessageRequestHeader(topic, key, max_num, begin_ms, end_ms,
                                           True if unique_key else None)
        found: list[ReceivedMessage] = []
        for name, addr in (await self._topic_brokers(topic)).items():
            response = await self.instance.invoke(addr, make_request(
                RequestCode.QUERY_MESSAGE, 0, header.to_ext_fields()))
            if response.code == ResponseCode.QUERY_NOT_FOUND:
                continue
            if response.code != ResponseCode.SUCCESS:
                raise error_for_response(response, addr, RequestCode.QUERY_MESSAGE)
            found += _messages(response.body, name)
        if not found:
            what = "id" if unique_key else "key"
            raise MessageNotFound(f"no message with {what} {key!r} in topic {topic!r}")
        found.sort(key=lambda m: m.store_timestamp_ms)
        return found[:max_num]

    async def message_at(self, topic: str, queue_id: int, offset: int,
                         broker_name: str | None = None) -> ReceivedMessage:
        """The message at `offset` of a queue (one PULL_MESSAGE; nothing is committed).

        Raises:
            NoRouteInfo: unknown topic. MessageNotFound: no message there.
        """
        route = await self.route(topic)
        names = sorted({q.broker_name for q in route.queue_datas
                        if q.read_queue_nums > queue_id})
        if broker_name is None and len(names) == 1:
            broker_name = names[0]
        if broker_name not in names:
            raise MessageNotFound(f"topic {topic!r} has no queue {queue_id} on broker "
                                  f"{broker_name!r} (brokers with that queue: "
                                  f"{', '.join(names) or 'none'}); give --broker-name")
        mq = MessageQueue(topic, broker_name, queue_id)
        api = ConsumerApi(self.instance, TOOLS_CONSUMER_GROUP)
        result = await api.pull(mq, offset, SubscriptionData.of_tags(topic, "*"), max_nums=1)
        if result.status is not PullStatus.FOUND or not result.messages \
                or result.messages[0].queue_offset != offset:
            raise MessageNotFound(f"no message at offset {offset} of {topic} queue {queue_id} "
                                  f"on {broker_name}: the queue holds offsets "
                                  f"{result.min_offset}..{result.max_offset - 1}")
        return result.messages[0]


def _select_addr(broker: BrokerData) -> str | None:
    """The master's address, else the lowest-id member's (Java `selectBrokerAddr`)."""
    addrs = broker.broker_addrs
    if MASTER_ID in addrs:
        return addrs[MASTER_ID]
    return addrs[min(addrs)] if addrs else None


def _decoded(decode: Callable[[bytes], T], body: bytes | memoryview | None, what: str) -> T:
    try:
        return decode(bytes(body or b""))
    except BodyFormatError as err:
        raise MalformedResponse(f"unreadable {what}: {err}") from err


def _messages(body: bytes | memoryview | None, broker_name: str) -> list[ReceivedMessage]:
    try:
        records = list(iter_records(bytes(body or b"")))
    except MessageError as err:
        raise MalformedResponse(f"unreadable message records: {err}") from err
    return [received_message(r, MessageQueue(r.topic, broker_name, r.queue_id))
            for r in records]


class Admin:
    """A synchronous admin client: an `AsyncAdmin` on a background event loop.

        with Admin("127.0.0.1:9876") as admin:
            stats = admin.call(lambda a: a.consume_stats("my-group"))

    `call(fn)` runs `fn(async_admin)` on the loop and returns its result; errors are those of
    `AsyncAdmin`.
    """

    def __init__(self, namesrv: str | Iterable[str] = DEFAULT_NAMESRV, *,
                 timeout_s: float = DEFAULT_ADMIN_TIMEOUT_S) -> None:
        self._thread = LoopThread("shmq-admin")
        self.timeout_s = timeout_s
        try:
            self._impl = self._thread.run(_make(namesrv, timeout_s), timeout_s)
        except BaseException:
            self._thread.close()
            raise

    def call(self, fn: Callable[[AsyncAdmin], Awaitable[T]], timeout_s: float | None = None,
             ) -> T:
        """Run `fn(admin)` on the client's loop and wait for it (at most `timeout_s`, default
        a minute: commands that ask many brokers take several request timeouts)."""
        async def run() -> T:
            return await fn(self._impl)

        limit = 60.0 if timeout_s is None else timeout_s
        return self._thread.run(run(), limit + _FACADE_MARGIN_S)

    def close(self) -> None:
        """Close the connections and stop the loop (idempotent)."""
        self._thread.finish(self._impl.close(), _FACADE_MARGIN_S)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make(namesrv: str | Iterable[str], timeout_s: float) -> AsyncAdmin:
    """Build the admin on the loop thread (its connections belong to that loop)."""
    return AsyncAdmin(namesrv, timeout_s=timeout_s)

