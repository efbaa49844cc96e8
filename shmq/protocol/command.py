"""`RemotingCommand`: one request or response of the remoting protocol, independent of encoding.

Theory of operation: a command is what a frame means (spec/remoting-protocol.md §3): the numeric
`code` (request code for requests, response code for responses), the sender's language and
version, the `opaque` request id, the `flag` bits, an optional `remark`, the `ext_fields`
("custom header", always str -> str here) and an optional body. `serialize_type` records which
header encoding the command came in (or should go out) with; a response is answered in its
request's encoding (`make_response`), because the C++ and Node clients read only JSON.

Commands are treated as immutable values (the class is not frozen only for speed, see below);
`ext_fields` is a plain dict that nobody mutates after construction. `code` is kept as a plain int (peers send codes we may not know); compare it with
`RequestCode` / `ResponseCode` members. A decoded body is `bytes`; an outgoing body may be a
`memoryview` (for instance a slice of the commit log), which the encoder passes through without
copying.

`OpaqueGenerator` hands out request ids the way the C++ client does (non-negative, wrapping).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from .codes import FLAG_ONEWAY, FLAG_RESPONSE, LanguageCode, MQVersion, SerializeType
from .layout import INT32_MAX

__all__ = ["OpaqueGenerator", "RemotingCommand", "make_request", "make_response"]


# Not frozen, unlike other value types (style.md §6): a frozen dataclass's __init__ goes through
# object.__setattr__ per field and costs ~1.2 us more per command, about a tenth of the budget of
# a small request that is decoded and answered. Treat commands as immutable all the same.
@dataclass(slots=True)
class RemotingCommand:
    """One remoting command; see the module docstring. Never mutated after construction.

    Attributes:
        code: request code (requests) or response code (responses).
        language: sender's language; shmq sends JAVA, like the Java broker.
        version: sender's `MQVersion` ordinal; shmq sends 407 (V4_9_7).
        opaque: request id; a response carries its request's.
        flag: bit 0 = response, bit 1 = oneway request; other bits are ignored.
        remark: free text, the error message of error responses; None when absent.
        ext_fields: named parameters ("custom header"), all values strings.
        body: bytes after the header; None when the frame has none.
        serialize_type: header encoding this command uses on the wire.
    """

    code: int
    language: LanguageCode = LanguageCode.JAVA
    version: int = int(MQVersion.V4_9_7)
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] = field(default_factory=dict)
    body: bytes | memoryview | None = None
    serialize_type: SerializeType = SerializeType.JSON

    @property
    def is_response(self) -> bool:
        """True when flag bit 0 (RPC_TYPE) is set."""
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        """True for a request with flag bit 1 (RPC_ONEWAY): the receiver must not answer."""
        return bool(self.flag & FLAG_ONEWAY) and not self.flag & FLAG_RESPONSE

    @property
    def body_bytes(self) -> int:
        """Length of the body in bytes (0 when there is none)."""
        body = self.body
        if body is None:
            return 0
        return body.nbytes if isinstance(body, memoryview) else len(body)


def make_request(
    code: int,
    opaque: int,
    ext_fields: Mapping[str, str] | None = None,
    body: bytes | memoryview | None = None,
    *,
    oneway: bool = False,
    remark: str | None = None,
    serialize_type: SerializeType = SerializeType.JSON,
) -> RemotingCommand:
    """Build a request as shmq sends it (language JAVA, version 407).

    Args:
        code: the request code.
        opaque: request id, usually from an `OpaqueGenerator`.
        ext_fields: header fields, for instance `SomeHeader.to_ext_fields()`.
        body: body bytes or a buffer to send without copying.
        oneway: set the ONEWAY flag: the peer will not answer.
        remark: optional free text.
        serialize_type: JSON for every peer except Java peers configured for ROCKETMQ.

    Returns:
        The new command.
    """
    return RemotingCommand(
        code=code,
        opaque=opaque,
        flag=FLAG_ONEWAY if oneway else 0,
        remark=remark,
        ext_fields=dict(ext_fields) if ext_fields else {},
        body=body,
        serialize_type=serialize_type,
    )


def make_response(
    request: RemotingCommand,
    code: int,
    remark: str | None = None,
    ext_fields: Mapping[str, str] | None = None,
    body: bytes | memoryview | None = None,
) -> RemotingCommand:
    """Build the response to `request`: same opaque, same header encoding, RESPONSE flag set.

    Args:
        request: the command being answered.
        code: the response code.
        remark: error text or None.
        ext_fields: response header fields; clients decode them for SUCCESS and for the
            codes listed in spec §4.3 rule 3, so pass them on those codes too.
        body: body bytes or a buffer (for instance commit-log slices' owner) sent without copying.

    Returns:
        The response command (language JAVA, version 407, like the Java broker).
    """
    return RemotingCommand(
        code=code,
        opaque=request.opaque,
        flag=FLAG_RESPONSE,
        remark=remark,
        ext_fields=dict(ext_fields) if ext_fields else {},
        body=body,
        serialize_type=request.serialize_type,
    )


class OpaqueGenerator:
    """Request ids for commands we originate: 0, 1, 2, ... up to 2^31 - 1, then 0 again.

    Ids only need to be unique among the requests in flight on one connection; one generator may
    serve every connection of a process. Safe to call from several threads.
    """

    def __init__(self, start: int = 0) -> None:
        if not 0 <= start <= INT32_MAX:
            raise ValueError(f"start {start} is outside 0..{INT32_MAX}")
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def next_opaque(self) -> int:
        """Return the next id (non-negative int32, wrapping to 0 after 2^31 - 1)."""
        with self._lock:
            return next(self._counter) & INT32_MAX

    __call__ = next_opaque
