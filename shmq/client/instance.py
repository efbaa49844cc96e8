"""`ClientInstance`: what the producers and consumers of one client share — its id, its
connections, its routes, heartbeats and the requests brokers send to it (Java `MQClientInstance`).

Theory of operation
-------------------
One instance owns a `RemotingClient` (one connection per broker or name server, multiplexed),
a `RouteTable`, and two periodic tasks once started:

* every `poll_namesrv_interval_s` (30 s) the routes of watched topics are fetched again;
* every `heartbeat_interval_s` (30 s) a HEART_BEAT goes to every known broker — masters and
  slaves when a consumer is registered, masters only for producers (behaviours.md §3). The
  heartbeat names the producer groups and, for each consumer, its group, model, start policy
  and subscriptions; it is what puts the client in the group's consumer list.

Brokers send requests back on the same connections: NOTIFY_CONSUMER_IDS_CHANGED (a group's
members changed) is passed to that group's consumer, which rebalances at once;
RESET_CONSUMER_CLIENT_OFFSET and GET_CONSUMER_RUNNING_INFO go to `broker_requests`;
CHECK_TRANSACTION_STATE (a half message nobody resolved) is decoded and passed to the
transactional producer of the message's PGROUP (`register_transaction_checker`), which answers
with END_TRANSACTION on the same connection; anything else is answered
REQUEST_CODE_NOT_SUPPORTED (or ignored when oneway).

`invoke` wraps `shmq.remoting` errors into `ClientError`s (`errors.error_for_transport`), so
producers and consumers deal with client errors only. On `close` the instance sends
UNREGISTER_CLIENT for every group to every broker (so the group rebalances without waiting for
the 120 s channel expiry), stops its tasks and closes its connections.

Client id: `ip@pid#n`, unique per instance in a process (two consumers of one group in one
process must have distinct ids, or they would allocate the same queues).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol

from shmq.errors import ClientError
from shmq.message.errors import MessageError
from shmq.message.properties import PROPERTY_PGROUP
from shmq.message.record import StoredMessage, decode_record
from shmq.protocol import (
    CheckTransactionStateRequestHeader,
    ConsumerData,
    HeaderFieldError,
    HeartbeatData,
    NotifyConsumerIdsChangedRequestHeader,
    ProducerData,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    UnregisterClientRequestHeader,
    make_request,
    make_response,
)
from shmq.remoting import (
    ConnectFailed,
    Connection,
    HandlerResult,
    RemotingClient,
    RemotingError,
    RemotingTimeout,
)

from .broker_requests import MEMBER_REQUESTS, answer_member_request
from .errors import (
    BrokerUnreachable,
    ConnectionLost,
    RequestTimeout,
    SendTimeout,
    error_for_response,
)
from .routes import DEFAULT_TOPIC_QUEUE_NUMS, TBW102, RouteTable

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_POLL_NAMESRV_INTERVAL_S",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "ClientInstance",
    "ConsumerMember",
    "TransactionChecker",
    "error_for_transport",
    "local_ip",
]

log = logging.getLogger(__name__)

#: Java `heartbeatBrokerInterval`
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 30.0
#: Java `pollNameServerInterval`
DEFAULT_POLL_NAMESRV_INTERVAL_S: Final = 30.0
#: Java `mqClientApiTimeout` for admin-like requests (routes, offsets, heartbeats)
DEFAULT_REQUEST_TIMEOUT_S: Final = 3.0
#: UNREGISTER_CLIENT at close is best effort (brokers expire silent clients): do not linger
_UNREGISTER_TIMEOUT_S: Final = 1.0

_instance_numbers = itertools.count()


def error_for_transport(err: RemotingError, *, send: bool = False) -> ClientError:
    """Wrap a `shmq.remoting` error; `send`: a timeout of a send becomes `SendTimeout`."""
    if isinstance(err, ConnectFailed):
        return BrokerUnreachable(err.addr, err.reason)
    if isinstance(err, RemotingTimeout):
        if send:
            return SendTimeout(f"{err}; the message may or may not be stored")
        return RequestTimeout(str(err))
    return ConnectionLost(str(err))


@functools.lru_cache(maxsize=1)
def local_ip() -> str:
    """This host's outward IPv4 address (no packet is sent), or 127.0.0.1 without a route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route's source address
            return str(sock.getsockname()[0])
    except OSError:
        return "127.0.0.1"


class ConsumerMember(Protocol):
    """What the instance needs from a consumer registered with it."""

    @property
    def group(self) -> str:
        """The consumer group."""

    def consumer_data(self) -> ConsumerData:
        """The consumer's entry in heartbeats."""

    def on_consumer_ids_changed(self) -> None:
        """The broker says the group's members changed: rebalance soon (must not block)."""


class TransactionChecker(Protocol):
    """What the instance needs from a transactional producer registered with it."""

    @property
    def group(self) -> str:
        """The producer group (the PGROUP of its half messages)."""

    def on_check_transaction_state(self, conn: Connection,
                                   header: CheckTransactionStateRequestHeader,
                                   message: StoredMessage) -> None:
        """A broker asks about the half message `message` (topic and queue id the real
        ones); answer later with END_TRANSACTION on `conn` (must not block)."""


class ClientInstance:
    """Connections, routes and heartbeats shared by a client's producers and consumers."""

    def __init__(
        self,
        namesrv: str | Iterable[str],
        *,
        instance_name: str | None = None,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        poll_namesrv_interval_s: float = DEFAULT_POLL_NAMESRV_INTERVAL_S,
        create_topic_key: str = TBW102,
        default_topic_queue_nums: int = DEFAULT_TOPIC_QUEUE_NUMS,
    ) -> None:
        """Create a stopped instance (no connection is made before it is used).

        Args:
            namesrv: name-server addresses, "a:9876;b:9876" or a list.
            instance_name: the part of the client id after "@" (default: pid#n).
            request_timeout_s: timeout of route, heartbeat and offset requests.
            heartbeat_interval_s: period of heartbeats to brokers.
            poll_namesrv_interval_s: period of route refreshes.
            create_topic_key: template topic of auto-created topics (TBW102).
            default_topic_queue_nums: queue count asked for on auto-create (4).

        Raises:
            ValueError: no name-server address.
        """
        self.client_ip = local_ip()
        name = instance_name or f"{os.getpid()}#{next(_instance_numbers)}"
        self.client_id = f"{self.client_ip}@{name}"
        self.request_timeout_s = request_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.poll_namesrv_interval_s = poll_namesrv_interval_s
        self.remoting = RemotingClient(on_request=self._on_request)
        self.routes = RouteTable(self.remoting, namesrv, timeout_s=request_timeout_s,
                                 create_topic_key=create_topic_key,
                                 default_topic_queue_nums=default_topic_queue_nums)
        self._producers: dict[str, int] = {}
        self._consumers: dict[str, ConsumerMember] = {}
        self._checkers: dict[str, TransactionChecker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<ClientInstance {self.client_id} namesrv={';'.join(self.routes.namesrv_addrs)}>"

    @property
    def is_started(self) -> bool:
        """True between `start` and `close`."""
        return bool(self._tasks) and not self._closed

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the periodic route refresh and heartbeats (idempotent)."""
        if self._tasks or self._closed:
            return
        self._tasks = [
            self._every(self.poll_namesrv_interval_s, self.routes.refresh_watched, "routes"),
            self._every(self.heartbeat_interval_s, self.send_heartbeats, "heartbeats"),
        ]

    def _every(self, period_s: float, action: Callable[[], Awaitable[object]],
               what: str) -> asyncio.Task[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(period_s)
                try:
                    await action()
                except Exception:  # a bug: log it and keep the client alive
                    log.exception("client %s: periodic %s failed", self.client_id, what)

        return asyncio.get_running_loop().create_task(loop(), name=f"shmq-client-{what}")

    async def close(self) -> None:
        """Unregister from every broker, stop the tasks, close the connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._unregister_everywhere()
        await self.remoting.close()

    # -- members -------------------------------------------------------------------------------
    def register_producer(self, group: str) -> None:
        """Name `group` in heartbeats (counted: one `unregister_producer` per call)."""
        self._producers[group] = self._producers.get(group, 0) + 1

    def unregister_producer(self, group: str) -> None:
        """Undo one `register_producer`."""
        left = self._producers.get(group, 0) - 1
        if left > 0:
            self._producers[group] = left
        else:
            self._producers.pop(group, None)

    def register_transaction_checker(self, checker: TransactionChecker) -> None:
        """Pass CHECK_TRANSACTION_STATE requests about `checker.group`'s half messages to it
        (the group must also be registered with `register_producer` to be in heartbeats).

        Raises:
            ValueError: another checker of the same group is registered here.
        """
        other = self._checkers.get(checker.group)
        if other is not None and other is not checker:
            raise ValueError(f"producer group {checker.group!r} already has a transactional "
                             f"producer in client {self.client_id}")
        self._checkers[checker.group] = checker

    def unregister_transaction_checker(self, checker: TransactionChecker) -> None:
        """Undo `register_transaction_checker`."""
        if self._checkers.get(checker.group) is checker:
            del self._checkers[checker.group]

    def register_consumer(self, member: ConsumerMember) -> None:
        """Name `member` in heartbeats and pass it its group's notifications.

        Raises:
            ValueError: another consumer of the same group is registered here.
        """
        other = self._consumers.get(member.group)
        if other is not None and other is not member:
            raise ValueError(f"consumer group {member.group!r} already has a consumer in "
                             f"client {self.client_id}; give the new one its own instance")
        self._consumers[member.group] = member

    def unregister_consumer(self, member: ConsumerMember) -> None:
        """Forget `member` (without telling the brokers; see `leave_consumer_group`)."""
        if self._consumers.get(member.group) is member:
            del self._consumers[member.group]

    async def leave_consumer_group(self, member: ConsumerMember) -> None:
        """Forget `member` and send UNREGISTER_CLIENT for its group to every broker, so the
        group rebalances without waiting for the channel to expire."""
        if self._consumers.get(member.group) is not member:
            return
        del self._consumers[member.group]
        header = UnregisterClientRequestHeader(self.client_id, consumer_group=member.group)
        await asyncio.gather(*(self._unregister(addr, header)
                               for addr in self.routes.broker_addrs()))

    # -- requests ------------------------------------------------------------------------------
    async def invoke(self, addr: str, request: RemotingCommand, timeout_s: float | None = None,
                     *, send: bool = False) -> RemotingCommand:
        """Send `request` to `addr` and return the response, whatever its code.

        Raises:
            BrokerUnreachable: no connection; nothing was sent.
            RequestTimeout (SendTimeout if `send`), ConnectionLost: the request may or may
                not have been executed.
        """
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        try:
            return await self.remoting.invoke(addr, request, timeout)
        except RemotingError as err:
            raise error_for_transport(err, send=send) from err

    async def invoke_ok(self, addr: str, request: RemotingCommand,
                        timeout_s: float | None = None) -> RemotingCommand:
        """`invoke`, raising the typed `BrokerError` unless the answer is SUCCESS."""
        response = await self.invoke(addr, request, timeout_s)
        if response.code != ResponseCode.SUCCESS:
            raise error_for_response(response, addr, request.code)
        return response

    async def invoke_oneway(self, addr: str, request: RemotingCommand) -> None:
        """Send `request` to `addr` without waiting for an answer.

        Raises:
            BrokerUnreachable, ConnectionLost: nothing was sent.
        """
        try:
            await self.remoting.invoke_oneway(addr, request)
        except RemotingError as err:
            raise error_for_transport(err) from err

    # -- heartbeats ----------------------------------------------------------------------------
    def heartbeat_data(self) -> HeartbeatData:
        """The heartbeat body naming every registered group."""
        return HeartbeatData(
            self.client_id,
            tuple(ProducerData(group) for group in sorted(self._producers)),
            tuple(member.consumer_data() for member in self._consumers.values()))

    async def send_heartbeats(self) -> int:
        """Heartbeat every known broker (masters only without consumers).

        Returns:
            How many brokers acknowledged it (failures are logged).
        """
        if not self._producers and not self._consumers:
            return 0
        body = self.heartbeat_data().encode()
        addrs = self.routes.broker_addrs(masters_only=not self._consumers)
        results = await asyncio.gather(*(self._heartbeat(addr, body) for addr in addrs))
        return sum(results)

    async def _heartbeat(self, addr: str, body: bytes) -> bool:
        try:
            await self.invoke_ok(addr, make_request(RequestCode.HEART_BEAT, 0, body=body))
        except Exception as err:  # noqa: BLE001 - any failure: logged, retried next period
            log.warning("client %s: heartbeat to %s failed: %s", self.client_id, addr, err)
            return False
        return True

    async def _unregister_everywhere(self) -> None:
        headers = [UnregisterClientRequestHeader(self.client_id, producer_group=group)
                   for group in self._producers]
        headers += [UnregisterClientRequestHeader(self.client_id, consumer_group=group)
                    for group in self._consumers]
        addrs = self.routes.broker_addrs(masters_only=not self._consumers)
        calls = [self._unregister(addr, header) for addr in addrs for header in headers]
        await asyncio.gather(*calls)

    async def _unregister(self, addr: str, header: UnregisterClientRequestHeader) -> None:
        if addr not in self.remoting.connections:
            return  # never talked to it: it has nothing of ours to forget
        try:
            await self.invoke(addr, make_request(RequestCode.UNREGISTER_CLIENT, 0,
                                                 header.to_ext_fields()),
                              min(_UNREGISTER_TIMEOUT_S, self.request_timeout_s))
        except Exception as err:  # noqa: BLE001 - best effort: the broker expires us anyway
            log.info("client %s: unregister at %s failed: %s", self.client_id, addr, err)

    # -- requests from brokers -----------------------------------------------------------------
    def _on_request(self, conn: Connection, request: RemotingCommand) -> HandlerResult:
        if request.code == RequestCode.NOTIFY_CONSUMER_IDS_CHANGED:
            self._ids_changed(conn, request)
            return None if request.is_oneway else make_response(request, ResponseCode.SUCCESS)
        if request.code == RequestCode.CHECK_TRANSACTION_STATE:
            self._check_transaction_state(conn, request)
            return None  # Java answers nothing, even to a normal request
        if request.code in MEMBER_REQUESTS:  # offset resets and running info (operators)
            return answer_member_request(self, request, self._consumers.get)
        log.debug("client %s: request %d from %s not supported", self.client_id, request.code,
                  conn.remote_address)
        return make_response(request, ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                             f"request code {request.code} is not supported by the shmq client")

    def _ids_changed(self, conn: Connection, request: RemotingCommand) -> None:
        group = NotifyConsumerIdsChangedRequestHeader.from_ext_fields(request.ext_fields)
        member = self._consumers.get(group.consumer_group)
        log.info("client %s: %s says the members of %s changed", self.client_id,
                 conn.remote_address, group.consumer_group)
        if member is not None:
            member.on_consumer_ids_changed()

    def _check_transaction_state(self, conn: Connection, request: RemotingCommand) -> None:
        """Java `ClientRemotingProcessor.checkTransactionState`: find the producer by the
        message's PGROUP; undecodable requests and unknown groups are logged and dropped."""
        try:
            header = CheckTransactionStateRequestHeader.from_ext_fields(request.ext_fields)
            message = decode_record(request.body or b"")
        except (HeaderFieldError, MessageError) as err:
            log.warning("client %s: undecodable CHECK_TRANSACTION_STATE from %s: %s",
                        self.client_id, conn.remote_address, err)
            return
        group = message.properties.get(PROPERTY_PGROUP, "")
        checker = self._checkers.get(group)
        if checker is None:
            log.info("client %s: %s checks a transaction of producer group %r, which has no "
                     "transactional producer here", self.client_id, conn.remote_address, group)
            return
        checker.on_check_transaction_state(conn, header, message)
