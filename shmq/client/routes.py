"""Topic routes for remote clients: name-server discovery, a route cache, publish and subscribe
queue lists (spec/behaviours.md §1, §2; request-codes.md §2, §9.1).

Theory of operation
-------------------
A client knows one or more name servers ("host:port;host:port", as the Java client's
`namesrvAddr`). Name servers do not talk to each other; each knows every broker. `RouteTable`
asks the one it used last (the first pick is random, so clients spread) and, when it does not
answer, the next one, until each was tried once (`NameServerUnavailable`). A TOPIC_NOT_EXIST
answer is authoritative: no other name server is asked.

The table caches one `TopicRoute` per topic: the name server's `TopicRouteData` plus the queue
lists derived from it (pure functions below):

* publish queues: for each writable QueueData whose broker name has a master (id 0), queues
  0..writeQueueNums-1; or, for an order topic, the `orderTopicConf` list;
* subscribe queues: for each readable QueueData, queues 0..readQueueNums-1 (a slave-only broker
  name still serves reads).

Queues are sorted by (topic, broker name, queue id), the order every client sorts in before
rebalancing. Broker addresses (broker name -> id -> address) are merged from every route seen.

Auto-created topics: a producer asking for the route of a topic the name servers do not know
falls back to the route of `TBW102` (`create_topic_key`), with each broker's queue counts capped
at `default_topic_queue_nums` (4), as the Java and C++ producers do. Sends then carry
`defaultTopic=TBW102`, the broker creates the topic, registers it at once, and the next refresh
replaces the borrowed route with the real one. Consumers never borrow routes.

Refresh: `refresh_watched` fetches every watched topic (the client instance calls it every
30 s, like Java's `pollNameServerInterval`) and tells listeners about routes that changed;
`refresh(topic)` fetches one at once (a producer does after a send error). A failed fetch
keeps the cached route, as Java does.

Everything runs on the owning event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from shmq.protocol import (
    BodyFormatError,
    GetRouteInfoRequestHeader,
    MessageQueue,
    QueueData,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRouteData,
    make_request,
)
from shmq.remoting import RemotingClient, RemotingError

from .errors import NameServerUnavailable, NoRouteInfo, error_for_response

__all__ = [
    "DEFAULT_NAMESRV",
    "DEFAULT_TOPIC_QUEUE_NUMS",
    "MASTER_ID",
    "PERM_READ",
    "PERM_WRITE",
    "TBW102",
    "RouteListener",
    "RouteTable",
    "TopicRoute",
    "default_topic_route",
    "normalize_route",
    "parse_namesrv_addrs",
    "publish_queues",
    "sort_queues",
    "subscribe_queues",
]

log = logging.getLogger(__name__)

#: where clients look for a name server unless told otherwise
DEFAULT_NAMESRV: Final = "127.0.0.1:9876"
#: AUTO_CREATE_TOPIC_KEY_TOPIC: the template topic of auto-created topics (behaviours.md §2)
TBW102: Final = "TBW102"
#: queues asked for when a topic is auto-created (Java/C++ `defaultTopicQueueNums`)
DEFAULT_TOPIC_QUEUE_NUMS: Final = 4
#: broker id of a master (spec §9.1)
MASTER_ID: Final = 0
#: QueueData perm bits (spec §9.1)
PERM_READ: Final = 4
PERM_WRITE: Final = 2

#: called with (topic, new route) when a watched topic's route changed
RouteListener = Callable[[str, "TopicRoute"], None]


def parse_namesrv_addrs(namesrv: str | Iterable[str]) -> tuple[str, ...]:
    """Name-server addresses from "a:9876;b:9876" (Java's form; "," works too) or a list.

    Raises:
        ValueError: no address given.
    """
    items = namesrv.replace(",", ";").split(";") if isinstance(namesrv, str) else list(namesrv)
    addrs = tuple(dict.fromkeys(a.strip() for a in items if a.strip()))
    if not addrs:
        raise ValueError(f"no name-server address in {namesrv!r}")
    return addrs


def sort_queues(queues: Iterable[MessageQueue]) -> tuple[MessageQueue, ...]:
    """Queues in Java's `MessageQueue.compareTo` order: topic, broker name, queue id."""
    return tuple(sorted(queues, key=lambda q: (q.topic, q.broker_name, q.queue_id)))


def normalize_route(route: TopicRouteData) -> TopicRouteData:
    """`route` with queue and broker data sorted by broker name (so equal routes compare equal)."""
    return replace(route,
                   queue_datas=tuple(sorted(route.queue_datas, key=lambda q: q.broker_name)),
                   broker_datas=tuple(sorted(route.broker_datas, key=lambda b: b.broker_name)))


def _order_conf_queues(topic: str, conf: str) -> tuple[MessageQueue, ...]:
    """Queues of an `orderTopicConf` ("broker-a:4;broker-b:4"), Java `topicRouteData2TopicPublishInfo`."""
    queues = []
    for item in conf.split(";"):
        name, sep, count = item.strip().partition(":")
        if sep and count.strip().isdigit():
            queues += [MessageQueue(topic, name, i) for i in range(int(count))]
    return sort_queues(queues)


def publish_queues(topic: str, route: TopicRouteData) -> tuple[MessageQueue, ...]:
    """The queues a producer may write to (spec §9.1): writable entries of brokers with a master."""
    if route.order_topic_conf:
        return _order_conf_queues(topic, route.order_topic_conf)
    masters = {b.broker_name for b in route.broker_datas if MASTER_ID in b.broker_addrs}
    return sort_queues(
        MessageQueue(topic, qd.broker_name, i)
        for qd in route.queue_datas
        if qd.perm & PERM_WRITE and qd.broker_name in masters
        for i in range(qd.write_queue_nums))


def subscribe_queues(topic: str, route: TopicRouteData) -> tuple[MessageQueue, ...]:
    """The queues a consumer reads (spec §9.1): readable entries, masters or not."""
    return sort_queues(
        MessageQueue(topic, qd.broker_name, i)
        for qd in route.queue_datas
        if qd.perm & PERM_READ
        for i in range(qd.read_queue_nums))


def default_topic_route(template: TopicRouteData, queue_nums: int) -> TopicRouteData:
    """A route for a not-yet-created topic borrowed from TBW102's: every broker's read and write
    queue counts become `min(queue_nums, readQueueNums)` (Java `getDefaultTopicRouteInfoFromNameServer`
    users; C++ `tryToFindTopicPublishInfo`)."""
    def capped(qd: QueueData) -> QueueData:
        nums = min(queue_nums, qd.read_queue_nums)
        return replace(qd, read_queue_nums=nums, write_queue_nums=nums)

    return replace(template, queue_datas=tuple(capped(qd) for qd in template.queue_datas))


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """A cached route and the queue lists derived from it."""

    topic: str
    data: TopicRouteData
    #: borrowed from TBW102's route: the topic does not exist yet
    from_default_topic: bool = False
    publish_queues: tuple[MessageQueue, ...] = field(default=())
    subscribe_queues: tuple[MessageQueue, ...] = field(default=())

    @classmethod
    def of(cls, topic: str, data: TopicRouteData, *, from_default_topic: bool = False,
           ) -> TopicRoute:
        """Derive the queue lists of `data` for `topic`."""
        data = normalize_route(data)
        subscribe = () if from_default_topic else subscribe_queues(topic, data)
        return cls(topic, data, from_default_topic, publish_queues(topic, data), subscribe)


class RouteTable:
    """Routes from the name servers, cached; see the module docstring."""

    def __init__(
        self,
        remoting: RemotingClient,
        namesrv: str | Iterable[str],
        *,
        timeout_s: float = 3.0,
        create_topic_key: str = TBW102,
        default_topic_queue_nums: int = DEFAULT_TOPIC_QUEUE_NUMS,
        rng: random.Random | None = None,
    ) -> None:
        """Create an empty table.

        Args:
            remoting: the connections to use (shared with the rest of the client).
            namesrv: name-server addresses, "a:9876;b:9876" or a list.
            timeout_s: how long one name server may take to answer.
            create_topic_key: template topic of auto-created topics.
            default_topic_queue_nums: queue count asked for on auto-create.
            rng: picks the first name server (tests pass a seeded one).

        Raises:
            ValueError: no name-server address.
        """
        self._remoting = remoting
        self.namesrv_addrs = parse_namesrv_addrs(namesrv)
        self._current = (rng or random).randrange(len(self.namesrv_addrs))
        self.timeout_s = timeout_s
        self.create_topic_key = create_topic_key
        self.default_topic_queue_nums = default_topic_queue_nums
        self._routes: dict[str, TopicRoute] = {}
        self._brokers: dict[str, dict[int, str]] = {}
        self._watched: dict[str, int] = {}
        self._listeners: list[RouteListener] = []
        self.fetched_at: dict[str, float] = {}

    # -- name servers --------------------------------------------------------------------------
    @property
    def current_namesrv(self) -> str:
        """The name server asked first."""
        return self.namesrv_addrs[self._current]

    async def fetch(self, topic: str) -> TopicRouteData | None:
        """Ask the name servers for `topic`'s route; None when it has none (TOPIC_NOT_EXIST).

        Raises:
            NameServerUnavailable: no name server answered.
            BrokerError: a name server answered an unexpected error code.
        """
        request = make_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, 0,
                               GetRouteInfoRequestHeader(topic, True).to_ext_fields())
        addr, response = await self._ask_namesrv(request)
        if response.code == ResponseCode.TOPIC_NOT_EXIST:
            return None
        if response.code != ResponseCode.SUCCESS:
            raise error_for_response(response, addr, request.code)
        try:
            return TopicRouteData.decode(response.body or b"")
        except BodyFormatError as err:
            raise NameServerUnavailable((addr,), f"unreadable route of {topic!r}: {err}") from err

    async def _ask_namesrv(self, request: RemotingCommand) -> tuple[str, RemotingCommand]:
        """Send `request` to the current name server, failing over to the others once each."""
        reasons = []
        n = len(self.namesrv_addrs)
        for step in range(n):
            index = (self._current + step) % n
            addr = self.namesrv_addrs[index]
            try:
                response = await self._remoting.invoke(addr, request, self.timeout_s)
            except RemotingError as err:
                reasons.append(str(err))
                log.warning("name server %s did not answer: %s", addr, err)
                continue
            self._current = index
            return addr, response
        raise NameServerUnavailable(self.namesrv_addrs, "; ".join(reasons))

    # -- the cache -----------------------------------------------------------------------------
    def cached(self, topic: str) -> TopicRoute | None:
        """The cached route of `topic`, if any (no I/O)."""
        return self._routes.get(topic)

    async def route(self, topic: str, *, refresh: bool = False) -> TopicRoute | None:
        """`topic`'s own route (never one borrowed from TBW102), from the cache unless
        `refresh` or not cached; None if it has none.

        Raises:
            NameServerUnavailable: not cached and no name server answered.
        """
        cached = self._routes.get(topic)
        if cached is not None and cached.from_default_topic:
            cached = None
        if cached is not None and not refresh:
            return cached
        try:
            route = await self.refresh(topic)
        except NameServerUnavailable:
            if cached is None:
                raise
            return cached
        return None if route is None or route.from_default_topic else route

    async def refresh(self, topic: str) -> TopicRoute | None:
        """Fetch `topic`'s route now and cache it; a missing route keeps the cached one.

        Returns:
            The route now cached (None: none known).

        Raises:
            NameServerUnavailable: no name server answered; the cache is unchanged.
        """
        data = await self.fetch(topic)
        self.fetched_at[topic] = time.monotonic()
        if data is None:
            return self._routes.get(topic)
        return self._store(TopicRoute.of(topic, data))

    async def publish_route(self, topic: str, *, refresh: bool = False) -> TopicRoute:
        """The route a producer writes `topic` with, borrowing TBW102's when it has none.

        Raises:
            NoRouteInfo: neither `topic` nor TBW102 has a writable queue.
            NameServerUnavailable: nothing cached and no name server answered.
        """
        cached = self._routes.get(topic)
        if cached is not None and cached.publish_queues and not refresh:
            return cached  # its own, or borrowed: Java sends on either without asking again
        route = await self.route(topic, refresh=True)
        if route is not None:
            if not route.publish_queues:  # Java: a known topic never borrows TBW102's route
                raise NoRouteInfo(topic, "no writable queue on a broker name with a master")
            return route
        template = await self.fetch(self.create_topic_key)
        if template is None:
            raise NoRouteInfo(topic, f"the name servers ({', '.join(self.namesrv_addrs)}) know "
                              f"neither it nor {self.create_topic_key}; create the topic first")
        borrowed = TopicRoute.of(topic, default_topic_route(template, self.default_topic_queue_nums),
                                 from_default_topic=True)
        if not borrowed.publish_queues:
            raise NoRouteInfo(topic, f"{self.create_topic_key} has no writable master queue")
        return self._store(borrowed)

    def _store(self, route: TopicRoute) -> TopicRoute:
        old = self._routes.get(route.topic)
        self._routes[route.topic] = route
        for broker in route.data.broker_datas:
            self._brokers[broker.broker_name] = dict(broker.broker_addrs)
        if old is not None and old.data != route.data:
            log.info("route of %s changed: %s", route.topic, route.data)
        if old is None or (old.data, old.from_default_topic) != (route.data,
                                                                 route.from_default_topic):
            for listener in list(self._listeners):
                listener(route.topic, route)
        return route

    def invalidate(self, topic: str) -> None:
        """Forget `topic`'s cached route (the next `route` call fetches it)."""
        self._routes.pop(topic, None)

    # -- periodic refresh ----------------------------------------------------------------------
    def watch(self, topic: str) -> None:
        """Keep `topic`'s route fresh in `refresh_watched` (counted: one `unwatch` per `watch`)."""
        self._watched[topic] = self._watched.get(topic, 0) + 1

    def unwatch(self, topic: str) -> None:
        """Undo one `watch`."""
        left = self._watched.get(topic, 0) - 1
        if left > 0:
            self._watched[topic] = left
        else:
            self._watched.pop(topic, None)

    @property
    def watched(self) -> tuple[str, ...]:
        """Topics refreshed by `refresh_watched`."""
        return tuple(self._watched)

    def add_listener(self, listener: RouteListener) -> None:
        """Call `listener(topic, route)` whenever a cached route is new or changed."""
        self._listeners.append(listener)

    def remove_listener(self, listener: RouteListener) -> None:
        """Stop calling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def refresh_watched(self) -> None:
        """Fetch every watched topic's route (failures are logged; the cache keeps the old)."""
        for topic in self.watched:
            try:
                route = self._routes.get(topic)
                if route is not None and route.from_default_topic:
                    await self.publish_route(topic, refresh=True)
                else:
                    await self.refresh(topic)
            except NameServerUnavailable as err:
                log.warning("route of %s not refreshed: %s", topic, err)
                return

    # -- broker addresses ----------------------------------------------------------------------
    def master_addr(self, broker_name: str) -> str | None:
        """Address of `broker_name`'s master, if one is known."""
        return self._brokers.get(broker_name, {}).get(MASTER_ID)

    def broker_addr(self, broker_name: str, broker_id: int = MASTER_ID) -> str | None:
        """Address of member `broker_id` of `broker_name`, else of its master, else of any
        member (the rule for pulls and offset traffic, behaviours.md §13.1)."""
        addrs = self._brokers.get(broker_name, {})
        addr = addrs.get(broker_id) or addrs.get(MASTER_ID)
        if addr is None and addrs:
            addr = addrs[min(addrs)]
        return addr

    def broker_addrs(self, *, masters_only: bool = False) -> tuple[str, ...]:
        """Every known broker address (only masters if `masters_only`), sorted."""
        return tuple(sorted({
            addr for addrs in self._brokers.values() for broker_id, addr in addrs.items()
            if not masters_only or broker_id == MASTER_ID}))

    def broker_names(self, topic: str) -> tuple[str, ...]:
        """Broker names serving the cached route of `topic`."""
        route = self._routes.get(topic)
        return tuple(b.broker_name for b in route.data.broker_datas) if route else ()

