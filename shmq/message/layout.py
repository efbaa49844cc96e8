"""Byte layout of a stored RocketMQ message record (version 1), spec/message-format.md §2-§4.

One record, both hosts IPv4 (each IPv6 host adds 12 bytes; sysflag bits say which)::

    +0   TOTALSIZE        i32   whole record, this field included
    +4   MAGICCODE        i32   MESSAGE_MAGIC (published), BLANK_MAGIC or PENDING_MAGIC
    +8   BODYCRC          i32   zlib CRC-32 of the stored body & 0x7FFFFFFF
    +12  QUEUEID          i32
    +16  FLAG             i32
    +20  QUEUEOFFSET      i64
    +28  PHYSICALOFFSET   i64   commit-log offset of this record's first byte
    +36  SYSFLAG          i32
    +40  BORNTIMESTAMP    i64
    +48  BORNHOST         4|16 bytes address + i32 port
    +56  STORETIMESTAMP   i64
    +64  STOREHOST        4|16 bytes address + i32 port
    +72  RECONSUMETIMES   i32
    +76  PREPARED_TX_OFF  i64
    +84  BODYLENGTH       i32, then BODY
         TOPICLENGTH      i8 (signed), then TOPIC (UTF-8)
         PROPERTIESLENGTH i16 (signed), then PROPERTIES (UTF-8, spec §5)

Publication: a record becomes visible to readers when its MAGICCODE holds MESSAGE_MAGIC; that
field is written last (see store/commitlog.py for the batch protocol).
"""

from __future__ import annotations

import struct
from typing import Final

# --- magics (spec §2, §3) ---------------------------------------------------------------------
MESSAGE_MAGIC: Final = -626843481  #: 0xDAA320A7, version-1 message record
MESSAGE_MAGIC_V2: Final = -626843477  #: 0xDAA320AB, 5.x record (read-only; never written)
BLANK_MAGIC: Final = -875286124  #: 0xCBD43194, filler: skip TOTALSIZE bytes (end of segment)
#: shmq's own: space claimed by a writer whose records are not published yet. Never valid on
#: disk after recovery (recovery turns it into BLANK_MAGIC of the same size).
PENDING_MAGIC: Final = -1163005939  #: 0xBAADF00D
BLANK_MIN_BYTES: Final = 8  #: END_FILE_MIN_BLANK_LENGTH: [size][magic]

# --- field offsets (IPv4 hosts) ----------------------------------------------------------------
TOTAL_SIZE_OFFSET: Final = 0
MAGIC_OFFSET: Final = TOTAL_SIZE_OFFSET + 4
BODY_CRC_OFFSET: Final = MAGIC_OFFSET + 4
QUEUE_ID_OFFSET: Final = BODY_CRC_OFFSET + 4
FLAG_OFFSET: Final = QUEUE_ID_OFFSET + 4
QUEUE_OFFSET_OFFSET: Final = FLAG_OFFSET + 4
PHYSICAL_OFFSET_OFFSET: Final = QUEUE_OFFSET_OFFSET + 8
SYSFLAG_OFFSET: Final = PHYSICAL_OFFSET_OFFSET + 8
BORN_TIMESTAMP_OFFSET: Final = SYSFLAG_OFFSET + 4
BORN_HOST_OFFSET: Final = BORN_TIMESTAMP_OFFSET + 8
IPV4_HOST_BYTES: Final = 8  #: 4-byte address + i32 port
IPV6_HOST_BYTES: Final = 20  #: 16-byte address + i32 port
#: Bytes of fixed fields from TOTALSIZE through BODYLENGTH, without the two hosts.
FIXED_WITHOUT_HOSTS: Final = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 4 + 8 + 4
#: Bytes after the body besides topic and properties: TOPICLENGTH i8 + PROPERTIESLENGTH i16.
TAIL_FIXED: Final = 1 + 2
#: Record overhead with IPv4 hosts: 91 + body + topic + properties (Java calMsgLength).
IPV4_OVERHEAD: Final = FIXED_WITHOUT_HOSTS + 2 * IPV4_HOST_BYTES + TAIL_FIXED
#: Bytes from the record start to the first body byte (IPv4 hosts).
IPV4_BODY_OFFSET: Final = FIXED_WITHOUT_HOSTS + 2 * IPV4_HOST_BYTES
STORE_TIMESTAMP_OFFSET_V4: Final = BORN_HOST_OFFSET + IPV4_HOST_BYTES

# --- limits ------------------------------------------------------------------------------------
MAX_TOPIC_BYTES: Final = 127  #: TOPICLENGTH is a signed byte
MAX_PROPERTIES_BYTES: Final = 32767  #: PROPERTIESLENGTH is a signed short
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024  #: maxMessageSize

# --- sysflag bits (spec §4) --------------------------------------------------------------------
COMPRESSED_FLAG: Final = 0x1
MULTI_TAGS_FLAG: Final = 0x2
TRANSACTION_MASK: Final = 0xC
TRANSACTION_NOT_TYPE: Final = 0x0
TRANSACTION_PREPARED_TYPE: Final = 0x4
TRANSACTION_COMMIT_TYPE: Final = 0x8
TRANSACTION_ROLLBACK_TYPE: Final = 0xC
BORNHOST_V6_FLAG: Final = 0x10
STOREHOSTADDRESS_V6_FLAG: Final = 0x20

#: [TOTALSIZE][MAGICCODE] — the 8 bytes every reader looks at first.
SIZE_MAGIC: Final = struct.Struct(">ii")
#: Fixed header of an IPv4/IPv4 record from TOTALSIZE through BODYLENGTH (88 bytes); hosts are
#: packed as 4-byte address + i32 port.
HEADER_V4: Final = struct.Struct(">iiiiiqqiq4siq4siiqi")
assert HEADER_V4.size == IPV4_BODY_OFFSET == 88


def record_size(body_len: int, topic_len: int, props_len: int, sysflag: int = 0) -> int:
    """Size of a stored record (Java `CommitLog.calMsgLength`)."""
    size = IPV4_OVERHEAD + body_len + topic_len + props_len
    if sysflag & BORNHOST_V6_FLAG:
        size += IPV6_HOST_BYTES - IPV4_HOST_BYTES
    if sysflag & STOREHOSTADDRESS_V6_FLAG:
        size += IPV6_HOST_BYTES - IPV4_HOST_BYTES
    return size


# --- the rest of the IPv4/IPv4 field offsets (spec §2) -------------------------------------------
STORE_HOST_OFFSET_V4: Final = STORE_TIMESTAMP_OFFSET_V4 + 8
RECONSUME_TIMES_OFFSET_V4: Final = STORE_HOST_OFFSET_V4 + IPV4_HOST_BYTES
PREPARED_TX_OFFSET_OFFSET_V4: Final = RECONSUME_TIMES_OFFSET_V4 + 4
BODY_LENGTH_OFFSET_V4: Final = PREPARED_TX_OFFSET_OFFSET_V4 + 8
assert BODY_LENGTH_OFFSET_V4 + 4 == IPV4_BODY_OFFSET

# --- pieces of a record with any host kind (spec §2) -------------------------------------------
# A record with an IPv6 host cannot be read with HEADER_V4; readers and writers walk it with the
# pieces below, in this order: HEADER_PREFIX, born host, STORE_TIMESTAMP, store host,
# HEADER_SUFFIX, body, topic length + topic, PROPERTIES_LENGTH + properties.

#: TOTALSIZE through BORNTIMESTAMP (48 bytes); the born host starts right after it.
HEADER_PREFIX: Final = struct.Struct(">iiiiiqqiq")
assert HEADER_PREFIX.size == BORN_HOST_OFFSET == 48
HOST_V4: Final = struct.Struct(">4si")  #: IPv4 address + i32 port (sysflag bit clear)
HOST_V6: Final = struct.Struct(">16si")  #: IPv6 address + i32 port (BORNHOST_V6_FLAG etc. set)
assert HOST_V4.size == IPV4_HOST_BYTES and HOST_V6.size == IPV6_HOST_BYTES
IPV4_ADDRESS_BYTES: Final = 4  #: address part of an IPv4 host
IPV6_ADDRESS_BYTES: Final = 16  #: address part of an IPv6 host
HOST_PORT_BYTES: Final = 4  #: i32 port after either address
assert IPV4_ADDRESS_BYTES + HOST_PORT_BYTES == IPV4_HOST_BYTES
assert IPV6_ADDRESS_BYTES + HOST_PORT_BYTES == IPV6_HOST_BYTES
STORE_TIMESTAMP: Final = struct.Struct(">q")  #: STORETIMESTAMP, right after the born host
#: RECONSUMETIMES i32, PREPARED_TX_OFF i64, BODYLENGTH i32 — right after the store host.
HEADER_SUFFIX: Final = struct.Struct(">iqi")
assert FIXED_WITHOUT_HOSTS == HEADER_PREFIX.size + STORE_TIMESTAMP.size + HEADER_SUFFIX.size
TOPIC_LENGTH: Final = struct.Struct(">b")  #: v1 TOPICLENGTH, signed byte
TOPIC_LENGTH_V2: Final = struct.Struct(">h")  #: v2 (5.x) TOPICLENGTH, signed short (read only)
PROPERTIES_LENGTH: Final = struct.Struct(">h")  #: PROPERTIESLENGTH, signed short
assert TAIL_FIXED == TOPIC_LENGTH.size + PROPERTIES_LENGTH.size
#: Smallest valid v1 record: IPv4 hosts, empty body, topic and properties.
MIN_RECORD_BYTES: Final = IPV4_OVERHEAD
#: TOTALSIZE and BODYLENGTH are i32.
MAX_I32: Final = 0x7FFFFFFF

# --- more sysflag bits (spec §4) ---------------------------------------------------------------
NEED_UNWRAP_FLAG: Final = 0x40  #: 4.9/5.x inner-batch / LMQ plumbing; never set by our clients
INNER_BATCH_FLAG: Final = 0x80  #: 5.x inner batch; not used by 4.x clients
COMPRESSION_TYPE_MASK: Final = 0x700  #: 0 with COMPRESSED_FLAG set means zlib (old clients)
COMPRESSION_LZ4: Final = 0x100
COMPRESSION_ZSTD: Final = 0x200
COMPRESSION_ZLIB: Final = 0x300

# --- batch send body entry (spec §8) -----------------------------------------------------------
#: One entry of a SEND_BATCH_MESSAGE body::
#:
#:     +0   TOTALSIZE   i32  20 + BODYLEN + 2 + PROPLEN
#:     +4   MAGICCODE   i32  0, ignored
#:     +8   BODYCRC     i32  0, ignored (the broker computes it)
#:     +12  FLAG        i32
#:     +16  BODYLEN     i32, then BODY
#:          PROPLEN     i16, then PROPERTIES
BATCH_ENTRY_HEADER: Final = struct.Struct(">iiiii")
BATCH_TOTAL_SIZE_OFFSET: Final = 0
BATCH_MAGIC_OFFSET: Final = BATCH_TOTAL_SIZE_OFFSET + 4
BATCH_BODY_CRC_OFFSET: Final = BATCH_MAGIC_OFFSET + 4
BATCH_FLAG_OFFSET: Final = BATCH_BODY_CRC_OFFSET + 4
BATCH_BODY_LEN_OFFSET: Final = BATCH_FLAG_OFFSET + 4
assert BATCH_BODY_LEN_OFFSET + 4 == BATCH_ENTRY_HEADER.size
#: Bytes of an entry besides body and properties (22).
BATCH_ENTRY_OVERHEAD: Final = BATCH_ENTRY_HEADER.size + PROPERTIES_LENGTH.size
