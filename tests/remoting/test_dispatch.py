"""Tests of shmq/remoting/dispatch.py and of response_for_error (no sockets)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from shmq.errors import RequestRejected, ShmqError
from shmq.protocol import (
    FLAG_RESPONSE,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SerializeType,
    make_request,
    make_response,
)
from shmq.remoting import Dispatcher, response_for_error

CONN: Any = SimpleNamespace(remote_address="10.0.0.9:5555")


def _ok(conn: Any, request: RemotingCommand) -> RemotingCommand:
    return make_response(request, ResponseCode.SUCCESS, remark="ok")


def test_a_registered_code_runs_its_handler() -> None:
    dispatcher = Dispatcher()

    @dispatcher.register(RequestCode.HEART_BEAT)
    def heartbeat(conn: Any, request: RemotingCommand) -> RemotingCommand:
        return make_response(request, ResponseCode.SUCCESS, remark=conn.remote_address)

    response = dispatcher(CONN, make_request(RequestCode.HEART_BEAT, opaque=7))
    assert isinstance(response, RemotingCommand)
    assert (response.code, response.opaque, response.remark) == (0, 7, "10.0.0.9:5555")
    assert RequestCode.HEART_BEAT in dispatcher and list(dispatcher) == [34]
    assert dispatcher.handler_for(34) is heartbeat and dispatcher.handler_for(35) is None


def test_an_unknown_code_is_answered_request_code_not_supported(
        caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = Dispatcher({RequestCode.HEART_BEAT: _ok}, name="namesrv")
    request = make_request(999, opaque=3, serialize_type=SerializeType.ROCKETMQ)
    with caplog.at_level(logging.WARNING):
        first = dispatcher(CONN, request)
        second = dispatcher(CONN, request)
    for response in (first, second):
        assert isinstance(response, RemotingCommand)
        assert response.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
        assert response.code == 3
        assert response.remark == " request type 999 not supported"
        assert response.flag == FLAG_RESPONSE and response.opaque == 3
        assert response.serialize_type == SerializeType.ROCKETMQ
    assert sum("999" in r.getMessage() for r in caplog.records) == 1  # logged once per code


def test_an_unknown_oneway_code_gets_no_answer() -> None:
    assert Dispatcher()(CONN, make_request(999, opaque=1, oneway=True)) is None


def test_a_code_cannot_be_registered_twice() -> None:
    dispatcher = Dispatcher({RequestCode.HEART_BEAT: _ok})
    with pytest.raises(ValueError, match="34 already has a handler"):
        dispatcher.add(RequestCode.HEART_BEAT, _ok)
    assert len(dispatcher) == 1


class _Refused(RequestRejected):
    response_code: ClassVar[int | None] = ResponseCode.NO_PERMISSION


def test_an_error_with_a_response_code_answers_that_code_and_its_message() -> None:
    request = make_request(RequestCode.SEND_MESSAGE, opaque=11)
    response = response_for_error(request, _Refused("topic T is not writable"))
    assert (response.code, response.remark, response.opaque) == (16, "topic T is not writable", 11)


def test_an_shmq_error_without_a_code_answers_system_error() -> None:
    response = response_for_error(make_request(10, opaque=1), ShmqError("disk is gone"))
    assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, "disk is gone")


def test_any_other_exception_answers_system_error_and_logs_the_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise KeyError("oops")
    except KeyError as err:
        with caplog.at_level(logging.ERROR):
            response = response_for_error(make_request(10, opaque=1), err)
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.remark == "KeyError: 'oops'"
    assert any(r.exc_info is not None and r.exc_info[0] is KeyError for r in caplog.records)
