"""One real broker (`shmq start` on free ports) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shmq.testing.broker import BrokerProcess, running_broker

from .helpers import Shmq, namesrv_of


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("cli"), writers=1) as running:
        yield running


@pytest.fixture
def shmq(broker: BrokerProcess) -> Shmq:
    return Shmq(namesrv_of(broker))
