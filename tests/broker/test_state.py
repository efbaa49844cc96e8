"""Small pieces of broker state: peer addresses, queue locks, the client registry, the
append gate of long polling."""

from __future__ import annotations

import struct
from pathlib import Path

from shmq.broker.clients import ClientChannel, ClientRegistry
from shmq.broker.context import peer_host
from shmq.broker.locks import QueueLocks
from shmq.broker.longpoll import ClaimWatch
from shmq.protocol import (
    ConsumeFromWhere,
    ConsumerData,
    ConsumeType,
    MessageModel,
    MessageQueue,
    SubscriptionData,
)
from shmq.store import layout


def test_born_hosts_of_ipv4_mapped_peers_are_ipv4() -> None:
    assert peer_host("10.1.2.3:4567") == bytes([10, 1, 2, 3]) + struct.pack(">i", 4567)
    assert peer_host("[::ffff:10.1.2.3]:4567") == peer_host("10.1.2.3:4567")
    assert len(peer_host("[2001:db8::1]:80")) == 20
    assert peer_host("?") == bytes(8)


def test_queue_locks_expire_and_belong_to_their_owner() -> None:
    locks = QueueLocks(max_live_s=60)
    mq0, mq1 = MessageQueue("T", "b", 0), MessageQueue("T", "b", 1)
    assert locks.lock("g", "c1", [mq0], now_s=0) == [mq0]
    assert locks.lock("g", "c2", [mq0, mq1], now_s=30) == [mq1]
    assert locks.lock("g", "c1", [mq0], now_s=50) == [mq0]  # refreshed by its owner
    assert locks.lock("g", "c2", [mq0], now_s=100) == []
    assert locks.lock("g", "c2", [mq0], now_s=111) == [mq0]  # c1's lock aged out
    locks.unlock("g", "c1", [mq0])  # not c1's any more: no effect
    assert locks.owner("g", mq0, now_s=112) == "c2"
    assert locks.lock("other", "c1", [mq0], now_s=112) == [mq0]  # groups are separate


class _FakeConn:
    """A hashable stand-in for a `Connection`: the registry only uses connections as keys."""


def consumer(group: str, *subs: SubscriptionData) -> ConsumerData:
    return ConsumerData(group, ConsumeType.CONSUME_PASSIVELY, MessageModel.CLUSTERING,
                        ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET, subs)


def test_registry_reports_changes_by_java_rules() -> None:
    registry = ClientRegistry()
    a, b = _FakeConn(), _FakeConn()

    def chan(conn: _FakeConn, client_id: str) -> ClientChannel:
        return ClientChannel(conn, client_id, "CPP", 63, 0.0)  # type: ignore[arg-type]

    sub_v1 = SubscriptionData.of_tags("T", "A", 1)
    assert registry.register_consumer(consumer("g", sub_v1), chan(a, "c1"))
    assert not registry.register_consumer(consumer("g", sub_v1), chan(a, "c1"))
    # a newer version of the same topic replaces it without a notification
    assert not registry.register_consumer(consumer("g", SubscriptionData.of_tags("T", "B", 2)),
                                          chan(a, "c1"))
    assert registry.subscription("g", "T") is not None
    assert registry.subscription("g", "T").sub_string == "B"  # type: ignore[union-attr]
    assert registry.register_consumer(consumer("g", sub_v1), chan(b, "c2"))  # a new member
    assert registry.consumer_ids("g") == ["c1", "c2"]
    assert registry.connection_closed(b) == {"g"}  # type: ignore[arg-type]
    assert registry.expire(now_s=200.0) == {"g"}
    assert registry.consumer_ids("g") == []


def test_claim_watch_sees_appends_and_claims_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "claims"
    data = bytearray(layout.CLAIMS_BYTES)
    slot0 = layout.CLAIMS_SLOTS_OFFSET

    def write(claimed: int, in_flight: int | None) -> None:
        struct.pack_into(">q", data, layout.CLAIMS_CLAIMED_OFFSET, claimed)
        for i in range((layout.CLAIMS_BYTES - slot0) // layout.CLAIM_SLOT_BYTES):
            struct.pack_into(">q", data, slot0 + i * layout.CLAIM_SLOT_BYTES, layout.NO_CLAIM)
        if in_flight is not None:
            struct.pack_into(">q", data, slot0, in_flight)
        path.write_bytes(bytes(data))

    watch = ClaimWatch(path)
    assert watch.changed()  # no table yet: cannot tell
    write(0, None)
    assert watch.changed()  # first look
    assert not watch.changed()
    write(100, 0)  # a claim: the log grew, the batch is still being written
    assert watch.changed()
    assert watch.changed()  # still in flight at the last look: look again
    write(100, None)  # done
    assert watch.changed()  # once more after it finished
    assert not watch.changed()
    watch.close()
