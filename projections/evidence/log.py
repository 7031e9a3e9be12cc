"""The persisted Merkle log: a tree over every stored event, kept by following the event store.

It is a read model of `projections.follower`: `MerkleView` folds each batch of stored events
(their stored form; nothing is decrypted) into the tree's tables in the same transaction that
records the follower's position, so a crash leaves all of a batch or none of it. It lives in
the events' own database (the same SQLite file, the same PostgreSQL schema), beside them.

Tables (append-only: see `gateway.store.guard`):

- `casetrail_merkle_nodes (level, idx, hash)`: every perfect node, leaves at level 0. Appending
  a leaf adds one row per node it completes (two on average, log2 n at most), so proofs for
  any past size can be made (`projections.evidence.merkle`).
- `casetrail_merkle_leaves (leaf_index, position)`: which stored event each leaf is.
- `casetrail_merkle_tracking`: the follower's position (the library's tracking table).

Leaf encoding (version 1, canonical, big-endian; `projections.evidence.leaves`), the stored
record exactly as stored, so that checking it needs no decryption key:

    0x01 | position u64 | stream id (16 bytes) | version u64 | topic length u16 | topic (UTF-8)
         | state length u32 | state (the stored, encrypted bytes)

`position` is the event's notification id in the store (SQLite rowid, PostgreSQL
notification_id); a leaf's index in the tree is its rank in the store's order, from 0.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

# The leaf encoding lives in its own light module (offline checks import it without the store's
# drivers); its names stay importable from here, re-exported explicitly.
from projections.evidence.leaves import LEAF_FORMAT as LEAF_FORMAT  # noqa: PLC0414
from projections.evidence.leaves import LeafFormatError as LeafFormatError  # noqa: PLC0414
from projections.evidence.leaves import StoredRecord as StoredRecord  # noqa: PLC0414
from projections.evidence.leaves import encode_leaf as encode_leaf  # noqa: PLC0414
from projections.evidence.merkle import (
    Frontier,
    NodeId,
    NodeReader,
    consistency_proof,
    frontier_nodes,
    inclusion_proof,
    nodes_read,
    tree_root,
)
from projections.follower import (
    Batch,
    Db,
    Dialect,
    Follower,
    Horizon,
    SQLiteViewRecorder,
    View,
)

if TYPE_CHECKING:  # PostgreSQL's classes are imported where a PostgreSQL store is met
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    from projections.follower import AnyViewRecorder

T = TypeVar("T")

NODES: Final = "casetrail_merkle_nodes"
LEAVES: Final = "casetrail_merkle_leaves"
# At most this many (level, idx) pairs per query: well under SQLite's bound variables.
_FETCH_CHUNK: Final = 400


def notification_leaf_hash(notification: Notification) -> bytes:
    return StoredRecord.of(notification).leaf_hash()


# --- the read model ---------------------------------------------------------------------------


class MerkleView(View):
    """Folds stored events into the tree's tables. Keeps the frontier of the tree in memory
    between batches (checked against the stored size each time, reloaded when it differs), so
    a batch costs the new nodes' inserts and no reads of old nodes."""

    name: ClassVar[str] = "casetrail_merkle"
    tables: ClassVar[tuple[str, ...]] = (NODES, LEAVES)
    decodes: ClassVar[bool] = False

    def __init__(self) -> None:
        self._frontier: Frontier | None = None
        self._lock = threading.Lock()

    def create_statements(self, dialect: Dialect) -> list[str]:
        if dialect == "sqlite":
            return [
                f"CREATE TABLE IF NOT EXISTS {{{NODES}}} (level INTEGER NOT NULL, "
                "idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) "
                "WITHOUT ROWID",
                f"CREATE TABLE IF NOT EXISTS {{{LEAVES}}} (leaf_index INTEGER PRIMARY KEY, "
                "position INTEGER NOT NULL UNIQUE)",
            ]
        return [
            f"CREATE TABLE IF NOT EXISTS {{{NODES}}} (level smallint NOT NULL, "
            "idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY (level, idx))",
            f"CREATE TABLE IF NOT EXISTS {{{LEAVES}}} (leaf_index bigint PRIMARY KEY, "
            "position bigint NOT NULL UNIQUE)",
        ]

    def apply(self, db: Db, batch: Batch) -> None:
        if not batch.notifications:
            return
        with self._lock:
            size = stored_size(db)
            frontier = self._frontier
            if frontier is None or frontier.size != size:
                frontier = Frontier.load(size, fetch_reader(db, frontier_nodes(size)))
            frontier = frontier.copy()
            nodes: list[tuple[int, int, bytes]] = []
            leaves: list[tuple[int, int]] = []
            for notification in batch.notifications:
                leaves.append((frontier.size, notification.id))
                nodes.extend(frontier.append(notification_leaf_hash(notification)))
            _insert(db, NODES, ("level", "idx", "hash"), ("smallint", "bigint", "bytea"), nodes)
            _insert(db, LEAVES, ("leaf_index", "position"), ("bigint", "bigint"), leaves)
            # Kept even if the transaction later rolls back: the next batch sees the stored size
            # differ and reloads.
            self._frontier = frontier


def _insert(
    db: Db,
    table: str,
    columns: tuple[str, ...],
    pg_types: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    names = ", ".join(columns)
    if db.dialect == "postgres":
        # One statement per table and batch, whatever the batch size.
        arrays = ", ".join(f"?::{t}[]" for t in pg_types)
        db.execute(
            f"INSERT INTO {{{table}}} ({names}) SELECT * FROM unnest({arrays})",
            [list(column) for column in zip(*rows, strict=True)],
        )
    else:
        db.executemany(
            f"INSERT INTO {{{table}}} ({names}) VALUES ({db.placeholders(len(columns))})", rows
        )


def stored_size(db: Db) -> int:
    rows = db.execute(f"SELECT MAX(leaf_index) AS m FROM {{{LEAVES}}}")
    return 0 if not rows or rows[0]["m"] is None else int(rows[0]["m"]) + 1


def fetch_nodes(db: Db, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    """The stored hashes of the nodes `ids` (those stored), each found by the primary key.

    The ids are joined as a table of values, not matched with `(level, idx) IN (VALUES ...)`:
    SQLite (3.40) answers that form by scanning the whole table, 26 ms at 240,000 nodes and
    growing with the log, for every root and proof (bench/README.md, "eleventh round"); the
    join searches the key once per id on both databases (tests/evidence/test_merkle_log.py
    checks SQLite's plan)."""
    found: dict[NodeId, bytes] = {}
    for start in range(0, len(ids), _FETCH_CHUNK):
        chunk = ids[start : start + _FETCH_CHUNK]
        rows = db.execute(_nodes_query(len(chunk)), [v for node in chunk for v in node])
        found.update({(int(r["level"]), int(r["idx"])): bytes(r["hash"]) for r in rows})
    return found


def _nodes_query(count: int) -> str:
    values = ", ".join("(?, ?)" for _ in range(count))
    return (
        f"WITH wanted (level, idx) AS (VALUES {values}) "
        f"SELECT n.level AS level, n.idx AS idx, n.hash AS hash "
        f"FROM wanted JOIN {{{NODES}}} AS n ON n.level = wanted.level AND n.idx = wanted.idx"
    )


def fetch_reader(db: Db, ids: Sequence[NodeId]) -> NodeReader:
    return _reader_of(fetch_nodes(db, ids))


def _reader_of(found: dict[NodeId, bytes]) -> NodeReader:
    def read(level: int, index: int) -> bytes:
        try:
            return found[(level, index)]
        except KeyError:
            raise LookupError(f"the stored tree has no node ({level}, {index})") from None

    return read


# --- where the tables live, and how to reach them ---------------------------------------------


def _postgres_recorder(recorder: ApplicationRecorder) -> PostgresApplicationRecorder | None:
    """`recorder` if it is PostgreSQL's. Its module is loaded by the library's factory when a
    store's environment names it: when it is not loaded, no recorder can be PostgreSQL's (and a
    SQLite process never imports psycopg, issue 23)."""
    if "eventsourcing.postgres" not in sys.modules:
        return None
    from eventsourcing.postgres import PostgresApplicationRecorder

    return recorder if isinstance(recorder, PostgresApplicationRecorder) else None


class StoreTables:
    """Transactions on the events' own database, for tables kept beside the events."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.datastore: SQLiteDatastore | PostgresDatastore
        if isinstance(recorder, SQLiteApplicationRecorder):
            self.dialect: Dialect = "sqlite"
            self.schema: str | None = None
            self.datastore = recorder.datastore
            self.events_table = recorder.events_table_name
        elif (postgres := _postgres_recorder(recorder)) is not None:
            self.dialect = "postgres"
            self.schema = postgres.datastore.schema
            self.datastore = postgres.datastore
            self.events_table = postgres.events_table_name
        else:
            raise TypeError(f"the evidence tables need SQLite or PostgreSQL, not {recorder!r}")

    @contextmanager
    def reading(self) -> Iterator[Db]:
        with self.datastore.transaction(commit=False) as cursor:
            yield self._db(cursor)

    @contextmanager
    def writing(self) -> Iterator[Db]:
        with self.datastore.transaction(commit=True) as cursor:
            yield self._db(cursor)

    def _db(self, cursor: Any) -> Db:
        # The library wraps SQLite's cursor; `Db` wants the raw one (rows, description).
        raw = cursor.sqlite_cursor if isinstance(cursor, SQLiteCursor) else cursor
        return Db(raw, self.dialect, self.schema)

    def table_exists(self, table: str) -> bool:
        with self.reading() as db:
            if self.dialect == "sqlite":
                rows = db.execute(
                    "SELECT 1 AS found FROM sqlite_master WHERE type='table' AND name=?", (table,)
                )
            else:
                rows = db.execute(
                    "SELECT 1 AS found FROM pg_tables WHERE schemaname=? AND tablename=?",
                    (self.schema, table),
                )
        return bool(rows)


def merkle_recorder(
    recorder: ApplicationRecorder, *, sqlite_class: type[SQLiteViewRecorder] = SQLiteViewRecorder
) -> AnyViewRecorder:
    """The view's recorder, writing to the events' own database. Creates nothing: see
    `create_table`.

    On SQLite it gets connections of its own to the same file: the follower's writer sets
    `synchronous=NORMAL` on the connection it uses (right for a view that can be re-applied),
    and a connection of the application's pool so changed would then commit events without
    waiting for the disk. Close it with `close_recorder` when done. `sqlite_class`: the
    service's takes the file's writer lock (`gateway.store.persistence`)."""
    datastore = StoreTables(recorder).datastore
    if isinstance(datastore, SQLiteDatastore):
        own = SQLiteDatastore(datastore.pool.db_name, pool_size=2, max_overflow=2)
        return sqlite_class(own, view=MerkleView())
    from projections.follower_postgres import PostgresViewRecorder

    return PostgresViewRecorder(datastore, view=MerkleView())


def close_recorder(recorder: AnyViewRecorder) -> None:
    """Close what `merkle_recorder` opened for itself (nothing on PostgreSQL: it shares the
    application's pool)."""
    if isinstance(recorder, SQLiteViewRecorder):
        recorder.datastore.close()


# --- reading the stored tree ----------------------------------------------------------------------


class MerkleLog:
    """The stored tree, read: size, roots and proofs for any size it has reached."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder
        self.tables = StoreTables(recorder)

    def exists(self) -> bool:
        return self.tables.table_exists(NODES) and self.tables.table_exists(LEAVES)

    def create(self) -> None:
        """Create the tree's tables and tracking table if missing (needs the CREATE right)."""
        merkle_recorder(self.recorder).create_table()

    def size(self) -> int:
        with self.tables.reading() as db:
            return stored_size(db)

    def compute(self, compute: Callable[[NodeReader], T]) -> T:
        """Run a computation over the stored nodes, fetching all it reads in one query."""
        wanted = nodes_read(compute)
        with self.tables.reading() as db:
            found = fetch_nodes(db, wanted)
        return compute(_reader_of(found))

    def reader(self) -> NodeReader:
        """Reads nodes one query each: for walks that choose their next node as they go."""

        def read(level: int, index: int) -> bytes:
            with self.tables.reading() as db:
                return _reader_of(fetch_nodes(db, [(level, index)]))(level, index)

        return read

    def root(self, size: int) -> bytes:
        self._check_size(size)
        return self.compute(lambda read: tree_root(size, read))

    def inclusion_proof(self, leaf_index: int, size: int) -> list[bytes]:
        self._check_size(size)
        return self.compute(lambda read: inclusion_proof(leaf_index, size, read))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        self._check_size(second)
        return self.compute(lambda read: consistency_proof(first, second, read))

    def level(self, level: int, count: int, page: int = 5000) -> Iterator[tuple[int, bytes]]:
        """The stored nodes (index, hash) of one level with index < `count`, in index order,
        read a page at a time (for checking every stored node against a recomputed tree)."""
        start = 0
        while start < count:
            with self.tables.reading() as db:
                rows = db.execute(
                    f"SELECT idx, hash FROM {{{NODES}}} WHERE level = ? AND idx >= ? AND idx < ? "
                    "ORDER BY idx LIMIT ?",
                    (level, start, count, page),
                )
            for row in rows:
                yield int(row["idx"]), bytes(row["hash"])
            if len(rows) < page:
                return
            start = int(rows[-1]["idx"]) + 1

    def leaf_index_of(self, position: int) -> int | None:
        with self.tables.reading() as db:
            rows = db.execute(f"SELECT leaf_index FROM {{{LEAVES}}} WHERE position=?", (position,))
        return int(rows[0]["leaf_index"]) if rows else None

    def leaf_indexes(self, positions: Sequence[int]) -> dict[int, int]:
        """position -> leaf index, for the positions the tree holds."""
        found: dict[int, int] = {}
        with self.tables.reading() as db:
            for start in range(0, len(positions), _FETCH_CHUNK):
                chunk = positions[start : start + _FETCH_CHUNK]
                rows = db.execute(
                    f"SELECT leaf_index, position FROM {{{LEAVES}}} "
                    f"WHERE position IN ({db.placeholders(len(chunk))})",
                    chunk,
                )
                found.update({int(r["position"]): int(r["leaf_index"]) for r in rows})
        return found

    def _check_size(self, size: int) -> None:
        stored = self.size()
        if size > stored:
            raise LookupError(f"the stored tree has {stored} leaves, not {size}")


def merkle_follower(
    application: Application[Any],
    *,
    horizon: Horizon | None = None,
    batch_size: int = 500,
    log: Any = None,
    sqlite_class: type[SQLiteViewRecorder] = SQLiteViewRecorder,
) -> Follower:
    """A follower that keeps the tree up to date (its tables must exist: `MerkleLog.create`).

    `horizon`: how far the log is settled. On PostgreSQL, with the store's ordered-appends
    trigger (`gateway.store.guard`), the largest notification id is always settled; without
    it the follower's own `PostgresHorizon` is used, which needs a table lock.
    """
    return Follower(
        application,
        merkle_recorder(application.recorder, sqlite_class=sqlite_class),
        batch_size=batch_size,
        horizon=horizon,
        log=log,
    )
