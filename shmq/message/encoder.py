"""Batch encoder: many messages for one queue -> stored records, position-independent.

Theory of operation. Whoever has the messages (the broker's acceptor, a local producer) encodes
them into complete RocketMQ v1 records — sizes, body CRCs, hosts, topic, properties — leaving
the three fields only the appending writer can know at zero: QUEUEOFFSET, PHYSICALOFFSET and
STORETIMESTAMP. The writer copies the batch into the commit log in one piece and fills those
fields for all records at once with `patch_batch` (numpy scatters, no per-record Python). So
the per-message Python work (one struct pack, one CRC, five list slots) runs on the producer's
core, not on the writer's.

`check_batch` is the writer's cheap, vectorised sanity check of a batch it did not encode.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from shmq.message import layout as rec
from shmq.message.crc import crc32
from shmq.message.errors import InvalidRecordField

__all__ = ["EncodedBatch", "check_batch", "encode_batch", "patch_batch"]

_I32: Final = struct.Struct(">i")
#: The per-record part of the header: TOTALSIZE, MAGICCODE, BODYCRC.
_HEAD: Final = struct.Struct(">iii")
#: QUEUEID, FLAG, QUEUEOFFSET (0), PHYSICALOFFSET (0), SYSFLAG, BORNTIMESTAMP.
_MID_PREFIX: Final = struct.Struct(">iiqqiq")
#: STORETIMESTAMP (0) after the born host.
_ZERO_TS: Final = bytes(8)
#: RECONSUMETIMES, PREPARED TRANSACTION OFFSET, BODYLENGTH.
_MID_SUFFIX: Final = struct.Struct(">iqi")
_CRC_MASK: Final = 0x7FFFFFFF
_BYTE_LANES: Final = np.arange(8, dtype=np.int64)
_QOFF_PHYS: Final = struct.Struct(">qq")  # QUEUEOFFSET, PHYSICALOFFSET (adjacent)
_I64: Final = struct.Struct(">q")
#: Batches up to this many records are patched with struct, larger ones with numpy.
_SCALAR_MAX: Final = 4
assert rec.PHYSICAL_OFFSET_OFFSET == rec.QUEUE_OFFSET_OFFSET + 8


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """Records ready to append: `data` holds `len(sizes)` records back to back."""

    data: bytes | memoryview
    sizes: np.ndarray  # int64, one per record
    sysflag: int

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def store_timestamp_offset(self) -> int:
        """Offset of STORETIMESTAMP inside each record (depends on the born host's size)."""
        born = rec.IPV6_HOST_BYTES if self.sysflag & rec.BORNHOST_V6_FLAG else rec.IPV4_HOST_BYTES
        return rec.BORN_HOST_OFFSET + born


def encode_batch(
    topic: bytes,
    queue_id: int,
    bodies: Sequence[bytes],
    properties: Sequence[bytes],
    *,
    born_timestamp_ms: int,
    born_host: bytes,
    store_host: bytes,
    flag: int = 0,
    sysflag: int = 0,
    reconsume_times: int = 0,
    prepared_tx_offset: int = 0,
) -> EncodedBatch:
    """Encode one queue's messages. `topic` is UTF-8, `properties[i]` an encoded properties
    string, hosts are packed (`msgid.pack_host`); the host-size sysflag bits are set here.

    Limits (body, topic and properties lengths) are the caller's to check.
    """
    if len(born_host) > rec.IPV4_HOST_BYTES:
        sysflag |= rec.BORNHOST_V6_FLAG
    if len(store_host) > rec.IPV4_HOST_BYTES:
        sysflag |= rec.STOREHOSTADDRESS_V6_FLAG
    fixed = rec.FIXED_WITHOUT_HOSTS + len(born_host) + len(store_host) + rec.TAIL_FIXED
    fixed += len(topic)
    mid_head = _MID_PREFIX.pack(queue_id, flag, 0, 0, sysflag, born_timestamp_ms) + born_host
    mid_head += _ZERO_TS + store_host
    mid_head += _MID_SUFFIX.pack(reconsume_times, prepared_tx_offset, 0)[:-4]
    topic_part = bytes((len(topic),)) + topic
    head = _HEAD.pack
    magic = rec.MESSAGE_MAGIC
    parts: list[bytes] = []
    extend = parts.extend
    sizes: list[int] = []
    add_size = sizes.append
    last_blen = last_plen = -1
    mid = tail = b""
    for body, props in zip(bodies, properties):
        blen = len(body)
        plen = len(props)
        if blen != last_blen:
            mid, last_blen = mid_head + _I32.pack(blen), blen
        if plen != last_plen:
            tail, last_plen = topic_part + plen.to_bytes(2, "big", signed=True), plen
        size = fixed + blen + plen
        add_size(size)
        extend((head(size, magic, crc32(body) & _CRC_MASK), mid, body, tail, props))
    return EncodedBatch(b"".join(parts), np.asarray(sizes, dtype=np.int64), sysflag)


def record_starts(sizes: np.ndarray, base: int = 0) -> np.ndarray:
    """Start of each record of a batch whose first record starts at `base`."""
    if len(sizes) == 1:
        return np.array([base], dtype=np.int64)
    starts = np.empty(len(sizes), dtype=np.int64)
    starts[0] = base
    np.cumsum(sizes[:-1], out=starts[1:])
    starts[1:] += base
    return starts


def _scatter_i64(u8: np.ndarray, positions: np.ndarray, values: np.ndarray) -> None:
    """Write big-endian int64 `values[i]` at byte `positions[i]` of `u8`."""
    lanes = positions[:, None] + _BYTE_LANES
    u8[lanes] = values.astype(">i8").view(np.uint8).reshape(-1, 8)


def patch_batch(
    u8: np.ndarray,
    starts: np.ndarray,
    *,
    queue_offsets: np.ndarray,
    phys_offsets: np.ndarray,
    store_timestamp_ms: int,
    store_timestamp_offset: int,
) -> None:
    """Fill QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP of records starting at `starts`
    (byte positions in the writable uint8 array `u8`)."""
    if len(starts) <= _SCALAR_MAX:  # numpy's fixed costs exceed a few struct packs
        buf = memoryview(u8)  # type: ignore[arg-type]  # numpy arrays are buffers
        for start, qoff, phys in zip(starts.tolist(), queue_offsets.tolist(),
                                     phys_offsets.tolist()):
            patch_one(buf, start, queue_offset=qoff, phys_offset=phys,
                      store_timestamp_ms=store_timestamp_ms,
                      store_timestamp_offset=store_timestamp_offset)
        return
    _scatter_i64(u8, starts + rec.QUEUE_OFFSET_OFFSET, queue_offsets)
    _scatter_i64(u8, starts + rec.PHYSICAL_OFFSET_OFFSET, phys_offsets)
    stamps = np.full(len(starts), store_timestamp_ms, dtype=np.int64)
    _scatter_i64(u8, starts + store_timestamp_offset, stamps)


def patch_one(buf: memoryview | bytearray | mmap.mmap, start: int, *, queue_offset: int,
              phys_offset: int, store_timestamp_ms: int, store_timestamp_offset: int) -> None:
    """`patch_batch` of one record starting at byte `start` of the writable `buf`, without
    arrays (a single send's append)."""
    _QOFF_PHYS.pack_into(buf, start + rec.QUEUE_OFFSET_OFFSET, queue_offset, phys_offset)
    _I64.pack_into(buf, start + store_timestamp_offset, store_timestamp_ms)


def check_batch(data: bytes | memoryview, sizes: np.ndarray) -> None:
    """Check that `data` is `len(sizes)` records of those sizes, each with the v1 magic.

    Raises:
        InvalidRecordField: the batch is malformed; nothing about it may be appended.
    """
    n = len(sizes)
    if n == 0:
        raise InvalidRecordField("count", 0, "a batch needs at least one record")
    if n == 1:
        _check_one(data, int(sizes[0]))
        return
    if int(sizes.min()) < rec.MIN_RECORD_BYTES or int(sizes.sum()) != len(data):
        raise InvalidRecordField(
            "sizes", int(sizes.sum()), f"record sizes must be >= {rec.MIN_RECORD_BYTES} and add "
            f"up to the {len(data)} bytes of the batch")
    u8 = np.frombuffer(data, dtype=np.uint8)
    starts = record_starts(sizes)
    words = u8[starts[:, None] + _BYTE_LANES].copy().view(">i4").reshape(n, 2)
    bad = np.flatnonzero((words[:, 0] != sizes) | (words[:, 1] != rec.MESSAGE_MAGIC))
    if len(bad):
        i = int(bad[0])
        raise InvalidRecordField(
            f"record {i} [TOTALSIZE, MAGICCODE]", tuple(int(w) for w in words[i]),
            f"expected [{int(sizes[i])}, {rec.MESSAGE_MAGIC}]")


def _check_one(data: bytes | memoryview, size: int) -> None:
    if size < rec.MIN_RECORD_BYTES or size != len(data):
        raise InvalidRecordField(
            "sizes", size, f"record sizes must be >= {rec.MIN_RECORD_BYTES} and add up to the "
            f"{len(data)} bytes of the batch")
    got = rec.SIZE_MAGIC.unpack_from(data, 0)
    if got != (size, rec.MESSAGE_MAGIC):
        raise InvalidRecordField("record 0 [TOTALSIZE, MAGICCODE]", got,
                                 f"expected [{size}, {rec.MESSAGE_MAGIC}]")
