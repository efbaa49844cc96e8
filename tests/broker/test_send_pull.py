"""Send and pull handlers through a real server in this process (store appended directly)."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

from shmq.message.batch import encode_batch_body
from shmq.message.msgid import decode_offset_msg_id
from shmq.message.record import StoredMessage, iter_records
from shmq.protocol import RequestCode, ResponseCode, make_request

from .helpers import InProcessBroker, in_process_broker, pull_request, run, send_request


def records(body: bytes | memoryview | None) -> list[StoredMessage]:
    return list(iter_records(body or b""))


async def send(b: InProcessBroker, topic: str, body: bytes, **kwargs: object) -> dict[str, str]:
    response = await b.call(send_request(topic, body, **kwargs))  # type: ignore[arg-type]
    assert response.code == ResponseCode.SUCCESS, response.remark
    return response.ext_fields


def test_send_then_pull_round_trip(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            ext = await send(b, "RoundTrip", b"hello", tags="TagA", keys="k1 k2",
                             properties={"acc_seq": "1", "UNIQ_KEY": "ABC"}, queue_id=2)
            assert set(ext) >= {"msgId", "queueId", "queueOffset", "MSG_REGION", "TRACE_ON"}
            assert (ext["queueId"], ext["queueOffset"]) == ("2", "0")
            host, port, offset = decode_offset_msg_id(ext["msgId"])
            assert (host, port, offset) == ("127.0.0.1", 10911, 0)
            await send(b, "RoundTrip", b"second", tags="TagB", queue_id=2)
            response = await b.call(pull_request("g", "RoundTrip", 2, 0))
            assert response.code == ResponseCode.SUCCESS
            assert response.ext_fields == {"suggestWhichBrokerId": "0", "nextBeginOffset": "2",
                                           "minOffset": "0", "maxOffset": "2"}
            first, second = records(response.body)
            assert (first.body, second.body) == (b"hello", b"second")
            assert (first.queue_offset, second.queue_offset) == (0, 1)
            assert first.phys_offset == 0 and second.phys_offset == first.total_size
            assert first.properties["acc_seq"] == "1" and first.properties["KEYS"] == "k1 k2"
            assert first.properties["CLUSTER"] == "DefaultCluster"
            assert "WAIT" not in first.properties
            assert (first.store_host, first.store_port) == ("127.0.0.1", 10911)
            conn = next(iter(b.client.connections.values()))
            assert f"{first.born_host}:{first.born_port}" == conn.local_address
            assert first.born_timestamp_ms == 1_700_000_000_000

    run(scenario())


def test_pull_filters_by_tag_on_the_broker(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            tags = ["A", "B", "A", "C", "B", "A"]
            for i, tag in enumerate(tags):
                await send(b, "Filtered", b"m%d" % i, tags=tag, queue_id=0)
            everything = await b.call(pull_request("g", "Filtered", 0, 0))
            all_records = records(everything.body)
            response = await b.call(pull_request("g", "Filtered", 0, 0, sub="A"))
            assert response.code == ResponseCode.SUCCESS
            got = records(response.body)
            assert [m.body for m in got] == [b"m0", b"m2", b"m5"]
            wanted_bytes = sum(m.total_size for m in all_records if m.properties["TAGS"] == "A")
            assert len(response.body or b"") == wanted_bytes
            assert response.ext_fields["nextBeginOffset"] == "6"
            both = await b.call(pull_request("g", "Filtered", 0, 1, sub="B || C"))
            assert [m.body for m in records(both.body)] == [b"m1", b"m3", b"m4"]
            none = await b.call(pull_request("g", "Filtered", 0, 0, sub="X"))
            assert none.code == ResponseCode.PULL_RETRY_IMMEDIATELY and none.body is None
            assert none.ext_fields["nextBeginOffset"] == "6"

    run(scenario())


def test_pull_status_codes_and_offsets(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            await send(b, "Codes", b"elsewhere", queue_id=3)  # creates the topic
            empty = await b.call(pull_request("g", "Codes", 0, 0))
            assert empty.code == ResponseCode.PULL_NOT_FOUND
            assert empty.ext_fields["nextBeginOffset"] == "0"
            moved = await b.call(pull_request("g", "Codes", 0, 5))
            assert moved.code == ResponseCode.PULL_OFFSET_MOVED
            for i in range(3):
                await send(b, "Codes", b"x%d" % i, queue_id=0)
            at_end = await b.call(pull_request("g", "Codes", 0, 3))
            assert at_end.code == ResponseCode.PULL_NOT_FOUND
            assert at_end.ext_fields["nextBeginOffset"] == "3"
            past = await b.call(pull_request("g", "Codes", 0, 9))
            assert past.code == ResponseCode.PULL_OFFSET_MOVED
            assert past.ext_fields["nextBeginOffset"] == "0"  # Java 4.9: nothing aged out
            two = await b.call(pull_request("g", "Codes", 0, 1, max_msgs=1))
            assert [m.body for m in records(two.body)] == [b"x1"]
            assert two.ext_fields["nextBeginOffset"] == "2"
            bad_queue = await b.call(pull_request("g", "Codes", 7, 0))
            assert bad_queue.code == ResponseCode.SYSTEM_ERROR
            assert "queueId[7]" in (bad_queue.remark or "")
            unknown = await b.call(pull_request("g", "NoSuchTopic", 0, 0))
            assert unknown.code == ResponseCode.TOPIC_NOT_EXIST

    run(scenario())


def test_long_poll_is_woken_by_a_send(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            await send(b, "Poll", b"old", queue_id=1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            held = asyncio.ensure_future(b.call(pull_request("g", "Poll", 1, 1, suspend_ms=5000)))
            await asyncio.sleep(0.3)
            assert not held.done()
            assert b.broker.holds.held == 1
            await send(b, "Poll", b"new", queue_id=1)
            response = await held
            waited = loop.time() - started
            assert response.code == ResponseCode.SUCCESS
            assert [m.body for m in records(response.body)] == [b"new"]
            assert 0.3 <= waited < 1.0, waited
            started = loop.time()
            timed_out = await b.call(pull_request("g", "Poll", 1, 2, suspend_ms=400))
            assert timed_out.code == ResponseCode.PULL_NOT_FOUND
            assert 0.35 <= loop.time() - started < 1.5

    run(scenario())


def test_a_held_filtered_pull_ignores_other_tags(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            await send(b, "PollTag", b"elsewhere", queue_id=3)  # creates the topic
            held = asyncio.ensure_future(
                b.call(pull_request("g", "PollTag", 0, 0, sub="A", suspend_ms=5000)))
            await asyncio.sleep(0.1)
            await send(b, "PollTag", b"b1", tags="B", queue_id=0)
            await send(b, "PollTag", b"b2", tags="B", queue_id=0)
            await asyncio.sleep(0.2)
            assert not held.done(), "woken by messages it does not want"
            await send(b, "PollTag", b"a1", tags="A", queue_id=0)
            response = await held
            assert [m.body for m in records(response.body)] == [b"a1"]
            assert response.ext_fields["nextBeginOffset"] == "3"
            # not held: entries that do not match are answered at once (as Java)
            await send(b, "PollTag", b"b3", tags="B", queue_id=0)
            now = await b.call(pull_request("g", "PollTag", 0, 3, sub="A", suspend_ms=300))
            assert now.code == ResponseCode.PULL_RETRY_IMMEDIATELY
            assert now.ext_fields["nextBeginOffset"] == "4"
            # held: entries that arrive and do not match are skipped; the deadline answer
            # moves past them
            late = asyncio.ensure_future(
                b.call(pull_request("g", "PollTag", 0, 4, sub="A", suspend_ms=400)))
            await asyncio.sleep(0.1)
            await send(b, "PollTag", b"b4", tags="B", queue_id=0)
            response = await late
            assert response.code == ResponseCode.PULL_NOT_FOUND
            assert response.ext_fields["nextBeginOffset"] == "5"

    run(scenario())


def test_topic_not_exist_when_auto_create_is_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path, auto_create=False) as b:
            response = await b.call(send_request("Missing", b"x"))
            assert response.code == ResponseCode.TOPIC_NOT_EXIST
            assert response.remark == ("topic[Missing] not exist, apply first please!\n"
                                       "See http://rocketmq.apache.org/docs/faq/ for further "
                                       "details.")
            assert b.broker.topics.get("Missing") is None

    run(scenario())


def test_illegal_messages_are_refused_and_not_stored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path, max_body_bytes=1000) as b:
            empty = await b.call(send_request("Illegal", b""))
            assert empty.code == ResponseCode.MESSAGE_ILLEGAL and "empty" in (empty.remark or "")
            big = await b.call(send_request("Illegal", b"x" * 1001))
            assert big.code == ResponseCode.MESSAGE_ILLEGAL
            assert "1000-byte limit" in (big.remark or "")
            long_props = send_request("Illegal", b"x")
            long_props.ext_fields["properties"] = "p\x01" + "v" * 33000 + "\x02"
            props = await b.call(long_props)
            assert props.code == ResponseCode.MESSAGE_ILLEGAL
            name = await b.call(send_request("bad topic!", b"x"))
            assert name.code == ResponseCode.SYSTEM_ERROR
            assert "illegal characters" in (name.remark or "")
            system = await b.call(send_request("SCHEDULE_TOPIC_XXXX", b"x"))
            assert system.code == ResponseCode.NO_PERMISSION
            queue = await b.call(send_request("Illegal", b"x", queue_id=4))
            assert queue.code == ResponseCode.SYSTEM_ERROR and "queueId[4]" in (queue.remark or "")
            assert b.store.commitlog.claims is not None
            assert b.store.commitlog.claims.load_claimed() == 0  # nothing was appended

    run(scenario())


def test_unknown_request_code(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            response = await b.call(make_request(9999, 0))
            assert response.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
            assert response.remark == " request type 9999 not supported"

    run(scenario())


def test_batches_are_stored_message_by_message(tmp_path: Path) -> None:
    entries = [(0, b"one", {"TAGS": "A", "UNIQ_KEY": "U1"}),
               (0, b"two", {"TAGS": "B", "UNIQ_KEY": "U2"}),
               (0, b"three" * 2000, {"TAGS": "A", "UNIQ_KEY": "U3"})]
    plain = encode_batch_body(entries)

    async def scenario() -> None:
        async with in_process_broker(tmp_path) as b:
            variants = [
                send_request("Batch", plain, queue_id=0, batch="1"),
                send_request("Batch", plain, queue_id=0, batch="true",
                             code=RequestCode.SEND_MESSAGE_V2),
                send_request("Batch", plain, queue_id=0, code=RequestCode.SEND_BATCH_MESSAGE),
                send_request("Batch", zlib.compress(plain), queue_id=0, batch="1", sys_flag=1),
            ]
            answered = []
            for n, request in enumerate(variants):
                response = await b.call(request)
                assert response.code == ResponseCode.SUCCESS, response.remark
                ids = response.ext_fields["msgId"].split(",")
                assert len(ids) == 3
                assert response.ext_fields["queueOffset"] == str(3 * n)
                answered += [decode_offset_msg_id(i) for i in ids]
            pulled = records((await b.call(pull_request("g", "Batch", 0, 0))).body)
            # each msgId names its record: the broker's address and the record's offset
            assert [a[2] for a in answered] == [m.phys_offset for m in pulled]
            assert {a[:2] for a in answered} == {(m.store_host, m.store_port) for m in pulled}
            assert [m.body for m in pulled] == [e[1] for e in entries] * 4
            assert [m.properties["UNIQ_KEY"] for m in pulled] == ["U1", "U2", "U3"] * 4
            assert all(m.sysflag & 1 == 0 for m in pulled)  # inflated, stored plain
            a_only = records((await b.call(pull_request("g", "Batch", 0, 0, sub="A"))).body)
            assert len(a_only) == 8
            broken = await b.call(send_request("Batch", b"\x00\x00\x00\x05junk", batch="1"))
            assert broken.code == ResponseCode.MESSAGE_ILLEGAL

    run(scenario())
