"""Message ids and host addresses (spec/message-format.md §2, §6).

* Hosts are stored as 4-byte IPv4 or 16-byte IPv6 address + i32 port. An IPv4-mapped IPv6
  address (``::ffff:a.b.c.d``, what a dual-stack socket reports for an IPv4 peer) is stored as
  IPv4, because the C++ client and ali-ons read only 4-byte hosts (spec §2).
* The offset message id is ``hex_upper(store address ‖ store port ‖ commit-log offset)``: 32
  characters for an IPv4 store host, 56 for IPv6 (spec §6.1).
* UNIQ_KEY, the producer-side id, is ``hex_upper(IP ‖ pid:2 ‖ client hash:4 ‖ ms since the start
  of the month:4 ‖ counter:2)`` like Java 4.x's `MessageClientIDSetter` (spec §6.2). Consumers
  must treat it as opaque and possibly duplicated; we only generate it.

No I/O: hosts are parsed as literals, never resolved.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from shmq.message.errors import InvalidAddress, InvalidMessageId
from shmq.message.layout import HOST_V4, HOST_V6, IPV4_ADDRESS_BYTES, IPV6_ADDRESS_BYTES

__all__ = [
    "OFFSET_MSG_ID_V4_CHARS",
    "OFFSET_MSG_ID_V6_CHARS",
    "UniqKeyGenerator",
    "decode_offset_msg_id",
    "encode_offset_msg_id",
    "key_block",
    "new_uniq_key",
    "pack_address",
    "pack_host",
    "uniq_key",
    "unpack_address",
    "unpack_host",
]

_V4_MAPPED_PREFIX: Final = b"\x00" * 10 + b"\xff\xff"  #: first 12 bytes of ::ffff:a.b.c.d
_PORT: Final = struct.Struct(">i")
_MSG_ID_OFFSET: Final = struct.Struct(">q")  #: commit-log offset at the end of an offset id
_MAX_PORT: Final = 0xFFFF
_MAX_OFFSET: Final = (1 << 63) - 1
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
#: Characters of an offset message id with an IPv4 / IPv6 store host (spec §6.1).
OFFSET_MSG_ID_V4_CHARS: Final = 2 * (HOST_V4.size + _MSG_ID_OFFSET.size)
OFFSET_MSG_ID_V6_CHARS: Final = 2 * (HOST_V6.size + _MSG_ID_OFFSET.size)


@lru_cache(maxsize=4096)
def pack_address(host: str) -> bytes:
    """Return the 4 (IPv4) or 16 (IPv6) address bytes of the literal `host`.

    An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) gives the 4 IPv4 bytes. Results are cached:
    the same few peers and the store host are packed for every message.

    Raises:
        InvalidAddress: `host` is not an IPv4 or IPv6 literal (names are not resolved).
    """
    if not isinstance(host, str):
        raise InvalidAddress(host, None, "host must be a str")
    with contextlib.suppress(OSError, ValueError):  # not IPv4: try IPv6
        return socket.inet_pton(socket.AF_INET, host)
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError) as err:
        raise InvalidAddress(host, None, "not an IPv4 or IPv6 address literal") from err
    if packed.startswith(_V4_MAPPED_PREFIX):
        return packed[len(_V4_MAPPED_PREFIX) :]
    return packed


def pack_host(host: str, port: int) -> bytes:
    """Return `host` and `port` as stored in a record: 4+4 bytes (IPv4) or 16+4 (IPv6).

    Args:
        host: an IPv4 or IPv6 literal; ``::ffff:a.b.c.d`` is stored as IPv4.
        port: 0..65535.

    Raises:
        InvalidAddress: `host` is not an address literal (names are not resolved) or `port`
            is out of range.
    """
    if not 0 <= port <= _MAX_PORT:
        raise InvalidAddress(host, port, f"port outside 0..{_MAX_PORT}")
    return pack_address(host) + _PORT.pack(port)


@lru_cache(maxsize=4096)
def unpack_address(address: bytes) -> str:
    """Text form of 4 (IPv4) or 16 (IPv6) address bytes; cached like `pack_address`.

    Raises:
        InvalidAddress: `address` is neither 4 nor 16 bytes long.
    """
    if len(address) == IPV4_ADDRESS_BYTES:
        return socket.inet_ntop(socket.AF_INET, address)
    if len(address) == IPV6_ADDRESS_BYTES:
        return socket.inet_ntop(socket.AF_INET6, address)
    raise InvalidAddress(address.hex(), None, "address must be 4 or 16 bytes")


def unpack_host(data: bytes | bytearray | memoryview) -> tuple[str, int]:
    """Inverse of `pack_host`: 8 bytes give an IPv4 host, 20 bytes an IPv6 host.

    The port is returned as stored (a signed i32), even outside 0..65535.

    Raises:
        InvalidAddress: `data` is neither 8 nor 20 bytes long.
    """
    raw = bytes(data)
    if len(raw) in (HOST_V4.size, HOST_V6.size):
        address, port = (HOST_V4 if len(raw) == HOST_V4.size else HOST_V6).unpack(raw)
        return unpack_address(address), port
    raise InvalidAddress(
        raw.hex(), None, f"packed host must be {HOST_V4.size} or {HOST_V6.size} bytes"
    )


def encode_offset_msg_id(host: str, port: int, phys_offset: int) -> str:
    """Return the offset message id of the record at `phys_offset` on store `host`:`port`.

    Args:
        host: the store host (IPv4 gives 32 characters, IPv6 56).
        port: the store port.
        phys_offset: commit-log offset of the record's first byte.

    Raises:
        InvalidAddress: as for `pack_host`.
        InvalidMessageId: `phys_offset` is negative or beyond a signed 64-bit integer.
    """
    if not 0 <= phys_offset <= _MAX_OFFSET:
        raise InvalidMessageId(phys_offset, "commit-log offset outside 0..2**63-1")
    return f"{_msg_id_prefix(host, port)}{phys_offset:016X}"


@lru_cache(maxsize=1024)
def _msg_id_prefix(host: str, port: int) -> str:
    """The store-host part of an offset id (upper-case hex), remembered: a consumer computes
    one id per message, and a pull's messages share their store host."""
    return pack_host(host, port).hex().upper()


def decode_offset_msg_id(msg_id: str) -> tuple[str, int, int]:
    """Split an offset message id into (store host, store port, commit-log offset).

    Hex digits of either case are accepted. A UNIQ_KEY (also 32 hex characters) decodes
    without error into a meaningless address: callers must know which kind of id they hold.

    Raises:
        InvalidMessageId: not a str of 32 or 56 hex digits, or the port or offset it holds is
            out of range.
    """
    if not isinstance(msg_id, str):
        raise InvalidMessageId(msg_id, "must be a str")
    if len(msg_id) not in (OFFSET_MSG_ID_V4_CHARS, OFFSET_MSG_ID_V6_CHARS):
        raise InvalidMessageId(
            msg_id,
            f"length {len(msg_id)}, expected {OFFSET_MSG_ID_V4_CHARS} (IPv4 store host) "
            f"or {OFFSET_MSG_ID_V6_CHARS} (IPv6)",
        )
    if not _HEX_DIGITS.issuperset(msg_id):
        raise InvalidMessageId(msg_id, "contains a character that is not a hex digit")
    raw = bytes.fromhex(msg_id)
    split = len(raw) - _MSG_ID_OFFSET.size
    host, port = unpack_host(raw[:split])
    (phys_offset,) = _MSG_ID_OFFSET.unpack(raw[split:])
    if not 0 <= port <= _MAX_PORT:
        raise InvalidMessageId(msg_id, f"port {port} outside 0..{_MAX_PORT}")
    if phys_offset < 0:
        raise InvalidMessageId(msg_id, f"negative commit-log offset {phys_offset}")
    return host, port, phys_offset


# --- UNIQ_KEY ----------------------------------------------------------------------------------

_PID: Final = struct.Struct(">H")  #: low 16 bits of the pid
_CLIENT_HASH: Final = struct.Struct(">I")  #: Java: class-loader hash; C++ 1.2.4: rand()
_COUNTER_MASK: Final = 0xFFFF  #: 16-bit counter (spec §6.2)
_DIFF_MASK: Final = 0xFFFFFFFF  #: Java writes `(int) diff`: 4 bytes, two's complement


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _month_bounds_ms(now_ms: int) -> tuple[int, int]:
    """Start of the local-time month holding `now_ms` and start of the next one, in epoch ms."""
    t = time.localtime(now_ms // 1000)
    start = time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1))
    end = time.mktime((t.tm_year, t.tm_mon + 1, 1, 0, 0, 0, 0, 0, -1))  # mktime normalises 13
    return int(start) * 1000, int(end) * 1000


class UniqKeyGenerator:
    """Makes UNIQ_KEYs like the Java 4.x client, unique per process up to 65536 per ms.

    The fixed prefix (IP, pid, client hash) is precomputed; each call formats the time since the
    start of the month and a 16-bit counter. After `os.fork()` the child gets its own pid, a new
    random client hash and a fresh counter, so parent and child never share ids.

    Thread-safe: the counter is an `itertools.count` (atomic under the GIL); a month change is
    handled under a lock.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        client_hash: int | None = None,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        """Create a generator.

        Args:
            host: the client's IPv4 or IPv6 address; None uses the low 4 bytes of the current
                time in ms, like Java's `createFakeIP` fallback (no I/O to find an interface).
            client_hash: identifies this client instance, taken modulo 2**32 (Java's signed
                class-loader hash fits); None draws a random value (C++ uses `rand()`).
            clock_ms: epoch milliseconds; tests pass a fake clock.

        Raises:
            InvalidAddress: `host` is not an address literal.
        """
        self._clock_ms = clock_ms
        if host is None:
            self._address = struct.pack(">q", clock_ms())[-4:]
        else:
            self._address = pack_address(host)
        self._fixed_hash = client_hash
        self._lock = threading.Lock()
        self._reset()
        _GENERATORS.add(self)

    def _reset(self) -> None:
        client_hash = self._fixed_hash
        if client_hash is None:
            client_hash = random.getrandbits(32)
        self._prefix = (
            (
                self._address
                + _PID.pack(os.getpid() & 0xFFFF)
                + _CLIENT_HASH.pack(client_hash & 0xFFFFFFFF)
            )
            .hex()
            .upper()
        )
        self._counter = itertools.count(1)  # Java: COUNTER.incrementAndGet() from 0
        self._start_ms, self._next_start_ms = _month_bounds_ms(self._clock_ms())

    @property
    def prefix(self) -> str:
        """The fixed hex prefix: IP, pid and client hash."""
        return self._prefix

    def new_key(self) -> str:
        """Return the next UNIQ_KEY: 32 upper-hex characters (56 for an IPv6 host)."""
        now_ms = self._clock_ms()
        if not self._start_ms <= now_ms < self._next_start_ms:
            with self._lock:  # new month, or the clock went back past the month start
                self._start_ms, self._next_start_ms = _month_bounds_ms(now_ms)
        diff = (now_ms - self._start_ms) & _DIFF_MASK
        with self._lock:
            count = next(self._counter) & _COUNTER_MASK
        return f"{self._prefix}{diff:08X}{count:04X}"

    def new_keys(self, n: int) -> list[str]:
        """`n` keys at once (one clock read; consecutive counters): a batch's UNIQ_KEYs."""
        head, first = self.new_key_block(n)
        return key_block(head, first, n)

    def new_key_block(self, n: int) -> tuple[str, int]:
        """Reserve `n` consecutive keys: `(head, first)`; key i is `head` followed by
        ``(first + i) & 0xFFFF`` in 4 upper-hex digits (see `key_block`)."""
        now_ms = self._clock_ms()
        if not self._start_ms <= now_ms < self._next_start_ms:
            with self._lock:
                self._start_ms, self._next_start_ms = _month_bounds_ms(now_ms)
        head = f"{self._prefix}{(now_ms - self._start_ms) & _DIFF_MASK:08X}"
        with self._lock:  # the block must not interleave with other threads' keys
            first = next(self._counter)
            if n > 1:
                self._counter = itertools.count(first + n)
        return head, first


def key_block(head: str, first: int, n: int) -> list[str]:
    """The keys of a block reserved with `UniqKeyGenerator.new_key_block`."""
    return [f"{head}{(first + i) & _COUNTER_MASK:04X}" for i in range(n)]


def uniq_key(head: str, counter: int) -> str:
    """`key_block(head, counter, 1)[0]`, without the list."""
    return f"{head}{counter & _COUNTER_MASK:04X}"


_GENERATORS: Final[weakref.WeakSet[UniqKeyGenerator]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for generator in list(_GENERATORS):
        generator._lock = threading.Lock()
        generator._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)

_default_generator: UniqKeyGenerator | None = None


def new_uniq_key() -> str:
    """Return a new UNIQ_KEY from this process's default generator (fake IP, spec §6.2).

    Clients that know their address should make their own `UniqKeyGenerator(host)`.
    """
    global _default_generator
    generator = _default_generator
    if generator is None:
        generator = _default_generator = UniqKeyGenerator()
    return generator.new_key()
