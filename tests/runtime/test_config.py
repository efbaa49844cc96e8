"""The service configuration: layering, validation, parsing, round trip and the reference doc."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from shmq.broker.roles import wait_policy
from shmq.errors import ConfigError
from shmq.ipc.wakeup import DEFAULT_POLICY, LOW_LATENCY_POLICY
from shmq.runtime.config import (
    CONSTRAINTS,
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    InvalidSetting,
    LogLevel,
    SourceKind,
    config_options,
    config_reference_markdown,
    load_config,
    parse_duration,
    parse_size,
)
from shmq.store.config import FlushMode, StoreConfig

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shmq.toml"
    path.write_text(text)
    return path


# --- defaults and layering --------------------------------------------------------------------
def test_defaults_with_no_file_and_an_empty_env() -> None:
    cfg = load_config(env={})
    assert cfg.instance == "default"
    assert cfg.data_dir == Path.home() / ".shmq" / "default"
    assert cfg.writers == min(os.cpu_count() or 1, 64)
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.name) == ("127.0.0.1", 10911, "broker-a")
    assert cfg.broker.cluster == "DefaultCluster" and cfg.broker.auto_create_topic is True
    assert (cfg.broker.max_body_bytes, cfg.broker.max_frame_bytes) == (4 << 20, 16 << 20)
    assert cfg.namesrv.addresses == ("127.0.0.1:9876",) and cfg.namesrv.enabled is True
    assert (cfg.store.segment_bytes, cfg.store.flush) == (1 << 30, FlushMode.ASYNC)
    assert (cfg.store.retention_hours, cfg.store.min_free_bytes) == (72.0, 512 << 20)
    assert (cfg.ring.bytes, cfg.ring.spin_us, cfg.ring.low_latency) == (16 << 20, 200, False)
    assert (cfg.supervisor.restart_backoff_s, cfg.supervisor.restart_backoff_max_s) == (0.5, 10.0)
    assert (cfg.supervisor.max_restarts, cfg.supervisor.restart_window_s) == (5, 60.0)
    assert (cfg.log.level, cfg.log.file) == (LogLevel.INFO, None)
    assert {cfg.source_of(s.name).kind for s in SETTINGS} == {SourceKind.DEFAULT}
    assert str(cfg.source_of("writers")) == "default number of CPUs, at most 64"
    assert str(cfg.source_of("broker.port")) == "default"


def test_default_store_settings_agree_with_the_store_engine() -> None:
    assert load_config(env={}).store_config() == StoreConfig()


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHMQ_WRITERS", "3")
    assert load_config().writers == 3


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, 'writers = 3\n[store]\nsegment_bytes = "64MiB"\nflush = "sync"\n'
                           '[broker]\nmax_body_bytes = "1MiB"\n')
    cfg = load_config(path, env={})
    assert (cfg.writers, cfg.store.segment_bytes, cfg.store.flush) == (3, 64 << 20, FlushMode.SYNC)
    assert str(cfg.source_of("store.segment_bytes")) == f"{path}:store.segment_bytes"
    assert cfg.source_of("store.flush_interval_ms").kind is SourceKind.DEFAULT


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "writers = 3\n[ring]\nspin_us = 10\n")
    cfg = load_config(path, env={"SHMQ_WRITERS": "5", "PATH": "/bin"})
    assert (cfg.writers, cfg.ring.spin_us) == (5, 10)
    assert str(cfg.source_of("writers")) == "environment variable SHMQ_WRITERS"
    assert cfg.source_of("ring.spin_us").kind is SourceKind.FILE


def test_command_line_overrides_env(tmp_path: Path) -> None:
    path = write(tmp_path, "writers = 3\n")
    cfg = load_config(path, env={"SHMQ_WRITERS": "5", "SHMQ_RING_SPIN_US": "7"},
                      overrides={"writers": "6", "ring.spin_us": None})
    assert (cfg.writers, cfg.ring.spin_us) == (6, 7)
    assert str(cfg.source_of("writers")) == "command line --writers"


def test_shmq_config_names_the_file_unless_a_path_is_given(tmp_path: Path) -> None:
    named = write(tmp_path, "writers = 3\n")
    other = tmp_path / "other.toml"
    other.write_text("writers = 4\n")
    assert load_config(env={"SHMQ_CONFIG": str(named)}).writers == 3
    assert load_config(other, env={"SHMQ_CONFIG": str(named)}).writers == 4


def test_derived_defaults_follow_the_settings_they_derive_from() -> None:
    cfg = load_config(env={"SHMQ_INSTANCE": "t1", "SHMQ_NAMESRV_PORT": "9877"})
    assert cfg.data_dir == Path.home() / ".shmq" / "t1"
    assert cfg.namesrv.addresses == ("127.0.0.1:9877",)
    assert cfg.shm_name("ring.0.1") == "/shmq.t1.ring.0.1"


def test_data_dir_is_expanded_and_made_absolute(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(env={"SHMQ_DATA_DIR": "rel/dir"}).data_dir == tmp_path / "rel" / "dir"
    assert load_config(env={"SHMQ_DATA_DIR": "~/x"}).data_dir == Path.home() / "x"


def test_store_config_takes_the_advertised_address_from_broker() -> None:
    cfg = load_config(env={"SHMQ_STORE_FLUSH": "SYNC", "SHMQ_BROKER_HOST": "10.0.0.7",
                           "SHMQ_BROKER_PORT": "10000", "SHMQ_BROKER_MAX_BODY_BYTES": "1MiB"})
    sc = cfg.store_config()
    assert (sc.flush, sc.store_host, sc.store_port, sc.max_body_bytes) == (
        FlushMode.SYNC, "10.0.0.7", 10000, 1 << 20)


def test_config_is_frozen_and_slotted() -> None:
    cfg = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.writers = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.store.segment_bytes = 4096  # type: ignore[misc]
    assert not hasattr(cfg, "__dict__") and not hasattr(cfg.store, "__dict__")


# --- bad values -------------------------------------------------------------------------------
BAD_VALUES: list[tuple[str, str, Any, str]] = [
    # (layer, setting, value as given, part of the rule)
    ("env", "writers", "0", "between 1 and 64"),
    ("env", "writers", "many", "must be an integer"),
    ("env", "store.segment_bytes", "5000", "multiple of 4096"),
    ("env", "store.segment_bytes", "1GB", "powers of 1024"),
    ("env", "ring.bytes", "3MiB", "power of two"),
    ("env", "ring.low_latency", "maybe", "true or false"),
    ("env", "store.flush", "fast", "one of async, sync"),
    ("env", "namesrv.broker_expiry_s", "soon", "duration such as 500ms"),
    ("file", "instance", "Bad Name", "1-32 of a-z"),
    ("file", "broker.host", "example.com", "IPv4 or IPv6"),
    ("file", "broker.host", "0.0.0.0", "not 0.0.0.0"),
    ("file", "store.disk_high_water_ratio", 1.5, "(0, 1]"),
    ("file", "namesrv.addresses", ["nohost"], "host:port"),
    ("file", "namesrv.addresses", [], "non-empty"),
    ("file", "writers", True, "must be an integer"),
    ("file", "writers", 2.5, "must be an integer"),
    ("file", "log.level", "loud", "one of debug, info"),
    ("file", "broker.name", 5, "must be a string"),
    ("cli", "store.flush_interval_ms", "1500us", "whole number of ms"),
    ("cli", "store.retention_hours", "-1", "greater than 0"),
    ("file", "store.retention_hours", math.inf, "finite"),
    ("cli", "broker.port", 70000, "between 0 and 65535"),
    ("cli", "data_dir", "", "must not be empty"),
    ("cli", "data_dir", "~no-such-user-here/x", "home directory"),
    ("cli", "supervisor.max_restarts", "-1", "between 0 and 1000"),
]


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return repr(value)


def _load_with(layer: str, name: str, value: Any,
               tmp_path: Path) -> tuple[str, pytest.ExceptionInfo[InvalidSetting]]:
    s = SETTINGS_BY_NAME[name]
    if layer == "env":
        with pytest.raises(InvalidSetting) as info:
            load_config(env={s.env_var: value})
        return f"environment variable {s.env_var}", info
    if layer == "file":
        section, _, key = name.rpartition(".")
        head = f"[{section}]\n" if section else ""
        path = write(tmp_path, f"{head}{key} = {_toml_literal(value)}\n")
        with pytest.raises(InvalidSetting) as info:
            load_config(path, env={})
        return f"{path}:{name}", info
    with pytest.raises(InvalidSetting) as info:
        load_config(env={}, overrides={name: value})
    return f"command line {s.flag}", info


@pytest.mark.parametrize(("layer", "name", "value", "rule"), BAD_VALUES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]!r}" for c in BAD_VALUES])
def test_bad_value_names_key_value_source_and_rule(layer: str, name: str, value: Any, rule: str,
                                                   tmp_path: Path) -> None:
    source, info = _load_with(layer, name, value, tmp_path)
    err = info.value
    assert isinstance(err, ConfigError)
    assert (err.key, err.value, str(err.source)) == (name, value, source)
    assert rule in err.rule
    message = str(err)
    for part in (name, repr(value), source, rule):
        assert part in message, f"{part!r} missing from {message!r}"


CONSTRAINT_CASES: list[tuple[dict[str, str], dict[str, object], str, str]] = [
    # (environment, command line, the key blamed, the other key named)
    ({"SHMQ_SUPERVISOR_RESTART_BACKOFF_S": "20s"}, {}, "supervisor.restart_backoff_s",
     "supervisor.restart_backoff_max_s"),
    ({"SHMQ_SUPERVISOR_RESTART_BACKOFF_S": "5"}, {"supervisor.restart_backoff_max_s": "4"},
     "supervisor.restart_backoff_max_s", "supervisor.restart_backoff_s"),
    ({"SHMQ_BROKER_MAX_FRAME_BYTES": "4MiB"}, {}, "broker.max_frame_bytes",
     "broker.max_body_bytes"),
    ({}, {"store.segment_bytes": "4MiB"}, "store.segment_bytes", "broker.max_body_bytes"),
    ({"SHMQ_BROKER_PORT": "9876"}, {}, "broker.port", "namesrv.port"),
]


@pytest.mark.parametrize(("env", "overrides", "blamed", "other"), CONSTRAINT_CASES)
def test_broken_constraint_blames_the_overridden_setting_and_names_the_other(
        env: dict[str, str], overrides: dict[str, object], blamed: str, other: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        load_config(env=env, overrides=overrides)
    assert info.value.key == blamed
    assert other in info.value.rule and blamed in info.value.rule
    assert str(info.value.source) != "default"


def test_constraints_hold_at_their_boundaries() -> None:
    load_config(env={"SHMQ_SUPERVISOR_RESTART_BACKOFF_S": "10"})
    load_config(env={"SHMQ_BROKER_MAX_FRAME_BYTES": str((4 << 20) + (64 << 10))})
    load_config(env={"SHMQ_BROKER_PORT": "9876", "SHMQ_NAMESRV_ENABLED": "no"})
    load_config(env={"SHMQ_BROKER_PORT": "0", "SHMQ_NAMESRV_PORT": "0",
                     "SHMQ_NAMESRV_ADDRESSES": "127.0.0.1:40000"})


def test_computed_default_that_breaks_its_rule_says_how_it_was_computed() -> None:
    with pytest.raises(InvalidSetting) as info:
        load_config(env={"SHMQ_NAMESRV_PORT": "0"})
    assert info.value.key == "namesrv.addresses"
    assert str(info.value.source) == 'default ["127.0.0.1:<namesrv.port>"]'
    assert "port 1-65535" in str(info.value)
    load_config(env={"SHMQ_STORE_SEGMENT_BYTES": "64KiB", "SHMQ_BROKER_MAX_BODY_BYTES": "16KiB"})


# --- unknown keys and bad files ---------------------------------------------------------------
@pytest.mark.parametrize(("text", "key", "hint"), [
    ("writer = 2\n", "writer", "did you mean writers?"),
    ("[store]\nsegment_byte = 4096\n", "store.segment_byte", "did you mean store.segment_bytes?"),
    ("[stroe]\nflush = 'sync'\n", "stroe", "did you mean store?"),
    ("[broker.extra]\nx = 1\n", "broker.extra", "no such setting"),
    ("store = 5\n", "store", "must be a table"),
])
def test_unknown_key_in_file(tmp_path: Path, text: str, key: str, hint: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidSetting) as info:
        load_config(path, env={})
    assert info.value.key == key and hint in str(info.value) and str(path) in str(info.value)


def test_unknown_shmq_variable_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(InvalidSetting, match="SHMQ_WRITER = '3'.*did you mean SHMQ_WRITERS"):
        load_config(env={"SHMQ_WRITER": "3"})


def test_allowed_and_foreign_variables_are_ignored() -> None:
    cfg = load_config(env={"SHMQ_SEED": "42", "SHMQ_CONFIG": "", "SHMQFOO": "x", "HOME": "/"})
    assert cfg == load_config(env={})


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(InvalidSetting, match="did you mean store.flush"):
        load_config(env={}, overrides={"store.flsh": "sync"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", env={})


def test_file_that_is_not_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "writers = = 3\n")
    with pytest.raises(ConfigError, match=f"{path} is not valid TOML"):
        load_config(path, env={})


# --- parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "size"), [
    ("4096", 4096), ("64MiB", 64 << 20), ("1GiB", 1 << 30), ("1.5 KiB", 1536), ("2TiB", 2 << 40),
    ("512B", 512), (" 8kib ", 8192),
])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1GB", "-1", "1.3B", "", "MiB", "1 GiB 2", "0x1000"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size|whole number of bytes"):
        parse_size(text)


@pytest.mark.parametrize(("text", "unit", "value"), [
    ("500ms", "s", Decimal("0.5")), ("30s", "ms", 30000), ("72h", "h", 72), ("3d", "h", 72),
    ("1h30m", "s", 5400), ("1h 30min", "h", Decimal("1.5")), ("250", "ms", 250),
    ("50us", "us", 50), ("2.5s", "ms", 2500),
])
def test_parse_duration(text: str, unit: str, value: Decimal) -> None:
    assert parse_duration(text, unit) == value


@pytest.mark.parametrize("text", ["5 parsecs", "ms", "1h 30x", "", "h1"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text, "s")


@pytest.mark.parametrize(("name", "text", "value"), [
    ("supervisor.restart_backoff_s", "250ms", 0.25),
    ("store.retention_hours", "3d", 72.0),
    ("store.flush_interval_ms", "2s", 2000),
    ("namesrv.broker_expiry_s", "2min", 120),
    ("ring.spin_us", "1ms", 1000),
    ("store.min_free_bytes", "1GiB", 1 << 30),
    ("store.disk_high_water_ratio", "0.5", 0.5),
    ("namesrv.addresses", "a:1;b:2", ("a:1", "b:2")),
    ("namesrv.addresses", "a:1, b:2", ("a:1", "b:2")),
    ("log.level", "DEBUG", LogLevel.DEBUG),
    ("log.file", "/var/log/shmq.log", Path("/var/log/shmq.log")),
])
def test_env_strings_are_parsed_by_type_and_unit(name: str, text: str, value: object) -> None:
    s = SETTINGS_BY_NAME[name]
    assert load_config(env={s.env_var: text}).get(name) == value


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False),
    ("TRUE", True), ("Off", False),
])
def test_env_booleans(text: str, value: bool) -> None:
    assert load_config(env={"SHMQ_RING_LOW_LATENCY": text}).ring.low_latency is value


def test_file_takes_native_toml_values(tmp_path: Path) -> None:
    path = write(tmp_path, "[store]\nsegment_bytes = 65536\nretention_hours = 1\n"
                           "[broker]\nmax_body_bytes = 1024\n"
                           "[namesrv]\naddresses = ['a:1', 'b:2']\n"
                           "[supervisor]\nrestart_backoff_s = '100ms'\n")
    cfg = load_config(path, env={})
    assert (cfg.store.segment_bytes, cfg.store.retention_hours) == (65536, 1.0)
    assert cfg.namesrv.addresses == ("a:1", "b:2") and cfg.supervisor.restart_backoff_s == 0.1


# --- writing it back --------------------------------------------------------------------------
def _round_trip(cfg: Config, directory: Path) -> Config:
    path = directory / "effective.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    return load_config(path, env={})


def test_to_toml_round_trips_and_shows_sources(tmp_path: Path) -> None:
    cfg = load_config(env={"SHMQ_WRITERS": "3", "SHMQ_LOG_FILE": '/tmp/a "b"\\c\n'},
                      overrides={"store.flush": "sync"})
    text = cfg.to_toml()
    assert "writers = 3  # environment variable SHMQ_WRITERS" in text
    assert 'flush = "sync"  # command line --store-flush' in text
    assert "# " not in cfg.to_toml(with_sources=False).split("\n", 1)[1]
    again = _round_trip(cfg, tmp_path)
    assert again == cfg and again.log.file == Path('/tmp/a "b"\\c\n')
    assert again.source_of("writers").kind is SourceKind.FILE


NAME_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
                    min_size=1, max_size=20)


@st.composite
def overrides(draw: st.DrawFn) -> dict[str, object]:
    body = draw(st.integers(1, 1 << 20))
    backoff = sorted(draw(st.lists(st.floats(1e-6, 1e6), min_size=2, max_size=2)))
    return {
        "instance": draw(st.from_regex(r"[a-z0-9_-]{1,32}", fullmatch=True)),
        "writers": draw(st.integers(1, 64)),
        "broker.max_body_bytes": body,
        "broker.max_frame_bytes": body + (64 << 10) + draw(st.integers(0, 1 << 20)),
        "store.segment_bytes": 4096 * draw(st.integers(512, 1 << 20)),
        "store.flush": draw(st.sampled_from(["async", "sync"])),
        "store.disk_high_water_ratio": draw(st.floats(1e-9, 1.0)),
        "ring.bytes": 1 << draw(st.integers(6, 32)),
        "ring.low_latency": draw(st.booleans()),
        "supervisor.restart_backoff_s": backoff[0],
        "supervisor.restart_backoff_max_s": backoff[1],
        "namesrv.addresses": draw(st.lists(st.from_regex(r"[a-z0-9.]{1,10}:[1-9][0-9]{0,3}",
                                                         fullmatch=True), min_size=1)),
        "log.file": "/" + draw(NAME_TEXT),
        "data_dir": "/" + draw(NAME_TEXT),
    }


@settings(max_examples=60, deadline=None)
@given(overrides())
def test_to_toml_round_trips_for_any_valid_config(given_values: dict[str, object]) -> None:
    cfg = load_config(env={}, overrides=given_values)
    with tempfile.TemporaryDirectory() as directory:
        assert _round_trip(cfg, Path(directory)) == cfg


# --- the table and what is generated from it --------------------------------------------------
def test_sections_hold_exactly_the_settings_of_the_table() -> None:
    cfg = load_config(env={})
    names = {s.name for s in SETTINGS}
    built = {f.name for f in dataclasses.fields(Config) if f.name != "sources"}
    flat = set()
    for name in built:
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value):
            flat |= {f"{name}.{f.name}" for f in dataclasses.fields(value)}
        else:
            flat.add(name)
    assert flat == names


def test_names_env_vars_and_flags_are_unique_and_documented() -> None:
    assert len({s.env_var for s in SETTINGS}) == len(SETTINGS)
    assert len({s.flag for s in SETTINGS}) == len(SETTINGS)
    for s in SETTINGS:
        assert s.doc.endswith(".") and s.name == s.name.lower(), s.name


def test_every_constraint_is_documented_under_each_setting_it_names() -> None:
    doc = config_reference_markdown()
    for c in CONSTRAINTS:
        for name in c.names:
            assert name in SETTINGS_BY_NAME
            block = doc.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
            assert c.rule in block, (name, c.rule)


def test_ring_settings_choose_the_writers_wait_policy() -> None:
    assert wait_policy(load_config(env={})) is DEFAULT_POLICY
    parked = wait_policy(load_config(env={"SHMQ_RING_SPIN_US": "0"}))
    assert (parked.spin_us, parked.min_spin_us, parked.max_spin_us) == (0, 0, 0)
    assert wait_policy(load_config(env={"SHMQ_RING_SPIN_US": "1ms"})).max_spin_us == 1000
    assert wait_policy(load_config(env={"SHMQ_RING_LOW_LATENCY": "true",
                                        "SHMQ_RING_SPIN_US": "0"})) is LOW_LATENCY_POLICY


def test_docs_config_md_is_generated_from_the_table() -> None:
    assert DOCS.read_text() == config_reference_markdown(), (
        "docs/config.md is stale; regenerate it with "
        "`python3 -m shmq.runtime.config > docs/config.md`")


def test_config_options_turn_flags_into_overrides() -> None:
    seen: dict[str, Config] = {}

    @click.command()
    @click.option("--print-config", is_flag=True)
    @config_options
    def start(print_config: bool, config_overrides: dict[str, str]) -> None:
        seen["cfg"] = load_config(env={}, overrides=config_overrides)

    out = CliRunner().invoke(start, ["--writers", "3", "--store-segment-bytes", "64MiB",
                                     "--ring-low-latency", "yes"])
    assert out.exit_code == 0, out.output
    cfg = seen["cfg"]
    assert (cfg.writers, cfg.store.segment_bytes, cfg.ring.low_latency) == (3, 64 << 20, True)
    assert str(cfg.source_of("writers")) == "command line --writers"
    assert cfg.source_of("instance").kind is SourceKind.DEFAULT
    assert "--store-flush [async|sync]" in CliRunner().invoke(start, ["--help"]).output
