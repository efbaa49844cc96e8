"""Tests of shmq.remoting.parse_address (no sockets)."""

from __future__ import annotations

import pytest

from shmq.remoting import ConnectFailed, parse_address


@pytest.mark.parametrize(("addr", "expected"), [
    ("127.0.0.1:9876", ("127.0.0.1", 9876)),
    ("broker-a.example:10911", ("broker-a.example", 10911)),
    ("[::1]:9876", ("::1", 9876)),
    (" 10.0.0.1:1 ", ("10.0.0.1", 1)),
])
def test_good_addresses(addr: str, expected: tuple[str, int]) -> None:
    assert parse_address(addr) == expected


@pytest.mark.parametrize("addr", ["", "host", "host:", ":9876", "host:0", "host:65536",
                                  "host:x1", "host:-1"])
def test_bad_addresses_are_refused_before_connecting(addr: str) -> None:
    with pytest.raises(ConnectFailed, match="host:port") as info:
        parse_address(addr)
    assert info.value.addr == addr and info.value.retriable
