"""The broker's topic table: ``config/topics.json``, auto-creation, system topics
(spec/behaviours.md §2).

Theory of operation
-------------------
`TopicTable` keeps topic name -> `TopicConfig` and the table's `DataVersion` (which the name
server compares to decide whether routes changed). The file is ``data_dir/store/config/
topics.json`` in Java's shape (`TopicConfigSerializeWrapper`), written atomically with a
``.bak`` by `jsonfile.JsonFile`. Acceptor processes share it: every change is made under the
file's lock after re-reading it, and readers reload when the file's signature changed (checked
on a miss at once, on a hit at most every `RELOAD_CHECK_S`), so a topic one acceptor creates is
seen by the others.

Rules:

* Names: ``^[%|a-zA-Z0-9_-]+$``, at most 127 characters (`check_topic_name`). Clients may not
  send to the system topics in `NOT_ALLOWED_SEND_TOPICS`.
* ``TBW102`` exists while `auto_create` is on, with `default_queues` queues and perm
  INHERIT|READ|WRITE; clients without a route for a topic send to it with
  ``defaultTopic=TBW102``. A send to an unknown topic creates it when its default topic has
  INHERIT: ``min(requested, default topic's write queues)`` queues (the client asks for 4; a
  request without a count gets `default_queues`), perm without INHERIT.
* ``%RETRY%<group>`` and ``%DLQ%<group>`` are created on demand with one read/write queue.
* Every change bumps the DataVersion and calls the `on_change` callbacks (the registrar then
  re-registers with the name servers at once).

Not thread-safe: one event loop per process uses it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from shmq.protocol import DataVersion, TopicConfig, TopicConfigSerializeWrapper
from shmq.protocol.body_json import encode_json
from shmq.protocol.errors import BodyFormatError

from .errors import IllegalTopic
from .jsonfile import JsonFile, Signature

__all__ = [
    "AUTO_CREATE_TOPIC",
    "DLQ_GROUP_TOPIC_PREFIX",
    "MAX_TOPIC_LENGTH",
    "NOT_ALLOWED_SEND_TOPICS",
    "OFFSET_MOVED_EVENT",
    "PERM_INHERIT",
    "PERM_READ",
    "PERM_RW",
    "PERM_WRITE",
    "RETRY_GROUP_TOPIC_PREFIX",
    "SCHEDULE_TOPIC",
    "SELF_TEST_TOPIC",
    "TRANS_HALF_TOPIC",
    "TRANS_OP_HALF_TOPIC",
    "TopicTable",
    "check_topic_name",
    "dlq_topic",
    "retry_topic",
]

log = logging.getLogger(__name__)

PERM_PRIORITY: Final = 8
PERM_READ: Final = 4
PERM_WRITE: Final = 2
PERM_INHERIT: Final = 1
PERM_RW: Final = PERM_READ | PERM_WRITE

#: AUTO_CREATE_TOPIC_KEY_TOPIC: the template of auto-created topics
AUTO_CREATE_TOPIC: Final = "TBW102"
RETRY_GROUP_TOPIC_PREFIX: Final = "%RETRY%"
DLQ_GROUP_TOPIC_PREFIX: Final = "%DLQ%"
SELF_TEST_TOPIC: Final = "SELF_TEST_TOPIC"
OFFSET_MOVED_EVENT: Final = "OFFSET_MOVED_EVENT"
SCHEDULE_TOPIC: Final = "SCHEDULE_TOPIC_XXXX"
TRANS_HALF_TOPIC: Final = "RMQ_SYS_TRANS_HALF_TOPIC"
TRANS_OP_HALF_TOPIC: Final = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
TRANS_CHECK_MAX_TIME_TOPIC: Final = "TRANS_CHECK_MAX_TIME_TOPIC"
#: TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET
NOT_ALLOWED_SEND_TOPICS: Final = frozenset({
    SCHEDULE_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC, TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC, OFFSET_MOVED_EVENT,
})
MAX_TOPIC_LENGTH: Final = 127
_TOPIC_NAME: Final = re.compile(r"[%|a-zA-Z0-9_-]+")
#: how often a hit checks whether another process changed the file
RELOAD_CHECK_S: Final = 1.0
#: system topics created at start: name -> (queues, perm)
_SYSTEM_TOPICS: Final = {SELF_TEST_TOPIC: (1, PERM_RW), OFFSET_MOVED_EVENT: (1, PERM_RW),
                         SCHEDULE_TOPIC: (18, PERM_RW)}


def check_topic_name(topic: str) -> None:
    """Raise `IllegalTopic` (SYSTEM_ERROR, as Java) unless `topic` is a valid topic name."""
    if not topic or not topic.strip():
        raise IllegalTopic(topic, "is blank")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise IllegalTopic(topic, f"is longer than the topic max length {MAX_TOPIC_LENGTH}")
    if not _TOPIC_NAME.fullmatch(topic):
        raise IllegalTopic(topic, "contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$")


def retry_topic(group: str) -> str:
    return RETRY_GROUP_TOPIC_PREFIX + group


def dlq_topic(group: str) -> str:
    return DLQ_GROUP_TOPIC_PREFIX + group


class TopicTable:
    """The topic configurations of this broker; see the module docstring.

    Args:
        config_dir: ``data_dir/store/config``.
        default_queues: queues of TBW102 and of topics created without a requested count.
        auto_create: whether sends may create topics (TBW102 exists only then).
        clock: wall-clock ms for DataVersion timestamps.
    """

    def __init__(self, config_dir: Path, *, default_queues: int, auto_create: bool,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._file = JsonFile(config_dir / "topics.json")
        self.default_queues = default_queues
        self.auto_create = auto_create
        self._clock, self._monotonic = clock, monotonic
        self._table: dict[str, TopicConfig] = {}
        self._version = DataVersion(0, 0)
        self._signature: Signature | None = None
        self._next_check = 0.0
        self.on_change: list[Callable[[], None]] = []
        with self._file.locked():
            self._reload()
            self._mutate_locked(self._system_topics)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def data_version(self) -> DataVersion:
        return self._version

    def get(self, topic: str) -> TopicConfig | None:
        """The topic's config, or None (another process's creations are picked up)."""
        config = self._table.get(topic)
        now = self._monotonic()
        if config is None or now >= self._next_check:
            self._next_check = now + RELOAD_CHECK_S
            if self._file.signature() != self._signature:
                self._reload()
                config = self._table.get(topic)
        return config

    def topics(self) -> dict[str, TopicConfig]:
        """A copy of the table."""
        self.get("")  # reload if due
        return dict(self._table)

    def wrapper(self) -> TopicConfigSerializeWrapper:
        """The table as REGISTER_BROKER and GET_ALL_TOPIC_CONFIG carry it."""
        return TopicConfigSerializeWrapper(self.topics(), self._version)

    # -- changing --------------------------------------------------------------------------------

    def create_on_send(self, topic: str, default_topic: str | None,
                       requested_queues: int) -> TopicConfig | None:
        """Create `topic` for a send naming `default_topic`, if the rules allow; else None.

        Raises:
            IllegalTopic: `topic` is not a valid name; nothing changed.
        """
        check_topic_name(topic)
        template = self.get(default_topic) if default_topic else None
        if not self.auto_create or template is None or not template.perm & PERM_INHERIT:
            return None
        queues = min(requested_queues, template.write_queue_nums) if requested_queues > 0 \
            else self.default_queues
        config = TopicConfig(topic, queues, queues, template.perm & ~PERM_INHERIT,
                             template.topic_filter_type)
        created = self._add_if_missing(config)
        log.info("topic %s created on first send (%d queues, from %s)", topic,
                 created.write_queue_nums, default_topic)
        return created

    def ensure(self, topic: str, queues: int = 1, perm: int = PERM_RW) -> TopicConfig:
        """The config of `topic`, created with `queues` queues if missing (retry/DLQ topics,
        topics found on disk)."""
        config = self.get(topic)
        if config is not None:
            return config
        return self._add_if_missing(TopicConfig(topic, queues, queues, perm))

    def put(self, config: TopicConfig) -> None:
        """Create or replace a topic (UPDATE_AND_CREATE_TOPIC).

        Raises:
            IllegalTopic: bad name; nothing changed.
        """
        check_topic_name(config.topic_name)

        def change(table: dict[str, TopicConfig]) -> bool:
            if table.get(config.topic_name) == config:
                return False
            table[config.topic_name] = config
            return True

        self._mutate(change)

    def delete(self, topic: str) -> bool:
        """Remove a topic; True if it existed."""
        return self._mutate(lambda table: table.pop(topic, None) is not None)

    def _add_if_missing(self, config: TopicConfig) -> TopicConfig:
        def change(table: dict[str, TopicConfig]) -> bool:
            if config.topic_name in table:
                return False
            table[config.topic_name] = config
            return True

        self._mutate(change)
        return self._table[config.topic_name]

    def _mutate(self, change: Callable[[dict[str, TopicConfig]], bool]) -> bool:
        with self._file.locked():
            if self._file.signature() != self._signature:
                self._reload()
            changed = self._mutate_locked(change)
        if changed:
            for callback in self.on_change:
                callback()
        return changed

    def _mutate_locked(self, change: Callable[[dict[str, TopicConfig]], bool]) -> bool:
        table = dict(self._table)
        if not change(table):
            return False
        self._table = table
        self._version = DataVersion(int(self._clock() * 1000), self._version.counter + 1)
        data = encode_json(TopicConfigSerializeWrapper(table, self._version).to_json())
        self._signature = self._file.write(data)
        return True

    def _system_topics(self, table: dict[str, TopicConfig]) -> bool:
        wanted = dict(_SYSTEM_TOPICS)
        changed = False
        if self.auto_create:
            wanted[AUTO_CREATE_TOPIC] = (self.default_queues, PERM_INHERIT | PERM_RW)
        elif table.pop(AUTO_CREATE_TOPIC, None) is not None:
            changed = True
        for name, (queues, perm) in wanted.items():
            if name not in table:
                table[name] = TopicConfig(name, queues, queues, perm)
                changed = True
        return changed

    def _reload(self) -> None:
        data, signature = self._file.read()
        self._signature = signature
        if data is None:
            return
        try:
            wrapper = TopicConfigSerializeWrapper.from_json(data, "topics.json")
        except BodyFormatError as err:
            log.error("%s does not hold a topic table (%s); keeping what we had",
                      self._file.path, err)
            return
        self._table = dict(wrapper.topic_config_table)
        self._version = wrapper.data_version
