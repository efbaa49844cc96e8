"""The `shmq` command line: parse, call one function, print (style.md §2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from shmq import __version__
from shmq.clitools.common import cli_errors, json_option, namesrv_option, show
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


@bench.command("client")
@click.option("--size", "sizes", default="128,1024", help="Body size(s), comma-separated.")
@click.option("--messages", type=click.IntRange(1), default=20_000, show_default=True,
              help="Messages per phase (sync, async, batch, consume), for each client.")
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def bench_client(sizes: str, messages: int, runs: int, as_json: bool) -> None:
    """shmq's Python client next to the RocketMQ C++ client (rocketmq==0.4.4): sync, async and
    batch sends and push consumption against the same broker (a real `shmq start`) in the same
    run, each client in its own processes. Exit 1 if a run fails."""
    from shmq.bench.client import BenchFailed, run_matrix

    try:
        run_matrix(sizes=_csv_ints(sizes), runs=runs, messages=messages, as_json=as_json)
    except BenchFailed as err:
        click.echo(f"shmq bench client: {err}", err=True)
        sys.exit(1)


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



# -- clients: produce, consume, admin (logic in shmq/clitools) ----------------------------------


def _properties(pairs: tuple[str, ...]) -> dict[str, str]:
    props = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--property")
        props[key] = value
    return props


@main.command("produce")
@click.argument("topic")
@click.option("-c", "--count", type=click.IntRange(1), default=None,
              help="Messages to send (default 1, or every line with --stdin).")
@click.option("-b", "--body", default=None, help='Body text of every message; "{i}" becomes '
              "the message number (default: \"message {i}\").")
@click.option("-s", "--size", type=int, default=None, help="Bodies of exactly SIZE bytes.")
@click.option("--stdin", "from_stdin", is_flag=True, help="One body per line of stdin.")
@click.option("-t", "--tags", default=None, help="The messages' tag.")
@click.option("-k", "--keys", default=None,
              help='Business keys (space-separated; "{i}" becomes the message number).')
@click.option("-p", "--property", "props", multiple=True, metavar="KEY=VALUE",
              help="A user property (repeatable).")
@click.option("-r", "--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="At most this many messages per second.")
@click.option("--delay-level", type=click.IntRange(1, 18), default=None,
              help="Deliver after that delay level (1: 1 s ... 18: 2 h).")
@click.option("-g", "--group", default="shmq-cli-producer", show_default=True,
              help="Producer group.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=3.0, show_default=True, help="Seconds one send may take.")
@click.option("-q", "--quiet", is_flag=True, help="No line per message, only the summary.")
@namesrv_option
@cli_errors
def produce(topic: str, count: int | None, body: str | None, size: int | None,
            from_stdin: bool, tags: str | None, keys: str | None, props: tuple[str, ...],
            rate: float | None, delay_level: int | None, group: str, timeout_s: float,
            quiet: bool, namesrv: str) -> None:
    """Send messages to TOPIC; print one JSON line per message sent (status, msgId,
    offsetMsgId, queue, offset) and a summary on stderr. Stops at the first failure."""
    from shmq.clitools import messages

    payloads, total = messages.bodies(body=body, size=size, stdin=from_stdin, count=count)
    summary = messages.produce(namesrv, topic, payloads, count=total, tags=tags, keys=keys,
                               properties=_properties(props), rate=rate,
                               delay_level=delay_level, group=group, timeout_s=timeout_s,
                               emit=None if quiet else click.echo)
    click.echo(summary.text(), err=True)


@main.command("consume")
@click.argument("topic")
@click.option("-g", "--group", default="shmq-cli-consumer", show_default=True,
              help="Consumer group (its offsets are committed as messages are printed).")
@click.option("-e", "--tags", "expression", default="*", show_default=True,
              help='Tag expression: "*", "A", "A || B".')
@click.option("-c", "--count", type=click.IntRange(1), default=None,
              help="Stop after this many messages.")
@click.option("--timeout", "idle_timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=None, help="Stop after this many seconds without a message "
                                 "(default: run until --count or Ctrl-C).")
@click.option("--broadcasting", is_flag=True,
              help="Read every queue (broadcasting model; offsets in a local file).")
@click.option("--offset-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where broadcasting offsets are kept (default ~/.shmq_offsets).")
@click.option("--from-beginning", is_flag=True,
              help="A group without offsets starts at each queue's first message (default: "
                   "at its end).")
@click.option("--no-commit", is_flag=True, help="Only look: leave the group's offsets as "
                                                "they were.")
@click.option("-q", "--quiet", is_flag=True, help="No line per message, only the summary.")
@namesrv_option
@cli_errors
def consume(topic: str, group: str, expression: str, count: int | None,
            idle_timeout_s: float | None, broadcasting: bool, offset_dir: Path | None,
            from_beginning: bool, no_commit: bool, quiet: bool, namesrv: str) -> None:
    """Read TOPIC as a member of a consumer group; print one JSON line per message (topic,
    queue, offset, msgId, tags, keys, properties, body as text or base64) and a summary on
    stderr. Exit 130 when interrupted (after committing what was printed)."""
    from shmq.clitools import messages
    from shmq.clitools.common import EXIT_INTERRUPTED

    summary = messages.consume(namesrv, topic, group=group, expression=expression,
                               count=count, idle_timeout_s=idle_timeout_s,
                               broadcasting=broadcasting, from_beginning=from_beginning,
                               commit=not no_commit, offset_dir=offset_dir,
                               emit=None if quiet else click.echo)
    click.echo(summary.text(), err=True)
    if summary.interrupted:
        sys.exit(EXIT_INTERRUPTED)


@main.group("admin")
def admin() -> None:
    """Operator commands (mqadmin's): clusters, brokers, topics, consumer groups, messages.
    Every command takes -n/--namesrv (default $SHMQ_NAMESRV, else 127.0.0.1:9876) and --json.
    Exit status 1 when the operation fails (unreachable server, unknown topic or group, message
    not found), 2 on bad usage."""


def _admin(namesrv: str, command: Any, as_json: bool) -> None:
    """Run one `shmq.clitools.admin` coroutine function and print its output."""
    from shmq.clitools import admin as commands

    show(commands.run(namesrv, command), as_json)


@admin.group("cluster")
def admin_cluster() -> None:
    """Clusters and their brokers."""


@admin_cluster.command("list")
@namesrv_option
@json_option
@cli_errors
def cluster_list(namesrv: str, as_json: bool) -> None:
    """Every cluster and broker, with version and store position (mqadmin clusterList)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, commands.cluster_list, as_json)


@admin.group("broker")
def admin_broker() -> None:
    """One broker's runtime figures and configuration."""


_broker_option = click.option("-b", "--broker", default=None, metavar="NAME|HOST:PORT",
                              help="Broker name or address (default: every master).")


@admin_broker.command("status")
@_broker_option
@namesrv_option
@json_option
@cli_errors
def broker_status(broker: str | None, namesrv: str, as_json: bool) -> None:
    """Runtime info (GET_BROKER_RUNTIME_INFO; mqadmin brokerStatus)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.broker_status(a, broker), as_json)


@admin_broker.command("config")
@_broker_option
@namesrv_option
@json_option
@cli_errors
def broker_config(broker: str | None, namesrv: str, as_json: bool) -> None:
    """Configuration (GET_BROKER_CONFIG; mqadmin getBrokerConfig)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.broker_config(a, broker), as_json)


@admin.group("topic")
def admin_topic() -> None:
    """Create, change, delete and inspect topics."""


@admin_topic.command("list")
@namesrv_option
@json_option
@cli_errors
def topic_list(namesrv: str, as_json: bool) -> None:
    """Every topic the name servers know (mqadmin topicList)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, commands.topic_list, as_json)


@admin_topic.command("route")
@click.argument("topic")
@namesrv_option
@json_option
@cli_errors
def topic_route(topic: str, namesrv: str, as_json: bool) -> None:
    """TOPIC's brokers and queue counts (mqadmin topicRoute)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.topic_route(a, topic), as_json)


@admin_topic.command("status")
@click.argument("topic")
@namesrv_option
@json_option
@cli_errors
def topic_status(topic: str, namesrv: str, as_json: bool) -> None:
    """Per queue: min and max offset, time of the last message (mqadmin topicStatus)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.topic_status(a, topic), as_json)


def _queue_options(fn: Any) -> Any:
    for option in reversed([
        click.option("-q", "--queues", type=click.IntRange(1, 1024), default=None,
                     help="Read and write queue count."),
        click.option("-r", "--read-queues", type=click.IntRange(1, 1024), default=None),
        click.option("-w", "--write-queues", type=click.IntRange(1, 1024), default=None),
        click.option("-p", "--perm", type=click.Choice(["RW", "R", "W", "6", "4", "2"]),
                     default=None, help="Permission: RW (6), R (4), W (2)."),
    ]):
        fn = option(fn)
    return fn


def _spec(queues: int | None, read_queues: int | None, write_queues: int | None,
          perm: str | None, order: bool = False) -> Any:
    from shmq.client.admin import TopicSpec

    perms = {"RW": 6, "R": 4, "W": 2}
    return TopicSpec(read_queues or queues, write_queues or queues,
                     None if perm is None else perms.get(perm) or int(perm), order)


@admin_topic.command("create")
@click.argument("topic")
@_queue_options
@click.option("--order", is_flag=True, help="A globally ordered topic (ORDER_TOPIC_CONFIG).")
@click.option("-c", "--cluster", default=None, help="Create on every master of this cluster.")
@_broker_option
@namesrv_option
@json_option
@cli_errors
def topic_create(topic: str, queues: int | None, read_queues: int | None,
                 write_queues: int | None, perm: str | None, order: bool, cluster: str | None,
                 broker: str | None, namesrv: str, as_json: bool) -> None:
    """Create TOPIC (default: 4 queues, RW, on every master) and wait until the name
    servers route it (mqadmin updateTopic)."""
    from shmq.clitools import admin as commands

    spec = _spec(queues, read_queues, write_queues, perm, order)
    _admin(namesrv, lambda a: commands.topic_create(a, topic, spec, broker, cluster), as_json)


@admin_topic.command("update")
@click.argument("topic")
@_queue_options
@namesrv_option
@json_option
@cli_errors
def topic_update(topic: str, queues: int | None, read_queues: int | None,
                 write_queues: int | None, perm: str | None, namesrv: str,
                 as_json: bool) -> None:
    """Change an existing TOPIC's queue counts or permission on all its brokers."""
    from shmq.clitools import admin as commands

    spec = _spec(queues, read_queues, write_queues, perm)
    _admin(namesrv, lambda a: commands.topic_update(a, topic, spec), as_json)


@admin_topic.command("delete")
@click.argument("topic")
@namesrv_option
@json_option
@cli_errors
def topic_delete(topic: str, namesrv: str, as_json: bool) -> None:
    """Delete TOPIC from its brokers and the name servers (mqadmin deleteTopic); its
    messages age out with retention."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.topic_delete(a, topic), as_json)


@admin.group("consumer")
def admin_consumer() -> None:
    """Consumer groups: progress, connections, running info, offset resets."""


@admin_consumer.command("progress")
@click.argument("group")
@click.option("-t", "--topic", default=None, help="Only this topic.")
@namesrv_option
@json_option
@cli_errors
def consumer_progress(group: str, topic: str | None, namesrv: str, as_json: bool) -> None:
    """Per queue: broker offset, GROUP's offset and the lag; totals (mqadmin
    consumerProgress)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.consumer_progress(a, group, topic), as_json)


@admin_consumer.command("connections")
@click.argument("group")
@namesrv_option
@json_option
@cli_errors
def consumer_connections(group: str, namesrv: str, as_json: bool) -> None:
    """GROUP's live clients and subscriptions (mqadmin consumerConnection)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.consumer_connections(a, group), as_json)


@admin_consumer.command("running-info")
@click.argument("group")
@click.option("--client-id", default=None, help="Only this client (default: every one).")
@click.option("--jstack", is_flag=True, help="Also the clients' thread stacks.")
@namesrv_option
@json_option
@cli_errors
def consumer_running_info(group: str, client_id: str | None, jstack: bool, namesrv: str,
                          as_json: bool) -> None:
    """What GROUP's clients report about themselves: settings, subscriptions, queues
    (GET_CONSUMER_RUNNING_INFO; mqadmin consumerStatus)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.consumer_running_info(a, group, client_id, jstack),
           as_json)


@admin_consumer.command("reset-offset")
@click.argument("group")
@click.argument("topic")
@click.option("-s", "--timestamp", "when", required=True,
              help="Epoch ms, an ISO 8601 date-time, or 'now' (skip everything).")
@click.option("--force/--no-force", default=True, show_default=True,
              help="--no-force only moves offsets back.")
@namesrv_option
@json_option
@cli_errors
def consumer_reset_offset(group: str, topic: str, when: str, force: bool, namesrv: str,
                          as_json: bool) -> None:
    """Move GROUP's offsets on TOPIC to the messages stored at a time; live consumers are
    told and consume from there (mqadmin resetOffsetByTime)."""
    from shmq.clitools import admin as commands
    from shmq.clitools.common import parse_timestamp

    timestamp_ms = parse_timestamp(when)
    _admin(namesrv, lambda a: commands.consumer_reset_offset(a, group, topic, timestamp_ms,
                                                             force), as_json)


@admin.group("message")
def admin_message() -> None:
    """Find and print messages by id, key or queue offset."""


@admin_message.command("id")
@click.argument("msg_id")
@click.option("-t", "--topic", default=None,
              help="The topic (needed for a client msgId, the UNIQ_KEY producers return).")
@namesrv_option
@json_option
@cli_errors
def message_id(msg_id: str, topic: str | None, namesrv: str, as_json: bool) -> None:
    """Print the message with MSG_ID: a client msgId (with --topic) or an offset msgId
    (mqadmin queryMsgById)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.message_by_id(a, msg_id, topic), as_json)


@admin_message.command("key")
@click.argument("topic")
@click.argument("key")
@click.option("--max", "max_num", type=click.IntRange(1, 64), default=32, show_default=True)
@namesrv_option
@json_option
@cli_errors
def message_key(topic: str, key: str, max_num: int, namesrv: str, as_json: bool) -> None:
    """Print TOPIC's messages with business key KEY (mqadmin queryMsgByKey)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.message_by_key(a, topic, key, max_num), as_json)


@admin_message.command("offset")
@click.argument("topic")
@click.argument("queue_id", type=click.IntRange(0))
@click.argument("offset", type=click.IntRange(0))
@click.option("--broker-name", default=None,
              help="The queue's broker (needed when several serve TOPIC).")
@namesrv_option
@json_option
@cli_errors
def message_offset(topic: str, queue_id: int, offset: int, broker_name: str | None,
                   namesrv: str, as_json: bool) -> None:
    """Print the message at OFFSET of queue QUEUE_ID of TOPIC (mqadmin queryMsgByOffset)."""
    from shmq.clitools import admin as commands

    _admin(namesrv, lambda a: commands.message_by_offset(a, topic, queue_id, offset,
                                                         broker_name), as_json)


if __name__ == "__main__":
    main()
