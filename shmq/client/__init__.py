"""shmq.client: Python clients of shmq (see docs/architecture.md §6).

Same host, through shared memory: `LocalProducer`, `LocalConsumer` (`local.py`,
`local_consumer.py`; import them from there).

Over TCP, with RocketMQ's 4.x remoting protocol, against shmq or any RocketMQ 4.x cluster:

* `Producer` / `AsyncProducer` (`producer.py`): sync, async and oneway sends, batches, queue
  selection, retries on another broker, compression;
* `PullConsumer` / `AsyncPullConsumer` (`consumer.py`): assign or subscribe, poll, commit;
* `PushConsumer` / `AsyncPushConsumer` (`push_consumer.py`): clustering or broadcasting,
  concurrent or orderly listeners, send-back of failures;
* `TransactionProducer` / `AsyncTransactionProducer` (`transaction.py`): transactional
  messages (half message, local transaction, commit/rollback, answers to check-backs);
* `rebalance.py`: queue allocation strategies; `routes.py`: name servers and routes;
  `errors.py`: the typed errors (`retriable`, `refresh_route`).

The names below are imported on first use (PEP 562), so that `import shmq.client.local` — the
same-host fast path — does not pay for asyncio and the remote clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .consumer import AsyncPullConsumer, PullConsumer
    from .errors import (
        BrokerError,
        BrokerUnreachable,
        ConsumerClosed,
        InvalidMessage,
        NameServerUnavailable,
        NoRouteInfo,
        ProducerClosed,
        RequestTimeout,
        SendTimeout,
    )
    from .message import BatchSendResult, Message, SendResult
    from .producer import AsyncProducer, Producer
    from .push_consumer import AsyncPushConsumer, ConsumeStatus, PushConsumer
    from .rebalance import ConsistentHashAllocator, allocate_averagely, allocate_by_circle
    from .received import PullResult, PullStatus, ReceivedMessage
    from .transaction import (
        AsyncTransactionProducer,
        TransactionListener,
        TransactionProducer,
        TransactionSendResult,
        TransactionState,
    )

#: public name -> the module defining it
_MODULES: Final = {
    "AsyncProducer": ".producer",
    "AsyncPullConsumer": ".consumer",
    "AsyncPushConsumer": ".push_consumer",
    "AsyncTransactionProducer": ".transaction",
    "BatchSendResult": ".message",
    "BrokerError": ".errors",
    "BrokerUnreachable": ".errors",
    "ConsistentHashAllocator": ".rebalance",
    "ConsumeStatus": ".push_consumer",
    "ConsumerClosed": ".errors",
    "InvalidMessage": ".errors",
    "Message": ".message",
    "NameServerUnavailable": ".errors",
    "NoRouteInfo": ".errors",
    "Producer": ".producer",
    "ProducerClosed": ".errors",
    "PullConsumer": ".consumer",
    "PullResult": ".received",
    "PullStatus": ".received",
    "PushConsumer": ".push_consumer",
    "ReceivedMessage": ".received",
    "RequestTimeout": ".errors",
    "SendResult": ".message",
    "SendTimeout": ".errors",
    "TransactionListener": ".transaction",
    "TransactionProducer": ".transaction",
    "TransactionSendResult": ".transaction",
    "TransactionState": ".transaction",
    "allocate_averagely": ".rebalance",
    "allocate_by_circle": ".rebalance",
}

__all__ = [
    "AsyncProducer",
    "AsyncPullConsumer",
    "AsyncPushConsumer",
    "AsyncTransactionProducer",
    "BatchSendResult",
    "BrokerError",
    "BrokerUnreachable",
    "ConsistentHashAllocator",
    "ConsumeStatus",
    "ConsumerClosed",
    "InvalidMessage",
    "Message",
    "NameServerUnavailable",
    "NoRouteInfo",
    "Producer",
    "ProducerClosed",
    "PullConsumer",
    "PullResult",
    "PullStatus",
    "PushConsumer",
    "ReceivedMessage",
    "RequestTimeout",
    "SendResult",
    "SendTimeout",
    "TransactionListener",
    "TransactionProducer",
    "TransactionSendResult",
    "TransactionState",
    "allocate_averagely",
    "allocate_by_circle",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
