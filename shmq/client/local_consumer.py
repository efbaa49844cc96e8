"""LocalConsumer: read a queue straight from the store's mappings (zero-copy), same host only.

It opens the broker's consume queues and commit-log segments read-only and hands out message
bodies as memoryviews of the mapping. Tag filtering is the consume queue's vectorised select.
It keeps no offsets: the caller says where to read from (a pull consumer's job).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Self

import numpy as np

from shmq.client.errors import BrokerNotRunning
from shmq.ipc.errors import SegmentMissing
from shmq.ipc.registry import read_info
from shmq.message.msgid import encode_offset_msg_id
from shmq.message.properties import decode_properties
from shmq.message.taghash import tag_hash
from shmq.store.consumequeue import ConsumeQueue
from shmq.store.errors import StoreCorrupt
from shmq.store.scan import RecordMeta, check_record
from shmq.store.segments import SegmentSet

__all__ = ["LocalConsumer", "LocalMessage", "PullResult", "parse_tag_expression"]


@dataclass(frozen=True)
class LocalMessage:
    """One stored message; `body` is a view of the commit log (copy it to keep it)."""

    topic: str
    queue_id: int
    queue_offset: int
    commit_log_offset: int
    store_timestamp_ms: int
    body: memoryview
    raw_properties: bytes
    offset_msg_id: str

    @cached_property
    def properties(self) -> dict[str, str]:
        return decode_properties(self.raw_properties)

    @property
    def tags(self) -> str | None:
        return self.properties.get("TAGS")

    @property
    def keys(self) -> list[str]:
        return [k for k in self.properties.get("KEYS", "").split(" ") if k]

    @property
    def msg_id(self) -> str:
        return self.properties.get("UNIQ_KEY", self.offset_msg_id)


@dataclass(frozen=True)
class PullResult:
    messages: list[LocalMessage]
    next_offset: int
    min_offset: int
    max_offset: int


def parse_tag_expression(expression: str | None) -> np.ndarray | None:
    """Tag codes of a RocketMQ tag expression ("A || B"); None for "*" or no expression."""
    if expression is None or expression.strip() in ("", "*"):
        return None
    tags = [t.strip() for t in expression.split("||") if t.strip()]
    return np.asarray([tag_hash(t) for t in tags], dtype=np.int64)


class LocalConsumer:
    """Reads queues of the broker `instance` on this host (or of the store at `store_dir`)."""

    def __init__(self, instance: str = "default", *, store_dir: Path | None = None) -> None:
        if store_dir is None:
            try:
                info = read_info(instance)
            except SegmentMissing as err:
                raise BrokerNotRunning(instance) from err
            store_dir = Path(info["store_dir"])
            seg_bytes, self._per_file = int(info["segment_bytes"]), int(info["cq_entries_per_file"])
            self._host = (str(info["store_host"]), int(info["store_port"]))
        else:
            from shmq.store.store import read_layout

            layout = read_layout(store_dir) or {}
            seg_bytes = layout.get("segment_bytes", 1 << 30)
            self._per_file = layout.get("cq_entries_per_file", 300_000)
            self._host = ("127.0.0.1", 10911)
        self.store_dir = store_dir
        self._segments = SegmentSet(store_dir / "commitlog", seg_bytes, writable=False)
        self._queues: dict[tuple[str, int], ConsumeQueue] = {}

    def close(self) -> None:
        for cq in self._queues.values():
            cq.close()
        self._queues.clear()
        self._segments.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _queue(self, topic: str, queue_id: int) -> ConsumeQueue | None:
        cq = self._queues.get((topic, queue_id))
        if cq is None:
            if not (self.store_dir / "consumequeue" / topic / str(queue_id)).is_dir():
                return None
            cq = self._queues[(topic, queue_id)] = ConsumeQueue.open(
                self.store_dir / "consumequeue", topic, queue_id,
                entries_per_file=self._per_file, writable=False)
        cq.refresh()
        return cq

    def offsets(self, topic: str, queue_id: int) -> tuple[int, int]:
        """(min, max) queue offsets; (0, 0) for a queue that has no message yet."""
        cq = self._queue(topic, queue_id)
        return (cq.min_offset, cq.max_offset) if cq else (0, 0)

    def pull(self, topic: str, queue_id: int, offset: int, *, max_messages: int = 32,
             tags: str | None = None) -> PullResult:
        """Messages of (topic, queue_id) from `offset` matching `tags` ("A || B", "*").

        `next_offset` is where the next pull continues (past entries the filter skipped).
        """
        cq = self._queue(topic, queue_id)
        if cq is None:
            return PullResult([], offset, 0, 0)
        lo, hi = cq.min_offset, cq.max_offset
        start = min(max(offset, lo), hi)
        if start >= hi:
            return PullResult([], start, lo, hi)
        sel = cq.select(start, max_messages, parse_tag_expression(tags))
        messages = [self._message(int(o), int(s), int(q)) for o, s, q in
                    zip(sel.offsets, sel.sizes, sel.queue_offsets)]
        return PullResult(messages, sel.next_offset, lo, hi)

    def _message(self, offset: int, size: int, queue_offset: int) -> LocalMessage:
        seg = self._segments.for_offset(offset)
        rel = offset - seg.start
        meta = check_record(seg.view, rel, offset, seg.size, check_crc=False)
        if not isinstance(meta, RecordMeta):
            raise StoreCorrupt(f"no valid record: {meta.reason}", offset)
        body = seg.view[meta.body_start : meta.body_start + meta.body_len]
        host, port = self._host
        return LocalMessage(meta.topic, meta.queue_id, queue_offset, offset,
                            meta.store_timestamp_ms, body, meta.properties,
                            encode_offset_msg_id(host, port, offset))
