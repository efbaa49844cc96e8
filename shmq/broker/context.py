"""What the request handlers work with: the acceptor's shared `Broker` state and one `Session`
per client connection.

Theory of operation: `Broker` bundles the state of one acceptor process — settings, topic
table, consumer offsets, client registry, queue locks, the store reader, the appender (the
write channel to the writers) and the parked pulls — plus the few operations several handlers
need (offset message ids, notifying a consumer group). A `Session` is created for each client
connection on its first request and dropped when it closes; handlers receive it as their `ctx`
(`handler(ctx, command)`), so they reach the broker as `ctx.broker` and the connection as
`ctx.conn`. The session also caches the connection's packed address: the BORNHOST of every
message sent on it, the TCP peer as RocketMQ stores it (IPv4-mapped IPv6 peers as IPv4).

Nothing here does I/O except `notify_consumer_ids_changed`, which writes oneway requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from shmq.message.errors import InvalidAddress
from shmq.message.msgid import encode_offset_msg_id, pack_host
from shmq.protocol import (
    NotifyConsumerIdsChangedRequestHeader,
    RequestCode,
    SubscriptionData,
    make_request,
)
from shmq.protocol.errors import LocalProtocolError
from shmq.remoting import ConnectFailed, Connection, ConnectionClosed, parse_address

from .appender import Appender
from .clients import ClientRegistry
from .locks import QueueLocks
from .longpoll import PullHolds
from .offsets import ConsumerOffsets
from .reader import StoreReader
from .topics import TopicTable

__all__ = ["Broker", "BrokerSettings", "Session"]

log = logging.getLogger(__name__)

_UNKNOWN_PEER: Final = pack_host("0.0.0.0", 0)
_CODE_CACHE_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """The acceptor's identity and limits (from the `[broker]` settings)."""

    name: str = "broker-a"
    cluster: str = "DefaultCluster"
    host: str = "127.0.0.1"  #: advertised address: STOREHOST of every record, routes
    port: int = 10911  #: the port clients reach (the bound one when 0 was configured)
    broker_id: int = 0  #: 0 master
    auto_create_topic: bool = True
    default_queues: int = 4
    max_body_bytes: int = 4 << 20
    max_frame_bytes: int = 16 << 20
    region: str = "DefaultRegion"  #: MSG_REGION of send responses
    reject_transaction: bool = False  #: half messages answered NO_PERMISSION (transaction.reject)

    @property
    def address(self) -> str:
        """"host:port" as registered with the name servers."""
        return f"{self.host}:{self.port}"


class Broker:
    """The shared state of one acceptor process; see the module docstring."""

    def __init__(self, settings: BrokerSettings, *, topics: TopicTable,
                 offsets: ConsumerOffsets, reader: StoreReader, appender: Appender,
                 holds: PullHolds, clients: ClientRegistry | None = None,
                 locks: QueueLocks | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.settings = settings
        self.topics, self.offsets, self.reader = topics, offsets, reader
        self.appender, self.holds = appender, holds
        self.clients = clients if clients is not None else ClientRegistry()
        self.locks = locks if locks is not None else QueueLocks()
        self.monotonic = monotonic
        self.clock_ms = clock_ms  #: wall clock (ms): delivery times of delayed messages
        self.store_host = pack_host(settings.host, settings.port)
        self._msgid_prefix = encode_offset_msg_id(settings.host, settings.port, 0)[:-16]
        self._codes: dict[str, npt.NDArray[np.int64] | None] = {}
        self.draining = False

    def msg_id(self, offset: int) -> str:
        """Offset message id of the record at commit-log `offset` on this broker."""
        return f"{self._msgid_prefix}{offset:016X}"

    def msg_ids(self, first_offset: int, sizes: npt.NDArray[np.int64]) -> str:
        """The comma-separated offset message ids of contiguous records of `sizes` from
        `first_offset` (a send response's msgId). One hex conversion for all of them: per
        record, `msg_id` in a loop cost ~1 us of a batch send's ~4."""
        if len(sizes) == 1:
            return self.msg_id(first_offset)
        offsets = np.empty(len(sizes), dtype=np.int64)
        offsets[0] = first_offset
        np.cumsum(sizes[:-1], out=offsets[1:])
        offsets[1:] += first_offset
        digits = offsets.astype(">u8").tobytes().hex().upper()
        prefix = self._msgid_prefix
        return ",".join([prefix + digits[i : i + 16] for i in range(0, len(digits), 16)])

    def tag_codes(self, sub_string: str | None) -> npt.NDArray[np.int64] | None:
        """Tag codes of a TAG expression ("a || b"); None for "*" (every message)."""
        key = sub_string or ""
        try:
            return self._codes[key]
        except KeyError:
            pass
        sub = SubscriptionData.of_tags("", sub_string)
        codes = None if not sub.tags_set else np.array(sub.code_set, dtype=np.int64)
        if len(self._codes) >= _CODE_CACHE_LIMIT:
            self._codes.clear()
        self._codes[key] = codes
        return codes

    def notify_consumer_ids_changed(self, group: str) -> int:
        """Send NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every channel of `group`; return how
        many were sent. Closed connections are skipped."""
        request = make_request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, 0,
                               NotifyConsumerIdsChangedRequestHeader(group).to_ext_fields())
        sent = 0
        for conn in self.clients.consumer_connections(group):
            try:
                conn.oneway(request)
                sent += 1
            except (ConnectionClosed, LocalProtocolError) as err:
                log.debug("cannot notify %r of group %s: %s", conn, group, err)
        return sent

    def connection_closed(self, conn: Connection) -> None:
        """A client connection went away: drop its channels and tell their groups."""
        for group in self.clients.connection_closed(conn):
            log.info("consumer of group %s at %s disconnected", group, conn.remote_address)
            self.notify_consumer_ids_changed(group)

    def expire_clients(self) -> None:
        """Drop channels that stopped heartbeating; tell their groups."""
        for group in self.clients.expire(self.monotonic()):
            log.info("consumer group %s lost a member to heartbeat expiry", group)
            self.notify_consumer_ids_changed(group)


class Session:
    """One client connection's context for the handlers (`ctx`)."""

    __slots__ = ("born_host", "broker", "conn")

    def __init__(self, broker: Broker, conn: Connection) -> None:
        self.broker = broker
        self.conn = conn
        self.born_host = peer_host(conn.remote_address)


def peer_host(address: str) -> bytes:
    """The packed BORNHOST of a peer "ip:port" ("[v6]:port"); 0.0.0.0:0 when unknown."""
    try:
        host, port = parse_address(address)
        return pack_host(host, port)
    except (ConnectFailed, InvalidAddress):  # "?" before the transport was made
        return _UNKNOWN_PEER
