"""CPU cost of a consumer's pull-response decoding per message, in this process, no I/O.

    python3 tools/bench_pull_decode.py [--runs 5] [--count 32] [--size 128] [--pulls 1000]
                                       [--tags TagA] [--ipv6] [--retry] [--zlib]

Builds a SUCCESS pull body as the broker sends it: `--count` records encoded with
`message.encoder.encode_batch` and patched with queue offsets, commit-log offsets and a store
time, each with the properties a Java/C++ producer sends (UNIQ_KEY, TAGS, KEYS, WAIT) and the
CLUSTER the broker adds. Then it times, in the same process and interleaved run by run:

* `fast`: `client.received.decode_pull_response`;
* `general`: the decoder as it was before the fast path (fd4a448): every record decoded into
  a field list, then each message built (`received._decode_general` still does exactly that);
* `straightforward`: `decode_record` + `received_message` per record (the path tests compare
  against).

CPU time (`time.process_time`) of `--pulls` decodes per run, divided by the messages decoded;
one JSON object per implementation with the median and the minimum of `--runs` runs (us per
message), then one with the ratios. The three results are checked equal before timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from shmq.client import received
from shmq.client.received import PullResult, decode_pull_response, received_message
from shmq.message.encoder import encode_batch, patch_batch, record_starts
from shmq.message.layout import COMPRESSED_FLAG, COMPRESSION_ZLIB
from shmq.message.msgid import UniqKeyGenerator, pack_host
from shmq.message.properties import encode_properties
from shmq.message.record import iter_records
from shmq.protocol import MessageQueue, PullMessageResponseHeader, ResponseCode

Decoder = Callable[[int, Mapping[str, str], bytes, MessageQueue, frozenset[str]], Any]


def pull_body(count: int, size: int, *, ipv6: bool, retry: bool, compress: bool) -> bytes:
    """`count` records of one queue as a pull response carries them."""
    keys = UniqKeyGenerator("10.0.0.7").new_keys(count)
    properties = []
    for i, key in enumerate(keys):
        props = {"UNIQ_KEY": key, "TAGS": "TagA" if i % 2 else "TagB", "KEYS": f"order-{i}",
                 "WAIT": "true", "CLUSTER": "DefaultCluster"}
        if retry:
            props.update(RETRY_TOPIC="BenchTopic", ORIGIN_MESSAGE_ID=key)
        properties.append(encode_properties(props))
    body = bytes(i % 251 for i in range(size))
    sysflag = 0
    if compress:
        body, sysflag = zlib.compress(body), COMPRESSED_FLAG | COMPRESSION_ZLIB
    born, store = ("fd00::7", "fd00::1") if ipv6 else ("10.0.0.7", "10.0.0.1")
    topic = "%RETRY%bench-cg" if retry else "BenchTopic"
    batch = encode_batch(topic.encode(), 1, [body] * count, properties,
                         born_timestamp_ms=1_700_000_000_000, born_host=pack_host(born, 51234),
                         store_host=pack_host(store, 10911), sysflag=sysflag,
                         reconsume_times=1 if retry else 0)
    data = bytearray(batch.data)
    starts = record_starts(batch.sizes, base=1 << 30)
    patch_batch(np.frombuffer(data, dtype=np.uint8), starts - (1 << 30),
                queue_offsets=np.arange(count, dtype=np.int64) + 5000, phys_offsets=starts,
                store_timestamp_ms=1_700_000_000_004,
                store_timestamp_offset=batch.store_timestamp_offset)
    return bytes(data)


def general(code: int, ext_fields: Mapping[str, str], body: bytes, queue: MessageQueue,
            tags: frozenset[str]) -> PullResult:
    """`decode_pull_response` before the fast path (a FOUND body only)."""
    header = PullMessageResponseHeader.from_ext_fields(ext_fields)
    offsets = {"MIN_OFFSET": str(header.min_offset), "MAX_OFFSET": str(header.max_offset)}
    return PullResult(received.PullStatus.FOUND, header.next_begin_offset, header.min_offset,
                      header.max_offset, received._decode_general(body, queue, tags, offsets),
                      header.suggest_which_broker_id)


def straightforward(code: int, ext_fields: Mapping[str, str], body: bytes,
                    queue: MessageQueue, tags: frozenset[str]) -> tuple[Any, ...]:
    """One StoredMessage per record, then one ReceivedMessage each."""
    header = PullMessageResponseHeader.from_ext_fields(ext_fields)
    offsets = {"MIN_OFFSET": str(header.min_offset), "MAX_OFFSET": str(header.max_offset)}
    return tuple(received_message(r, queue, offsets) for r in iter_records(body)
                 if not tags or r.tags in tags)


def _messages(result: Any) -> tuple[Any, ...]:
    return result if isinstance(result, tuple) else result.messages


def _fields(message: Any) -> tuple[Any, ...]:
    return tuple((f.name, getattr(message, f.name), type(getattr(message, f.name)))
                 for f in dataclasses.fields(message)) + (list(message.properties.items()),)


def _time(decode: Decoder, args: tuple[Any, ...], pulls: int) -> float:
    started = time.process_time()
    for _ in range(pulls):
        decode(*args)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=32, help="records per pull")
    parser.add_argument("--size", type=int, default=128, help="body bytes")
    parser.add_argument("--pulls", type=int, default=1000, help="decodes per run")
    parser.add_argument("--tags", default="", help="subscription tags, '||'-separated")
    parser.add_argument("--ipv6", action="store_true", help="IPv6 born and store hosts")
    parser.add_argument("--retry", action="store_true", help="read from a %%RETRY% topic")
    parser.add_argument("--zlib", action="store_true", help="zlib-compressed bodies")
    args = parser.parse_args()
    body = pull_body(args.count, args.size, ipv6=args.ipv6, retry=args.retry,
                     compress=args.zlib)
    tags = frozenset(t for t in args.tags.split("||") if t)
    queue = MessageQueue("%RETRY%bench-cg" if args.retry else "BenchTopic", "broker-a", 1)
    ext_fields = {"suggestWhichBrokerId": "0", "nextBeginOffset": str(5000 + args.count),
                  "minOffset": "0", "maxOffset": "900000"}
    call = (ResponseCode.SUCCESS, ext_fields, body, queue, tags)
    decoders: dict[str, Decoder] = {"fast": decode_pull_response, "general": general,
                                    "straightforward": straightforward}
    results = {name: [_fields(m) for m in _messages(decode(*call))]
               for name, decode in decoders.items()}
    if not results["fast"] == results["general"] == results["straightforward"]:
        raise SystemExit("the decoders disagree")
    per_pull = len(results["fast"])
    figures: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(args.runs):
        for name, decode in decoders.items():
            figures[name].append(_time(decode, call, args.pulls) / args.pulls / per_pull * 1e6)
    setup = {"count": args.count, "size": args.size, "messages_per_pull": per_pull,
             "tags": sorted(tags), "ipv6": args.ipv6, "retry": args.retry, "zlib": args.zlib}
    medians = {}
    for name, values in figures.items():
        medians[name] = statistics.median(values)
        print(json.dumps({"decoder": name, **setup, "runs": args.runs,
                          "us_per_msg_median": round(medians[name], 3),
                          "us_per_msg_min": round(min(values), 3)}))
    print(json.dumps({"ratio_fast_over_general": round(medians["fast"] / medians["general"], 3),
                      "ratio_fast_over_straightforward":
                          round(medians["fast"] / medians["straightforward"], 3)}))


if __name__ == "__main__":
    main()
