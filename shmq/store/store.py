"""MessageStore: the commit log, its consume queues, the index and the checkpoint of one store
directory, as one process sees them.

Theory of operation. Exactly one process *recovers* a store directory (`recover()`, in
recovery.py) before anything else opens it; then any number of writer processes open it with a
distinct writer slot, and readers open it read-only. A writer appends batches for the queues it
owns (`put`): commit log first, then the consume-queue entries, then it releases its claim, so
"committed" (see claims.py) always means "published and dispatched". Durability is the
flusher's job (`flush`), run periodically in ASYNC mode by whoever the runtime chooses, or per
batch by the writer itself in SYNC mode (`put(..., sync=True)` group-commits: one msync covers
the whole batch and every byte before it). The index is built behind the writers by
`build_index`, never on the append path.

Layout under the store root::

    commitlog/<20-digit offset>          segments
    consumequeue/<topic>/<queue>/<...>   consume queues
    index/<yyyyMMddHHmmssSSS>            key index
    checkpoint  claims                   see layout.py
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Self

import numpy as np

from shmq.errors import ConfigError, StoreError
from shmq.message.encoder import EncodedBatch, encode_batch
from shmq.message.taghash import tag_hash
from shmq.store.checkpoint import Checkpoint, CheckpointFile
from shmq.store.claims import ClaimTable
from shmq.store.commitlog import AppendResult, CommitLog
from shmq.store.config import FlushMode, StoreConfig
from shmq.store.consumequeue import ConsumeQueue, list_queues
from shmq.store.errors import DispatchFailed
from shmq.store.index import IndexService
from shmq.store.scan import IndexScan, scan_for_index

__all__ = ["MessageStore", "store_paths"]


class StorePaths:
    """Where each part of a store lives."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commitlog = root / "commitlog"
        self.consumequeue = root / "consumequeue"
        self.index = root / "index"
        self.checkpoint = root / "checkpoint"
        self.claims = root / "claims"
        self.layout = root / "layout.json"


def store_paths(root: Path) -> StorePaths:
    return StorePaths(root)


#: Settings fixed when a store is created; a store cannot be reopened with other values.
_LAYOUT_KEYS = ("segment_bytes", "cq_entries_per_file")


def read_layout(root: Path) -> dict[str, int] | None:
    """The layout settings recorded in ``store/layout.json``, or None for a new store."""
    path = StorePaths(root).layout
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return {k: int(data[k]) for k in _LAYOUT_KEYS}


def config_for(root: Path, config: StoreConfig) -> StoreConfig:
    """`config` with the layout settings of the existing store under `root` (if any)."""
    layout = read_layout(root)
    if not layout:
        return config
    return replace(config, segment_bytes=layout["segment_bytes"],
                   cq_entries_per_file=layout["cq_entries_per_file"])


def check_layout(root: Path, config: StoreConfig) -> None:
    """Record the layout of a new store; refuse to open an existing one with another layout.

    Raises:
        ConfigError: `config` disagrees with the store's recorded layout; nothing changed.
    """
    layout = read_layout(root)
    wanted = {k: getattr(config, k) for k in _LAYOUT_KEYS}
    if layout is None:
        path = StorePaths(root).layout
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(wanted))
        os.replace(tmp, path)
        return
    for key, value in layout.items():
        if wanted[key] != value:
            raise ConfigError(
                f"store.{key}={wanted[key]} does not match the store in {root}, created with "
                f"{value}; use {value} (the layout of an existing store cannot change)"
            )


class MessageStore:
    """One process's handle on a store directory.

    Args:
        root: the store directory (``data_dir/store``).
        config: storage settings.
        writer_slot: this process's claim slot when it appends; None for a read-only handle.
    """

    def __init__(self, root: Path, config: StoreConfig, *, writer_slot: int | None = None) -> None:
        self.paths = StorePaths(root)
        self.config = config
        self.writable = writer_slot is not None
        self.claims: ClaimTable | None = None
        if writer_slot is not None:
            root.mkdir(parents=True, exist_ok=True)
            self.claims = ClaimTable(
                self.paths.claims, slot=writer_slot, slot_count=config.writer_slots
            )
            if not self.claims.is_initialised():
                self.claims.initialise(0)
        self.commitlog = CommitLog(self.paths.commitlog, config, claims=self.claims)
        self._queues: dict[tuple[str, int], ConsumeQueue] = {}
        self._topics: dict[str, bytes] = {}
        self._index: IndexService | None = None
        self._checkpoint: CheckpointFile | None = None
        self._synced_to = 0

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        for cq in self._queues.values():
            cq.close()
        self._queues.clear()
        if self._index is not None:
            self._index.close()
        if self._checkpoint is not None:
            self._checkpoint.close()
        self.commitlog.close()
        if self.claims is not None:
            self.claims.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- parts --------------------------------------------------------------------------------
    def queue(self, topic: str, queue_id: int) -> ConsumeQueue:
        """The consume queue of (topic, queue_id), opened on first use."""
        key = (topic, queue_id)
        cq = self._queues.get(key)
        if cq is None:
            cq = self._queues[key] = ConsumeQueue.open(
                self.paths.consumequeue, topic, queue_id,
                entries_per_file=self.config.cq_entries_per_file, writable=self.writable,
            )
        return cq

    def queues_on_disk(self) -> list[tuple[str, int]]:
        return list_queues(self.paths.consumequeue)

    @property
    def index(self) -> IndexService:
        if self._index is None:
            self._index = IndexService(
                self.paths.index, slots=self.config.index_slots,
                max_entries=self.config.index_max_entries,
            )
        return self._index

    @property
    def checkpoint(self) -> CheckpointFile:
        if self._checkpoint is None:
            self._checkpoint = CheckpointFile(self.paths.checkpoint)
        return self._checkpoint

    # --- writing ------------------------------------------------------------------------------
    def put(
        self,
        topic: str,
        queue_id: int,
        bodies: Sequence[bytes],
        properties: Sequence[bytes],
        *,
        tags: str | None = None,
        tag_hashes: np.ndarray | None = None,
        flag: int = 0,
        sysflag: int = 0,
        born_timestamp_ms: int = 0,
        born_host: bytes = b"\x7f\x00\x00\x01\x00\x00\x00\x00",
        reconsume_times: int = 0,
        prepared_tx_offset: int = 0,
        sync: bool | None = None,
    ) -> AppendResult:
        """Append a batch of messages to one queue; return where they landed.

        The batch is visible to consumers when this returns. With SYNC flush (or ``sync=True``)
        it is also durable. Tag codes: `tag_hashes` per message, else the hash of `tags` for
        all of them.

        Raises:
            DiskFull, BatchTooLarge: nothing was written.
            DispatchFailed: published but not dispatched; the caller must stop writing
                (see the class).
            StoreError / OSError: nothing is acknowledged; recovery repairs what was written.
        """
        topic_b = self._topics.get(topic)
        if topic_b is None:
            topic_b = self._topics[topic] = topic.encode()
        batch = encode_batch(
            topic_b, queue_id, bodies, properties, flag=flag, sysflag=sysflag,
            born_timestamp_ms=born_timestamp_ms or int(time.time() * 1000),
            born_host=born_host, store_host=self.commitlog.store_host,
            reconsume_times=reconsume_times, prepared_tx_offset=prepared_tx_offset,
        )
        if tag_hashes is None:
            tag_hashes = np.full(batch.count, tag_hash(tags), dtype=np.int64)
        return self.put_encoded(topic, queue_id, batch, tag_hashes, sync=sync)

    def put_encoded(
        self,
        topic: str,
        queue_id: int,
        batch: EncodedBatch,
        tag_hashes: np.ndarray,
        *,
        sync: bool | None = None,
    ) -> AppendResult:
        """Append a batch encoded elsewhere (`message.encoder`) to one queue; see `put`.

        The records' topic and queue id must be `topic` and `queue_id` (the encoder wrote
        them); the caller checks that with `message.encoder.check_batch` when it did not
        encode the batch itself.
        """
        cq = self.queue(topic, queue_id)
        result = self.commitlog.append_encoded(batch, cq.max_offset)
        try:
            cq.append(result.queue_offset, result.offsets, result.sizes, tag_hashes)
        except (StoreError, OSError) as err:
            raise DispatchFailed(
                f"{result.count} records of {topic}/{queue_id} at commit-log offset "
                f"{int(result.offsets[0])} are published but not in the consume queue: {err}"
            ) from err
        self.commitlog.release()
        if sync if sync is not None else self.config.flush is FlushMode.SYNC:
            self.sync_to(int(result.offsets[0]), result.end)
        return result

    def sync_to(self, batch_start: int, end: int) -> None:
        """Make commit-log bytes up to `end` durable (group commit for SYNC flush).

        Syncs from the lowest of this process's synced position and the batch start, so every
        header before the batch (other writers' claims included) reaches the disk with it.
        """
        start = min(self._synced_to, int(batch_start))
        self.commitlog.flush_range(start, end)
        self._synced_to = max(self._synced_to, end)

    # --- flushing and indexing ----------------------------------------------------------------
    def flush(self) -> Checkpoint:
        """Make everything committed durable and advance the checkpoint; return it.

        Safe to call from any process that opened the store writable. Cost: msync of the
        commit-log range since the last checkpoint and fdatasync of every consume-queue file.
        """
        assert self.claims is not None
        cp = self.checkpoint.read()
        committed = self.claims.committed()
        if committed <= cp.flushed_offset:
            return cp
        self.commitlog.flush_range(cp.flushed_offset, committed)
        _fsync_tree(self.paths.consumequeue)
        new = Checkpoint(committed, cp.indexed_offset, int(time.time() * 1000), cp.index_timestamp_ms)
        self.checkpoint.write(new)
        return new

    def build_index(self, max_records: int = 100_000) -> int:
        """Index the KEYS and UNIQ_KEY of committed records past the checkpoint's indexed offset.

        Returns the number of records examined. Durable with the next `flush_index`.
        """
        assert self.claims is not None
        cp = self.checkpoint.read()
        end = self.claims.committed()
        found = IndexScan([], [], [])
        pos = cp.indexed_offset
        segments = self.commitlog.segments
        while pos < end and found.records < max_records and not found.stopped:
            seg = segments.for_offset(pos)
            scan_for_index(seg.mm, seg.start, seg.size, pos, end, max_records, found)
            if found.end == pos:  # nothing there (end of the data): done
                break
            pos = found.end
        if found.keys:
            self.index.put_many(found.keys, found.offsets, found.stamps)
        if pos != cp.indexed_offset:
            last_ts = found.last_store_timestamp_ms
            self.index.flush()
            cp = self.checkpoint.read()
            self.checkpoint.write(Checkpoint(
                cp.flushed_offset, pos, cp.physic_timestamp_ms,
                cp.index_timestamp_ms if last_ts is None else last_ts))
        return found.records

    # --- reading ------------------------------------------------------------------------------
    def views(self, offsets: np.ndarray, sizes: np.ndarray) -> list[memoryview]:
        """Zero-copy views of the records at `offsets` (ascending, as a consume-queue selection
        gives them), e.g. the buffers of a pull response."""
        if not len(offsets):
            return []
        segs = self.commitlog.segments
        first = int(offsets[0])
        seg = segs.for_offset(first)
        if int(offsets[-1]) < seg.end:  # the usual case: one segment
            base, view = seg.start, seg.view
            return [view[o - base : o - base + s]
                    for o, s in zip(offsets.tolist(), sizes.tolist())]
        return [self.commitlog.view(o, s) for o, s in zip(offsets.tolist(), sizes.tolist())]

    def message(self, offset: int) -> memoryview:
        """The stored bytes of the record at `offset` (zero-copy)."""
        size, _magic = self.commitlog.header(offset)
        return self.commitlog.view(offset, size)


def _fsync_tree(root: Path) -> None:
    """fdatasync every regular file under `root` (consume queues are small files)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
