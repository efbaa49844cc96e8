"""The broker's request handlers: plain functions `handler(ctx, command)` (style.md §2), where
`ctx` is the connection's `context.Session`. They return the response, an awaitable of it (a
send waiting for its writer, a held pull), or raise a `RequestRejected` whose response code and
message become the answer. `dispatch.HANDLERS` maps request codes to them."""

from __future__ import annotations

from .admin import (
    delete_topic_in_broker,
    get_all_topic_config,
    query_message,
    update_and_create_topic,
    view_message_by_id,
)
from .clients import (
    get_consumer_list_by_group,
    heart_beat,
    lock_batch_mq,
    unlock_batch_mq,
    unregister_client,
)
from .common import BrokerHandler
from .offsets import (
    get_earliest_msg_storetime,
    get_max_offset,
    get_min_offset,
    query_consumer_offset,
    search_offset_by_timestamp,
    update_consumer_offset,
)
from .pull import pull_message
from .send import consumer_send_msg_back, send_message
from .stats import (
    get_broker_config,
    get_broker_runtime_info,
    get_consume_stats,
    get_consumer_connection_list,
    get_consumer_running_info,
    get_topic_stats_info,
    invoke_broker_to_reset_offset,
)
from .transaction import end_transaction

__all__ = [
    "BrokerHandler",
    "consumer_send_msg_back",
    "delete_topic_in_broker",
    "end_transaction",
    "get_all_topic_config",
    "get_broker_config",
    "get_broker_runtime_info",
    "get_consume_stats",
    "get_consumer_connection_list",
    "get_consumer_list_by_group",
    "get_consumer_running_info",
    "get_earliest_msg_storetime",
    "get_max_offset",
    "get_min_offset",
    "get_topic_stats_info",
    "heart_beat",
    "invoke_broker_to_reset_offset",
    "lock_batch_mq",
    "pull_message",
    "query_consumer_offset",
    "query_message",
    "search_offset_by_timestamp",
    "send_message",
    "unlock_batch_mq",
    "unregister_client",
    "update_and_create_topic",
    "update_consumer_offset",
    "view_message_by_id",
]
