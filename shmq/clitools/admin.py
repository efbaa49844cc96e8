"""The `shmq admin` commands: each is a coroutine over an `AsyncAdmin` that returns an `Output`
(the JSON value printed with --json, and the readable text printed otherwise).

Names and columns follow mqadmin's (clusterList, topicList, topicRoute, topicStatus,
updateTopic, deleteTopic, brokerStatus, getBrokerConfig, consumerProgress, consumerConnection,
consumerStatus, resetOffsetByTime, queryMsgById, queryMsgByKey, queryMsgByOffset). Errors are
the `AsyncAdmin`'s; `shmq.clitools.common.cli_errors` prints them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from shmq.client.admin import DEFAULT_ADMIN_TIMEOUT_S, Admin, AsyncAdmin, TopicSpec
from shmq.client.errors import BrokerError, BrokerUnreachable, ConnectionLost, RequestTimeout
from shmq.client.received import ReceivedMessage
from shmq.protocol import MessageQueue, TopicRouteData

from .common import Output, format_ms, table
from .messages import message_json

__all__ = [
    "broker_config",
    "broker_status",
    "cluster_list",
    "consumer_connections",
    "consumer_progress",
    "consumer_reset_offset",
    "consumer_running_info",
    "message_by_id",
    "message_by_key",
    "message_by_offset",
    "perm_text",
    "run",
    "topic_create",
    "topic_delete",
    "topic_list",
    "topic_route",
    "topic_status",
    "topic_update",
]

_UNREACHABLE = (BrokerUnreachable, RequestTimeout, ConnectionLost, BrokerError)


def run(namesrv: str, command: Callable[[AsyncAdmin], Awaitable[Output]],
        timeout_s: float = DEFAULT_ADMIN_TIMEOUT_S) -> Output:
    """Run one admin command with a fresh client; the client is closed afterwards."""
    with Admin(namesrv, timeout_s=timeout_s) as admin:
        return admin.call(command)


def perm_text(perm: int) -> str:
    """"RW", "R-", "-W" (+ "X" when INHERIT is set, as on TBW102)."""
    text = ("R" if perm & 4 else "-") + ("W" if perm & 2 else "-")
    return text + ("X" if perm & 1 else "")


def _mq_key(mq: MessageQueue) -> tuple[str, str, int]:
    return mq.topic, mq.broker_name, mq.queue_id


# -- cluster and brokers ---------------------------------------------------------------------


async def cluster_list(admin: AsyncAdmin) -> Output:
    """Clusters, their brokers and each broker's version and store position."""
    info = await admin.cluster_info()
    rows, data = [], []
    for cluster, names in sorted(info.cluster_addr_table.items()):
        for name in sorted(names):
            broker = info.broker_addr_table.get(name)
            for broker_id, addr in sorted((broker.broker_addrs if broker else {}).items()):
                runtime = await _runtime_or_none(admin, addr)
                entry = {"cluster": cluster, "brokerName": name, "brokerId": broker_id,
                         "addr": addr, "reachable": runtime is not None,
                         "runtime": runtime or {}}
                data.append(entry)
                r = runtime or {}
                rows.append([cluster, name, broker_id, addr, r.get("brokerVersionDesc"),
                             r.get("msgStoredTotal"), r.get("commitLogMaxOffset"),
                             r.get("commitLogDiskRatio")])
    text = table(["#Cluster", "#Broker", "#BID", "#Addr", "#Version", "#Messages",
                  "#CommitLogMax", "#DiskRatio"], rows) if rows else "no broker is registered"
    return Output({"brokers": data}, text)


async def _runtime_or_none(admin: AsyncAdmin, addr: str) -> dict[str, str] | None:
    try:
        return await admin.broker_runtime_info(addr)
    except _UNREACHABLE:
        return None


async def broker_status(admin: AsyncAdmin, broker: str | None) -> Output:
    """GET_BROKER_RUNTIME_INFO of one broker (name or address) or of every master."""
    targets = await admin.broker_addrs(broker)
    data = {}
    for name, addr in targets.items():
        data[addr] = {"brokerName": name, **await admin.broker_runtime_info(addr)}
    return Output(data, _key_values(data))


async def broker_config(admin: AsyncAdmin, broker: str | None) -> Output:
    """GET_BROKER_CONFIG of one broker (name or address) or of every master."""
    targets = await admin.broker_addrs(broker)
    data = {addr: await admin.broker_config(addr) for addr in targets.values()}
    names = {addr: name for name, addr in targets.items()}
    return Output(data, _key_values({a: {"brokerName": names[a], **c} for a, c in data.items()}))


def _key_values(per_broker: dict[str, dict[str, str]]) -> str:
    parts = []
    for addr, values in per_broker.items():
        rows = [[key, value] for key, value in sorted(values.items())]
        parts.append(f"broker {values.get('brokerName', '?')} at {addr}\n"
                     + table(["#Key", "#Value"], rows))
    return "\n\n".join(parts)


# -- topics ----------------------------------------------------------------------------------


async def topic_list(admin: AsyncAdmin) -> Output:
    topics = await admin.topic_list()
    return Output({"topics": topics}, "\n".join(topics))


def _route_json(route: TopicRouteData) -> dict[str, Any]:
    return {
        "brokerDatas": [b.to_json() for b in route.broker_datas],
        "queueDatas": [q.to_json() for q in route.queue_datas],
        **({"orderTopicConf": route.order_topic_conf} if route.order_topic_conf else {}),
    }


async def topic_route(admin: AsyncAdmin, topic: str) -> Output:
    route = await admin.route(topic)
    brokers = table(["#Broker", "#Cluster", "#BID", "#Addr"], [
        [b.broker_name, b.cluster, broker_id, addr]
        for b in sorted(route.broker_datas, key=lambda b: b.broker_name)
        for broker_id, addr in sorted(b.broker_addrs.items())])
    queues = table(["#Broker", "#ReadQueues", "#WriteQueues", "#Perm"], [
        [q.broker_name, q.read_queue_nums, q.write_queue_nums, perm_text(q.perm)]
        for q in sorted(route.queue_datas, key=lambda q: q.broker_name)])
    order = f"\norder topic: {route.order_topic_conf}" if route.order_topic_conf else ""
    return Output(_route_json(route), f"{brokers}\n\n{queues}{order}")


async def topic_status(admin: AsyncAdmin, topic: str) -> Output:
    stats = await admin.topic_stats(topic)
    queues: list[dict[str, Any]] = []
    for mq, off in sorted(stats.offset_table.items(), key=lambda kv: _mq_key(kv[0])):
        queues.append({"brokerName": mq.broker_name, "queueId": mq.queue_id,
                       "minOffset": off.min_offset, "maxOffset": off.max_offset,
                       "lastUpdateTimestamp": off.last_update_timestamp})
    total = sum(q["maxOffset"] - q["minOffset"] for q in queues)
    text = table(["#Broker", "#QID", "#MinOffset", "#MaxOffset", "#LastUpdated"], [
        [q["brokerName"], q["queueId"], q["minOffset"], q["maxOffset"],
         format_ms(q["lastUpdateTimestamp"])] for q in queues])
    return Output({"topic": topic, "queues": queues, "messages": total},
                  f"{text}\n\n{total} messages stored in {len(queues)} queues")


async def topic_create(admin: AsyncAdmin, topic: str, spec: TopicSpec, broker: str | None,
                       cluster: str | None) -> Output:
    targets = await admin.create_topic(topic, spec, broker=broker, cluster=cluster)
    return _topic_changed("created", topic, targets, await admin.route(topic))


async def topic_update(admin: AsyncAdmin, topic: str, spec: TopicSpec) -> Output:
    targets = await admin.update_topic(topic, spec)
    return _topic_changed("updated", topic, targets, await admin.route(topic))


def _topic_changed(what: str, topic: str, targets: dict[str, str],
                   route: TopicRouteData) -> Output:
    lines = [f"{what} topic {topic} on {name} ({addr})" for name, addr in targets.items()]
    for q in sorted(route.queue_datas, key=lambda q: q.broker_name):
        lines.append(f"  {q.broker_name}: {q.read_queue_nums} read / {q.write_queue_nums} "
                     f"write queues, perm {perm_text(q.perm)}")
    data = {"topic": topic, what: targets, "route": _route_json(route)}
    return Output(data, "\n".join(lines))


async def topic_delete(admin: AsyncAdmin, topic: str) -> Output:
    targets = await admin.delete_topic(topic)
    text = "\n".join(f"deleted topic {topic} on {name} ({addr})" for name, addr in
                     targets.items()) + "\nand on the name servers"
    return Output({"topic": topic, "deleted": targets}, text)


# -- consumer groups -------------------------------------------------------------------------


async def consumer_progress(admin: AsyncAdmin, group: str, topic: str | None) -> Output:
    stats = await admin.consume_stats(group, topic)
    queues: list[dict[str, Any]] = []
    for mq, w in sorted(stats.offset_table.items(), key=lambda kv: _mq_key(kv[0])):
        queues.append({"topic": mq.topic, "brokerName": mq.broker_name, "queueId": mq.queue_id,
                       "brokerOffset": w.broker_offset, "consumerOffset": w.consumer_offset,
                       "lag": max(w.broker_offset - w.consumer_offset, 0),
                       "lastTimestamp": w.last_timestamp})
    total = sum(q["lag"] for q in queues)
    text = table(["#Topic", "#Broker", "#QID", "#BrokerOffset", "#ConsumerOffset", "#Lag",
                  "#LastConsumed"], [
        [q["topic"], q["brokerName"], q["queueId"], q["brokerOffset"], q["consumerOffset"],
         q["lag"], format_ms(q["lastTimestamp"])] for q in queues])
    data = {"group": group, "queues": queues, "totalLag": total,
            "consumeTps": stats.consume_tps}
    return Output(data, f"{text}\n\nConsume TPS: {stats.consume_tps:.2f}\nTotal lag: {total}")


async def consumer_connections(admin: AsyncAdmin, group: str) -> Output:
    addr, conn = await admin.consumer_connection(group)
    clients = [c.to_json() for c in conn.connection_set]
    subs = {t: s.sub_string for t, s in sorted(conn.subscription_table.items())}
    data: dict[str, Any] = {
        "group": group, "broker": addr, "connections": clients, "subscriptions": subs,
            "consumeType": _name(conn.consume_type), "messageModel": _name(conn.message_model),
            "consumeFromWhere": _name(conn.consume_from_where)}
    text = "\n\n".join([
        table(["#ClientId", "#ClientAddr", "#Language", "#Version"], [
            [c.client_id, c.client_addr, c.language, c.version] for c in conn.connection_set]),
        table(["#Topic", "#SubExpression"], list(subs.items())),
        (f"consume type: {data['consumeType']}\nmessage model: {data['messageModel']}\n"
         f"consume from: {data['consumeFromWhere']}")])
    return Output(data, text)


def _name(value: Any) -> str | None:
    return None if value is None else str(value.name)


async def consumer_running_info(admin: AsyncAdmin, group: str, client_id: str | None,
                                jstack: bool) -> Output:
    infos = await admin.consumer_running_info(group, client_id, jstack=jstack)
    data, parts = {}, []
    for cid, info in infos.items():
        queues: list[dict[str, Any]] = [
            {"topic": mq.topic, "brokerName": mq.broker_name, "queueId": mq.queue_id,
             **pq.to_json()}
                  for mq, pq in sorted(info.mq_table.items(), key=lambda kv: _mq_key(kv[0]))]
        data[cid] = {"properties": info.properties,
                     "subscriptions": {s.topic: s.sub_string for s in info.subscription_set},
                     "queues": queues,
                     "status": {t: s.to_json() for t, s in info.status_table.items()},
                     **({"jstack": info.jstack} if info.jstack else {})}
        props = table(["#Property", "#Value"], sorted(info.properties.items()))
        rows = [[q["topic"], q["brokerName"], q["queueId"], q["commitOffset"],
                 q["cachedMsgCount"], q["locked"], format_ms(q["lastPullTimestamp"]),
                 format_ms(q["lastConsumeTimestamp"])] for q in queues]
        mqs = table(["#Topic", "#Broker", "#QID", "#CommitOffset", "#Cached", "#Locked",
                     "#LastPull", "#LastConsume"], rows)
        subs = table(["#Topic", "#SubExpression"],
                     [[s.topic, s.sub_string] for s in info.subscription_set])
        parts.append(f"client {cid}\n\n{props}\n\n{subs}\n\n{mqs}"
                     + (f"\n\n{info.jstack}" if info.jstack else ""))
    return Output(data, "\n\n".join(parts))


async def consumer_reset_offset(admin: AsyncAdmin, group: str, topic: str, timestamp_ms: int,
                                force: bool) -> Output:
    table_ = await admin.reset_offset(group, topic, timestamp_ms, force=force)
    rows: list[dict[str, Any]] = [
        {"brokerName": mq.broker_name, "queueId": mq.queue_id, "offset": off}
            for mq, off in sorted(table_.items(), key=lambda kv: _mq_key(kv[0]))]
    when = ("the end of each queue" if timestamp_ms == -1
            else f"{format_ms(timestamp_ms)} ({timestamp_ms} ms)" if timestamp_ms > 0
            else f"{timestamp_ms} ms")
    text = (f"offsets of group {group} on {topic} reset to {when}"
            f"{'' if force else ' (only moved back)'}:\n"
            + table(["#Broker", "#QID", "#Offset"],
                    [[r["brokerName"], r["queueId"], r["offset"]] for r in rows]))
    return Output({"group": group, "topic": topic, "timestamp": timestamp_ms, "force": force,
                   "offsets": rows}, text)


# -- messages --------------------------------------------------------------------------------


def _messages(found: Sequence[ReceivedMessage]) -> Output:
    return Output([message_json(m) for m in found], "\n\n".join(_detail(m) for m in found))


def _detail(msg: ReceivedMessage) -> str:
    view = message_json(msg)
    user = dict(sorted(msg.properties.items()))
    rows: list[list[object]] = [
        ["Topic", msg.topic], ["Tags", msg.tags or "-"], ["Keys", " ".join(msg.keys) or "-"],
        ["Queue", f"{msg.broker_name} / {msg.queue_id}, offset {msg.queue_offset}"],
        ["Message id", msg.msg_id], ["Offset message id", msg.offset_msg_id],
        ["Commit-log offset", msg.commit_log_offset],
        ["Born", f"{format_ms(msg.born_timestamp_ms)} from {msg.born_host}"],
        ["Stored", f"{format_ms(msg.store_timestamp_ms)} at {msg.store_host}"],
        ["Reconsume times", msg.reconsume_times],
        ["Properties", ", ".join(f"{k}={v}" for k, v in user.items()) or "-"],
        [f"Body ({len(msg.body)} bytes, {view['bodyEncoding']})", view["body"]],
    ]
    width = max(len(str(r[0])) for r in rows) + 2
    return "\n".join(f"{(str(k) + ':').ljust(width)}{v}" for k, v in rows)


async def message_by_id(admin: AsyncAdmin, msg_id: str, topic: str | None) -> Output:
    return _messages(await admin.view_message(msg_id, topic))


async def message_by_key(admin: AsyncAdmin, topic: str, key: str, max_num: int) -> Output:
    return _messages(await admin.query_by_key(topic, key, max_num=max_num))


async def message_by_offset(admin: AsyncAdmin, topic: str, queue_id: int, offset: int,
                            broker_name: str | None) -> Output:
    return _messages([await admin.message_at(topic, queue_id, offset, broker_name)])
