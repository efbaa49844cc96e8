"""Byte layouts of a remoting frame and of the binary ("ROCKETMQ") header; written down once here.

Frame (spec/remoting-protocol.md §2), every integer big-endian::

    +----------------+---------+--------------------+-------------------+-----------------+
    | total_length   | ser.    | header_length      | header            | body            |
    | i32            | type u8 | u24                | header_length B   | the rest        |
    +----------------+---------+--------------------+-------------------+-----------------+
      0                4         5                    8                   8 + header_length
    total_length = 4 + header_length + body_length   (it does not count itself)

Bytes 4..7 are one u32 "mark": `(serialize_type << 24) | header_length`.

Binary header (spec §5, Java `RocketMQSerializable`)::

    +--------+------+---------+--------+------+------------+--------+---------+---------------+
    | code   | lang | version | opaque | flag | remark_len | remark | ext_len | ext entries   |
    | i16    | u8   | i16     | i32    | i32  | i32        | UTF-8  | i32     | ext_len bytes |
    +--------+------+---------+--------+------+------------+--------+---------+---------------+
    entry: key_len i16, key UTF-8, value_len i32, value UTF-8.  A length of 0 means null.

Java writes code and version with `(short)` casts: values outside int16 do not survive.
"""

from __future__ import annotations

import struct
from typing import Final

# -- frame -----------------------------------------------------------------------------------
TOTAL_LENGTH_OFFSET: Final = 0  # i32  bytes after this field: 4 + header + body
MARK_OFFSET: Final = TOTAL_LENGTH_OFFSET + 4  # u32  serialize type (top byte) | header length
HEADER_OFFSET: Final = MARK_OFFSET + 4  # header bytes start here
#: total_length counts the mark word, so it is at least this
MIN_TOTAL_LENGTH: Final = HEADER_OFFSET - MARK_OFFSET
#: bytes of the length prefix itself (total_length)
LENGTH_PREFIX_BYTES: Final = MARK_OFFSET - TOTAL_LENGTH_OFFSET
#: largest header_length the 24-bit field can hold
MAX_HEADER_LENGTH: Final = 0xFFFFFF
#: largest total_length an i32 can hold
MAX_TOTAL_LENGTH: Final = 0x7FFFFFFF
SERIALIZE_TYPE_SHIFT: Final = 24
HEADER_LENGTH_MASK: Final = 0xFFFFFF
#: default frame limit, length prefix included (Java NettyDecoder: frameMaxLength = 16 MiB)
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024

I32: Final = struct.Struct(">i")
U32: Final = struct.Struct(">I")
I16: Final = struct.Struct(">h")
#: total_length, mark
FRAME_PREFIX: Final = struct.Struct(">iI")

# -- binary header -----------------------------------------------------------------------------
CODE_OFFSET: Final = 0  # i16
LANGUAGE_OFFSET: Final = CODE_OFFSET + 2  # u8  LanguageCode number
VERSION_OFFSET: Final = LANGUAGE_OFFSET + 1  # i16
OPAQUE_OFFSET: Final = VERSION_OFFSET + 2  # i32
FLAG_OFFSET: Final = OPAQUE_OFFSET + 4  # i32
REMARK_LENGTH_OFFSET: Final = FLAG_OFFSET + 4  # i32  then remark bytes
#: code, language, version, opaque, flag
BINARY_FIXED: Final = struct.Struct(">hBhii")
assert BINARY_FIXED.size == REMARK_LENGTH_OFFSET
#: smallest binary header: fixed part + remark_len + ext_len (Java's test vector: 21 bytes)
MIN_BINARY_HEADER: Final = REMARK_LENGTH_OFFSET + 4 + 4
INT16_MIN: Final = -(1 << 15)
INT16_MAX: Final = (1 << 15) - 1
INT32_MIN: Final = -(1 << 31)
INT32_MAX: Final = (1 << 31) - 1
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
