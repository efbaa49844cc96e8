"""kill -9 of every role under load, and SIGTERM drain: no acknowledged message is lost."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
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
            pid = broker.pid_of(role)
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: broker.pid_of(role) not in (0, pid), 20, f"{role} restarted")
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
