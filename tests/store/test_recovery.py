from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from shmq.message import layout as rec
from shmq.store import commitlog as commitlog_mod
from shmq.store.checkpoint import CheckpointFile
from shmq.store.config import FlushMode
from shmq.store.recovery import recover
from shmq.store.scan import RecordMeta, check_record
from shmq.store.store import MessageStore
from shmq.store.verify import verify_store
from tests.store.helpers import SMALL, props


def _open(root: Path, slot: int = 0, cfg=SMALL) -> MessageStore:
    return MessageStore(root, cfg, writer_slot=slot)


def _bodies_in_queue(store: MessageStore, topic: str, q: int) -> list[bytes]:
    cq = store.queue(topic, q)
    out = []
    for off in cq.read(cq.min_offset, cq.max_offset - cq.min_offset)["offset"].tolist():
        view = store.message(off)
        meta = check_record(view, 0, off, len(view), check_crc=True)
        assert isinstance(meta, RecordMeta)
        out.append(bytes(view[meta.body_start : meta.body_start + meta.body_len]))
    return out


def _fill(root: Path, n: int, start: int = 0, q: int = 0) -> list[tuple[int, int]]:
    """Append n single-message batches; return (offset, size) of each."""
    out = []
    with _open(root) as store:
        for i in range(start, start + n):
            res = store.put("T", q, [f"body-{i}".encode() * 3], [props(TAGS="x")])
            out.append((int(res.offsets[0]), int(res.sizes[0])))
    return out


def test_clean_store_needs_no_repair(tmp_path: Path) -> None:
    recover(tmp_path, SMALL)
    _fill(tmp_path, 20)
    report = recover(tmp_path, SMALL)
    assert not report.repaired and report.records_checked == 20
    assert verify_store(tmp_path, SMALL).consistent


def test_unpublished_claim_becomes_a_blank_and_later_records_survive(tmp_path: Path,
                                                                      monkeypatch) -> None:
    recover(tmp_path, SMALL)
    with _open(tmp_path, 0) as dead, _open(tmp_path, 1) as live:
        monkeypatch.setattr(commitlog_mod, "_publish", lambda *a: None)
        lost = dead.commitlog.append(b"T", 0, 0, [b"never"] * 3, [b""] * 3,
                                     born_timestamp_ms=1, born_host=b"\x7f\0\0\1\0\0\0\1")
        monkeypatch.undo()
        kept = live.put("T", 1, [b"kept"], [b""])
    assert verify_store(tmp_path, SMALL).problems[0]["kind"] == "pending"
    report = recover(tmp_path, SMALL)
    assert report.pending_blanked == [(int(lost.offsets[0]), int(lost.end - lost.offsets[0]))]
    assert report.truncated_at is None
    with _open(tmp_path) as store:
        assert _bodies_in_queue(store, "T", 1) == [b"kept"]
        assert store.commitlog.header(int(lost.offsets[0]))[1] == rec.BLANK_MAGIC
        assert store.queue("T", 1).max_offset == 1 and kept.queue_offset == 0
    assert verify_store(tmp_path, SMALL).consistent


def _last_record_file_pos(tmp_path: Path, offset: int) -> tuple[Path, int]:
    seg = offset - offset % SMALL.segment_bytes
    return tmp_path / "commitlog" / f"{seg:020d}", offset - seg


@pytest.mark.parametrize("damage", ["garbage_after_end", "zeroed_range", "flipped_body_bit",
                                    "torn_header"])
def test_damaged_tail_is_detected_truncated_and_reported(tmp_path: Path, damage: str) -> None:
    recover(tmp_path, SMALL)
    written = _fill(tmp_path, 30)
    with _open(tmp_path) as store:
        store.flush()  # checkpoint covers everything so far...
    written += _fill(tmp_path, 5, start=30)  # ...and these are past it
    last_off, last_size = written[-1]
    path, rel = _last_record_file_pos(tmp_path, last_off)
    data = bytearray(path.read_bytes())
    rnd = random.Random(damage)
    if damage == "garbage_after_end":
        end = rel + last_size
        data[end : end + 64] = bytes(rnd.randrange(1, 256) for _ in range(64))
        bad_at = last_off + last_size
    elif damage == "zeroed_range":
        data[rel + 80 : rel + 100] = bytes(20)  # body length and body start
        bad_at = last_off
    elif damage == "flipped_body_bit":
        data[rel + rec.IPV4_BODY_OFFSET + 2] ^= 0x10
        bad_at = last_off
    else:
        data[rel + 4 : rel + 8] = b"\x12\x34\x56\x78"
        bad_at = last_off
    path.write_bytes(bytes(data))
    assert not verify_store(tmp_path, SMALL).consistent
    report = recover(tmp_path, SMALL)
    assert report.truncated_at == bad_at, report
    assert report.truncate_reason
    assert report.truncated_bytes > 0
    survivors = 35 if damage == "garbage_after_end" else 34
    with _open(tmp_path) as store:
        assert _bodies_in_queue(store, "T", 0) == [f"body-{i}".encode() * 3
                                                  for i in range(survivors)]
    assert report.cq_entries_dropped == 35 - survivors
    assert verify_store(tmp_path, SMALL).consistent
    assert not recover(tmp_path, SMALL).repaired


def test_lost_consume_queue_entries_are_rebuilt_from_the_log(tmp_path: Path) -> None:
    recover(tmp_path, SMALL)
    _fill(tmp_path, 10)
    with _open(tmp_path) as store:
        store.flush()
    _fill(tmp_path, 10, start=10)
    cq_file = tmp_path / "consumequeue" / "T" / "0" / f"{0:020d}"
    raw = bytearray(cq_file.read_bytes())
    raw[14 * 20 : 20 * 20] = bytes(6 * 20)  # entries 14..19 never reached the file
    cq_file.write_bytes(bytes(raw))
    report = recover(tmp_path, SMALL)
    assert report.cq_entries_rebuilt == 6
    with _open(tmp_path) as store:
        assert _bodies_in_queue(store, "T", 0) == [f"body-{i}".encode() * 3 for i in range(20)]
    assert verify_store(tmp_path, SMALL).consistent


def test_torn_checkpoint_means_a_full_scan(tmp_path: Path) -> None:
    recover(tmp_path, SMALL)
    _fill(tmp_path, 8)
    with _open(tmp_path) as store:
        assert store.flush().flushed_offset > 0
    raw = bytearray((tmp_path / "checkpoint").read_bytes())
    raw[50] ^= 0xFF
    (tmp_path / "checkpoint").write_bytes(bytes(raw))
    cp = CheckpointFile(tmp_path / "checkpoint")
    assert cp.read().flushed_offset == 0
    cp.close()
    report = recover(tmp_path, SMALL)
    assert report.start_offset == 0 and report.records_checked == 8 and not report.repaired


# --- kill -9 rounds ----------------------------------------------------------------------------

_WRITER = r"""
import os, sys
from dataclasses import replace
from pathlib import Path
from shmq.store.config import FlushMode
from shmq.store.store import MessageStore
from tests.store.helpers import SMALL, props
root, slot, start = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfg = replace(SMALL, flush=FlushMode.SYNC, segment_bytes=256 * 1024)
ack = os.open(sys.argv[4], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
with MessageStore(root, cfg, writer_slot=slot) as store:
    i = start
    while True:
        n = 1 + i % 5
        bodies = [f"{slot}:{i + k}:".encode() * (1 + (i + k) % 40) for k in range(n)]
        res = store.put("K", slot, bodies, [props(TAGS="k")] * n)
        line = "".join(f"{o} {b.decode()}\n" for o, b in zip(res.offsets.tolist(), bodies))
        os.write(ack, line.encode())
        i += n
"""


def _kill_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    rnd = random.Random(seed)
    cfg = replace(SMALL, flush=FlushMode.SYNC, segment_bytes=256 * 1024)
    root = tmp_path / "store"
    recover(root, cfg)
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    acked: dict[int, str] = {}
    next_i = [0, 10**6, 2 * 10**6]
    for rnd_no in range(rounds):
        acks = [tmp_path / f"ack-{rnd_no}-{w}" for w in range(3)]
        procs = [subprocess.Popen([sys.executable, str(script), str(root), str(w),
                                   str(next_i[w]), str(acks[w])], env=env)
                 for w in range(3)]
        deadline = time.monotonic() + 60  # interpreter start-up may be slow on a busy machine
        while time.monotonic() < deadline and not all(a.exists() and a.stat().st_size for a in acks):
            time.sleep(0.01)
        time.sleep(rnd.uniform(0.05, 0.5))
        for p in rnd.sample(procs, len(procs)):
            time.sleep(rnd.uniform(0, 0.02))
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait(10)
        for w, path in enumerate(acks):
            if path.exists():
                # a write() killed by SIGKILL can be short: only whole lines are acknowledgements
                for line in path.read_text().split("\n")[:-1]:
                    off, body = line.split(" ", 1)
                    acked[int(off)] = body
                    next_i[w] = max(next_i[w], int(body.split(":")[1]) + 1)
        report = recover(root, cfg)
        msg = f"seed={seed} round={rnd_no} report={report.to_dict()}"
        with MessageStore(root, cfg, writer_slot=0) as store:
            for off, body in acked.items():
                view = store.message(off)
                meta = check_record(view, 0, off, len(view), check_crc=True)
                assert isinstance(meta, RecordMeta), msg
                assert bytes(view[meta.body_start : meta.body_start + meta.body_len]).decode() == body, msg
        verified = verify_store(root, cfg)
        assert verified.consistent, f"{msg} problems={verified.problems}"
    assert len(acked) > 50 * rounds, f"seed={seed}: writers barely ran ({len(acked)} acks)"
    cli = subprocess.run([sys.executable, "-m", "shmq.cli", "store", "verify", str(root)],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_kill_9_writers_lose_no_acknowledged_append(tmp_path: Path) -> None:
    _kill_rounds(tmp_path, rounds=3, seed=int(os.environ.get("SHMQ_SEED", "0")) or time.time_ns())


@pytest.mark.slow
def test_kill_9_writers_many_rounds(tmp_path: Path) -> None:
    _kill_rounds(tmp_path, rounds=25, seed=int(os.environ.get("SHMQ_SEED", "0")) or time.time_ns())


def test_reopening_a_store_with_another_layout_is_refused(tmp_path: Path) -> None:
    from shmq.errors import ConfigError

    recover(tmp_path, SMALL)
    with pytest.raises(ConfigError) as err:
        recover(tmp_path, replace(SMALL, segment_bytes=SMALL.segment_bytes * 2))
    assert "store.segment_bytes" in str(err.value) and str(SMALL.segment_bytes) in str(err.value)


def test_torn_publish_leaves_no_orphan_records(tmp_path: Path) -> None:
    """A writer killed between the two halves of a publish left [record size][PENDING]: the
    first record reads as a one-record span and the rest of the batch as valid records that
    no consume-queue entry reaches. Recovery must blank them (they were never acknowledged)."""
    recover(tmp_path, SMALL)
    with _open(tmp_path) as store:
        store.put("T", 0, [b"acked"], [b""])
        res = store.commitlog.append(b"T", 0, 1, [b"r1", b"r2", b"r3"], [b""] * 3,
                                     born_timestamp_ms=1, born_host=b"\x7f\0\0\1\0\0\0\1")
        first = int(res.offsets[0])
        seg = store.commitlog.segments.for_offset(first)
        rec.SIZE_MAGIC.pack_into(seg.mm, first - seg.start, int(res.sizes[0]), rec.PENDING_MAGIC)
    problems = verify_store(tmp_path, SMALL).problems
    assert {p["kind"] for p in problems} == {"pending", "unreachable_record"}
    report = recover(tmp_path, SMALL)
    assert report.pending_blanked == [(first, int(res.sizes[0]))]
    assert report.orphans_blanked == [(int(o), int(s)) for o, s in zip(res.offsets[1:], res.sizes[1:])]
    assert verify_store(tmp_path, SMALL).consistent
    with _open(tmp_path) as store:
        assert store.put("T", 0, [b"next"], [b""]).queue_offset == 1
        assert _bodies_in_queue(store, "T", 0) == [b"acked", b"next"]


def test_dispatch_failure_is_settled_before_the_writer_restarts(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Published but not dispatched (the consume-queue write failed): DispatchFailed, the
    claim stays in flight, and settle_claim writes the missing entries."""
    from shmq.store.consumequeue import ConsumeQueue
    from shmq.store.errors import DispatchFailed, StoreError
    from shmq.store.recovery import settle_claim

    recover(tmp_path, SMALL)
    with _open(tmp_path, 3) as store:
        store.put("T", 0, [b"first"], [b""])
        store.queue("T", 0)

        def broken(*_a: object, **_k: object) -> None:
            raise StoreError("simulated consume-queue failure")

        monkeypatch.setattr(ConsumeQueue, "append", broken)
        with pytest.raises(DispatchFailed, match="published but not in the consume queue"):
            store.put("T", 0, [b"second", b"third"], [b""] * 2)
        monkeypatch.undo()
        assert store.claims is not None and store.claims.in_flight()  # held back
    outcome = settle_claim(tmp_path, SMALL, 3)
    assert outcome is not None and "2 consume-queue entries written" in outcome
    with _open(tmp_path) as store:
        assert _bodies_in_queue(store, "T", 0) == [b"first", b"second", b"third"]
        assert store.claims is not None and not store.claims.in_flight()
    assert verify_store(tmp_path, SMALL).consistent


def test_settle_claim_blanks_an_unpublished_claim(tmp_path: Path, monkeypatch) -> None:
    from shmq.store.recovery import settle_claim

    recover(tmp_path, SMALL)
    with _open(tmp_path, 2) as store:
        monkeypatch.setattr(commitlog_mod, "_publish", lambda *a: None)
        res = store.commitlog.append(b"T", 0, 0, [b"x"], [b""], born_timestamp_ms=1,
                                     born_host=b"\x7f\0\0\1\0\0\0\1")
    outcome = settle_claim(tmp_path, SMALL, 2)
    assert outcome == f"unpublished claim [{int(res.offsets[0])}, {res.end}) blanked"
    assert verify_store(tmp_path, SMALL).consistent
