"""Who is connected: consumer groups, producer groups and their channels
(spec/behaviours.md §3).

Theory of operation: a *channel* is one client connection registered by a heartbeat under a
group, with its client id (`<pid>-<ip>@DEFAULT` for C++), language and version, and when it last
heartbeat. `ClientRegistry` keeps, per consumer group, its channels and the group's
subscriptions (topic -> `SubscriptionData`), message model, consume type and where to start;
per producer group, its channels (for transaction check-backs).

Changes that consumers of a group must hear about (a channel joined or left, a topic was
added or dropped from the subscriptions) are reported to the caller as the set of groups
changed; the caller sends NOTIFY_CONSUMER_IDS_CHANGED to every channel of those groups (Java
sends it to all of them, the newcomer included). Subscription updates follow Java's
`ConsumerGroupInfo.updateSubscription`: new topics are added, a topic's data is replaced when
the new subVersion is higher, topics missing from the heartbeat are dropped.

A group keeps its subscriptions when its last channel goes (as Java does); without channels it
has no consumer ids. A channel goes when its connection closes (`connection_closed`), when it
unregisters, or after `CHANNEL_EXPIRY_S` without a heartbeat (`expire`). The registry is in this
process's memory: a second acceptor would need it in shared memory (not done).

Connections are only keys and message targets here; nothing is sent from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from shmq.protocol import (
    ConsumeFromWhere,
    ConsumerData,
    ConsumeType,
    MessageModel,
    SubscriptionData,
)
from shmq.remoting import Connection

__all__ = ["CHANNEL_EXPIRY_S", "ClientChannel", "ClientRegistry", "ConsumerGroup"]

#: a channel without a heartbeat for this long is dropped (channelExpiredTimeout)
CHANNEL_EXPIRY_S: Final = 120.0


@dataclass(slots=True)
class ClientChannel:
    """One client connection registered under a group."""

    conn: Connection
    client_id: str
    language: str
    version: int
    last_update_s: float


@dataclass(slots=True)
class ConsumerGroup:
    """What the broker knows of one consumer group."""

    name: str
    consume_type: ConsumeType = ConsumeType.CONSUME_PASSIVELY
    message_model: MessageModel = MessageModel.CLUSTERING
    consume_from_where: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET
    channels: dict[Connection, ClientChannel] = field(default_factory=dict)
    subscriptions: dict[str, SubscriptionData] = field(default_factory=dict)

    def client_ids(self) -> list[str]:
        """Client ids of the live channels, sorted (clients sort them anyway)."""
        return sorted({channel.client_id for channel in self.channels.values()})

    def update_subscriptions(self, subscriptions: tuple[SubscriptionData, ...]) -> bool:
        """Java's rule (module docstring); True when a topic was added or dropped."""
        changed = False
        wanted = {sub.topic: sub for sub in subscriptions}
        for topic, sub in wanted.items():
            old = self.subscriptions.get(topic)
            if old is None:
                self.subscriptions[topic] = sub
                changed = True
            elif sub.sub_version > old.sub_version:
                self.subscriptions[topic] = sub
        for topic in [t for t in self.subscriptions if t not in wanted]:
            del self.subscriptions[topic]
            changed = True
        return changed


class ClientRegistry:
    """Consumer and producer groups and their channels; see the module docstring."""

    def __init__(self) -> None:
        self._consumers: dict[str, ConsumerGroup] = {}
        self._producers: dict[str, dict[Connection, ClientChannel]] = {}

    # -- heartbeats ------------------------------------------------------------------------------

    def register_consumer(self, data: ConsumerData, channel: ClientChannel) -> bool:
        """Record a consumer group's heartbeat on `channel`; True if the group changed."""
        group = self._consumers.get(data.group_name)
        if group is None:
            group = self._consumers[data.group_name] = ConsumerGroup(data.group_name)
        group.consume_type = data.consume_type
        group.message_model = data.message_model
        group.consume_from_where = data.consume_from_where
        known = group.channels.get(channel.conn)
        changed = known is None or known.client_id != channel.client_id
        group.channels[channel.conn] = channel
        return group.update_subscriptions(data.subscription_data_set) or changed

    def register_producer(self, group: str, channel: ClientChannel) -> None:
        self._producers.setdefault(group, {})[channel.conn] = channel

    def unregister_consumer(self, group: str, conn: Connection, client_id: str) -> bool:
        """Drop the channel of `client_id` (on `conn`, or any connection) from the group;
        True if one was dropped."""
        info = self._consumers.get(group)
        if info is None:
            return False
        victims = [c for c, ch in info.channels.items()
                   if c is conn or ch.client_id == client_id]
        for victim in victims:
            del info.channels[victim]
        return bool(victims)

    def unregister_producer(self, group: str, conn: Connection) -> None:
        channels = self._producers.get(group)
        if channels is not None:
            channels.pop(conn, None)
            if not channels:
                del self._producers[group]

    def connection_closed(self, conn: Connection) -> set[str]:
        """Drop every channel of `conn`; return the consumer groups that lost a member."""
        changed = set()
        for name, info in list(self._consumers.items()):
            if info.channels.pop(conn, None) is not None:
                changed.add(name)
        for group in list(self._producers):
            self.unregister_producer(group, conn)
        return changed

    def expire(self, now_s: float, max_idle_s: float = CHANNEL_EXPIRY_S) -> set[str]:
        """Drop channels silent for `max_idle_s`; return the consumer groups that changed."""
        changed = set()
        for name, info in list(self._consumers.items()):
            stale = [c for c, ch in info.channels.items() if now_s - ch.last_update_s > max_idle_s]
            for conn in stale:
                del info.channels[conn]
            if stale:
                changed.add(name)
        for group, channels in list(self._producers.items()):
            for conn in [c for c, ch in channels.items() if now_s - ch.last_update_s > max_idle_s]:
                self.unregister_producer(group, conn)
        return changed

    # -- queries ---------------------------------------------------------------------------------

    def consumer_group(self, group: str) -> ConsumerGroup | None:
        return self._consumers.get(group)

    def consumer_ids(self, group: str) -> list[str]:
        info = self._consumers.get(group)
        return info.client_ids() if info is not None else []

    def consumer_connections(self, group: str) -> list[Connection]:
        info = self._consumers.get(group)
        return list(info.channels) if info is not None else []

    def subscription(self, group: str, topic: str) -> SubscriptionData | None:
        info = self._consumers.get(group)
        return info.subscriptions.get(topic) if info is not None else None

    def producer_connections(self, group: str) -> list[Connection]:
        return list(self._producers.get(group, {}))
