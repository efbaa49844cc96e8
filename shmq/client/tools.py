"""One-call operations for command-line tools (`shmq send`, `shmq consume`, `shmq route`, in the
spirit of mqadmin's sendMessage / consumeMessage / topicRoute): each opens a client, does one
thing, closes it, and returns plain values that a CLI prints (style.md §2: cli.py parses, calls
one function, prints).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from shmq.protocol import ConsumeFromWhere, MessageQueue

from .consumer import PullConsumer
from .errors import NoRouteInfo
from .instance import ClientInstance
from .loop import LoopThread
from .message import Message, SendResult
from .producer import Producer
from .received import ReceivedMessage

__all__ = ["consume_messages", "message_record", "send_messages", "topic_route"]


def send_messages(namesrv: str, topic: str, bodies: Iterable[bytes], *,
                  tags: str | None = None, keys: str | Sequence[str] | None = None,
                  properties: Mapping[str, str] | None = None,
                  group: str = "shmq-cli-producer", timeout_s: float = 3.0) -> list[SendResult]:
    """Send each body as one message and return the results, in order.

    Raises:
        ClientError: a send failed (the results of earlier sends are lost with it; every
            message before the failing one was stored).
    """
    with Producer(group, namesrv, send_timeout_s=timeout_s) as producer:
        return [producer.send(topic, Message(body, tags, keys, properties or {}))
                for body in bodies]


def consume_messages(namesrv: str, topic: str, *, group: str = "shmq-cli-consumer",
                     expression: str = "*", count: int | None = None,
                     idle_timeout_s: float = 5.0, from_beginning: bool = False,
                     commit: bool = False) -> Iterator[ReceivedMessage]:
    """Yield `topic`'s messages matching `expression` until `count` were yielded or none came
    for `idle_timeout_s`.

    Args:
        from_beginning: a group without a stored offset starts at each queue's first message
            (else at its end — but a broker answers offset 0 for a new group on a queue whose
            first messages are still stored, as Java's does, spec README "Decisions").
        commit: store the group's offsets as messages are yielded (else the group's offsets
            are left as they were: the command only looks).
    """
    start = (ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET if from_beginning
             else ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET)
    with PullConsumer(group, namesrv, consume_from=start, auto_commit=commit) as consumer:
        consumer.subscribe(topic, expression)
        seen = 0
        while count is None or seen < count:
            batch = consumer.poll(timeout_s=idle_timeout_s,
                                  max_messages=None if count is None else count - seen)
            if not batch:
                return
            seen += len(batch)
            yield from batch


def topic_route(namesrv: str, topic: str) -> dict[str, Any]:
    """`topic`'s route as the name server gives it (the JSON of GET_ROUTEINFO_BY_TOPIC), plus
    the queues producers and consumers derive from it.

    Raises:
        NoRouteInfo: the name servers know no route of `topic`.
        NameServerUnavailable: no name server answered.
    """
    async def fetch() -> dict[str, Any]:
        instance = ClientInstance(namesrv)
        try:
            route = await instance.routes.route(topic)
        finally:
            await instance.close()
        if route is None:
            raise NoRouteInfo(topic, "the name servers do not know it")
        data: dict[str, Any] = json.loads(route.data.encode())
        data["publishQueues"] = [_queue(q) for q in route.publish_queues]
        data["subscribeQueues"] = [_queue(q) for q in route.subscribe_queues]
        return data

    thread = LoopThread("shmq-route")
    try:
        return thread.run(fetch(), 30.0)
    finally:
        thread.close()


def _queue(mq: MessageQueue) -> dict[str, Any]:
    return {"brokerName": mq.broker_name, "queueId": mq.queue_id}


def message_record(msg: ReceivedMessage) -> dict[str, Any]:
    """A JSON-able summary of a received message (one line of `shmq consume` output); the body
    as text when it is UTF-8, else as hex."""
    try:
        body: str = msg.body.decode()
        encoding = "utf-8"
    except UnicodeDecodeError:
        body, encoding = msg.body.hex(), "hex"
    return {"topic": msg.topic, "brokerName": msg.broker_name, "queueId": msg.queue_id,
            "queueOffset": msg.queue_offset, "msgId": msg.msg_id,
            "offsetMsgId": msg.offset_msg_id, "tags": msg.tags, "keys": msg.keys,
            "reconsumeTimes": msg.reconsume_times, "storeTimestamp": msg.store_timestamp_ms,
            "properties": dict(msg.properties), "body": body, "bodyEncoding": encoding}
