"""CPU cost of the acceptor's send handler per message, in this process, no I/O.

    python3 tools/bench_send_handler.py [--runs 5] [--batch 32] [--size 128]

Builds SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE requests as the C++/Java clients do (UNIQ_KEY,
TAGS, KEYS, WAIT per message) and times `handlers.send.send_message` up to the append (the
returned coroutine is closed, not run): header decoding, checks, properties, record encoding.
The batch is timed twice in the same run: the plain-batch fast path (`plain_batch`) and the
general path (decode every entry's properties, encode again), and their ratio is printed.
`*_answered_us_per_msg` time the whole handler up to its response (msgIds, response header)
with an appender that stores nothing and answers at once.
Prints one JSON object per figure: median of `--runs` runs of 2000 requests each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from shmq.broker.appender import Appended, StoreAppender
from shmq.broker.context import Broker, BrokerSettings
from shmq.broker.handlers import send as send_module
from shmq.broker.longpoll import PullHolds
from shmq.broker.offsets import ConsumerOffsets
from shmq.broker.reader import StoreReader
from shmq.broker.topics import TopicTable
from shmq.message.batch import encode_batch_body
from shmq.message.properties import encode_properties
from shmq.protocol import RequestCode, SendMessageRequestHeaderV2, make_request
from shmq.store.config import StoreConfig
from shmq.store.store import MessageStore

STORE = StoreConfig(segment_bytes=8 << 20, cq_entries_per_file=1000, min_free_bytes=0,
                    index_slots=1000, index_max_entries=10_000, store_host="127.0.0.1",
                    store_port=10911)


def _props(i: int) -> dict[str, str]:
    return {"UNIQ_KEY": f"7F00000100012A9F0000000000{i:06X}", "TAGS": "TagA",
            "KEYS": f"key-{i}", "WAIT": "true"}


def _request(code: int, body: bytes, properties: str) -> object:
    fields = SendMessageRequestHeaderV2(
        a="pg", b="BenchTopic", c="TBW102", d=4, e=1, f=0, g=int(time.time() * 1000), h=0,
        i=properties, m=code == RequestCode.SEND_BATCH_MESSAGE).to_ext_fields()
    return make_request(code, 0, fields, body)


class _NoStore:
    """An appender that stores nothing and answers at once (times the response's building)."""

    max_batch_bytes = 64 << 20

    async def append(self, topic: str, queue_id: int, batch: object, tags: object) -> Appended:
        return Appended(4096, 0, 0, batch.count)  # type: ignore[attr-defined]


async def _time_answered(session: object, request: object, n: int) -> float:
    with mock.patch.object(session.broker, "appender", _NoStore()):  # type: ignore[attr-defined]
        started = time.perf_counter()
        for _ in range(n):
            await send_module.send_message(session, request)  # type: ignore[arg-type]
        return time.perf_counter() - started


def _time(session: object, request: object, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        send_module.send_message(session, request).close()  # type: ignore[arg-type]
    return time.perf_counter() - started


def main() -> None:
    asyncio.run(_main())


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    n = 2000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = MessageStore(root, STORE, writer_slot=0)
        reader = StoreReader(root, STORE)
        broker = Broker(BrokerSettings(), topics=TopicTable(root / "config", default_queues=4,
                                                            auto_create=True),
                        offsets=ConsumerOffsets(root / "config"), reader=reader,
                        appender=StoreAppender(store), holds=PullHolds(reader))
        session = SimpleNamespace(broker=broker, born_host=b"\x7f\x00\x00\x01\x00\x00\x30\x39")
        body = b"b" * args.size
        single = _request(RequestCode.SEND_MESSAGE_V2, body,
                          encode_properties(_props(0)).decode())
        batch = _request(RequestCode.SEND_BATCH_MESSAGE,
                         encode_batch_body((0, body, _props(i)) for i in range(args.batch)),
                         "WAIT\x01true\x02")
        figures: dict[str, list[float]] = {
            "single_us_per_msg": [], "batch_us_per_msg": [], "batch_general_us_per_msg": [],
            "single_answered_us_per_msg": [], "batch_answered_us_per_msg": []}
        for _ in range(args.runs):
            figures["single_us_per_msg"].append(_time(session, single, n) / n * 1e6)
            figures["batch_us_per_msg"].append(_time(session, batch, n) / n / args.batch * 1e6)
            figures["single_answered_us_per_msg"].append(
                await _time_answered(session, single, n) / n * 1e6)
            figures["batch_answered_us_per_msg"].append(
                await _time_answered(session, batch, n) / n / args.batch * 1e6)
            with mock.patch.object(send_module, "plain_batch", lambda *a, **k: None):
                figures["batch_general_us_per_msg"].append(
                    _time(session, batch, n) / n / args.batch * 1e6)
        reader.close()
        store.close()
    out = {name: statistics.median(values) for name, values in figures.items()}
    out["ratio_general_over_plain"] = out["batch_general_us_per_msg"] / out["batch_us_per_msg"]
    print(json.dumps({"runs": args.runs, "batch": args.batch, "size": args.size, **out}))


if __name__ == "__main__":
    main()
