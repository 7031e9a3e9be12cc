"""Compacting the SQLite event store (`VACUUM`) without moving any event's position.

An event's position is its notification id, on SQLite the row's `rowid` (the library's table
has no INTEGER PRIMARY KEY column). The Merkle log's leaves encode it, every follower (read
models, the Merkle log, the relay) stores it, and a unit's signed checkpoint covers it: an
event whose rowid changed would make `casetrail verify` report tampering.

SQLite documents that VACUUM *may* change the rowids of a table without an INTEGER PRIMARY KEY.
It does not for the event table: that table has an index (its primary key on stream id and
version), whose entries hold each row's rowid and are copied as they are, so the rows keep
theirs (SQLite's transfer of a table with indices copies rowids; only a table with no index
gets new ones). Besides, rows are never deleted, so the rowids run 1..n without a gap, and even
a renumbering in rowid order would give every row its own number back.

`casetrail store vacuum` relies on neither silently: it refuses an event table without an
index, takes the file's writer lock (the service's writers queue behind it), hashes every
(position, stream id, version) before, runs VACUUM, and hashes them again; a difference is
reported (exit 1) with what to do. Proven by tests/evidence/test_vacuum.py: a plain `VACUUM` on a
store with checkpoints, then `casetrail verify --checkpoint` on a unit's file passes; rows with
rowid gaps keep their rowids in the event table's layout; and the same check catches the
renumbering SQLite does in a table without an index.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from gateway.store.writer_lock import WriterLock


class VacuumProblem(Exception):
    """The store cannot be vacuumed; the message says what to do."""


class PositionsMoved(VacuumProblem):
    """VACUUM ran and moved positions (never seen; checked all the same)."""


@dataclass(frozen=True)
class Positions:
    events: int
    last: int
    digest: str


@dataclass(frozen=True)
class VacuumReport:
    before: Positions
    bytes_before: int
    bytes_after: int


def positions(connection: sqlite3.Connection, table: str, upto: int | None = None) -> Positions:
    """A hash of every (position, stream id, version) up to `upto` (all when None), in order."""
    digest = hashlib.sha256()
    count, last = 0, 0
    limit = "" if upto is None else f" WHERE rowid <= {int(upto)}"
    cursor = connection.execute(
        f"SELECT rowid, originator_id, originator_version FROM {table}{limit} "  # noqa: S608
        "ORDER BY rowid"
    )
    for rowid, stream, version in cursor:
        digest.update(f"{rowid}\x00{stream}\x00{version}\n".encode())
        count, last = count + 1, rowid
    return Positions(count, last, digest.hexdigest())


def has_index(connection: sqlite3.Connection, table: str) -> bool:
    found = connection.execute("SELECT count(*) FROM pragma_index_list(?)", (table,)).fetchone()
    return bool(found[0])


def _size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def vacuum(path: Path, table: str) -> VacuumReport:
    """VACUUM the event store at `path`, checking that no position moved (see the module)."""
    if not path.exists():
        raise VacuumProblem(f"no event store at {path} (CASETRAIL_DATABASE_URL)")
    bytes_before = _size(path)
    with closing(sqlite3.connect(path, timeout=120, isolation_level=None)) as connection:
        if not has_index(connection, table):
            raise VacuumProblem(
                f"the event table {table} has no index, so VACUUM could renumber its rowids (the "
                "events' positions) and `casetrail verify` would then report tampering: not "
                "vacuumed"
            )
        # The service's event writers queue behind this lock rather than time out; the other
        # writers of the file (checkpoints, heartbeats) wait in SQLite's busy handler.
        with WriterLock(Path(f"{path}.writer-lock").resolve()):
            before = positions(connection, table)
            connection.execute("VACUUM")
            after = positions(connection, table, upto=before.last)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if after != before:
        raise PositionsMoved(
            f"VACUUM changed the positions of stored events (of {before.events} up to position "
            f"{before.last}): `casetrail verify` will report it and the followers' positions no "
            "longer match; stop the service and restore the last backup (`casetrail restore`)"
        )
    return VacuumReport(before, bytes_before, _size(path))
