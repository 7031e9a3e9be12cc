"""The PostgreSQL write path (`gateway.store.persistence` says why it is its own module): the
library's factory, its datastore gated by `gateway.store.outages`."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresFactory

from gateway.store.outages import gate_datastore


class PostgresStore(PostgresFactory):
    """The library's PostgreSQL factory, its datastore gated (`gateway.store.outages`)."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.datastore = gate_datastore(self.datastore)
