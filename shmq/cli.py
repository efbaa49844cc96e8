"""The `shmq` command line: parse, call one function, print (style.md §2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from shmq import __version__
from shmq.runtime.config import config_options

__all__ = ["main"]


@click.group()
@click.version_option(__version__, prog_name="shmq")
def main() -> None:
    """shmq: a RocketMQ-compatible message broker."""


@main.group()
def store() -> None:
    """Inspect and repair a store directory."""


@store.command("verify")
@click.argument("data_dir", type=click.Path(path_type=Path))
def store_verify(data_dir: Path) -> None:
    """Check DATA_DIR's store read-only; print one JSON object.

    DATA_DIR may be the data directory or its store/ subdirectory. Exit status: 0 consistent,
    1 damage found, 2 bad usage (not a store).
    """
    from shmq.store.verify import verify_store

    root = data_dir / "store" if (data_dir / "store" / "commitlog").is_dir() else data_dir
    try:
        report = verify_store(root)
    except FileNotFoundError as err:
        click.echo(f"shmq store verify: {err}", err=True)
        sys.exit(2)
    click.echo(json.dumps(report.to_dict(), sort_keys=True))
    sys.exit(0 if report.consistent else 1)


@store.command("recover")
@click.argument("data_dir", type=click.Path(path_type=Path, exists=True))
def store_recover(data_dir: Path) -> None:
    """Run crash recovery on a stopped store; print what was repaired as JSON."""
    from shmq.store.config import StoreConfig
    from shmq.store.recovery import recover
    from shmq.store.store import config_for

    root = data_dir / "store" if (data_dir / "store").is_dir() else data_dir
    if not (root / "commitlog").is_dir():
        click.echo(f"shmq store recover: {root} is not a shmq store: no commitlog/ directory",
                   err=True)
        sys.exit(2)
    report = recover(root, config_for(root, StoreConfig(min_free_bytes=0)))
    click.echo(json.dumps(report.to_dict(), sort_keys=True))


@main.group()
def bench() -> None:
    """Benchmarks (one JSON object per run with --json)."""


def _csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


@bench.command("local")
@click.option("--size", "sizes", default="128,1024", help="Body size(s), comma-separated.")
@click.option("--producers", default="1,2", help="Producer process count(s).")
@click.option("--mode", "modes", default="sync,batch", help="sync, batch or both.")
@click.option("--messages", type=int, default=None, help="Messages per run (default by mode).")
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--writers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--low-latency", is_flag=True, help="Writers and producers keep spinning.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def bench_local(sizes: str, producers: str, modes: str, messages: int | None, batch: int,
                runs: int, writers: int, low_latency: bool, as_json: bool) -> None:
    """Same-host produce through shared memory (a real `shmq start`), against a bare ring."""
    from shmq.bench.local import run_matrix

    run_matrix(sizes=_csv_ints(sizes), producers=_csv_ints(producers),
               modes=[m.strip() for m in modes.split(",") if m.strip()], runs=runs,
               messages=messages, batch=batch, low_latency=low_latency, writers=writers,
               as_json=as_json)


@bench.command("tcp")
@click.option("--size", "sizes", default="128,1024", help="Body size(s), comma-separated.")
@click.option("--messages", type=click.IntRange(1), default=20_000, show_default=True,
              help="Messages per send phase (sync, async, batch); consume reads them all.")
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--peers", default="redis,nats", show_default=True,
              help="Peers measured in the same runs: redis, nats, both, or none.")
@click.option("--cpp/--no-cpp", default=True, show_default=True,
              help="Also time the RocketMQ C++ client's send_sync (if rocketmq is installed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def bench_tcp(sizes: str, messages: int, runs: int, peers: str, cpp: bool,
              as_json: bool) -> None:
    """Produce and consume over TCP (a real `shmq start`), against Redis Streams and NATS
    JetStream started by the benchmark."""
    from shmq.bench.peers import PEERS
    from shmq.bench.tcp import run_matrix

    names = [p.strip() for p in peers.split(",") if p.strip() and p.strip() != "none"]
    bad = [p for p in names if p not in PEERS]
    if bad:
        raise click.BadParameter(f"{bad}: use redis, nats or none", param_hint="--peers")
    run_matrix(sizes=_csv_ints(sizes), runs=runs, messages=messages, peers=names, cpp=cpp,
               as_json=as_json)


@bench.command("store")
@click.option("--size", "sizes", default="128,4096", help="Body size(s) in bytes, comma-separated.")
@click.option("--messages", type=int, default=None, help="Messages per run (default by size).")
@click.option("--writers", default="1,2", help="Writer process count(s), comma-separated.")
@click.option("--flush", "flushes", default="async,sync", help="async, sync or both.")
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True)
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to create the temporary stores (default: the system temp dir).")
@click.option("--encode", "encodes", default="writer",
              help="writer (encode + CRC timed in the writer), producer (encoded beforehand, as "
                   "LocalProducer/acceptor do; the writer only appends) or both.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def bench_store(sizes: str, messages: int | None, writers: str, flushes: str, runs: int,
                batch: int, directory: Path | None, encodes: str, as_json: bool) -> None:
    """Append and read-back throughput of the storage engine, against a raw-copy ceiling."""
    from shmq.bench.store import run_matrix
    from shmq.store.config import FlushMode

    modes = [FlushMode(f.strip()) for f in flushes.split(",") if f.strip()]
    which = tuple(e.strip() for e in encodes.split(",") if e.strip())
    bad = [e for e in which if e not in ("writer", "producer")]
    if bad:
        raise click.BadParameter(f"{bad}: use writer, producer or both", param_hint="--encode")
    run_matrix(sizes=_csv_ints(sizes), messages=messages, writers=_csv_ints(writers),
               flushes=modes, runs=runs, batch=batch, as_json=as_json, directory=directory,
               encodes=which)


@main.command("start")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="TOML configuration file. [SHMQ_CONFIG]")
@click.option("--print-config", is_flag=True,
              help="Print the effective configuration (TOML, each value with its source) and "
                   "exit.")
@config_options
def start(config_file: Path | None, print_config: bool,
          config_overrides: dict[str, str]) -> None:
    """Run the whole single-host service in the foreground: recovery, then the name server,
    writers, housekeeper and acceptor under one supervisor. SIGTERM or Ctrl-C drains and stops
    it (exit 0); a second one stops it at once. Exit 1: it could not start, or a process kept
    dying; exit 2: bad configuration.

    Every setting has a flag (below), an SHMQ_* environment variable and a key in the file.
    """
    from shmq.errors import ConfigError
    from shmq.runtime.config import load_config
    from shmq.runtime.logging_setup import configure_logging
    from shmq.runtime.sdnotify import Notifier
    from shmq.runtime.supervisor import AlreadyRunning, start_service

    try:
        config = load_config(config_file, overrides=config_overrides)
    except ConfigError as err:
        click.echo(f"shmq start: {err}", err=True)
        sys.exit(2)
    if print_config:
        click.echo(config.to_toml(), nl=False)
        return
    try:
        configure_logging(config.log)
        with Notifier(unset_environment=True) as notifier:
            code = start_service(config, notifier=notifier)
    except AlreadyRunning as err:
        click.echo(f"shmq start: {err}", err=True)
        sys.exit(1)
    except ConfigError as err:
        click.echo(f"shmq start: {err}", err=True)
        sys.exit(2)
    except OSError as err:
        click.echo(f"shmq start: {err}", err=True)
        sys.exit(1)
    if code != 0 and config.log.file is not None:
        click.echo(f"shmq start: stopped with exit code {code}; see {config.log.file}", err=True)
    sys.exit(code)


@main.command("namesrv")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="TOML configuration file (namesrv.port, "
                                 "namesrv.broker_expiry_s, log). [SHMQ_CONFIG]")
@click.option("--host", default="0.0.0.0", show_default=True,
              help="Address to listen on (127.0.0.1: this host only).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: namesrv.port, 9876); 0 picks a free one.")
def namesrv(config_file: Path | None, host: str, port: int | None) -> None:
    """Run one name server in the foreground, for deployments where brokers and name servers
    run on several hosts (`shmq start` runs its own). Prints "listening on HOST:PORT" once
    ready; SIGTERM or Ctrl-C stops it (exit 0). Exit 1: the address cannot be bound; exit 2:
    bad configuration."""
    from shmq.errors import ConfigError
    from shmq.namesrv.roles import run_standalone
    from shmq.runtime.config import load_config
    from shmq.runtime.logging_setup import configure_logging, set_process_role

    set_process_role("namesrv")
    try:
        config = load_config(config_file)  # --port is applied below: namesrv.port 0 would
        configure_logging(config.log)       # make the derived namesrv.addresses invalid
    except ConfigError as err:
        click.echo(f"shmq namesrv: {err}", err=True)
        sys.exit(2)
    except OSError as err:
        click.echo(f"shmq namesrv: {err}", err=True)
        sys.exit(1)
    port = config.namesrv.port if port is None else port
    try:
        run_standalone(host, port,
                       broker_expiry_s=config.namesrv.broker_expiry_s,
                       max_frame_bytes=config.broker.max_frame_bytes,
                       on_listening=lambda server: click.echo(
                           f"shmq namesrv: listening on {server.address}"))
    except OSError as err:
        click.echo(f"shmq namesrv: cannot listen on {host}:{port}: {err}", err=True)
        sys.exit(1)


@main.command("status")
@click.option("--instance", default=None,
              help="Instance to report on (default: from SHMQ_INSTANCE / SHMQ_CONFIG, else "
                   "'default').")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--cpu-interval", type=click.FloatRange(0.0, 10.0), default=0.2,
              show_default=True, help="Seconds over which CPU use is measured.")
def status(instance: str | None, as_json: bool, cpu_interval: float) -> None:
    """Show the processes, disk use and commit-log position of a running instance (read from
    its shared memory; no network). Exit 1 when the instance is not running."""
    from shmq.errors import ConfigError
    from shmq.runtime.config import load_config
    from shmq.runtime.status import (
        InstanceNotRunning,
        collect_status,
        default_sections,
        format_status,
    )

    try:
        name = instance if instance is not None else load_config().instance
    except ConfigError as err:
        click.echo(f"shmq status: {err}", err=True)
        sys.exit(2)
    try:
        report = collect_status(name, sections=default_sections(), cpu_interval_s=cpu_interval)
    except InstanceNotRunning as err:
        click.echo(f"shmq status: {err}", err=True)
        sys.exit(1)
    except ValueError as err:  # InvalidName: not a possible instance name
        click.echo(f"shmq status: {err}", err=True)
        sys.exit(2)
    click.echo(json.dumps(report, sort_keys=True) if as_json else format_status(report),
               nl=as_json)


if __name__ == "__main__":
    main()
