"""The PostgreSQL write path (`gateway.store.persistence` says why it is its own module): the
library's factory, its datastore gated by `gateway.store.outages`, and its application recorder
sending the events to the insert function in psycopg's binary format.

Why binary (issue 23, `bench/README.md`, "Profiling", fourth round): the library calls its
insert function (`POSTGRES_ENABLE_DB_FUNCTIONS`, which casetrail always sets) with an array of
its composite type, and psycopg's default text format builds that array in Python, escaping
every byte of each event's encrypted state: on an audited read's path (the access events'
group commit) it was the largest single part of the committer's CPU. The binary format sends
the same values (uuid, bigint, text, bytea) as they are; the function, the table, the rows
and the transaction are the library's, unchanged. Proven byte for byte by
tests/integration/test_postgres_insert.py (every byte value, large states, a batch, the
notification ids returned in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from psycopg.sql import SQL, Identifier

from gateway.store.outages import gate_datastore


class BinaryInsertRecorder(PostgresApplicationRecorder):
    """The library's application recorder; its insert function called with `%b`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_invoke_pg_function_insert_events = SQL(
            "SELECT * FROM {schema}.{insert_events}((%b))"
        ).format(
            schema=Identifier(self.datastore.schema),
            insert_events=Identifier(self.pg_function_name_insert_events),
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not self.datastore.enable_db_functions:
            raise RuntimeError(
                "casetrail's PostgreSQL store needs POSTGRES_ENABLE_DB_FUNCTIONS=y "
                "(gateway.store.eventstore.postgres_environment sets it)"
            )
        ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
        return ids


class PostgresStore(PostgresFactory):
    """The library's PostgreSQL factory, its datastore gated (`gateway.store.outages`)."""

    application_recorder_class = BinaryInsertRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.datastore = gate_datastore(self.datastore)
