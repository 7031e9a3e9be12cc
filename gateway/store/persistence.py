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
from typing import Any

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


class SQLiteStore(SQLiteFactory):
    """The library's SQLite factory with casetrail's recorders (see the module's table)."""

    aggregate_recorder_class = LockedSQLiteAggregateRecorder
    application_recorder_class = LockedSQLiteApplicationRecorder


