"""The C++ client harness reads its records even when the C++ library's own output (merged
stderr, written from its threads) lands on the same line."""

from __future__ import annotations

from . import cpp_clients as cpp


def test_records_are_found_behind_foreign_text() -> None:
    lines = ['RECV {"seq": "0"}', 'W1202 rebalance ...RECV {"seq": "1", "body": "b"}',
             "STARTED", "[warn] x SENT 3 OK ABC", "FAILED 4 RuntimeError boom"]
    assert [m["seq"] for m in cpp.received(lines)] == ["0", "1"]
    assert cpp.sent(lines) == {"3": "OK", "4": "RuntimeError"}
