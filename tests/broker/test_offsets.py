"""Consumer offsets: commits, persistence, merging between processes."""

from __future__ import annotations

import json
from pathlib import Path

from shmq.broker.offsets import ConsumerOffsets


def test_commits_survive_a_restart_after_flush(tmp_path: Path) -> None:
    offsets = ConsumerOffsets(tmp_path)
    offsets.commit("g", "T", 0, 12)
    offsets.commit("g", "T", 1, 7)
    offsets.commit("g", "T", 1, -1)  # ignored (ali-ons sends -1)
    assert offsets.query("g", "T", 1) == 7
    assert ConsumerOffsets(tmp_path).query("g", "T", 0) is None  # not flushed yet
    offsets.flush()
    again = ConsumerOffsets(tmp_path)
    assert (again.query("g", "T", 0), again.query("g", "T", 1)) == (12, 7)
    data = json.loads((tmp_path / "consumerOffset.json").read_text())
    assert data == {"offsetTable": {"T@g": {"0": 12, "1": 7}}}


def test_two_acceptors_merge_their_commits(tmp_path: Path) -> None:
    one, two = ConsumerOffsets(tmp_path), ConsumerOffsets(tmp_path)
    one.commit("g", "T", 0, 5)
    one.flush()
    two.commit("g", "T", 1, 9)
    two.flush()  # must keep one's commit
    one.commit("g", "T", 0, 6)
    one.flush()  # must keep two's commit
    final = ConsumerOffsets(tmp_path)
    assert (final.query("g", "T", 0), final.query("g", "T", 1)) == (6, 9)


def test_fastjson_unquoted_queue_ids_are_read(tmp_path: Path) -> None:
    (tmp_path / "consumerOffset.json").write_text('{"offsetTable":{"T@g":{0:3,1:4}}}')
    offsets = ConsumerOffsets(tmp_path)
    assert (offsets.query("g", "T", 0), offsets.query("g", "T", 1)) == (3, 4)
