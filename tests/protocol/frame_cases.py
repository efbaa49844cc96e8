"""One table of (command, bytes) cases for the frame codec, used for encoding and decoding alike.

The bytes are built here by hand (struct + literal header text), independently of
`shmq.protocol.layout`, so the table is an oracle for the codec rather than a copy of it.

* `CANONICAL`: encode(command) == frame and decode(frame) == command.
* `LENIENT`: decode(frame) == command only; headers as the C++ / Node / Java clients write them
  (schematic examples from spec/remoting-protocol.md §4.1, byte for byte where the spec shows
  text), which shmq never writes itself.
* `MALFORMED`: frames the decoder must reject with RemoteProtocolError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shmq.protocol import LanguageCode, RemotingCommand, SerializeType

JSON = SerializeType.JSON
BINARY = SerializeType.ROCKETMQ


def frame(header: bytes, body: bytes = b"", serialize_type: int = 0) -> bytes:
    """A frame: total length, (type << 24 | header length), header, body."""
    mark = (serialize_type << 24) | len(header)
    return struct.pack(">iI", 4 + len(header) + len(body), mark) + header + body


def binary_header(
    code: int,
    language: int,
    version: int,
    opaque: int,
    flag: int,
    remark: bytes = b"",
    entries: list[tuple[bytes, bytes]] | None = None,
    ext_len: int | None = None,
    remark_len: int | None = None,
) -> bytes:
    """A binary ("ROCKETMQ") header; lengths may be overridden to make broken ones."""
    ext = b"".join(
        struct.pack(">h", len(k)) + k + struct.pack(">i", len(v)) + v for k, v in entries or []
    )
    return (
        struct.pack(">hBhii", code, language, version, opaque, flag)
        + struct.pack(">i", len(remark) if remark_len is None else remark_len)
        + remark
        + struct.pack(">i", len(ext) if ext_len is None else ext_len)
        + ext
    )


@dataclass(frozen=True)
class Case:
    name: str
    command: RemotingCommand
    frame: bytes


#: The Java 4.9.7 broker's SEND response, exactly as printed in spec §4.1.
JAVA_SEND_RESPONSE_HEADER = (
    b'{"code":0,"extFields":{"MSG_REGION":"DefaultRegion","TRACE_ON":"true",'
    b'"msgId":"7F00000100002A9F0000000000000000","queueId":"1","queueOffset":"0"},'
    b'"flag":1,"language":"JAVA","opaque":17,"serializeTypeCurrentRPC":"JSON","version":407}'
)

#: C++ 1.2.4's PULL_MESSAGE header as printed in spec §4.1 (FastWriter appends a newline).
CPP_PULL_HEADER = (
    '{"code":11,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN","Signature":"…",'
    '"commitOffset":"0","consumerGroup":"g","maxMsgNums":32,"queueId":0,"queueOffset":"0",'
    '"subVersion":"0","subscription":"*","suspendTimeoutMillis":"15000","sysFlag":6,'
    '"topic":"T"},"flag":0,"language":"CPP","opaque":5,"remark":"","version":63}\n'
).encode()

#: ali-ons' SEND_MESSAGE_V2 header as printed in spec §4.1 (JSON numbers and booleans).
NODE_SEND_V2_HEADER = (
    b'{"code":310,"language":"JAVA","opaque":12,"flag":0,"version":121,"extFields":'
    b'{"a":"P","b":"T","c":"TBW102","d":4,"e":2,"f":0,"g":1700000000000,"h":0,'
    b'"i":"TAGS\\u0001A\\u0002","j":0,"k":false}}'
)

CANONICAL: list[Case] = [
    Case(
        "java send response (spec 4.1)",
        RemotingCommand(
            code=0,
            opaque=17,
            flag=1,
            ext_fields={
                "MSG_REGION": "DefaultRegion",
                "TRACE_ON": "true",
                "msgId": "7F00000100002A9F0000000000000000",
                "queueId": "1",
                "queueOffset": "0",
            },
        ),
        frame(JAVA_SEND_RESPONSE_HEADER),
    ),
    Case(
        "request with body, remark, no extFields",
        RemotingCommand(code=34, opaque=1, remark="hb", body=b'{"clientID":"c"}'),
        frame(
            b'{"code":34,"flag":0,"language":"JAVA","opaque":1,"remark":"hb",'
            b'"serializeTypeCurrentRPC":"JSON","version":407}',
            b'{"clientID":"c"}',
        ),
    ),
    Case(
        "oneway request, C++ language, negative opaque, empty remark",
        RemotingCommand(
            code=15,
            language=LanguageCode.CPP,
            version=63,
            opaque=-2147483648,
            flag=2,
            remark="",
            ext_fields={"commitOffset": "42"},
        ),
        frame(
            b'{"code":15,"extFields":{"commitOffset":"42"},"flag":2,"language":"CPP",'
            b'"opaque":-2147483648,"remark":"","serializeTypeCurrentRPC":"JSON","version":63}'
        ),
    ),
    Case(
        "non-ASCII and control characters are escaped",
        RemotingCommand(code=1, opaque=9, flag=1, remark='tópico "x"', ext_fields={"k\x01": "é\n"}),
        frame(
            b'{"code":1,"extFields":{"k\\u0001":"\\u00e9\\n"},"flag":1,"language":"JAVA",'
            b'"opaque":9,"remark":"t\\u00f3pico \\"x\\"","serializeTypeCurrentRPC":"JSON",'
            b'"version":407}'
        ),
    ),
    Case(
        "5.x POP code above int16 in a JSON header",
        RemotingCommand(code=200050, opaque=3),
        frame(
            b'{"code":200050,"flag":0,"language":"JAVA","opaque":3,'
            b'"serializeTypeCurrentRPC":"JSON","version":407}'
        ),
    ),
    Case(
        # RocketMQSerializableTest: no remark, no extFields -> 21-byte header
        "binary, no remark, no extFields (Java test vector)",
        RemotingCommand(code=103, version=2333, opaque=5, serialize_type=BINARY),
        frame(binary_header(103, 0, 2333, 5, 0), serialize_type=1),
    ),
    Case(
        # RocketMQSerializableTest: remark "Sample Remark" -> 34-byte header
        "binary, remark (Java test vector)",
        RemotingCommand(
            code=103, version=2333, opaque=6, remark="Sample Remark", serialize_type=BINARY
        ),
        frame(binary_header(103, 0, 2333, 6, 0, b"Sample Remark"), serialize_type=1),
    ),
    Case(
        # RocketMQSerializableTest: extFields {"key": "value"} -> 35-byte header
        "binary, one extFields entry (Java test vector)",
        RemotingCommand(
            code=103, version=2333, opaque=7, ext_fields={"key": "value"}, serialize_type=BINARY
        ),
        frame(binary_header(103, 0, 2333, 7, 0, entries=[(b"key", b"value")]), serialize_type=1),
    ),
    Case(
        "binary response with body, negative code, UTF-8 text",
        RemotingCommand(
            code=-1,
            language=LanguageCode.RUST,
            version=-5,
            opaque=2147483647,
            flag=1,
            remark="ü",
            ext_fields={"a": "1", "é": "ß"},
            body=b"\x00\x01body",
            serialize_type=BINARY,
        ),
        frame(
            binary_header(
                -1,
                12,
                -5,
                2147483647,
                1,
                "ü".encode(),
                [(b"a", b"1"), ("é".encode(), "ß".encode())],
            ),
            b"\x00\x01body",
            serialize_type=1,
        ),
    ),
]

LENIENT: list[Case] = [
    Case(
        "C++ 1.2.4 pull request (spec 4.1): numbers in extFields, trailing newline",
        RemotingCommand(
            code=11,
            language=LanguageCode.CPP,
            version=63,
            opaque=5,
            remark="",
            ext_fields={
                "AccessKey": "",
                "OnsChannel": "ALIYUN",
                "Signature": "…",
                "commitOffset": "0",
                "consumerGroup": "g",
                "maxMsgNums": "32",
                "queueId": "0",
                "queueOffset": "0",
                "subVersion": "0",
                "subscription": "*",
                "suspendTimeoutMillis": "15000",
                "sysFlag": "6",
                "topic": "T",
            },
        ),
        frame(CPP_PULL_HEADER),
    ),
    Case(
        "ali-ons send v2 (spec 4.1): insertion order, JSON numbers and booleans, body",
        RemotingCommand(
            code=310,
            version=121,
            opaque=12,
            ext_fields={
                "a": "P",
                "b": "T",
                "c": "TBW102",
                "d": "4",
                "e": "2",
                "f": "0",
                "g": "1700000000000",
                "h": "0",
                "i": "TAGS\x01A\x02",
                "j": "0",
                "k": "false",
            },
            body=b"hello",
        ),
        frame(NODE_SEND_V2_HEADER, b"hello"),
    ),
    Case(
        "whitespace, unknown keys, numeric strings, null remark, unknown language",
        RemotingCommand(code=10, language=LanguageCode.OTHER, version=0, opaque=77, flag=0),
        frame(
            b' \r\n{ "opaque" : "77", "code": "+10", "language": "COBOL", "remark": null,'
            b' "suspended": false, "serializeTypeCurrentRPC": "JSON" }\n\t'
        ),
    ),
    Case(
        "defaults: language JAVA, version and flag 0; extFields null",
        RemotingCommand(code=0, version=0, opaque=0, flag=0),
        frame(b'{"code":0,"opaque":0,"extFields":null}'),
    ),
    Case(
        "extFields of every JSON type become strings; null drops the key",
        RemotingCommand(
            code=1,
            version=0,
            opaque=1,
            ext_fields={
                "t": "true",
                "f": "false",
                "n": "-12",
                "big": "123456789012345678901234567890",
                "x": "1.5",
                "o": '{"k":[1,2]}',
                "l": "[]",
            },
        ),
        frame(
            b'{"code":1,"opaque":1,"extFields":{"t":true,"f":false,"n":-12,'
            b'"big":123456789012345678901234567890,"x":1.5,"o":{"k":[1,2]},"l":[],"gone":null}}'
        ),
    ),
    Case(
        "raw control characters and invalid UTF-8 inside strings are tolerated",
        RemotingCommand(
            code=1, version=0, opaque=2, remark="a\x01b\ufffd", ext_fields={"i": "K\x01v\x02"}
        ),
        frame(b'{"code":1,"opaque":2,"remark":"a\x01b\xff","extFields":{"i":"K\x01v\x02"}}'),
    ),
    Case(
        "language by ordinal; remark as a number",
        RemotingCommand(code=1, language=LanguageCode.GO, version=0, opaque=3, remark="404"),
        frame(b'{"code":1,"opaque":3,"language":9,"remark":404}'),
    ),
    Case(
        "binary: empty value reads as absent, duplicate key last wins, unknown language",
        RemotingCommand(
            code=12,
            language=LanguageCode.OTHER,
            version=1,
            opaque=4,
            ext_fields={"k": "second"},
            serialize_type=BINARY,
        ),
        frame(
            binary_header(
                12, 200, 1, 4, 0, entries=[(b"k", b"first"), (b"e", b""), (b"k", b"second")]
            ),
            serialize_type=1,
        ),
    ),
    Case(
        "binary: bytes after the extFields area are ignored (as Java does)",
        RemotingCommand(code=12, opaque=4, version=1, serialize_type=BINARY),
        frame(binary_header(12, 0, 1, 4, 0) + b"\xde\xad", serialize_type=1),
    ),
]


def _json_frame(text: bytes) -> bytes:
    return frame(text)


#: (name, frame) the decoder must reject
MALFORMED: list[tuple[str, bytes]] = [
    ("negative total length", struct.pack(">iI", -1, 0) + b"{}"),
    ("total length 0", struct.pack(">i", 0)),
    ("total length 3 cannot hold the mark", struct.pack(">i", 3) + b"abc"),
    ("header length beyond the frame", struct.pack(">iI", 6, 3) + b"{}"),
    ("header length 0", frame(b"", b'{"code":1}')),
    ("serialize type 2", frame(b'{"code":1,"opaque":1}', serialize_type=2)),
    ("serialize type 0xFF", frame(b'{"code":1,"opaque":1}', serialize_type=0xFF)),
    ("truncated JSON", _json_frame(b'{"code":1,')),
    ("JSON array", _json_frame(b"[1,2]")),
    ("JSON number", _json_frame(b"17")),
    ("two JSON objects", _json_frame(b'{"code":1,"opaque":1} {}')),
    ("missing code", _json_frame(b'{"opaque":1}')),
    ("missing opaque", _json_frame(b'{"code":1}')),
    ("code not numeric", _json_frame(b'{"code":"ten","opaque":1}')),
    ("code with spaces", _json_frame(b'{"code":" 10","opaque":1}')),
    ("code float", _json_frame(b'{"code":1.5,"opaque":1}')),
    ("code boolean", _json_frame(b'{"code":true,"opaque":1}')),
    ("opaque above int32", _json_frame(b'{"code":1,"opaque":2147483648}')),
    ("flag below int32", _json_frame(b'{"code":1,"opaque":1,"flag":"-2147483649"}')),
    ("extFields an array", _json_frame(b'{"code":1,"opaque":1,"extFields":[1]}')),
    ("language an object", _json_frame(b'{"code":1,"opaque":1,"language":{}}')),
    ("remark an object", _json_frame(b'{"code":1,"opaque":1,"remark":{"a":1}}')),
    (
        "deeply nested JSON",
        _json_frame(b'{"code":1,"opaque":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ),
    ("huge integer literal", _json_frame(b'{"code":' + b"9" * 5000 + b',"opaque":1}')),
    # regression: int() refuses > 4300 digits with ValueError, which escaped the decoder
    ("huge numeric string", _json_frame(b'{"code":"' + b"9" * 5000 + b'","opaque":1}')),
    ("binary header too short", frame(binary_header(1, 0, 1, 1, 0)[:-1], serialize_type=1)),
    (
        "binary negative remark length",
        frame(binary_header(1, 0, 1, 1, 0, remark_len=-1), serialize_type=1),
    ),
    (
        "binary remark past header",
        frame(binary_header(1, 0, 1, 1, 0, remark_len=50), serialize_type=1),
    ),
    (
        "binary negative ext length",
        frame(binary_header(1, 0, 1, 1, 0, ext_len=-4), serialize_type=1),
    ),
    (
        "binary ext length past header",
        frame(binary_header(1, 0, 1, 1, 0, entries=[(b"k", b"v")], ext_len=100), serialize_type=1),
    ),
    (
        "binary entry past the ext area",
        frame(
            binary_header(1, 0, 1, 1, 0, entries=[(b"k", b"value")], ext_len=9) + b"trailing",
            serialize_type=1,
        ),
    ),
    (
        "binary negative value length",
        frame(
            binary_header(1, 0, 1, 1, 0)[:-4]
            + struct.pack(">i", 7)
            + struct.pack(">h", 1)
            + b"k"
            + struct.pack(">i", -1),
            serialize_type=1,
        ),
    ),
]
