"""PostgreSQL's side of `projections.follower`: a view's recorder, the settled end of the log and
the LISTEN/NOTIFY waker.

Kept apart so that only a process with a PostgreSQL store imports psycopg (issue 23: `casetrail
token issue` on SQLite starts without it; `tests/integration/test_cli_start.py` proves what it
imports). `projections.follower` hands these out by their old names, imported on first use, and
picks them in `view_recorder`, `horizon_of` and `waker_for`; the guarantees are stated there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeAlias

import psycopg
from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from psycopg.sql import SQL, Composed, Identifier
from psycopg.sql import Literal as SQLLiteral

from projections.follower import (
    _HEARTBEATS_DDL,
    HEARTBEATS_TABLE,
    START,
    Batch,
    Db,
    SQLiteViewRecorder,
    View,
    _check_view,
    _dump,
    _process,
    _reset,
)


class PostgresViewRecorder(PostgresTrackingRecorder):
    """A view's tables and its tracking table in PostgreSQL, in the datastore's schema.

    The tracking row is locked (`SELECT ... FOR UPDATE`) first thing in each transaction, so
    two followers of the same view take turns, and the second finds the position moved.
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        view: View,
        tracking_table_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        _check_view(view)
        self.view = view
        super().__init__(
            datastore, tracking_table_name=tracking_table_name or f"{view.name}_tracking", **kwargs
        )
        # Every view's recorder creates the one heartbeats table, and processes start together
        # (workers, the followers' child, the relay): two CREATE TABLE IF NOT EXISTS of one
        # table at the same instant fail on PostgreSQL ("duplicate key ... pg_type"). A lock
        # held to the end of the creating transaction makes the second find it there.
        self.sql_create_statements.append(
            SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
                SQLLiteral(f"casetrail/{HEARTBEATS_TABLE}/{datastore.schema}")
            )
        )
        for statement in (_HEARTBEATS_DDL, *view.create_statements("postgres")):
            self.sql_create_statements.append(
                Composed([SQL(Db(None, "postgres", datastore.schema).sql(statement))])
            )

    def create_table(self) -> None:
        """Create the view's tables when one is missing; when all are there, run nothing. A
        role that may only read and write rows (ops/postgres-roles.sql: the owner created the
        tables with `casetrail store init`) cannot run even `CREATE TABLE IF NOT EXISTS`:
        PostgreSQL checks the schema's CREATE right first. Proven by
        tests/integration/test_least_privilege.py."""
        wanted = {self.tracking_table_name, HEARTBEATS_TABLE, *self.view.tables}
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.datastore.schema,)
            )
            found = {row["tablename"] for row in cursor.fetchall()}
        if wanted <= found:
            self.datastore.register_type_adapters()
            return
        super().create_table()

    @contextmanager
    def _writing(self) -> Iterator[Db]:
        with self.datastore.transaction(commit=True) as cursor:
            yield Db(cursor, "postgres", self.datastore.schema)

    @contextmanager
    def reading(self) -> Iterator[Db]:
        with self.datastore.transaction(commit=False) as cursor:
            yield Db(cursor, "postgres", self.datastore.schema)

    def position(self, application_name: str) -> int:
        return self.max_tracking_id(application_name) or START

    def process(self, batch: Batch) -> None:
        try:
            with self._writing() as db:
                _process(self, db, batch)
        except psycopg.Error as exc:
            raise PersistenceError(f"{type(exc).__name__}: {exc}") from exc

    def reset(self, application_name: str) -> None:
        with self._writing() as db:
            _reset(self, db, application_name)

    def dump(self, table: str) -> list[tuple[Any, ...]]:
        return _dump(self, table)


class PostgresHorizon:
    """The settled end of the log on PostgreSQL, without passing over a gap an insert may fill.

    If every id between the position and the largest id is present, all of them are settled.
    Otherwise an insert may still be in flight below the largest id: a `SHARE` lock on the
    events table waits for every insert in progress to end (it conflicts with the `ROW
    EXCLUSIVE` lock each insert holds from before it draws its ids) and is released at once;
    after it, a missing id is one a rolled-back insert burnt and will never appear. Taking it
    needs the UPDATE, DELETE or TRUNCATE privilege on the events table.
    """

    def __init__(self, recorder: PostgresApplicationRecorder, lock_timeout_seconds: int = 10):
        self.recorder = recorder
        table = (Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        self._count = SQL(
            "SELECT COUNT(*) AS n FROM {}.{} WHERE notification_id > %s AND notification_id <= %s"
        ).format(*table)
        self._lock = SQL("LOCK TABLE {}.{} IN SHARE MODE").format(*table)
        self._max = SQL("SELECT MAX(notification_id) AS m FROM {}.{}").format(*table)
        self._timeout = SQL("SET LOCAL lock_timeout = '{}s'").format(int(lock_timeout_seconds))
        self.locks_taken = 0

    def __call__(self, position: int) -> int:
        largest = self.recorder.max_notification_id() or START
        if largest <= position:
            return position
        with self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(self._count, (position, largest))
            row = cursor.fetchone()
        if row is not None and row["n"] == largest - position:
            return largest
        with self.recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(self._timeout)
            cursor.execute(self._lock)
            cursor.execute(self._max)
            row = cursor.fetchone()
        self.locks_taken += 1
        return int(row["m"]) if row is not None and row["m"] is not None else START


class PostgresWaker:
    """Wakes up on the store's NOTIFY (sent by every insert of events), on a connection of its
    own. When that connection fails the follower polls, and the connection is made again on
    the next wait: a failed LISTEN never stops the follower."""

    _SLICE = 0.1  # seconds between checks of `stop` while listening

    def __init__(self, recorder: PostgresApplicationRecorder, log: Any = None) -> None:
        kwargs = recorder.datastore.pool.kwargs
        self.connect_kwargs: dict[str, Any] = dict(kwargs) if isinstance(kwargs, dict) else {}
        self.connect_kwargs.pop("row_factory", None)
        self.channel = recorder.channel_name
        self.log = log
        self._connection: psycopg.Connection[Any] | None = None

    def wait(self, timeout: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + timeout
        try:
            connection = self._listening()
            while not stop.is_set() and time.monotonic() < deadline:
                for _ in connection.notifies(timeout=self._SLICE, stop_after=1):
                    return
        except psycopg.Error as exc:
            if self.log is not None:
                self.log.warning("listen_failed", error_type=type(exc).__name__)
            self.close()
            stop.wait(max(0.0, deadline - time.monotonic()))

    def _listening(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            connection = psycopg.connect(**self.connect_kwargs, autocommit=True, connect_timeout=5)
            connection.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            with suppress(psycopg.Error):
                self._connection.close()
            self._connection = None


AnyViewRecorder: TypeAlias = SQLiteViewRecorder | PostgresViewRecorder
