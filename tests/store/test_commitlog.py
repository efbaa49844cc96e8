from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shmq.message import layout as rec
from shmq.message.crc import body_crc
from shmq.store.claims import ClaimTable
from shmq.store.commitlog import CommitLog, pack_host
from shmq.store.errors import BatchTooLarge, DiskFull
from shmq.store.scan import RecordMeta, check_record
from tests.store.helpers import SMALL, props


def _log(tmp_path: Path, cfg=SMALL, slot: int = 0) -> CommitLog:
    claims = ClaimTable(tmp_path / "claims", slot=slot, slot_count=cfg.writer_slots)
    if not claims.is_initialised():
        claims.initialise(0)
    return CommitLog(tmp_path / "commitlog", cfg, claims=claims)


def _append(log: CommitLog, bodies, qoff=0, topic=b"T", queue_id=1, **kw):
    p = [props(TAGS="a", UNIQ_KEY=f"U{i}") for i in range(len(bodies))]
    return log.append(topic, queue_id, qoff, bodies, p, born_timestamp_ms=1234,
                      born_host=pack_host("10.1.2.3", 5555), **kw)


@pytest.mark.parametrize("size", [0, 1, 100, 2000])
def test_append_writes_every_field(tmp_path: Path, size: int) -> None:
    log = _log(tmp_path)
    bodies = [bytes([i % 256]) * size for i in range(5)]
    res = _append(log, bodies, qoff=7, flag=3, sysflag=0, reconsume_times=2,
                  prepared_tx_offset=99)
    assert res.queue_offset == 7 and res.count == 5
    for i, (off, sz) in enumerate(zip(res.offsets.tolist(), res.sizes.tolist())):
        view = log.view(off, sz)
        meta = check_record(view, 0, off, sz, check_crc=True)
        assert isinstance(meta, RecordMeta), meta
        assert (meta.topic, meta.queue_id, meta.queue_offset) == ("T", 1, 7 + i)
        assert bytes(view[meta.body_start : meta.body_start + meta.body_len]) == bodies[i]
        assert meta.properties == props(TAGS="a", UNIQ_KEY=f"U{i}")
        assert rec.HEADER_V4.unpack_from(view, 0)[2] == body_crc(bodies[i])
        fields = rec.HEADER_V4.unpack_from(view, 0)
        assert fields[4] == 3  # flag
        assert fields[9:11] == (bytes([10, 1, 2, 3]), 5555)  # born host
        assert fields[12:14] == (bytes([127, 0, 0, 1]), 10911)  # store host
        assert fields[14:16] == (2, 99)  # reconsume times, prepared tx offset
        assert sz == rec.record_size(size, 1, len(meta.properties))


def test_batches_follow_each_other_and_offsets_match(tmp_path: Path) -> None:
    log = _log(tmp_path)
    a = _append(log, [b"x" * 10] * 3)
    log.release()
    b = _append(log, [b"y" * 10] * 2, qoff=3)
    assert b.offsets[0] == a.end
    walked = [(o, m) for o, _s, m in log.records(0, b.end)]
    assert [o for o, _ in walked] == a.offsets.tolist() + b.offsets.tolist()
    assert {m for _, m in walked} == {rec.MESSAGE_MAGIC}


def test_batch_that_does_not_fit_moves_to_next_segment_after_a_blank(tmp_path: Path) -> None:
    log = _log(tmp_path)
    seg = SMALL.segment_bytes
    first = _append(log, [b"a" * 30_000])
    log.release()
    second = _append(log, [b"b" * 20_000, b"c" * 20_000], qoff=1)
    assert second.offsets[0] == seg  # moved whole to the next segment
    size, magic = log.header(first.end)
    assert magic == rec.BLANK_MAGIC and first.end + size == seg
    assert [m for _o, _s, m in log.records(0, second.end)] == [
        rec.MESSAGE_MAGIC, rec.BLANK_MAGIC, rec.MESSAGE_MAGIC, rec.MESSAGE_MAGIC]


def test_batch_larger_than_a_segment_is_refused_and_nothing_claimed(tmp_path: Path) -> None:
    log = _log(tmp_path)
    with pytest.raises(BatchTooLarge) as err:
        _append(log, [b"z" * 40_000, b"z" * 40_000])
    assert err.value.limit == SMALL.segment_bytes - 8
    assert log.claims is not None and log.claims.load_claimed() == 0


def test_disk_floor_refuses_append_and_claims_nothing(tmp_path: Path) -> None:
    cfg = replace(SMALL, min_free_bytes=1 << 62)
    log = _log(tmp_path, cfg)
    with pytest.raises(DiskFull) as err:
        _append(log, [b"x"])
    assert "store.min_free_bytes" in str(err.value)
    assert err.value.floor_bytes == 1 << 62
    assert log.claims is not None and log.claims.load_claimed() == 0


def test_ipv6_born_host_sets_flag_and_size(tmp_path: Path) -> None:
    log = _log(tmp_path)
    p = [props(TAGS="t")]
    res = log.append(b"T", 0, 0, [b"body"], p, born_timestamp_ms=1,
                     born_host=pack_host("2001:db8::1", 80))
    view = log.view(int(res.offsets[0]), int(res.sizes[0]))
    meta = check_record(view, 0, int(res.offsets[0]), len(view), check_crc=True)
    assert isinstance(meta, RecordMeta)
    assert meta.sysflag & rec.BORNHOST_V6_FLAG
    assert res.sizes[0] == rec.record_size(4, 1, len(p[0]), rec.BORNHOST_V6_FLAG)


def test_ipv4_mapped_host_is_stored_as_ipv4() -> None:
    assert pack_host("::ffff:10.0.0.1", 1) == bytes([10, 0, 0, 1, 0, 0, 0, 1])


def test_committed_position_stops_at_an_unreleased_claim(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    a = _log(tmp_path / "s", slot=0)
    b = _log(tmp_path / "s", slot=1)
    first = _append(a, [b"1"])  # not released: in flight
    second = _append(b, [b"2"], queue_id=2)
    b.release()
    assert b.claims is not None
    assert b.claims.committed() == first.offsets[0]
    a.release()
    assert b.claims.committed() == second.end


def test_prefault_past_the_segment_end_is_harmless(tmp_path: Path) -> None:
    """Regression: appending near a segment's end asked to populate past it (madvise error)."""
    from dataclasses import replace as _replace

    cfg = _replace(SMALL, prefault_ahead_bytes=1 << 20)
    log = _log(tmp_path, cfg)
    seg = log.segments.get(0, create=True)
    seg.prefault(seg.size + 12345)
    seg.prefault(seg.size + 99999)  # fully populated already: nothing to do
    for i in range(30):
        _append(log, [b"p" * 3000], qoff=i)
        log.release()
