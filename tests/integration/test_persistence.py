"""The store's write path (`gateway.store.persistence`): the recorders that write events,
snapshots and the Merkle log on SQLite take the file's writer lock because of what they are,
not because something replaced their methods at start; and the stored form is the library's
own, so a store written before (with `eventsourcing.sqlite`) opens and reads as it was."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import get_topic

from domain import commands as cmd
from domain.application import CaseTrail
from domain.taxonomy import Purpose
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.store import eventstore, guard
from gateway.store.eventstore import new_key_text, store_environment
from gateway.store.persistence import (
    LockedSQLiteAggregateRecorder,
    LockedSQLiteApplicationRecorder,
    LockedSQLiteViewRecorder,
    SQLiteStore,
)
from gateway.store.writer_lock import lock_for
from tests.conftest import pg_url
from tests.domain.builders import REPORTER
from tests.integration.planted import planted_case


def _report(app: CaseTrail) -> None:
    case_id = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
    app.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-persistence")


def test_sqlite_stores_are_built_by_the_persistence_factory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    env = store_environment(url, [new_key_text()])
    assert env["PERSISTENCE_MODULE"] == eventstore.SQLITE_PERSISTENCE == get_topic(SQLiteStore)
    app = CaseTrail(env=env)
    try:
        assert isinstance(app.factory, SQLiteStore)
        assert isinstance(app.recorder, LockedSQLiteApplicationRecorder)
        assert app.snapshots is not None
        assert isinstance(app.snapshots.recorder, LockedSQLiteAggregateRecorder)
        # One lock per file: events, snapshots and the Merkle log queue together.
        lock = lock_for(app.recorder)
        assert lock is not None
        assert app.recorder.writer_lock is lock
        assert app.snapshots.recorder.writer_lock is lock
    finally:
        app.close()


def test_concurrent_readers_keep_their_sqlite_connections_for_the_next_reads(
    tmp_path: Path,
) -> None:
    """More readers at once than the library's pool of 5 (an API worker serves up to 40): the
    connections they used are kept for the next reads, not opened and closed per read."""
    readers = 12
    app = CaseTrail(env=store_environment(f"sqlite:///{tmp_path / 's.sqlite'}", [new_key_text()]))
    try:
        _report(app)
        pool = app.recorder.datastore.pool  # type: ignore[attr-defined]
        together = threading.Barrier(readers)
        opened: list[int] = []

        def read() -> None:
            with app.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
                together.wait(10)  # every reader holds a connection at the same time
                cursor.execute("SELECT COUNT(*) FROM stored_events")
                opened.append(id(cursor.sqlite_cursor.connection))

        for _ in range(2):
            threads = [threading.Thread(target=read) for _ in range(readers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(20)
            assert pool.num_in_pool >= readers
        # The second round used the connections of the first: none was opened for it.
        assert len(set(opened)) == readers
    finally:
        app.close()


def test_in_memory_sqlite_and_postgres_take_no_writer_lock(pg_schema: str) -> None:
    memory = CaseTrail(env=store_environment("sqlite:///file:m?mode=memory&cache=shared", None))
    try:
        assert isinstance(memory.recorder, LockedSQLiteApplicationRecorder)
        assert memory.recorder.writer_lock is None
        _report(memory)  # writes without a lock file
    finally:
        memory.close()
    postgres = CaseTrail(env=store_environment(pg_url(pg_schema), [new_key_text()]))
    try:
        assert isinstance(postgres.factory, PostgresFactory)  # gated: persistence_postgres
        assert lock_for(postgres.recorder) is None
    finally:
        postgres.close()


def test_a_store_written_by_the_library_recorders_opens_and_reads_as_it_was(
    tmp_path: Path,
) -> None:
    key = new_key_text()
    before = tmp_path / "before.sqlite"
    env = store_environment(f"sqlite:///{before}", [key])
    old = CaseTrail(env={**env, "PERSISTENCE_MODULE": "eventsourcing.sqlite"})
    try:
        _report(old)
        written = old.recorder.select_notifications(start=1, limit=100)
    finally:
        old.close()
    now = CaseTrail(env=env)
    try:
        again = now.recorder.select_notifications(start=1, limit=100)
        assert [(n.id, n.topic, n.state) for n in again] == [
            (n.id, n.topic, n.state) for n in written
        ]
        for notification in again:
            now.mapper.to_domain_event(notification)  # decrypts and authenticates
        _report(now)  # and takes new events
    finally:
        now.close()
    # The same tables as the library makes, to the letter (beside casetrail's own data keys'
    # tables, made at the first event of a case file: gateway/store/datakeys.py).
    fresh = tmp_path / "fresh.sqlite"
    CaseTrail(env=store_environment(f"sqlite:///{fresh}", [key])).close()
    assert _schema(fresh) == _schema(before)


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    return [
        (str(name), str(sql))
        for name, sql in rows
        if not str(name).startswith(("data_key", "sqlite_autoindex_data_key"))
    ]


def test_the_merkle_logs_batches_wait_for_the_writer_lock(tmp_path: Path) -> None:
    app = CaseTrail(env=store_environment(f"sqlite:///{tmp_path / 's.sqlite'}", [new_key_text()]))
    evidence = Evidence(app, Ed25519PrivateKey.generate(), EvidenceSettings())
    try:
        guard.install(app.recorder)
        _report(app)
        follower = evidence.follower()
        assert isinstance(follower.recorder, LockedSQLiteViewRecorder)
        lock = lock_for(app.recorder)
        assert lock is not None and follower.recorder.writer_lock is lock
        done = threading.Event()

        def catch_up() -> None:
            evidence.catch_up()
            done.set()

        with lock:
            thread = threading.Thread(target=catch_up)
            thread.start()
            assert not done.wait(0.3)  # the batch waits for the lock
        assert done.wait(5)
        thread.join()
        assert evidence.merkle.size() == 2
    finally:
        evidence.close()
        app.close()
