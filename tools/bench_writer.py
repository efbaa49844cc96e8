"""CPU cost of a writer serving one append request, in this process, no other process.

    python3 tools/bench_writer.py [--runs 5] [--requests 20000] [--count 1] [--size 128]

Creates a broker's shared memory and store in a temporary directory, a `Writer` and one
producer's rings, then per request: publishes one append request (`--count` records encoded
beforehand, as a LocalProducer or the acceptor sends them), calls `Writer.poll_once()` (read,
check, append to the commit log and consume queue, answer) and reads the completion back.
Also times `Writer._has_work()`, which a waiting writer calls on every spin turn (how soon it
notices a request). Prints one JSON object: the medians of `--runs` runs, in microseconds
per request (wall time; nothing else runs in the process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from shmq.broker.writer import Writer
from shmq.ipc.registry import attach_producer, create_broker_shm, detach_producer
from shmq.ipc.segment import remove_stale
from shmq.message.encoder import encode_batch
from shmq.message.msgid import UniqKeyGenerator, pack_host
from shmq.protocol.local import KIND_APPEND, decode_completion, encode_append
from shmq.store.config import StoreConfig
from shmq.store.store import MessageStore

_STORE = StoreConfig(segment_bytes=256 << 20, cq_entries_per_file=300_000, min_free_bytes=0,
                     index_slots=100_000, index_max_entries=400_000, store_host="127.0.0.1",
                     store_port=10911)


def _request(rid: int, count: int, size: int) -> bytes:
    keys = UniqKeyGenerator("127.0.0.1")
    props = [b"UNIQ_KEY\x01%s\x02" % keys.new_key().encode() for _ in range(count)]
    host = pack_host("127.0.0.1", 40000)
    batch = encode_batch(b"BenchWriter", 0, [b"w" * size] * count, props,
                         born_timestamp_ms=int(time.time() * 1000), born_host=host,
                         store_host=pack_host("127.0.0.1", 10911))
    return b"".join(encode_append(rid, b"BenchWriter", 0, batch.sizes,
                                  np.zeros(count, dtype=np.int64), batch.data))


def run_once(requests: int, count: int, size: int) -> dict[str, float]:
    instance = f"bw{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="shmq-bench-writer-") as tmp:
        shm = create_broker_shm(instance, 1, max_producers=2)
        store = MessageStore(Path(tmp) / "store", _STORE, writer_slot=0)
        writer = Writer(instance, 0, store, max_body_bytes=1 << 20)
        slot = attach_producer(shm, 1 << 20)
        try:
            requests_end = slot.requests[0].producer()
            completions_end = slot.completions[0].consumer()
            writer.refresh(force=True)
            payload = bytearray(_request(1, count, size))
            for rid in range(1, requests + 1):  # warm-up: first pages, caches
                if rid > requests // 10:
                    break
                payload[:8] = rid.to_bytes(8, "little")
                requests_end.write(bytes(payload), KIND_APPEND)
                writer.poll_once()
                completions_end.read_batch(16)
            start = time.perf_counter()
            for rid in range(requests):
                payload[:8] = rid.to_bytes(8, "little")
                requests_end.write(bytes(payload), KIND_APPEND)
                writer.poll_once()
                (_, answer), = completions_end.read_batch(16)
            served = (time.perf_counter() - start) / requests * 1e6
            assert decode_completion(answer).count == count
            start = time.perf_counter()
            for _ in range(requests):
                writer._has_work()
            has_work = (time.perf_counter() - start) / requests * 1e6
            return {"serve_us_per_request": served, "has_work_us": has_work}
        finally:
            writer.close()
            store.close()
            for ring in slot.rings:
                ring.detach()
            detach_producer(shm, slot)
            shm.detach()
            remove_stale(instance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    runs = [run_once(args.requests, args.count, args.size) for _ in range(args.runs)]
    print(json.dumps({"runs": args.runs, "count": args.count, "size": args.size,
                      **{k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}}))


if __name__ == "__main__":
    main()
