"""END_TRANSACTION (37): a producer commits or rolls back a half message (spec/request-codes.md
§3; behaviours.md §9).

Clients send it oneway, after their local transaction ran or in answer to a
CHECK_TRANSACTION_STATE (`fromTransactionCheck`); it may also come as a normal request, and
is then answered as Java's `EndTransactionProcessor` answers:

* commitOrRollback 0 (UNKNOWN, or anything but 8 / 12): nothing is done and, as in Java, no
  response is sent, even to a normal request (its caller times out); the half message waits
  for the check-back;
* the half message is looked up by `commitLogOffset` and checked (`transaction.find_half`):
  SYSTEM_ERROR "Find prepared transaction message failed ..." when there is none (or the
  record there is not a half message), "The producer group wrong ...", "The transaction state
  table offset wrong ..." when PGROUP or `tranStateTableOffset` differ. Nothing is changed.
* COMMIT stores the real message, then the op record; ROLLBACK only the op record
  (`transaction.resolve`). SUCCESS, or the append's error (nothing resolved).

A refused oneway request has nobody to read the answer, so the refusal is logged here.
"""

from __future__ import annotations

import logging

from shmq.message import layout as rec
from shmq.message.record import StoredMessage
from shmq.protocol import (
    EndTransactionRequestHeader,
    RemotingCommand,
    ResponseCode,
    make_response,
)
from shmq.remoting import HandlerResult

from ..context import Session
from ..errors import BrokerRejected
from ..transaction import find_half, resolve

__all__ = ["end_transaction"]

log = logging.getLogger(__name__)

_ACTIONS = {rec.TRANSACTION_COMMIT_TYPE: "commit", rec.TRANSACTION_ROLLBACK_TYPE: "rollback"}


def end_transaction(ctx: Session, request: RemotingCommand) -> HandlerResult:
    """Code 37: commit or roll back a half message; see the module docstring."""
    header = EndTransactionRequestHeader.from_ext_fields(request.ext_fields)
    action = _ACTIONS.get(header.commit_or_rollback)
    if action is None:
        log.debug("END_TRANSACTION from %s for %s: state %d (unknown), nothing to do%s",
                  ctx.conn.remote_address, header.msg_id, header.commit_or_rollback,
                  " (check answer)" if header.from_transaction_check else "")
        return None
    try:
        half = find_half(ctx.broker, header)
    except BrokerRejected as err:
        if request.is_oneway:
            log.warning("END_TRANSACTION (%s) of group %s from %s refused: %s", action,
                        header.producer_group, ctx.conn.remote_address, err)
        raise
    return _resolve(ctx, request, header, half, action)


async def _resolve(ctx: Session, request: RemotingCommand, header: EndTransactionRequestHeader,
                   half: StoredMessage, action: str) -> RemotingCommand:
    try:
        await resolve(ctx.broker, half, header.commit_or_rollback)
    except BrokerRejected as err:
        log.warning("END_TRANSACTION (%s) of half message %d (msgId %s) failed: %s", action,
                    half.queue_offset, header.msg_id, err)
        raise
    log.debug("half message %d (msgId %s) of group %s: %s%s", half.queue_offset, header.msg_id,
              header.producer_group, action,
              " (check answer)" if header.from_transaction_check else "")
    return make_response(request, ResponseCode.SUCCESS)
