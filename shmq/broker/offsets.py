"""Consumer offsets: ``config/consumerOffset.json`` (spec/behaviours.md §5).

Theory of operation: `ConsumerOffsets` keeps ``"<topic>@<group>" -> {queue_id: offset}``, the
next offset each clustering group will consume. Commits (UPDATE_CONSUMER_OFFSET, the pull's
COMMIT_OFFSET flag) change memory only and mark the entry dirty; negative commits are ignored
(ali-ons sends -1 for queues it has nothing for). `flush()`, run every
`FLUSH_INTERVAL_S` and at shutdown, merges under the file's lock: entries another acceptor
wrote since our last look are taken from the file unless we changed them ourselves since, and
the merged table is written atomically (jsonfile). So several acceptors share one file, each
commit surviving a restart after at most one flush interval, as in Java (5 s).

The file is Java's shape, ``{"offsetTable":{"T@g":{"0":12}}}`` (quoted queue ids; the reader
also takes fastjson's unquoted ones).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from shmq.protocol.body_json import encode_json

from .jsonfile import JsonFile, Signature

__all__ = ["FLUSH_INTERVAL_S", "ConsumerOffsets"]

log = logging.getLogger(__name__)

#: how often offsets are persisted (flushConsumerOffsetInterval)
FLUSH_INTERVAL_S: Final = 5.0

_Key = tuple[str, str, int]  # topic, group, queue id


class ConsumerOffsets:
    """Committed consumer offsets; see the module docstring."""

    def __init__(self, config_dir: Path) -> None:
        self._file = JsonFile(config_dir / "consumerOffset.json")
        self._table: dict[_Key, int] = {}
        self._dirty: set[_Key] = set()
        self._signature: Signature | None = None
        self._load()

    def query(self, group: str, topic: str, queue_id: int) -> int | None:
        """The committed offset, or None when the group never committed one for the queue."""
        return self._table.get((topic, group, queue_id))

    def commit(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        """Remember `offset` as the group's next offset of the queue (negative: ignored)."""
        if offset < 0:
            return
        key = (topic, group, queue_id)
        if self._table.get(key) != offset:
            self._table[key] = offset
            self._dirty.add(key)

    def remove_topic(self, topic: str) -> None:
        """Forget every group's offsets of `topic` (the topic was deleted)."""
        for key in [k for k in self._table if k[0] == topic]:
            del self._table[key]
            self._dirty.add(key)

    def groups_of(self, topic: str) -> set[str]:
        """Groups with an offset on `topic`."""
        return {group for (t, group, _q) in self._table if t == topic}

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def flush(self) -> None:
        """Merge with the file and persist (see the module docstring); cheap when nothing
        changed here or there.

        Raises:
            OSError: the file could not be written; the commits stay dirty for the next try.
        """
        if not self._dirty and self._file.signature() == self._signature:
            return
        with self._file.locked():
            if self._file.signature() != self._signature:
                self._merge(self._read_file())
            if self._dirty:
                self._signature = self._file.write(self._encode())
                self._dirty.clear()

    def _load(self) -> None:
        self._table = self._read_file()

    def _merge(self, on_disk: dict[_Key, int]) -> None:
        merged = {key: value for key, value in on_disk.items() if key not in self._dirty}
        for key in self._dirty:
            if key in self._table:
                merged[key] = self._table[key]
        self._table = merged

    def _read_file(self) -> dict[_Key, int]:
        data, self._signature = self._file.read()
        table: dict[_Key, int] = {}
        offsets = data.get("offsetTable") if isinstance(data, dict) else None
        if not isinstance(offsets, dict):
            if data is not None:
                log.error("%s has no offsetTable; starting without offsets", self._file.path)
            return table
        for name, queues in offsets.items():
            topic, sep, group = str(name).rpartition("@")
            if not sep or not isinstance(queues, dict):
                continue
            for queue_id, offset in queues.items():
                try:
                    table[(topic, group, int(queue_id))] = int(offset)
                except (TypeError, ValueError):
                    log.warning("%s: ignoring offset %r of %s queue %r", self._file.path,
                                offset, name, queue_id)
        return table

    def _encode(self) -> bytes:
        out: dict[str, dict[str, int]] = {}
        for (topic, group, queue_id), offset in sorted(self._table.items()):
            out.setdefault(f"{topic}@{group}", {})[str(queue_id)] = offset
        return encode_json({"offsetTable": out})
