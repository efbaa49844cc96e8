"""The README's "Python client over TCP" example runs as written against a real broker (only
the name-server address is the test broker's), and its consumer gets the messages."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from shmq.testing.broker import running_broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text.split("## Python client over TCP", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the section should hold one python example"
    return blocks[0]


def test_the_readme_example_runs_and_delivers(tmp_path: Path) -> None:
    code = _example()
    assert "127.0.0.1:9876" in code
    with running_broker(tmp_path, writers=2) as broker:
        namesrv = f"127.0.0.1:{broker.env['SHMQ_NAMESRV_PORT']}"
        scope: dict[str, object] = {"print": lambda *args: received.append(args)}
        received: list[tuple[object, ...]] = []
        exec(compile(code.replace("127.0.0.1:9876", namesrv), "README.md", "exec"), scope)  # noqa: S102 -- our own README
        consumer = scope["consumer"]
        try:
            deadline = time.monotonic() + 60
            while len(received) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)  # hello, a, b, c and the committed transactional message
        finally:
            consumer.shutdown()  # type: ignore[attr-defined]
        bodies = sorted(args[1] for args in received)
        assert bodies == [b"a", b"b", b"c", b"hello", b"paid"]
