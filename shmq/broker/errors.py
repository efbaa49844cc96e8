"""Errors of the broker's request handlers and its write channel (style.md §4).

Theory of operation: every error a handler raises derives from `shmq.errors.RequestRejected` and
carries the RocketMQ response code its request is answered with as the class attribute
`response_code`; `shmq.remoting.response_for_error` turns it into the response (the message
becomes the remark, so a client's user and the broker's log see the same words). Each error
says in its docstring whether anything was stored.

Remarks follow the Java broker's where a client or an operator may match on them
(TOPIC_NOT_EXIST, SYSTEM_BUSY's "[REJECTREQUEST]").
"""

from __future__ import annotations

from typing import ClassVar, Final

from shmq.errors import RequestRejected
from shmq.protocol import ResponseCode

__all__ = [
    "FAQ_SUFFIX",
    "AppendRejected",
    "BrokerRejected",
    "ChannelClosed",
    "IllegalQueueId",
    "IllegalTopic",
    "MessageIllegal",
    "NoPermission",
    "NotFound",
    "SendTimedOut",
    "ServiceUnavailable",
    "SubscriptionMissing",
    "SubscriptionOutdated",
    "TopicNotExist",
    "WritePathBusy",
    "WriterGone",
]

#: what Java appends to TOPIC_NOT_EXIST remarks (FAQUrl.suggestTodo(APPLY_TOPIC_URL))
FAQ_SUFFIX: Final = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."


class BrokerRejected(RequestRejected):
    """Base of the broker's refusals; SYSTEM_ERROR unless a subclass says otherwise."""

    response_code: ClassVar[int | None] = ResponseCode.SYSTEM_ERROR


class TopicNotExist(BrokerRejected):
    """A send or pull names a topic this broker does not have (and may not create). Nothing
    was stored."""

    response_code = ResponseCode.TOPIC_NOT_EXIST

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic[{topic}] not exist, apply first please!{FAQ_SUFFIX}")
        self.topic = topic


class IllegalTopic(BrokerRejected):
    """A topic name breaks RocketMQ's rules (Java answers SYSTEM_ERROR). Nothing was stored."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"the specified topic {topic!r:.140} {reason}")
        self.topic, self.reason = topic, reason


class NoPermission(BrokerRejected):
    """The topic (or the operation) is not allowed. Nothing was stored."""

    response_code = ResponseCode.NO_PERMISSION


class IllegalQueueId(BrokerRejected):
    """A queue id outside the topic's queues (Java answers SYSTEM_ERROR)."""

    def __init__(self, topic: str, queue_id: int, queues: int) -> None:
        super().__init__(f"request queueId[{queue_id}] is illegal, topic {topic} has "
                         f"{queues} queues (0..{queues - 1})")
        self.topic, self.queue_id, self.queues = topic, queue_id, queues


class MessageIllegal(BrokerRejected):
    """The message breaks a limit (body, properties, batch format). Nothing was stored."""

    response_code = ResponseCode.MESSAGE_ILLEGAL


class SubscriptionMissing(BrokerRejected):
    """A pull without a subscription expression from a group with no registered one."""

    response_code = ResponseCode.SUBSCRIPTION_NOT_EXIST


class SubscriptionOutdated(BrokerRejected):
    """A pull whose subVersion is newer than the group's registered subscription."""

    response_code = ResponseCode.SUBSCRIPTION_NOT_LATEST


class NotFound(BrokerRejected):
    """QUERY_CONSUMER_OFFSET / QUERY_MESSAGE found nothing."""

    response_code = ResponseCode.QUERY_NOT_FOUND


class ServiceUnavailable(BrokerRejected):
    """The broker cannot take writes now (stopping, store refused). Nothing was stored."""

    response_code = ResponseCode.SERVICE_NOT_AVAILABLE


# -- the write channel ------------------------------------------------------------------------


class WritePathBusy(BrokerRejected):
    """The owning writer's ring stayed full for `waited_s`: back-pressure. Nothing was sent to
    the writer, so nothing was stored; the client may retry."""

    response_code = ResponseCode.SYSTEM_BUSY

    def __init__(self, writer: int, waited_s: float) -> None:
        super().__init__(f"[REJECTREQUEST]system busy: writer-{writer}'s ring stayed full for "
                         f"{waited_s * 1000:.0f} ms; nothing was stored, try again later")
        self.writer, self.waited_s = writer, waited_s


class WriterGone(BrokerRejected):
    """The writer died (or closed our ring) with the append in flight: it may or may not be
    stored. A retry may store it twice (at-least-once)."""

    def __init__(self, writer: int, pid: int, detail: str = "") -> None:
        more = f" ({detail})" if detail else ""
        super().__init__(f"writer-{writer} (pid {pid}) went away with the append in "
                         f"flight{more}; the message may or may not be stored")
        self.writer, self.pid = writer, pid


class SendTimedOut(BrokerRejected):
    """The writer did not answer within the timeout: the message may or may not be stored."""

    def __init__(self, writer: int, timeout_s: float) -> None:
        super().__init__(f"writer-{writer} did not answer within {timeout_s:g} s; the message "
                         "may or may not be stored")
        self.writer, self.timeout_s = writer, timeout_s


class AppendRejected(BrokerRejected):
    """The writer refused the append (malformed batch, not its queue): nothing was stored."""


class ChannelClosed(ServiceUnavailable):
    """The acceptor's write channel is closed (the acceptor is stopping): nothing was sent."""
