"""The broker's process roles, as the supervisor (runtime/supervisor.py) runs them.

`setup(config)` runs in the supervisor after crash recovery and before any fork: it creates the
write path's shared memory and returns the teardown. `writer_main` and `housekeeper_main` are
role main functions (runtime/roles.py); `on_writer_death` runs in the supervisor when a writer
died, before it is restarted.

This package cannot import runtime/, so the config and the role context are described here by
the few attributes used (`_Config`, `_Context`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from shmq.errors import ShmqError
from shmq.ipc.registry import BrokerShm, create_broker_shm, publish_info
from shmq.ipc.wakeup import WaitPolicy
from shmq.ipc.wakeup import wait_policy as ipc_wait_policy
from shmq.store.config import StoreConfig
from shmq.store.prefault import Prefaulter
from shmq.store.retention import apply_retention
from shmq.store.store import MessageStore, config_for

__all__ = [
    "acceptor_main", "housekeeper_main", "on_writer_death", "setup", "status_sections",
    "wait_policy", "writer_main",
]

log = logging.getLogger(__name__)

#: Claim-table slots: writers use 0..W-1, the housekeeper (flush, abandon) the last one.
_RETENTION_EVERY_S = 60.0


class _Config(Protocol):
    instance: str
    data_dir: Path
    writers: int
    ring: Any
    broker: Any
    store: Any

    def store_config(self) -> StoreConfig: ...


class _Context(Protocol):
    @property
    def config(self) -> Any: ...
    @property
    def index(self) -> int: ...
    def should_stop(self) -> bool: ...
    def is_fast_stop(self) -> bool: ...
    def heartbeat(self) -> None: ...
    def set_ready(self) -> None: ...


def store_root(config: _Config) -> Path:
    return Path(config.data_dir) / "store"


def _store_config(config: _Config) -> StoreConfig:
    return config_for(store_root(config), config.store_config())


def wait_policy(config: _Config) -> WaitPolicy:
    """How writers wait (and local producers: `publish_info` passes the settings on)."""
    return ipc_wait_policy(config.ring.spin_us, config.ring.low_latency)


def setup(config: _Config) -> Callable[[], None]:
    """Create the write path's shared memory; return the function that removes it."""
    shm = create_broker_shm(config.instance, config.writers, config.ring.max_producers)
    scfg = _store_config(config)
    info = publish_info(config.instance, {
        "instance": config.instance, "store_dir": str(store_root(config)),
        "writers": config.writers, "ring_bytes": config.ring.bytes,
        "low_latency": bool(config.ring.low_latency), "spin_us": config.ring.spin_us,
        "store_host": scfg.store_host,
        "store_port": scfg.store_port, "default_queues": config.broker.default_queues,
        "max_body_bytes": config.broker.max_body_bytes,
        "segment_bytes": scfg.segment_bytes, "cq_entries_per_file": scfg.cq_entries_per_file,
    })

    def teardown() -> None:
        shm.reap_dead_producers()
        shm.detach()
        info.detach()

    return teardown


def writer_main(ctx: _Context) -> None:
    """Role ``writer-<i>``: append what local producers and the acceptor send."""
    from shmq.broker.writer import Writer

    cfg = ctx.config
    store = MessageStore(store_root(cfg), _store_config(cfg), writer_slot=ctx.index)
    writer = Writer(cfg.instance, ctx.index, store, policy=wait_policy(cfg),
                    max_body_bytes=cfg.broker.max_body_bytes)
    try:
        ctx.set_ready()
        writer.run(ctx.should_stop, ctx.heartbeat)
    finally:
        writer.close()
        store.close()


def acceptor_main(ctx: _Context) -> None:
    """Role ``acceptor``: the RocketMQ remoting protocol for remote clients (broker/acceptor.py):
    sends go to the writers through shared-memory rings, pulls read the store directly."""
    from shmq.broker.acceptor import run_acceptor
    from shmq.remoting import run_loop

    cfg = ctx.config
    run_loop(run_acceptor(ctx, store_root(cfg), _store_config(cfg), wait_policy(cfg)))


def housekeeper_main(ctx: _Context) -> None:
    """Role ``housekeeper``: flush + checkpoint, index, retention, segment prefaulting, and
    reaping dead producers' rings. On stop: a last flush."""
    cfg = ctx.config
    scfg = _store_config(cfg)
    slot = scfg.writer_slots - 1
    store = MessageStore(store_root(cfg), scfg, writer_slot=slot)
    prefaulter = Prefaulter(store_root(cfg), scfg)
    shm = BrokerShm.attach(cfg.instance)
    interval = scfg.flush_interval_ms / 1000
    last_retention = time.monotonic()
    try:
        ctx.set_ready()
        while not ctx.should_stop():
            started = time.monotonic()
            store.flush()
            store.build_index()
            shm.reap_dead_producers()
            if started - last_retention > _RETENTION_EVERY_S:
                report = apply_retention(store)
                if report.segments_deleted:
                    log.info("retention deleted segments %s (%s)", report.segments_deleted,
                             ", ".join(sorted(set(report.reasons))))
                last_retention = started
            while prefaulter.step() and not ctx.should_stop():
                ctx.heartbeat()
            ctx.heartbeat()
            _sleep_until(started + interval, ctx.should_stop)
        if not ctx.is_fast_stop():
            store.flush()
            store.build_index()
    finally:
        shm.detach()
        prefaulter.close()
        store.close()


def _sleep_until(deadline: float, should_stop: Callable[[], bool]) -> None:
    while not should_stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def on_writer_death(config: _Config, index: int) -> None:
    """Before a dead writer is restarted: settle its in-flight claim.

    A claim still PENDING becomes a blank (nothing in it was acknowledged). A published one
    (the writer died between publishing and releasing) keeps its records; the consume-queue
    entries they may lack are written here, since nobody else writes that writer's queues.
    """
    from shmq.store.recovery import settle_claim

    settled = settle_claim(store_root(config), _store_config(config), index)
    if settled is not None:
        log.warning("writer-%d died with a claim in flight: %s", index, settled)


def status_sections() -> list[Callable[[str, Any], dict[str, Any]]]:
    """Extra sections of `shmq status`: per-writer counters and rates, ring depths."""
    return [write_path_status]


def write_path_status(instance: str, _info: Any, sample_s: float = 0.2) -> dict[str, Any]:
    """Writers (appends, bytes, appends/s over `sample_s`) and each producer ring's depth."""
    from shmq.ipc.registry import ring_name
    from shmq.ipc.ring import Ring

    shm = BrokerShm.attach(instance)
    try:
        before = shm.stats.array.copy()
        time.sleep(sample_s)
        after = shm.stats.array.copy()
        writers = [{
            "writer": i, "pid": int(after[i]["pid"]), "appends": int(after[i]["appends"]),
            "bytes": int(after[i]["bytes"]), "batches": int(after[i]["batches"]),
            "rejects": int(after[i]["rejects"]), "errors": int(after[i]["errors"]),
            "producers": int(after[i]["producers"]),
            "appends_per_s": round(int(after[i]["appends"] - before[i]["appends"]) / sample_s),
        } for i in range(shm.writers)]
        rings = []
        rows = shm.registry.array
        for row in range(len(rows)):
            pid, gen = int(rows[row]["pid"]), int(rows[row]["generation"])
            if not pid:
                continue
            for w in range(shm.writers):
                try:
                    with Ring.attach(instance, ring_name(row, gen, w, "req")) as ring:
                        stats = ring.statistics()
                except ShmqError:
                    continue
                rings.append({"producer_pid": pid, "writer": w, "depth_bytes": stats.used_bytes,
                              "capacity_bytes": stats.capacity_bytes})
        return {"writers": writers, "rings": rings}
    finally:
        shm.detach()
