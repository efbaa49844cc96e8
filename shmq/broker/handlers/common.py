"""Pieces several handlers share: the handler type and topic lookups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from shmq.protocol import RemotingCommand, TopicConfig
from shmq.remoting import HandlerResult

from ..context import Broker, Session
from ..errors import IllegalTopic, TopicNotExist
from ..topics import PERM_RW, check_topic_name

__all__ = ["DEFAULT_MAX_RECONSUME_TIMES", "BrokerHandler", "readable_topic"]

#: a request handler of the broker: `handler(ctx, command)`
BrokerHandler: TypeAlias = Callable[[Session, RemotingCommand], HandlerResult]

#: SubscriptionGroupConfig.retryMaxTimes
DEFAULT_MAX_RECONSUME_TIMES: Final = 16


def readable_topic(broker: Broker, topic: str) -> TopicConfig:
    """The config of a topic to read from: from the table, else adopted from the store when
    its consume queues exist (topics written by same-host producers have no config yet).

    Raises:
        TopicNotExist: neither.
    """
    config = broker.topics.get(topic)
    if config is not None:
        return config
    try:
        check_topic_name(topic)  # before it names a directory
    except IllegalTopic as err:
        raise TopicNotExist(topic) from err
    queues = broker.reader.topic_on_disk(topic)
    if queues:
        return broker.topics.ensure(topic, max(queues, broker.settings.default_queues), PERM_RW)
    raise TopicNotExist(topic)
