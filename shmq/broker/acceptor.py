"""The acceptor process: the RocketMQ remoting protocol for remote clients (architecture.md §1).

Theory of operation
-------------------
`run_acceptor(ctx)` runs on one event loop until the supervisor asks it to stop:

1. Opens what the handlers need: the store read-only (`StoreReader`), the topic table and
   consumer offsets (files under ``data_dir/store/config``), the write channel to the writers
   (`WriteChannel`: a producer row with a ring pair per writer), the long-poll service.
2. Listens on `broker.port` (and, as Java, on the "VIP" port `broker.port - 2` when that is
   free; a failure there is only logged). A loopback `broker.host` binds 127.0.0.1, anything
   else 0.0.0.0. With port 0 the system picks one, and that port is what the broker
   advertises (routes, STOREHOST of the records it encodes, offset message ids).
3. Registers with every name server (`Registrar`) and calls `ctx.set_ready()` once one of them
   accepted — or, so that a broker whose name servers are down still starts, after
   `READY_WITHOUT_NAMESRV_S` of trying when the name server this `shmq start` forks is among
   the addresses (it is starting too), else after `READY_WITHOUT_REMOTE_NAMESRV_S`. It keeps
   trying every second until one accepts, then every 30 s.
4. Runs its timers: heartbeat to the supervisor, registration (30 s and on topic changes),
   offsets flush (5 s), client expiry (10 s), adoption of topics that same-host producers
   created (their consume queues exist but topics.json does not list them), and the
   delayed-message timer (`schedule.DelayScheduler`) when no other acceptor runs it.
5. On `should_stop()`: unregisters from the name servers (clients stop routing here), answers
   every held pull, lets in-flight sends finish (bounded), flushes offsets, closes the server
   and the channel. A fast stop (second signal) skips the waiting.

This package may not import `shmq.runtime`; the context and config are described by the
few attributes used (`_Context`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, Protocol

from shmq.ipc.wakeup import WaitPolicy
from shmq.protocol import RemotingCommand
from shmq.remoting import Connection, HandlerResult, RemotingClient, Server, serve
from shmq.store.config import StoreConfig

from .channel import WriteChannel
from .context import Broker, BrokerSettings
from .dispatch import BrokerDispatch
from .errors import IllegalTopic
from .longpoll import ClaimWatch, PullHolds
from .offsets import FLUSH_INTERVAL_S, ConsumerOffsets
from .reader import StoreReader
from .registrar import Registrar
from .schedule import DelayScheduler
from .topics import TopicTable, check_topic_name
from .transaction import TransactionChecker, TransactionSettings

__all__ = ["READY_WITHOUT_NAMESRV_S", "READY_WITHOUT_REMOTE_NAMESRV_S", "run_acceptor"]

log = logging.getLogger(__name__)

#: become ready after this long even if the local name server did not accept the registration
READY_WITHOUT_NAMESRV_S: Final = 10.0
#: the same when no name server of this `shmq start` is among the addresses
READY_WITHOUT_REMOTE_NAMESRV_S: Final = 1.0
_STOP_POLL_S: Final = 0.1
_HEARTBEAT_S: Final = 0.5
_EXPIRY_SCAN_S: Final = 10.0
_FIRST_REGISTER_RETRY_S: Final = 0.2
_DRAIN_SENDS_S: Final = 3.0
_VIP_PORT_OFFSET: Final = 2


class _Context(Protocol):
    @property
    def config(self) -> Any: ...
    def should_stop(self) -> bool: ...
    def is_fast_stop(self) -> bool: ...
    def heartbeat(self) -> None: ...
    def set_ready(self) -> None: ...


async def run_acceptor(ctx: _Context, root: Path, store_config: StoreConfig,
                       write_policy: WaitPolicy) -> None:
    """The acceptor role's main coroutine; see the module docstring.

    Raises:
        OSError: the port cannot be bound (the supervisor restarts the role).
        IpcError: the write channel cannot be attached.
    """
    acceptor = _Acceptor(ctx, root, store_config)
    try:
        await acceptor.start(write_policy)
        await acceptor.serve_until_stopped()
    finally:
        await acceptor.close()


class _Acceptor:
    """The pieces of one acceptor process and their life cycle."""

    def __init__(self, ctx: _Context, root: Path, store_config: StoreConfig) -> None:
        cfg = ctx.config
        self.ctx, self.cfg, self.root = ctx, cfg, root
        self.store_config = store_config
        self.reader = StoreReader(root, store_config)
        config_dir = root / "config"
        self.topics = TopicTable(config_dir, default_queues=cfg.broker.default_queues,
                                 auto_create=cfg.broker.auto_create_topic)
        self.offsets = ConsumerOffsets(config_dir)
        self.watch = ClaimWatch(root / "claims")
        self.client = RemotingClient()
        self.channel: WriteChannel | None = None
        self.servers: list[Server] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.dispatch: BrokerDispatch | None = None
        self.registrar: Registrar | None = None
        self.scheduler: DelayScheduler | None = None
        self.checker: TransactionChecker | None = None

    async def start(self, write_policy: WaitPolicy) -> None:
        cfg = self.cfg
        self.channel = WriteChannel.open(cfg.instance, ring_bytes=cfg.ring.bytes,
                                         policy=write_policy)
        holds = PullHolds(self.reader, gate=self.watch.changed)
        main = await serve(_bind_host(cfg.broker.host), cfg.broker.port, self._dispatch,
                           max_frame_bytes=cfg.broker.max_frame_bytes,
                           on_close=self._connection_closed)
        self.servers.append(main)
        settings = BrokerSettings(
            name=cfg.broker.name, cluster=cfg.broker.cluster, host=cfg.broker.host,
            port=main.port, auto_create_topic=cfg.broker.auto_create_topic,
            default_queues=cfg.broker.default_queues, max_body_bytes=cfg.broker.max_body_bytes,
            max_frame_bytes=cfg.broker.max_frame_bytes,
            reject_transaction=bool(cfg.transaction.reject))
        broker = Broker(settings, topics=self.topics, offsets=self.offsets, reader=self.reader,
                        appender=self.channel, holds=holds)
        self.dispatch = BrokerDispatch(broker)
        await self._serve_vip(settings)
        self.registrar = Registrar(self.client, cfg.namesrv.addresses, settings,
                                   self.topics.wrapper)
        self.topics.on_change.append(self.registrar.poke)
        self._adopt_store_topics()
        self._spawn(holds.run())
        self.scheduler = DelayScheduler(self.reader, self.channel, self.root / "config",
                                        store_host=broker.store_host)
        if self.scheduler.try_acquire():
            self._spawn(self.scheduler.run())
        else:
            log.info("another acceptor runs the delayed-message timer of this store")
        # Check-backs are requests to producers, on the connections they opened to us: only
        # this process has them (the housekeeper has no client connections).
        self.checker = TransactionChecker(broker, self.root / "config",
                                          _transaction_settings(cfg, self.store_config))
        if self.checker.try_acquire():
            self._spawn(self.checker.run())
        else:
            log.info("another acceptor runs the transaction check-back of this store")
        log.info("acceptor listening on %s (broker %s, cluster %s, %d writers)",
                 settings.address, settings.name, settings.cluster, self.channel.writers)

    def _dispatch(self, conn: Connection, request: RemotingCommand) -> HandlerResult:
        assert self.dispatch is not None  # set right after the server was made, before any await
        return self.dispatch.dispatcher(conn, request)

    def _connection_closed(self, conn: Connection) -> None:
        if self.dispatch is not None:
            self.dispatch.connection_closed(conn)

    async def _serve_vip(self, settings: BrokerSettings) -> None:
        port = self.cfg.broker.port - _VIP_PORT_OFFSET
        if self.cfg.broker.port == 0 or port <= 0 or port == self.cfg.namesrv.port:
            return
        try:
            vip = await serve(_bind_host(settings.host), port, self._dispatch,
                              max_frame_bytes=settings.max_frame_bytes,
                              on_close=self._connection_closed)
        except OSError as err:
            log.warning("VIP channel port %d not available (%s); serving %d only", port, err,
                        settings.port)
            return
        self.servers.append(vip)

    async def serve_until_stopped(self) -> None:
        assert self.registrar is not None and self.dispatch is not None
        registered = await self._first_registration()
        self.ctx.set_ready()
        self._spawn(self.registrar.run(registered=registered))
        self._spawn(self._every(FLUSH_INTERVAL_S, self._flush_offsets))
        self._spawn(self._every(_EXPIRY_SCAN_S, self.dispatch.broker.expire_clients))
        self._spawn(self._every(self.registrar.interval_s, self._adopt_store_topics))
        await self._wait_for_stop()
        await self._drain()

    async def _first_registration(self) -> bool:
        """Register until a name server accepts or the wait is over; True if one accepted."""
        assert self.registrar is not None
        loop = asyncio.get_running_loop()
        wait_s = READY_WITHOUT_NAMESRV_S if self._local_namesrv_expected() \
            else READY_WITHOUT_REMOTE_NAMESRV_S
        give_up = loop.time() + wait_s
        while not self.ctx.should_stop():
            if await self.registrar.register_all():
                return True
            self.ctx.heartbeat()
            if loop.time() >= give_up:
                log.warning("no name server of %s accepted the registration within %g s; "
                            "ready anyway, still trying", ", ".join(self.registrar.addresses),
                            wait_s)
                return False
            await asyncio.sleep(_FIRST_REGISTER_RETRY_S)
        return False

    def _local_namesrv_expected(self) -> bool:
        """Whether the name server this `shmq start` forks is one we register with."""
        namesrv = self.cfg.namesrv
        if not namesrv.enabled or not namesrv.port:
            return False
        return any(addr.rpartition(":")[2] == str(namesrv.port)
                   and _bind_host(addr.rpartition(":")[0]) == "127.0.0.1"
                   for addr in namesrv.addresses)

    async def _wait_for_stop(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = 0.0
        while not self.ctx.should_stop():
            if loop.time() >= next_beat:
                self.ctx.heartbeat()
                next_beat = loop.time() + _HEARTBEAT_S
            await asyncio.sleep(_STOP_POLL_S)

    async def _drain(self) -> None:
        assert self.registrar is not None and self.dispatch is not None
        broker = self.dispatch.broker
        broker.draining = True
        fast = self.ctx.is_fast_stop()
        log.info("acceptor draining: %d held pulls, %d sends in flight", broker.holds.held,
                 self.channel.in_flight if self.channel else 0)
        if not fast:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.registrar.unregister_all(), _DRAIN_SENDS_S)
        broker.holds.release_all()
        if self.channel is not None and not fast \
                and not await self.channel.drain(_DRAIN_SENDS_S):
            log.warning("%d sends still in flight after %g s", self.channel.in_flight,
                            _DRAIN_SENDS_S)
        await asyncio.sleep(0)  # let the released pulls write their answers
        self._flush_offsets()

    def _flush_offsets(self) -> None:
        try:
            self.offsets.flush()
        except OSError as err:
            log.error("cannot persist consumer offsets (will retry): %s", err)

    def _adopt_store_topics(self) -> None:
        """List topics whose consume queues exist (same-host producers) in topics.json."""
        counts: dict[str, int] = {}
        for topic, queue_id in self.reader.store.queues_on_disk():
            counts[topic] = max(counts.get(topic, 0), queue_id + 1)
        default = self.cfg.broker.default_queues
        for topic, queues in counts.items():
            if self.topics.get(topic) is None and _is_routable(topic):
                self.topics.ensure(topic, max(queues, default))

    async def _every(self, interval_s: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                action()
            except Exception:  # a timer must survive one failure; it is logged
                log.exception("periodic task %s failed", getattr(action, "__name__", action))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.scheduler is not None:
            try:
                self.scheduler.close()
            except OSError as err:
                log.error("cannot save delayOffset.json: %s", err)
        if self.checker is not None:
            self.checker.close()
        for server in self.servers:
            await server.aclose()
        await self.client.close()
        if self.channel is not None:
            self.channel.close()
        self.watch.close()
        self.reader.close()


def _transaction_settings(cfg: Any, store_config: StoreConfig) -> TransactionSettings:
    """The check-back's settings from the `[transaction]` section and the store's retention."""
    tx = cfg.transaction
    return TransactionSettings(check_interval_ms=tx.check_interval_ms, timeout_ms=tx.timeout_ms,
                               check_max=tx.check_max,
                               retention_ms=int(store_config.retention_hours * 3600 * 1000))


def _is_routable(topic: str) -> bool:
    try:
        check_topic_name(topic)
    except IllegalTopic:  # a local producer may use names RocketMQ clients cannot
        return False
    return True


def _bind_host(advertised_host: str) -> str:
    """127.0.0.1 for a loopback advertised address (reachable from this host only), else all
    interfaces."""
    if advertised_host == "localhost":
        return "127.0.0.1"
    try:
        return "127.0.0.1" if ipaddress.ip_address(advertised_host).is_loopback else "0.0.0.0"
    except ValueError:
        return "0.0.0.0"
