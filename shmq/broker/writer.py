"""The writer process: drains its producers' rings into the store.

Theory of operation (architecture.md §1). Writer w owns the queues q of topic t with
``protocol.local.queue_owner(hash(t), q, W) == w``, so every consume queue has one writer and
per-queue order is simply append order. Each same-host producer has one request ring and one
completion ring with every writer (ipc.registry). The loop:

1. Every few milliseconds, or when the registry's version changed, attach the rings of new
   producers and drop those of producers that left or died.
2. Take what is waiting in every request ring (`read_batch`), group the append requests by
   queue, keeping their order, and append each group as ONE batch: one claim, one copy, one
   consume-queue write, one flush when a request asked for SYNC. That amortises the per-batch
   costs over many small sends.
3. Answer every request on its producer's completion ring, in order.
4. With nothing to do, spin briefly, then park on the doorbell (ipc.wakeup); producers post it
   only when the writer is parked.

A request is checked before anything is written: the queue must be ours, the records well
formed (`message.encoder.check_batch`), the body within limits. A rejected request does not
stop its neighbours. A store error (disk full) fails the requests of that batch only. Nothing is
acknowledged before it is published, dispatched to the consume queue and, for SYNC, flushed.
On stop the writer drains what producers already published, then closes its ring ends.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shmq.errors import ProtocolError, ShmqError, StoreError
from shmq.ipc.errors import PeerGone, RingClosed
from shmq.ipc.registry import BrokerShm, WriterStatsRow, doorbell_name, ring_name
from shmq.ipc.ring import Ring, RingConsumer, RingProducer
from shmq.ipc.wakeup import DEFAULT_POLICY, Sleeper, WaitPolicy, is_process_alive, open_semaphore
from shmq.message.encoder import EncodedBatch, check_batch
from shmq.message.errors import MessageError
from shmq.message.layout import BORNHOST_V6_FLAG, STOREHOSTADDRESS_V6_FLAG, SYSFLAG_OFFSET
from shmq.message.taghash import java_string_hash
from shmq.protocol.local import (
    FLAG_SYNC,
    KIND_APPEND,
    KIND_DONE,
    AppendRequest,
    Completion,
    Status,
    decode_append,
    encode_completion,
    queue_owner,
)
from shmq.store.errors import DispatchFailed
from shmq.store.store import MessageStore

__all__ = ["Writer"]

log = logging.getLogger(__name__)

_READ_BATCH = 512
_REFRESH_S = 0.05
_COMPLETION_TIMEOUT_S = 5.0


@dataclass
class _Link:
    """One producer's pair of rings with this writer."""

    row: int
    generation: int
    pid: int
    requests: RingConsumer
    completions: RingProducer
    rings: tuple[Ring, Ring]
    pending: list[bytes] = field(default_factory=list)

    def close(self) -> None:
        for end in (self.requests, self.completions):
            end.close()
        for ring in self.rings:
            ring.detach()


@dataclass
class _Group:
    """Append requests for one queue, in arrival order."""

    topic: str
    queue_id: int
    #: SYSFLAG of the first request's first record (the host flags are the group's)
    sysflag: int
    requests: list[tuple[_Link, AppendRequest]] = field(default_factory=list)


class Writer:
    """One writer process's loop. `run(should_stop, heartbeat)` until told to stop."""

    def __init__(self, instance: str, index: int, store: MessageStore, *,
                 policy: WaitPolicy = DEFAULT_POLICY, max_body_bytes: int = 4 << 20) -> None:
        self.instance, self.index, self.store = instance, index, store
        self.shm = BrokerShm.attach(instance)
        self.writers = self.shm.writers
        self.policy = policy
        self.max_body_bytes = max_body_bytes
        self._links: dict[int, _Link] = {}
        #: (row, generation) of producers whose rings were closed when we came to attach
        self._refused: set[tuple[int, int]] = set()
        self._seen_version = -1
        self._refreshed = 0.0
        self._owner_cache: dict[tuple[str, int], bool] = {}
        sem = open_semaphore(instance, doorbell_name(index))
        states = memoryview(self.shm.doorbells.array).cast("B").cast("q")  # type: ignore[arg-type]
        self._sleeper = Sleeper(sem, states, index, policy)
        self._stats = WriterStatsRow(self.shm.stats.array, index)
        self._stats["pid"] = os.getpid()

    # --- producers ----------------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """Attach new producers' rings; drop those of producers that left or died."""
        now = time.monotonic()
        version = int(self.shm.version.array[0])
        if not force and version == self._seen_version and now - self._refreshed < 1.0:
            return
        self._seen_version, self._refreshed = version, now
        rows = self.shm.registry.array
        for row, link in list(self._links.items()):
            current = rows[row]
            gone = int(current["pid"]) != link.pid or int(current["generation"]) != link.generation
            if gone or not is_process_alive(link.pid):
                self._drop(row)
        for row in range(len(rows)):
            pid, gen = int(rows[row]["pid"]), int(rows[row]["generation"])
            if (pid and row not in self._links and (row, gen) not in self._refused
                    and is_process_alive(pid)):
                self._attach(row, gen, pid)
        self._stats["producers"] = len(self._links)

    def _attach(self, row: int, generation: int, pid: int) -> None:
        try:
            req = Ring.attach(self.instance, ring_name(row, generation, self.index, "req"))
            cmp = Ring.attach(self.instance, ring_name(row, generation, self.index, "cmp"))
        except ShmqError as err:  # the producer is still creating its rings, or just left
            log.debug("writer-%d: cannot attach producer row %d yet: %s", self.index, row, err)
            self._seen_version = -1
            return
        try:
            ends = req.consumer(self.policy), cmp.producer(self.policy)
        except ShmqError as err:
            # The producer closed its rings (it is leaving; its row goes soon) or another
            # process holds a role: nothing to serve. A writer must not die of it.
            log.info("writer-%d: not attaching producer pid %d (row %d): %s", self.index, pid,
                     row, err)
            self._refused.add((row, generation))
            req.detach()
            cmp.detach()
            return
        link = _Link(row, generation, pid, ends[0], ends[1], (req, cmp))
        self._links[row] = link
        log.info("writer-%d: attached producer pid %d (row %d)", self.index, pid, row)

    def _drop(self, row: int) -> None:
        link = self._links.pop(row)
        link.close()
        log.info("writer-%d: detached producer pid %d (row %d)", self.index, link.pid, row)

    def close(self) -> None:
        for row in list(self._links):
            self._drop(row)
        self.shm.detach()

    # --- the loop -----------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool], heartbeat: Callable[[], None]) -> None:
        """Serve until `should_stop()`; then drain what is already in the rings and return."""
        last_beat = 0.0
        while not should_stop():
            self.refresh()
            if not self.poll_once():
                self._sleeper.wait(self._has_work, timeout_s=_REFRESH_S)
            now = time.monotonic()
            if now - last_beat > 0.5:
                heartbeat()
                last_beat = now
        self.refresh(force=True)
        while self.poll_once():
            pass

    def _has_work(self) -> bool:
        if int(self.shm.version.array[0]) != self._seen_version:
            return True
        return any(link.requests.is_readable() for link in self._links.values())

    def poll_once(self) -> int:
        """Serve every request waiting now; return how many there were."""
        groups: dict[tuple[str, int, int], _Group] = {}
        served = 0
        for row, link in list(self._links.items()):
            try:
                records = link.requests.read_batch(_READ_BATCH)
            except (RingClosed, PeerGone):
                self._drop(row)
                continue
            for kind, payload in records:
                served += 1
                self._accept(link, kind, payload, groups)
        for group in groups.values():
            self._append_group(group)
        for row, link in list(self._links.items()):
            if link.pending:
                self._send_completions(row, link)
        return served

    def _accept(self, link: _Link, kind: int, payload: bytes,
                groups: dict[tuple[str, int, int], _Group]) -> None:
        """Check one request; queue it for its group or answer it with a rejection."""
        if kind != KIND_APPEND:
            self._reject(link, 0, Status.REJECTED, f"unknown request kind {kind}")
            return
        try:
            req = decode_append(payload)
            check_batch(req.records, req.sizes)
        except (ProtocolError, MessageError) as err:
            rid = int.from_bytes(payload[:8], "little") if len(payload) >= 8 else 0
            self._reject(link, rid, Status.REJECTED, str(err))
            return
        key = (req.topic, req.queue_id)
        if not self._owns(key):
            self._reject(link, req.request_id, Status.NOT_OWNER,
                         f"queue {req.topic}/{req.queue_id} belongs to another writer")
            return
        # One appended batch has one host layout (IPv4/IPv6 born host): it decides where
        # STORETIMESTAMP is patched. A producer's own requests always share it, so their order
        # in the queue is kept.
        sysflag = _sysflag(req.records)
        hosts = sysflag & (BORNHOST_V6_FLAG | STOREHOSTADDRESS_V6_FLAG)
        group = groups.get((*key, hosts))
        if group is None:
            group = groups[(*key, hosts)] = _Group(req.topic, req.queue_id, sysflag)
        group.requests.append((link, req))

    def _owns(self, key: tuple[str, int]) -> bool:
        owned = self._owner_cache.get(key)
        if owned is None:
            owner = queue_owner(java_string_hash(key[0]), key[1], self.writers)
            owned = self._owner_cache[key] = owner == self.index
        return owned

    def _append_group(self, group: _Group) -> None:
        reqs = [req for _, req in group.requests]
        sizes = np.concatenate([r.sizes for r in reqs]) if len(reqs) > 1 else reqs[0].sizes
        tags = np.concatenate([r.tag_hashes for r in reqs]) if len(reqs) > 1 else reqs[0].tag_hashes
        data = b"".join(r.records for r in reqs) if len(reqs) > 1 else reqs[0].records
        sync = any(r.flags & FLAG_SYNC for r in reqs) or None
        try:
            batch = EncodedBatch(data, sizes.astype(np.int64, copy=False), group.sysflag)
            result = self.store.put_encoded(group.topic, group.queue_id, batch, tags, sync=sync)
        except DispatchFailed as err:
            # Published, not dispatched: answer the senders, then stop; the supervisor settles
            # the claim (writes the missing entries) before restarting this writer.
            log.error("writer-%d: %s; stopping", self.index, err)
            for link, req in group.requests:
                self._reject(link, req.request_id, Status.STORE_ERROR, str(err))
            for row, link in list(self._links.items()):
                if link.pending:
                    self._send_completions(row, link)
            raise
        except (StoreError, OSError) as err:
            self._stats["errors"] += len(reqs)
            log.warning("writer-%d: append to %s/%d failed: %s", self.index, group.topic,
                        group.queue_id, err)
            for link, req in group.requests:
                self._reject(link, req.request_id, Status.STORE_ERROR, str(err))
            return
        done = 0
        for link, req in group.requests:
            n = len(req.sizes)
            link.pending.append(encode_completion(Completion(
                req.request_id, Status.OK, n, int(result.offsets[done]),
                result.queue_offset + done, result.store_timestamp_ms)))
            done += n
        stats = self._stats
        stats.add_append(done, len(data), time.time_ns())

    def _reject(self, link: _Link, request_id: int, status: Status, message: str) -> None:
        self._stats["rejects"] += 1
        link.pending.append(encode_completion(Completion(request_id, status, 0, -1, -1, 0,
                                                         message)))

    def _send_completions(self, row: int, link: _Link) -> None:
        pending, link.pending = link.pending, []
        try:
            sent = link.completions.try_write_many(pending, KIND_DONE)
            for payload in pending[sent:]:
                link.completions.write(payload, KIND_DONE, timeout_s=_COMPLETION_TIMEOUT_S)
        except (RingClosed, PeerGone, TimeoutError) as err:
            log.info("writer-%d: producer pid %d stopped reading completions: %s",
                     self.index, link.pid, err)
            self._drop(row)


def _sysflag(data: bytes | memoryview) -> int:
    """SYSFLAG of the first record (the encoder gives a whole batch the same host flags)."""
    return int.from_bytes(bytes(data[SYSFLAG_OFFSET : SYSFLAG_OFFSET + 4]), "big", signed=True)
