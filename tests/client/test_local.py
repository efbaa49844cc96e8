"""End to end through `shmq start`: local producers publish through shared memory, local
consumers read the store's mappings."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from shmq.client.errors import BrokerNotRunning, SendFailed, WriterGone
from shmq.client.local import LocalProducer, _Outcome
from shmq.client.local_consumer import LocalConsumer
from shmq.client.message import BatchSendResult, Message
from shmq.store.verify import verify_store
from shmq.testing.broker import running_broker, wait_until

pytestmark = pytest.mark.integration


def _read_all(instance: str, topic: str, queues: int = 4, tags: str | None = None) -> list:
    out = []
    with LocalConsumer(instance) as c:
        for q in range(queues):
            offset = 0
            while True:
                res = c.pull(topic, q, offset, max_messages=64, tags=tags)
                out += [(m.queue_id, m.queue_offset, bytes(m.body), m.tags, m.keys,
                         m.properties.get("color"), m.msg_id) for m in res.messages]
                if res.next_offset >= res.max_offset:
                    break
                offset = res.next_offset
    return out


def test_local_produce_then_consume_with_tags(tmp_path: Path) -> None:
    with running_broker(tmp_path) as broker:
        with LocalProducer(broker.instance) as p:
            sent = []
            for i in range(40):
                tag = "A" if i % 3 == 0 else "B"
                r = p.send("Orders", Message(f"m{i}".encode(), tags=tag, keys=[f"k{i}", "x"],
                                             properties={"color": "red"}))
                assert r.status == "SEND_OK" and len(r.offset_msg_id) == 32
                sent.append((r.queue_id, r.queue_offset, f"m{i}".encode(), tag, r.msg_id))
            batch = p.send_batch("Orders", [b"b0", b"b1", b"b2"], queue_id=2)
            assert [s.queue_offset for s in batch.results] == list(
                range(batch.queue_offset, batch.queue_offset + 3))
            futures = [p.send_async("Orders", f"a{i}".encode(), tags="A") for i in range(20)]
            async_results = [f.result(10)[0] for f in futures]
        everything = _read_all(broker.instance, "Orders")
        assert len(everything) == 40 + 3 + 20
        only_a = _read_all(broker.instance, "Orders", tags="A")
        expected_a = {s[2] for s in sent if s[3] == "A"} | {f"a{i}".encode() for i in range(20)}
        assert {m[2] for m in only_a} == expected_a
        first = next(m for m in everything if m[2] == b"m0")
        assert first[3:7] == ("A", ["k0", "x"], "red", sent[0][4])
        assert {(r.queue_id, r.queue_offset) for r in async_results} <= {
            (m[0], m[1]) for m in everything}
    assert verify_store(broker.data_dir / "store").consistent


def test_plain_and_batch_results_name_the_stored_messages(tmp_path: Path) -> None:
    """A plain-bytes send takes a shorter path than a Message send: both answers must name
    the stored message (queue, offset, UNIQ_KEY), and `first()` must equal `[0]`."""
    with running_broker(tmp_path) as broker:
        with LocalProducer(broker.instance) as p:
            plain = [p.send("Named", f"p{i}".encode(), queue_id=1) for i in range(3)]
            tagged = p.send("Named", b"t0", tags="T", queue_id=1)
            batch = p.send_batch("Named", [b"b0", b"b1"], queue_id=1)
            assert batch.first() == batch[0] and batch.first() is batch.results[0]
            fresh = p.send_batch("Named", [b"c0"], queue_id=1)
            assert fresh.first() == fresh.results[0]
        got = {m[2]: m for m in _read_all(broker.instance, "Named")}
        results = [*plain, tagged, *batch.results, fresh.first()]
        for body, r in zip([b"p0", b"p1", b"p2", b"t0", b"b0", b"b1", b"c0"], results):
            assert (r.queue_id, r.queue_offset, r.msg_id) == (got[body][0], got[body][1],
                                                                got[body][6])
        assert len({r.msg_id for r in results}) == len({r.offset_msg_id for r in results}) == 7
        assert [r.queue_offset for r in results] == list(range(7))


def _producer_proc(instance: str, n: int, who: int) -> None:
    with LocalProducer(instance) as p:
        for i in range(n):
            p.send("Multi", f"{who}:{i}".encode(), sharding_key=f"key{who}")
    os._exit(0)


def test_several_producer_processes_keep_per_key_order(tmp_path: Path) -> None:
    with running_broker(tmp_path) as broker:
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=_producer_proc, args=(broker.instance, 300, w))
                 for w in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        got = _read_all(broker.instance, "Multi")
        assert len(got) == 900
        for who in range(3):
            mine = [m for m in got if m[2].startswith(f"{who}:".encode())]
            assert len({m[0] for m in mine}) == 1  # one sharding key -> one queue
            assert [m[2] for m in sorted(mine, key=lambda m: m[1])] == [
                f"{who}:{i}".encode() for i in range(300)]


def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    with running_broker(tmp_path) as broker, LocalProducer(broker.instance) as p:
        with pytest.raises(SendFailed, match="body of 0 bytes"):
            p.send("T", b"")
        with pytest.raises(SendFailed, match="body of"):
            p.send("T", b"x" * ((1 << 20) + 1))
        with pytest.raises(SendFailed, match="illegal topic"):
            p.send("bad topic", b"x")
        with pytest.raises(SendFailed, match="queue 9"):
            p.send("T", b"x", queue_id=9)
        assert p.send("T", b"still fine").status == "SEND_OK"
    with pytest.raises(BrokerNotRunning, match="shmq start"):
        LocalProducer(broker.instance)


def _send_and_note(producer: LocalProducer, outcome: list[str]) -> None:
    try:
        outcome.append("ok" if producer.send("K", b"waited").status == "SEND_OK" else "?")
    except WriterGone:
        outcome.append("gone")


def test_outcome_of_a_waited_send() -> None:
    ok, failed = _Outcome(), _Outcome()
    assert not ok.done() and not failed.done()
    result = BatchSendResult("T", 0, 5, ("HEAD", 1, 1), (100,), "PREFIX")
    ok.set_result(result)
    failed.set_exception(WriterGone("writer-0 died"))
    assert ok.done() and ok.result() is result
    assert failed.done()
    with pytest.raises(WriterGone, match="died"):
        failed.result()


def test_writer_killed_mid_send_fails_in_flight_and_recovers(tmp_path: Path) -> None:
    with running_broker(tmp_path, writers=1) as broker:
        with LocalProducer(broker.instance) as p:
            acked = [p.send("K", f"before{i}".encode()) for i in range(50)]
            pid = broker.pid_of("writer-0")
            os.kill(pid, signal.SIGSTOP)  # freeze it with sends in flight, then kill it
            futures = [p.send_async("K", f"inflight{i}".encode()) for i in range(10)]
            with LocalProducer(broker.instance) as waiting:  # a waited send, in a thread
                waited: list[str] = []
                sender = threading.Thread(target=_send_and_note, args=(waiting, waited))
                sender.start()
                time.sleep(0.2)
                os.kill(pid, signal.SIGKILL)
                sender.join(15)
                assert not sender.is_alive() and waited in (["ok"], ["gone"]), waited
            outcomes = []
            for f in futures:
                try:
                    f.result(15)
                    outcomes.append("ok")
                except WriterGone:
                    outcomes.append("gone")
            # What is checked: every in-flight send ends (no hang) with a clear outcome;
            # result(15) raises TimeoutError otherwise. Either outcome is allowed: the
            # restarted writer may serve requests still waiting in the ring.
            assert len(outcomes) == 10
            wait_until(lambda: broker.pid_of("writer-0") not in (0, pid), 20, "writer restart")
            after = p.send("K", b"after")
            assert after.status == "SEND_OK"
        bodies = {m[2] for m in _read_all(broker.instance, "K")}
        assert {f"before{i}".encode() for i in range(50)} <= bodies and b"after" in bodies
        assert len(acked) == 50
    assert verify_store(broker.data_dir / "store").consistent


def test_status_shows_writers_and_ring_depths(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    with running_broker(tmp_path) as broker, LocalProducer(broker.instance) as p:
        for i in range(30):
            p.send("S", f"s{i}".encode())
        out = subprocess.run([sys.executable, "-m", "shmq.cli", "status", "--instance",
                              broker.instance, "--json"], capture_output=True, text=True,
                             timeout=60, env=broker.env, check=False)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert sum(w["appends"] for w in report["writers"]) == 30
        assert {r["producer_pid"] for r in report["rings"]} == {os.getpid()}
        assert {p["role"] for p in report["processes"]} >= {"writer-0", "writer-1",
                                                            "housekeeper"}


@pytest.mark.parametrize(("spin_us", "max_spin_us"), [("0", 0.0), ("50", 50.0)])
def test_producers_wait_as_the_broker_is_configured(tmp_path: Path, spin_us: str,
                                                    max_spin_us: float) -> None:
    with running_broker(tmp_path, writers=1, env={"SHMQ_RING_SPIN_US": spin_us}) as broker, \
            LocalProducer(broker.instance) as p:
        assert p.wait_policy.max_spin_us == max_spin_us
        assert not p.wait_policy.max_spin_us or p.wait_policy.yield_while_spinning
        results = [p.send("Spin", b"%d" % i, queue_id=0) for i in range(50)]
        assert [r.queue_offset for r in results] == list(range(50))


def test_queue_selector_chooses_the_queue(tmp_path: Path) -> None:
    with running_broker(tmp_path, writers=1) as broker, LocalProducer(broker.instance) as p:
        seen = []
        r = p.send("Sel", b"x", queue_id=lambda n: seen.append(n) or n - 1)
        assert seen == [4] and r.queue_id == 3
        assert {p.send("Sel", b"y", sharding_key="same").queue_id for _ in range(5)} == {
            p.send("Sel", b"z", sharding_key="same").queue_id}
