"""Messages as consumers receive them, and the decoding of pull responses (spec/message-format.md
§7; behaviours.md §4): pure, no I/O.

Theory of operation: a SUCCESS pull response's body is the selected commit-log records verbatim
and concatenated (`message.record.iter_records` reads them). What the Java client's
`PullAPIWrapper.processPullResult` then does, `decode_pull_response` does too:

* re-filter by tag: the broker filters by tag *hash*, so a colliding tag may slip through; a
  subscription to tags keeps only messages whose TAGS is one of them (a message without tags
  never matches a tag list);
* set the `MIN_OFFSET` / `MAX_OFFSET` properties of each message from the response header;
* inflate zlib-compressed bodies (sysflag COMPRESSED; compression type 0 or ZLIB — LZ4 and ZSTD
  bodies, which only a specially configured Java producer writes, are handed over as stored);
* give each message its client msgId: UNIQ_KEY when present, else the offset msgId;
* restore the original topic of a message read from `%RETRY%<group>` (`RETRY_TOPIC`), as the
  Java and C++ push consumers do before calling the application.

The consumer still advances to `nextBeginOffset`, past messages the re-filter dropped.

Decoding runs once per message a consumer receives, so it has two paths with one behaviour. The
fast one walks the body once (`iter_pulled_fields`) and looks the "ip:port" texts and offset
msgId prefixes up by the hosts' stored bytes. When it meets anything it does not handle (an
error, a negative commit-log offset), the general one decodes the whole body again: all records
first, then the messages, as the Java client does, so a pull fails with the same error whichever
record is bad, and nothing of it is returned.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from shmq.message.errors import MessageError
from shmq.message.layout import COMPRESSED_FLAG
from shmq.message.msgid import encode_offset_msg_id, unpack_host
from shmq.message.properties import (
    PROPERTY_MAX_OFFSET,
    PROPERTY_MIN_OFFSET,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
)
from shmq.message.record import StoredMessage, iter_pulled_fields, iter_record_fields
from shmq.protocol import HeaderFieldError, MessageQueue, PullMessageResponseHeader, ResponseCode

from .errors import MalformedResponse

__all__ = [
    "RETRY_GROUP_TOPIC_PREFIX",
    "PullResult",
    "PullStatus",
    "ReceivedMessage",
    "decode_pull_response",
    "inflate_body",
    "pull_status",
    "received_message",
]

#: `%RETRY%<group>` holds a group's messages to consume again (behaviours.md §7)
RETRY_GROUP_TOPIC_PREFIX: Final = "%RETRY%"
#: compression-type bits of the sysflag (message-format.md §4); 0 and ZLIB mean zlib
_COMPRESSION_TYPE_MASK: Final = 0x700
_ZLIB_TYPES: Final = frozenset({0x000, 0x300})
#: an offset msgId ends with the commit-log offset in 16 upper-case hex digits (spec §6.1)
_OFFSET_DIGITS: Final = 16


class PullStatus(enum.Enum):
    """What a pull found (Java `PullStatus`)."""

    FOUND = "FOUND"  #: messages (possibly all dropped by the tag re-filter)
    NO_NEW_MSG = "NO_NEW_MSG"  #: PULL_NOT_FOUND: nothing at the offset yet
    NO_MATCHED_MSG = "NO_MATCHED_MSG"  #: PULL_RETRY_IMMEDIATELY: entries, none matching
    OFFSET_ILLEGAL = "OFFSET_ILLEGAL"  #: PULL_OFFSET_MOVED: continue at next_begin_offset


_STATUS: Final[dict[int, PullStatus]] = {
    ResponseCode.SUCCESS: PullStatus.FOUND,
    ResponseCode.PULL_NOT_FOUND: PullStatus.NO_NEW_MSG,
    ResponseCode.PULL_RETRY_IMMEDIATELY: PullStatus.NO_MATCHED_MSG,
    ResponseCode.PULL_OFFSET_MOVED: PullStatus.OFFSET_ILLEGAL,
}


def pull_status(code: int) -> PullStatus | None:
    """The status of a pull answered with `code`; None for an error code."""
    return _STATUS.get(code)


@dataclass(slots=True, eq=False)
class ReceivedMessage:
    """One message as a consumer hands it to the application. Treat it as read-only.

    Not a frozen dataclass on purpose: a frozen one's constructor sets each of the 15 fields
    through object.__setattr__, ~3 us per message, which was a third of a consumer's decoding.
    Like Java's MessageExt, messages compare (and hash) by identity.
    """

    topic: str  #: the topic subscribed to (the original one for a retried message)
    body: bytes  #: inflated when it was stored compressed
    queue: MessageQueue  #: where it was read (its topic may be %RETRY%<group>)
    queue_offset: int
    commit_log_offset: int  #: PHYSICALOFFSET; what CONSUMER_SEND_MSG_BACK names
    msg_id: str  #: UNIQ_KEY when the producer set one, else `offset_msg_id`
    offset_msg_id: str  #: store host + commit-log offset
    reconsume_times: int  #: how many times it was consumed and failed before
    born_timestamp_ms: int
    store_timestamp_ms: int
    born_host: str  #: "ip:port" of the producer's connection
    store_host: str  #: "ip:port" of the broker that stored it
    flag: int
    sysflag: int
    properties: Mapping[str, str] = field(hash=False)

    @property
    def queue_id(self) -> int:
        """The queue's id."""
        return self.queue.queue_id

    @property
    def broker_name(self) -> str:
        """The broker name the queue lives on."""
        return self.queue.broker_name

    @property
    def tags(self) -> str | None:
        """The TAGS property."""
        return self.properties.get("TAGS")

    @property
    def keys(self) -> list[str]:
        """Business keys (KEYS split on spaces)."""
        return [k for k in self.properties.get("KEYS", "").split(" ") if k]

    @property
    def is_retry(self) -> bool:
        """True when read from a `%RETRY%` topic (a redelivery)."""
        return self.queue.topic.startswith(RETRY_GROUP_TOPIC_PREFIX)


@dataclass(frozen=True, slots=True)
class PullResult:
    """The outcome of one pull (Java `PullResult`)."""

    status: PullStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    messages: tuple[ReceivedMessage, ...] = ()
    suggest_which_broker_id: int = 0


def inflate_body(body: bytes, sysflag: int) -> bytes:
    """The body as the producer sent it: zlib-inflated if the sysflag says compressed (zlib or
    untyped); LZ4/ZSTD bodies are returned as stored.

    Raises:
        MalformedResponse: a zlib body that does not inflate.
    """
    if not sysflag & COMPRESSED_FLAG or sysflag & _COMPRESSION_TYPE_MASK not in _ZLIB_TYPES:
        return body
    try:
        return zlib.decompress(body)
    except zlib.error as err:
        raise MalformedResponse(f"a compressed body does not inflate: {err}") from err


def received_message(record: StoredMessage, queue: MessageQueue,
                     extra: Mapping[str, str] | None = None) -> ReceivedMessage:
    """Turn a decoded record read from `queue` into what the application sees.

    Raises:
        MalformedResponse: a compressed body does not inflate, or the record's hosts cannot
            form an offset msgId.
    """
    properties = dict(record.properties)
    if extra:
        properties.update(extra)
    return _received([getattr(record, name) for name in _FIELD_NAMES], properties, queue)


#: StoredMessage's fields in order: `iter_record_fields` yields them so, as a list
_FIELD_NAMES: Final = tuple(f.name for f in dataclasses.fields(StoredMessage))
(_QUEUE_OFFSET, _PHYS_OFFSET, _SYSFLAG, _BORN_MS, _BORN_HOST, _BORN_PORT, _STORE_MS,
 _STORE_HOST, _STORE_PORT, _RECONSUME, _BODY, _TOPIC, _PROPERTIES, _FLAG) = (
    _FIELD_NAMES.index(name) for name in (
        "queue_offset", "phys_offset", "sysflag", "born_timestamp_ms", "born_host", "born_port",
        "store_timestamp_ms", "store_host", "store_port", "reconsume_times", "body", "topic",
        "properties", "flag"))


def _received(f: list[Any], properties: dict[str, str], queue: MessageQueue
              ) -> ReceivedMessage:
    """A ReceivedMessage from a record's fields `f` (StoredMessage's order) and the
    properties to give it."""
    topic, phys_offset = f[_TOPIC], f[_PHYS_OFFSET]
    if topic.startswith(RETRY_GROUP_TOPIC_PREFIX) and PROPERTY_RETRY_TOPIC in properties:
        topic = properties[PROPERTY_RETRY_TOPIC]
    try:
        offset_msg_id = encode_offset_msg_id(f[_STORE_HOST], f[_STORE_PORT], phys_offset)
    except MessageError as err:
        raise MalformedResponse(f"record at {phys_offset}: {err}") from err
    return ReceivedMessage(
        topic, inflate_body(f[_BODY], f[_SYSFLAG]), queue, f[_QUEUE_OFFSET], phys_offset,
        properties.get(PROPERTY_UNIQ_KEY) or offset_msg_id, offset_msg_id, f[_RECONSUME],
        f[_BORN_MS], f[_STORE_MS], f"{f[_BORN_HOST]}:{f[_BORN_PORT]}",
        f"{f[_STORE_HOST]}:{f[_STORE_PORT]}", f[_FLAG], f[_SYSFLAG], properties)


def decode_pull_response(code: int, ext_fields: Mapping[str, str],
                         body: bytes | memoryview | None, queue: MessageQueue,
                         tags: frozenset[str] = frozenset()) -> PullResult:
    """Decode a pull response (one of the four pull codes) for `queue`.

    Args:
        code: the response code; SUCCESS, PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY or
            PULL_OFFSET_MOVED.
        ext_fields: the response header.
        body: the records (SUCCESS only).
        queue: the queue pulled.
        tags: the subscription's tags; empty for "*" (no re-filter).

    Raises:
        MalformedResponse: not a pull code, a header without its offsets, or a body with a
            cut or corrupt record (nothing of it is returned then: the pull is retried).
    """
    status = pull_status(code)
    if status is None:
        raise MalformedResponse(f"response code {code} is not a pull status")
    try:
        header = PullMessageResponseHeader.from_ext_fields(ext_fields)
    except HeaderFieldError as err:
        raise MalformedResponse(f"pull response of {queue}: {err}") from err
    messages: tuple[ReceivedMessage, ...] = ()
    if status is PullStatus.FOUND and body:
        offsets = {PROPERTY_MIN_OFFSET: str(header.min_offset),
                   PROPERTY_MAX_OFFSET: str(header.max_offset)}
        try:
            found = _decode_fast(body, queue, tags, offsets)
        except (MessageError, MalformedResponse):
            found = None
        messages = _decode_general(body, queue, tags, offsets) if found is None else found
    return PullResult(status, header.next_begin_offset, header.min_offset, header.max_offset,
                      messages, header.suggest_which_broker_id)


def _decode_general(body: bytes | memoryview, queue: MessageQueue, tags: frozenset[str],
                    offsets: Mapping[str, str]) -> tuple[ReceivedMessage, ...]:
    """The messages of a FOUND body: every record decoded first, then the messages built.

    Raises:
        MalformedResponse: a cut or corrupt record, else the first kept message whose body
            does not inflate or whose hosts cannot form an offset msgId.
    """
    try:
        records = list(iter_record_fields(body))
    except MessageError as err:
        raise MalformedResponse(f"pull body of {queue}: {err}") from err
    return tuple(_received(f, {**f[_PROPERTIES], **offsets}, queue) for f in records
                 if not tags or f[_PROPERTIES].get(PROPERTY_TAGS) in tags)


def _decode_fast(body: bytes | memoryview, queue: MessageQueue, tags: frozenset[str],
                 offsets: Mapping[str, str]) -> tuple[ReceivedMessage, ...] | None:
    """`_decode_general`'s messages in one pass, or None when `_decode_general` must say what
    is wrong; the errors it raises are only a signal to do so (`decode_pull_response`)."""
    messages: list[ReceivedMessage] = []
    append = messages.append
    last_born = last_store = b""  # stored hosts are never empty
    born_host = store_host = prefix = ""
    for (flag, queue_offset, phys_offset, sysflag, born_ms, born, store_ms, store, reconsume,
         data, topic, properties) in iter_pulled_fields(body):
        if tags and properties.get(PROPERTY_TAGS) not in tags:
            continue
        if phys_offset < 0:  # no offset msgId
            return None
        properties.update(offsets)
        if store != last_store:  # one store host per pull, as a rule; a few born hosts
            store_host, prefix, last_store = _host_text(store), _msg_id_prefix(store), store
        if born != last_born:
            born_host, last_born = _host_text(born), born
        # the offset's 16 hex digits (`_OFFSET_DIGITS`); to_bytes + hex is faster than a format
        offset_msg_id = prefix + phys_offset.to_bytes(8, "big").hex().upper()
        if topic.startswith(RETRY_GROUP_TOPIC_PREFIX) and PROPERTY_RETRY_TOPIC in properties:
            topic = properties[PROPERTY_RETRY_TOPIC]
        if sysflag & COMPRESSED_FLAG:
            data = inflate_body(data, sysflag)
        append(ReceivedMessage(
            topic, data, queue, queue_offset, phys_offset,
            properties.get(PROPERTY_UNIQ_KEY) or offset_msg_id, offset_msg_id, reconsume,
            born_ms, store_ms, born_host, store_host, flag, sysflag, properties))
    return tuple(messages)


@functools.lru_cache(maxsize=1024)
def _host_text(stored: bytes) -> str:
    """The "ip:port" of a host from its stored bytes (address and port), remembered."""
    host, port = unpack_host(stored)
    return f"{host}:{port}"


@functools.lru_cache(maxsize=1024)
def _msg_id_prefix(stored: bytes) -> str:
    """The offset msgIds' part that names the store host with these stored bytes, remembered.

    Raises:
        InvalidAddress: its port is outside 0..65535.
    """
    host, port = unpack_host(stored)
    return encode_offset_msg_id(host, port, 0)[:-_OFFSET_DIGITS]
