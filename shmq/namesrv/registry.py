"""The name server's route registry: which brokers are alive and which queues each topic has.

Theory of operation
-------------------
A pure, in-memory model of Java's `RouteInfoManager` (spec/behaviours.md §1,
spec/request-codes.md §2 and §5); no I/O, no clock, no logging: callers pass `now_s` (any
monotonic seconds) and log what the results tell them. Five tables:

* topic -> broker name -> `QueueData` (read/write queue counts, perm, topicSysFlag);
* broker name -> cluster and addresses by broker id (0 = master, >= 1 = slaves);
* cluster -> broker names;
* broker address -> liveness: last registration time, the `DataVersion` of its topic table,
  its HA address and the channel it registered on (an opaque token; the server passes the
  `Connection`);
* broker address -> filter servers; namespace -> key -> value (KV config).

Rules kept from Java:

* An address is registered under one broker id only: registering it under another id first
  removes the old one (how a slave is promoted by an operator).
* Only a master's registration (id 0) writes topic queue data, and only when the broker is new
  or its DataVersion changed. Topics missing from a registration are **not** removed: Java
  brokers also send incremental registrations (one new topic, bumped version); topics go away
  with DELETE_TOPIC_IN_NAMESRV or when their last broker does.
* A route exists only if the topic has queue data and at least one of its brokers is known;
  otherwise `pick_topic_route_data` returns None (TOPIC_NOT_EXIST).
* A broker address not re-registered for `broker_expiry_s` is dropped by
  `scan_not_active_broker`; so is every address whose channel closed (`on_channel_destroy`).
  Dropping the last address of a broker name removes the name from its cluster and its queue
  data from every topic; a cluster or topic left empty disappears. When only the master is
  gone, the topic's queue data stays (from its last registration) and routes list the slaves:
  consumers keep reading, producers find no writable queue there.

Departures from Java, on purpose: UNREGISTER_BROKER removes the id only if it still maps to the
unregistering address (a late unregister of a replaced master cannot remove the new one); a
closed channel drops every address registered on it (our test brokers may share one); tables
keep insertion order, so listings are deterministic.

Not thread-safe: the name server calls it from its event loop only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from shmq.protocol import (
    BrokerData,
    ClusterInfo,
    DataVersion,
    KVTable,
    QueueData,
    RegisterBrokerBody,
    RegisterBrokerRequestHeader,
    TopicConfig,
    TopicList,
    TopicRouteData,
)

__all__ = [
    "DEFAULT_BROKER_EXPIRY_S",
    "MASTER_ID",
    "NAMESPACE_ORDER_TOPIC_CONFIG",
    "PERM_INHERIT",
    "PERM_PRIORITY",
    "PERM_READ",
    "PERM_WRITE",
    "ExpiredBroker",
    "RegisterBrokerResult",
    "RegistryStatistics",
    "RouteRegistry",
]

#: a broker silent for longer is dropped (Java BROKER_CHANNEL_EXPIRED_TIME, 120 s)
DEFAULT_BROKER_EXPIRY_S: Final = 120.0
#: broker id of a master (Java MixAll.MASTER_ID)
MASTER_ID: Final = 0
#: KV namespace of globally ordered topics' "brokerName:queueNum;..." (Java NamesrvUtil)
NAMESPACE_ORDER_TOPIC_CONFIG: Final = "ORDER_TOPIC_CONFIG"
#: permission bits of QueueData.perm and TopicConfig.perm (Java PermName)
PERM_PRIORITY: Final = 8
PERM_READ: Final = 4
PERM_WRITE: Final = 2
PERM_INHERIT: Final = 1


@dataclass(frozen=True, slots=True)
class RegisterBrokerResult:
    """What REGISTER_BROKER answers, and what changed (for the caller's log).

    Attributes:
        ha_server_addr: for a slave whose master is registered: the master's HA address.
        master_addr: for such a slave: the master's remoting address.
        order_topic_config: the ORDER_TOPIC_CONFIG namespace, when it has entries.
        is_new_address: the address was not registered under this broker id before.
        topics_updated: the registration rewrote the broker's topic queue data.
    """

    ha_server_addr: str | None
    master_addr: str | None
    order_topic_config: KVTable | None
    is_new_address: bool
    topics_updated: bool


@dataclass(frozen=True, slots=True)
class ExpiredBroker:
    """A broker address dropped by `scan_not_active_broker`."""

    broker_addr: str
    channel: object | None  #: what it registered on; the server closes it
    silent_s: float  #: seconds since its last registration


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """Sizes of the tables."""

    clusters: int
    broker_names: int
    broker_addrs: int  #: live addresses (masters and slaves)
    topics: int
    kv_entries: int


@dataclass(slots=True)
class _Broker:
    cluster: str
    broker_name: str
    addrs: dict[int, str] = field(default_factory=dict)

    def snapshot(self) -> BrokerData:
        return BrokerData(self.cluster, self.broker_name, dict(sorted(self.addrs.items())))


@dataclass(slots=True)
class _Liveness:
    last_update_s: float
    data_version: DataVersion
    channel: object | None
    ha_server_addr: str


class RouteRegistry:
    """The name server's tables; see the module docstring."""

    __slots__ = (
        "_brokers",
        "_clusters",
        "_filter_servers",
        "_kv",
        "_live",
        "_topics",
        "broker_expiry_s",
        "order_message_enable",
    )

    def __init__(self, *, broker_expiry_s: float = DEFAULT_BROKER_EXPIRY_S,
                 order_message_enable: bool = False) -> None:
        """Create empty tables.

        Args:
            broker_expiry_s: drop a broker address not registered for this long.
            order_message_enable: add `orderTopicConf` from the ORDER_TOPIC_CONFIG namespace
                to routes (Java NamesrvConfig.orderMessageEnable, default off).

        Raises:
            ValueError: `broker_expiry_s` is not positive.
        """
        if broker_expiry_s <= 0:
            raise ValueError(f"broker_expiry_s {broker_expiry_s} must be positive")
        self.broker_expiry_s = broker_expiry_s
        self.order_message_enable = order_message_enable
        self._topics: dict[str, dict[str, QueueData]] = {}
        self._brokers: dict[str, _Broker] = {}
        self._clusters: dict[str, dict[str, None]] = {}  # ordered sets of broker names
        self._live: dict[str, _Liveness] = {}
        self._filter_servers: dict[str, tuple[str, ...]] = {}
        self._kv: dict[str, dict[str, str]] = {}

    # -- registration and liveness ---------------------------------------------------------------

    def register_broker(
        self,
        header: RegisterBrokerRequestHeader,
        body: RegisterBrokerBody,
        *,
        now_s: float,
        channel: object | None = None,
    ) -> RegisterBrokerResult:
        """Record (or refresh) a broker's registration; Java `RouteInfoManager.registerBroker`.

        Args:
            header: who registers: cluster, broker name and id, remoting and HA addresses.
            body: its topic table (with DataVersion) and filter servers.
            now_s: the current time, for liveness.
            channel: the connection it registered on; closing it drops the broker.

        Returns:
            The response data (master addresses for a slave) and what changed.
        """
        name, addr, broker_id = header.broker_name, header.broker_addr, header.broker_id
        self._clusters.setdefault(header.cluster_name, {})[name] = None
        broker = self._brokers.get(name)
        is_new_name = broker is None
        if broker is None:
            broker = self._brokers[name] = _Broker(header.cluster_name, name)
        for other_id in [i for i, a in broker.addrs.items() if a == addr and i != broker_id]:
            del broker.addrs[other_id]  # the same address under one id only
        is_new_address = broker.addrs.get(broker_id) != addr
        broker.addrs[broker_id] = addr
        wrapper = body.topic_config_serialize_wrapper
        topics_updated = broker_id == MASTER_ID and (
            is_new_name or is_new_address
            or self.is_broker_topic_config_changed(addr, wrapper.data_version))
        if topics_updated:
            for config in wrapper.topic_config_table.values():
                self._update_queue_data(name, config)
        self._live[addr] = _Liveness(now_s, wrapper.data_version, channel, header.ha_server_addr)
        if body.filter_server_list:
            self._filter_servers[addr] = body.filter_server_list
        else:
            self._filter_servers.pop(addr, None)
        ha_server_addr = master_addr = None
        if broker_id != MASTER_ID:
            master = broker.addrs.get(MASTER_ID)
            master_live = self._live.get(master) if master is not None else None
            if master_live is not None:
                ha_server_addr, master_addr = master_live.ha_server_addr, master
        return RegisterBrokerResult(
            ha_server_addr, master_addr,
            self.get_kv_list_by_namespace(NAMESPACE_ORDER_TOPIC_CONFIG),
            is_new_address, topics_updated)

    def unregister_broker(self, broker_addr: str, broker_name: str, broker_id: int) -> bool:
        """Forget one broker address (UNREGISTER_BROKER, sent by a broker at shutdown).

        Returns:
            True if the broker name had that address under that id.
        """
        self._live.pop(broker_addr, None)
        self._filter_servers.pop(broker_addr, None)
        broker = self._brokers.get(broker_name)
        if broker is None or broker.addrs.get(broker_id) != broker_addr:
            return False
        del broker.addrs[broker_id]
        if not broker.addrs:
            self._remove_broker_name(broker_name)
        return True

    def scan_not_active_broker(self, now_s: float) -> list[ExpiredBroker]:
        """Drop every broker address not registered within `broker_expiry_s` before `now_s`.

        Returns:
            The dropped addresses, with the channels the caller should close.
        """
        expired = [
            ExpiredBroker(addr, live.channel, now_s - live.last_update_s)
            for addr, live in self._live.items()
            if now_s - live.last_update_s > self.broker_expiry_s
        ]
        for gone in expired:
            self._remove_broker_addr(gone.broker_addr)
        return expired

    def on_channel_destroy(self, channel: object) -> list[str]:
        """Drop every broker address registered on `channel` (its connection closed).

        Returns:
            The dropped addresses (none when no broker used this channel: a client's).
        """
        gone = [addr for addr, live in self._live.items() if live.channel is channel]
        for addr in gone:
            self._remove_broker_addr(addr)
        return gone

    def is_broker_topic_config_changed(self, broker_addr: str, data_version: DataVersion) -> bool:
        """True if `data_version` differs from the one `broker_addr` last registered (or if
        the address is not registered)."""
        live = self._live.get(broker_addr)
        return live is None or live.data_version != data_version

    def query_data_version(self, broker_addr: str, data_version: DataVersion, *,
                           now_s: float) -> tuple[bool, DataVersion | None]:
        """QUERY_DATA_VERSION: has the broker's topic table changed since it registered?

        An unchanged broker counts as alive again (its liveness is refreshed).

        Returns:
            (changed, the DataVersion we hold for the address or None).
        """
        changed = self.is_broker_topic_config_changed(broker_addr, data_version)
        live = self._live.get(broker_addr)
        if live is None:
            return changed, None
        if not changed:
            live.last_update_s = now_s
        return changed, live.data_version

    # -- routes and listings -----------------------------------------------------------------------

    def pick_topic_route_data(self, topic: str) -> TopicRouteData | None:
        """The route of `topic` (GET_ROUTEINFO_BY_TOPIC), or None when there is none."""
        queue_datas = self._topics.get(topic)
        if not queue_datas:
            return None
        broker_datas = tuple(
            self._brokers[name].snapshot() for name in queue_datas if name in self._brokers)
        if not broker_datas:
            return None
        filter_servers = {
            addr: self._filter_servers[addr]
            for broker in broker_datas for addr in broker.broker_addrs.values()
            if addr in self._filter_servers
        }
        order_conf = None
        if self.order_message_enable:
            order_conf = self.get_kv_config(NAMESPACE_ORDER_TOPIC_CONFIG, topic)
        return TopicRouteData(tuple(queue_datas.values()), broker_datas, filter_servers,
                              order_conf)

    def get_all_cluster_info(self) -> ClusterInfo:
        """Every broker name with its addresses, and every cluster's broker names."""
        return ClusterInfo(
            {name: broker.snapshot() for name, broker in self._brokers.items()},
            {cluster: tuple(names) for cluster, names in self._clusters.items()},
        )

    def get_all_topic_list(self) -> TopicList:
        """Every topic that has queue data."""
        return TopicList(tuple(self._topics))

    def get_topics_by_cluster(self, cluster: str) -> TopicList:
        """Topics with queue data on at least one broker of `cluster`."""
        names = self._clusters.get(cluster, {})
        return TopicList(tuple(
            topic for topic, queue_datas in self._topics.items()
            if any(name in queue_datas for name in names)))

    def get_system_topic_list(self) -> TopicList:
        """Java's "system topics": every cluster name and broker name (brokers create topics
        with those names), plus one broker address to send admin requests to."""
        names: list[str] = []
        for cluster, broker_names in self._clusters.items():
            names += [cluster, *broker_names]
        broker_addr = next(
            (next(iter(b.addrs.values())) for b in self._brokers.values() if b.addrs), None)
        return TopicList(tuple(dict.fromkeys(names)), broker_addr)

    def delete_topic(self, topic: str, cluster_name: str | None = None) -> bool:
        """Remove `topic`'s queue data: everywhere, or on the brokers of `cluster_name` only.

        Returns:
            True if anything was removed.
        """
        queue_datas = self._topics.get(topic)
        if queue_datas is None:
            return False
        if not cluster_name:
            del self._topics[topic]
            return True
        removed = [name for name in self._clusters.get(cluster_name, {})
                   if queue_datas.pop(name, None) is not None]
        if not queue_datas:
            del self._topics[topic]
        return bool(removed)

    def wipe_write_perm_of_broker(self, broker_name: str) -> int:
        """Clear WRITE on every topic of `broker_name` (an operator drains it).

        Returns:
            How many topics had WRITE and lost it.
        """
        return self._change_perm(broker_name, lambda perm: perm & ~PERM_WRITE)

    def add_write_perm_of_broker(self, broker_name: str) -> int:
        """Set WRITE again on every topic of `broker_name`.

        Returns:
            How many topics lacked WRITE and got it.
        """
        return self._change_perm(broker_name, lambda perm: perm | PERM_WRITE)

    def live_broker_addrs(self) -> tuple[str, ...]:
        """Registered broker addresses, masters and slaves."""
        return tuple(self._live)

    def statistics(self) -> RegistryStatistics:
        """Table sizes."""
        return RegistryStatistics(
            clusters=len(self._clusters),
            broker_names=len(self._brokers),
            broker_addrs=len(self._live),
            topics=len(self._topics),
            kv_entries=sum(len(table) for table in self._kv.values()),
        )

    # -- KV config ------------------------------------------------------------------------------------

    def put_kv_config(self, namespace: str, key: str, value: str) -> None:
        """Set `namespace`/`key` to `value` (PUT_KV_CONFIG)."""
        self._kv.setdefault(namespace, {})[key] = value

    def get_kv_config(self, namespace: str, key: str) -> str | None:
        """The value of `namespace`/`key`, or None (GET_KV_CONFIG)."""
        return self._kv.get(namespace, {}).get(key)

    def delete_kv_config(self, namespace: str, key: str) -> bool:
        """Remove `namespace`/`key` (DELETE_KV_CONFIG). Returns: True if it existed."""
        table = self._kv.get(namespace)
        if table is None or key not in table:
            return False
        del table[key]
        if not table:
            del self._kv[namespace]
        return True

    def get_kv_list_by_namespace(self, namespace: str) -> KVTable | None:
        """Every key of `namespace`, or None when it has none (GET_KVLIST_BY_NAMESPACE)."""
        table = self._kv.get(namespace)
        return KVTable(dict(table)) if table else None

    # -- internals ------------------------------------------------------------------------------------

    def _update_queue_data(self, broker_name: str, config: TopicConfig) -> None:
        self._topics.setdefault(config.topic_name, {})[broker_name] = QueueData(
            broker_name=broker_name,
            read_queue_nums=config.read_queue_nums,
            write_queue_nums=config.write_queue_nums,
            perm=config.perm,
            topic_sys_flag=config.topic_sys_flag,
        )

    def _change_perm(self, broker_name: str, change: Callable[[int], int]) -> int:
        count = 0
        for queue_datas in self._topics.values():
            old = queue_datas.get(broker_name)
            if old is not None and change(old.perm) != old.perm:
                queue_datas[broker_name] = dataclasses.replace(old, perm=change(old.perm))
                count += 1
        return count

    def _remove_broker_addr(self, addr: str) -> None:
        """Drop `addr` from every table; a broker name left without addresses goes too."""
        self._live.pop(addr, None)
        self._filter_servers.pop(addr, None)
        for name, broker in list(self._brokers.items()):
            for broker_id in [i for i, a in broker.addrs.items() if a == addr]:
                del broker.addrs[broker_id]
            if not broker.addrs:
                self._remove_broker_name(name)

    def _remove_broker_name(self, broker_name: str) -> None:
        self._brokers.pop(broker_name, None)
        # Normally only its own cluster lists it; one that changed cluster is in two.
        for cluster, names in list(self._clusters.items()):
            if broker_name in names:
                del names[broker_name]
                if not names:
                    del self._clusters[cluster]
        for topic, queue_datas in list(self._topics.items()):
            if queue_datas.pop(broker_name, None) is not None and not queue_datas:
                del self._topics[topic]
