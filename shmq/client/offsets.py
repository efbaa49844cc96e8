"""Consumer offset stores: at the broker for clustering consumers, in a local JSON file for
broadcasting ones (spec/behaviours.md §5, §12).

Theory of operation: an offset is "the next message to consume" of one queue. Both stores keep
the offsets of the queues a consumer owns in memory (`update`, `read_memory`), read the
persisted value when a queue is first owned (`read_store`), and write them out periodically and
when a queue is given up (`persist`):

* `RemoteOffsetStore` persists with UPDATE_CONSUMER_OFFSET to the queue's broker (oneway, like
  every reference client) and reads with QUERY_CONSUMER_OFFSET; pulls also piggy-back the
  in-memory offset (COMMIT_OFFSET), so the broker is rarely more than one pull behind.
* `LocalOffsetStore` keeps every queue's offset in one file
  (`<dir>/<group>/offsets.json`), rewritten whole through a temporary file and `os.replace`,
  so a crash leaves either the old or the new table. Broadcasting consumers never tell the
  broker their offsets.

`update(..., increase_only=True)` never moves an offset back (concurrent consumers finish out
of order); a negative offset is never stored.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Protocol

from shmq.errors import ClientError
from shmq.protocol import ConsumeFromWhere, MessageQueue

from .consumer_api import ConsumerApi
from .received import RETRY_GROUP_TOPIC_PREFIX

__all__ = [
    "DEFAULT_OFFSET_DIR",
    "LocalOffsetStore",
    "OffsetStore",
    "RemoteOffsetStore",
    "start_offset",
]

log = logging.getLogger(__name__)

#: default directory of broadcasting consumers' offset files (Java: ~/.rocketmq_offsets)
DEFAULT_OFFSET_DIR: Final = Path.home() / ".shmq_offsets"
_LAST_OFFSET_POLICIES: Final = frozenset({
    ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
    ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST,
    ConsumeFromWhere.CONSUME_FROM_MAX_OFFSET})


class OffsetStore(Protocol):
    """Offsets of the queues a consumer owns."""

    def update(self, mq: MessageQueue, offset: int, *, increase_only: bool = False) -> None:
        """Set the in-memory offset of `mq` (negative values are ignored)."""

    def read_memory(self, mq: MessageQueue) -> int | None:
        """The in-memory offset of `mq`, if any."""

    async def read_store(self, mq: MessageQueue) -> int | None:
        """The persisted offset of `mq` (None: none); it also becomes the in-memory one."""

    async def persist(self, mqs: Iterable[MessageQueue], *, wait: bool = False) -> None:
        """Write out the in-memory offsets of `mqs` (`wait`: confirmed by the broker)."""

    def remove(self, mq: MessageQueue) -> None:
        """Forget `mq`'s in-memory offset."""


class _MemoryTable:
    def __init__(self) -> None:
        self.table: dict[MessageQueue, int] = {}

    def update(self, mq: MessageQueue, offset: int, *, increase_only: bool = False) -> None:
        if offset < 0:
            return
        old = self.table.get(mq)
        if old is None or not increase_only or offset > old:
            self.table[mq] = offset

    def read_memory(self, mq: MessageQueue) -> int | None:
        return self.table.get(mq)

    def remove(self, mq: MessageQueue) -> None:
        self.table.pop(mq, None)


class RemoteOffsetStore(_MemoryTable):
    """Clustering offsets, kept by the brokers."""

    def __init__(self, api: ConsumerApi) -> None:
        super().__init__()
        self._api = api
        self._persisted: dict[MessageQueue, int] = {}

    async def read_store(self, mq: MessageQueue) -> int | None:
        """QUERY_CONSUMER_OFFSET; None when the broker has no offset for the group.

        Raises:
            BrokerUnreachable, RequestTimeout, ConnectionLost, NoRouteInfo: unknown.
        """
        offset = await self._api.query_offset(mq)
        if offset is not None and offset >= 0:
            self.table[mq] = offset
            self._persisted[mq] = offset
            return offset
        return None

    async def persist(self, mqs: Iterable[MessageQueue], *, wait: bool = False) -> None:
        """UPDATE_CONSUMER_OFFSET for each of `mqs` whose offset changed since the last one
        (failures are logged; with `wait`, the first failure is raised)."""
        for mq in mqs:
            offset = self.table.get(mq)
            if offset is None or (self._persisted.get(mq) == offset and not wait):
                continue
            try:
                await self._api.update_offset(mq, offset, oneway=not wait)
            except ClientError as err:
                if wait:
                    raise
                log.warning("group %s: offset %d of %s not persisted: %s", self._api.group,
                            offset, mq, err)
                continue
            self._persisted[mq] = offset

    def remove(self, mq: MessageQueue) -> None:
        super().remove(mq)
        self._persisted.pop(mq, None)


class LocalOffsetStore(_MemoryTable):
    """Broadcasting offsets, in `<directory>/<group>/offsets.json`."""

    def __init__(self, group: str, directory: Path | None = None) -> None:
        super().__init__()
        self.path = (directory or DEFAULT_OFFSET_DIR) / group / "offsets.json"
        self._file: dict[MessageQueue, int] = self._load()

    def _load(self) -> dict[MessageQueue, int]:
        try:
            data = json.loads(self.path.read_text())
            return {MessageQueue(e["topic"], e["brokerName"], int(e["queueId"])): int(e["offset"])
                    for e in data["offsetTable"]}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("offset file %s is unreadable (%s); starting without offsets",
                        self.path, err)
            return {}

    async def read_store(self, mq: MessageQueue) -> int | None:
        """The offset in the file (read at start)."""
        offset = self._file.get(mq)
        if offset is not None:
            self.table[mq] = offset
        return offset

    async def persist(self, mqs: Iterable[MessageQueue], *, wait: bool = False) -> None:
        """Rewrite the file with the offsets of `mqs` merged into what it holds.

        Raises:
            OSError: only with `wait` (otherwise logged); the old file is intact.
        """
        changed = {mq: self.table[mq] for mq in mqs if mq in self.table}
        if all(self._file.get(mq) == offset for mq, offset in changed.items()):
            return
        merged = {**self._file, **changed}
        try:
            self._write(merged)
        except OSError as err:
            if wait:
                raise
            log.warning("offset file %s not written: %s", self.path, err)
            return
        self._file = merged

    def _write(self, table: dict[MessageQueue, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries = [{"brokerName": mq.broker_name, "offset": offset, "queueId": mq.queue_id,
                    "topic": mq.topic}
                   for mq, offset in sorted(table.items(), key=lambda kv: (
                       kv[0].topic, kv[0].broker_name, kv[0].queue_id))]
        fd, tmp = tempfile.mkstemp(prefix=".offsets.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"offsetTable": entries}, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


async def start_offset(api: ConsumerApi, offsets: OffsetStore, mq: MessageQueue,
                       policy: ConsumeFromWhere, timestamp_ms: int | None = None) -> int:
    """Where to start reading `mq`: the stored offset, else the policy's (Java
    `RebalancePushImpl.computePullFromWhereWithException`).

    Raises:
        BrokerUnreachable, RequestTimeout, ConnectionLost, NoRouteInfo, BrokerError: unknown
            now (the caller tries again later; Java skips the queue this rebalance).
    """
    stored = await offsets.read_store(mq)
    if stored is not None:
        return stored
    if policy in _LAST_OFFSET_POLICIES:
        if mq.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            return 0
        return await api.max_offset(mq)
    if policy == ConsumeFromWhere.CONSUME_FROM_TIMESTAMP:
        when = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000) - 1_800_000
        return await api.search_offset(mq, when)
    return 0
