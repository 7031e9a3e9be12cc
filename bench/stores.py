"""Stores for benchmarks: fresh SQLite files and PostgreSQL schemas, and the durability settings
each result is printed with.

A fresh store is thrown away afterwards whatever happens: the SQLite file with its WAL, the
PostgreSQL schema with `DROP SCHEMA ... CASCADE`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlparse, urlunparse

import psycopg
from eventsourcing.application import Application
from eventsourcing.postgres import PostgresRecorder
from eventsourcing.sqlite import SQLiteRecorder
from psycopg import sql

from bench.harness import filesystem_of

Store = Literal["sqlite", "postgres"]
DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"

# PRAGMA synchronous answers a number.
_SQLITE_SYNCHRONOUS: Final = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def store_settings(app: Application[Any]) -> dict[str, str]:
    """Durability settings as the application's own connection sees them."""
    recorder = app.recorder
    if isinstance(recorder, SQLiteRecorder):
        # synchronous is per connection, so it is read on one of the pool's, not a new one.
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            journal_mode = str(cursor.fetchone()[0])
            cursor.execute("PRAGMA synchronous")
            synchronous = int(cursor.fetchone()[0])
            cursor.execute("SELECT sqlite_version()")
            version = str(cursor.fetchone()[0])
        return {
            "sqlite_version": version,
            "journal_mode": journal_mode,
            "synchronous": f"{synchronous} ({_SQLITE_SYNCHRONOUS.get(synchronous, '?')})",
            "filesystem": filesystem_of(Path(recorder.datastore.pool.db_name).parent),
        }
    if isinstance(recorder, PostgresRecorder):
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute("SHOW server_version")
            version = _only_value(cursor.fetchone())
            cursor.execute("SHOW synchronous_commit")
            synchronous_commit = _only_value(cursor.fetchone())
            cursor.execute("SHOW fsync")
            fsync = _only_value(cursor.fetchone())
            cursor.execute("SHOW wal_sync_method")
            wal_sync_method = _only_value(cursor.fetchone())
            cursor.execute("SHOW data_directory")
            data_directory = _only_value(cursor.fetchone())
        settings = {
            "server_version": version,
            "synchronous_commit": synchronous_commit,
            "fsync": fsync,
            "wal_sync_method": wal_sync_method,
        }
        # The server's disk is only visible from here when the server runs on this machine.
        if data_directory and os.path.isdir(data_directory):
            settings["filesystem"] = filesystem_of(data_directory)
        return settings
    raise TypeError(f"unexpected recorder {type(recorder).__name__}")


def _only_value(row: Any) -> str:
    # The library's PostgreSQL cursors return rows as dicts.
    return str(next(iter(row.values())))


# --- stores ----------------------------------------------------------------------------------


@contextmanager
def sqlite_store(directory: Path, label: str) -> Iterator[str]:
    path = directory / f"{label}.sqlite"
    try:
        yield f"sqlite:///{path}"
    finally:
        for leftover in directory.glob(f"{label}.sqlite*"):
            leftover.unlink()


def postgres_unreachable(base_url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        with psycopg.connect(base_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def selected_stores(
    postgres_url: str,
    *,
    sqlite: bool = True,
    postgres: bool = True,
    postgres_off_reason: str = "--no-postgres",
) -> tuple[list[Store], dict[str, str]]:
    """The stores a scenario runs on, and why any is skipped (printed as a SKIPPED line):
    PostgreSQL when it is off (`postgres=False`, with `postgres_off_reason`) or unreachable."""
    stores: list[Store] = ["sqlite"] if sqlite else []
    skipped: dict[str, str] = {}
    if not postgres:
        skipped["postgres"] = postgres_off_reason
    elif (reason := postgres_unreachable(postgres_url)) is not None:
        skipped["postgres"] = f"unreachable at {postgres_url}: {reason}"
    else:
        stores.append("postgres")
    for store, why in skipped.items():
        print(f"SKIPPED {store}: {why}")
    return stores, skipped


@contextmanager
def postgres_store(base_url: str, label: str, prefix: str = "bench_append") -> Iterator[str]:
    """A fresh schema for one run, dropped afterwards whatever happens."""
    schema = f"{prefix}_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield urlunparse(urlparse(base_url)._replace(query=f"schema={schema}"))
    finally:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def analyze_postgres(url: str) -> None:
    """Bring the planner's statistics of a store's schema up to date (`ANALYZE` of each of its
    tables), as autovacuum keeps them for a store that grew over months. A store built in bulk
    and measured at once has none: to the planner its tables look empty, and it chose plans
    that grew with the store (`bench.scale`, fifth round: ledger pages and lookups at 1M
    events); and this machine's server runs with autovacuum off."""
    parsed = urlparse(url)
    schema = parse_qs(parsed.query)["schema"][0]
    base = urlunparse(parsed._replace(query=""))
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", [schema]
        ).fetchall()
        for (table,) in tables:
            conn.execute(
                sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            )


@contextmanager
def fresh_store(
    store: Store, label: str, directory: Path, postgres_url: str, prefix: str = "bench_append"
) -> Iterator[str]:
    if store == "sqlite":
        with sqlite_store(directory, label) as url:
            yield url
    else:
        with postgres_store(postgres_url, label, prefix) as url:
            yield url
