"""The service configuration: one table of settings, validated once into a frozen `Config`.

Theory of operation
-------------------
`SETTINGS` is the only place a setting is described: its dotted name (the TOML key: `store.flush`
is `flush` in the `[store]` table), its type, its default, its unit, the rule it must obey and a
one-paragraph description. Everything else is derived from that table:

* the TOML file reader (`[section]` tables; an unknown key is an error with a suggestion),
* the environment overrides (`store.segment_bytes` is `SHMQ_STORE_SEGMENT_BYTES`),
* the command-line overrides (a dict keyed by setting name, from `config_options` or any caller),
* `Config.to_toml()` (the effective configuration, which reads back to an equal `Config`),
* `config_reference_markdown()`, committed as docs/config.md (a test keeps it fresh).

`load_config` layers the sources, lowest first: default, file, environment, command line. Each
value is parsed according to its type and unit (sizes accept "64MiB", durations "500ms" or a plain
number in the unit of the name), checked against its rule, and then `CONSTRAINTS` (rules between
settings) are checked on the whole. A failure raises `InvalidSetting`, a `ConfigError` whose
message names the key, the value as given, where it came from and the rule; nothing else happens
(no file or directory is created). Defaults may depend on other settings (`data_dir` on
`instance`); such settings come after the ones they depend on in the table.

The result is a frozen, slotted `Config` with one section per TOML table. It is built once by the
supervisor (or a single-role command) and passed down explicitly; there are no module globals to
read it from. `Config.store_config()` turns it into the storage engine's `StoreConfig`.
"""

from __future__ import annotations

import builtins
import difflib
import enum
import functools
import ipaddress
import logging
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

import click

from shmq.errors import ConfigError
from shmq.ipc.layout import MAX_CAPACITY, MIN_CAPACITY
from shmq.message.layout import (
    BLANK_MIN_BYTES,
    BORNHOST_V6_FLAG,
    MAX_PROPERTIES_BYTES,
    MAX_TOPIC_BYTES,
    STOREHOSTADDRESS_V6_FLAG,
    record_size,
)
from shmq.protocol.layout import LENGTH_PREFIX_BYTES, MAX_TOTAL_LENGTH
from shmq.store.config import FlushMode, StoreConfig

__all__ = [
    "CONSTRAINTS",
    "ENV_ALLOWED",
    "ENV_PREFIX",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "BrokerSection",
    "Check",
    "Config",
    "Constraint",
    "Derived",
    "InvalidSetting",
    "LogLevel",
    "LogSection",
    "NamesrvSection",
    "RingSection",
    "Setting",
    "Source",
    "SourceKind",
    "StoreSection",
    "SupervisorSection",
    "TransactionSection",
    "config_options",
    "config_reference_markdown",
    "load_config",
    "parse_duration",
    "parse_size",
]

ENV_PREFIX: Final = "SHMQ_"  #: only environment variables starting with this are looked at
#: SHMQ_ variables that are not settings: the config file path and the tests' random seed.
#: SHMQ_EVENT_LOOP chooses the event loop (shmq.remoting.eventloop), in clients too;
#: SHMQ_NAMESRV names the name servers of the client commands (shmq produce/consume/admin)
ENV_ALLOWED: Final = frozenset({"SHMQ_CONFIG", "SHMQ_SEED", "SHMQ_EVENT_LOOP", "SHMQ_NAMESRV"})
MAX_WRITERS: Final = 64  #: upper bound of `writers` (and of its default on big machines)
#: Room a send request's header needs besides the body: the properties string (at most
#: MAX_PROPERTIES_BYTES) and the other ext fields, JSON-encoded.
SEND_HEADER_ROOM_BYTES: Final = 64 << 10


# --- rules ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Check:
    """A rule for one value: `ok(value)` is true when it holds; `rule` says it in words."""

    rule: str
    ok: Callable[[Any], bool]


def between(low: float, high: float) -> Check:
    return Check(f"must be between {low} and {high}", lambda v: low <= v <= high)


def at_least(low: float) -> Check:
    return Check(f"must be at least {low}", lambda v: v >= low)


def positive() -> Check:
    return Check("must be greater than 0", lambda v: v > 0 and math.isfinite(v))


def matches(pattern: str, rule: str) -> Check:
    compiled = re.compile(pattern)
    return Check(rule, lambda v: compiled.fullmatch(v) is not None)


def _is_advertisable(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 1 <= int(port) <= 65535)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


PORT: Final = between(0, 65535)
NAME: Final = matches(r"[A-Za-z0-9_.-]{1,127}", "must be 1-127 of A-Z, a-z, 0-9, '_', '.', '-'")
INSTANCE_NAME: Final = matches(r"[a-z0-9_-]{1,32}", "must be 1-32 of a-z, 0-9, '_', '-'")
POSITIVE: Final = positive()
RATIO: Final = Check("must be in (0, 1]", lambda v: 0.0 < v <= 1.0)
PAGE_MULTIPLE: Final = Check("must be a multiple of 4096, at least 4096",
                             lambda v: v >= 4096 and v % 4096 == 0)
RING_CAPACITY: Final = Check(f"must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}",
                             lambda v: MIN_CAPACITY <= v <= MAX_CAPACITY and _is_power_of_two(v))
ADVERTISABLE_ADDRESS: Final = Check("must be an IPv4 or IPv6 address clients can reach (not a "
                                    "host name, not 0.0.0.0 or ::)", _is_advertisable)
HOST_PORT_LIST: Final = Check("must be a non-empty list of host:port (port 1-65535)",
                              lambda v: len(v) > 0 and all(_is_host_port(a) for a in v))


class LogLevel(enum.Enum):
    """`log.level`; `number` is the `logging` module's level."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def number(self) -> int:
        return logging.getLevelNamesMapping()[self.name]


# --- the table --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Derived:
    """A default computed from settings earlier in the table; `text` is how the docs show it."""

    text: str
    compute: Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting. `unit` drives parsing: "bytes" accepts sizes, "us"/"ms"/"s"/"h" durations."""

    name: str
    type: builtins.type[Any]  #: int, float, bool, str, Path, tuple (of str) or an Enum
    default: Any  #: a value of `type`, or `Derived`; None only for an optional Path
    unit: str = ""
    check: Check | None = None
    doc: str = ""

    @property
    def env_var(self) -> str:
        """The environment variable that overrides it: SHMQ_STORE_SEGMENT_BYTES."""
        return ENV_PREFIX + self.name.replace(".", "_").upper()

    @property
    def flag(self) -> str:
        """The command-line flag `config_options` gives it: --store-segment-bytes."""
        return "--" + self.name.replace(".", "-").replace("_", "-")

    @property
    def section(self) -> str:
        """The TOML table it lives in; "" for a top-level setting."""
        return self.name.rpartition(".")[0]


@dataclass(frozen=True, slots=True)
class Constraint:
    """A rule between settings; its `rule` is printed under each setting it names."""

    names: tuple[str, ...]
    rule: str
    ok: Callable[[Mapping[str, Any]], bool]


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("instance", str, default="default", check=INSTANCE_NAME,
            doc="Name of this service instance. Shared-memory segments are named "
                "`/shmq.<instance>.<name>` and the default `data_dir` ends in it, so two "
                "instances on one host (or two test runs) never share state."),
    Setting("data_dir", Path,
            default=Derived("~/.shmq/<instance>", lambda v: Path.home() / ".shmq" / v["instance"]),
            doc="Directory of the store (`data_dir/store/`) and other state kept across "
                "restarts. A leading `~` is expanded; a relative path is taken from the working "
                "directory at start-up. The systemd unit, running as root, passes "
                "`SHMQ_DATA_DIR=/var/lib/shmq`."),
    Setting("writers", int, check=between(1, MAX_WRITERS),
            default=Derived(f"number of CPUs, at most {MAX_WRITERS}",
                            lambda v: min(os.cpu_count() or 1, MAX_WRITERS)),
            doc="Number of writer processes, the only processes that append. Each (topic, "
                "queue) pair belongs to one writer (`hash(topic, queue) % writers`), so each "
                "consume queue has exactly one writer."),
    # --- [broker]
    Setting("broker.host", str, default="127.0.0.1", check=ADVERTISABLE_ADDRESS,
            doc="Address the broker advertises: stored in every record (STOREHOSTADDRESS, hence "
                "part of every message id) and published in routes."),
    Setting("broker.port", int, default=10911, check=PORT,
            doc="TCP port of the acceptor (RocketMQ's listenPort); advertised with "
                "`broker.host`. 0 lets the system pick a free port (tests)."),
    Setting("broker.name", str, default="broker-a", check=NAME,
            doc="Broker name (brokerName); a master and its slaves share it."),
    Setting("broker.cluster", str, default="DefaultCluster", check=NAME,
            doc="Cluster the broker registers in (brokerClusterName)."),
    Setting("broker.auto_create_topic", bool, default=True,
            doc="Create a topic with `broker.default_queues` queues on the first send to it "
                "(autoCreateTopicEnable). Turn it off in production so a misspelt topic is an "
                "error rather than a new topic."),
    Setting("broker.default_queues", int, default=4, check=between(1, 1024),
            doc="Queues of an auto-created topic (defaultTopicQueueNums)."),
    Setting("broker.max_body_bytes", int, default=4 << 20, unit="bytes",
            check=between(1, MAX_TOTAL_LENGTH),
            doc="Largest message body accepted (maxMessageSize). A larger send is refused with "
                "MESSAGE_ILLEGAL and nothing is stored."),
    Setting("broker.max_frame_bytes", int, default=16 << 20, unit="bytes",
            check=between(4096, MAX_TOTAL_LENGTH + LENGTH_PREFIX_BYTES),
            doc="Largest remoting frame accepted, its length prefix included. A peer that "
                "announces a larger frame is disconnected; other connections are not affected."),
    # --- [namesrv]
    Setting("namesrv.port", int, default=9876, check=PORT,
            doc="TCP port of the name server that `shmq start` forks (and of `shmq namesrv`)."),
    Setting("namesrv.addresses", tuple, check=HOST_PORT_LIST,
            default=Derived('["127.0.0.1:<namesrv.port>"]',
                            lambda v: (f"127.0.0.1:{v['namesrv.port']}",)),
            doc="Name servers the broker registers with, as `host:port`. In the environment, "
                "separate them with `;` (as in RocketMQ's NAMESRV_ADDR) or `,`. Set it "
                "explicitly when `namesrv.port` is 0."),
    Setting("namesrv.broker_expiry_s", int, default=120, unit="s", check=between(1, 86400),
            doc="A broker that has not sent a heartbeat for this long is removed from the "
                "routes (BROKER_CHANNEL_EXPIRED_TIME)."),
    Setting("namesrv.enabled", bool, default=True,
            doc="Whether `shmq start` forks a name server. Turn it off when the name servers "
                "run elsewhere, and list them in `namesrv.addresses`."),
    # --- [store]
    Setting("store.segment_bytes", int, default=1 << 30, unit="bytes", check=PAGE_MULTIPLE,
            doc="Size of each commit-log segment file, preallocated and mmap'd. Fixed when a "
                "store is created: opening an existing store with another value is refused. "
                "Small values are for tests."),
    Setting("store.cq_entries_per_file", int, default=300_000, check=at_least(1),
            doc="Entries (20 bytes each) per consume-queue file. Fixed when a store is created, "
                "like `store.segment_bytes`."),
    Setting("store.flush", FlushMode, default=FlushMode.ASYNC,
            doc="What an acknowledgement promises. `async`: the message is in the page cache; a "
                "crash of shmq loses nothing, a power loss may lose the acknowledged messages of "
                "the last `store.flush_interval_ms`. `sync`: the message was msync'ed before the "
                "acknowledgement (group commit); a power loss loses nothing acknowledged, at the "
                "cost of latency."),
    Setting("store.flush_interval_ms", int, default=500, unit="ms", check=between(1, 60_000),
            doc="How often the flusher msyncs the commit log when `store.flush` is `async`: the "
                "window of acknowledged messages a power loss can lose."),
    Setting("store.retention_hours", float, default=72.0, unit="h", check=POSITIVE,
            doc="A commit-log segment is deleted once all its messages are older than this, "
                "with the consume-queue and index files that only point into it."),
    Setting("store.disk_high_water_ratio", float, default=0.75, check=RATIO,
            doc="Retention also deletes the oldest segments while the file system is fuller "
                "than this fraction (diskMaxUsedSpaceRatio)."),
    Setting("store.min_free_bytes", int, default=512 << 20, unit="bytes", check=at_least(0),
            doc="Appends are refused (DiskFull: nothing is written) when they would leave less "
                "free space than this."),
    Setting("store.index_slots", int, default=500_000, check=at_least(1),
            doc="Hash slots of each key-index file. Index files on disk were sized with the "
                "value in force when they were created; opening one with a different value is "
                "refused, so change it only for a new store."),
    Setting("store.index_max_entries", int, default=2_000_000, check=at_least(1),
            doc="Entries per key-index file; a full file is followed by a new one. Like "
                "`store.index_slots`, it must match the index files already on disk."),
    # --- [ring]
    Setting("ring.bytes", int, default=16 << 20, unit="bytes", check=RING_CAPACITY,
            doc="Capacity of each shared-memory ring; there is one per (producer, writer) pair, "
                "so rings take up to `ring.max_producers` x `writers` x `ring.bytes` of shared "
                "memory. One ring record carries at most `ring.bytes / 2 - 8` bytes, so the "
                "default (16 MiB) carries a batch of bodies up to `broker.max_body_bytes` "
                "(4 MiB) with room to spare."),
    Setting("ring.spin_us", int, default=200, unit="us", check=between(0, 1_000_000),
            doc="The longest a waiting process spins before it parks on a semaphore. A writer "
                "with empty rings spins between 5 us (or this, when lower) and this value, "
                "adapting: longer while work arrives within its spin, shorter otherwise, so an "
                "idle broker parks at once. A local producer waiting for the answer to its "
                "send spins 300 us, or this when lower. 0 never spins (fewest CPU cycles; every "
                "hand-over then costs a wake-up, tens of microseconds). Not used with "
                "`ring.low_latency`."),
    Setting("ring.low_latency", bool, default=False,
            doc="When true, writers and local producers spin 1-20 ms (adaptive) before they "
                "park, without giving the core away: hand-overs cost no wake-up while traffic "
                "flows, at the price of a busy core per waiting process. Only worth it with a "
                "core for each writer and producer: with fewer cores, spinners take them from "
                "the processes with work and latency gets worse."),
    Setting("ring.max_producers", int, default=64, check=between(1, 1024),
            doc="Most producers (acceptors and local producers) attached at once; each gets one "
                "ring per writer."),
    # --- [transaction]
    Setting("transaction.reject", bool, default=False,
            doc="Refuse transactional (half) messages with NO_PERMISSION "
                "(rejectTransactionMessage); nothing is stored."),
    Setting("transaction.check_interval_ms", int, default=60_000, unit="ms",
            check=between(10, 86_400_000),
            doc="How often the acceptor looks for unresolved half messages and asks their "
                "producer group for the outcome with CHECK_TRANSACTION_STATE "
                "(transactionCheckInterval)."),
    Setting("transaction.timeout_ms", int, default=6_000, unit="ms",
            check=between(0, 86_400_000),
            doc="A half message is checked back only once it is older than this "
                "(transactionTimeOut); a producer's own commit or rollback normally arrives "
                "well before. A message's CHECK_IMMUNITY_TIME_IN_SECONDS property overrides it."),
    Setting("transaction.check_max", int, default=15, check=between(1, 10_000),
            doc="Check-backs of one half message before it is given up: it is then copied to "
                "TRANS_CHECK_MAX_TIME_TOPIC and never delivered (transactionCheckMax). With the "
                "defaults that is after about 15 minutes."),
    # --- [supervisor]
    Setting("supervisor.restart_backoff_s", float, default=0.5, unit="s", check=POSITIVE,
            doc="Wait before restarting a crashed child; it doubles with each restart up to "
                "`supervisor.restart_backoff_max_s`."),
    Setting("supervisor.restart_backoff_max_s", float, default=10.0, unit="s", check=POSITIVE,
            doc="Longest wait before restarting a crashed child."),
    Setting("supervisor.max_restarts", int, default=5, check=between(0, 1000),
            doc="Restarts allowed within `supervisor.restart_window_s`; the next crash stops "
                "the service with a message naming the child and how it ended. 0: a crash "
                "always stops the service."),
    Setting("supervisor.restart_window_s", float, default=60.0, unit="s", check=POSITIVE,
            doc="Window over which `supervisor.max_restarts` counts restarts."),
    Setting("supervisor.shutdown_timeout_s", float, default=10.0, unit="s", check=POSITIVE,
            doc="On SIGTERM, how long the children get to drain (finish what is in their rings, "
                "flush, persist offsets) before they are killed. A killed writer's unfinished "
                "appends were never acknowledged; recovery turns them into blanks at the next "
                "start."),
    Setting("supervisor.watchdog", bool, default=True,
            doc="Send systemd watchdog pings when the unit sets WatchdogSec."),
    # --- [log]
    Setting("log.level", LogLevel, default=LogLevel.INFO, doc="Lowest level logged."),
    Setting("log.file", Path, default=None,
            doc="Log file; empty: standard error (the journal under systemd)."),
)
SETTINGS_BY_NAME: Final[Mapping[str, Setting]] = MappingProxyType({s.name: s for s in SETTINGS})
_BY_ENV: Final = {s.env_var: s for s in SETTINGS}
_SECTION_NAMES: Final = tuple(dict.fromkeys(s.section for s in SETTINGS if s.section))


def _largest_record(v: Mapping[str, Any]) -> int:
    return record_size(v["broker.max_body_bytes"], MAX_TOPIC_BYTES, MAX_PROPERTIES_BYTES,
                       BORNHOST_V6_FLAG | STOREHOSTADDRESS_V6_FLAG)


CONSTRAINTS: Final[tuple[Constraint, ...]] = (
    Constraint(("supervisor.restart_backoff_s", "supervisor.restart_backoff_max_s"),
               "`supervisor.restart_backoff_s` must not exceed `supervisor.restart_backoff_max_s`",
               lambda v: v["supervisor.restart_backoff_s"]
               <= v["supervisor.restart_backoff_max_s"]),
    Constraint(("broker.max_body_bytes", "broker.max_frame_bytes"),
               f"`broker.max_frame_bytes` must hold a body of `broker.max_body_bytes` plus "
               f"{SEND_HEADER_ROOM_BYTES} bytes of header",
               lambda v: v["broker.max_body_bytes"] + SEND_HEADER_ROOM_BYTES
               <= v["broker.max_frame_bytes"]),
    Constraint(("broker.max_body_bytes", "store.segment_bytes"),
               "a record with a body of `broker.max_body_bytes` (plus the largest topic, "
               "properties and IPv6 hosts, and an end-of-segment blank of "
               f"{BLANK_MIN_BYTES} bytes) must fit in `store.segment_bytes`",
               lambda v: _largest_record(v) + BLANK_MIN_BYTES <= v["store.segment_bytes"]),
    Constraint(("namesrv.port", "broker.port", "namesrv.enabled"),
               "when `namesrv.enabled`, `namesrv.port` and `broker.port` must differ (0 excepted)",
               lambda v: not v["namesrv.enabled"] or v["namesrv.port"] == 0
               or v["namesrv.port"] != v["broker.port"]),
)


# --- sources and errors -----------------------------------------------------------------------
class SourceKind(enum.Enum):
    """Where a value came from, lowest precedence first."""

    DEFAULT = "default"
    FILE = "file"
    ENV = "environment"
    CLI = "command line"


@dataclass(frozen=True, slots=True)
class Source:
    """Where one value came from: `where` is "path:key", the variable name, the flag, or how
    a computed default was computed."""

    kind: SourceKind
    where: str = ""

    def __str__(self) -> str:
        match self.kind:
            case SourceKind.DEFAULT:
                return f"default {self.where}" if self.where else "default"
            case SourceKind.FILE:
                return self.where
            case SourceKind.ENV:
                return f"environment variable {self.where}"
            case SourceKind.CLI:
                return f"command line {self.where}"


_DEFAULT: Final = Source(SourceKind.DEFAULT)


class InvalidSetting(ConfigError):
    """A setting's value breaks its rule, or names no setting.

    Attributes:
        key: the setting (or the unknown key) at fault.
        value: the value as it was given.
        source: where it was given.
        rule: what it must be.
    """

    def __init__(self, key: str, value: object, source: Source, rule: str) -> None:
        super().__init__(f"{key} = {_show(value)} ({source}): {rule}")
        self.key, self.value, self.source, self.rule = key, value, source, rule


def _show(value: object) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    return repr(value)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# --- parsing one value ------------------------------------------------------------------------
_SIZE_UNITS: Final = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)
#: Seconds per duration unit; the units a setting name may end in are "us", "ms", "s" and "h".
_DURATION_UNITS: Final = {
    "us": Decimal("0.000001"), "ms": Decimal("0.001"), "s": Decimal(1), "min": Decimal(60),
    "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400),
}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|m|h|d)")
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


def parse_size(text: str) -> int:
    """Bytes in `text`: "4096", "64MiB", "1.5 GiB" (units B, KiB, MiB, GiB, TiB: powers of 1024).

    Raises:
        ValueError: not a size, or not a whole number of bytes; the message is the rule.
    """
    m = _SIZE_RE.fullmatch(text.strip())
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError("must be a size in bytes such as 4096, 64MiB or 1GiB "
                         "(units B, KiB, MiB, GiB, TiB: powers of 1024)")
    size = Decimal(m.group(1)) * _SIZE_UNITS[unit]
    if size != size.to_integral_value():
        raise ValueError("must be a whole number of bytes")
    return int(size)


def parse_duration(text: str, unit: str) -> Decimal:
    """`text` ("500ms", "30s", "1h30m", or a plain number meaning `unit`) in `unit`.

    Raises:
        ValueError: not a duration; the message is the rule.
    """
    text = text.strip()
    try:
        return Decimal(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else _duration(text, unit)
    except InvalidOperation as err:  # pragma: no cover - the regexes admit only decimals
        raise ValueError("must be a duration") from err


def _duration(text: str, unit: str) -> Decimal:
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f"must be a number of {unit} or a duration such as 500ms, 30s, 72h "
                         "or 1h30m (units us, ms, s, min, h, d)")
    seconds = sum((Decimal(n) * _DURATION_UNITS[u] for n, u in parts), Decimal(0))
    return seconds / _DURATION_UNITS[unit]


def _parse_int(s: Setting, raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise TypeError(f"must be an integer{_unit_hint(s)}")
    if s.unit == "bytes":
        return parse_size(raw)
    if s.unit in _DURATION_UNITS:
        value = parse_duration(raw, s.unit)
        if value != value.to_integral_value():
            raise ValueError(f"must be a whole number of {s.unit}")
        return int(value)
    try:
        return int(raw.strip(), 10)
    except ValueError:
        raise ValueError("must be an integer") from None


def _unit_hint(s: Setting) -> str:
    if s.unit == "bytes":
        return ' or a size such as "64MiB"'
    return ' or a duration such as "500ms"' if s.unit in _DURATION_UNITS else ""


def _parse_float(s: Setting, raw: object) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str) and s.unit in _DURATION_UNITS:
        value = float(parse_duration(raw, s.unit))
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    else:
        raise ValueError(f"must be a number{_unit_hint(s)}")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _parse_bool(s: Setting, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError("must be true or false (also 1/0, yes/no, on/off)")


def _parse_str(s: Setting, raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError("must be a string")
    return raw


def _parse_path(s: Setting, raw: object) -> Path | None:
    if raw is None and s.default is None:
        return None
    if not isinstance(raw, str | os.PathLike):
        raise TypeError("must be a path (a string)")
    text = os.fspath(raw)
    if not isinstance(text, str) or "\0" in text:
        raise ValueError("must be a path without NUL characters")
    if not text:
        if s.default is None:
            return None
        raise ValueError("must not be empty")
    try:
        return Path(text).expanduser().absolute()
    except RuntimeError:  # "~user" of an unknown user
        raise ValueError(f"must be a path; the home directory in {text!r} is unknown") from None


def _parse_tuple(s: Setting, raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(p.strip() for p in re.split(r"[;,]", raw) if p.strip())
    if isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
        return tuple(raw)
    raise ValueError("must be a list of strings (or one string, items separated by ';' or ',')")


def _parse_enum(s: Setting, raw: object) -> enum.Enum:
    if isinstance(raw, s.type):
        return raw  # type: ignore[no-any-return]
    by_value: dict[str, enum.Enum] = {str(m.value): m for m in s.type}
    if isinstance(raw, str) and raw.strip().lower() in by_value:
        return by_value[raw.strip().lower()]
    raise ValueError(f"must be one of {', '.join(by_value)}")


_PARSERS: Final[Mapping[type, Callable[[Setting, object], object]]] = {
    int: _parse_int, float: _parse_float, bool: _parse_bool, str: _parse_str, Path: _parse_path,
    tuple: _parse_tuple,
}


def _parse(s: Setting, raw: object, source: Source) -> object:
    parser = _parse_enum if issubclass(s.type, enum.Enum) else _PARSERS[s.type]
    try:
        value = parser(s, raw)
    except (ValueError, TypeError) as err:  # the parsers' messages are the rules
        raise InvalidSetting(s.name, raw, source, str(err)) from None
    if s.check is not None and value is not None and not s.check.ok(value):
        raise InvalidSetting(s.name, raw, source, s.check.rule)
    return value


# --- reading the sources ----------------------------------------------------------------------
_Raw = dict[str, tuple[object, Source]]


def _read_file(path: Path) -> _Raw:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    found: _Raw = {}
    _flatten(data, "", path, found)
    return found


def _flatten(table: Mapping[str, object], prefix: str, path: Path, found: _Raw) -> None:
    for key, value in table.items():
        name = prefix + key
        source = Source(SourceKind.FILE, f"{path}:{name}")
        if name in SETTINGS_BY_NAME:
            found[name] = (value, source)
        elif name in _SECTION_NAMES and isinstance(value, dict):
            _flatten(value, name + ".", path, found)
        elif name in _SECTION_NAMES:
            raise InvalidSetting(name, value, source, f"must be a table ([{name}])")
        else:
            known = list(SETTINGS_BY_NAME) + list(_SECTION_NAMES)
            raise InvalidSetting(name, value, source, "no such setting" + _suggest(name, known))


def _read_env(env: Mapping[str, str]) -> _Raw:
    found: _Raw = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in ENV_ALLOWED:
            continue
        source = Source(SourceKind.ENV, var)
        if var not in _BY_ENV:
            rule = "no such setting" + _suggest(var, list(_BY_ENV) + sorted(ENV_ALLOWED))
            raise InvalidSetting(var, env[var], source, rule)
        found[_BY_ENV[var].name] = (env[var], source)
    return found


def _read_overrides(overrides: Mapping[str, object]) -> _Raw:
    found: _Raw = {}
    for name, value in overrides.items():
        if value is None:  # an option that was not given
            continue
        s = SETTINGS_BY_NAME.get(name)
        if s is None:
            source = Source(SourceKind.CLI, name)
            raise InvalidSetting(name, value, source, "no such setting"
                                 + _suggest(name, SETTINGS_BY_NAME))
        found[name] = (value, Source(SourceKind.CLI, s.flag))
    return found


# --- the result -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BrokerSection:
    """`[broker]`: the acceptor and what the broker advertises."""

    host: str
    port: int
    name: str
    cluster: str
    auto_create_topic: bool
    default_queues: int
    max_body_bytes: int
    max_frame_bytes: int


@dataclass(frozen=True, slots=True)
class NamesrvSection:
    """`[namesrv]`: the name server `shmq start` forks and the ones the broker registers with."""

    port: int
    addresses: tuple[str, ...]
    broker_expiry_s: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class StoreSection:
    """`[store]`: the storage engine (see `Config.store_config`)."""

    segment_bytes: int
    cq_entries_per_file: int
    flush: FlushMode
    flush_interval_ms: int
    retention_hours: float
    disk_high_water_ratio: float
    min_free_bytes: int
    index_slots: int
    index_max_entries: int


@dataclass(frozen=True, slots=True)
class RingSection:
    """`[ring]`: shared-memory rings and how waiting processes wait."""

    bytes: int
    spin_us: int
    low_latency: bool
    max_producers: int


@dataclass(frozen=True, slots=True)
class TransactionSection:
    """`[transaction]`: half messages and their check-back (behaviours.md §9)."""

    reject: bool
    check_interval_ms: int
    timeout_ms: int
    check_max: int


@dataclass(frozen=True, slots=True)
class SupervisorSection:
    """`[supervisor]`: restarts and shutdown."""

    restart_backoff_s: float
    restart_backoff_max_s: float
    max_restarts: int
    restart_window_s: float
    shutdown_timeout_s: float
    watchdog: bool


@dataclass(frozen=True, slots=True)
class LogSection:
    """`[log]`."""

    level: LogLevel
    file: Path | None


_SECTION_TYPES: Final[Mapping[str, Callable[..., Any]]] = MappingProxyType({
    "broker": BrokerSection, "namesrv": NamesrvSection, "store": StoreSection,
    "ring": RingSection, "transaction": TransactionSection, "supervisor": SupervisorSection,
    "log": LogSection,
})


@dataclass(frozen=True, slots=True)
class Config:
    """The validated service configuration. Two configs are equal when their values are;
    `sources` (setting name -> where its value came from) does not take part."""

    instance: str
    data_dir: Path
    writers: int
    broker: BrokerSection
    namesrv: NamesrvSection
    store: StoreSection
    ring: RingSection
    transaction: TransactionSection
    supervisor: SupervisorSection
    log: LogSection
    sources: Mapping[str, Source] = field(compare=False, repr=False,
                                          default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> Any:
        """The value of setting `name` ("store.flush").

        Raises:
            KeyError: `name` is not a setting.
        """
        if name not in SETTINGS_BY_NAME:
            raise KeyError(name)
        section, _, key = name.rpartition(".")
        return getattr(getattr(self, section), key) if section else getattr(self, key)

    def source_of(self, name: str) -> Source:
        """Where the value of `name` came from (default when the config was built directly)."""
        return self.sources.get(name, _DEFAULT)

    def shm_name(self, name: str) -> str:
        """The POSIX shared-memory name of segment `name` of this instance:
        /shmq.<instance>.<name>."""
        return f"/shmq.{self.instance}.{name}"

    def store_config(self) -> StoreConfig:
        """The storage engine's settings; the advertised address and body limit come from
        `[broker]`."""
        st = self.store
        return StoreConfig(
            segment_bytes=st.segment_bytes, cq_entries_per_file=st.cq_entries_per_file,
            flush=st.flush, flush_interval_ms=st.flush_interval_ms,
            retention_hours=st.retention_hours, disk_high_water_ratio=st.disk_high_water_ratio,
            min_free_bytes=st.min_free_bytes, max_body_bytes=self.broker.max_body_bytes,
            index_slots=st.index_slots, index_max_entries=st.index_max_entries,
            store_host=self.broker.host, store_port=self.broker.port,
        )

    def to_toml(self, *, with_sources: bool = True) -> str:
        """The effective configuration as TOML, every setting written out; `load_config` reads it
        back to an equal `Config`. With `with_sources`, each line ends with its value's source."""
        lines = ["# shmq effective configuration (shmq start --print-config)"]
        section = ""
        for s in SETTINGS:
            if s.section != section:
                section = s.section
                lines += ["", f"[{section}]"]
            line = f"{s.name.rpartition('.')[2]} = {_toml_value(s, self.get(s.name))}"
            lines.append(f"{line}  # {self.source_of(s.name)}" if with_sources else line)
        return "\n".join(lines) + "\n"


_CONFIG_TOP: Final = tuple(f.name for f in fields(Config) if f.name not in _SECTION_TYPES
                           and f.name != "sources")


def _build(values: Mapping[str, Any], sources: Mapping[str, Source]) -> Config:
    parts: dict[str, Any] = {name: values[name] for name in _CONFIG_TOP}
    for section, cls in _SECTION_TYPES.items():
        prefix = section + "."
        parts[section] = cls(**{n.removeprefix(prefix): v for n, v in values.items()
                                if n.startswith(prefix)})
    return Config(**parts, sources=MappingProxyType(dict(sources)))


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Read, layer and validate the configuration (default < file < environment < overrides).

    Args:
        path: TOML file; None: the file named by SHMQ_CONFIG in `env`, else no file.
        env: the environment (default `os.environ`); only SHMQ_* variables are read.
        overrides: setting name -> value from the command line (a string to parse, or a value
            of the setting's type); None values are ignored.

    Returns:
        The validated configuration; `Config.sources` says where each value came from.

    Raises:
        InvalidSetting: a value breaks its rule or a rule between settings, or a key in the
            file, an SHMQ_* variable or an override names no setting. The message names the
            key, the value, its source and the rule.
        ConfigError: the file does not exist, cannot be read or is not TOML.
        Nothing is created or changed in any case.
    """
    env = os.environ if env is None else env
    if path is None and env.get("SHMQ_CONFIG"):
        path = Path(env["SHMQ_CONFIG"])
    given: _Raw = {}
    if path is not None:
        given.update(_read_file(path))
    given.update(_read_env(env))
    given.update(_read_overrides(overrides or {}))
    raws: dict[str, object] = {}
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for s in SETTINGS:
        raw, source = given.get(s.name, (s.default, _DEFAULT))
        if isinstance(raw, Derived):
            raw, source = raw.compute(values), Source(SourceKind.DEFAULT, raw.text)
        raws[s.name], sources[s.name] = raw, source
        values[s.name] = _parse(s, raw, source)
    for c in CONSTRAINTS:
        if not c.ok(values):
            _raise_constraint(c, raws, sources)
    return _build(values, sources)


def _raise_constraint(c: Constraint, raws: Mapping[str, object], sources: Mapping[str, Source]
                      ) -> None:
    # Blame the setting given with the highest precedence: that is the one the operator changed.
    order = list(SourceKind)
    name = max(c.names, key=lambda n: order.index(sources[n].kind))
    others = ", ".join(f"{n} = {_show(raws[n])} ({sources[n]})" for n in c.names if n != name)
    rule = c.rule.replace("`", "")
    raise InvalidSetting(name, raws[name], sources[name], f"{rule} (with {others})")


# --- writing ----------------------------------------------------------------------------------
_SIZE_SUFFIXES: Final = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def _format_size(n: int) -> str:
    for suffix, scale in _SIZE_SUFFIXES:
        if n and n % scale == 0:
            return f'"{n // scale}{suffix}"'
    return str(n)


def _toml_string(text: str) -> str:
    def escape(ch: str) -> str:
        if ch in '"\\':
            return "\\" + ch
        return f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch

    return '"' + "".join(escape(ch) for ch in text) + '"'


def _toml_value(s: Setting, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and s.unit == "bytes":
        return _format_size(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, enum.Enum):
        return _toml_string(str(value.value))
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_string(str(v)) for v in value) + "]"
    return _toml_string("" if value is None else str(value))


# --- the reference document -------------------------------------------------------------------
def _type_text(s: Setting) -> str:
    if issubclass(s.type, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in s.type)
    if s.unit == "bytes":
        return "size (bytes)"
    if s.unit in _DURATION_UNITS:
        return f"duration ({s.unit})"
    names = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "path",
             tuple: "list of strings"}
    return names[s.type]


def _default_text(s: Setting) -> str:
    if isinstance(s.default, Derived):  # prose; "<" would start an HTML tag in Markdown
        return s.default.text.replace("<", "&lt;").replace(">", "&gt;")
    return "`" + _toml_value(s, s.default) + "`"


def config_reference_markdown() -> str:
    """The configuration reference (docs/config.md), generated from `SETTINGS` and
    `CONSTRAINTS`."""
    out = [_REFERENCE_INTRO, "| setting | type | default | environment |", "|---|---|---|---|"]
    out += [f"| [`{s.name}`](#{s.name.replace('.', '')}) | {_type_text(s)} | {_default_text(s)} "
            f"| `{s.env_var}` |" for s in SETTINGS]
    section = None
    for s in SETTINGS:
        if s.section != section:
            section = s.section
            out += ["", f"## [{section}]" if section else "## Top level"]
        out += ["", f"### {s.name}", "", s.doc, "",
                f"- type: {_type_text(s)}; default: {_default_text(s)}"]
        if s.check is not None:
            out.append(f"- rule: {s.check.rule}")
        out += [f"- constraint: {c.rule}" for c in CONSTRAINTS if s.name in c.names]
        out.append(f"- environment: `{s.env_var}`; command line: `{s.flag}`")
    return "\n".join(out) + "\n"


_REFERENCE_INTRO: Final = """\
# shmq configuration reference

<!-- Generated by `python3 -m shmq.runtime.config > docs/config.md` from the settings table in
shmq/runtime/config.py; edit the table, not this file. -->

Each setting is read from, lowest precedence first: its default, the TOML file (the one given
on the command line, or the one named by `SHMQ_CONFIG`), its environment variable, and the
command line. `shmq start --print-config` prints the effective configuration, each value with
its source. A bad value, an unknown key in the file or an unknown `SHMQ_*` variable stops the
service with a message naming the key, the value, where it came from and the rule.

- A setting `a.b` is the key `b` of the table `[a]` in the file, and the environment variable
  `SHMQ_A_B`. `SHMQ_CONFIG` and `SHMQ_SEED` (tests) are the only other `SHMQ_*` variables allowed.
- Sizes take a number of bytes or a string with a unit of powers of 1024: `"64MiB"`, `"1GiB"`.
- Durations take a number in the unit at the end of the setting's name, or a string with units
  `us`, `ms`, `s`, `min`, `h`, `d`: `"500ms"`, `"30s"`, `"72h"`, `"1h30m"`.
- Booleans are `true` / `false`; the environment also takes `1`/`0`, `yes`/`no`, `on`/`off`.
- Lists are TOML arrays; in the environment, separate the items with `;` or `,`.
"""


# --- command-line flags -----------------------------------------------------------------------
_F = TypeVar("_F", bound=Callable[..., Any])


def _param(s: Setting) -> str:
    return "config__" + s.name.replace(".", "__")


def _metavar(s: Setting) -> str:
    if issubclass(s.type, enum.Enum):
        return "[" + "|".join(str(m.value) for m in s.type) + "]"
    return _type_text(s).split(" ")[0].upper()


def config_options(command: _F) -> _F:
    """Click decorator: one `--<setting>` option per setting (a string, parsed by `load_config`),
    handed to `command` as one keyword argument, `config_overrides: dict[str, str]`."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {s.name: kwargs.pop(_param(s)) for s in SETTINGS}
        overrides = {name: value for name, value in given.items() if value is not None}
        return command(*args, config_overrides=overrides, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for s in reversed(SETTINGS):
        decorated = click.option(s.flag, _param(s), default=None, metavar=_metavar(s),
                                 help=f"{s.doc.split('. ')[0]}. [{s.env_var}]")(decorated)
    return decorated  # type: ignore[return-value]


if __name__ == "__main__":
    sys.stdout.write(config_reference_markdown())
