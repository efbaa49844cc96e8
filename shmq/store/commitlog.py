"""The commit log: one append-only sequence of RocketMQ records shared by all writer processes.

Theory of operation (architecture.md §3). Appending a batch of records for one queue:

1. Compute every record's size (cheap: lengths only) and the batch size.
2. Under the claim table's lock: if the batch does not fit in the current segment with 8 bytes
   to spare, write an end-of-segment BLANK there and move to the next segment; write ONE header
   ``[batch size][PENDING_MAGIC]`` at the claim's start; record the claim; advance ``claimed``.
   A crashed writer therefore leaves a span that recovery can skip (it becomes a BLANK of the
   same size) and never a hole of zeros that would hide the records after it.
3. Without the lock: encode the records into the claimed space. The first record's first 8
   bytes are left as the PENDING header.
4. Publish: write the first record's TOTALSIZE, then its MAGICCODE (the last write). A reader
   that sees MESSAGE_MAGIC at the claim start sees the whole batch (x86-64 keeps store order;
   `_publish` is the one place that assumes it).

A BLANK record means "skip TOTALSIZE bytes": at the end of a segment that lands on the next
segment's first byte, exactly RocketMQ's end-of-file blank; mid-segment it is a recovered claim.
Only the owning writer of a queue appends its records, so per-queue order is append order.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from shmq.message import layout as rec
from shmq.message.encoder import (
    EncodedBatch,
    encode_batch,
    patch_batch,
    patch_one,
    record_starts,
)
from shmq.store.claims import ClaimTable
from shmq.store.config import StoreConfig
from shmq.store.errors import BatchTooLarge, DiskFull
from shmq.store.segments import Segment, SegmentSet

__all__ = ["AppendResult", "CommitLog", "pack_host"]

_SIZE_MAGIC: Final = rec.SIZE_MAGIC
_FREE_RECHECK_S: Final = 0.5


def pack_host(host: str, port: int) -> bytes:
    """BORNHOST/STOREHOST bytes: 4- or 16-byte address then i32 port (IPv4-mapped -> IPv4)."""
    import ipaddress

    addr = ipaddress.ip_address(host)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.packed + struct.pack(">i", port)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where a batch landed. `offsets[i]`/`sizes[i]` are record i's commit-log offset and size."""

    offsets: np.ndarray
    sizes: np.ndarray
    queue_offset: int
    store_timestamp_ms: int

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def end(self) -> int:
        return int(self.offsets[-1] + self.sizes[-1])


class CommitLog:
    """The shared commit log of one store directory, as seen by one process.

    A writer process opens it with its own `ClaimTable` slot; readers open it read-only.
    """

    def __init__(
        self,
        directory: Path,
        config: StoreConfig,
        *,
        claims: ClaimTable | None = None,
        writable: bool | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        if writable is None:
            writable = claims is not None
        self.segments = SegmentSet(directory, config.segment_bytes, writable=writable)
        self.claims = claims
        self.store_host = pack_host(config.store_host, config.store_port)
        self._free_checked_s = 0.0
        self._free_ok = False

    def close(self) -> None:
        self.segments.close()

    # --- reading ------------------------------------------------------------------------------
    def header(self, offset: int) -> tuple[int, int]:
        """(TOTALSIZE, MAGICCODE) of the record at `offset`."""
        seg = self.segments.for_offset(offset)
        size, magic = _SIZE_MAGIC.unpack_from(seg.mm, offset - seg.start)
        return int(size), int(magic)

    def view(self, offset: int, size: int) -> memoryview:
        """Zero-copy view of `size` bytes at `offset` (must not cross a segment end)."""
        seg = self.segments.for_offset(offset)
        rel = offset - seg.start
        return seg.view[rel : rel + size]

    def records(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(offset, size, magic) of every record/blank/pending span in [start, end).

        Stops early at bytes that are neither (zeros, garbage): the caller decides what that is.
        """
        seg_bytes = self.config.segment_bytes
        offset = start
        while offset < end:
            size, magic = self.header(offset)
            if size < rec.BLANK_MIN_BYTES or size > seg_bytes - offset % seg_bytes:
                return
            if magic not in (rec.MESSAGE_MAGIC, rec.BLANK_MAGIC, rec.PENDING_MAGIC):
                return
            yield offset, size, magic
            offset += size

    # --- appending ----------------------------------------------------------------------------
    def append(
        self,
        topic: bytes,
        queue_id: int,
        queue_offset: int,
        bodies: Sequence[bytes],
        properties: Sequence[bytes],
        *,
        flag: int = 0,
        sysflag: int = 0,
        born_timestamp_ms: int,
        born_host: bytes,
        reconsume_times: int = 0,
        prepared_tx_offset: int = 0,
    ) -> AppendResult:
        """Encode and append one batch for (`topic`, `queue_id`); see `append_encoded`.

        `topic` is the UTF-8 topic, `properties[i]` record i's encoded properties string,
        `born_host` a packed host (see `pack_host`). Limits (body size, topic and properties
        lengths) are the caller's to check; this method trusts them.
        """
        batch = encode_batch(
            topic, queue_id, bodies, properties, born_timestamp_ms=born_timestamp_ms,
            born_host=born_host, store_host=self.store_host, flag=flag, sysflag=sysflag,
            reconsume_times=reconsume_times, prepared_tx_offset=prepared_tx_offset,
        )
        return self.append_encoded(batch, queue_offset)

    def append_encoded(self, batch: EncodedBatch, queue_offset: int) -> AppendResult:
        """Append an encoded batch, record i at queue offset ``queue_offset + i``, and publish.

        Returns:
            Where each record landed; every record is published (visible to readers) but its
            consume-queue entry is the caller's to write, then `release()`.

        Raises:
            DiskFull: free space is below the floor; nothing was claimed.
            BatchTooLarge: the batch cannot fit in one segment; nothing was claimed.
            StoreError / OSError: the claim may be PENDING; recovery turns it into a blank.
                Nothing in the batch may be acknowledged.
        """
        claims = self.claims
        assert claims is not None, "read-only commit log"
        data = batch.data
        total = len(data)
        if total + rec.BLANK_MIN_BYTES > self.config.segment_bytes:
            raise BatchTooLarge(total, self.config.segment_bytes - rec.BLANK_MIN_BYTES)
        self._check_free_space(total)
        start, _ = claims.claim(lambda claimed: self._claim_span(claimed, total))
        seg = self.segments.get(self.segments.segment_start(start))
        rel = start - seg.start
        seg.prefault(rel + total + self.config.prefault_ahead_bytes)
        seg.mm[rel + 8 : rel + total] = memoryview(data)[8:]
        store_ts = time.time_ns() // 1_000_000
        offsets = record_starts(batch.sizes, start)
        if batch.count == 1:  # a single send: no arrays for the patch (~3 us of ~40 per append)
            patch_one(seg.mm, rel, queue_offset=queue_offset, phys_offset=start,
                      store_timestamp_ms=store_ts,
                      store_timestamp_offset=batch.store_timestamp_offset)
        else:
            patch_batch(
                seg.u8, offsets - seg.start,
                queue_offsets=np.arange(queue_offset, queue_offset + batch.count, dtype=np.int64),
                phys_offsets=offsets, store_timestamp_ms=store_ts,
                store_timestamp_offset=batch.store_timestamp_offset,
            )
        _publish(seg, rel, data[:8])
        return AppendResult(offsets, batch.sizes, queue_offset, store_ts)

    def release(self) -> None:
        """Mark this writer's last claim as finished (after its consume-queue entries)."""
        assert self.claims is not None
        self.claims.release()

    def _claim_span(self, claimed: int, total: int) -> tuple[int, int]:
        """Under the claim lock: place a batch of `total` bytes at or after `claimed`."""
        seg_bytes = self.config.segment_bytes
        start = claimed
        seg_start = start - start % seg_bytes
        left = seg_start + seg_bytes - start
        if total + rec.BLANK_MIN_BYTES > left:
            seg = self.segments.get(seg_start, create=True)
            _SIZE_MAGIC.pack_into(seg.mm, start - seg_start, left, rec.BLANK_MAGIC)
            start = seg_start + seg_bytes
            seg_start = start
        seg = self.segments.get(seg_start, create=True)
        _SIZE_MAGIC.pack_into(seg.mm, start - seg_start, total, rec.PENDING_MAGIC)
        return start, start + total

    def _check_free_space(self, total: int) -> None:
        now = time.monotonic()
        if self._free_ok and now - self._free_checked_s < _FREE_RECHECK_S:
            return
        st = os.statvfs(self.directory)
        free = st.f_bavail * st.f_frsize
        self._free_checked_s = now
        self._free_ok = free - total >= self.config.min_free_bytes
        if not self._free_ok:
            raise DiskFull(str(self.directory), free, self.config.min_free_bytes)

    # --- flushing -----------------------------------------------------------------------------
    def flush_range(self, start: int, end: int) -> None:
        """msync commit-log bytes [start, end) (may span segments)."""
        seg_bytes = self.config.segment_bytes
        pos = start
        while pos < end:
            seg = self.segments.get(pos - pos % seg_bytes)
            stop = min(end, seg.end)
            seg.flush(pos - seg.start, stop - seg.start)
            pos = stop


def _publish(seg: Segment, rel: int, header: bytes | memoryview) -> None:
    """Make a claimed batch visible: the first record's [TOTALSIZE][MAGIC] in one 8-byte copy.

    One store, so a killed writer leaves either the PENDING span (batch size, PENDING) or the
    published header, never the record's size beside PENDING (which recovery would read as
    a one-record span and keep the rest of a never-acknowledged batch). x86-64 keeps store
    order, so a reader that sees the magic sees the whole batch.
    """
    seg.mm[rel : rel + 8] = header
