from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from shmq.cli import main
from shmq.store.recovery import recover
from shmq.store.store import MessageStore
from tests.store.helpers import SMALL


def _store(root: Path) -> int:
    recover(root / "store", SMALL)
    with MessageStore(root / "store", SMALL, writer_slot=0) as store:
        res = store.put("C", 1, [b"a" * 50, b"b" * 50], [b"TAGS\x01x\x02"] * 2)
        return int(res.offsets[1])


def test_verify_clean_store_prints_json_and_exits_0(tmp_path: Path) -> None:
    _store(tmp_path)
    out = CliRunner().invoke(main, ["store", "verify", str(tmp_path)])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["consistent"] is True and report["records"] == 2
    assert report["queues"] == [{"topic": "C", "queue_id": 1, "min_queue_offset": 0,
                                 "max_queue_offset": 2, "expired_entries": 0}]
    assert report["min_offset"] == 0 and report["max_offset"] > 0


def test_verify_damaged_store_exits_1_and_names_the_offset(tmp_path: Path) -> None:
    second = _store(tmp_path)
    seg = tmp_path / "store" / "commitlog" / f"{0:020d}"
    raw = bytearray(seg.read_bytes())
    raw[second + 100] ^= 0xFF  # a body byte of the second record
    seg.write_bytes(bytes(raw))
    out = CliRunner().invoke(main, ["store", "verify", str(tmp_path / "store")])
    assert out.exit_code == 1, out.output
    report = json.loads(out.output)
    assert report["consistent"] is False
    assert {"kind": "bad_record", "offset": second, "detail": "body CRC mismatch"} in report["problems"]
    repaired = CliRunner().invoke(main, ["store", "recover", str(tmp_path)])
    assert repaired.exit_code == 0, (repaired.output, repaired.exception)
    assert json.loads(repaired.output)["truncated_at"] == second
    assert CliRunner().invoke(main, ["store", "verify", str(tmp_path)]).exit_code == 0


def test_verify_of_something_that_is_not_a_store_exits_2(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["store", "verify", str(tmp_path)])
    assert out.exit_code == 2
    assert "not a shmq store" in out.output
