"""A JSON document in a shared-memory segment: one writer, many readers (a seqlock).

Layout: u64 magic at 0 (written last at creation), u64 sequence at 8 (odd while the writer
rewrites the document), u64 length at 16, the JSON from byte 64. A reader copies the bytes and
retries while the sequence is odd or changed under it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

from shmq.errors import IpcError
from shmq.ipc.errors import SegmentCorrupt
from shmq.ipc.segment import Segment, unlink_segment

__all__ = ["DocumentTooLarge", "SharedDocument"]


DOC_MAGIC: Final = 0x53484D51494E4631  #: "SHMQINF1"
_DOC_MAGIC_INDEX: Final = 0  #: u64 word index of the magic (byte offset 0)
_DOC_SEQ_INDEX: Final = _DOC_MAGIC_INDEX + 1  #: byte offset 8
_DOC_LENGTH_INDEX: Final = _DOC_SEQ_INDEX + 1  #: byte offset 16
_DOC_DATA_OFFSET: Final = 64  #: the JSON starts on its own cache line
_DOC_READ_ATTEMPTS: Final = 1000
DEFAULT_DOC_CAPACITY: Final = 64 << 10


class DocumentTooLarge(IpcError, ValueError):
    """A JSON document longer than its segment's capacity; nothing was written."""

    def __init__(self, name: str, size: int, capacity: int) -> None:
        super().__init__(f"document {name}: {size} bytes of JSON exceed its {capacity}-byte "
                         f"capacity")
        self.name, self.size, self.capacity = name, size, capacity


class SharedDocument:
    """A JSON object in a shared segment: one writer, many readers (seqlock, see above)."""

    def __init__(self, segment: Segment) -> None:
        self._segment = segment
        self.posix_name: Final = segment.posix_name
        self.capacity: Final = segment.size_bytes - _DOC_DATA_OFFSET
        self._words: memoryview | None = memoryview(segment.buf)[:_DOC_DATA_OFFSET].cast("Q")

    @classmethod
    def create(cls, instance: str, name: str, document: Mapping[str, Any], *,
               capacity_bytes: int = DEFAULT_DOC_CAPACITY) -> SharedDocument:
        """Create segment `/shmq.<instance>.<name>` holding `document` (JSON-serialisable).

        Raises:
            DocumentTooLarge: `document` does not fit `capacity_bytes`; nothing was created.
            TypeError: `document` is not JSON-serialisable; nothing was created.
            SegmentExists: the name is taken; nothing was changed.
            IpcError: the system refused; nothing is left behind.
        """
        data = _encode(document)
        if len(data) > capacity_bytes:
            raise DocumentTooLarge(name, len(data), capacity_bytes)
        segment = Segment.create(instance, name, _DOC_DATA_OFFSET + capacity_bytes)
        doc = cls(segment)
        doc._store(data)
        assert doc._words is not None
        doc._words[_DOC_MAGIC_INDEX] = DOC_MAGIC  # last: the header is complete
        return doc

    @classmethod
    def attach(cls, instance: str, name: str) -> SharedDocument:
        """Map the existing document `/shmq.<instance>.<name>`.

        Raises:
            SegmentMissing: no such segment.
            SegmentCorrupt: it is not a document (wrong magic or too small).
            IpcError: the system refused.
        """
        segment = Segment.attach(instance, name, populate=False)
        if segment.size_bytes <= _DOC_DATA_OFFSET:
            segment.close()
            raise SegmentCorrupt(segment.posix_name, "size", f"> {_DOC_DATA_OFFSET}",
                                 segment.size_bytes)
        doc = cls(segment)
        assert doc._words is not None
        if doc._words[_DOC_MAGIC_INDEX] != DOC_MAGIC:
            magic = doc._words[_DOC_MAGIC_INDEX]
            doc.detach()
            raise SegmentCorrupt(segment.posix_name, "magic", hex(DOC_MAGIC), hex(magic))
        return doc

    def write(self, document: Mapping[str, Any]) -> None:
        """Replace the document (only its one writer may call this).

        Raises:
            DocumentTooLarge: it does not fit; the old document stays.
            TypeError: not JSON-serialisable; the old document stays.
        """
        data = _encode(document)
        if len(data) > self.capacity:
            raise DocumentTooLarge(self._segment.name, len(data), self.capacity)
        self._store(data)

    def read(self) -> dict[str, Any]:
        """A consistent copy of the document.

        Raises:
            SegmentCorrupt: no stable copy after many attempts (a writer died mid-write), or
                the bytes are not a JSON object.
        """
        words = self._live_words()
        for _ in range(_DOC_READ_ATTEMPTS):
            before = words[_DOC_SEQ_INDEX]
            if before % 2 == 0:
                length = min(words[_DOC_LENGTH_INDEX], self.capacity)
                data = bytes(self._segment.buf[_DOC_DATA_OFFSET:_DOC_DATA_OFFSET + length])
                if words[_DOC_SEQ_INDEX] == before:
                    return _decode(self.posix_name, data)
            time.sleep(0.0001)
        raise SegmentCorrupt(self.posix_name, "sequence", "even and stable",
                             words[_DOC_SEQ_INDEX])

    def _store(self, data: bytes) -> None:
        words = self._live_words()
        seq = words[_DOC_SEQ_INDEX]
        words[_DOC_SEQ_INDEX] = seq + 1  # odd: readers retry
        self._segment.buf[_DOC_DATA_OFFSET:_DOC_DATA_OFFSET + len(data)] = data
        words[_DOC_LENGTH_INDEX] = len(data)
        words[_DOC_SEQ_INDEX] = seq + 2

    def _live_words(self) -> memoryview:
        if self._words is None:
            raise ValueError(f"document {self.posix_name} is detached")
        return self._words

    def detach(self) -> None:
        """Unmap (idempotent); the segment stays until `unlink()`."""
        if self._words is not None:
            self._words.release()
            self._words = None
        self._segment.close()

    def unlink(self) -> None:
        """Remove the segment's name (idempotent)."""
        unlink_segment(self._segment.instance, self._segment.name, missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.detach()


def _encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(document), sort_keys=True, separators=(",", ":")).encode()


def _decode(posix_name: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as err:
        raise SegmentCorrupt(posix_name, "data", "a JSON object", data[:64]) from err
    if not isinstance(value, dict):
        raise SegmentCorrupt(posix_name, "data", "a JSON object", type(value).__name__)
    return value
