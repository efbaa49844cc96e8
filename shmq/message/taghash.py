"""Java `String.hashCode` for tags and index keys (spec/message-format.md §9, §11)."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["java_string_hash", "tag_hash"]

_MASK32 = 0xFFFFFFFF


def java_string_hash(text: str) -> int:
    """Return Java's `String.hashCode()` of `text` as a signed 32-bit int.

    Java hashes UTF-16 code units, so characters outside the BMP count as two surrogates. Lone
    surrogates (possible in a str decoded from JSON ``"\\ud800"``) are hashed as the code unit
    they are, as in Java, instead of failing to encode.
    """
    h = 0
    data = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & _MASK32
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=65536)
def tag_hash(tags: str | None) -> int:
    """Consume-queue tag code of a message's TAGS value: its Java hash, 0 when absent or empty."""
    if not tags:
        return 0
    return java_string_hash(tags)
