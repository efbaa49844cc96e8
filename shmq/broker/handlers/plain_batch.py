"""The fast path of SEND_BATCH_MESSAGE: a plain batch keeps each entry's properties bytes.

Theory of operation
-------------------
`send.py` stores a batch entry with the properties ``{**entry, **batch}`` minus WAIT plus
CLUSTER, except that an entry keeps its own UNIQ_KEY. Decoding every entry's properties into a
dict and encoding it again is most of what a batch costs the acceptor (~4.6 of ~9 us per
message, measured). Java's broker does not do that either: it stores each entry's properties
string as it came and appends the batch-level string, and readers take the last occurrence of
a name. This module does the same for the common case and gives `send.py` the stored bytes:

    entry bytes (WAIT items removed) + batch extra (batch properties - WAIT + CLUSTER)

where the extra leaves out UNIQ_KEY for an entry that has its own. Decoded, that is exactly
the dict `send.py` would have stored; only the order of items and an entry's invalid UTF-8
(kept as it came, as Java keeps it) differ. The tag code comes from the last TAGS item.

`plain_batch` returns None whenever the slow path must decide: entries with different FLAGs,
an empty or oversized body or properties string, a malformed body, no entry at all (the slow
path raises the right error). The entries come from `message.batch.decode_batch_body`. Retry topics, delays and transactions never reach it (`send.py` checks first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from shmq.message import layout as rec
from shmq.message.batch import decode_batch_body
from shmq.message.errors import MalformedBatch
from shmq.message.properties import (
    NAME_VALUE_SEPARATOR,
    PROPERTY_CLUSTER,
    PROPERTY_SEPARATOR,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
    decode_properties,
    encode_properties,
)
from shmq.message.taghash import tag_hash

__all__ = ["PlainBatch", "plain_batch"]

_SEP: Final = PROPERTY_SEPARATOR.encode()
_NV: Final = NAME_VALUE_SEPARATOR.encode()
_WAIT: Final = PROPERTY_WAIT.encode() + _NV
_TAGS: Final = PROPERTY_TAGS.encode() + _NV
_UNIQ: Final = PROPERTY_UNIQ_KEY.encode() + _NV
_SEP_BYTE: Final = _SEP[0]


@dataclass(frozen=True, slots=True)
class PlainBatch:
    """What `send.py` encodes: bodies, stored properties strings, tag codes, the one FLAG."""

    bodies: list[bytes]
    properties: list[bytes]
    tags: np.ndarray
    flag: int


def plain_batch(body: bytes, batch_properties: str | None, cluster: str,
                max_body_bytes: int) -> PlainBatch | None:
    """The stored form of the (inflated) batch `body`, or None for the slow path (which also
    raises the right error for a malformed body)."""
    shared = decode_properties(batch_properties.encode()) if batch_properties else {}
    shared.pop(PROPERTY_WAIT, None)
    shared[PROPERTY_CLUSTER] = cluster
    extra = encode_properties(shared)
    extra_for_own_id = extra
    if PROPERTY_UNIQ_KEY in shared:
        extra_for_own_id = encode_properties(
            {k: v for k, v in shared.items() if k != PROPERTY_UNIQ_KEY})
    try:
        entries = decode_batch_body(body, raw_properties=True)
    except MalformedBatch:
        return None
    if not entries:
        return None
    flag = entries[0].flag
    bodies: list[bytes] = []
    stored: list[bytes] = []
    tags: list[int] = []
    max_props = rec.MAX_PROPERTIES_BYTES
    tag_codes = _TAG_CODES
    for entry_flag, entry_body, raw in entries:
        if entry_flag != flag or not 0 < len(entry_body) <= max_body_bytes:
            return None
        if raw and raw[-1] != _SEP_BYTE:
            raw += _SEP
        if _WAIT in raw:
            raw = _without(raw, _WAIT)
        own_id = extra is not extra_for_own_id and _item_at(raw, _UNIQ) >= 0
        props = raw + (extra_for_own_id if own_id else extra)
        if len(props) > max_props:
            return None
        tag = 0
        if _TAGS in props:
            at = _last_item_at(props, _TAGS)
            if at >= 0:
                start = at + len(_TAGS)
                value = props[start : props.index(_SEP, start)]
                code = tag_codes.get(value)
                tag = _tag_code(value) if code is None else code
        bodies.append(entry_body)
        stored.append(props)
        tags.append(tag)
    return PlainBatch(bodies, stored, np.array(tags, dtype=np.int64), flag)



#: tag code by TAGS value as sent (bytes): a batch's entries mostly share a few tags
_TAG_CODES: Final[dict[bytes, int]] = {}
_TAG_CODES_MAX: Final = 65536


def _tag_code(value: bytes) -> int:
    if len(_TAG_CODES) >= _TAG_CODES_MAX:
        _TAG_CODES.clear()
    code = _TAG_CODES[value] = tag_hash(value.decode("utf-8", "replace"))
    return code


def _item_at(props: bytes, marker: bytes, start: int = 0) -> int:
    """Where the first item named by `marker` (name + 0x01) starts at or after `start`; -1."""
    at = props.find(marker, start)
    while at > 0 and props[at - 1] != _SEP_BYTE:  # inside another item: look further
        at = props.find(marker, at + 1)
    return at


def _last_item_at(props: bytes, marker: bytes) -> int:
    """Where the last item named by `marker` starts; -1. (Decoders keep the last value.)"""
    at = props.rfind(marker)
    while at > 0 and props[at - 1] != _SEP_BYTE:
        at = props.rfind(marker, 0, at)
    return at


def _without(props: bytes, marker: bytes) -> bytes:
    """`props` (ending in 0x02) without the items named by `marker`."""
    at = _item_at(props, marker)
    while at >= 0:
        props = props[:at] + props[props.index(_SEP, at) + 1 :]
        at = _item_at(props, marker, at)
    return props
