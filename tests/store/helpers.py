"""Shared builders for store tests."""

from __future__ import annotations

from dataclasses import replace

from shmq.store.config import StoreConfig

SMALL = replace(StoreConfig(), segment_bytes=64 * 1024, cq_entries_per_file=64, min_free_bytes=0,
                index_slots=101, index_max_entries=1000, writer_slots=8,
                prefault_ahead_bytes=0)


def props(**kv: str) -> bytes:
    """Encoded properties string (name 0x01 value 0x02 ...)."""
    return b"".join(k.encode() + b"\x01" + v.encode() + b"\x02" for k, v in kv.items())
