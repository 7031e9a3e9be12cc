"""casetrail's read models together: the views, their followers, and the threads that run them.

`ReadModels` opens the views (`ledger`, `reports`, `accesses`) in one datastore, gives each a
`Follower` of the application's log, and runs them in background threads (`start`/`stop`) or on
demand (`catch_up`, `rebuild`). The API holds one (embedded followers), as does
`casetrail projections run` (a follower process of its own).

Where the tables live: a datastore built from a store environment (see
`gateway.bootstrap.readmodel_config`): by default a SQLite file of their own next to the events'
(`$CASETRAIL_HOME/readmodels.sqlite`), or the events' own PostgreSQL database and schema.
Either can be deleted and rebuilt from the events at any time.

Their keys (`projections.sealed.ReadModelKeys`, derived from the index key): the views seal
and hash with them, and every reading transaction carries them (`KeyedDb`).

Schema changes rebuild: each view has a `SCHEMA` version, stored with the key id in
`readmodel_schema`. When a view opens on a store whose version or key id differs (a store made
by earlier code, which held school, village... in clear; or another key), its tables and its
position are dropped in one transaction and made again, empty, and its follower refills them
from the event store. On SQLite the dropped pages are overwritten with zeros (`secure_delete`)
and the WAL is truncated, so that no old plaintext stays in the file. Proven by
`tests/projections/test_readmodel_privacy.py` (an old-layout store with planted plaintext
opens, is rebuilt, and its bytes no longer hold the planted values).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from projections.blind_index import BlindIndex
from projections.compliance.access_log import AccessLogView
from projections.follower import (
    DEFAULT_BATCH_SIZE,
    Db,
    Follower,
    Horizon,
    PostgresViewRecorder,
    Progress,
    SQLiteViewRecorder,
    Status,
    View,
    open_datastore,
    waker_for,
)
from projections.ledger.reports import ReportsView
from projections.ledger.view import LedgerView
from projections.ledger.worklists import DEFAULT_CONSULTATION_DEADLINE
from projections.screening.view import ScreeningView
from projections.sealed import KeyedDb, ReadModelKeys

VIEW_NAMES: Final = ("ledger", "reports", "screening", "accesses")
_JOIN_SECONDS: Final = 10.0
# The layout of each view's tables; a change makes stores built before rebuild the view.
# 2: school, village, units, gender, age, masks and issues sealed or hashed (none in clear);
# 3: the units of assignments too.
# 4: assignments carry the duty cycle: received, declined, result (issue 14).
# 5: receipts from the unit clients' `NoticeReceived` facts (issue 14).
# 6: corrections (masks and blind indexes follow them) and transfers (`ledger_transfers`),
#    issue 17.
# 7: `ledger_counts`, the pages' totals kept per street, village, reporting unit, risk and
#    status (issue 23): a store of layout 6 has none, and rebuilds to fill them.
# Reports 3: the duty cycle's events (report_duty).
# Reports 4: transfers and corrected villages move a file; interventions by protection
#    function (`report_interventions`), issue 17.
# Screening 1: the roster, campaigns, visits and letters (issue 17).
# Screening 2: case files' letters follow corrected ID numbers and transfers (issue 17).
# Accesses 1: the access log (issue 15, projections/compliance/access_log.py).
SCHEMA: Final = {"ledger": 7, "reports": 4, "screening": 2, "accesses": 1}
SCHEMA_TABLE: Final = "readmodel_schema"


@dataclass(frozen=True)
class ReadModelConfig:
    """`env` names the read models' database the way a store environment does
    (`PERSISTENCE_MODULE`, `SQLITE_DBNAME` or `POSTGRES_*`)."""

    env: Mapping[str, str]
    index_key: bytes
    batch_size: int = DEFAULT_BATCH_SIZE
    poll_seconds: float = 0.5
    consultation_deadline: timedelta = DEFAULT_CONSULTATION_DEADLINE


class UnknownView(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.message = f"no projection named {name!r}; the projections are: {', '.join(VIEW_NAMES)}"

    def __str__(self) -> str:
        return self.message


class KeyedSQLiteViewRecorder(SQLiteViewRecorder):
    """A view's recorder whose reading transactions carry the read models' keys."""

    def __init__(self, datastore: SQLiteDatastore, *, view: View, keys: ReadModelKeys) -> None:
        super().__init__(datastore, view=view)
        self.keys = keys

    @contextmanager
    def reading(self) -> Iterator[KeyedDb]:
        with super().reading() as db:
            yield KeyedDb.of(db, self.keys)


class KeyedPostgresViewRecorder(PostgresViewRecorder):
    """A view's recorder whose reading transactions carry the read models' keys."""

    def __init__(self, datastore: PostgresDatastore, *, view: View, keys: ReadModelKeys) -> None:
        super().__init__(datastore, view=view)
        self.keys = keys

    @contextmanager
    def reading(self) -> Iterator[KeyedDb]:
        with super().reading() as db:
            yield KeyedDb.of(db, self.keys)


KeyedRecorder = KeyedSQLiteViewRecorder | KeyedPostgresViewRecorder


def keyed_recorder(
    datastore: SQLiteDatastore | PostgresDatastore,
    view: View,
    keys: ReadModelKeys,
    log: Any = None,
) -> KeyedRecorder:
    """The recorder of `view`, its tables made (again, empty, if their layout or key changed)."""
    version = SCHEMA[view.name]
    previous = _ensure_schema(datastore, view, f"{version}:{keys.key_id}")
    if previous is not None and log is not None:
        # Why a view's lag jumps to the whole log: it is being (re)built. The key id is not
        # logged, only whether it changed. A store without a layout row is new, or was made
        # before layouts were recorded.
        before, _, key_id = previous.partition(":")
        getattr(log, "warning" if before else "info")(
            "projection_layout_set",
            projection=view.name,
            layout_before=before or None,
            layout=version,
            key_changed=bool(before) and key_id != keys.key_id,
        )
    recorder: KeyedRecorder
    if isinstance(datastore, SQLiteDatastore):
        recorder = KeyedSQLiteViewRecorder(datastore, view=view, keys=keys)
    else:
        recorder = KeyedPostgresViewRecorder(datastore, view=view, keys=keys)
    recorder.create_table()
    return recorder


@contextmanager
def _schema_transaction(datastore: SQLiteDatastore | PostgresDatastore) -> Iterator[Db]:
    """One write transaction that no other process checking the schema runs beside."""
    if isinstance(datastore, PostgresDatastore):
        with datastore.transaction(commit=True) as cursor:
            db = Db(cursor, "postgres", datastore.schema)
            # Serialises the check of this schema's views across processes (and keeps two
            # `CREATE TABLE IF NOT EXISTS` of the same table from racing).
            db.execute(
                "SELECT pg_advisory_xact_lock(hashtext(?))", (f"{SCHEMA_TABLE}:{db.schema}",)
            )
            yield db
        return
    with datastore.get_connection(commit=True) as connection:
        lite = connection.cursor().sqlite_cursor
        secure = (lite.execute("PRAGMA secure_delete").fetchone() or (0,))[0]
        # Pages freed by dropping tables are zeroed, not left with their old contents.
        lite.execute("PRAGMA secure_delete=ON")
        try:
            lite.execute("BEGIN IMMEDIATE")
            try:
                yield Db(lite, "sqlite")
                connection.commit()
            except BaseException:
                with suppress(sqlite3.Error):
                    connection.rollback()
                raise
        finally:
            with suppress(sqlite3.Error):
                lite.execute(f"PRAGMA secure_delete={int(secure)}")
            lite.close()


def _ensure_schema(
    datastore: SQLiteDatastore | PostgresDatastore, view: View, fingerprint: str
) -> str | None:
    """Drop `view`'s tables and position when the store holds another layout or key (a store
    made before this check holds no row for the view: its tables are dropped too). Returns
    None when nothing changed, else the fingerprint found ("" when there was none)."""
    with _schema_transaction(datastore) as db:
        # Only when missing: a role without the schema's CREATE right cannot run even the
        # IF NOT EXISTS form (ops/postgres-roles.sql; the owner's `casetrail store init` made it).
        if not _table_exists(db, SCHEMA_TABLE):
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {{{SCHEMA_TABLE}}} "
                "(view_name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)"
            )
        found = db.execute(
            f"SELECT fingerprint FROM {{{SCHEMA_TABLE}}} WHERE view_name = ?", (view.name,)
        )
        if found and found[0]["fingerprint"] == fingerprint:
            return None
        for table in (*reversed(view.tables), f"{view.name}_tracking"):
            db.execute(f"DROP TABLE IF EXISTS {{{table}}}")
        for statement in view.create_statements(db.dialect):
            db.execute(statement)
        db.execute(
            f"INSERT INTO {{{SCHEMA_TABLE}}} VALUES (?, ?) "
            "ON CONFLICT (view_name) DO UPDATE SET fingerprint = excluded.fingerprint",
            (view.name, fingerprint),
        )
    if isinstance(datastore, SQLiteDatastore):
        _truncate_wal(datastore)
    return str(found[0]["fingerprint"]) if found else ""


def _table_exists(db: Db, table: str) -> bool:
    if db.dialect == "sqlite":
        rows = db.execute(
            "SELECT 1 AS found FROM sqlite_master WHERE type='table' AND name=?", (table,)
        )
    else:
        rows = db.execute(
            "SELECT 1 AS found FROM pg_tables WHERE schemaname=? AND tablename=?",
            (db.schema, table),
        )
    return bool(rows)


def _truncate_wal(datastore: SQLiteDatastore) -> None:
    """Copy the WAL into the database and truncate it: the old pages' frames go with it.
    Best effort: a reader holding an old snapshot keeps the WAL until the next checkpoint."""
    with suppress(sqlite3.Error), datastore.get_connection(commit=False) as connection:
        connection.cursor().sqlite_cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class ReadModels:
    def __init__(
        self,
        application: Application[Any],
        config: ReadModelConfig,
        log: Any = None,
        horizon: Horizon | None = None,
    ) -> None:
        """`horizon`: how far the log is settled (see `projections.follower.Horizon`); by
        default each follower's own, which on PostgreSQL may briefly lock the events table."""
        self.application = application
        self.config = config
        self.log = log
        self.blind_index = BlindIndex(config.index_key)
        self.keys = ReadModelKeys(config.index_key)
        self.datastore = open_datastore(config.env)
        views: list[View] = [
            LedgerView(self.blind_index, self.keys),
            ReportsView(self.keys),
            ScreeningView(self.blind_index, self.keys),
            AccessLogView(self.keys),
        ]
        try:
            self.recorders: dict[str, KeyedRecorder] = {
                view.name: keyed_recorder(self.datastore, view, self.keys, log) for view in views
            }
            self.followers = {
                name: Follower(
                    application, recorder, batch_size=config.batch_size, horizon=horizon, log=log
                )
                for name, recorder in self.recorders.items()
            }
        except BaseException:
            self.datastore.close()
            raise
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def ledger(self) -> KeyedRecorder:
        return self.recorders["ledger"]

    @property
    def reports(self) -> KeyedRecorder:
        return self.recorders["reports"]

    @property
    def screening(self) -> KeyedRecorder:
        return self.recorders["screening"]

    @property
    def accesses(self) -> KeyedRecorder:
        """The access log (issue 15): read with `projections.compliance.access_log.search`."""
        return self.recorders["accesses"]

    @property
    def consultation_deadline(self) -> timedelta:
        return self.config.consultation_deadline

    def follower(self, name: str) -> Follower:
        try:
            return self.followers[name]
        except KeyError:
            raise UnknownView(name) from None

    # --- running ------------------------------------------------------------------------------

    def start(self, poll_seconds: float | None = None) -> None:
        """Follow the log in one background thread per view, until `stop()`."""
        if self._threads:
            return
        self._stop.clear()
        for follower in self.followers.values():
            thread = threading.Thread(
                target=follower.run,
                args=(
                    self._stop,
                    poll_seconds or self.config.poll_seconds,
                    waker_for(self.application, self.log),
                ),
                name=f"projection-{follower.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        if self.log is not None:
            self.log.info("projections_started", projections=list(self.followers))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(_JOIN_SECONDS)
        self._threads = []

    def catch_up(self) -> dict[str, int]:
        """Bring every view up to the store's current end; returns how far each moved."""
        return {name: follower.catch_up() for name, follower in self.followers.items()}

    def rebuild(self, name: str, progress: Progress | None = None) -> int:
        return self.follower(name).rebuild(progress)

    def status(self) -> list[Status]:
        return [follower.status() for follower in self.followers.values()]

    def close(self) -> None:
        self.stop()
        self.datastore.close()
