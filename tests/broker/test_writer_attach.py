"""A writer that comes to attach a producer whose rings are already closed (the producer is
leaving, its registry row not yet freed) skips it instead of crashing. Seen in CI: both writers
died with RingClosed from Ring.consumer() in Writer._attach, failing every producer's sends."""

from __future__ import annotations

from pathlib import Path

from shmq.broker.writer import Writer
from shmq.ipc.registry import attach_producer, detach_producer
from shmq.store.store import MessageStore

from .helpers import SMALL_STORE, write_path


def test_closed_rings_of_a_live_producer_row_are_skipped(tmp_path: Path) -> None:
    with write_path(tmp_path, writers=1, start=False) as path:
        slot = attach_producer(path.shm, 1 << 16)
        ends = [ring.producer() for ring in slot.requests]
        for end in ends:
            end.close()  # the producer is leaving: its request ring is closed
        store = MessageStore(path.root, SMALL_STORE, writer_slot=0)
        writer = Writer(path.instance, 0, store, max_body_bytes=1 << 20)
        try:
            writer.refresh(force=True)  # raised RingClosed before the fix
            writer.refresh(force=True)  # and is not retried for the same generation
            assert writer.poll_once() == 0
        finally:
            writer.close()
            store.close()
            for ring in slot.rings:
                ring.detach()
            detach_producer(path.shm, slot)
