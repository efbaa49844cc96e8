from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from shmq.message.taghash import tag_hash
from shmq.store.config import FlushMode
from shmq.store.recovery import recover
from shmq.store.scan import RecordMeta, check_record
from shmq.store.segments import Segment
from shmq.store.store import MessageStore
from shmq.store.verify import verify_store
from tests.store.helpers import SMALL, props


def _open(root: Path, slot: int = 0, cfg=SMALL) -> MessageStore:
    return MessageStore(root, cfg, writer_slot=slot)


def _body_of(store: MessageStore, offset: int) -> bytes:
    view = store.message(offset)
    meta = check_record(view, 0, offset, len(view), check_crc=True)
    assert isinstance(meta, RecordMeta)
    return bytes(view[meta.body_start : meta.body_start + meta.body_len])


def test_put_then_read_through_the_consume_queue_with_a_tag_filter(tmp_path: Path) -> None:
    recover(tmp_path, SMALL)
    with _open(tmp_path) as store:
        for i in range(10):
            tags = "A" if i % 3 == 0 else "B"
            store.put("T", 0, [f"m{i}".encode()], [props(TAGS=tags)], tags=tags)
        cq = store.queue("T", 0)
        sel = cq.select(0, 100, np.asarray([tag_hash("A")], dtype=np.int64))
        bodies = [_body_of(store, o) for o in sel.offsets.tolist()]
        assert bodies == [b"m0", b"m3", b"m6", b"m9"]
        assert sel.next_offset == 10


def _writer_proc(root: str, slot: int, batches: int, batch: int) -> None:
    with _open(Path(root), slot) as store:
        for b in range(batches):
            q = slot * 2 + b % 2
            bodies = [f"w{slot}-b{b}-i{i}".encode() for i in range(batch)]
            store.put("Multi", q, bodies, [props(TAGS=f"t{slot}")] * batch, tags=f"t{slot}")


def test_several_writer_processes_append_concurrently(tmp_path: Path) -> None:
    recover(tmp_path, SMALL)
    ctx = mp.get_context("fork")
    writers, batches, batch = 3, 120, 7
    procs = [ctx.Process(target=_writer_proc, args=(str(tmp_path), w, batches, batch))
             for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    seen: list[bytes] = []
    with _open(tmp_path, 7) as store:
        for w in range(writers):
            for q in (w * 2, w * 2 + 1):
                cq = store.queue("Multi", q)
                entries = cq.read(0, cq.max_offset)
                got = [_body_of(store, int(o)) for o in entries["offset"]]
                # per-queue order is the writer's order
                expected = [f"w{w}-b{b}-i{i}".encode()
                            for b in range(batches) if b % 2 == q % 2 for i in range(batch)]
                assert got == expected
                seen += got
    assert len(seen) == len(set(seen)) == writers * batches * batch
    report = verify_store(tmp_path, SMALL)
    assert report.consistent, report.problems
    assert report.records == writers * batches * batch


def test_flush_advances_checkpoint_and_index_finds_keys(tmp_path: Path) -> None:
    recover(tmp_path, SMALL)
    with _open(tmp_path) as store:
        res = store.put("T", 0, [b"a", b"b"], [props(KEYS="k1 k2", UNIQ_KEY="U1"),
                                               props(KEYS="k2", UNIQ_KEY="U2")])
        cp = store.flush()
        assert cp.flushed_offset == res.end
        assert store.build_index() == 2
        now = 2**62
        found = store.index.query("T#k2", 0, now)
        assert sorted(found) == sorted(res.offsets.tolist())
        assert store.index.query("T#U1", 0, now) == [int(res.offsets[0])]
        assert store.index.query("T#nothing", 0, now) == []
        assert store.checkpoint.read().indexed_offset == res.end


def test_sync_flush_msyncs_the_batch_before_returning(tmp_path: Path, monkeypatch) -> None:
    from dataclasses import replace

    calls: list[tuple[int, int]] = []
    real = Segment.flush

    def spy(self: Segment, start: int, end: int) -> None:
        calls.append((self.start + start, self.start + end))
        real(self, start, end)

    monkeypatch.setattr(Segment, "flush", spy)
    cfg = replace(SMALL, flush=FlushMode.SYNC)
    recover(tmp_path, cfg)
    calls.clear()
    with _open(tmp_path, cfg=cfg) as store:
        res = store.put("T", 0, [b"x" * 100] * 3, [b""] * 3)
        assert calls and calls[-1][1] >= res.end and calls[0][0] <= res.offsets[0]


@pytest.mark.parametrize("flush", [FlushMode.ASYNC])
def test_reopen_continues_queue_offsets(tmp_path: Path, flush: FlushMode) -> None:
    recover(tmp_path, SMALL)
    with _open(tmp_path) as store:
        store.put("T", 3, [b"a"] * 5, [b""] * 5)
    recover(tmp_path, SMALL)
    with _open(tmp_path) as store:
        res = store.put("T", 3, [b"b"], [b""])
        assert res.queue_offset == 5


def test_index_scan_reads_keys_past_hosts_blanks_and_keyless_records(tmp_path: Path) -> None:
    """build_index's scan (scan_for_index) locates the properties by the sysflag's host sizes,
    skips records without KEYS/UNIQ_KEY and look-alike names, and crosses segment ends."""
    recover(tmp_path, SMALL)
    v6_host = bytes(range(16)) + b"\x00\x00\x27\x10"
    with _open(tmp_path) as store:
        plain = store.put("T", 0, [b"a", b"b"], [props(TAGS="x"), props(XKEYS="no", A="b")])
        v6 = store.put("T", 1, [b"c"], [props(KEYS="six", UNIQ_KEY="U6")], born_host=v6_host,
                       sysflag=0x10)  # BORNHOST_V6_FLAG
        big = b"z" * (SMALL.segment_bytes // 3)
        crossing = [store.put("T", 2, [big], [props(KEYS=f"big{i}")]) for i in range(4)]
        store.flush()
        assert store.build_index() == 3 + 4
        now = 2**62
        assert store.index.query("T#no", 0, now) == []  # XKEYS is not KEYS
        assert store.index.query("T#six", 0, now) == [int(v6.offsets[0])]
        assert store.index.query("T#U6", 0, now) == [int(v6.offsets[0])]
        for i, res in enumerate(crossing):  # some of them after a segment's end blank
            assert store.index.query(f"T#big{i}", 0, now) == [int(res.offsets[0])]
        assert store.checkpoint.read().indexed_offset == crossing[-1].end
        assert plain.end <= v6.offsets[0]
