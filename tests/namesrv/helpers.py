"""Builders of broker registrations, shared by the name-server tests."""

from __future__ import annotations

from collections.abc import Mapping

from shmq.message.crc import body_crc
from shmq.protocol import (
    DataVersion,
    RegisterBrokerBody,
    RegisterBrokerRequestHeader,
    RemotingCommand,
    RequestCode,
    TopicConfig,
    TopicConfigSerializeWrapper,
    make_request,
)

#: topic -> (readQueueNums, writeQueueNums, perm)
Topics = Mapping[str, tuple[int, int, int]]


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def registration(
    broker_name: str = "broker-a",
    broker_addr: str = "10.0.0.1:10911",
    broker_id: int = 0,
    *,
    cluster: str = "DefaultCluster",
    ha_server_addr: str | None = None,
    topics: Topics | None = None,
    version: tuple[int, int] = (1_700_000_000_000, 1),
    filter_servers: tuple[str, ...] = (),
) -> tuple[RegisterBrokerRequestHeader, RegisterBrokerBody]:
    """A REGISTER_BROKER header and body as a Java broker would send them."""
    host = broker_addr.rpartition(":")[0]
    header = RegisterBrokerRequestHeader(
        broker_name=broker_name, broker_addr=broker_addr, cluster_name=cluster,
        ha_server_addr=ha_server_addr or f"{host}:10912", broker_id=broker_id)
    table = {
        name: TopicConfig(name, read, write, perm)
        for name, (read, write, perm) in (topics if topics is not None else {"T": (4, 4, 6)}).items()
    }
    body = RegisterBrokerBody(TopicConfigSerializeWrapper(table, DataVersion(*version)),
                              filter_servers)
    return header, body


def register_request(*args: object, compressed: bool = False, with_crc: bool = True,
                     **kwargs: object) -> RemotingCommand:
    """The REGISTER_BROKER request for `registration(*args, **kwargs)`."""
    header, body = registration(*args, **kwargs)  # type: ignore[arg-type]
    data = body.encode(compressed=compressed)
    fields = header.to_ext_fields() | {"compressed": "true" if compressed else "false"}
    if with_crc:
        fields["bodyCrc32"] = str(body_crc(data))
    return make_request(RequestCode.REGISTER_BROKER, 0, fields, data)
