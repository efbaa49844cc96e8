"""Imports point down only (style.md §2): walk the package with ast and check every import."""

from __future__ import annotations

import ast
from pathlib import Path

import shmq

PACKAGE = Path(shmq.__file__).parent
LOW = {"errors"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "message": {"errors"},
    "protocol": {"message", "errors"},
    "store": {"message", "errors"},
    "ipc": {"errors"},
    "remoting": {"protocol", "message", "errors"},
    "broker": {"remoting", "protocol", "store", "ipc", "message", "errors"},
    "ha": {"remoting", "protocol", "store", "ipc", "message", "errors"},
    "namesrv": {"remoting", "protocol", "message", "errors"},
    "client": {"remoting", "protocol", "ipc", "message", "errors", "store"},
}
TOP = {"runtime", "cli", "clitools", "bench", "testing", "__init__"}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [m.split(".")[1] for m in found if m.startswith("shmq.") and m.count(".") >= 1]


def test_every_import_is_allowed() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        if layer in TOP:
            continue
        assert layer in ALLOWED, f"{path}: package {layer!r} is missing from the layering table"
        for target in _imports(path):
            if target != layer and target not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(PACKAGE)} imports shmq.{target}")
    assert not bad, "imports against the layering table:\n" + "\n".join(bad)


def test_the_check_sees_a_bad_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from shmq.broker import dispatch\nimport shmq.store.commitlog\n")
    assert _imports(sample) == ["broker", "store"]
