"""The store's write path: which recorders write events, snapshots and the Merkle log, and
what each takes before it writes.

The Application finds its persistence through `PERSISTENCE_MODULE` in its environment
(`gateway.store.eventstore.store_environment` sets it, for every store casetrail opens). The
library resolves that topic to a module holding one factory, or to a factory class; casetrail
names a class of this module (`eventstore.SQLITE_PERSISTENCE`):

- SQLite: `SQLiteStore`, the library's factory with `LockedSQLiteApplicationRecorder` (events,
  access events, refusals) and `LockedSQLiteAggregateRecorder` (snapshots): each
  `insert_events` takes the file's writer lock first (`gateway.store.writer_lock`).
- PostgreSQL: `gateway.store.persistence_postgres.PostgresStore` (a module of its own, so that
  a command on an SQLite store never imports PostgreSQL's driver), the library's factory whose
  datastore takes its connections through an outage gate (`gateway.store.outages`: a prompt
  503 while the server is away, and recovery without a restart); the server queues writers
  itself, and ids commit in the order they are drawn through the store's trigger
  (`gateway.store.guard`).

The Merkle log's follower writes to the events' own SQLite file too: its batches go through
`LockedSQLiteViewRecorder` (chosen by `gateway.evidence.maintainer`), so that a batch waits its
turn in the queue rather than in SQLite's busy handler.

Nothing else changes: the same tables, statements and stored bytes as the library's own
recorders (a store written before opens as it was). Proven by
`tests/integration/test_command_commits.py` (`test_sqlite_inserts_take_the_writer_lock...`,
the queue across threads and processes) and `tests/integration/test_persistence.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Final

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteDatastore,
    SQLiteFactory,
)

# None (no lock) for PostgreSQL and in-memory SQLite: see `lock_for`.
from gateway.store.writer_lock import WriterLock, lock_for
from projections.follower import Batch, SQLiteViewRecorder, View


class LockedSQLiteAggregateRecorder(SQLiteAggregateRecorder):
    """The snapshot table's recorder: inserts take the file's writer lock."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self.writer_lock: WriterLock | None = lock_for(self)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.writer_lock or nullcontext():
            return super().insert_events(stored_events, **kwargs)


class LockedSQLiteApplicationRecorder(LockedSQLiteAggregateRecorder, SQLiteApplicationRecorder):
    """The event table's recorder: inserts (events, access events, refusals) take the file's
    writer lock, as the snapshots' do (the insert is `LockedSQLiteAggregateRecorder`'s, the
    rest the library's `SQLiteApplicationRecorder`)."""


class LockedSQLiteViewRecorder(SQLiteViewRecorder):
    """A view kept in the events' own SQLite file (the Merkle log): each batch takes the
    file's writer lock. A batch that waited in SQLite's busy handler made the API's writers
    sleep in theirs."""

    def __init__(self, datastore: SQLiteDatastore, *, view: View, **kwargs: Any) -> None:
        super().__init__(datastore, view=view, **kwargs)
        self.writer_lock: WriterLock | None = lock_for(self)

    def process(self, batch: Batch) -> None:
        with self.writer_lock or nullcontext():
            super().process(batch)


# How many SQLite connections a process keeps open for reuse, and how many more it may open at
# once. The library keeps 5: an API worker serves up to 40 requests at once (the threadpool's
# default), so with more than 5 readers at a time every further read opened a connection (the
# file, its schema) and closed it again, about a third of a read's CPU at 16 readers
# (bench/README.md, "reads", fifth round). Each kept connection costs its page cache, up to
# SQLite's default 2 MB, as it fills.
SQLITE_POOL_SIZE: Final = 16
SQLITE_MAX_OVERFLOW: Final = 32


class SQLiteStore(SQLiteFactory):
    """The library's SQLite factory with casetrail's recorders (see the module's table), and a
    larger pool of connections (`SQLITE_POOL_SIZE`)."""

    aggregate_recorder_class = LockedSQLiteAggregateRecorder
    application_recorder_class = LockedSQLiteApplicationRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        # The library's factory builds its pool with fixed sizes; the pool reads both on every
        # use, so they are set here, before any connection is issued.
        pool = self.datastore.pool
        pool.pool_size = SQLITE_POOL_SIZE
        pool.max_overflow = SQLITE_MAX_OVERFLOW


