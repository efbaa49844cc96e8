"""The local ring protocol: how same-host producers (LocalProducer, the acceptor) talk to writer
processes through shared-memory rings. Internal to shmq; native byte order.

Request record, kind `KIND_APPEND` (one queue, one batch, encoded by `message.encoder`)::

    +0   request_id   u64   chosen by the producer, echoed in the completion
    +8   queue_id     i32
    +12  count        i32   number of records
    +16  flags        u32   FLAG_SYNC: flush before completing
    +20  topic_len    u16
    +22  topic        topic_len bytes (UTF-8)
         sizes        i64[count]   record sizes
         tag_hashes   i64[count]   consume-queue tag codes
         records      sum(sizes) bytes, RocketMQ v1 records (offsets and store time zero)

Completion record, kind `KIND_DONE`::

    +0   request_id   u64
    +8   status       i32   Status
    +12  count        i32
    +16  first_offset i64   commit-log offset of the first record (records are contiguous)
    +24  queue_offset i64   queue offset of the first record
    +32  store_ts_ms  i64
    +40  message      UTF-8 error text (empty on success)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np

from shmq.protocol.errors import RemoteProtocolError

__all__ = [
    "FLAG_SYNC",
    "KIND_APPEND",
    "KIND_DONE",
    "AppendRequest",
    "Completion",
    "Status",
    "decode_append",
    "decode_completion",
    "encode_append",
    "encode_completion",
    "queue_owner",
]

KIND_APPEND: Final = 1
KIND_DONE: Final = 2
FLAG_SYNC: Final = 0x1

_REQ_HEAD: Final = struct.Struct("=QiiIH")
_DONE_HEAD: Final = struct.Struct("=Qiiqqq")
_I64: Final = np.dtype("=i8")


class Status(enum.IntEnum):
    """Outcome of an append request."""

    OK = 0
    REJECTED = 1  #: malformed or illegal request; nothing was written
    STORE_ERROR = 2  #: the store refused (disk full, ...); nothing was acknowledged
    NOT_OWNER = 3  #: the queue belongs to another writer; nothing was written
    SHUTTING_DOWN = 4  #: the writer is draining; nothing was written


#: Status by wire value (a dict lookup: calling the enum is ~1 us)
_STATUSES: Final[dict[int, Status]] = {int(s): s for s in Status}


@dataclass(slots=True)
class AppendRequest:
    """A decoded append request; array and record fields are views of the ring payload.
    Treat it as read-only (not frozen: a frozen dataclass costs ~1.5 us more per request on
    the writer's hot path)."""

    request_id: int
    queue_id: int
    flags: int
    topic: str
    sizes: np.ndarray
    tag_hashes: np.ndarray
    records: memoryview


@dataclass(slots=True)
class Completion:
    """A writer's answer to one append request. Treat it as read-only (not frozen, for the
    same reason as AppendRequest)."""

    request_id: int
    status: Status
    count: int
    first_offset: int
    queue_offset: int
    store_timestamp_ms: int
    message: str = ""


def encode_append(
    request_id: int, topic: bytes, queue_id: int, sizes: np.ndarray, tag_hashes: np.ndarray,
    records: bytes | memoryview, *, flags: int = 0,
) -> list[bytes | memoryview]:
    """The pieces of one append request (join them, or write them into a reserved slot)."""
    head = _REQ_HEAD.pack(request_id, queue_id, len(sizes), flags, len(topic))
    return [head, topic, sizes.astype(_I64, copy=False).tobytes(),
            tag_hashes.astype(_I64, copy=False).tobytes(), records]


def decode_append(payload: bytes | memoryview) -> AppendRequest:
    """Decode an append request without copying its arrays or records.

    Raises:
        RemoteProtocolError: the payload is truncated or its lengths do not add up.
    """
    view = memoryview(payload)
    if len(view) < _REQ_HEAD.size:
        raise RemoteProtocolError(f"append request of {len(view)} bytes is truncated")
    request_id, queue_id, count, flags, topic_len = _REQ_HEAD.unpack_from(view, 0)
    pos = _REQ_HEAD.size
    arrays_end = pos + topic_len + 16 * count
    if count <= 0 or arrays_end > len(view):
        raise RemoteProtocolError(
            f"append request {request_id}: {count} records and a {topic_len}-byte topic do not "
            f"fit in {len(view)} bytes")
    try:
        topic = bytes(view[pos : pos + topic_len]).decode()
    except UnicodeDecodeError as err:
        raise RemoteProtocolError(f"append request {request_id}: topic is not UTF-8") from err
    pos += topic_len
    sizes = np.frombuffer(view, dtype=_I64, count=count, offset=pos)
    tags = np.frombuffer(view, dtype=_I64, count=count, offset=pos + 8 * count)
    return AppendRequest(request_id, queue_id, flags, topic, sizes, tags, view[arrays_end:])


def encode_completion(c: Completion) -> bytes:
    head = _DONE_HEAD.pack(c.request_id, c.status, c.count, c.first_offset, c.queue_offset,
                           c.store_timestamp_ms)
    return head + c.message.encode() if c.message else head


def decode_completion(payload: bytes | memoryview) -> Completion:
    """Raises RemoteProtocolError when the payload is shorter than a completion header."""
    if len(payload) < _DONE_HEAD.size:
        raise RemoteProtocolError(f"completion of {len(payload)} bytes is truncated")
    rid, status, count, first, qoff, ts = _DONE_HEAD.unpack_from(payload, 0)
    code = _STATUSES.get(status)
    if code is None:
        raise RemoteProtocolError(f"completion {rid}: unknown status {status}")
    if len(payload) == _DONE_HEAD.size:  # a success carries no text
        return Completion(rid, code, count, first, qoff, ts)
    message = bytes(payload[_DONE_HEAD.size :]).decode("utf-8", "replace")
    return Completion(rid, code, count, first, qoff, ts, message)


def queue_owner(topic_hash: int, queue_id: int, writers: int) -> int:
    """The writer that owns (topic, queue): consecutive queues of a topic go to consecutive
    writers, so a topic's load spreads over all of them. `topic_hash` is the Java hash of
    the topic (message.taghash.java_string_hash)."""
    return ((topic_hash & 0x7FFFFFFF) + queue_id) % writers
