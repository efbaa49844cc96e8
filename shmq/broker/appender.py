"""What the send handlers append through: the `Appender` interface and an in-process one.

Theory of operation: a handler encodes complete records (`message.encoder.encode_batch`) and
awaits `appender.append(topic, queue_id, batch, tag_hashes)`, which returns where the batch
landed once it is stored (published, dispatched to the consume queue and, when the store is in
SYNC mode, flushed). The records of one append are contiguous in the commit log, so the
first record's offset and the sizes give every record's offset.

In the acceptor the appender is `channel.WriteChannel` (the shared-memory rings to the owning
writer process). `StoreAppender` appends straight into a writable `MessageStore` in this
process: the handler tests use it, and it is what a single-process broker would use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from shmq.errors import StoreError
from shmq.message import layout as rec
from shmq.message.encoder import EncodedBatch, encode_batch
from shmq.message.msgid import pack_host
from shmq.message.properties import PROPERTY_TAGS, encode_properties
from shmq.message.record import StoredMessage
from shmq.message.taghash import tag_hash
from shmq.store.store import MessageStore

from .errors import ServiceUnavailable

__all__ = ["Appended", "Appender", "StoreAppender", "reencode"]


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an appended batch landed."""

    first_offset: int  #: commit-log offset of the first record
    queue_offset: int  #: queue offset of the first record (the rest follow, one each)
    store_timestamp_ms: int
    count: int


class Appender(Protocol):
    """Appends encoded batches for the send handlers."""

    @property
    def max_batch_bytes(self) -> int:
        """Largest encoded batch (records and tag codes) one append can carry."""

    async def append(self, topic: str, queue_id: int, batch: EncodedBatch,
                     tag_hashes: np.ndarray) -> Appended:
        """Store `batch` (records for `topic`/`queue_id`) and return where it landed.

        Raises:
            BrokerRejected subclasses: refused (nothing stored) or outcome unknown, as each
                error's docstring says.
        """


_HOST_FLAGS = rec.BORNHOST_V6_FLAG | rec.STOREHOSTADDRESS_V6_FLAG


def reencode(message: StoredMessage, topic: str, queue_id: int, properties: dict[str, str],
             store_host: bytes, *, sysflag: int | None = None,
             prepared_tx_offset: int | None = None) -> tuple[EncodedBatch, np.ndarray]:
    """A stored `message` encoded again for `topic`/`queue_id` with `properties` (body, born
    fields, flag, reconsume count kept; the encoder sets the host flags; tag code from TAGS):
    what the delay timer releases and a committed transaction stores."""
    flags = message.sysflag if sysflag is None else sysflag
    batch = encode_batch(
        topic.encode(), queue_id, [message.body], [encode_properties(properties)],
        born_timestamp_ms=message.born_timestamp_ms,
        born_host=pack_host(message.born_host, message.born_port), store_host=store_host,
        flag=message.flag, sysflag=flags & ~_HOST_FLAGS, reconsume_times=message.reconsume_times,
        prepared_tx_offset=message.prepared_tx_offset if prepared_tx_offset is None
        else prepared_tx_offset)
    return batch, np.array([tag_hash(properties.get(PROPERTY_TAGS))], dtype=np.int64)


class StoreAppender:
    """Appends synchronously into a writable `MessageStore` of this process."""

    def __init__(self, store: MessageStore, *, max_batch_bytes: int = 64 << 20) -> None:
        self.store = store
        self._max_batch_bytes = max_batch_bytes

    @property
    def max_batch_bytes(self) -> int:
        return self._max_batch_bytes

    async def append(self, topic: str, queue_id: int, batch: EncodedBatch,
                     tag_hashes: np.ndarray) -> Appended:
        """Append now (on the caller's thread); see `Appender.append`.

        Raises:
            ServiceUnavailable: the store refused (disk full, ...); nothing was acknowledged.
        """
        try:
            result = self.store.put_encoded(topic, queue_id, batch, tag_hashes)
        except StoreError as err:
            raise ServiceUnavailable(f"the store refused the append: {err}") from err
        return Appended(int(result.offsets[0]), result.queue_offset, result.store_timestamp_ms,
                        result.count)
