"""The systemd units in systemd/: `systemd-analyze verify` accepts them without a word, the
template differs from the plain unit only in its instance lines, the environment they set is
accepted by the configuration loader, and MemoryDenyWriteExecute= leaves the store working."""

from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from shmq.runtime.config import load_config

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_SHMQ = "/usr/local/bin/shmq"  # the ExecStart path written in the units
RUN_TIMEOUT_S = 120


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not os.access(path, os.X_OK):
        pytest.fail("systemd-analyze not found; on Debian it comes with the package 'systemd'")
    return path


def _copy_for_verify(unit: str, directory: Path) -> None:
    """Copy `unit` into `directory` with ExecStart pointing at an executable that exists here
    (verify checks it), and check that no other line changed."""
    original = (UNITS / unit).read_text().splitlines()
    copied = [line.replace(f"ExecStart={INSTALLED_SHMQ} ", f"ExecStart={sys.executable} ", 1)
              for line in original]
    changed = [(a, b) for a, b in zip(original, copied, strict=True) if a != b]
    assert changed == [(f"ExecStart={INSTALLED_SHMQ} start", f"ExecStart={sys.executable} start")]
    (directory / unit).write_text("\n".join(copied) + "\n")


def _verify(directory: Path, unit: str) -> subprocess.CompletedProcess[str]:
    # A unit named after a template (shmq@test.service) is loaded from the template in the same
    # directory, with %i = test: the unit verified is exactly the one `systemctl start` loads.
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="cat", LC_ALL="C.UTF-8")
    return subprocess.run([_systemd_analyze(), "--no-pager", "verify", f"./{unit}"],
                          cwd=directory, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)


@pytest.mark.parametrize(("unit", "verified_as"), [("shmq.service", "shmq.service"),
                                                    ("shmq@.service", "shmq@test.service")])
def test_systemd_analyze_verify_says_nothing(tmp_path: Path, unit: str, verified_as: str) -> None:
    _copy_for_verify(unit, tmp_path)
    result = _verify(tmp_path, verified_as)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(("unit", "verified_as"), [("shmq.service", "shmq.service"),
                                                    ("shmq@.service", "shmq@test.service")])
def test_the_check_sees_a_bad_line(tmp_path: Path, unit: str, verified_as: str) -> None:
    _copy_for_verify(unit, tmp_path)
    path = tmp_path / unit
    path.write_text(path.read_text().replace("[Service]\n", "[Service]\nNoSuchSetting=1\n"))
    result = _verify(tmp_path, verified_as)
    assert "NoSuchSetting" in result.stdout + result.stderr


def test_the_check_needs_the_binary_replaced(tmp_path: Path) -> None:
    """Why _copy_for_verify exists: verify fails on an ExecStart that does not exist."""
    path = tmp_path / "shmq.service"
    text = (UNITS / "shmq.service").read_text()
    path.write_text(text.replace(INSTALLED_SHMQ, str(tmp_path / "no-such-shmq")))
    result = _verify(tmp_path, "shmq.service")
    assert result.returncode != 0
    assert "no-such-shmq" in result.stdout + result.stderr


def _settings(unit: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each setting line of a unit, in order."""
    section, found = "", []
    for raw in (UNITS / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key, value))
    return found


#: The template's lines that shmq.service has no counterpart for.
_INSTANCE_ONLY = {
    ("Unit", "AssertPathExists", "/etc/shmq/%i.toml"),
    ("Service", "Environment", "SHMQ_INSTANCE=%i"),
    ("Service", "Environment", "SHMQ_CONFIG=/etc/shmq/%i.toml"),
}


def test_the_template_matches_the_plain_unit_apart_from_the_instance() -> None:
    plain = [s for s in _settings("shmq.service") if s[1] != "Description"]
    template = _settings("shmq@.service")
    assert _INSTANCE_ONLY <= set(template)
    rest = [(section, key, value.replace("/%i", "")) for section, key, value in template
            if key != "Description" and (section, key, value) not in _INSTANCE_ONLY]
    assert rest == plain


def test_the_settings_the_design_relies_on() -> None:
    settings = {(key, value) for _, key, value in _settings("shmq.service")}
    keys = {key for key, _ in settings}
    expected = {
        ("Type", "notify"), ("NotifyAccess", "main"), ("WatchdogSec", "30"),
        ("ExecStart", f"{INSTALLED_SHMQ} start"), ("Environment", "SHMQ_DATA_DIR=/var/lib/shmq"),
        ("StateDirectory", "shmq"), ("ReadWritePaths", "/var/lib/shmq"),
        ("KillMode", "mixed"), ("Restart", "on-failure"), ("RestartPreventExitStatus", "2"),
        ("User", "shmq"), ("Group", "shmq"), ("RemoveIPC", "no"),
        ("ProtectSystem", "strict"), ("MemoryDenyWriteExecute", "true"),
        ("CapabilityBoundingSet", ""), ("NoNewPrivileges", "true"),
    }
    assert expected <= settings, sorted(expected - settings)
    # Each would break shared memory between the broker and its local clients (README.md).
    assert not keys & {"DynamicUser", "ProtectProc", "ProcSubset", "PrivateIPC", "PrivateUsers"}


def _unit_environment(unit: str, instance: str) -> dict[str, str]:
    env = {}
    for _, key, value in _settings(unit):
        if key == "Environment":
            name, _, text = value.replace("%i", instance).partition("=")
            env[name] = text
    return env


def test_the_configuration_loader_accepts_the_units_environment(tmp_path: Path) -> None:
    plain = load_config(env=_unit_environment("shmq.service", "test"))
    assert plain.data_dir == Path("/var/lib/shmq")

    env = _unit_environment("shmq@.service", "test")
    assert env["SHMQ_CONFIG"] == "/etc/shmq/test.toml"
    config_file = tmp_path / "test.toml"
    config_file.write_text("[broker]\nport = 10921\n\n[namesrv]\nport = 9886\n")
    instance = load_config(env=env | {"SHMQ_CONFIG": str(config_file)})
    assert (instance.instance, instance.data_dir) == ("test", Path("/var/lib/shmq/test"))


# --- MemoryDenyWriteExecute= --------------------------------------------------------------------
# systemd 252 implements it with a seccomp filter (seccomp_memory_deny_write_execute): EPERM for
# mmap() asking for PROT_WRITE|PROT_EXEC, for mprotect()/pkey_mprotect() asking for PROT_EXEC and
# for shmat() with SHM_EXEC. The same filter, built below, runs the store benchmark.

_ARCHES = {  # machine: (AUDIT_ARCH_*, mmap, mprotect, pkey_mprotect, shmat)
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}
_LD_W_ABS, _JEQ_K, _AND_K, _RET_K = 0x20, 0x15, 0x54, 0x06
_ALLOW, _EPERM = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
_NR, _ARCH, _ARG2_LOW = 0, 4, 32  # struct seccomp_data offsets; args[2] low word (little-endian)
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000


def _memory_deny_write_execute_filter(machine: str) -> bytes:
    arch, mmap_nr, mprotect_nr, pkey_mprotect_nr, shmat_nr = _ARCHES[machine]
    wx = _PROT_WRITE | _PROT_EXEC
    program = [  # (code, jump if true, jump if false, k); jumps count instructions skipped
        (_LD_W_ABS, 0, 0, _ARCH),          # 0
        (_JEQ_K, 1, 0, arch),              # 1  native: go to 3
        (_RET_K, 0, 0, _ALLOW),            # 2
        (_LD_W_ABS, 0, 0, _NR),            # 3
        (_JEQ_K, 4, 0, mmap_nr),           # 4  -> 9
        (_JEQ_K, 6, 0, mprotect_nr),       # 5  -> 12
        (_JEQ_K, 5, 0, pkey_mprotect_nr),  # 6  -> 12
        (_JEQ_K, 7, 0, shmat_nr),          # 7  -> 15
        (_RET_K, 0, 0, _ALLOW),            # 8
        (_LD_W_ABS, 0, 0, _ARG2_LOW),      # 9  mmap: prot
        (_AND_K, 0, 0, wx),                # 10
        (_JEQ_K, 6, 7, wx),                # 11 -> 18 / 19
        (_LD_W_ABS, 0, 0, _ARG2_LOW),      # 12 mprotect: prot
        (_AND_K, 0, 0, _PROT_EXEC),        # 13
        (_JEQ_K, 3, 4, _PROT_EXEC),        # 14 -> 18 / 19
        (_LD_W_ABS, 0, 0, _ARG2_LOW),      # 15 shmat: flags
        (_AND_K, 0, 0, _SHM_EXEC),         # 16
        (_JEQ_K, 0, 1, _SHM_EXEC),         # 17 -> 18 / 19
        (_RET_K, 0, 0, _EPERM),            # 18
        (_RET_K, 0, 0, _ALLOW),            # 19
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


# Installs the filter given in hex as argv[1], proves it refuses a W+X mapping and an mprotect to
# executable, then runs `shmq` with the remaining arguments in the same (filtered) process.
_UNDER_FILTER = r"""
import ctypes, mmap, runpy, sys
program = ctypes.create_string_buffer(bytes.fromhex(sys.argv[1]))
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = SockFprog(len(program.raw) // 8, ctypes.addressof(program))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0):
    sys.exit(f"cannot install the seccomp filter: errno {ctypes.get_errno()}")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("the filter let a writable and executable mapping through")
except PermissionError:
    pass
page = mmap.mmap(-1, 4096)
address = ctypes.addressof(ctypes.c_char.from_buffer(page))
if libc.mprotect(address, 4096, mmap.PROT_READ | mmap.PROT_EXEC) == 0:
    sys.exit("the filter let mprotect(PROT_EXEC) through")
sys.argv = ["shmq", *sys.argv[2:]]
runpy.run_module("shmq.cli", run_name="__main__", alter_sys=True)
"""


def test_the_store_runs_under_memory_deny_write_execute(tmp_path: Path) -> None:
    machine = platform.machine()
    if machine not in _ARCHES:
        pytest.skip(f"no syscall numbers for {machine}; add them to _ARCHES")
    program = _memory_deny_write_execute_filter(machine).hex()
    bench = ["bench", "store", "--size", "128", "--messages", "2000", "--writers", "2",
             "--flush", "sync", "--runs", "1", "--dir", str(tmp_path)]
    result = subprocess.run([sys.executable, "-c", _UNDER_FILTER, program, *bench],
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "msgs_per_s=" in result.stdout
