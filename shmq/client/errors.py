"""Errors of shmq's client. `retriable` says whether trying again may help; `refresh_route`
whether the topic's route should be fetched again first."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import ClassVar, Final

from shmq.errors import ClientError
from shmq.protocol import RemotingCommand, RequestCode, ResponseCode

__all__ = [
    "ERRORS_BY_CODE",
    "BrokerBusy",
    "BrokerError",
    "BrokerNotRunning",
    "BrokerSystemError",
    "BrokerUnreachable",
    "ConnectionLost",
    "ConsumerClosed",
    "InvalidMessage",
    "MalformedResponse",
    "MessageIllegal",
    "NameServerUnavailable",
    "NoPermission",
    "NoRouteInfo",
    "ProducerClosed",
    "RequestCodeNotSupported",
    "RequestTimeout",
    "SendFailed",
    "SendTimeout",
    "ServiceNotAvailable",
    "SubscriptionGroupNotExist",
    "SubscriptionNotExist",
    "SubscriptionNotLatest",
    "SubscriptionParseFailed",
    "SystemBusy",
    "TopicNotExist",
    "WriterGone",
    "error_for_response",
]


class BrokerNotRunning(ClientError):
    """No broker of that instance runs on this host (its shared memory is missing)."""

    def __init__(self, instance: str) -> None:
        super().__init__(f"no shmq broker instance {instance!r} is running on this host "
                         "(start one with `shmq start`)")
        self.instance = instance


class BrokerBusy(ClientError):
    """The writer's ring stayed full for the whole timeout: nothing was sent."""

    retriable = True


class SendFailed(ClientError):
    """The broker refused the message; nothing was stored. `status` is the writer's status."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class SendTimeout(ClientError):
    """No answer in time: the message may or may not have been stored."""

    retriable = True


class WriterGone(ClientError):
    """The writer process died with the send in flight: it may or may not have been stored
    (the supervisor restarts the writer; a retry may store it twice)."""

    retriable = True


class ProducerClosed(ClientError):
    """The producer was closed."""


# --- remote clients (producer.py, consumer.py, routes.py) ----------------------------------------
#
# A broker or name server answers an error with a response code; `error_for_response` turns it
# into the class registered for that code below (`BrokerError` for a code without a class). Each
# class says whether trying again may help (`retriable`) and whether the topic's route should be
# fetched again first (`refresh_route`). Transport failures from `shmq.remoting` are wrapped
# into `BrokerUnreachable`, `RequestTimeout`/`SendTimeout` and `ConnectionLost` (by
# `instance.error_for_transport`, kept there so that this module, which `local.py` imports,
# does not pull in asyncio) so that a caller of the client catches `ClientError` only.


class BrokerError(ClientError):
    """A broker or name server answered `request_code` with error `code` (its remark in the
    message). Subclasses name the codes we know; this class carries any other number."""

    #: fetch the topic's route again before retrying (the broker may not serve it any more)
    refresh_route: ClassVar[bool] = False

    def __init__(self, code: int, remark: str | None, addr: str, request_code: int) -> None:
        super().__init__(f"{addr} answered request {_code_name(RequestCode, request_code)} "
                         f"with {_code_name(ResponseCode, code)}: {remark or '(no remark)'}")
        self.code, self.remark, self.addr, self.request_code = code, remark, addr, request_code


class BrokerSystemError(BrokerError):
    """SYSTEM_ERROR (1): the broker failed; another broker may succeed (Java retries it)."""

    response_code = ResponseCode.SYSTEM_ERROR
    retriable = True


class SystemBusy(BrokerError):
    """SYSTEM_BUSY (2): the broker sheds load; nothing was stored. Retry later or elsewhere."""

    response_code = ResponseCode.SYSTEM_BUSY
    retriable = True


class RequestCodeNotSupported(BrokerError):
    """REQUEST_CODE_NOT_SUPPORTED (3): the peer does not implement this request."""

    response_code = ResponseCode.REQUEST_CODE_NOT_SUPPORTED


class MessageIllegal(BrokerError):
    """MESSAGE_ILLEGAL (13): the message breaks a limit (size, topic, properties)."""

    response_code = ResponseCode.MESSAGE_ILLEGAL


class ServiceNotAvailable(BrokerError):
    """SERVICE_NOT_AVAILABLE (14): the broker is shutting down, a slave, or out of disk."""

    response_code = ResponseCode.SERVICE_NOT_AVAILABLE
    retriable = True
    refresh_route = True


class NoPermission(BrokerError):
    """NO_PERMISSION (16): the topic or broker is not writable/readable now."""

    response_code = ResponseCode.NO_PERMISSION
    retriable = True
    refresh_route = True


class TopicNotExist(BrokerError):
    """TOPIC_NOT_EXIST (17): the broker does not serve the topic (and did not create it)."""

    response_code = ResponseCode.TOPIC_NOT_EXIST
    retriable = True
    refresh_route = True


class SubscriptionParseFailed(BrokerError):
    """SUBSCRIPTION_PARSE_FAILED (23): the broker cannot parse the subscription expression."""

    response_code = ResponseCode.SUBSCRIPTION_PARSE_FAILED


class SubscriptionNotExist(BrokerError):
    """SUBSCRIPTION_NOT_EXIST (24): no subscription registered by heartbeat for this pull."""

    response_code = ResponseCode.SUBSCRIPTION_NOT_EXIST
    retriable = True


class SubscriptionNotLatest(BrokerError):
    """SUBSCRIPTION_NOT_LATEST (25): the registered subscription is older; heartbeat first."""

    response_code = ResponseCode.SUBSCRIPTION_NOT_LATEST
    retriable = True


class SubscriptionGroupNotExist(BrokerError):
    """SUBSCRIPTION_GROUP_NOT_EXIST (26): the consumer group is unknown and not auto-created."""

    response_code = ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST


#: response code -> error class (style.md §4: one registry)
ERRORS_BY_CODE: Final[dict[int, type[BrokerError]]] = {
    int(cls.response_code): cls
    for cls in (BrokerSystemError, SystemBusy, RequestCodeNotSupported, MessageIllegal,
                ServiceNotAvailable, NoPermission, TopicNotExist, SubscriptionParseFailed,
                SubscriptionNotExist, SubscriptionNotLatest, SubscriptionGroupNotExist)
    if cls.response_code is not None
}


def error_for_response(response: RemotingCommand, addr: str, request_code: int) -> BrokerError:
    """The typed error for an error `response` to `request_code` from `addr`."""
    cls = ERRORS_BY_CODE.get(response.code, BrokerError)
    return cls(response.code, response.remark, addr, request_code)


class NameServerUnavailable(ClientError):
    """None of the name servers answered; routes cannot be fetched. Retry later."""

    retriable = True

    def __init__(self, addrs: Sequence[str], reason: str) -> None:
        super().__init__(f"no name server of {', '.join(addrs) or '(none configured)'} "
                         f"answered: {reason}")
        self.addrs, self.reason = tuple(addrs), reason


class NoRouteInfo(ClientError):
    """The name servers know no usable route for `topic` (no queue to write to or read from,
    and no TBW102 route to auto-create it): create the topic, or wait for its broker."""

    retriable = True
    refresh_route = True

    def __init__(self, topic: str, detail: str) -> None:
        super().__init__(f"no route info for topic {topic!r}: {detail}")
        self.topic = topic


class BrokerUnreachable(ClientError):
    """No connection to the broker or name server at `addr` could be made: nothing was sent."""

    retriable = True
    refresh_route = True

    def __init__(self, addr: str, reason: str) -> None:
        super().__init__(f"cannot reach {addr}: {reason}")
        self.addr, self.reason = addr, reason


class RequestTimeout(ClientError):
    """No answer in time; the request may or may not have been executed."""

    retriable = True


class ConnectionLost(ClientError):
    """The connection closed before the answer; the request may or may not have been executed."""

    retriable = True
    refresh_route = True


class ConsumerClosed(ClientError):
    """The consumer was closed (or not started)."""


def _code_name(codes: type[IntEnum], code: int) -> str:
    try:
        return f"{codes(code).name} ({code})"
    except ValueError:
        return str(code)


class InvalidMessage(ClientError):
    """The message cannot be sent as it is (empty or oversized body, bad topic name, bad
    properties, a batch mixing what may not be mixed); nothing was sent. Fix the message."""


class MalformedResponse(ClientError):
    """A broker's answer could not be read (a pull body with a cut or corrupt record, a
    header without its fields). The request may have had effects; retrying may help."""

    retriable = True
