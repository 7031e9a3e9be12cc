"""Commands share durable commits; a command that lost its case's race is told so alone; long
case files load from encrypted snapshots; SQLite writers queue on one lock across processes.
Real SQLite files (and PostgreSQL where marked), no mocks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError

from domain import commands as cmd
from domain.application import SNAPSHOT_EVERY, CaseTrail, replay
from domain.case import Case
from domain.clock import local_today
from domain.group_commit import GroupCommit
from domain.retention import DataErased
from gateway.store.eventstore import EventIntegrityError, new_key_text, store_environment
from gateway.store.writer_lock import WriterLock, lock_for
from tests.conftest import PG_DSN, pg_url
from tests.domain.builders import COORDINATOR, REPORTER
from tests.integration.planted import planted_case


def _app(url: str, **extra: str) -> CaseTrail:
    return CaseTrail(env={**store_environment(url, [new_key_text()]), **extra})


def _follow_up(n: int) -> cmd.RecordFollowUp:
    # Today: never before the clue was found (the aggregate refuses that), never ahead.
    return cmd.RecordFollowUp(visited_on=local_today(), notes=f"第{n}次随访,情况稳定")


def _change(app: CaseTrail, case_id: UUID, n: int) -> None:
    app.change_case(
        case_id,
        COORDINATOR,
        "record_follow_up",
        lambda c: c.record_follow_up(_follow_up(n), by=COORDINATOR.as_record()),
    )


def test_concurrent_commands_share_commits_and_every_change_is_kept(tmp_path: Path) -> None:
    app = _app(f"sqlite:///{tmp_path / 'c.sqlite'}")
    try:
        cases = [
            app.report_clue(cmd.ReportClue.model_validate(planted_case(seed=n).body), REPORTER)
            for n in range(8)
        ]
        errors: list[BaseException] = []

        def worker(case_id: UUID, first: int) -> None:
            try:
                for n in range(first, first + 5):
                    _change(app, case_id, n)
            except BaseException as exc:  # re-raised in the test thread
                errors.append(exc)

        # Two threads per case: they queue on the case's lock; eight cases commit together.
        threads = [
            threading.Thread(target=worker, args=(case_id, first))
            for case_id in cases
            for first in (0, 100)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        committer = app.command_commits
        assert committer is not None
        assert committer.events == 8 + 8 * 10
        assert committer.batches < committer.events  # some commits held several commands
        for case_id in cases:
            case = app._get_case(case_id)
            assert case.version == 11
            assert len(case.follow_ups) == 10
    finally:
        app.close()


def test_a_unit_that_fails_fails_alone_and_the_rest_of_its_batch_is_stored() -> None:
    stored: list[list[str]] = []
    gate = threading.Event()

    def save(events: Sequence[Any]) -> None:
        gate.wait(5)
        if "conflict" in events:
            raise IntegrityError("version taken")
        stored.append(list(events))

    committer = GroupCommit(
        save, max_wait=0.05, name="test-commits", isolate_failures=(IntegrityError,)
    )
    outcomes: dict[str, BaseException | None] = {}

    def submit(unit: tuple[str, ...]) -> None:
        try:
            committer.record_all(unit)
            outcomes[unit[0]] = None
        except BaseException as exc:
            outcomes[unit[0]] = exc

    first = threading.Thread(target=submit, args=(("warm-up",),))
    first.start()
    time.sleep(0.05)
    # These three queue behind the first commit and are committed as one batch.
    units = [("a1", "a2"), ("conflict",), ("c1",)]
    threads = [threading.Thread(target=submit, args=(u,)) for u in units]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in [first, *threads]:
        thread.join(5)
    committer.close()
    assert outcomes["warm-up"] is None
    assert outcomes["a1"] is None
    assert outcomes["c1"] is None
    assert isinstance(outcomes["conflict"], IntegrityError)
    assert ["a1", "a2"] in stored
    assert ["c1"] in stored
    assert all("conflict" not in s for s in stored)


def test_any_other_failure_fails_every_unit_of_its_batch_without_a_retry() -> None:
    """After a lost connection the batch may have been committed: saving its units again
    would report a stored command as a lost race, and the command would be applied twice."""
    calls: list[list[str]] = []
    gate = threading.Event()

    def save(events: Sequence[Any]) -> None:
        gate.wait(5)
        calls.append(list(events))
        raise OSError("connection lost")

    # One committer, so that the three queue as one batch behind the first commit.
    committer = GroupCommit(
        save,
        max_wait=0.05,
        name="test-commits",
        isolate_failures=(IntegrityError,),
        committers=1,
    )
    outcomes: dict[str, BaseException | None] = {}

    def submit(unit: tuple[str, ...]) -> None:
        try:
            committer.record_all(unit)
            outcomes[unit[0]] = None
        except BaseException as exc:
            outcomes[unit[0]] = exc

    first = threading.Thread(target=submit, args=(("warm-up",),))
    first.start()
    time.sleep(0.05)
    threads = [threading.Thread(target=submit, args=(u,)) for u in [("a",), ("b",), ("c",)]]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in [first, *threads]:
        thread.join(5)
    committer.close()
    assert all(isinstance(outcomes[k], OSError) for k in ("warm-up", "a", "b", "c"))
    assert sorted(len(c) for c in calls) == [1, 3]  # the warm-up, then one batch of three


def test_a_lost_race_between_two_applications_is_retried_not_lost(tmp_path: Path) -> None:
    """Two applications on one file stand for two API workers: the version check decides, the
    loser retries on the case as it now stands, and no change is lost."""
    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    first = _app(url)
    second = CaseTrail(env=dict(first.env))
    try:
        case_id = first.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
        errors: list[BaseException] = []

        def worker(app: CaseTrail, base: int) -> None:
            try:
                for n in range(base, base + 15):
                    _change(app, case_id, n)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=worker, args=(app, base))
            for app, base in ((first, 0), (second, 100))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        case = first._get_case(case_id)
        assert case.version == 31
        assert sorted(int(f["notes"][1:].split("次")[0]) for f in case.follow_ups) == [
            *range(15),
            *range(100, 115),
        ]
    finally:
        second.close()
        first.close()


@pytest.fixture(params=["sqlite", "postgres"])
def snapshot_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'snap.sqlite'}"
    schema: str = request.getfixturevalue("pg_schema")
    return f"{PG_DSN}?schema={schema}"


def test_a_long_case_loads_from_its_snapshot_as_it_would_from_its_events(
    snapshot_url: str,
) -> None:
    app = _app(snapshot_url)
    try:
        planted = planted_case()
        case_id = app.report_clue(cmd.ReportClue.model_validate(planted.body), REPORTER)
        for n in range(2 * SNAPSHOT_EVERY + 3):
            _change(app, case_id, n)
        assert app.snapshots is not None
        taken = [s.originator_version for s in app.snapshots.get(case_id)]
        assert taken == [SNAPSHOT_EVERY, 2 * SNAPSHOT_EVERY]
        from_snapshot = app._get_case(case_id)
        from_events = replay(None, app.events.get(case_id))
        assert isinstance(from_events, Case)
        assert from_snapshot.version == from_events.version == 2 * SNAPSHOT_EVERY + 4
        assert from_snapshot.__dict__ == from_events.__dict__
        # A historical load takes the snapshot at or before that version.
        earlier = app.repository.get(case_id, version=SNAPSHOT_EVERY + 1, projector_func=replay)
        assert earlier.version == SNAPSHOT_EVERY + 1
        assert len(earlier.follow_ups) == SNAPSHOT_EVERY
        # Stored encrypted: the planted name is nowhere in the snapshot's stored bytes.
        stored = app.snapshots.recorder.select_events(case_id)
        assert stored
        for record in stored:
            assert planted.name.encode() not in record.state
            assert planted.name.encode("utf-8") not in record.state
    finally:
        app.close()


def test_a_snapshot_moved_to_another_case_is_refused(tmp_path: Path) -> None:
    """A snapshot is bound to its case and version like an event (associated data): copied
    onto another case's stream it does not decrypt, so a load fails instead of showing it."""
    app = _app(f"sqlite:///{tmp_path / 'moved.sqlite'}")
    try:
        a = app.report_clue(cmd.ReportClue.model_validate(planted_case(seed=1).body), REPORTER)
        b = app.report_clue(cmd.ReportClue.model_validate(planted_case(seed=2).body), REPORTER)
        assert app.snapshots is not None
        app.take_snapshot(a, projector_func=replay)
        (record,) = app.snapshots.recorder.select_events(a)
        moved = type(record)(
            originator_id=b,
            originator_version=record.originator_version,
            topic=record.topic,
            state=record.state,
        )
        app.snapshots.recorder.insert_events([moved])
        with pytest.raises(EventIntegrityError):
            app._get_case(b)
        assert isinstance(
            app.mapper.to_domain_event(app.snapshots.recorder.select_events(a)[0]), Snapshot
        )
    finally:
        app.close()


def test_the_writer_lock_queues_threads_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite.writer-lock"
    lock = WriterLock(path)
    holder = subprocess.Popen(  # another process holds the lock for 0.5 s
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(0.5)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with lock:
            waited = time.monotonic() - started
        assert waited > 0.3
    finally:
        holder.wait(5)
    order: list[str] = []

    def hold(name: str) -> None:
        with lock:
            order.append(f"{name} in")
            time.sleep(0.05)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Never two inside at once: every "in" is followed by its own "out".
    assert [order[i].split()[0] for i in range(0, 6, 2)] == [
        order[i].split()[0] for i in range(1, 6, 2)
    ]


def test_sqlite_inserts_take_the_writer_lock_and_postgres_has_none(tmp_path: Path) -> None:
    app = _app(f"sqlite:///{tmp_path / 'locked.sqlite'}")
    try:
        # The store's own recorder takes it (gateway.store.persistence): nothing to install.
        lock = lock_for(app.recorder)
        assert lock is not None
        assert lock.path == (tmp_path / "locked.sqlite.writer-lock").resolve()
        blocked = threading.Event()
        done = threading.Event()

        def report() -> None:
            blocked.set()
            app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
            done.set()

        with lock:
            thread = threading.Thread(target=report)
            thread.start()
            blocked.wait(5)
            assert not done.wait(0.3)  # the insert waits for the lock
        assert done.wait(5)
        thread.join()
    finally:
        app.close()
    assert lock_for(object()) is None


def test_a_snapshot_that_cannot_be_stored_does_not_fail_the_stored_change(
    tmp_path: Path,
) -> None:
    db = tmp_path / "nosnap.sqlite"
    app = _app(f"sqlite:///{db}")
    try:
        with sqlite3.connect(db) as conn:
            conn.execute(
                "CREATE TRIGGER refuse_snapshots BEFORE INSERT ON stored_snapshots "
                "BEGIN SELECT RAISE(ABORT, 'no snapshots today'); END"
            )
        case_id = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
        for n in range(SNAPSHOT_EVERY):  # the last of these is version SNAPSHOT_EVERY + 1
            _change(app, case_id, n)
        assert app.snapshots is not None
        assert list(app.snapshots.get(case_id)) == []
        case = app._get_case(case_id)
        assert case.version == SNAPSHOT_EVERY + 1
        assert len(case.follow_ups) == SNAPSHOT_EVERY  # each change stored once
    finally:
        app.close()


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_command_on_a_file_erased_meanwhile_fails_alone_in_its_batch(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Another worker erased a file between a command's load and its commit: the cipher refuses
    the command's events while the batch is encoded (nothing written yet). Only that command is
    answered `DataErased`; the command on another file in the same batch is stored once."""
    if store == "sqlite":
        url = f"sqlite:///{tmp_path / 'casetrail.sqlite'}"
    else:
        url = pg_url(request.getfixturevalue("pg_schema"))
    # A long wait: the batch waits for both announced commands, so that they share it.
    app = _app(url, ACCESS_GROUP_COMMIT_WAIT_MS="3000")
    try:
        erased_id, live_id = (
            app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
            for _ in range(2)
        )
        units: dict[str, list[Any]] = {}
        for name, case_id in (("erased", erased_id), ("live", live_id)):
            case: Case = app.repository.get(case_id)
            case.record_follow_up(_follow_up(1), by=COORDINATOR.as_record())
            units[name] = list(case.collect_events())
        # The erasure lands after both commands applied their change to the file as loaded.
        app.data_keyring.destroy(erased_id)
        committer = app.command_commits
        assert committer is not None
        announced = threading.Barrier(2)
        outcomes: dict[str, BaseException | None] = {}

        def submit(name: str) -> None:
            with committer.expecting():
                announced.wait(5)
                try:
                    committer.record_all(units[name])
                    outcomes[name] = None
                except BaseException as exc:
                    outcomes[name] = exc

        batches_before = committer.batches
        threads = [threading.Thread(target=submit, args=(n,)) for n in units]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert set(outcomes) == {"erased", "live"}
        assert isinstance(outcomes["erased"], DataErased)
        assert outcomes["live"] is None
        # Stored once, at the version it was decided on; nothing of the erased file's command.
        assert committer.batches == batches_before + 1  # the live unit, saved alone
        assert app.repository.get(live_id).version == units["live"][-1].originator_version
        assert [e.originator_version for e in app.recorder.select_events(erased_id)] == [1]
    finally:
        app.close()
