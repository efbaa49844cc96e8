"""Stored-record codec (spec/message-format.md §2, §3, §7).

Theory of operation:

* `encode_record` / `encode_record_into` build one version-1 record, the bytes the commit log
  stores and a pull response carries verbatim. They validate every input before producing or
  writing a byte, so a failure leaves the caller's buffer untouched. The IPv6 sysflag bits are
  derived from the hosts (an IPv4-mapped host is stored as IPv4, spec §2), never trusted from
  the caller, so the bits always match the layout.
* `decode_record` reads one record and checks what recovery checks (`checkMessageAndReturnSize`,
  spec §3): a sane TOTALSIZE that fits the buffer, the v1 magic, every length inside the record,
  TOTALSIZE equal to the size recomputed from the parsed lengths and, on request, the body CRC.
  Whatever the bytes, it returns a `StoredMessage` or raises `CorruptRecord`.
* `iter_pulled_fields` walks a pull body for a consumer: the fields it needs as a tuple, with
  the checks of `decode_record` done inline; a record they refuse is handed to `decode_record`
  itself, so both accept and refuse the same bytes with the same error.

Every offset comes from `layout.py`. Pure: no I/O, no logging.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from shmq.message.crc import body_crc
from shmq.message.errors import (
    BodyTooLarge,
    CorruptRecord,
    InvalidRecordField,
    InvalidTopic,
    MessageError,
    TopicTooLong,
    TruncatedRecord,
)
from shmq.message.layout import (
    BLANK_MAGIC,
    BORN_HOST_OFFSET,
    BORNHOST_V6_FLAG,
    DEFAULT_MAX_BODY_BYTES,
    HEADER_PREFIX,
    HEADER_SUFFIX,
    HEADER_V4,
    HOST_V4,
    HOST_V6,
    IPV4_ADDRESS_BYTES,
    MAX_I32,
    MAX_TOPIC_BYTES,
    MESSAGE_MAGIC,
    MESSAGE_MAGIC_V2,
    MIN_RECORD_BYTES,
    PENDING_MAGIC,
    PROPERTIES_LENGTH,
    SIZE_MAGIC,
    STORE_TIMESTAMP,
    STOREHOSTADDRESS_V6_FLAG,
    SYSFLAG_OFFSET,
    TAIL_FIXED,
    TOPIC_LENGTH,
    TOPIC_LENGTH_V2,
    TRANSACTION_MASK,
    record_size,
)
from shmq.message.msgid import encode_offset_msg_id, pack_address, pack_host, unpack_address
from shmq.message.properties import (
    KEY_SEPARATOR,
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
    decode_properties,
    properties_bytes,
)

__all__ = [
    "Buffer",
    "PulledFields",
    "StoredMessage",
    "decode_record",
    "encode_record",
    "encode_record_into",
    "iter_pulled_fields",
    "iter_record_fields",
    "iter_records",
]

#: What the codec reads from or writes into: a 1-D byte buffer (an mmap'd segment included).
Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap

_V6_FLAGS: Final = BORNHOST_V6_FLAG | STOREHOSTADDRESS_V6_FLAG
_MAGIC_NAMES: Final = {
    MESSAGE_MAGIC: "MESSAGE_MAGIC",
    MESSAGE_MAGIC_V2: "MESSAGE_MAGIC_V2",
    BLANK_MAGIC: "BLANK_MAGIC",
    PENDING_MAGIC: "PENDING_MAGIC",
}
_WRITABLE_MAGICS: Final = frozenset((MESSAGE_MAGIC, PENDING_MAGIC))
#: decoded topics and host addresses, by their bytes (bounded: cleared when full)
_TOPICS: dict[bytes, str] = {}
_ADDRESSES: dict[bytes, str] = {}
_TEXT_CACHE_SIZE: Final = 4096
# Indexes into HEADER_V4's fields, whose order is also StoredMessage's up to BODYLENGTH.
_BODY_CRC: Final = 2
_SYSFLAG: Final = 7
_BORN_ADDRESS: Final = 9
_STORE_ADDRESS: Final = 12


def _magic_name(magic: int) -> str:
    name = _MAGIC_NAMES.get(magic, "unknown")
    return f"{name} 0x{magic & 0xFFFFFFFF:08X}"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """Every field of one stored record (spec §2), hosts as text, properties parsed."""

    total_size: int  #: TOTALSIZE, whole record
    magic: int  #: MESSAGE_MAGIC (or MESSAGE_MAGIC_V2 when decoded with accept_v2)
    body_crc: int  #: BODYCRC as stored (checked only with check_crc)
    queue_id: int
    flag: int  #: producer's user flag
    queue_offset: int
    phys_offset: int  #: commit-log offset of the record's first byte
    sysflag: int  #: spec §4
    born_timestamp_ms: int
    born_host: str  #: TCP peer of the send
    born_port: int
    store_timestamp_ms: int
    store_host: str  #: broker's advertised address
    store_port: int
    reconsume_times: int
    prepared_tx_offset: int
    body: bytes  #: as stored (compressed when sysflag has COMPRESSED_FLAG)
    topic: str
    properties: dict[str, str] = field(hash=False)

    @property
    def tags(self) -> str | None:
        """TAGS property, or None."""
        return self.properties.get(PROPERTY_TAGS)

    @property
    def keys(self) -> list[str]:
        """Business keys: KEYS split on spaces, empty pieces dropped (what the index holds)."""
        keys = self.properties.get(PROPERTY_KEYS, "")
        return [key for key in keys.split(KEY_SEPARATOR) if key]

    @property
    def uniq_key(self) -> str | None:
        """UNIQ_KEY property (the producer's msgId), or None."""
        return self.properties.get(PROPERTY_UNIQ_KEY)

    @property
    def msg_id(self) -> str:
        """Offset message id from the store host and PHYSICALOFFSET (spec §6.1).

        Raises:
            InvalidAddress, InvalidMessageId: the record holds a port or offset out of range.
        """
        return encode_offset_msg_id(self.store_host, self.store_port, self.phys_offset)

    @property
    def client_msg_id(self) -> str:
        """The msgId a client shows: UNIQ_KEY when present, else the offset id (spec §6.2)."""
        return self.uniq_key or self.msg_id

    @property
    def transaction_type(self) -> int:
        """TRANSACTION_NOT/PREPARED/COMMIT/ROLLBACK_TYPE bits of the sysflag."""
        return self.sysflag & TRANSACTION_MASK


# --- encoding ----------------------------------------------------------------------------------


def encode_record(
    *,
    topic: str,
    body: bytes | bytearray | memoryview,
    properties: Mapping[str, str] | bytes = b"",
    queue_id: int = 0,
    flag: int = 0,
    queue_offset: int = 0,
    phys_offset: int = 0,
    sysflag: int = 0,
    born_timestamp_ms: int = 0,
    born_host: str,
    born_port: int,
    store_timestamp_ms: int = 0,
    store_host: str,
    store_port: int,
    reconsume_times: int = 0,
    prepared_tx_offset: int = 0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    magic: int = MESSAGE_MAGIC,
) -> bytes:
    """Build one version-1 record.

    Args:
        topic: at most 127 UTF-8 bytes.
        body: the body as it is to be stored (already compressed if it is).
        properties: a mapping to encode, or an already-encoded properties string (stored as is).
        sysflag: flags to store; the two IPv6 bits are replaced by what the hosts need.
        born_host, store_host: IPv4 or IPv6 literals; IPv4-mapped IPv6 is stored as IPv4.
        max_body_bytes: the configured maximum body size.
        magic: MESSAGE_MAGIC, or PENDING_MAGIC for a writer that publishes later.
        Other arguments: the record fields of the same name (spec §2).

    Returns:
        The record bytes; TOTALSIZE and BODYCRC are computed.

    Raises:
        TopicTooLong, InvalidTopic, PropertiesTooLarge, InvalidProperty, BodyTooLarge,
        InvalidAddress, InvalidRecordField: the input cannot be stored; nothing was built.
    """
    header, tail = _encode_parts(
        topic,
        body,
        properties,
        queue_id,
        flag,
        queue_offset,
        phys_offset,
        sysflag,
        born_timestamp_ms,
        born_host,
        born_port,
        store_timestamp_ms,
        store_host,
        store_port,
        reconsume_times,
        prepared_tx_offset,
        max_body_bytes,
        magic,
    )
    return b"".join((header, body, tail))


def encode_record_into(
    buf: bytearray | memoryview | mmap.mmap,
    offset: int,
    *,
    topic: str,
    body: bytes | bytearray | memoryview,
    properties: Mapping[str, str] | bytes = b"",
    queue_id: int = 0,
    flag: int = 0,
    queue_offset: int = 0,
    phys_offset: int = 0,
    sysflag: int = 0,
    born_timestamp_ms: int = 0,
    born_host: str,
    born_port: int,
    store_timestamp_ms: int = 0,
    store_host: str,
    store_port: int,
    reconsume_times: int = 0,
    prepared_tx_offset: int = 0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    magic: int = MESSAGE_MAGIC,
) -> int:
    """Write one record at `buf[offset:]` without an intermediate copy; return its size.

    Arguments are those of `encode_record`. The bytes are written front to back, magic
    included; a writer that must publish by writing the magic last passes PENDING_MAGIC and
    stores MESSAGE_MAGIC at MAGIC_OFFSET afterwards.

    Raises:
        MessageError: the record does not fit in `buf` at `offset`, or any error of
            `encode_record`; nothing was written.
    """
    header, tail = _encode_parts(
        topic,
        body,
        properties,
        queue_id,
        flag,
        queue_offset,
        phys_offset,
        sysflag,
        born_timestamp_ms,
        born_host,
        born_port,
        store_timestamp_ms,
        store_host,
        store_port,
        reconsume_times,
        prepared_tx_offset,
        max_body_bytes,
        magic,
    )
    body_len = memoryview(body).nbytes
    total = len(header) + body_len + len(tail)
    if offset < 0 or offset + total > len(buf):
        raise MessageError(
            f"record of {total} bytes does not fit at offset {offset} of a {len(buf)}-byte buffer"
        )
    body_start = offset + len(header)
    buf[offset:body_start] = header
    buf[body_start : body_start + body_len] = body
    buf[body_start + body_len : offset + total] = tail
    return total


def _encode_parts(
    topic: str,
    body: bytes | bytearray | memoryview,
    properties: Mapping[str, str] | bytes,
    queue_id: int,
    flag: int,
    queue_offset: int,
    phys_offset: int,
    sysflag: int,
    born_timestamp_ms: int,
    born_host: str,
    born_port: int,
    store_timestamp_ms: int,
    store_host: str,
    store_port: int,
    reconsume_times: int,
    prepared_tx_offset: int,
    max_body_bytes: int,
    magic: int,
) -> tuple[bytes, bytes]:
    """Validate and return (fixed header through BODYLENGTH, topic and properties tail)."""
    if magic not in _WRITABLE_MAGICS:
        raise InvalidRecordField("magic", magic, "only MESSAGE_MAGIC or PENDING_MAGIC is written")
    topic_bytes = _encode_topic(topic)
    props = properties_bytes(properties)
    body_len = memoryview(body).nbytes
    if body_len > max_body_bytes:
        raise BodyTooLarge(body_len, max_body_bytes)
    born_address, store_address, sysflag = _host_addresses(
        born_host, born_port, store_host, store_port, sysflag
    )
    total = record_size(body_len, len(topic_bytes), len(props), sysflag)
    if total > MAX_I32:
        raise BodyTooLarge(body_len, MAX_I32 - (total - body_len))
    fields = (
        total,
        magic,
        body_crc(body),
        queue_id,
        flag,
        queue_offset,
        phys_offset,
        sysflag,
        born_timestamp_ms,
        born_address,
        born_port,
        store_timestamp_ms,
        store_address,
        store_port,
        reconsume_times,
        prepared_tx_offset,
        body_len,
    )
    try:
        header = _pack_header(fields)
    except struct.error as err:
        raise _out_of_range(fields) from err
    tail = b"".join(
        (
            TOPIC_LENGTH.pack(len(topic_bytes)),
            topic_bytes,
            PROPERTIES_LENGTH.pack(len(props)),
            props,
        )
    )
    return header, tail


def _host_addresses(
    born_host: str, born_port: int, store_host: str, store_port: int, sysflag: int
) -> tuple[bytes, bytes, int]:
    """Return both packed addresses and `sysflag` with the IPv6 bits they need."""
    pack_host(born_host, born_port)  # checks the port; the address is cached
    pack_host(store_host, store_port)
    born_address, store_address = pack_address(born_host), pack_address(store_host)
    sysflag &= ~_V6_FLAGS
    if len(born_address) != IPV4_ADDRESS_BYTES:
        sysflag |= BORNHOST_V6_FLAG
    if len(store_address) != IPV4_ADDRESS_BYTES:
        sysflag |= STOREHOSTADDRESS_V6_FLAG
    return born_address, store_address, sysflag


def _pack_header(fields: tuple[int | bytes, ...]) -> bytes:
    """Pack TOTALSIZE through BODYLENGTH; the fields are in HEADER_V4's order."""
    born_address, store_address = fields[_BORN_ADDRESS], fields[_STORE_ADDRESS]
    assert isinstance(born_address, bytes) and isinstance(store_address, bytes)
    if len(born_address) == len(store_address) == IPV4_ADDRESS_BYTES:
        return HEADER_V4.pack(*fields)
    born = HOST_V6 if len(born_address) != IPV4_ADDRESS_BYTES else HOST_V4
    store = HOST_V6 if len(store_address) != IPV4_ADDRESS_BYTES else HOST_V4
    # Slices follow HEADER_V4's fields: prefix, born host, store time, store host, suffix.
    return b"".join(
        (
            HEADER_PREFIX.pack(*fields[0:9]),
            born.pack(*fields[9:11]),
            STORE_TIMESTAMP.pack(*fields[11:12]),
            store.pack(*fields[12:14]),
            HEADER_SUFFIX.pack(*fields[14:17]),
        )
    )


_FIELD_BITS: Final = (
    ("queue_id", 3, 32),
    ("flag", 4, 32),
    ("queue_offset", 5, 64),
    ("phys_offset", 6, 64),
    ("sysflag", 7, 32),
    ("born_timestamp_ms", 8, 64),
    ("store_timestamp_ms", 11, 64),
    ("reconsume_times", 14, 32),
    ("prepared_tx_offset", 15, 64),
)


def _out_of_range(fields: tuple[int | bytes, ...]) -> MessageError:
    """Name the field that made packing fail (a cold path; the hot path lets struct check)."""
    for name, index, bits in _FIELD_BITS:
        value = fields[index]
        if not isinstance(value, int) or not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            return InvalidRecordField(name, value, f"not a signed {bits}-bit integer")
    return MessageError(f"record header cannot be packed: {fields[:9]!r}")


def _encode_topic(topic: str) -> bytes:
    try:
        data = topic.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidTopic(topic, "contains a lone surrogate (no UTF-8 form)") from err
    if len(data) > MAX_TOPIC_BYTES:
        raise TopicTooLong(len(data), MAX_TOPIC_BYTES)
    return data


# --- decoding ----------------------------------------------------------------------------------


def decode_record(
    buf: Buffer, offset: int = 0, *, check_crc: bool = False, accept_v2: bool = False
) -> StoredMessage:
    """Decode and validate the record starting at `buf[offset]`.

    Bytes after the record are not looked at; the next record starts at
    `offset + result.total_size`.

    Args:
        buf: a byte buffer (bytes, bytearray, memoryview, mmap).
        offset: where the record starts in `buf`.
        check_crc: also check BODYCRC against the body (recovery does; pulls don't).
        accept_v2: also read 5.x version-2 records (2-byte TOPICLENGTH); shmq never writes them.

    Returns:
        The record's fields; `body` is a copy, so `buf` may change or close afterwards.

    Raises:
        TruncatedRecord: `buf` ends before the record does (need more bytes, or a cut record).
        CorruptRecord: anything else is wrong: the magic (a BLANK or PENDING magic too), a
            TOTALSIZE below the minimum or different from the recomputed size, a length that
            points outside the record, a topic that is not UTF-8, or (with `check_crc`) BODYCRC.
    """
    total, topic_length = _record_bounds(buf, offset, accept_v2)
    return StoredMessage(*_decode_tuple(buf, offset, total, topic_length, check_crc))


def _record_bounds(buf: Buffer, offset: int, accept_v2: bool) -> tuple[int, struct.Struct]:
    """TOTALSIZE and the TOPICLENGTH field of the record at `offset`, checked against its
    magic, the minimum size and the bytes `buf` holds (`decode_record`'s first checks)."""
    available = len(buf) - offset
    if offset < 0 or available < SIZE_MAGIC.size:
        raise TruncatedRecord(offset, "size and magic", SIZE_MAGIC.size, max(available, 0))
    total, magic = SIZE_MAGIC.unpack_from(buf, offset)
    if magic == MESSAGE_MAGIC:
        topic_length = TOPIC_LENGTH
    elif magic == MESSAGE_MAGIC_V2 and accept_v2:
        topic_length = TOPIC_LENGTH_V2
    else:
        expected = "MESSAGE_MAGIC or MESSAGE_MAGIC_V2" if accept_v2 else _magic_name(MESSAGE_MAGIC)
        raise CorruptRecord(offset, "magic", expected, _magic_name(magic))
    minimum = MIN_RECORD_BYTES + topic_length.size - TOPIC_LENGTH.size
    if total < minimum:
        raise CorruptRecord(offset, "total size", f">= {minimum}", total)
    if total > available:
        raise TruncatedRecord(offset, "total size", total, available)
    return total, topic_length


def _decode_tuple(
    buf: Buffer, offset: int, total: int, topic_length: struct.Struct, check_crc: bool
) -> list[Any]:
    """StoredMessage's fields in order, as a list, of a record whose bounds are checked
    (`_record_bounds`)."""
    end = offset + total
    fixed = _read_fixed(buf, offset, end, topic_length)
    body_start = offset + _body_offset(fixed[_SYSFLAG])
    body_end, topic_end = _locate_tail(buf, offset, end, body_start, fixed.pop(), topic_length)
    body = bytes(buf[body_start:body_end])
    if check_crc and body_crc(body) != fixed[_BODY_CRC]:
        raise CorruptRecord(
            offset, "body crc (field vs computed)", fixed[_BODY_CRC], body_crc(body)
        )
    topic = _topic_text(bytes(buf[body_end + topic_length.size : topic_end]), offset)
    properties = decode_properties(buf[topic_end + PROPERTIES_LENGTH.size : end])
    fixed += (body, topic, properties)
    return fixed


def _topic_text(raw_topic: bytes, offset: int) -> str:
    """The topic of the record at `offset`, decoded once per distinct topic.

    Raises:
        CorruptRecord: `raw_topic` is not UTF-8.
    """
    topic = _TOPICS.get(raw_topic)
    if topic is None:
        try:
            topic = raw_topic.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorruptRecord(offset, "topic", "UTF-8", raw_topic) from err
        if len(_TOPICS) >= _TEXT_CACHE_SIZE:
            _TOPICS.clear()
        _TOPICS[raw_topic] = topic
    return topic


def _host_structs(sysflag: int) -> tuple[struct.Struct, struct.Struct]:
    """BORNHOST's and STOREHOST's layouts (address and port) for the sysflag's IPv6 bits."""
    return (HOST_V6 if sysflag & BORNHOST_V6_FLAG else HOST_V4,
            HOST_V6 if sysflag & STOREHOSTADDRESS_V6_FLAG else HOST_V4)


def _body_offset(sysflag: int) -> int:
    """Offset of the first body byte from the record start, for the sysflag's host sizes."""
    born, store = _host_structs(sysflag)
    return BORN_HOST_OFFSET + born.size + STORE_TIMESTAMP.size + store.size + HEADER_SUFFIX.size


def _read_fixed(buf: Buffer, offset: int, end: int, topic_length: struct.Struct) -> list[Any]:
    """Read TOTALSIZE through BODYLENGTH, hosts as text, in HEADER_V4's order."""
    fixed = list(HEADER_V4.unpack_from(buf, offset))  # fits: TOTALSIZE >= MIN_RECORD_BYTES
    sysflag = fixed[_SYSFLAG]
    if sysflag & _V6_FLAGS:
        minimum = _body_offset(sysflag) + topic_length.size + PROPERTIES_LENGTH.size
        if minimum > end - offset:
            raise CorruptRecord(
                offset, "total size for the sysflag's hosts", f">= {minimum}", end - offset
            )
        fixed = _read_fixed_any_hosts(buf, offset, sysflag)
    fixed[_BORN_ADDRESS] = _address_text(fixed[_BORN_ADDRESS])
    fixed[_STORE_ADDRESS] = _address_text(fixed[_STORE_ADDRESS])
    return fixed


def _address_text(address: bytes) -> str:
    """`unpack_address`, remembered: a pull's records mostly share their hosts."""
    text = _ADDRESSES.get(address)
    if text is None:
        if len(_ADDRESSES) >= _TEXT_CACHE_SIZE:
            _ADDRESSES.clear()
        text = _ADDRESSES[address] = unpack_address(address)
    return text


def _read_fixed_any_hosts(buf: Buffer, offset: int, sysflag: int) -> list[Any]:
    """`_read_fixed` for a record with at least one IPv6 host."""
    born, store = _host_structs(sysflag)
    fixed = list(HEADER_PREFIX.unpack_from(buf, offset))
    pos = offset + BORN_HOST_OFFSET
    for piece in (born, STORE_TIMESTAMP, store, HEADER_SUFFIX):
        fixed += piece.unpack_from(buf, pos)
        pos += piece.size
    return fixed


def _locate_tail(
    buf: Buffer, offset: int, end: int, body_start: int, body_len: int, topic_length: struct.Struct
) -> tuple[int, int]:
    """Check BODYLENGTH, TOPICLENGTH and PROPERTIESLENGTH; return (body end, topic end)."""
    room = end - body_start - topic_length.size - PROPERTIES_LENGTH.size
    if not 0 <= body_len <= room:
        raise CorruptRecord(offset, "body length", f"0..{room}", body_len)
    body_end = body_start + body_len
    (topic_len,) = topic_length.unpack_from(buf, body_end)
    room -= body_len
    if not 0 <= topic_len <= room:
        raise CorruptRecord(offset, "topic length", f"0..{room}", topic_len)
    topic_end = body_end + topic_length.size + topic_len
    (props_len,) = PROPERTIES_LENGTH.unpack_from(buf, topic_end)
    recomputed = topic_end + PROPERTIES_LENGTH.size + props_len - offset
    if props_len < 0 or recomputed != end - offset:
        raise CorruptRecord(
            offset, "total size (recomputed vs TOTALSIZE)", recomputed, end - offset
        )
    return body_end, topic_end


def iter_records(
    buf: Buffer, *, check_crc: bool = False, accept_v2: bool = False
) -> Iterator[StoredMessage]:
    """Decode a concatenation of whole records, such as a pull response body (spec §7).

    Raises:
        CorruptRecord: (TruncatedRecord if cut short) at the first bad record; the records
            before it have been yielded.
    """
    offset, size = 0, len(buf)
    while offset < size:
        message = decode_record(buf, offset, check_crc=check_crc, accept_v2=accept_v2)
        yield message
        offset += message.total_size


def iter_record_fields(buf: Buffer) -> Iterator[list[Any]]:
    """`iter_records` without building StoredMessages: each record's fields as a list, in
    StoredMessage's field order, checked the same way. For decoders that turn
    records straight into their own objects (a consumer's messages).

    Raises:
        CorruptRecord: (TruncatedRecord if cut short) at the first bad record.
    """
    offset, size = 0, len(buf)
    while offset < size:
        total, topic_length = _record_bounds(buf, offset, False)
        yield _decode_tuple(buf, offset, total, topic_length, False)
        offset += total


# --- a consumer's view of a pull body ----------------------------------------------------------

#: What `iter_pulled_fields` yields per record: FLAG, QUEUEOFFSET, PHYSICALOFFSET, SYSFLAG,
#: BORNTIMESTAMP, BORNHOST, STORETIMESTAMP, STOREHOST, RECONSUMETIMES, BODY (as stored), topic and
#: properties. Each host is its stored bytes, address and port together (8 or 20 bytes,
#: `msgid.unpack_host` reads them), so that a consumer can look its text up by them.
PulledFields: TypeAlias = tuple[
    int, int, int, int, int, bytes, int, bytes, int, bytes, str, dict[str, str]
]


def _pulled_header(sysflag: int) -> struct.Struct:
    """TOTALSIZE through BODYLENGTH of a record with the sysflag's host sizes, as a consumer
    reads them: BODYCRC, QUEUEID and PREPARED_TX_OFF skipped (pad bytes), each host whole
    (address and port)."""
    born, store = _host_structs(sysflag)
    header = struct.Struct(f">ii4x4xiqqiq{born.size}sq{store.size}si8xi")
    assert header.size == _body_offset(sysflag)
    return header


#: `_pulled_header` by the IPv6 bits of the sysflag
_PULLED_HEADERS: Final = {bits: _pulled_header(bits) for bits in (
    0, BORNHOST_V6_FLAG, STOREHOSTADDRESS_V6_FLAG, _V6_FLAGS)}
#: SYSFLAG is big-endian: its IPv6 bits are in its last byte
_SYSFLAG_LAST_BYTE: Final = SYSFLAG_OFFSET + 3
assert _V6_FLAGS < 0x100


def iter_pulled_fields(buf: Buffer) -> Iterator[PulledFields]:
    """The records of a pull body (spec §7) as `PulledFields`, checked like `iter_records`.

    For a consumer's decoder, which runs once per pulled message: a record is read with one
    unpack and a few comparisons, its topic compared with the previous record's; any record
    `decode_record` would refuse is handed to it, so that it raises what `iter_records` raises.
    A `buf` that is not `bytes` is copied once (slices of bytes are the cheapest to take): this
    is for pull bodies, not for commit-log segments.

    Raises:
        CorruptRecord: (TruncatedRecord if cut short) at the first bad record; the records before
            it have been yielded.
    """
    # One loop with everything inline: a call per record would cost as much as the checks.
    data = buf if type(buf) is bytes else bytes(buf)
    headers, v6_flags, sysflag_byte = _PULLED_HEADERS, _V6_FLAGS, _SYSFLAG_LAST_BYTE
    unpack_properties_length = PROPERTIES_LENGTH.unpack_from
    length_size = PROPERTIES_LENGTH.size
    offset, size = 0, len(data)
    tail, topic = b"", ""  # the previous record's TOPICLENGTH and topic bytes, and its topic
    while offset < size:
        header = None
        if size - offset >= HEADER_V4.size:  # the smallest header
            header = headers[data[offset + sysflag_byte] & v6_flags]
        if header is not None and size - offset >= header.size:
            (total, magic, flag, queue_offset, phys_offset, sysflag, born_ms, born, store_ms,
             store, reconsume, body_len) = header.unpack_from(data, offset)
            body_start = offset + header.size
            end, body_end = offset + total, body_start + body_len
            # (TOTALSIZE >= MIN_RECORD_BYTES follows from the room BODYLENGTH must leave)
            if (magic == MESSAGE_MAGIC and total <= size - offset
                    and 0 <= body_len <= end - body_start - TAIL_FIXED):
                if not (tail and data.startswith(tail, body_end)):
                    tail, topic = _topic_at(data, offset, body_end, end)
                topic_end = body_end + len(tail)
                if tail and topic_end + length_size <= end:  # so PROPERTIESLENGTH >= 0
                    (props_len,) = unpack_properties_length(data, topic_end)
                    if topic_end + length_size + props_len == end:
                        yield (flag, queue_offset, phys_offset, sysflag, born_ms, born, store_ms,
                               store, reconsume, data[body_start:body_end], topic,
                               decode_properties(data[topic_end + length_size : end]))
                        offset = end
                        continue
        total, fields = _pulled_fields_any(data, offset)
        yield fields
        offset += total


def _topic_at(data: bytes, offset: int, body_end: int, end: int) -> tuple[bytes, str]:
    """TOPICLENGTH and the topic bytes at `body_end` of the record at `offset`, and the topic;
    ``(b"", "")`` when they do not fit before a PROPERTIESLENGTH ending by `end` or the topic
    is not UTF-8 (`decode_record` then says which)."""
    (topic_len,) = TOPIC_LENGTH.unpack_from(data, body_end)
    topic_end = body_end + TOPIC_LENGTH.size + topic_len
    if topic_len < 0 or topic_end + PROPERTIES_LENGTH.size > end:
        return b"", ""
    try:
        topic = _topic_text(data[body_end + TOPIC_LENGTH.size : topic_end], offset)
    except CorruptRecord:
        return b"", ""
    return data[body_end:topic_end], topic


def _pulled_fields_any(data: bytes, offset: int) -> tuple[int, PulledFields]:
    """TOTALSIZE and `PulledFields` of any record `decode_record` accepts at `offset`; in
    practice, the error it raises for the record `iter_pulled_fields` could not read.

    Raises:
        CorruptRecord, TruncatedRecord: as `decode_record`.
    """
    record = decode_record(data, offset)
    born, store = _host_structs(record.sysflag)
    born_start = offset + BORN_HOST_OFFSET
    store_start = born_start + born.size + STORE_TIMESTAMP.size
    return record.total_size, (
        record.flag, record.queue_offset, record.phys_offset, record.sysflag,
        record.born_timestamp_ms, data[born_start : born_start + born.size],
        record.store_timestamp_ms, data[store_start : store_start + store.size],
        record.reconsume_times, record.body, record.topic, record.properties)
