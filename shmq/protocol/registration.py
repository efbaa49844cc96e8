"""REGISTER_BROKER bodies: a broker's topic table, in JSON or Java's compressed form (spec §5).

Theory of operation: `RegisterBrokerBody` carries a `TopicConfigSerializeWrapper` (topic name ->
`TopicConfig`, plus the table's `DataVersion`, which the name server compares to decide whether
the routes changed) and the filter-server list. The JSON form is what Java sends by default.
With `compressed=true` in the request header the body is a zlib stream of int32-length-prefixed
chunks: DataVersion JSON, topic count, one "name read write perm filterType" line per topic
(`TopicConfig.encode()` in Java: topicSysFlag and order are not carried), filter-server list
JSON. Inflating stops at MAX_INFLATED_BYTES so a hostile body cannot exhaust memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

from . import fastjson
from .body_json import JsonObject, as_int, as_texts, encode_json, read_object
from .errors import BodyFormatError
from .layout import I32

__all__ = [
    "MAX_INFLATED_BYTES",
    "DataVersion",
    "RegisterBrokerBody",
    "TopicConfig",
    "TopicConfigSerializeWrapper",
]

#: largest inflated compressed RegisterBrokerBody accepted (guards against zlib bombs)
MAX_INFLATED_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DataVersion:
    """Version of a broker's topic table; the name server compares both fields."""

    timestamp: int
    counter: int

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {"counter": self.counter, "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, value: object, where: str) -> DataVersion:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        return cls(obj.number("timestamp", bits=64), obj.number("counter", bits=64))


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """A broker's configuration of one topic (Java `TopicConfig`; defaults are Java's)."""

    topic_name: str
    read_queue_nums: int = 16
    write_queue_nums: int = 16
    perm: int = 6
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {
            "order": self.order,
            "perm": self.perm,
            "readQueueNums": self.read_queue_nums,
            "topicFilterType": self.topic_filter_type,
            "topicName": self.topic_name,
            "topicSysFlag": self.topic_sys_flag,
            "writeQueueNums": self.write_queue_nums,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> TopicConfig:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        return cls(
            topic_name=obj.text("topicName"),
            read_queue_nums=obj.number("readQueueNums", 16),
            write_queue_nums=obj.number("writeQueueNums", 16),
            perm=obj.number("perm", 6),
            topic_filter_type=obj.opt_text("topicFilterType") or "SINGLE_TAG",
            topic_sys_flag=obj.number("topicSysFlag", 0),
            order=obj.flag("order"),
        )

    def encode_compact(self) -> str:
        """Java `TopicConfig.encode()`: "name read write perm filterType" (compressed bodies)."""
        return (
            f"{self.topic_name} {self.read_queue_nums} {self.write_queue_nums} "
            f"{self.perm} {self.topic_filter_type}"
        )

    @classmethod
    def decode_compact(cls, text: str, where: str) -> TopicConfig:
        """Inverse of `encode_compact`; topicSysFlag and order are not carried (Java's loss)."""
        parts = text.split(" ")
        if len(parts) != 5:
            raise BodyFormatError(where, f"{text!r:.80} is not 'name read write perm filterType'")
        return cls(
            topic_name=parts[0],
            read_queue_nums=as_int(parts[1], f"{where}.readQueueNums"),
            write_queue_nums=as_int(parts[2], f"{where}.writeQueueNums"),
            perm=as_int(parts[3], f"{where}.perm"),
            topic_filter_type=parts[4],
        )


@dataclass(frozen=True, slots=True)
class TopicConfigSerializeWrapper:
    """A broker's topic table and its version."""

    topic_config_table: dict[str, TopicConfig]
    data_version: DataVersion

    def to_json(self) -> dict[str, object]:
        """The JSON object Java writes for this value (keys sorted when encoded)."""
        return {
            "dataVersion": self.data_version.to_json(),
            "topicConfigTable": {n: c.to_json() for n, c in self.topic_config_table.items()},
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> TopicConfigSerializeWrapper:
        """Read one from a decoded JSON value; `where` names it in BodyFormatError messages."""
        obj = JsonObject(value, where)
        table = {n: TopicConfig.from_json(v, w) for n, v, w in obj.entries("topicConfigTable")}
        version = obj.data.get("dataVersion")
        data_version = (
            DataVersion(0, 0)
            if version is None
            else DataVersion.from_json(version, f"{where}.dataVersion")
        )
        return cls(table, data_version)


@dataclass(frozen=True, slots=True)
class RegisterBrokerBody:
    """REGISTER_BROKER request body."""

    topic_config_serialize_wrapper: TopicConfigSerializeWrapper
    filter_server_list: tuple[str, ...] = ()

    def encode(self, compressed: bool = False) -> bytes:
        """JSON, or Java's zlib form when `compressed` (set `compressed=true` in the header)."""
        if not compressed:
            return encode_json(
                {
                    "filterServerList": list(self.filter_server_list),
                    "topicConfigSerializeWrapper": self.topic_config_serialize_wrapper.to_json(),
                }
            )
        wrapper = self.topic_config_serialize_wrapper
        parts = [_sized(encode_json(wrapper.data_version.to_json()))]
        parts.append(I32.pack(len(wrapper.topic_config_table)))
        parts += (_sized(c.encode_compact().encode()) for c in wrapper.topic_config_table.values())
        parts.append(_sized(encode_json(list(self.filter_server_list))))
        return zlib.compress(b"".join(parts), 9)

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview, compressed: bool = False
    ) -> RegisterBrokerBody:
        """Read either form (`compressed` comes from the request header).

        Raises:
            BodyFormatError: not a registration body, or it inflates past MAX_INFLATED_BYTES.
        """
        if not compressed:
            obj = read_object(data, "RegisterBrokerBody")
            wrapper = TopicConfigSerializeWrapper.from_json(
                obj.data.get("topicConfigSerializeWrapper", {}),
                "RegisterBrokerBody.topicConfigSerializeWrapper",
            )
            return cls(wrapper, obj.texts("filterServerList"))
        return _decode_compressed_registration(bytes(data))


def _sized(payload: bytes) -> bytes:
    return I32.pack(len(payload)) + payload


def _decode_compressed_registration(data: bytes) -> RegisterBrokerBody:
    where = "RegisterBrokerBody(compressed)"
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, MAX_INFLATED_BYTES)
    except zlib.error as err:
        raise BodyFormatError(where, f"not a zlib stream: {err}") from err
    if inflater.unconsumed_tail:
        raise BodyFormatError(where, f"inflates past {MAX_INFLATED_BYTES} bytes")
    reader = _SizedReader(raw, where)
    version = DataVersion.from_json(fastjson.loads(reader.chunk(), where), f"{where}.dataVersion")
    table = {}
    for index in range(reader.count()):
        config = TopicConfig.decode_compact(
            str(reader.chunk(), "utf-8", "replace"), f"{where}.topic[{index}]"
        )
        table[config.topic_name] = config
    servers = as_texts(fastjson.loads(reader.chunk(), where), f"{where}.filterServerList")
    return RegisterBrokerBody(TopicConfigSerializeWrapper(table, version), servers)


class _SizedReader:
    """Reads int32-length-prefixed chunks and counts from an inflated registration body."""

    __slots__ = ("data", "pos", "where")

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def count(self) -> int:
        if self.pos + I32.size > len(self.data):
            raise BodyFormatError(self.where, f"truncated at byte {self.pos}")
        (value,) = I32.unpack_from(self.data, self.pos)
        self.pos += I32.size
        if value < 0:
            raise BodyFormatError(self.where, f"negative length {value} at byte {self.pos - 4}")
        return int(value)

    def chunk(self) -> bytes:
        size = self.count()
        if self.pos + size > len(self.data):
            raise BodyFormatError(self.where, f"chunk of {size} bytes at {self.pos} is truncated")
        self.pos += size
        return self.data[self.pos - size : self.pos]
