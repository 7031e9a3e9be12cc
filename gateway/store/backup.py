"""Backups of the event store, taken while the service runs, and restores into an empty store.

A backup is one tar file (mode 0600) of two members:

- `manifest.json`: the format (`casetrail-backup/1`), the store's kind and schema, and figures
  read from the copy itself: how many events, the largest position (notification id), the
  event key ids the events were written with, the signed checkpoints. No key.
- the copy: `events.sqlite` (SQLite's online backup API: one step, one read transaction, so a
  consistent snapshot whatever the writers do meanwhile), or `schema.pgdump` (`pg_dump
  --format=custom` of the store's schema, in a snapshot that the manifest's figures were read
  in too: `pg_export_snapshot()`, then `pg_dump --snapshot`).

The events stay what they are in the store: AES-256-GCM ciphertext. **The keys are not in the
backup** and a backup without them cannot be read: `$CASETRAIL_HOME/keys/event.key` (every event
key the manifest names), `data-keys.kek` (it opens the files' data keys, which the backup holds
wrapped: issue 19), `index.key` (the read models' keys: without it they are rebuilt from
the events under a new one, and the access log's tokens change), `service-signing.key`/`.pub`
(the checkpoints' signer; units check against the `.pub`) and `token-signing.key`/`.pub` must
be backed up separately, offline (ops/README.md, "Backups").

A restore goes only into an empty store (no event): positions, stream versions and the stored
bytes come back exactly as they were, so the Merkle log, the signed checkpoints a unit holds and
every follower's position stay valid. Proven by tests/integration/test_backup.py (a backup during
a write load, restored, `casetrail verify` against a unit's checkpoint file, the read models
rebuilt equal to the source's at the backup's position; SQLite and PostgreSQL).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from gateway.store.eventstore import postgres_environment
from projections.evidence.checkpoints import TABLE as CHECKPOINTS

FORMAT: Final = "casetrail-backup/1"
MANIFEST: Final = "manifest.json"
SQLITE_MEMBER: Final = "events.sqlite"
POSTGRES_MEMBER: Final = "schema.pgdump"
# The key files a backup does not hold (under $CASETRAIL_HOME/keys/), said in every manifest.
KEY_FILES: Final = (
    "event.key",
    "data-keys.kek",
    "index.key",
    "service-signing.key",
    "service-signing.pub",
    "token-signing.key",
    "token-signing.pub",
)
# How long pg_dump / pg_restore may run before the command gives up (a very large store: raise).
TOOL_TIMEOUT_SECONDS: Final = 6 * 3600


class BackupProblem(Exception):
    """A backup or restore cannot be made; the one-line message says what to do."""


@dataclass(frozen=True)
class Manifest:
    format: str
    store: str  # "sqlite" or "postgresql"
    schema: str | None
    events_table: str
    events: int
    position: int  # the largest notification id in the copy (0: none)
    event_key_ids: list[str]  # hex, the key ids named by the stored events' headers
    checkpoints: int
    latest_checkpoint_size: int
    created_at: str
    keys_not_included: list[str]

    def describe(self) -> str:
        return (
            f"{self.events} events (positions up to {self.position}), {self.checkpoints} signed "
            f"checkpoints, event key id(s) {', '.join(self.event_key_ids) or 'none'}"
        )

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise BackupProblem(
                f"not a casetrail backup of format {FORMAT} (found {data.get('format')!r})"
            )
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            raise BackupProblem("the backup's manifest is incomplete") from None


@dataclass(frozen=True)
class Figures:
    events: int
    position: int
    key_ids: list[str]
    checkpoints: int
    latest_checkpoint_size: int


# --- SQLite ---------------------------------------------------------------------------------------


def sqlite_path(database_url: str) -> Path:
    path = database_url.removeprefix("sqlite:///")
    if path.startswith("file:") or not path:
        raise BackupProblem("an in-memory or URI SQLite store cannot be backed up or restored")
    return Path(path)


def _sqlite_figures(connection: sqlite3.Connection, events_table: str) -> Figures:
    events, position = connection.execute(
        f"SELECT count(*), coalesce(max(rowid), 0) FROM {events_table}"  # noqa: S608 (a name)
    ).fetchone()
    key_ids = [
        row[0].lower()
        for row in connection.execute(
            # Format 1 only: a format-2 header names a file's data key, not an event key.
            f"SELECT DISTINCT hex(substr(state, 2, 4)) FROM {events_table} "  # noqa: S608
            "WHERE substr(state, 1, 1) = x'01' ORDER BY 1"
        )
    ]
    checkpoints, latest = 0, 0
    if connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (CHECKPOINTS,)
    ).fetchone():
        checkpoints, latest = connection.execute(
            f"SELECT count(*), coalesce(max(size), 0) FROM {CHECKPOINTS}"  # noqa: S608
        ).fetchone()
    return Figures(int(events), int(position), key_ids, int(checkpoints), int(latest))


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup API, in one step: the copy is one read transaction's snapshot,
    while writers in other processes go on (WAL); then a self-contained file (no -wal)."""
    with (
        closing(sqlite3.connect(source, timeout=60)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        found = dst.execute("PRAGMA integrity_check").fetchone()
        if not found or found[0] != "ok":
            raise BackupProblem(f"the copy of {source} fails SQLite's integrity check: {found}")


# --- PostgreSQL -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: str
    user: str
    password: str
    dbname: str
    schema: str

    @classmethod
    def of(cls, database_url: str) -> PgTarget:
        env = postgres_environment(database_url)
        return cls(
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            dbname=env["POSTGRES_DBNAME"],
            schema=env.get("POSTGRES_SCHEMA", "public"),
        )

    def connect(self, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return psycopg.connect(
                host=self.host,
                port=int(self.port),
                dbname=self.dbname,
                user=self.user,
                password=self.password or None,
                connect_timeout=5,
                **kwargs,
            )
        except psycopg.Error as exc:
            raise BackupProblem(
                f"cannot reach PostgreSQL at {self.host}:{self.port} (database {self.dbname}): "
                f"{type(exc).__name__}; check CASETRAIL_DATABASE_URL and that the server runs"
            ) from None

    def tool_args(self) -> list[str]:
        return ["--host", self.host, "--port", self.port, "--username", self.user]

    def tool_env(self) -> dict[str, str]:
        """The tool's whole environment: no variable of this process (nor an operator's PG*
        one) changes where it connects; the password goes in it, never on its command line."""
        env = {"LC_ALL": "C"}
        if self.password:
            env["PGPASSWORD"] = self.password
        env["PGCONNECT_TIMEOUT"] = "5"
        return env


def _pg_figures(
    connection: psycopg.Connection[tuple[Any, ...]], schema: str, events_table: str
) -> Figures:
    table = sql.Identifier(schema, events_table)
    row = connection.execute(
        sql.SQL("SELECT count(*), coalesce(max(notification_id), 0) FROM {}").format(table)
    ).fetchone()
    if row is None:  # an aggregate always answers one row
        raise BackupProblem(f"no answer counting {events_table}")
    key_ids = [
        str(r[0])
        for r in connection.execute(
            sql.SQL(
                # Format 1 only: a format-2 header names a file's data key, not an event key.
                "SELECT DISTINCT encode(substring(state from 2 for 4), 'hex') FROM {} "
                "WHERE get_byte(state, 0) = 1 ORDER BY 1"
            ).format(table)
        )
    ]
    checkpoints, latest = 0, 0
    if _pg_table_exists(connection, schema, CHECKPOINTS):
        found = connection.execute(
            sql.SQL("SELECT count(*), coalesce(max(size), 0) FROM {}").format(
                sql.Identifier(schema, CHECKPOINTS)
            )
        ).fetchone()
        if found is not None:
            checkpoints, latest = int(found[0]), int(found[1])
    return Figures(int(row[0]), int(row[1]), key_ids, checkpoints, latest)


def _pg_table_exists(
    connection: psycopg.Connection[tuple[Any, ...]], schema: str, table: str
) -> bool:
    found = connection.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table)
    ).fetchone()
    return found is not None


def _tool(bin_dir: Path | None, name: str) -> str:
    found = str(bin_dir / name) if bin_dir else shutil.which(name)
    if not found or not Path(found).exists():
        where = f"in {bin_dir}" if bin_dir else "on PATH"
        raise BackupProblem(
            f"{name} not found {where}: install PostgreSQL's client tools (Debian: "
            "apt-get install postgresql-client, the server's major version or newer) or set "
            "CASETRAIL_PG_BIN_DIR"
        )
    return found


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 (argv built here, no shell)
            argv, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise BackupProblem(f"{what} did not end within {TOOL_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        # The tool's own first line (what it refused); it quotes no row data.
        first = next((line for line in done.stderr.splitlines() if line.strip()), "")
        raise BackupProblem(f"{what} failed (exit {done.returncode}): {first.strip()[:300]}")
    return done.stdout


# --- backup ---------------------------------------------------------------------------------------


def take_backup(
    database_url: str, events_table: str, out: Path, *, pg_bin_dir: Path | None = None
) -> Manifest:
    """Write a backup of the store to `out` (which must not exist); return its manifest."""
    if out.exists():
        raise BackupProblem(f"{out} exists already: give a new file name (nothing is overwritten)")
    if not out.parent.is_dir():
        raise BackupProblem(f"no directory {out.parent} for {out.name}")
    with tempfile.TemporaryDirectory(prefix=".casetrail-backup-", dir=out.parent) as scratch:
        work = Path(scratch)
        if database_url.startswith("sqlite:///"):
            source = sqlite_path(database_url)
            if not source.exists():
                raise BackupProblem(f"no event store at {source} (CASETRAIL_DATABASE_URL)")
            member = work / SQLITE_MEMBER
            _sqlite_copy(source, member)
            with closing(sqlite3.connect(member)) as copy:
                figures = _sqlite_figures(copy, events_table)
            store, schema = "sqlite", None
        else:
            target = PgTarget.of(database_url)
            member = work / POSTGRES_MEMBER
            figures = _pg_dump(target, events_table, member, pg_bin_dir)
            store, schema = "postgresql", target.schema
        manifest = Manifest(
            format=FORMAT,
            store=store,
            schema=schema,
            events_table=events_table,
            events=figures.events,
            position=figures.position,
            event_key_ids=figures.key_ids,
            checkpoints=figures.checkpoints,
            latest_checkpoint_size=figures.latest_checkpoint_size,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            keys_not_included=list(KEY_FILES),
        )
        partial = work / "backup.tar"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as archive:
            text = json.dumps(asdict(manifest), indent=2).encode() + b"\n"
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(text), 0o600
            archive.addfile(info, io.BytesIO(text))
            archive.add(member, arcname=member.name, filter=_private)
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        # The whole file appears at once, or not at all.
        os.link(partial, out)
    return manifest


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


def _pg_dump(target: PgTarget, events_table: str, member: Path, bin_dir: Path | None) -> Figures:
    pg_dump = _tool(bin_dir, "pg_dump")
    with target.connect() as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        with connection.transaction():
            if not _pg_table_exists(connection, target.schema, events_table):
                raise BackupProblem(
                    f"schema '{target.schema}' holds no event table ({events_table}): nothing "
                    "to back up (check CASETRAIL_DATABASE_URL)"
                )
            found = connection.execute("SELECT pg_export_snapshot()").fetchone()
            if found is None:
                raise BackupProblem("PostgreSQL exported no snapshot for pg_dump")
            # The figures and pg_dump see the same snapshot: the transaction stays open until
            # pg_dump has ended.
            figures = _pg_figures(connection, target.schema, events_table)
            _run(
                [
                    pg_dump,
                    *target.tool_args(),
                    "--dbname",
                    target.dbname,
                    "--schema",
                    target.schema,
                    "--format=custom",
                    "--no-password",
                    f"--snapshot={found[0]}",
                    "--file",
                    str(member),
                ],
                target.tool_env(),
                "pg_dump",
            )
    return figures


# --- restore --------------------------------------------------------------------------------------


@contextmanager
def opened_backup(path: Path) -> Iterator[tuple[Manifest, tarfile.TarFile]]:
    """The backup's manifest and its archive, checked for what it must hold."""
    try:
        archive = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by the `with` below)
    except FileNotFoundError:
        raise BackupProblem(f"no backup at {path}") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupProblem(f"{path} is not a casetrail backup ({type(exc).__name__})") from None
    with archive:
        try:
            handle = archive.extractfile(MANIFEST)
            data = json.loads(handle.read()) if handle else None
        except (KeyError, tarfile.TarError, ValueError):
            data = None
        if not isinstance(data, dict):
            raise BackupProblem(f"{path} is not a casetrail backup (no readable {MANIFEST})")
        manifest = Manifest.parse(data)
        member = SQLITE_MEMBER if manifest.store == "sqlite" else POSTGRES_MEMBER
        if member not in archive.getnames():
            raise BackupProblem(f"{path} is incomplete: {member} is missing")
        yield manifest, archive


def read_manifest(path: Path) -> Manifest:
    """The backup's manifest, once the file is found to hold what it must."""
    with opened_backup(path) as (manifest, _):
        return manifest


def _extract(archive: tarfile.TarFile, name: str, into: Path) -> Path:
    source = archive.extractfile(name)
    if source is None:
        raise BackupProblem(f"the backup's {name} is not a file")
    target = into / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        shutil.copyfileobj(source, handle, length=1 << 20)
    return target


def _not_empty(events: int, where: str) -> BackupProblem:
    return BackupProblem(
        f"the store at {where} already holds {events} events: restore only into an empty store "
        "(a new CASETRAIL_DATABASE_URL, or a new, empty schema or file)"
    )


def restore_backup(
    path: Path, database_url: str, events_table: str, *, pg_bin_dir: Path | None = None
) -> Manifest:
    """Restore `path` into the store at `database_url`, which must hold no event. The caller
    holds the store's setup lock (no process creates tables meanwhile)."""
    with opened_backup(path) as (manifest, archive):
        if manifest.events_table != events_table:
            raise BackupProblem(
                f"the backup's event table is {manifest.events_table}, this service's "
                f"{events_table}: restore with the same casetrail"
            )
        check_target(manifest, database_url)
        if database_url.startswith("sqlite:///"):
            _restore_sqlite(manifest, archive, sqlite_path(database_url), events_table)
        else:
            target = PgTarget.of(database_url)
            _restore_postgres(manifest, archive, target, events_table, pg_bin_dir)
    return manifest


def check_target(manifest: Manifest, database_url: str) -> None:
    """The backup can go to that store: the same kind, and on PostgreSQL the same schema name
    (a custom-format dump names its schema; restore it in another database or server)."""
    is_sqlite = database_url.startswith("sqlite:///")
    if is_sqlite != (manifest.store == "sqlite"):
        kind = "SQLite" if is_sqlite else "PostgreSQL"
        raise BackupProblem(
            f"the backup is of a {manifest.store} store, CASETRAIL_DATABASE_URL names a "
            f"{kind} one: restore into a store of the backup's kind"
        )
    if not is_sqlite:
        schema = PgTarget.of(database_url).schema
        if manifest.schema != schema:
            raise BackupProblem(
                f"the backup is of schema '{manifest.schema}' but CASETRAIL_DATABASE_URL names "
                f"schema '{schema}': restore into a schema of the same name (in another "
                "database or on another server: ?schema= in the URL)"
            )


def _check_copy(manifest: Manifest, figures: Figures) -> None:
    if (figures.events, figures.position) != (manifest.events, manifest.position):
        raise BackupProblem(
            f"the backup holds {figures.events} events up to position {figures.position} but "
            f"its manifest says {manifest.events} up to {manifest.position}: the file is damaged"
        )


def _restore_sqlite(
    manifest: Manifest, archive: tarfile.TarFile, target: Path, events_table: str
) -> None:
    if target.exists():
        with closing(sqlite3.connect(target, timeout=60)) as existing:
            has_table = existing.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (events_table,)
            ).fetchone()
            if has_table:
                events = existing.execute(
                    f"SELECT count(*) FROM {events_table}"  # noqa: S608 (a name)
                ).fetchone()[0]
                if events:
                    raise _not_empty(int(events), str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".casetrail-restore-", dir=target.parent) as scratch:
        copy = _extract(archive, SQLITE_MEMBER, Path(scratch))
        with closing(sqlite3.connect(copy)) as src:
            found = src.execute("PRAGMA integrity_check").fetchone()
            if not found or found[0] != "ok":
                raise BackupProblem("the backup's SQLite file fails SQLite's integrity check")
            _check_copy(manifest, _sqlite_figures(src, events_table))
            # The backup API again: the target's pages become the copy's, in one transaction,
            # rowids (the positions) included.
            with closing(sqlite3.connect(target, timeout=60)) as dst:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=WAL")
    os.chmod(target, 0o600)


# A TOC entry of pg_restore --list: "<id>; <catalog oid> <oid> <type> <schema> <name> <owner>".
_TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ SCHEMA ")


def _restore_postgres(
    manifest: Manifest,
    archive: tarfile.TarFile,
    target: PgTarget,
    events_table: str,
    bin_dir: Path | None,
) -> None:
    pg_restore = _tool(bin_dir, "pg_restore")
    with target.connect(autocommit=True) as connection:
        if _pg_table_exists(connection, target.schema, events_table):
            row = connection.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(target.schema, events_table)
                )
            ).fetchone()
            if row and row[0]:
                raise _not_empty(int(row[0]), f"schema '{target.schema}'")
    with tempfile.TemporaryDirectory(prefix="casetrail-restore-") as scratch:
        dump = _extract(archive, POSTGRES_MEMBER, Path(scratch))
        env = target.tool_env()
        listing = _run([pg_restore, "--list", str(dump)], env, "pg_restore --list")
        # The schema exists already (the setup lock made it, or the owner did): everything in
        # it is restored, not the schema itself.
        entries = [line for line in listing.splitlines() if not _TOC_SCHEMA.match(line)]
        selection = Path(scratch) / "restore.list"
        selection.write_text("\n".join(entries) + "\n", encoding="utf-8")
        _run(
            [
                pg_restore,
                *target.tool_args(),
                "--dbname",
                target.dbname,
                "--no-password",
                # Objects an empty service made at its first start are replaced by the backup's.
                "--clean",
                "--if-exists",
                # Owned by whoever restores (the owner role, ops/postgres-roles.sql): run that
                # script again afterwards for the service's grants.
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                "--use-list",
                str(selection),
                str(dump),
            ],
            env,
            "pg_restore",
        )
    # pg_restore brings the rows and the indexes, not the planner's statistics: until
    # autovacuum comes by, a large store's first queries would be planned on none.
    with target.connect(autocommit=True) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (target.schema,)
        ).fetchall()
        for (table,) in tables:
            connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(target.schema, table)))
    with target.connect() as connection, connection.transaction():
        _check_copy(manifest, _pg_figures(connection, target.schema, events_table))
