"""The broker's dispatch table: request code -> handler, and the sessions handlers run in.

Theory of operation: `HANDLERS` is the one table of what the broker answers (everything else
gets REQUEST_CODE_NOT_SUPPORTED from `remoting.Dispatcher`). `BrokerDispatch` binds it to a
`Broker`: for each request it finds (or makes, on the connection's first request) the
connection's `Session` and calls `handler(session, command)`. Its `connection_closed` is the
server's close callback: it forgets the session and drops the client's registrations, telling
the consumer groups that lost a member.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Final

from shmq.protocol import RemotingCommand, RequestCode
from shmq.remoting import Connection, Dispatcher, HandlerResult, RequestHandler

from .context import Broker, Session
from .handlers import (
    BrokerHandler,
    consumer_send_msg_back,
    delete_topic_in_broker,
    end_transaction,
    get_all_topic_config,
    get_broker_config,
    get_broker_runtime_info,
    get_consume_stats,
    get_consumer_connection_list,
    get_consumer_list_by_group,
    get_consumer_running_info,
    get_earliest_msg_storetime,
    get_max_offset,
    get_min_offset,
    get_topic_stats_info,
    heart_beat,
    invoke_broker_to_reset_offset,
    lock_batch_mq,
    pull_message,
    query_consumer_offset,
    query_message,
    search_offset_by_timestamp,
    send_message,
    unlock_batch_mq,
    unregister_client,
    update_and_create_topic,
    update_consumer_offset,
    view_message_by_id,
)

__all__ = ["HANDLERS", "BrokerDispatch"]

#: what the broker answers, by request code
HANDLERS: Final[Mapping[int, BrokerHandler]] = {
    RequestCode.SEND_MESSAGE: send_message,
    RequestCode.SEND_MESSAGE_V2: send_message,
    RequestCode.SEND_BATCH_MESSAGE: send_message,
    RequestCode.PULL_MESSAGE: pull_message,
    RequestCode.QUERY_MESSAGE: query_message,
    RequestCode.QUERY_CONSUMER_OFFSET: query_consumer_offset,
    RequestCode.UPDATE_CONSUMER_OFFSET: update_consumer_offset,
    RequestCode.UPDATE_AND_CREATE_TOPIC: update_and_create_topic,
    RequestCode.GET_ALL_TOPIC_CONFIG: get_all_topic_config,
    RequestCode.SEARCH_OFFSET_BY_TIMESTAMP: search_offset_by_timestamp,
    RequestCode.GET_MAX_OFFSET: get_max_offset,
    RequestCode.GET_MIN_OFFSET: get_min_offset,
    RequestCode.GET_EARLIEST_MSG_STORETIME: get_earliest_msg_storetime,
    RequestCode.VIEW_MESSAGE_BY_ID: view_message_by_id,
    RequestCode.HEART_BEAT: heart_beat,
    RequestCode.UNREGISTER_CLIENT: unregister_client,
    RequestCode.CONSUMER_SEND_MSG_BACK: consumer_send_msg_back,
    RequestCode.GET_CONSUMER_LIST_BY_GROUP: get_consumer_list_by_group,
    RequestCode.LOCK_BATCH_MQ: lock_batch_mq,
    RequestCode.UNLOCK_BATCH_MQ: unlock_batch_mq,
    RequestCode.DELETE_TOPIC_IN_BROKER: delete_topic_in_broker,
    RequestCode.END_TRANSACTION: end_transaction,
    # operator requests (handlers/stats.py)
    RequestCode.GET_BROKER_CONFIG: get_broker_config,
    RequestCode.GET_BROKER_RUNTIME_INFO: get_broker_runtime_info,
    RequestCode.GET_TOPIC_STATS_INFO: get_topic_stats_info,
    RequestCode.GET_CONSUMER_CONNECTION_LIST: get_consumer_connection_list,
    RequestCode.GET_CONSUME_STATS: get_consume_stats,
    RequestCode.INVOKE_BROKER_TO_RESET_OFFSET: invoke_broker_to_reset_offset,
    RequestCode.GET_CONSUMER_RUNNING_INFO: get_consumer_running_info,
}


class BrokerDispatch:
    """`HANDLERS` bound to one `Broker`, with a session per connection."""

    def __init__(self, broker: Broker,
                 handlers: Mapping[int, BrokerHandler] = HANDLERS) -> None:
        self.broker = broker
        self._sessions: dict[Connection, Session] = {}
        bound: dict[int, RequestHandler] = {
            code: functools.partial(self._run, handler) for code, handler in handlers.items()}
        self.dispatcher = Dispatcher(bound, name="broker")

    def _run(self, handler: BrokerHandler, conn: Connection,
             request: RemotingCommand) -> HandlerResult:
        session = self._sessions.get(conn)
        if session is None:
            session = self._sessions[conn] = Session(self.broker, conn)
        return handler(session, request)

    def connection_closed(self, conn: Connection) -> None:
        """The server's close callback: forget the session and the client's registrations."""
        self._sessions.pop(conn, None)
        self.broker.connection_closed(conn)

    @property
    def sessions(self) -> int:
        return len(self._sessions)
