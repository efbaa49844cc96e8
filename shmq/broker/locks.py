"""Queue locks of orderly consumers: LOCK_BATCH_MQ / UNLOCK_BATCH_MQ (spec/behaviours.md §10).

Theory of operation: per consumer group, queue -> (client id, last refresh). A lock request
gets every queue that is free, already its own (refreshed), or held by a lock older than
`LOCK_MAX_LIVE_S` (Java's rebalance.lockMaxLiveTime); the answer lists exactly the requested
queues the client holds afterwards. Unlock releases only the caller's own locks. Locks live in
memory: after a broker restart clients re-lock within their 20 s lock interval, as with Java.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shmq.protocol import MessageQueue

__all__ = ["LOCK_MAX_LIVE_S", "QueueLocks"]

#: a lock not refreshed for this long may be taken by another client
LOCK_MAX_LIVE_S: Final = 60.0


class QueueLocks:
    """Queue locks of all consumer groups; see the module docstring."""

    def __init__(self, max_live_s: float = LOCK_MAX_LIVE_S) -> None:
        self.max_live_s = max_live_s
        self._groups: dict[str, dict[MessageQueue, tuple[str, float]]] = {}

    def lock(self, group: str, client_id: str, queues: Iterable[MessageQueue],
             now_s: float) -> list[MessageQueue]:
        """Lock what can be locked; return the requested queues `client_id` now holds."""
        table = self._groups.setdefault(group, {})
        held = []
        for mq in queues:
            owner = table.get(mq)
            if owner is None or owner[0] == client_id or now_s - owner[1] > self.max_live_s:
                table[mq] = (client_id, now_s)
                held.append(mq)
        return held

    def unlock(self, group: str, client_id: str, queues: Iterable[MessageQueue]) -> None:
        table = self._groups.get(group)
        if table is None:
            return
        for mq in queues:
            owner = table.get(mq)
            if owner is not None and owner[0] == client_id:
                del table[mq]

    def owner(self, group: str, mq: MessageQueue, now_s: float) -> str | None:
        """The client holding a live lock on `mq`, or None."""
        owner = self._groups.get(group, {}).get(mq)
        if owner is None or now_s - owner[1] > self.max_live_s:
            return None
        return owner[0]
