"""`shmq produce` and `shmq consume`: messages from and to the command line.

Output: one JSON object per line on stdout (a send result for produce, a message for consume);
a one-line summary on stderr at the end; a progress bar on stderr for runs of known length
when stderr is a terminal and stdout is not (so that the bar does not tear the JSON lines).

Produce sends synchronously, one message after the other (at most `rate` per second), and stops
at the first failure: every message reported before it was stored.

Consume reads as a member of a consumer group with a `PullConsumer` (clustering: the group's
queues are shared with its other members; broadcasting: every queue, offsets in a local file),
and — unless told not to — commits the group's offsets after each batch it has printed, so a
message printed is a message consumed (at least once: a crash between printing and
committing prints it again next time). It stops after `count` messages, after `idle_timeout_s`
without one, or on Ctrl-C.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from shmq.client.consumer import PullConsumer
from shmq.client.message import Message, SendResult
from shmq.client.producer import Producer
from shmq.client.received import ReceivedMessage
from shmq.protocol import ConsumeFromWhere, MessageModel

__all__ = [
    "ConsumeSummary",
    "ProduceSummary",
    "bodies",
    "consume",
    "message_json",
    "produce",
    "send_result_json",
]

#: placeholder replaced by the message's number (from 0) in --body and --keys
INDEX: Final = "{i}"
#: show a progress bar from this many messages on
_PROGRESS_FROM: Final = 50
#: longest single wait of consume's poll (so Ctrl-C and the idle timeout are seen promptly)
_POLL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class ProduceSummary:
    sent: int
    body_bytes: int
    seconds: float
    topic: str

    def text(self) -> str:
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        return (f"sent {self.sent} message{'s' * (self.sent != 1)} ({self.body_bytes} body "
                f"bytes) to {self.topic} in {self.seconds:.2f} s, {rate:.0f} msg/s")


@dataclass(frozen=True, slots=True)
class ConsumeSummary:
    received: int
    body_bytes: int
    seconds: float
    topic: str
    group: str
    committed: bool
    interrupted: bool = False

    def text(self) -> str:
        how = "committed" if self.committed else "not committed"
        stop = ", interrupted" if self.interrupted else ""
        return (f"received {self.received} message{'s' * (self.received != 1)} "
                f"({self.body_bytes} body bytes) from {self.topic} as group {self.group} in "
                f"{self.seconds:.2f} s; offsets {how}{stop}")


def bodies(*, body: str | None, size: int | None, stdin: bool, count: int | None,
           stream: Iterable[bytes] | None = None) -> tuple[Iterator[bytes], int | None]:
    """The bodies to send and how many there will be (None: until stdin ends).

    Args:
        body: the text of every body; "{i}" becomes the message number.
        size: bodies of exactly this many bytes ("message {i} " padded with "x").
        stdin: one body per line of `stream` (default sys.stdin), empty lines skipped; at most
            `count` of them.
        count: how many messages (default 1, or every line of stdin).

    Raises:
        click.UsageError: more than one source, or a size below 1.
    """
    if sum((body is not None, size is not None, stdin)) > 1:
        raise click.UsageError("give only one of --body, --size and --stdin")
    if stdin:
        lines = (line.rstrip(b"\r\n") for line in (stream or sys.stdin.buffer))
        found = (line for line in lines if line)
        if count is None:
            return found, None
        return (b for _, b in zip(range(count), found)), count
    n = 1 if count is None else count
    if size is not None:
        if size < 1:
            raise click.UsageError("--size must be at least 1")
        return (_sized(i, size) for i in range(n)), n
    text = "message {i}" if body is None else body
    return (text.replace(INDEX, str(i)).encode() for i in range(n)), n


def _sized(i: int, size: int) -> bytes:
    head = f"message {i} ".encode()
    return (head + b"x" * max(size - len(head), 0))[:size]


def _progress(count: int | None, label: str, quiet: bool) -> AbstractContextManager[Any]:
    """A click progress bar on stderr for long runs of known length when stderr is a
    terminal and stdout is not (or --quiet)."""
    if count is None or count < _PROGRESS_FROM or not sys.stderr.isatty() \
            or (sys.stdout.isatty() and not quiet):
        return nullcontext(None)
    return click.progressbar(length=count, label=label, file=sys.stderr)


def send_result_json(result: SendResult) -> dict[str, Any]:
    """One line of `shmq produce` output."""
    return {"status": result.status, "msgId": result.msg_id,
            "offsetMsgId": result.offset_msg_id, "topic": result.topic,
            "queue": result.queue_id, "offset": result.queue_offset}


def produce(namesrv: str, topic: str, payloads: Iterator[bytes], *, count: int | None,
            tags: str | None, keys: str | None, properties: Mapping[str, str],
            rate: float | None, delay_level: int | None, group: str, timeout_s: float,
            emit: Callable[[str], None] | None) -> ProduceSummary:
    """Send each payload as one message; `emit` each result as a JSON line.

    Raises:
        ClientError: a send failed; the messages emitted before were stored.
    """
    sent = size = 0
    started = time.monotonic()
    with Producer(group, namesrv, send_timeout_s=timeout_s) as producer, \
            _progress(count, f"sending to {topic}", emit is None) as bar:
        for i, payload in enumerate(payloads):
            if rate:
                _pace(started, i, rate)
            message = Message(payload, tags, keys.replace(INDEX, str(i)) if keys else None,
                              dict(properties))
            result = producer.send(topic, message, delay_level=delay_level)
            sent, size = sent + 1, size + len(payload)
            if emit is not None:
                emit(json.dumps(send_result_json(result), sort_keys=True))
            if bar is not None:
                bar.update(1)
    return ProduceSummary(sent, size, time.monotonic() - started, topic)


def _pace(started: float, index: int, rate: float) -> None:
    """Sleep until message `index` is due at `rate` messages per second."""
    due = started + index / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def message_json(msg: ReceivedMessage) -> dict[str, Any]:
    """One line of `shmq consume` output: the body as text when it is UTF-8, else base64."""
    try:
        body, encoding = msg.body.decode(), "text"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(msg.body).decode(), "base64"
    return {"topic": msg.topic, "brokerName": msg.broker_name, "queue": msg.queue_id,
            "offset": msg.queue_offset, "msgId": msg.msg_id, "offsetMsgId": msg.offset_msg_id,
            "tags": msg.tags, "keys": msg.keys, "properties": dict(msg.properties),
            "reconsumeTimes": msg.reconsume_times, "bornTimestamp": msg.born_timestamp_ms,
            "storeTimestamp": msg.store_timestamp_ms, "body": body, "bodyEncoding": encoding}


def consume(namesrv: str, topic: str, *, group: str, expression: str, count: int | None,
            idle_timeout_s: float | None, broadcasting: bool, from_beginning: bool,
            commit: bool, offset_dir: Path | None,
            emit: Callable[[str], None] | None) -> ConsumeSummary:
    """Read `topic` as a member of `group`, `emit` each message as a JSON line, commit after
    each batch (see the module docstring).

    Raises:
        NoRouteInfo: the topic does not exist. NameServerUnavailable: no name server answered.
        ClientError: the consumer could not commit (what was emitted was received; offsets of
            the last batch may not be committed).
    """
    model = MessageModel.BROADCASTING if broadcasting else MessageModel.CLUSTERING
    start = (ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET if from_beginning
             else ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET)
    received = size = 0
    interrupted = False
    started = last = time.monotonic()
    with PullConsumer(group, namesrv, message_model=model, consume_from=start,
                      auto_commit=False, offset_dir=offset_dir) as consumer, \
            _progress(count, f"reading {topic}", emit is None) as bar:
        consumer.fetch_queues(topic)  # an unknown topic or no name server: fail, don't wait
        consumer.subscribe(topic, expression)
        try:
            while count is None or received < count:
                wait = _POLL_S if idle_timeout_s is None else min(
                    _POLL_S, idle_timeout_s - (time.monotonic() - last))
                if wait <= 0:
                    break
                batch = consumer.poll(timeout_s=wait, max_messages=None if count is None
                                      else count - received)
                if not batch:
                    continue
                last = time.monotonic()
                for msg in batch:
                    if emit is not None:
                        emit(json.dumps(message_json(msg), sort_keys=True))
                    size += len(msg.body)
                received += len(batch)
                if bar is not None:
                    bar.update(len(batch))
                if commit:
                    consumer.commit()
        except KeyboardInterrupt:
            interrupted = True
        if commit:
            consumer.commit()  # also stores where a new group starts when nothing came
    return ConsumeSummary(received, size, time.monotonic() - started, topic, group, commit,
                          interrupted)
