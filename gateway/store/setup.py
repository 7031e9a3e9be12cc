"""Creating the store's tables once, whatever the number of processes starting at once.

Every process that opens the store (API workers, the followers' child, the relay, `casetrail
store init`, `keys init`) creates what is missing: the event and snapshot tables and the
library's insert function, the append-only triggers, the Merkle log, the read models. On
PostgreSQL two sessions doing that at the same instant fail ("tuple concurrently updated": the
library replaces its function on every start; "duplicate key ... pg_type": two CREATE TABLE IF
NOT EXISTS of one table). So all of it happens under `setup_lock()`: a PostgreSQL advisory lock
keyed by the schema (the same key in every process of a deployment), or, on SQLite, an
exclusive `flock` on a file beside the store. Whoever comes second finds everything there.

`setup_lock()` also creates a missing PostgreSQL schema when the role may, or stops with a
one-line `StoreSetupProblem` saying how to create it.

Proven by tests/integration/test_first_start.py: four workers on a fresh schema, ten starts in
a row, and two `casetrail store init` at the same instant.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlparse

from gateway.store.eventstore import postgres_environment

if TYPE_CHECKING:
    import psycopg

# How long a process waits for another one's creation before it gives up (one line, exit 2).
LOCK_TIMEOUT_SECONDS: Final = 120


class StoreSetupProblem(Exception):
    """The store cannot be prepared; the message says what to do."""


def setup_lock_key(schema: str) -> int:
    """The advisory lock's key: a signed 64-bit number from the schema's name."""
    digest = hashlib.sha256(f"casetrail/setup/{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def setup_lock(database_url: str) -> Iterator[None]:
    """Hold the deployment's setup lock (see the module's docstring) for the block."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        if path.startswith("file:"):  # a URI filename: an in-memory store has nothing to share
            uri = urlparse(path)
            if "mode=memory" in uri.query or not uri.path:
                yield
                return
            path = uri.path
        with _file_lock(Path(path)):
            yield
        return
    # psycopg only here, for a PostgreSQL store: a SQLite process never loads it (issue 23).
    import psycopg
    from psycopg import sql

    env = postgres_environment(database_url)
    schema = env.get("POSTGRES_SCHEMA", "public")
    try:
        conn = psycopg.connect(
            host=env["POSTGRES_HOST"],
            port=int(env["POSTGRES_PORT"]),
            dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise StoreSetupProblem(
            f"cannot reach PostgreSQL at {env['POSTGRES_HOST']}:{env['POSTGRES_PORT']} "
            f"(database {env['POSTGRES_DBNAME']}): {type(exc).__name__}; check "
            "CASETRAIL_DATABASE_URL and that the server runs"
        ) from None
    with conn:
        key = setup_lock_key(schema)
        try:
            conn.execute(
                sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{LOCK_TIMEOUT_SECONDS}s"))
            )
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            raise StoreSetupProblem(
                f"another process has been preparing schema '{schema}' for more than "
                f"{LOCK_TIMEOUT_SECONDS} s; check for a stuck `casetrail` process, then start again"
            ) from None
        try:
            _ensure_schema(conn, schema, env["POSTGRES_USER"])
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _ensure_schema(conn: psycopg.Connection[tuple[object, ...]], schema: str, user: str) -> None:
    import psycopg
    from psycopg import sql

    found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if found:
        return
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    except psycopg.errors.InsufficientPrivilege:
        raise StoreSetupProblem(
            f"schema '{schema}' does not exist and role '{user}' may not create it: as the "
            f"database owner run CREATE SCHEMA {schema} AUTHORIZATION {user}; (see "
            "ops/postgres-roles.sql), then start again"
        ) from None


@contextmanager
def _file_lock(store: Path) -> Iterator[None]:
    """An exclusive lock on `<store>.setup-lock`, released when the block ends (or the process
    dies: the kernel drops a dead process's flock)."""
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{store}.setup-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
