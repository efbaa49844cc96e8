"""Request handlers of the name server: one plain function per request code.

Theory of operation: each handler is `handler(ctx, conn, request) -> RemotingCommand`. It
decodes the typed header (a missing or malformed field raises `HeaderFieldError`, which the
remoting layer answers SYSTEM_ERROR, as Java does), asks the `RouteRegistry` in `ctx`, and
builds the response: bodies with `shmq.protocol.bodies` (standard JSON, numbers as numbers,
broker ids as quoted keys — spec/client-quirks.md "Routes"), extFields with the typed
response headers (every value a string). Nothing here blocks or does I/O; `build_dispatcher`
binds the handlers to a context and returns the `Dispatcher` the server runs. Codes not in
`HANDLERS` are answered REQUEST_CODE_NOT_SUPPORTED by the dispatcher.

Codes (spec/request-codes.md §2, §5, §8): 100/101/102 KV config, 103 REGISTER_BROKER,
104 UNREGISTER_BROKER, 105 GET_ROUTEINFO_BY_TOPIC, 106 GET_BROKER_CLUSTER_INFO,
205/327 WIPE/ADD_WRITE_PERM_OF_BROKER, 206 GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
216 DELETE_TOPIC_IN_NAMESRV, 219 GET_KVLIST_BY_NAMESPACE, 224 GET_TOPICS_BY_CLUSTER,
304 GET_SYSTEM_TOPIC_LIST_FROM_NS, 322 QUERY_DATA_VERSION.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from shmq.message.crc import body_crc
from shmq.protocol import (
    AddWritePermOfBrokerRequestHeader,
    AddWritePermOfBrokerResponseHeader,
    BodyFormatError,
    DataVersion,
    DeleteTopicFromNamesrvRequestHeader,
    GetKVConfigRequestHeader,
    GetKVConfigResponseHeader,
    GetKVListByNamespaceRequestHeader,
    GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader,
    MQVersion,
    PutKVConfigRequestHeader,
    QueryDataVersionRequestHeader,
    QueryDataVersionResponseHeader,
    RegisterBrokerBody,
    RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicConfigSerializeWrapper,
    UnregisterBrokerRequestHeader,
    WipeWritePermOfBrokerRequestHeader,
    WipeWritePermOfBrokerResponseHeader,
    loads_fastjson,
    make_response,
)
from shmq.protocol.body_json import encode_json
from shmq.remoting import Connection, Dispatcher, RequestHandler

from .registry import RouteRegistry

__all__ = [
    "FAQ_SUFFIX",
    "HANDLERS",
    "NamesrvContext",
    "NamesrvHandler",
    "build_dispatcher",
    "topic_not_exist_remark",
]

log = logging.getLogger(__name__)

#: what Java appends to the TOPIC_NOT_EXIST remark (FAQUrl.suggestTodo(APPLY_TOPIC_URL))
FAQ_SUFFIX: Final = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."


@dataclass(frozen=True, slots=True)
class NamesrvContext:
    """What the handlers share: the registry and the clock its liveness runs on."""

    registry: RouteRegistry
    clock: Callable[[], float]  #: monotonic seconds


NamesrvHandler: TypeAlias = Callable[[NamesrvContext, Connection, RemotingCommand],
                                     RemotingCommand]


def topic_not_exist_remark(topic: str) -> str:
    """Java's remark for a topic without a route."""
    return f"No topic route info in name server for the topic: {topic}{FAQ_SUFFIX}"


# -- brokers ---------------------------------------------------------------------------------------


def register_broker(ctx: NamesrvContext, conn: Connection,
                    request: RemotingCommand) -> RemotingCommand:
    """103 REGISTER_BROKER: record the broker and its topics; answer the master's addresses."""
    header = RegisterBrokerRequestHeader.from_ext_fields(request.ext_fields)
    body = request.body
    if header.body_crc32 != 0 and body_crc(body or b"") != header.body_crc32:
        log.warning("REGISTER_BROKER from %s (%s): body crc32 %d does not match the header's "
                    "%d; refused", header.broker_addr, conn.remote_address,
                    body_crc(body or b""), header.body_crc32)
        return make_response(request, ResponseCode.SYSTEM_ERROR, remark="crc32 not match")
    result = ctx.registry.register_broker(
        header, _registration_body(request, header), now_s=ctx.clock(), channel=conn)
    if result.is_new_address:
        log.info("broker registered: cluster %s, %s id %d at %s (HA %s)", header.cluster_name,
                 header.broker_name, header.broker_id, header.broker_addr,
                 header.ha_server_addr)
    if result.topics_updated:
        log.info("topic queue data of %s updated from its registration", header.broker_name)
    ext_fields = RegisterBrokerResponseHeader(
        ha_server_addr=result.ha_server_addr, master_addr=result.master_addr).to_ext_fields()
    kv = result.order_topic_config
    return make_response(request, ResponseCode.SUCCESS, ext_fields=ext_fields,
                         body=kv.encode() if kv is not None else None)


def _registration_body(request: RemotingCommand,
                       header: RegisterBrokerRequestHeader) -> RegisterBrokerBody:
    """The body as Java reads it: none means an empty table with DataVersion 0/0; brokers
    older than V3_0_11 send the topic table wrapper alone."""
    if not request.body:
        return RegisterBrokerBody(TopicConfigSerializeWrapper({}, DataVersion(0, 0)))
    if request.version < MQVersion.V3_0_11:
        where = "TopicConfigSerializeWrapper"
        return RegisterBrokerBody(TopicConfigSerializeWrapper.from_json(
            loads_fastjson(request.body, where), where))
    return RegisterBrokerBody.decode(request.body, header.compressed)


def unregister_broker(ctx: NamesrvContext, conn: Connection,
                      request: RemotingCommand) -> RemotingCommand:
    """104 UNREGISTER_BROKER: forget one broker address (sent at broker shutdown)."""
    header = UnregisterBrokerRequestHeader.from_ext_fields(request.ext_fields)
    if ctx.registry.unregister_broker(header.broker_addr, header.broker_name, header.broker_id):
        log.info("broker unregistered: %s id %d at %s", header.broker_name, header.broker_id,
                 header.broker_addr)
    return make_response(request, ResponseCode.SUCCESS)


def query_data_version(ctx: NamesrvContext, conn: Connection,
                       request: RemotingCommand) -> RemotingCommand:
    """322 QUERY_DATA_VERSION: has the broker's topic table changed since it registered?"""
    header = QueryDataVersionRequestHeader.from_ext_fields(request.ext_fields)
    if not request.body:
        raise BodyFormatError("DataVersion", "QUERY_DATA_VERSION needs the broker's DataVersion")
    version = DataVersion.from_json(loads_fastjson(request.body, "DataVersion"), "DataVersion")
    changed, ours = ctx.registry.query_data_version(header.broker_addr, version,
                                                    now_s=ctx.clock())
    return make_response(
        request, ResponseCode.SUCCESS,
        ext_fields=QueryDataVersionResponseHeader(changed=changed).to_ext_fields(),
        body=encode_json(ours.to_json()) if ours is not None else None)


def wipe_write_perm_of_broker(ctx: NamesrvContext, conn: Connection,
                              request: RemotingCommand) -> RemotingCommand:
    """205 WIPE_WRITE_PERM_OF_BROKER: no more writes to the broker's topics (mqadmin)."""
    header = WipeWritePermOfBrokerRequestHeader.from_ext_fields(request.ext_fields)
    count = ctx.registry.wipe_write_perm_of_broker(header.broker_name)
    log.info("write permission wiped from %d topics of %s", count, header.broker_name)
    return make_response(
        request, ResponseCode.SUCCESS,
        ext_fields=WipeWritePermOfBrokerResponseHeader(wipe_topic_count=count).to_ext_fields())


def add_write_perm_of_broker(ctx: NamesrvContext, conn: Connection,
                             request: RemotingCommand) -> RemotingCommand:
    """327 ADD_WRITE_PERM_OF_BROKER: writes to the broker's topics allowed again (mqadmin)."""
    header = AddWritePermOfBrokerRequestHeader.from_ext_fields(request.ext_fields)
    count = ctx.registry.add_write_perm_of_broker(header.broker_name)
    log.info("write permission added to %d topics of %s", count, header.broker_name)
    return make_response(
        request, ResponseCode.SUCCESS,
        ext_fields=AddWritePermOfBrokerResponseHeader(add_topic_count=count).to_ext_fields())


# -- routes and listings ------------------------------------------------------------------------------


def get_route_info_by_topic(ctx: NamesrvContext, conn: Connection,
                            request: RemotingCommand) -> RemotingCommand:
    """105 GET_ROUTEINFO_BY_TOPIC: the topic's TopicRouteData, or TOPIC_NOT_EXIST (17).

    Always standard JSON (quoted broker ids): every client reads it, whatever its version.
    """
    header = GetRouteInfoRequestHeader.from_ext_fields(request.ext_fields)
    route = ctx.registry.pick_topic_route_data(header.topic)
    if route is None:
        return make_response(request, ResponseCode.TOPIC_NOT_EXIST,
                             remark=topic_not_exist_remark(header.topic))
    return make_response(request, ResponseCode.SUCCESS, body=route.encode())


def get_broker_cluster_info(ctx: NamesrvContext, conn: Connection,
                            request: RemotingCommand) -> RemotingCommand:
    """106 GET_BROKER_CLUSTER_INFO: every broker and cluster (mqadmin clusterList)."""
    return make_response(request, ResponseCode.SUCCESS,
                         body=ctx.registry.get_all_cluster_info().encode())


def get_all_topic_list(ctx: NamesrvContext, conn: Connection,
                       request: RemotingCommand) -> RemotingCommand:
    """206 GET_ALL_TOPIC_LIST_FROM_NAMESERVER."""
    return make_response(request, ResponseCode.SUCCESS,
                         body=ctx.registry.get_all_topic_list().encode())


def get_topics_by_cluster(ctx: NamesrvContext, conn: Connection,
                          request: RemotingCommand) -> RemotingCommand:
    """224 GET_TOPICS_BY_CLUSTER."""
    header = GetTopicsByClusterRequestHeader.from_ext_fields(request.ext_fields)
    return make_response(request, ResponseCode.SUCCESS,
                         body=ctx.registry.get_topics_by_cluster(header.cluster).encode())


def get_system_topic_list(ctx: NamesrvContext, conn: Connection,
                          request: RemotingCommand) -> RemotingCommand:
    """304 GET_SYSTEM_TOPIC_LIST_FROM_NS: cluster and broker names, plus one broker address."""
    return make_response(request, ResponseCode.SUCCESS,
                         body=ctx.registry.get_system_topic_list().encode())


def delete_topic_in_namesrv(ctx: NamesrvContext, conn: Connection,
                            request: RemotingCommand) -> RemotingCommand:
    """216 DELETE_TOPIC_IN_NAMESRV: drop the topic's routes (everywhere, or in one cluster)."""
    header = DeleteTopicFromNamesrvRequestHeader.from_ext_fields(request.ext_fields)
    if ctx.registry.delete_topic(header.topic, header.cluster_name):
        log.info("topic %s deleted (cluster %s)", header.topic, header.cluster_name or "all")
    return make_response(request, ResponseCode.SUCCESS)


# -- KV config ---------------------------------------------------------------------------------------


def put_kv_config(ctx: NamesrvContext, conn: Connection,
                  request: RemotingCommand) -> RemotingCommand:
    """100 PUT_KV_CONFIG."""
    header = PutKVConfigRequestHeader.from_ext_fields(request.ext_fields)
    ctx.registry.put_kv_config(header.namespace, header.key, header.value)
    log.info("KV config %s/%s set", header.namespace, header.key)
    return make_response(request, ResponseCode.SUCCESS)


def get_kv_config(ctx: NamesrvContext, conn: Connection,
                  request: RemotingCommand) -> RemotingCommand:
    """101 GET_KV_CONFIG: ext `value`, or QUERY_NOT_FOUND (22)."""
    header = GetKVConfigRequestHeader.from_ext_fields(request.ext_fields)
    value = ctx.registry.get_kv_config(header.namespace, header.key)
    if value is None:
        return make_response(request, ResponseCode.QUERY_NOT_FOUND,
                             remark=f"No config item, Namespace: {header.namespace} "
                                    f"Key: {header.key}")
    return make_response(request, ResponseCode.SUCCESS,
                         ext_fields=GetKVConfigResponseHeader(value=value).to_ext_fields())


def delete_kv_config(ctx: NamesrvContext, conn: Connection,
                     request: RemotingCommand) -> RemotingCommand:
    """102 DELETE_KV_CONFIG (SUCCESS whether or not the key existed, as in Java)."""
    header = GetKVConfigRequestHeader.from_ext_fields(request.ext_fields)
    if ctx.registry.delete_kv_config(header.namespace, header.key):
        log.info("KV config %s/%s deleted", header.namespace, header.key)
    return make_response(request, ResponseCode.SUCCESS)


def get_kvlist_by_namespace(ctx: NamesrvContext, conn: Connection,
                            request: RemotingCommand) -> RemotingCommand:
    """219 GET_KVLIST_BY_NAMESPACE: a KVTable body, or QUERY_NOT_FOUND (22)."""
    header = GetKVListByNamespaceRequestHeader.from_ext_fields(request.ext_fields)
    table = ctx.registry.get_kv_list_by_namespace(header.namespace)
    if table is None:
        return make_response(request, ResponseCode.QUERY_NOT_FOUND,
                             remark=f"No config item, Namespace: {header.namespace}")
    return make_response(request, ResponseCode.SUCCESS, body=table.encode())


#: the name server's dispatch table
HANDLERS: Final[Mapping[int, NamesrvHandler]] = {
    RequestCode.PUT_KV_CONFIG: put_kv_config,
    RequestCode.GET_KV_CONFIG: get_kv_config,
    RequestCode.DELETE_KV_CONFIG: delete_kv_config,
    RequestCode.REGISTER_BROKER: register_broker,
    RequestCode.UNREGISTER_BROKER: unregister_broker,
    RequestCode.GET_ROUTEINFO_BY_TOPIC: get_route_info_by_topic,
    RequestCode.GET_BROKER_CLUSTER_INFO: get_broker_cluster_info,
    RequestCode.WIPE_WRITE_PERM_OF_BROKER: wipe_write_perm_of_broker,
    RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: get_all_topic_list,
    RequestCode.DELETE_TOPIC_IN_NAMESRV: delete_topic_in_namesrv,
    RequestCode.GET_KVLIST_BY_NAMESPACE: get_kvlist_by_namespace,
    RequestCode.GET_TOPICS_BY_CLUSTER: get_topics_by_cluster,
    RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS: get_system_topic_list,
    RequestCode.QUERY_DATA_VERSION: query_data_version,
    RequestCode.ADD_WRITE_PERM_OF_BROKER: add_write_perm_of_broker,
}


def build_dispatcher(ctx: NamesrvContext) -> Dispatcher:
    """A `Dispatcher` running `HANDLERS` against `ctx`."""
    bound: dict[int, RequestHandler] = {
        code: functools.partial(handler, ctx) for code, handler in HANDLERS.items()}
    return Dispatcher(bound, name="namesrv")
