"""Tests of shmq/message/msgid.py: hosts, offset message ids, UNIQ_KEY (spec §2, §6)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmq.message import msgid
from shmq.message.errors import InvalidAddress, InvalidMessageId, MessageError
from shmq.message.msgid import (
    UniqKeyGenerator,
    decode_offset_msg_id,
    encode_offset_msg_id,
    new_uniq_key,
    pack_address,
    pack_host,
    unpack_host,
)

ports = st.integers(0, 65535)
offsets = st.integers(0, (1 << 63) - 1)
ip_addresses = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),
)


def stored_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """What a host reads back as: IPv4-mapped IPv6 is stored as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --- hosts ---------------------------------------------------------------------------------

# (host, port, packed bytes): one table for packing and unpacking.
HOSTS = [
    ("127.0.0.1", 10911, bytes.fromhex("7F00000100002A9F")),
    ("192.168.0.10", 0, bytes.fromhex("C0A8000A00000000")),
    ("::1", 65535, bytes.fromhex("000000000000000000000000000000010000FFFF")),
    ("2001:db8::8:1", 80, bytes.fromhex("20010DB800000000000000000008000100000050")),
]


@pytest.mark.parametrize(("host", "port", "packed"), HOSTS)
def test_pack_and_unpack_host_known(host: str, port: int, packed: bytes) -> None:
    assert pack_host(host, port) == packed
    assert unpack_host(packed) == (host, port)
    assert unpack_host(memoryview(packed)) == (host, port)


def test_ipv4_mapped_ipv6_is_packed_as_ipv4() -> None:
    assert pack_host("::ffff:10.1.2.3", 7) == bytes.fromhex("0A01020300000007")
    assert pack_host("::FFFF:10.1.2.3", 7) == pack_host("10.1.2.3", 7)
    assert pack_address("::ffff:10.1.2.3") == bytes([10, 1, 2, 3])


def test_ipv4_mapped_address_stored_as_16_bytes_reads_back_mapped() -> None:
    packed = bytes.fromhex("00000000000000000000FFFF0A01020300000007")
    assert unpack_host(packed) == ("::ffff:10.1.2.3", 7)


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("localhost", 1),  # names are not resolved
        ("1.2.3", 1),
        ("1.2.3.256", 1),
        ("", 1),
        ("fe80::1%eth0", 1),
        ("1.2.3.4\x00", 1),
        ("[::1]", 1),
        ("1.2.3.4", -1),
        ("1.2.3.4", 65536),
    ],
)
def test_bad_host_or_port_raises(host: str, port: int) -> None:
    with pytest.raises(InvalidAddress) as info:
        pack_host(host, port)
    assert info.value.host == host


@pytest.mark.parametrize("size", [0, 4, 7, 9, 16, 19, 21])
def test_unpack_host_of_wrong_size_raises(size: int) -> None:
    with pytest.raises(InvalidAddress):
        unpack_host(bytes(size))


@given(ip_addresses, ports)
def test_host_round_trip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    packed = pack_host(str(address), port)
    expected = stored_address(address)
    assert len(packed) == (8 if expected.version == 4 else 20)
    host, got_port = unpack_host(packed)
    assert ipaddress.ip_address(host) == expected
    assert got_port == port


# --- offset message id -----------------------------------------------------------------------

# (host, port, offset, id): one table for encoding and decoding.
MSG_IDS = [
    ("127.0.0.1", 10911, 0, "7F00000100002A9F0000000000000000"),
    ("10.0.0.5", 10911, 1 << 32, "0A00000500002A9F0000000100000000"),
    ("192.168.1.1", 1, (1 << 63) - 1, "C0A80101000000017FFFFFFFFFFFFFFF"),
    # address ::1, port 10911, offset 42
    ("::1", 10911, 42, "0000000000000000000000000000000100002A9F000000000000002A"),
]


@pytest.mark.parametrize(("host", "port", "offset", "expected"), MSG_IDS)
def test_offset_msg_id_known(host: str, port: int, offset: int, expected: str) -> None:
    assert encode_offset_msg_id(host, port, offset) == expected
    assert decode_offset_msg_id(expected) == (host, port, offset)
    assert decode_offset_msg_id(expected.lower()) == (host, port, offset)


def test_offset_msg_id_lengths() -> None:
    assert len(encode_offset_msg_id("1.2.3.4", 1, 2)) == 32
    assert len(encode_offset_msg_id("2001:db8::1", 1, 2)) == 56
    assert encode_offset_msg_id("::ffff:1.2.3.4", 1, 2) == encode_offset_msg_id("1.2.3.4", 1, 2)


@given(ip_addresses, ports, offsets)
def test_offset_msg_id_round_trip(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, offset: int
) -> None:
    text = encode_offset_msg_id(str(address), port, offset)
    assert re.fullmatch("[0-9A-F]{32}|[0-9A-F]{56}", text)
    host, got_port, got_offset = decode_offset_msg_id(text)
    assert ipaddress.ip_address(host) == stored_address(address)
    assert (got_port, got_offset) == (port, offset)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "7F00000100002A9F000000000000000",  # 31 characters
        "7F00000100002A9F00000000000000000",  # 33
        "7F00000100002A9F00000000000000G0",  # not hex
        "7F00000100002A9F000000000000 000",  # space (bytes.fromhex would skip it)
        "7F00000100002A9F000000000000\u0660000",  # a non-ASCII digit
        "7F0000010001000000000000000000000",  # 33 again, odd length
        "7F00000100002A9F8000000000000000",  # negative offset
        "7F000001FFFFFFFF0000000000000000",  # port -1
        "7F0000010001000000000000000000000"[:32],  # port 65536
    ],
)
def test_decode_bad_offset_msg_id_raises(bad: str) -> None:
    with pytest.raises(InvalidMessageId) as info:
        decode_offset_msg_id(bad)
    assert info.value.msg_id == bad


def test_decode_non_str_raises() -> None:
    with pytest.raises(InvalidMessageId):
        decode_offset_msg_id(b"7F00000100002A9F0000000000000000")  # type: ignore[arg-type]


@pytest.mark.parametrize("offset", [-1, 1 << 63])
def test_encode_offset_out_of_range_raises(offset: int) -> None:
    with pytest.raises(InvalidMessageId):
        encode_offset_msg_id("1.2.3.4", 1, offset)


def test_encode_bad_host_raises() -> None:
    with pytest.raises(InvalidAddress):
        encode_offset_msg_id("broker-a", 10911, 0)


_hex = "0123456789abcdefABCDEF"
id_like_text = st.one_of(
    st.text(max_size=60),
    st.text(_hex, min_size=32, max_size=32),
    st.text(_hex, min_size=56, max_size=56),
)


@given(id_like_text)
def test_decode_any_text_returns_or_raises_message_error(text: str) -> None:
    try:
        host, port, offset = decode_offset_msg_id(text)
    except MessageError:
        return
    encoded = encode_offset_msg_id(host, port, offset)
    if len(encoded) == len(text):
        assert encoded == text.upper()
    else:  # an IPv6 id holding an IPv4-mapped address re-encodes as IPv4
        assert ipaddress.IPv6Address(host).ipv4_mapped is not None


# --- UNIQ_KEY --------------------------------------------------------------------------------


def _month_start_ms(now_ms: int) -> int:
    """Start of the local-time month of `now_ms`, computed without the module under test."""
    now = datetime.datetime.fromtimestamp(now_ms / 1000)  # naive local time: DST-correct
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp()) * 1000


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


NOW_MS = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z


def test_uniq_key_layout() -> None:
    generator = UniqKeyGenerator("10.0.0.1", client_hash=0xDEADBEEF, clock_ms=FakeClock(NOW_MS))
    key = generator.new_key()
    assert re.fullmatch("[0-9A-F]{32}", key)
    assert key[0:8] == "0A000001"  # IP
    assert key[8:12] == f"{os.getpid() & 0xFFFF:04X}"  # pid
    assert key[12:20] == "DEADBEEF"  # client hash
    assert int(key[20:28], 16) == NOW_MS - _month_start_ms(NOW_MS)  # ms since month start
    assert key[28:32] == "0001"  # counter, Java's incrementAndGet from 0
    assert generator.prefix == key[:20]


def test_uniq_key_counter_increments_and_wraps_at_16_bits() -> None:
    generator = UniqKeyGenerator("10.0.0.1", client_hash=1, clock_ms=FakeClock(NOW_MS))
    counters = [int(generator.new_key()[28:], 16) for _ in range(65537)]
    assert counters[:3] == [1, 2, 3]
    assert counters[65534:] == [65535, 0, 1]


def test_uniq_keys_unique_for_65536_in_one_millisecond() -> None:
    generator = UniqKeyGenerator("10.0.0.1", client_hash=1, clock_ms=FakeClock(NOW_MS))
    keys = [generator.new_key() for _ in range(65536)]
    assert len(set(keys)) == 65536
    assert generator.new_key() == keys[0]  # the documented limit: the 65537th repeats


def test_uniq_key_time_restarts_at_month_change() -> None:
    clock = FakeClock(NOW_MS)
    generator = UniqKeyGenerator("10.0.0.1", client_hash=1, clock_ms=clock)
    month_start = _month_start_ms(NOW_MS)
    next_month = _month_start_ms(month_start + 32 * 86_400_000)
    clock.now_ms = next_month - 1
    assert int(generator.new_key()[20:28], 16) == next_month - 1 - month_start
    clock.now_ms = next_month + 5
    assert int(generator.new_key()[20:28], 16) == 5
    clock.now_ms = next_month - 10  # clock stepped back into the previous month
    assert int(generator.new_key()[20:28], 16) == next_month - 10 - month_start


def test_uniq_key_with_ipv6_host_is_56_chars() -> None:
    key = UniqKeyGenerator("2001:db8::1", client_hash=1).new_key()
    assert re.fullmatch("[0-9A-F]{56}", key)
    assert key.startswith("20010DB8000000000000000000000001")


def test_uniq_key_without_host_uses_fake_ip_from_clock() -> None:
    key = UniqKeyGenerator(client_hash=1, clock_ms=FakeClock(NOW_MS)).new_key()
    assert key[:8] == f"{NOW_MS & 0xFFFFFFFF:08X}"


def test_negative_client_hash_is_taken_as_32_bits() -> None:
    key = UniqKeyGenerator("10.0.0.1", client_hash=-1).new_key()
    assert key[12:20] == "FFFFFFFF"


def test_random_client_hash_differs_between_generators() -> None:
    prefixes = {UniqKeyGenerator("10.0.0.1").prefix for _ in range(8)}
    assert len(prefixes) > 1


def test_after_fork_child_gets_new_prefix_and_counter() -> None:
    generator = UniqKeyGenerator("10.0.0.1")
    fixed = UniqKeyGenerator("10.0.0.1", client_hash=7)
    before = generator.prefix
    for _ in range(3):
        generator.new_key()
    msgid._after_fork_in_child()  # what os.register_at_fork runs in a child
    assert generator.prefix != before  # new random client hash
    assert generator.new_key().endswith("0001")
    assert fixed.prefix.endswith("00000007")


def test_new_uniq_key_gives_distinct_upper_hex_keys() -> None:
    keys = [new_uniq_key() for _ in range(1000)]
    assert len(set(keys)) == 1000
    assert all(re.fullmatch("[0-9A-F]{32}", key) for key in keys)
    assert len({key[:20] for key in keys}) == 1  # one default generator per process


def test_bad_uniq_key_host_raises() -> None:
    with pytest.raises(InvalidAddress):
        UniqKeyGenerator("client-host")
