"""Messages as a client builds them and as it receives them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shmq.message.msgid import key_block, uniq_key

__all__ = ["BatchSendResult", "Message", "SendResult"]


@dataclass(frozen=True, slots=True)
class Message:
    """A message to send. `keys` are business keys (indexed for lookups)."""

    body: bytes
    tags: str | None = None
    keys: str | Sequence[str] | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    flag: int = 0


@dataclass(frozen=True, slots=True)
class SendResult:
    """Where a sent message was stored. `msg_id` is the client-generated UNIQ_KEY (what
    RocketMQ clients call msgId); `offset_msg_id` is the broker's (host + commit-log offset)."""

    status: str
    msg_id: str
    offset_msg_id: str
    topic: str
    queue_id: int
    queue_offset: int


class BatchSendResult:
    """Where a batch was stored: contiguous queue offsets from `queue_offset`. Per-message
    results (`results`, `msg_ids`) are built only when asked for."""

    __slots__ = (
        "_keys",
        "_offsets",
        "_prefix",
        "_results",
        "queue_id",
        "queue_offset",
        "status",
        "topic",
    )

    def __init__(self, topic: str, queue_id: int, queue_offset: int,
                 keys: tuple[str, int, int], offsets: Sequence[int] | np.ndarray,
                 offset_id_prefix: str) -> None:
        """`keys` is the batch's UNIQ_KEY block: (head, first counter, count)."""
        self.status = "SEND_OK"
        self.topic, self.queue_id, self.queue_offset = topic, queue_id, queue_offset
        self._keys = keys
        self._offsets, self._prefix = offsets, offset_id_prefix
        self._results: list[SendResult] | None = None

    @property
    def msg_ids(self) -> list[str]:
        """The messages' UNIQ_KEYs (RocketMQ's msgId), in batch order."""
        return key_block(*self._keys)

    def __len__(self) -> int:
        return self._keys[2]

    def __getitem__(self, i: int) -> SendResult:
        return self.results[i]

    def first(self) -> SendResult:
        """`self[0]`, without building the other results (a single send's answer)."""
        if self._results is not None:
            return self._results[0]
        head, first, _ = self._keys
        return SendResult(self.status, uniq_key(head, first),
                          f"{self._prefix}{int(self._offsets[0]):016X}", self.topic,
                          self.queue_id, self.queue_offset)

    @property
    def offset_msg_ids(self) -> list[str]:
        return [f"{self._prefix}{int(off):016X}" for off in self._offsets]

    @property
    def results(self) -> list[SendResult]:
        if self._results is None:
            self._results = [
                SendResult(self.status, key, oid, self.topic, self.queue_id, self.queue_offset + i)
                for i, (key, oid) in enumerate(zip(self.msg_ids, self.offset_msg_ids))]
        return self._results

    def __repr__(self) -> str:
        return (f"BatchSendResult({self.status}, {self.topic}/{self.queue_id}, "
                f"queue offsets {self.queue_offset}..{self.queue_offset + len(self) - 1})")
