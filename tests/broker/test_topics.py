"""The topic table: topics.json, auto-creation rules, sharing between processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shmq.broker.errors import IllegalTopic
from shmq.broker.topics import (
    AUTO_CREATE_TOPIC,
    PERM_INHERIT,
    PERM_RW,
    TopicTable,
    check_topic_name,
)
from shmq.protocol import TopicConfig


def table(tmp_path: Path, **kwargs: object) -> TopicTable:
    options: dict[str, object] = {"default_queues": 4, "auto_create": True} | kwargs
    return TopicTable(tmp_path / "config", **options)  # type: ignore[arg-type]


def test_system_topics_exist_and_tbw102_inherits(tmp_path: Path) -> None:
    topics = table(tmp_path, default_queues=8)
    tbw = topics.get(AUTO_CREATE_TOPIC)
    assert tbw is not None and tbw.perm == PERM_INHERIT | PERM_RW and tbw.write_queue_nums == 8
    assert topics.get("SELF_TEST_TOPIC") is not None
    on_disk = json.loads((tmp_path / "config" / "topics.json").read_text())
    assert AUTO_CREATE_TOPIC in on_disk["topicConfigTable"]
    assert on_disk["dataVersion"]["counter"] == topics.data_version.counter >= 1


def test_a_send_creates_the_topic_from_tbw102(tmp_path: Path) -> None:
    topics = table(tmp_path, default_queues=8)
    changes: list[int] = []
    topics.on_change.append(lambda: changes.append(1))
    before = topics.data_version.counter
    created = topics.create_on_send("Orders", AUTO_CREATE_TOPIC, 4)
    assert created == TopicConfig("Orders", 4, 4, PERM_RW)
    assert topics.data_version.counter == before + 1 and changes == [1]
    assert topics.create_on_send("Orders", AUTO_CREATE_TOPIC, 4) == created  # no new version
    assert topics.data_version.counter == before + 1


def test_without_auto_create_there_is_no_tbw102_and_no_creation(tmp_path: Path) -> None:
    table(tmp_path)  # a store that had auto-create on
    topics = table(tmp_path, auto_create=False)
    assert topics.get(AUTO_CREATE_TOPIC) is None
    assert topics.create_on_send("Orders", AUTO_CREATE_TOPIC, 4) is None
    assert topics.get("Orders") is None


@pytest.mark.parametrize("name", ["", " ", "a b", "topic/x", "t" * 128, "ümlaut"])
def test_illegal_topic_names(name: str) -> None:
    with pytest.raises(IllegalTopic):
        check_topic_name(name)


def test_legal_topic_names() -> None:
    for name in ("T", "%RETRY%g", "a|b", "A-b_9", "t" * 127):
        check_topic_name(name)


def test_two_processes_share_the_file(tmp_path: Path) -> None:
    first, second = table(tmp_path), table(tmp_path)
    first.create_on_send("A", AUTO_CREATE_TOPIC, 4)
    assert second.get("A") is not None  # a miss re-reads the file at once
    second.ensure("%RETRY%g")
    first.put(TopicConfig("B", 2, 2, PERM_RW))
    # the file holds both processes' changes and survives a restart
    again = table(tmp_path)
    assert {"A", "B", "%RETRY%g"} <= again.topics().keys()
    assert again.get("%RETRY%g") == TopicConfig("%RETRY%g", 1, 1, PERM_RW)


def test_a_corrupt_file_falls_back_to_the_backup(tmp_path: Path) -> None:
    topics = table(tmp_path)
    topics.put(TopicConfig("Kept", 2, 2, PERM_RW))
    topics.put(TopicConfig("Other", 2, 2, PERM_RW))  # .bak now holds "Kept"
    (tmp_path / "config" / "topics.json").write_text("{not json")
    again = table(tmp_path)
    assert again.get("Kept") is not None
