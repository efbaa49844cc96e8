"""Remoting frames: `FrameDecoder` turns a byte stream into commands; `encode_command` does the
reverse. Sans-IO: no sockets here, the caller feeds whatever bytes it received.

Theory of operation (layout in `layout.py`, spec/remoting-protocol.md §2):

    decoder = FrameDecoder(max_frame_bytes=cfg.max_frame_bytes)
    decoder.feed(chunk)                   # whatever the socket gave us, 1 byte or 1 MiB
    for command in decoder.commands():    # complete commands; RemoteProtocolError on garbage
        ...

The decoder keeps one `bytearray` and a read offset into it. `feed` appends; `commands` walks
complete frames from the offset, decoding each into a `RemotingCommand` whose body is a fresh
`bytes` copy (so nothing refers into the buffer afterwards), and advances the offset past it
*before* yielding it, so an abandoned iteration loses nothing. Consumed bytes are dropped
only when the iteration ends and they are at least half of the buffer (or 64 KiB), which keeps
decoding N small frames from one large chunk linear in its size.

Limits are checked from the 4-byte length prefix as soon as it is visible, in `feed` and in
`commands`: a prefix announcing a frame larger than `max_frame_bytes` (length prefix included,
Java NettyDecoder's rule) raises `FrameTooLarge` before any of that frame is waited for.

A `RemoteProtocolError` means the stream is unsynchronised: the decoder keeps the error and
raises it again from every later call; the connection must be closed (Java does the same).
Commands yielded before the error are valid.

Encoding answers in the command's `serialize_type` and returns a list of buffers for
`socket.sendmsg`: the prefix and header in one `bytes`, then the body object itself, uncopied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from .binary_header import decode_binary_header, encode_binary_header
from .codes import SerializeType
from .command import RemotingCommand
from .errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from .json_header import decode_json_header, encode_json_header
from .layout import (
    DEFAULT_MAX_FRAME_BYTES,
    FRAME_PREFIX,
    HEADER_LENGTH_MASK,
    HEADER_OFFSET,
    I32,
    LENGTH_PREFIX_BYTES,
    MARK_OFFSET,
    MAX_HEADER_LENGTH,
    MAX_TOTAL_LENGTH,
    MIN_TOTAL_LENGTH,
    SERIALIZE_TYPE_SHIFT,
    U32,
)

__all__ = ["FrameDecoder", "decode_frame", "encode_command", "encode_command_bytes"]

#: drop consumed bytes from the buffer once at least this many have accumulated
_COMPACT_BYTES: Final = 64 * 1024


class FrameDecoder:
    """Incremental decoder of one connection's incoming byte stream; see the module docstring."""

    __slots__ = ("_buffer", "_discarded", "_error", "_max_frame_bytes", "_offset")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        """Create an empty decoder.

        Args:
            max_frame_bytes: largest accepted frame, its 4-byte length prefix included.

        Raises:
            ValueError: `max_frame_bytes` cannot hold even an empty frame.
        """
        if max_frame_bytes < HEADER_OFFSET:
            raise ValueError(f"max_frame_bytes {max_frame_bytes} is below {HEADER_OFFSET}")
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._offset = 0
        self._discarded = 0  # stream bytes dropped from the buffer's front (for error messages)
        self._error: RemoteProtocolError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as commands (a partial frame, or unread frames)."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes.

        Args:
            data: any number of bytes, frame boundaries anywhere.

        Raises:
            FrameTooLarge: the next frame's length prefix exceeds `max_frame_bytes`.
            RemoteProtocolError: the next frame's length prefix is invalid, or an earlier call
                failed. The decoder is unusable afterwards; close the connection.
        """
        if self._error is not None:
            raise self._error
        self._buffer += data
        if len(self._buffer) - self._offset >= LENGTH_PREFIX_BYTES:
            self._checked_total_length(self._offset)

    def commands(self) -> Iterator[RemotingCommand]:
        """Yield every complete command buffered so far, in order; keep any partial frame.

        Raises:
            FrameTooLarge: a length prefix exceeds `max_frame_bytes`.
            RemoteProtocolError: a frame is malformed (bad lengths, unknown serialize type,
                invalid header). Commands yielded before it are valid; the decoder is unusable
                afterwards; close the connection.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        while len(buffer) - self._offset >= LENGTH_PREFIX_BYTES:
            start = self._offset
            end = start + LENGTH_PREFIX_BYTES + self._checked_total_length(start)
            if end > len(buffer):
                break
            try:
                command = _decode_frame_at(buffer, start, end)
            except RemoteProtocolError as err:
                self._error = err
                raise
            self._offset = end
            yield command
        self._compact()

    def _checked_total_length(self, start: int) -> int:
        total_length: int
        (total_length,) = I32.unpack_from(self._buffer, start)
        if total_length < MIN_TOTAL_LENGTH:
            self._error = RemoteProtocolError(
                f"frame length {total_length} at stream offset {self._discarded + start} is "
                f"below the {MIN_TOTAL_LENGTH}-byte minimum"
            )
            raise self._error
        if total_length + LENGTH_PREFIX_BYTES > self._max_frame_bytes:
            self._error = FrameTooLarge(total_length + LENGTH_PREFIX_BYTES, self._max_frame_bytes)
            raise self._error
        return total_length

    def _compact(self) -> None:
        """Drop consumed bytes once they are the larger part of the buffer (or 64 KiB)."""
        consumed, size = self._offset, len(self._buffer)
        if consumed == size:
            self._buffer.clear()
        elif consumed >= _COMPACT_BYTES or consumed >= size - consumed:
            del self._buffer[:consumed]
        else:
            return
        self._discarded += consumed
        self._offset = 0


def decode_frame(frame: bytes | bytearray | memoryview) -> RemotingCommand:
    """Decode exactly one whole frame (length prefix included).

    Args:
        frame: the frame's bytes, nothing before or after it.

    Returns:
        The command.

    Raises:
        RemoteProtocolError: the bytes are not exactly one valid frame.
    """
    data = bytes(frame)
    if len(data) < HEADER_OFFSET:
        raise RemoteProtocolError(f"{len(data)} bytes cannot hold a frame")
    (total_length,) = I32.unpack_from(data, 0)
    if total_length + LENGTH_PREFIX_BYTES != len(data):
        raise RemoteProtocolError(
            f"frame length {total_length} does not match the {len(data)} bytes given"
        )
    return _decode_frame_at(data, 0, len(data))


def _decode_frame_at(buffer: bytes | bytearray, start: int, end: int) -> RemotingCommand:
    """Decode the frame occupying buffer[start:end]; its total length is already checked."""
    (mark,) = U32.unpack_from(buffer, start + MARK_OFFSET)
    serialize_type = mark >> SERIALIZE_TYPE_SHIFT
    header_length = mark & HEADER_LENGTH_MASK
    header_start = start + HEADER_OFFSET
    body_start = header_start + header_length
    if body_start > end:
        raise RemoteProtocolError(
            f"header length {header_length} exceeds the {end - header_start} bytes of its frame"
        )
    decode_header: Callable[[bytes | bytearray, bytes | None], RemotingCommand]
    if serialize_type == SerializeType.JSON:
        decode_header = decode_json_header
    elif serialize_type == SerializeType.ROCKETMQ:
        decode_header = decode_binary_header
    else:
        raise RemoteProtocolError(f"unknown serialize type {serialize_type} (mark 0x{mark:08x})")
    body = None
    if end > body_start:
        # A short-lived view: the buffer must not stay exported, or feed() could not grow it.
        with memoryview(buffer) as view:
            body = view[body_start:end].tobytes()
    # The header is small; slicing copies it, so no view of the buffer outlives this call.
    return decode_header(buffer[header_start:body_start], body)


def encode_command(command: RemotingCommand) -> list[bytes | memoryview]:
    """Encode `command` as a frame, as buffers for `socket.sendmsg` (body not copied).

    Args:
        command: the command; its `serialize_type` picks the header encoding.

    Returns:
        `[prefix + header]` or `[prefix + header, body]`; the body object is passed through.

    Raises:
        LocalProtocolError: the header cannot be encoded (see the header encoders), the header
            exceeds 16 MiB - 1 bytes, or the frame exceeds 2 GiB - 1.
    """
    serialize_type = command.serialize_type
    if serialize_type == SerializeType.JSON:
        header = encode_json_header(command)
    elif serialize_type == SerializeType.ROCKETMQ:
        header = encode_binary_header(command)
    else:
        raise LocalProtocolError(f"unknown serialize type {serialize_type!r}")
    header_length = len(header)
    if header_length > MAX_HEADER_LENGTH:
        raise LocalProtocolError(
            f"header of {header_length} bytes exceeds the {MAX_HEADER_LENGTH}-byte field"
        )
    body = command.body
    body_length = command.body_bytes
    total_length = MIN_TOTAL_LENGTH + header_length + body_length
    if total_length > MAX_TOTAL_LENGTH:
        raise LocalProtocolError(f"frame of {total_length} bytes exceeds the int32 length field")
    mark = (serialize_type << SERIALIZE_TYPE_SHIFT) | header_length
    first = FRAME_PREFIX.pack(total_length, mark) + header
    if body is None or body_length == 0:
        return [first]
    return [first, body]


def encode_command_bytes(command: RemotingCommand) -> bytes:
    """Encode `command` as one `bytes` frame (copies the body; prefer `encode_command`).

    Raises:
        LocalProtocolError: as `encode_command`.
    """
    return b"".join(encode_command(command))
