"""Errors of shmq's client. `retriable` says whether trying again may help."""

from __future__ import annotations

from shmq.errors import ClientError

__all__ = [
    "BrokerBusy",
    "BrokerNotRunning",
    "ProducerClosed",
    "SendFailed",
    "SendTimeout",
    "WriterGone",
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
