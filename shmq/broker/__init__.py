"""shmq.broker: the broker's processes and request handlers (docs/architecture.md §1, §6).

Roles (`roles`): `writer_main` (the only appenders, `writer`), `housekeeper_main`, and
`acceptor_main`, the RocketMQ remoting protocol for remote clients (`acceptor`).

The acceptor's pieces: `dispatch` (request code -> handler, a `context.Session` per
connection), `handlers/` (plain functions `handler(ctx, command)`), `channel` (appends through
the shared-memory rings to the writers; `appender` is its interface), `reader` (pulls and
lookups from the store's read-only mappings), `longpoll` (held pulls), `topics`, `offsets`,
`clients`, `locks` (the broker's state; `jsonfile` persists the shared config files),
`schedule` (delayed messages), `registrar` (name-server registration), `errors`.

Modules are imported where used: importing this package starts nothing and loads no handler.
"""

from __future__ import annotations

__all__: list[str] = []
