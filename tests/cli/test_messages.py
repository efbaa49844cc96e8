"""`shmq produce`, `shmq consume` and `shmq admin message ...` against a real broker."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from .helpers import Shmq, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_produce_prints_a_json_line_per_message_and_a_summary(shmq: Shmq) -> None:
    result = shmq("produce", "CliProduce", "-c", "3", "-t", "A", "-k", "key-{i}",
                  "-p", "origin=test", "-b", "hello {i}")
    sent = [line for line in result.stdout.splitlines() if line]
    assert len(sent) == 3
    rows = [json.loads(line) for line in sent]
    assert {r["status"] for r in rows} == {"SEND_OK"}
    assert {r["topic"] for r in rows} == {"CliProduce"}
    assert len({r["msgId"] for r in rows}) == 3 and all(len(r["offsetMsgId"]) == 32 for r in rows)
    assert all(isinstance(r["queue"], int) and isinstance(r["offset"], int) for r in rows)
    assert "sent 3 messages (21 body bytes) to CliProduce" in result.stderr


def test_consumed_messages_come_out_as_json_lines(shmq: Shmq) -> None:
    sent = shmq.lines("produce", "CliConsume", "-c", "4", "-t", "T1", "-k", "k{i} other",
                      "-p", "n=v", "-b", "body {i}")
    got = shmq.lines("consume", "CliConsume", "-g", "cli-consume", "-c", "4")
    assert sorted(m["body"] for m in got) == [f"body {i}" for i in range(4)]
    assert {m["msgId"] for m in got} == {s["msgId"] for s in sent}
    by_id = {s["msgId"]: s for s in sent}
    for m in got:
        assert (m["queue"], m["offset"]) == (by_id[m["msgId"]]["queue"],
                                             by_id[m["msgId"]]["offset"])
        assert m["topic"] == "CliConsume" and m["tags"] == "T1" and m["bodyEncoding"] == "text"
        assert m["keys"] == [f"k{m['body'][-1]}", "other"]
        assert m["properties"]["n"] == "v" and m["properties"]["UNIQ_KEY"] == m["msgId"]
        assert m["storeTimestamp"] >= m["bornTimestamp"] > 0


def test_stdin_bodies_and_binary_bodies_as_base64(shmq: Shmq) -> None:
    result = shmq("produce", "CliStdin", "--stdin", "-q", input=b"first\n\xff\xfe\x00\n\nlast\n")
    assert result.stdout == "" and "sent 3 messages" in result.stderr  # the empty line is skipped
    got = shmq.lines("consume", "CliStdin", "-g", "cli-stdin", "-c", "3")
    bodies = {m["bodyEncoding"]: [] for m in got}
    for m in got:
        bodies[m["bodyEncoding"]].append(m["body"])
    assert sorted(bodies["text"]) == ["first", "last"]
    assert [base64.b64decode(b) for b in bodies["base64"]] == [b"\xff\xfe\x00"]


def test_size_and_rate(shmq: Shmq) -> None:
    started = time.monotonic()
    shmq("produce", "CliSized", "-s", "100", "-c", "6", "--rate", "50", "-q")
    assert time.monotonic() - started >= 5 / 50  # six messages at 50/s: at least 0.1 s
    got = shmq.lines("consume", "CliSized", "-g", "cli-sized", "-c", "6")
    assert sorted(len(m["body"]) for m in got) == [100] * 6
    assert all(m["body"].startswith("message ") for m in got)


def test_a_tag_expression_filters(shmq: Shmq) -> None:
    for tag in ("A", "B", "C"):
        shmq("produce", "CliTags", "-c", "2", "-t", tag, "-b", f"{tag}{{i}}", "-q")
    got = shmq.lines("consume", "CliTags", "-g", "cli-tags", "-e", "A || C", "--timeout", "2")
    assert sorted(m["body"] for m in got) == ["A0", "A1", "C0", "C1"]


def test_committed_offsets_and_no_commit(shmq: Shmq) -> None:
    shmq("produce", "CliCommit", "-c", "3", "-q")
    looked = shmq.lines("consume", "CliCommit", "-g", "cli-commit", "--no-commit",
                        "--timeout", "2")
    assert len(looked) == 3
    first = shmq("consume", "CliCommit", "-g", "cli-commit", "--timeout", "2")
    assert len(first.stdout.splitlines()) == 3 and "offsets committed" in first.stderr
    again = shmq("consume", "CliCommit", "-g", "cli-commit", "--timeout", "1")
    assert again.stdout == "" and "received 0 messages" in again.stderr


def test_broadcasting_reads_every_queue_and_keeps_offsets_locally(shmq: Shmq,
                                                                  tmp_path: Path) -> None:
    shmq("produce", "CliBroadcast", "-c", "5", "-q")
    one, two = tmp_path / "one", tmp_path / "two"
    for where in (one, two):  # two members of one broadcasting group: each reads everything
        got = shmq.lines("consume", "CliBroadcast", "-g", "cli-bc", "--broadcasting",
                         "--offset-dir", str(where), "--from-beginning", "-c", "5")
        assert sorted(m["body"] for m in got) == [f"message {i}" for i in range(5)]
        assert (where / "cli-bc" / "offsets.json").is_file()
    rest = shmq("consume", "CliBroadcast", "-g", "cli-bc", "--broadcasting", "--offset-dir",
                str(one), "--timeout", "1")
    assert rest.stdout == ""


def test_query_by_key_id_and_offset(shmq: Shmq) -> None:
    sent = shmq.lines("produce", "CliQuery", "-c", "3", "-k", "order-{i}", "-t", "Q",
                      "-b", "payload {i}")
    # the key index is built behind the writers (every flush interval): wait for it
    wait_for(lambda: shmq("admin", "message", "key", "CliQuery", "order-2", code=None)
             .exit_code == 0, 10, "the key index")
    found = shmq.json("admin", "message", "key", "CliQuery", "order-1")
    assert [m["body"] for m in found] == ["payload 1"] and found[0]["keys"] == ["order-1"]
    assert found[0]["msgId"] == sent[1]["msgId"]

    by_uniq = shmq.json("admin", "message", "id", sent[2]["msgId"], "-t", "CliQuery")
    assert [m["body"] for m in by_uniq] == ["payload 2"]
    by_offset_id = shmq.json("admin", "message", "id", sent[0]["offsetMsgId"])
    assert [m["body"] for m in by_offset_id] == ["payload 0"]
    assert by_offset_id[0]["offsetMsgId"] == sent[0]["offsetMsgId"]

    at = shmq.json("admin", "message", "offset", "CliQuery", str(sent[1]["queue"]),
                   str(sent[1]["offset"]))
    assert [m["body"] for m in at] == ["payload 1"] and at[0]["tags"] == "Q"

    text = shmq("admin", "message", "id", sent[1]["offsetMsgId"]).stdout
    assert "Body (9 bytes, text):" in text and "payload 1" in text and "order-1" in text


def test_message_lookups_that_find_nothing_fail_with_one_line(shmq: Shmq) -> None:
    shmq("produce", "CliMissing", "-c", "1", "-q")
    out = shmq("admin", "message", "key", "CliMissing", "no-such-key", code=1)
    assert out.stdout == "" and out.stderr.strip() == (
        "shmq admin message key: no message with key 'no-such-key' in topic 'CliMissing'")
    out = shmq("admin", "message", "offset", "CliMissing", "0", "99", code=1)
    assert "no message at offset 99" in out.stderr and len(out.stderr.splitlines()) == 1
    out = shmq("admin", "message", "id", "C0A80001000000000000000000001234", code=1)
    assert "give the topic" in out.stderr and len(out.stderr.splitlines()) == 1


def test_conflicting_body_options_are_a_usage_error(shmq: Shmq) -> None:
    out = shmq("produce", "CliBad", "-b", "x", "-s", "4", code=2)
    assert "give only one of --body, --size and --stdin" in out.stderr
