"""Following the event store: a read model's rows and its position, written in one transaction.

This module is generic: it knows nothing of cases or ledgers, and other followers of the event
store (a Merkle log, a message relay) can reuse it. The pieces:

- `View`: what a read model is, independently of the database: its name, its tables (DDL
  written once for SQLite and PostgreSQL, see `Db`), the event topics it needs, and `apply()`,
  which folds a `Batch` of events into its rows.
- `SQLiteViewRecorder` / `PostgresViewRecorder`: the library's own `SQLiteTrackingRecorder` /
  `PostgresTrackingRecorder`, subclassed as the library's docs do for materialised views, with
  one tracking table per view (`<name>_tracking`). `process(batch)` runs one transaction:
  lock the view's tracking row, check that it still holds the position the batch starts
  from, apply the batch, record the new position (the library's `Tracking`). A crash at any
  point leaves either all of it or none of it; a second follower of the same view finds the
  position moved and gives way (`PositionMoved`), so no event is applied twice.
- `Follower`: reads the application's notification log from the view's durable position with
  `recorder.select_notifications` (the library's SQLite recorder has no subscriptions; a poll
  works on both stores), decodes the events (decrypts them, through the application's mapper),
  and hands them to the view in batches: as domain events, or, for a view that only copies
  values out (`View.plain`, the access log's), as their plain states (`plain_state`: the
  stored JSON, decrypted and upcast, no event built; proven equal by
  tests/projections/test_access_log.py). An event whose data key was destroyed (issue 19,
  `domain.tombstones`) is left out of its batch: an erasure never stops a follower.
  `catch_up()`, `rebuild()` (from zero), `lag()`, and `run()` for a supervised background
  loop that survives database failures and, on PostgreSQL, wakes up on LISTEN/NOTIFY
  (falling back to polling when that connection fails). The loop keeps its position in memory
  between looks, and records an advance over events its view does not read at most once a
  second (`IDLE_RECORD_SECONDS`), not once per look (proven by tests/projections/
  test_follower.py).
- Heartbeats: `run()` writes one row of `follower_heartbeats` per view every few seconds (and
  "stopped" when it ends), so that `status()` in a process that does not run the follower (an
  API worker) reports truthfully whether another process does (`beat`, `heartbeat`; proven by
  tests/integration/test_observability.py).

Where the tables live: wherever the datastore given to the recorder points. casetrail keeps
them in a file of their own on SQLite (`$CASETRAIL_HOME/readmodels.sqlite`) and in the events'
own database and schema on PostgreSQL; see `projections.readmodels`.

A gap in the notification ids on PostgreSQL (a rolled-back insert burns ids from the sequence;
with the store's database functions, inserts do not take the table lock, so a later id may
commit before an earlier one) is never passed over while an insert could still fill it: see
`PostgresHorizon` (or pass `sqlite_horizon` when the store orders its appends, as
`gateway.store.guard` makes it do).

Example, a view counting case reports (the ledger in `projections.ledger.view` is a full one):

    class Reports(View):
        name, tables = "counts", ("counts",)
        topics = (get_topic(Case.ClueReported),)

        def create_statements(self, dialect):
            return ["CREATE TABLE IF NOT EXISTS {counts} (street TEXT PRIMARY KEY, n BIGINT)"]

        def apply(self, db, batch):
            for event in batch.events:
                db.execute(
                    "INSERT INTO {counts} VALUES (?, 1) "
                    "ON CONFLICT (street) DO UPDATE SET n = {counts}.n + 1",
                    (event.street,),
                )

    recorder = view_recorder(open_datastore(env), Reports())
    follower = Follower(application, recorder)
    follower.catch_up()          # or follower.run(stop_event) in a thread
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Protocol

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    Mapper,
    MapperDeserialisationError,
    Notification,
    PersistenceError,
    Tracking,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteTrackingRecorder,
)
from eventsourcing.utils import Environment

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresDatastore

    from projections.follower_postgres import AnyViewRecorder as AnyViewRecorder  # noqa: PLC0414
    from projections.follower_postgres import PostgresHorizon as PostgresHorizon  # noqa: PLC0414
    from projections.follower_postgres import PostgresViewRecorder as PostgresViewRecorder  # noqa: PLC0414
    from projections.follower_postgres import PostgresWaker as PostgresWaker  # noqa: PLC0414

# PostgreSQL's classes live in `projections.follower_postgres`, which imports psycopg (about
# 0.1 s of CPU): a process on a SQLite store (`casetrail token issue`, issue 23) never loads it.
# They are still reachable here by their old names, imported on first use.
_POSTGRES_NAMES: Final = frozenset(
    {"PostgresViewRecorder", "PostgresHorizon", "PostgresWaker", "AnyViewRecorder"}
)


def __getattr__(name: str) -> Any:
    if name in _POSTGRES_NAMES:
        from projections import follower_postgres

        return getattr(follower_postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _postgres_loaded() -> bool:
    """Whether a PostgreSQL store can be open in this process: its recorder's module is loaded
    by the library's factory when (and only when) a store's environment names it."""
    return "eventsourcing.postgres" in sys.modules


def driver_errors() -> tuple[type[Exception], ...]:
    """The errors the stores' drivers raise: psycopg's only if it was imported (when it was
    not, no PostgreSQL store is open in this process and none of them can occur)."""
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error,) if psycopg is None else (sqlite3.Error, psycopg.Error)


def store_errors() -> tuple[type[Exception], ...]:
    """What a follower catches, backs off from and tries again after: the library's, the
    drivers' and the operating system's errors."""
    return (PersistenceError, OSError, *driver_errors())


Dialect = Literal["sqlite", "postgres"]
Row = dict[str, Any]

DEFAULT_BATCH_SIZE: Final = 500
# Position 0 means "nothing applied yet": notification ids start at 1 in both stores.
START: Final = 0
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
# Followers back off up to this long after a failure, then try again, forever.
_MAX_BACKOFF_SECONDS: Final = 30.0
# A follower looks at the store at most once per GATHER_SECONDS unless it is catching up (its
# last batch was full). Under a steady stream of small commits (group-committed access events)
# it then takes them in batches, one transaction per look instead of one per commit, which cost
# more CPU than the commits it followed; and a wake-up that brings nothing (PostgreSQL's NOTIFY
# channel is per database: other schemas' inserts wake us too) costs one cheap look at most
# that often (bench/README.md, "reads"). It is also the most a read model lags under load.
GATHER_SECONDS: Final = 0.25
# A running follower writes a heartbeat at most this often (`follower_heartbeats`, one row per
# view), so that a process that does not run it (an API worker, when the followers run in
# `casetrail projections run` or under `casetrail serve`'s supervisor) can tell whether someone
# does. A heartbeat older than HEARTBEAT_STALE_SECONDS means nobody does: it is longer than the
# longest pause of a running loop (the backoff after a failure), so a live follower is never
# reported stopped; a killed one is reported stopped within that time.
HEARTBEAT_SECONDS: Final = 5.0
# A running follower whose view reads none of the new events (the ledger under a stream of
# access events) records its advance over them at most this often, or once it passed over this
# many ids (`Follower._look`): a transaction per look cost the followers' process more CPU
# than the view's real work. The lag a status reports for such a view may stay this stale;
# IDLE_RECORD_IDS is well under `/readyz`'s default limit (CASETRAIL_READY_MAX_LAG, 1,000).
IDLE_RECORD_SECONDS: Final = 1.0
IDLE_RECORD_IDS: Final = 500
HEARTBEAT_STALE_SECONDS: Final = _MAX_BACKOFF_SECONDS + 3 * HEARTBEAT_SECONDS
HEARTBEATS_TABLE: Final = "follower_heartbeats"
_HEARTBEATS_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS {follower_heartbeats} ("
    "name TEXT PRIMARY KEY, beat_ms BIGINT NOT NULL, pid BIGINT NOT NULL, "
    "last_error TEXT, updated_at TEXT)"
)


def erased(exc: BaseException) -> bool:
    """Whether a decoding failure says the event was erased (its data key destroyed, issue 19):
    the domain's `DataErased`, known by its problem code, since this module imports nothing of
    the domain (the unit client reuses it)."""
    return getattr(exc, "code", None) == "erased"


def plain_state(mapper: Mapper[Any], notification: Notification) -> dict[str, Any]:
    """A stored event's plain state (`View.plain`): the mapper's `to_plain_state` where it has
    one (`gateway.store.eventstore.BoundMapper`: decrypted and upcast, no event built), else the
    decoded event's state encoded again by the application's transcoder, which is what the
    first gives."""
    to_plain = getattr(mapper, "to_plain_state", None)
    if to_plain is not None:
        found: dict[str, Any] = to_plain(notification)
        return found
    state = dict(vars(mapper.to_domain_event(notification)))
    del state["originator_id"], state["originator_version"]
    decoded: dict[str, Any] = json.loads(mapper.transcoder.encode(state))
    return decoded


class PositionMoved(Exception):
    """Another follower of the same view moved its position first; this batch was not applied.

    Nothing to repair: read the position again and carry on from there."""


# --- SQL written once for both databases --------------------------------------------------------


class Db:
    """A cursor inside a view's transaction, for SQL written once for SQLite and PostgreSQL.

    Statements use `?` placeholders and name tables as `{table}` fields; on PostgreSQL the
    placeholders become `%s` and the names are qualified by the schema. Rows come back as
    dicts. Write portable SQL: TEXT/INTEGER/BIGINT columns, `INSERT ... ON CONFLICT (...) DO
    UPDATE SET c = excluded.c`, no `%` characters.
    """

    def __init__(self, cursor: Any, dialect: Dialect, schema: str | None = None) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.schema = schema

    def sql(self, statement: str) -> str:
        if self.dialect == "sqlite":
            return statement.format_map(_Names(""))
        return statement.format_map(_Names(f'"{self.schema}".')).replace("?", "%s")

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        self.cursor.execute(self.sql(statement), tuple(params))
        if self.cursor.description is None:
            return []
        return [dict(row) for row in self.cursor.fetchall()]

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor.executemany(self.sql(statement), [tuple(r) for r in rows])

    def placeholders(self, count: int) -> str:
        """`?,?,?` for an IN list of `count` values."""
        return ",".join("?" * count)

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        key: Sequence[str] = (),
    ) -> None:
        """Insert `rows`; with `key`, rows whose key exists replace the stored values (an upsert;
        the rows must not repeat a key)."""
        if not rows:
            return
        for name in (*columns, *key):
            if not _NAME.match(name):
                raise ValueError(f"column name {name!r}: use lower-case letters, digits and _")
        one = f"({','.join('?' * len(columns))})"
        tail = ""
        if key:
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
            tail = f" ON CONFLICT ({', '.join(key)}) DO " + (
                f"UPDATE SET {updates}" if updates else "NOTHING"
            )
        # executemany: psycopg pipelines it on PostgreSQL (measured faster here than one
        # statement carrying arrays or a JSON document of the rows).
        self.executemany(f"INSERT INTO {{{table}}} ({', '.join(columns)}) VALUES {one}{tail}", rows)


class _Names(dict[str, str]):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def __missing__(self, key: str) -> str:
        if not _NAME.match(key):
            raise ValueError(f"table name {key!r} must be lower-case letters, digits and _")
        return f'{self.prefix}"{key}"' if self.prefix else key


# --- what a read model is -------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Events from the notification log after `start`, up to and including `end`.

    `end` may lie beyond the last notification: when a view reads only some topics, the ids in
    between belong to events it does not need, and its position still moves past them.
    `events` are the decoded `notifications`, one for one (empty when the view reads the stored
    form only: `View.decodes = False`, or their plain states: `View.plain`); `states` their
    plain states, one for one, for a view that asked for them (`View.plain`), else empty.
    """

    application_name: str
    start: int
    end: int
    notifications: Sequence[Notification]
    events: Sequence[DomainEventProtocol[Any]]
    states: Sequence[Mapping[str, Any]] = ()

    @property
    def tracking(self) -> Tracking:
        return Tracking(self.application_name, self.end)


class View(ABC):
    """A read model, independent of the database it lives in.

    Subclasses set `name` (also the prefix of their tables and of `<name>_tracking`), `tables`
    (every table they own, in creation order), and may narrow `topics`. `apply()` must be a
    pure fold of the batch into the rows: the same events give the same rows whatever the batch
    boundaries, which is what lets a rebuild from zero be compared with incremental following.
    """

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    topics: ClassVar[tuple[str, ...]] = ()
    decodes: ClassVar[bool] = True
    # True: the batch brings each event's plain state (`Batch.states`: its stored JSON,
    # decrypted and upcast, see `plain_state`), not the domain event: for a view that copies
    # values out of many events and needs no event object (the access log's).
    plain: ClassVar[bool] = False

    @abstractmethod
    def create_statements(self, dialect: Dialect) -> list[str]:
        """`CREATE TABLE IF NOT EXISTS {table} ...` and index statements, in `Db` syntax."""

    @abstractmethod
    def apply(self, db: Db, batch: Batch) -> None:
        """Fold the batch into the view's rows, inside the view's transaction."""

    def erases(self, batch: Batch) -> bool:
        """Whether applying the batch deletes rows whose bytes must not linger (an erasure,
        issue 19: `projections.tombstones`); on SQLite such a batch is written with
        `secure_delete` and the WAL truncated after it."""
        return False


def _check_view(view: View) -> None:
    for name in (view.name, *view.tables):
        if not _NAME.match(name):
            raise ValueError(f"view or table name {name!r}: use lower-case letters, digits, _")


class SQLiteViewRecorder(SQLiteTrackingRecorder):
    """A view's tables and its tracking table in SQLite.

    Writes use `BEGIN IMMEDIATE`, so that two processes following the same view queue for the
    write lock instead of failing half-way, and `synchronous=NORMAL`: in WAL mode that is still
    atomic and survives a killed process; only a power cut may lose the last batches, which
    are then applied again from the tracked position.
    """

    def __init__(self, datastore: SQLiteDatastore, *, view: View, **kwargs: Any) -> None:
        _check_view(view)
        self.view = view
        # Set before super().__init__(), which builds the statements from it.
        self.tracking_table_name = f"{view.name}_tracking"
        super().__init__(datastore, **kwargs)
        table = self.tracking_table_name
        self.insert_tracking_statement = (
            f"INSERT INTO {table} VALUES (:application_name, :notification_id) "
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = :notification_id "
            f"WHERE {table}.notification_id < :notification_id RETURNING notification_id"
        )
        self.select_max_tracking_id_statement = (
            f"SELECT MAX(notification_id) FROM {table} WHERE application_name=?"
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.tracking_table_name} ("
            "application_name TEXT, notification_id INTEGER, PRIMARY KEY (application_name)) "
            "WITHOUT ROWID",
            Db(None, "sqlite").sql(_HEARTBEATS_DDL),
            *(Db(None, "sqlite").sql(s) for s in self.view.create_statements("sqlite")),
        ]

    @contextmanager
    def _writing(self, secure: bool = False) -> Iterator[Db]:
        with self.datastore.get_connection(commit=True) as connection:
            cursor = connection.cursor().sqlite_cursor
            try:
                # The pool may be the events' own: give the connection back as it was found, so
                # that event commits keep waiting for the disk (synchronous=FULL).
                (restore,) = cursor.execute("PRAGMA synchronous").fetchone()
                cursor.execute("PRAGMA synchronous=NORMAL")
                restore_secure: int | None = None
                if secure:
                    # An erasure (issue 19): the deleted rows' bytes are zeroed, not left in
                    # free pages; `process` then empties the WAL of their earlier versions.
                    (restore_secure,) = cursor.execute("PRAGMA secure_delete").fetchone()
                    cursor.execute("PRAGMA secure_delete=ON")
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                cursor.close()
                raise _persistence_error(exc) from exc
            try:
                yield Db(cursor, "sqlite")
                connection.commit()
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    connection.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise _persistence_error(exc) from exc
                raise
            finally:
                with suppress(sqlite3.Error):
                    cursor.execute(f"PRAGMA synchronous={int(restore)}")
                    if restore_secure is not None:
                        cursor.execute(f"PRAGMA secure_delete={int(restore_secure)}")
                cursor.close()

    @contextmanager
    def reading(self) -> Iterator[Db]:
        """A read-only transaction: one consistent snapshot of the view."""
        try:
            with self.datastore.transaction(commit=False) as cursor:
                yield Db(cursor.sqlite_cursor, "sqlite")
        except sqlite3.Error as exc:
            raise _persistence_error(exc) from exc

    def position(self, application_name: str) -> int:
        return self.max_tracking_id(application_name) or START

    def process(self, batch: Batch) -> None:
        erasing = self.view.erases(batch)
        with self._writing(secure=erasing) as db:
            _process(self, db, batch)
        if erasing:
            # The WAL still holds the erased rows' earlier page versions: copy the zeroed pages
            # home and truncate it (best effort: a reader holding an old snapshot delays it
            # to the next checkpoint).
            with suppress(sqlite3.Error), self.datastore.get_connection(commit=False) as c:
                c.cursor().sqlite_cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def reset(self, application_name: str) -> None:
        with self._writing() as db:
            _reset(self, db, application_name)

    def dump(self, table: str) -> list[tuple[Any, ...]]:
        return _dump(self, table)


def _persistence_error(exc: sqlite3.Error) -> PersistenceError:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    return PersistenceError(f"{type(exc).__name__}: {exc}")


# The tracking SQL, once for both databases (`Db` qualifies the table on PostgreSQL).


def _locked_position(recorder: AnyViewRecorder, db: Db, application_name: str) -> int:
    """The view's position, its row locked to the end of the transaction: on PostgreSQL by
    `FOR UPDATE`; on SQLite the transaction's `BEGIN IMMEDIATE` already holds the write lock."""
    lock = " FOR UPDATE" if db.dialect == "postgres" else ""
    rows = db.execute(
        f"SELECT notification_id FROM {{{recorder.tracking_table_name}}} "
        f"WHERE application_name=?{lock}",
        (application_name,),
    )
    return int(rows[0]["notification_id"]) if rows else START


def _set_position(recorder: AnyViewRecorder, db: Db, application_name: str, position: int) -> None:
    db.execute(
        f"INSERT INTO {{{recorder.tracking_table_name}}} VALUES (?, ?) "
        "ON CONFLICT (application_name) DO UPDATE "
        "SET notification_id = excluded.notification_id",
        (application_name, position),
    )


def _process(recorder: AnyViewRecorder, db: Db, batch: Batch) -> None:
    # The position row exists from the first batch on (see `_reset`/`ensure_position`), so the
    # lock taken here serialises every writer of this view.
    found = _locked_position(recorder, db, batch.application_name)
    if found != batch.start:
        raise PositionMoved(
            f"view {recorder.view.name} is at {found}, not {batch.start}: another follower "
            "moved it; reading the position again"
        )
    recorder.view.apply(db, batch)
    recorder._insert_tracking(db.cursor, batch.tracking)


def _reset(recorder: AnyViewRecorder, db: Db, application_name: str) -> None:
    _locked_position(recorder, db, application_name)
    for table in reversed(recorder.view.tables):
        db.execute(f"DELETE FROM {{{table}}}")
    _set_position(recorder, db, application_name, START)


@dataclass(frozen=True)
class Heartbeat:
    """The last sign of life of whoever runs a view's follower, possibly in another process."""

    beat_ms: int
    pid: int
    last_error: str | None
    updated_at: str | None

    def age_seconds(self, now: float | None = None) -> float:
        return max(0.0, (now if now is not None else time.time()) - self.beat_ms / 1000)

    def fresh(self, now: float | None = None) -> bool:
        return self.beat_ms > 0 and self.age_seconds(now) <= HEARTBEAT_STALE_SECONDS


def beat(
    recorder: AnyViewRecorder,
    *,
    alive: bool = True,
    last_error: str | None = None,
    updated_at: str | None = None,
) -> None:
    """Record that this process runs `recorder`'s view now (`alive=False`: it just stopped)."""
    with recorder._writing() as db:
        db.insert(
            HEARTBEATS_TABLE,
            ("name", "beat_ms", "pid", "last_error", "updated_at"),
            [
                (
                    recorder.view.name,
                    int(time.time() * 1000) if alive else 0,
                    os.getpid(),
                    last_error,
                    updated_at,
                )
            ],
            key=("name",),
        )


def heartbeat(recorder: AnyViewRecorder) -> Heartbeat | None:
    """The view's last heartbeat, whoever wrote it; None if no follower ever ran it."""
    with recorder.reading() as db:
        rows = db.execute(
            f"SELECT beat_ms, pid, last_error, updated_at FROM {{{HEARTBEATS_TABLE}}} WHERE name=?",
            (recorder.view.name,),
        )
    if not rows:
        return None
    row = rows[0]
    return Heartbeat(int(row["beat_ms"]), int(row["pid"]), row["last_error"], row["updated_at"])


def ensure_position(recorder: AnyViewRecorder, application_name: str) -> None:
    """Create the view's tracking row at 0 if it has none, so that it can be locked. Looked
    for first: a process that only reads the view (an API worker whose followers run
    elsewhere) may not write the table (ops/postgres-roles.sql), and the owner's `casetrail
    store init` made the row."""
    with recorder.reading() as db:
        found = db.execute(
            f"SELECT 1 AS found FROM {{{recorder.tracking_table_name}}} "
            "WHERE application_name = ?",
            (application_name,),
        )
    if found:
        return
    with recorder._writing() as db:
        db.execute(
            f"INSERT INTO {{{recorder.tracking_table_name}}} VALUES (?, ?) "
            "ON CONFLICT (application_name) DO NOTHING",
            (application_name, START),
        )


def _dump(recorder: AnyViewRecorder, table: str) -> list[tuple[Any, ...]]:
    """Every row of one of the view's tables, sorted: for comparing two builds of a view."""
    if table not in recorder.view.tables:
        raise ValueError(f"{table!r} is not a table of view {recorder.view.name}")
    with recorder.reading() as db:
        rows = db.execute(f"SELECT * FROM {{{table}}}")
    return sorted((tuple(row.values()) for row in rows), key=repr)


def open_datastore(env: Mapping[str, str]) -> SQLiteDatastore | PostgresDatastore:
    """The datastore the library's factory builds from a store environment
    (`PERSISTENCE_MODULE`, `SQLITE_DBNAME` or `POSTGRES_*`); views share it."""
    factory = InfrastructureFactory[Any].construct(Environment(env=dict(env)))
    if isinstance(factory, SQLiteFactory):
        return factory.datastore
    if _postgres_loaded():
        from eventsourcing.postgres import PostgresFactory

        if isinstance(factory, PostgresFactory):
            return factory.datastore
    raise ValueError(
        f"read models need SQLite or PostgreSQL, not {env.get('PERSISTENCE_MODULE')!r}"
    )


def view_recorder(datastore: SQLiteDatastore | PostgresDatastore, view: View) -> AnyViewRecorder:
    """The recorder of `view` in `datastore`, its tables created if missing."""
    recorder: AnyViewRecorder
    if isinstance(datastore, SQLiteDatastore):
        recorder = SQLiteViewRecorder(datastore, view=view)
    else:
        from projections.follower_postgres import PostgresViewRecorder

        recorder = PostgresViewRecorder(datastore, view=view)
    recorder.create_table()
    return recorder


# --- how far is safe to read --------------------------------------------------------------------


class Horizon(Protocol):
    def __call__(self, position: int) -> int:
        """The highest notification id up to which the log is settled: every id at or below it
        that is missing now will never appear."""


def sqlite_horizon(recorder: ApplicationRecorder) -> Horizon:
    # SQLite has one writer at a time and reuses a rolled-back rowid: ids appear in order and
    # without gaps, so the largest id is settled.
    def horizon(position: int) -> int:
        return recorder.max_notification_id() or START

    return horizon


def horizon_of(application: Application[Any]) -> Horizon:
    recorder = application.recorder
    if isinstance(recorder, SQLiteApplicationRecorder) or not _postgres_loaded():
        return sqlite_horizon(recorder)
    from eventsourcing.postgres import PostgresApplicationRecorder

    from projections.follower_postgres import PostgresHorizon

    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresHorizon(recorder)
    return sqlite_horizon(recorder)


# --- waiting for new events -----------------------------------------------------------------------


class Waker(Protocol):
    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Return when new events may have been stored, `timeout` has passed, or `stop` is set."""

    def close(self) -> None: ...


class PollingWaker:
    def wait(self, timeout: float, stop: threading.Event) -> None:
        stop.wait(timeout)

    def close(self) -> None:
        pass


# --- the follower ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Where one view stands; `lag` is the store's largest notification id minus the position."""

    name: str
    position: int
    head: int
    lag: int
    running: bool
    last_error: str | None
    updated_at: str | None
    # Seconds since the last heartbeat of whoever runs the follower (this process or another);
    # None when no follower ever ran this view.
    heartbeat_age: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "running": self.running,
            "last_error": self.last_error,
            "updated_at": self.updated_at,
            "heartbeat_age": self.heartbeat_age,
        }


Progress = Callable[[int, int], None]
"""progress(position, horizon), called after each batch."""


class Follower:
    """Follows one application's notification log into one view.

    Safe to run in several threads or processes at once (one wins each batch; the others get
    `PositionMoved` and carry on), though one per view is enough.
    """

    def __init__(
        self,
        application: Application[Any],
        recorder: AnyViewRecorder,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        horizon: Horizon | None = None,
        log: Any = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.application = application
        self.recorder = recorder
        self.view = recorder.view
        self.batch_size = batch_size
        self.horizon = horizon or horizon_of(application)
        self.log = log
        self.application_name = application.name
        self.last_error: str | None = None
        self.updated_at: str | None = None
        self._running = False
        self._last_beat = 0.0
        # The running loop's own knowledge (`_look`): the position it last recorded or read
        # (None: read it again), how far past it the log holds none of the view's topics, and
        # when it last recorded a position.
        self._known: int | None = None
        self._scanned = START
        self._recorded_at = -math.inf  # never: the first advance is recorded at once
        ensure_position(recorder, self.application_name)

    @property
    def name(self) -> str:
        return self.view.name

    def position(self) -> int:
        return self.recorder.position(self.application_name)

    def head(self) -> int:
        return self.application.recorder.max_notification_id() or START

    def lag(self) -> int:
        return max(0, self.head() - self.position())

    def status(self) -> Status:
        """Where the view stands. `running`, `last_error` and `updated_at` are those of
        whoever runs the follower: this process's own loop, or another process's, as its
        heartbeat tells (an API worker while `casetrail projections run` follows the store)."""
        position, head = self.position(), self.head()
        running, last_error, updated_at = self._running, self.last_error, self.updated_at
        found = heartbeat(self.recorder)
        age = round(found.age_seconds(), 1) if found is not None and found.beat_ms else None
        if not running and found is not None:
            running = found.fresh()
            last_error, updated_at = found.last_error, found.updated_at
        return Status(
            name=self.name,
            position=position,
            head=head,
            lag=max(0, head - position),
            running=running,
            last_error=last_error,
            updated_at=updated_at,
            heartbeat_age=age,
        )

    def _beat(self, alive: bool = True) -> None:
        """A heartbeat; its failure (the store is down) only lets it go stale, truthfully."""
        try:
            beat(
                self.recorder,
                alive=alive,
                last_error=self.last_error,
                updated_at=self.updated_at,
            )
        except store_errors():
            return
        self._last_beat = time.monotonic()

    def next_batch(self, horizon: int | None = None) -> Batch | None:
        """The events after the view's position, up to the settled end of the log (or
        `horizon`), at most `batch_size` of its topics, decoded; None when there are none.
        Nothing is recorded: `recorder.process(batch)` does that (`step`, or a follower that
        must do something first, as the relay publishes before it moves its position)."""
        start = self.position()
        end_of_log = self.horizon(start) if horizon is None else horizon
        if end_of_log <= start:
            return None
        return self._batch(start, start, end_of_log)

    def _batch(self, start: int, scan_from: int, end_of_log: int) -> Batch:
        """The batch from `start` up to `end_of_log`, its notifications read after `scan_from`
        (`start`, or further when the ids in between are known to hold none of the view's
        topics: `_look`)."""
        notifications = self.application.recorder.select_notifications(
            start=scan_from,
            limit=self.batch_size,
            stop=end_of_log,
            topics=self.view.topics,
            inclusive_of_start=False,
        )
        full = len(notifications) == self.batch_size
        end = notifications[-1].id if full else end_of_log
        decoded: list[Any] = []
        if self.view.decodes:
            # An erased event (its data key destroyed, issue 19) is left out of the batch, its
            # notification with it: the position still moves past it, so neither following nor
            # a rebuild from 0 stops there (`domain.tombstones`).
            mapper = self.application.mapper
            decode: Callable[[Notification], Any] = (
                (lambda n: plain_state(mapper, n)) if self.view.plain else mapper.to_domain_event
            )
            kept: list[Notification] = []
            for notification in notifications:
                try:
                    decoded.append(decode(notification))
                except Exception as exc:
                    if not erased(exc):
                        raise
                    continue
                kept.append(notification)
            if len(kept) < len(notifications):
                notifications = kept
        if self.view.plain:
            return Batch(self.application_name, start, end, notifications, (), decoded)
        return Batch(self.application_name, start, end, notifications, decoded)

    def step(self, horizon: int | None = None) -> int:
        """Apply one batch. Returns how far the position moved (0: nothing to do)."""
        batch = self.next_batch(horizon)
        if batch is None:
            return 0
        self.recorder.process(batch)
        self.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
        return batch.end - batch.start

    def _look(self) -> int:
        """One look of the running loop (`run`); how far the position moved (0: nothing
        recorded). It differs from `step` in two ways, both to spare a write transaction per
        look under a steady stream of events (bench/README.md, "ninth round"):
        - it starts from the position the loop last recorded, not read again: a batch that
          starts elsewhere (another follower moved the position) fails with `PositionMoved`,
          and the position is read again;
        - when the new events hold none of the view's topics (the ledger under a stream of
          access events), the advance over them is kept in memory and recorded once
          IDLE_RECORD_SECONDS have passed since the last record or IDLE_RECORD_IDS ids were
          passed over. Nothing is lost by a crash meanwhile: those ids are read again.
        """
        start = self._known if self._known is not None else self.position()
        self._known = start
        scanned = max(start, self._scanned)
        end_of_log = self.horizon(start)
        if end_of_log > scanned:
            batch = self._batch(start, scanned, end_of_log)
            if batch.notifications:
                return self._record(batch)
            self._scanned = batch.end
        if self._scanned > start and (
            time.monotonic() - self._recorded_at >= IDLE_RECORD_SECONDS
            or self._scanned - start >= IDLE_RECORD_IDS
        ):
            return self._record(Batch(self.application_name, start, self._scanned, (), ()))
        return 0

    def _record(self, batch: Batch) -> int:
        try:
            self.recorder.process(batch)
        except BaseException:
            self._forget()  # moved by another follower, or not stored: read it again
            raise
        self._known = self._scanned = batch.end
        self._recorded_at = time.monotonic()
        self.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
        return batch.end - batch.start

    def _forget(self) -> None:
        self._known, self._scanned = None, START

    def _record_deferred(self) -> None:
        """Record an advance `_look` kept in memory (the loop is ending); best effort."""
        if self._known is not None and self._scanned > self._known:
            batch = Batch(self.application_name, self._known, self._scanned, (), ())
            with suppress(PositionMoved, *store_errors()):
                self._record(batch)

    def catch_up(self, progress: Progress | None = None) -> int:
        """Apply everything stored up to now; returns how far the position moved."""
        moved = 0
        end_of_log = self.horizon(self.position())
        while True:
            try:
                step = self.step(end_of_log)
            except PositionMoved:
                continue
            if step == 0:
                return moved
            moved += step
            if progress is not None:
                progress(self.position(), end_of_log)

    def rebuild(self, progress: Progress | None = None) -> int:
        """Empty the view and apply the whole log again, from position 0."""
        self.recorder.reset(self.application_name)
        self._forget()
        if self.log is not None:
            self.log.info("projection_reset", projection=self.name)
        return self.catch_up(progress)

    def run(
        self, stop: threading.Event, poll_seconds: float = 0.5, waker: Waker | None = None
    ) -> None:
        """Follow until `stop` is set. Failures are logged and retried with backoff: the loop
        outlives a database restart, a lost LISTEN connection, a full disk."""
        waker = waker or PollingWaker()
        backoff = poll_seconds
        self._running = True
        next_look = 0.0
        self._beat()
        try:
            while not stop.is_set():
                if time.monotonic() - self._last_beat >= HEARTBEAT_SECONDS:
                    self._beat()
                pause = next_look - time.monotonic()
                if pause > 0 and stop.wait(pause):
                    break
                next_look = time.monotonic() + GATHER_SECONDS
                try:
                    moved = self._look()
                except PositionMoved:
                    continue
                except store_errors() as exc:
                    self._failed(exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                    continue
                except MapperDeserialisationError as exc:
                    # A stored event fails its integrity check: stop here rather than skip it.
                    self._failed(exc, level="error")
                    stop.wait(_MAX_BACKOFF_SECONDS)
                    continue
                if self.last_error is not None:
                    self.last_error = None
                    if self.log is not None:
                        self.log.info("projection_recovered", projection=self.name)
                backoff = poll_seconds
                if moved >= self.batch_size:
                    next_look = 0.0  # catching up: no pause
                elif moved == 0:
                    waker.wait(poll_seconds, stop)
        finally:
            self._running = False
            self._record_deferred()
            # Stopped: reported so at once, not when the heartbeat goes stale. (A second process
            # following the same view beats again within HEARTBEAT_SECONDS.)
            self._beat(alive=False)
            waker.close()

    def _failed(self, exc: BaseException, level: str = "warning") -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self._beat()  # the error is seen from other processes too (if the store takes it)
        if self.log is not None:
            getattr(self.log, level)(
                "projection_failed", projection=self.name, error_type=type(exc).__name__
            )


def waker_for(application: Application[Any], log: Any = None) -> Waker:
    recorder = application.recorder
    if isinstance(recorder, SQLiteApplicationRecorder) or not _postgres_loaded():
        return PollingWaker()
    from eventsourcing.postgres import PostgresApplicationRecorder

    from projections.follower_postgres import PostgresWaker

    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresWaker(recorder, log)
    return PollingWaker()
