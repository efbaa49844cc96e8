"""The real RocketMQ C++ client (PyPI rocketmq==0.4.4) in subprocesses, for acceptance tests.

Each client runs in its own Python process (two consumers of one group cannot share a process,
and the wrapper's finalisers can hang): it prints one line per event, flushes, and leaves with
`os._exit` (spec/client-quirks.md, "Python wrapper"). HOME points into the test's directory,
where the client writes its logs (`logs/rocketmq-cpp/`), attached to failures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

#: prints one line per call with one write(2) (used by both scripts)
_SAY = r"""
import os, threading
say_lock = threading.Lock()
def say(*parts):
    # one write(2) per line, under a lock: print() writes its arguments and the newline
    # separately, so a line printed by another thread could land in the middle of it
    data = (" ".join(str(part) for part in parts) + "\n").encode()
    with say_lock:
        while data:
            data = data[os.write(1, data):]
"""

PRODUCER = _SAY + r"""
import sys, json
args = json.loads(sys.argv[1])
try:
    from rocketmq.client import Message, Producer
    producer = Producer(args["group"])
    producer.set_namesrv_addr(args["namesrv"])
    producer.set_timeout(5000)
    producer.start()
    def build(item):
        message = Message(args["topic"])
        if item.get("tags"):
            message.set_tags(item["tags"])
        if item.get("keys"):
            message.set_keys(item["keys"])
        for name, value in item.get("props", {}).items():
            message.set_property(name, value)
        message.set_body(item["body"])
        return message

    for chunk in args.get("batches", []):  # lists of message indexes sent as one batch
        items = [args["messages"][i] for i in chunk]
        try:
            result = producer.send_batch([build(item) for item in items])
            for item in items:
                say("SENT", item["props"]["acc_seq"], result.status.name, result.msg_id,
                    result.offset)
        except Exception as err:
            for item in items:
                say("FAILED", item["props"]["acc_seq"], type(err).__name__,
                    str(err).replace("\n", " ")[:300])
    for item in args["messages"] if not args.get("batches") else []:
        message = build(item)
        try:
            if args.get("orderly"):
                result = producer.send_orderly(message, item["shard"])
            else:
                result = producer.send_sync(message)
            say("SENT", item["props"]["acc_seq"], result.status.name, result.msg_id,
                result.offset)
        except Exception as err:
            say("FAILED", item["props"]["acc_seq"], type(err).__name__,
                str(err).replace("\n", " ")[:300])
    say("DONE")
except BaseException:
    import traceback
    say(traceback.format_exc())
finally:
    sys.stdout.flush()
    os._exit(0)
"""

CONSUMER = _SAY + r"""
import sys, json, time
args = json.loads(sys.argv[1])
lock = threading.Lock()
state = {"received": 0, "done_at": None}
try:
    # 0.4.4 has no ConsumeStatus: returning means success, raising means "reconsume later"
    from rocketmq.client import PushConsumer
    from rocketmq.ffi import MessageModel
    model = MessageModel.BROADCASTING if args.get("broadcasting") else MessageModel.CLUSTERING
    consumer = PushConsumer(args["group"], orderly=args.get("orderly", False),
                            message_model=model)
    consumer.set_namesrv_addr(args["namesrv"])
    if args.get("instance"):
        consumer.set_instance_name(args["instance"])
    fail_seq = set(args.get("fail", []))
    failed = set()

    def text(value):
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    def on_message(msg):
        seq = text(msg.get_property("acc_seq"))
        with lock:
            say("RECV", json.dumps({
                "seq": seq, "topic": text(msg.topic), "tags": text(msg.tags),
                "keys": text(msg.keys), "body": text(msg.body), "queue": msg.queue_id,
                "offset": msg.queue_offset, "run": text(msg.get_property("acc_run")),
                "prop": text(msg.get_property("acc_prop")),
                "reconsume": msg.reconsume_times, "id": text(msg.id)}))
            if seq in fail_seq and seq not in failed:
                failed.add(seq)
                raise RuntimeError("fail once: " + seq)
            state["received"] += 1
            if state["received"] >= args.get("expect", 1 << 30) and state["done_at"] is None:
                state["done_at"] = time.time()

    consumer.subscribe(args["topic"], on_message, args.get("expression", "*"))
    consumer.start()
    say("STARTED")
    deadline = time.time() + args["seconds"]
    grace = args.get("grace", 2.0)
    while time.time() < deadline:
        done_at = state["done_at"]
        if done_at is not None and time.time() - done_at >= grace:
            break
        time.sleep(0.05)
    say("STOPPING")
    consumer.shutdown()
    say("DONE")
except BaseException:
    import traceback
    say(traceback.format_exc())
finally:
    sys.stdout.flush()
    os._exit(0)
"""


@dataclass
class ClientRun:
    """A client subprocess; a thread collects what it prints into `lines`."""

    proc: subprocess.Popen[str]
    home: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the C++ client's own log files (under $HOME/logs)."""
        found = sorted(self.home.glob("logs/**/*"))
        text = "".join(p.read_text(errors="replace") for p in found if p.is_file())
        return text[-chars:]

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))


def start(script: str, args: str, home: Path) -> ClientRun:
    home.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"HOME": str(home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)
    run = ClientRun(proc, home)
    run.reader = threading.Thread(target=run._collect, daemon=True)
    run.reader.start()
    return run


def finish(run: ClientRun, timeout_s: float) -> list[str]:
    """Wait for the client to exit (kill its process group after `timeout_s`); its lines."""
    try:
        run.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(run)
        run.proc.wait(timeout=10)
    if run.reader is not None:
        run.reader.join(timeout=10)
    if run.proc.stdout is not None:
        run.proc.stdout.close()
    return list(run.lines)


def kill(run: ClientRun) -> None:
    try:
        os.killpg(run.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for_line(run: ClientRun, prefix: str, timeout_s: float) -> bool:
    """Wait until the client printed a line starting with `prefix` (or exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in list(run.lines)):
            return True
        if run.proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def received(lines: list[str]) -> list[dict[str, object]]:
    """The messages a consumer printed, in the order it got them.

    The C++ library writes to the same stream (stderr is merged into stdout) from its own
    threads, without our lock: its text can land in front of a RECV line on the same line. Such
    a line was dropped, which looked like a lost message (the consumer had counted it; the
    group's committed offsets were past it). So the record is found anywhere in the line. Our
    own lines are written whole (`say`): `print` from a consume thread could be split by the
    main thread's STARTED, which lost a RECV line the same way (CI, 2026-12-08).
    """
    decoder = json.JSONDecoder()
    found = []
    for line in lines:
        at = line.find("RECV {")
        if at >= 0:
            found.append(decoder.raw_decode(line, at + 5)[0])
    return found


def sent(lines: list[str]) -> dict[str, str]:
    """seq -> send status of a producer's output."""
    statuses = {}
    for line in lines:  # found anywhere in the line, as in `received`
        at = max(line.find("SENT "), line.find("FAILED "))
        parts = line[at:].split() if at >= 0 else []
        if len(parts) >= 3:
            statuses[parts[1]] = parts[2]
    return statuses
