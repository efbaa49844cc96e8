"""kill -9 of every role under load, and SIGTERM drain: no acknowledged message is lost."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from shmq.client.errors import ClientError
from shmq.client.local import LocalProducer
from shmq.client.local_consumer import LocalConsumer
from shmq.store.verify import verify_store
from shmq.testing.broker import running_broker, wait_until

pytestmark = pytest.mark.integration


def _load(instance: str, ack_path: str, stop_at: float, seed: int) -> None:
    """Send until `stop_at`; append "queue offset body" for every acknowledged message."""
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    rnd = random.Random(seed)
    with LocalProducer(instance, timeout_s=5) as p:
        i = 0
        while time.time() < stop_at:
            body = f"{seed}-{i}".encode()
            i += 1
            try:
                if rnd.random() < 0.3:
                    res = p.send_batch("Load", [body + b"-a", body + b"-b"])
                    lines = [(r.queue_id, r.queue_offset, b) for r, b in
                             zip(res.results, (body + b"-a", body + b"-b"))]
                else:
                    r = p.send("Load", body)
                    lines = [(r.queue_id, r.queue_offset, body)]
            except ClientError:
                continue  # a writer died or restarts: not acknowledged, try the next one
            os.write(fd, "".join(f"{q} {o} {b.decode()}\n" for q, o, b in lines).encode())
    os._exit(0)


def _acked(paths: list[Path]) -> dict[tuple[int, int], str]:
    acked: dict[tuple[int, int], str] = {}
    for path in paths:
        for line in path.read_text().split("\n")[:-1]:
            q, o, body = line.split(" ")
            assert (int(q), int(o)) not in acked, f"two acks for queue {q} offset {o}"
            acked[(int(q), int(o))] = body
    return acked


def _stored(store_dir: Path) -> dict[tuple[int, int], str]:
    out = {}
    with LocalConsumer(store_dir=store_dir) as c:
        for q in range(4):
            offset = 0
            while True:
                res = c.pull("Load", q, offset, max_messages=256)
                out.update({(q, m.queue_offset): bytes(m.body).decode() for m in res.messages})
                if res.next_offset >= res.max_offset:
                    break
                offset = res.next_offset
    return out


def _kill_roles_under_load(tmp_path: Path, rounds: int, seed: int) -> None:
    rnd = random.Random(seed)
    # the soak kills one role more often than the default restart limit allows
    env = {"SHMQ_SUPERVISOR_MAX_RESTARTS": "100"}
    with running_broker(tmp_path, writers=2, env=env) as broker:
        roles = ["writer-0", "writer-1", "housekeeper", "namesrv", "acceptor"]
        acks = [tmp_path / f"ack{i}" for i in range(2)]
        stop_at = time.time() + 3 + rounds * 1.2
        ctx = mp.get_context("fork")
        load = [ctx.Process(target=_load, args=(broker.instance, str(a), stop_at, seed + i))
                for i, a in enumerate(acks)]
        for p in load:
            p.start()
        time.sleep(1)
        for n in range(rounds):
            role = roles[n % len(roles)] if n < len(roles) else rnd.choice(roles)
            # a role being restarted has pid 0 for a moment: never kill(0), it is our group
            pid = wait_until(lambda r=role: broker.pid_of(r), 20, f"{role} running")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it died on its own meanwhile; the supervisor restarts it
                pass
            wait_until(lambda r=role, old=pid: broker.pid_of(r) not in (0, old), 20, f"{role} restarted")
            time.sleep(rnd.uniform(0.3, 1.0))
        for p in load:
            p.join(60)
            assert p.exitcode == 0
        report = broker.status()
        assert report["state"] == "ready"
    acked = _acked(acks)
    assert len(acked) > 100, f"seed={seed}: the load barely ran ({len(acked)} acks)"
    store = broker.data_dir / "store"
    verified = verify_store(store)
    assert verified.consistent, f"seed={seed} {verified.problems}"
    stored = _stored(store)
    missing = {k: v for k, v in acked.items() if stored.get(k) != v}
    assert not missing, f"seed={seed}: {len(missing)} acknowledged messages lost, e.g. " \
                        f"{list(missing.items())[:3]}"


def test_kill_9_of_each_role_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    _kill_roles_under_load(tmp_path, rounds=5, seed=int(os.environ.get("SHMQ_SEED", "7")))


@pytest.mark.slow
def test_kill_9_rounds_soak(tmp_path: Path) -> None:
    _kill_roles_under_load(tmp_path, rounds=25, seed=int(os.environ.get("SHMQ_SEED", "0"))
                           or time.time_ns() % 100_000)


def test_sigterm_drains_and_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    ack = tmp_path / "ack"
    with running_broker(tmp_path, writers=2) as broker:
        ctx = mp.get_context("fork")
        load = ctx.Process(target=_load, args=(broker.instance, str(ack), time.time() + 1.5, 3))
        load.start()
        load.join(30)
        assert load.exitcode == 0
    # running_broker asserted exit code 0 and that no process or segment is left
    acked = _acked([ack])
    assert len(acked) > 50
    stored = _stored(broker.data_dir / "store")
    assert all(stored.get(k) == v for k, v in acked.items())
    assert verify_store(broker.data_dir / "store").consistent


def test_full_ring_blocks_then_fails_clearly_and_nothing_is_dropped(tmp_path: Path) -> None:
    from shmq.client.errors import BrokerBusy

    env = {"SHMQ_RING_BYTES": str(64 << 10)}  # a small ring fills quickly
    with running_broker(tmp_path, writers=1, env=env) as broker:
        with LocalProducer(broker.instance, timeout_s=0.5) as p:
            pid = broker.pid_of("writer-0")
            os.kill(pid, signal.SIGSTOP)
            futures = []
            try:
                with pytest.raises(BrokerBusy, match="stayed full"):
                    for i in range(10_000):
                        futures.append(p.send_async("Full", f"f{i}".encode() * 50))
            finally:
                os.kill(pid, signal.SIGCONT)
            results = [f.result(20) for f in futures]  # everything accepted gets stored
            assert len(results) > 10
        stored = {bytes(m.body) for m in _all(broker.instance, "Full")}
        assert stored == {f"f{i}".encode() * 50 for i in range(len(futures))}


def _all(instance: str, topic: str) -> list:
    out = []
    with LocalConsumer(instance) as c:
        for q in range(4):
            out += c.pull(topic, q, 0, max_messages=100_000).messages
    return out


def _doomed_producer(instance: str, round_no: int) -> None:
    with LocalProducer(instance) as p:
        i = 0
        while True:
            p.send_batch_async("Doomed", [f"r{round_no}d{i}-{k}".encode() * 20
                                          for k in range(16)])
            i += 1
            if i % 8 == 0:
                p.flush(5)


def test_producer_killed_mid_send_leaves_nothing_half_written(tmp_path: Path) -> None:
    with running_broker(tmp_path, writers=2) as broker:
        ctx = mp.get_context("fork")
        for round_no in range(4):
            proc = ctx.Process(target=_doomed_producer, args=(broker.instance, round_no))
            proc.start()
            time.sleep(0.3 + 0.1 * round_no)
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
        # the dead producers' rows are reaped and their rings unlinked by the housekeeper
        wait_until(lambda: not any(r["producer_pid"] for r in broker.status().get("rings", [])),
                   20, "dead producers reaped")
        messages = _all(broker.instance, "Doomed")
        assert messages, "the producers never got a message through"
        batches: dict[bytes, set[int]] = {}
        for m in messages:  # every visible message is whole, and so is every batch
            body = bytes(m.body)
            unit = body[: len(body) // 20]
            match = re.fullmatch(rb"(r\d+d\d+)-(\d+)", unit)
            assert match and unit * 20 == body, body[:80]
            batches.setdefault(match.group(1), set()).add(int(match.group(2)))
        assert all(ks == set(range(16)) for ks in batches.values())
    assert verify_store(broker.data_dir / "store").consistent
