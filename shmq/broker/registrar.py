"""Registration with the name servers: REGISTER_BROKER and UNREGISTER_BROKER
(spec/request-codes.md §5; behaviours.md §1).

Theory of operation: `Registrar.register_all()` sends REGISTER_BROKER — header with the broker's
name, address (``host:port``), cluster, HA address (``host:port+1``) and id, body the topic
table with its DataVersion (`RegisterBrokerBody`, JSON, with its CRC in ``bodyCrc32``) — to
every configured name server at once, and reports how many accepted it. `run()` does that every
`interval_s` (Java: 30 s) and right after `poke()` (the topic table changed), so a topic created
by a send is routable at once. A name server that is down is logged (once per state change)
and tried again at the next round; name servers expire a broker silent for 120 s, so a missed
round or two is harmless. `unregister_all()` is sent at shutdown so clients stop routing here
before the acceptor stops answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

from shmq.message.crc import body_crc
from shmq.protocol import (
    RegisterBrokerBody,
    RegisterBrokerRequestHeader,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicConfigSerializeWrapper,
    UnregisterBrokerRequestHeader,
    make_request,
)
from shmq.remoting import RemotingClient, RemotingError

from .context import BrokerSettings

__all__ = ["REGISTER_INTERVAL_S", "RETRY_S", "Registrar"]

log = logging.getLogger(__name__)

#: registerNameServerPeriod
REGISTER_INTERVAL_S: Final = 30.0
#: how often to try while no name server has accepted us yet
RETRY_S: Final = 1.0
_TIMEOUT_S: Final = 3.0


class Registrar:
    """Keeps this broker registered with every name server; see the module docstring.

    Args:
        client: the connections to use (shared with nothing that closes them early).
        addresses: the name servers, "host:port".
        settings: who we are.
        topics: returns the topic table to register (called for every round).
    """

    def __init__(self, client: RemotingClient, addresses: Sequence[str],
                 settings: BrokerSettings,
                 topics: Callable[[], TopicConfigSerializeWrapper], *,
                 interval_s: float = REGISTER_INTERVAL_S) -> None:
        self._client = client
        self.addresses = tuple(addresses)
        self._settings = settings
        self._topics = topics
        self.interval_s = interval_s
        self._poked = asyncio.Event()
        self._failing: set[str] = set()
        self.registrations = 0  #: successful REGISTER_BROKER answers so far

    def poke(self) -> None:
        """Register again soon (the topic table changed)."""
        self._poked.set()

    async def register_all(self) -> int:
        """Register with every name server now; return how many accepted."""
        request = self._register_request()
        results = await asyncio.gather(*(self._send(addr, request, "REGISTER_BROKER")
                                         for addr in self.addresses))
        accepted = sum(results)
        self.registrations += accepted
        return accepted

    async def unregister_all(self) -> int:
        """Tell every name server we are leaving; return how many accepted."""
        settings = self._settings
        request = make_request(RequestCode.UNREGISTER_BROKER, 0, UnregisterBrokerRequestHeader(
            settings.name, settings.address, settings.cluster, settings.broker_id,
        ).to_ext_fields())
        results = await asyncio.gather(*(self._send(addr, request, "UNREGISTER_BROKER")
                                         for addr in self.addresses))
        return sum(results)

    async def run(self, *, registered: bool = True) -> None:
        """Register every `interval_s` and after each `poke`, until cancelled; while no name
        server has accepted a round yet (`registered` false at start), every `RETRY_S`."""
        while True:
            try:
                await asyncio.wait_for(self._poked.wait(),
                                       self.interval_s if registered else RETRY_S)
            except TimeoutError:
                pass
            self._poked.clear()
            registered = await self.register_all() > 0 or registered

    def _register_request(self) -> RemotingCommand:
        settings = self._settings
        body = RegisterBrokerBody(self._topics()).encode()
        header = RegisterBrokerRequestHeader(
            broker_name=settings.name, broker_addr=settings.address,
            cluster_name=settings.cluster, ha_server_addr=f"{settings.host}:{settings.port + 1}",
            broker_id=settings.broker_id, compressed=False, body_crc32=body_crc(body))
        return make_request(RequestCode.REGISTER_BROKER, 0, header.to_ext_fields(), body)

    async def _send(self, addr: str, request: RemotingCommand, what: str) -> bool:
        try:
            response = await self._client.invoke(addr, request, _TIMEOUT_S)
        except RemotingError as err:
            self._report(addr, f"{what} to {addr} failed: {err}")
            return False
        if response.code != ResponseCode.SUCCESS:
            self._report(addr, f"{what} to {addr} refused with code {response.code}: "
                               f"{response.remark}")
            return False
        if addr in self._failing:
            self._failing.discard(addr)
            log.info("%s to %s succeeded again", what, addr)
        return True

    def _report(self, addr: str, text: str) -> None:
        if addr not in self._failing:
            self._failing.add(addr)
            log.warning("%s (retrying every round)", text)
        else:
            log.debug("%s", text)
