"""The store's own defences, installed by the service at startup (idempotently):

- **append-only**: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the event
  table and on the evidence tables (Merkle nodes and leaves, checkpoints, signing-key
  announcements). Nothing in casetrail
  changes or removes a stored row; a refused statement names the table and the operation.
- **ordered appends** (PostgreSQL): inserts into the event table take a transaction-level
  advisory lock before they draw notification ids, so ids commit in the order they are drawn.
  The store's insert function (POSTGRES_ENABLE_DB_FUNCTIONS) does not lock the table the way
  the library's other path does; without this, a reader could see id n+1 before id n commits
  and a follower (the Merkle log) would pass over it for good.

Someone with the rights to drop a trigger can still rewrite history; the signed checkpoints
that units hold are what catch that (`casetrail verify --checkpoint FILE`). In production the
service's database role has INSERT and SELECT only (ops/postgres-roles.sql) and the triggers
are created by the owner (`casetrail store init`); the service then only checks they exist.
"""

from __future__ import annotations

from typing import Final

from eventsourcing.persistence import ApplicationRecorder, PersistenceError

from gateway.store.datakeys import TABLES as DATA_KEY_TABLES
from gateway.store.datakeys import create_statements as data_key_statements
from projections.evidence.checkpoints import TABLE as CHECKPOINTS
from projections.evidence.checkpoints import CheckpointStore
from projections.evidence.log import LEAVES, NODES, MerkleLog, StoreTables
from projections.evidence.rotation import TABLE as ANNOUNCEMENTS
from projections.evidence.rotation import AnnouncementStore
from projections.follower import driver_errors

EVIDENCE_TABLES: Final = (NODES, LEAVES, CHECKPOINTS, ANNOUNCEMENTS)
REFUSE_FUNCTION: Final = "casetrail_refuse_change"
ORDER_FUNCTION: Final = "casetrail_ordered_appends"
APPEND_ONLY_TRIGGER: Final = "casetrail_append_only"
NO_TRUNCATE_TRIGGER: Final = "casetrail_no_truncate"
ORDER_TRIGGER: Final = "casetrail_ordered_appends"


class StoreGuardProblem(Exception):
    """The guards are missing and cannot be installed with this database role."""


def sqlite_trigger_names(table: str) -> tuple[str, str]:
    return f"casetrail_no_update_{table}", f"casetrail_no_delete_{table}"


def append_only_tables(recorder: ApplicationRecorder) -> tuple[str, ...]:
    return (StoreTables(recorder).events_table, *EVIDENCE_TABLES)


def install(recorder: ApplicationRecorder) -> list[str]:
    """Create whatever is missing: the evidence tables, then the triggers. Returns what was
    created (empty when all was in place, in which case nothing was written: a read-only
    store opens fine)."""
    created: list[str] = []
    merkle, checkpoints = MerkleLog(recorder), CheckpointStore(recorder)
    announcements = AnnouncementStore(recorder)
    try:
        if not merkle.exists():
            merkle.create()
            created.append("merkle tables")
        if not checkpoints.exists():
            checkpoints.create()
            created.append(CHECKPOINTS)
        if not _data_key_tables_exist(recorder):
            _create_data_key_tables(recorder)
            created.append("data key tables")
        if not announcements.exists():
            announcements.create()
            created.append(ANNOUNCEMENTS)
        missing_now = missing(recorder)
        if missing_now:
            _create(StoreTables(recorder), recorder, missing_now)
            created += missing_now
    except _store_errors() as exc:
        if _in_place(recorder):
            return created  # another process installed them at the same moment
        raise StoreGuardProblem(
            f"cannot install the store's append-only guards ({type(exc).__name__}: {exc}); "
            "as the database owner run `casetrail store init` (see ops/postgres-roles.sql)"
        ) from None
    return created


def _in_place(recorder: ApplicationRecorder) -> bool:
    try:
        merkle, checkpoints = MerkleLog(recorder), CheckpointStore(recorder)
        return (
            merkle.exists()
            and checkpoints.exists()
            and AnnouncementStore(recorder).exists()
            and not missing(recorder)
        )
    except _store_errors():
        return False


def _data_key_tables_exist(recorder: ApplicationRecorder) -> bool:
    tables = StoreTables(recorder)
    with tables.reading() as db:
        if tables.dialect == "sqlite":
            rows = db.execute("SELECT name AS n FROM sqlite_master WHERE type='table'")
        else:
            rows = db.execute(
                "SELECT tablename AS n FROM pg_tables WHERE schemaname = ?",
                (tables.schema or "public",),
            )
    return set(DATA_KEY_TABLES) <= {r["n"] for r in rows}


def _create_data_key_tables(recorder: ApplicationRecorder) -> None:
    """The data keys' tables (`gateway.store.datakeys`), beside the events, by the owner."""
    tables = StoreTables(recorder)
    with tables.writing() as db:
        postgres = tables.dialect == "postgres"
        schema = (tables.schema or "public") if postgres else None
        for statement in data_key_statements(postgres=postgres, schema=schema):
            db.cursor.execute(statement)


def missing(recorder: ApplicationRecorder) -> list[str]:
    """The triggers (by name, as `table:trigger`) that are not in place."""
    tables = StoreTables(recorder)
    with tables.reading() as db:
        if tables.dialect == "sqlite":
            rows = db.execute(
                "SELECT tbl_name AS t, name AS n FROM sqlite_master WHERE type='trigger'"
            )
        else:
            rows = db.execute(
                "SELECT c.relname AS t, g.tgname AS n FROM pg_trigger g "
                "JOIN pg_class c ON c.oid = g.tgrelid "
                "JOIN pg_namespace s ON s.oid = c.relnamespace "
                "WHERE s.nspname = ? AND NOT g.tgisinternal",
                (tables.schema,),
            )
    present = {f"{r['t']}:{r['n']}" for r in rows}
    return [name for name in wanted(recorder) if name not in present]


def wanted(recorder: ApplicationRecorder) -> list[str]:
    tables = StoreTables(recorder)
    names: list[str] = []
    for table in append_only_tables(recorder):
        if tables.dialect == "sqlite":
            names += [f"{table}:{trigger}" for trigger in sqlite_trigger_names(table)]
        else:
            names += [f"{table}:{APPEND_ONLY_TRIGGER}", f"{table}:{NO_TRUNCATE_TRIGGER}"]
    if tables.dialect == "postgres":
        names.append(f"{tables.events_table}:{ORDER_TRIGGER}")
    return names


def appends_are_ordered(recorder: ApplicationRecorder) -> bool:
    """True on SQLite (one writer at a time), and on PostgreSQL when the ordering trigger is
    in place: then the largest notification id is always settled."""
    tables = StoreTables(recorder)
    if tables.dialect == "sqlite":
        return True
    return f"{tables.events_table}:{ORDER_TRIGGER}" not in missing(recorder)


def _create(tables: StoreTables, recorder: ApplicationRecorder, names: list[str]) -> None:
    with tables.writing() as db:
        if tables.dialect == "postgres":
            schema = _quote(tables.schema or "public")
            db.cursor.execute(
                f"CREATE OR REPLACE FUNCTION {schema}.{REFUSE_FUNCTION}() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
                "'casetrail: %.% is append-only: % refused', "
                "TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege'; "
                "END $$"
            )
            db.cursor.execute(
                f"CREATE OR REPLACE FUNCTION {schema}.{ORDER_FUNCTION}() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                # Held to the end of the transaction: the next insert draws its ids only after
                # this one has committed or rolled back.
                "PERFORM pg_advisory_xact_lock(TG_RELID::bigint); RETURN NULL; END $$"
            )
        for name in names:
            table, trigger = name.split(":", 1)
            db.cursor.execute(_trigger_sql(tables, table, trigger))


def _trigger_sql(tables: StoreTables, table: str, trigger: str) -> str:
    if tables.dialect == "sqlite":
        operation = "UPDATE" if trigger.startswith("casetrail_no_update_") else "DELETE"
        return (
            f"CREATE TRIGGER IF NOT EXISTS {trigger} BEFORE {operation} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'casetrail: {table} is append-only: {operation} "
            "refused'); END"
        )
    schema = _quote(tables.schema or "public")
    target = f"{schema}.{_quote(table)}"
    if trigger == APPEND_ONLY_TRIGGER:
        return (
            f"CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {target} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{REFUSE_FUNCTION}()"
        )
    if trigger == NO_TRUNCATE_TRIGGER:
        return (
            f"CREATE TRIGGER {trigger} BEFORE TRUNCATE ON {target} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{REFUSE_FUNCTION}()"
        )
    return (
        f"CREATE TRIGGER {trigger} BEFORE INSERT ON {target} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{ORDER_FUNCTION}()"
    )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _store_errors() -> tuple[type[Exception], ...]:
    # psycopg's only when it is loaded: a SQLite process never imports it (issue 23).
    return (PersistenceError, *driver_errors())
