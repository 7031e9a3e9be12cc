"""The follower machinery, on real SQLite files and real PostgreSQL schemas: incremental
following equals a rebuild from zero, positions survive restarts, concurrent followers never
apply an event twice, lag is reported, and on PostgreSQL a gap is never passed over while an
insert may still fill it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from domain import commands as cmd
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import Purpose
from gateway.messaging.relay import relay_recorder
from gateway.store.eventstore import new_key_text, store_environment
from projections import follower as follower_module
from projections.follower import Follower, PostgresHorizon, SQLiteViewRecorder, sqlite_horizon
from projections.readmodels import VIEW_NAMES, ReadModelConfig, ReadModels
from tests.conftest import PG_DSN, pg_url
from tests.projections.workload import Workload, reporter

Tables = dict[str, list[tuple[Any, ...]]]


def tables(readmodels: ReadModels) -> Tables:
    """Every row of every table of every view."""
    return {
        table: recorder.dump(table)
        for recorder in readmodels.recorders.values()
        for table in recorder.view.tables
    }


def test_incremental_following_equals_a_rebuild_from_zero(
    application: CaseTrail, open_readmodels: Any
) -> None:
    workload = Workload(application, seed=11)
    readmodels = open_readmodels(batch_size=7)
    # Follow while the history grows, in uneven steps, then rebuild and compare whole tables.
    for count in (3, 10, 1, 25):
        workload.cases(count)
        readmodels.catch_up()
    for case_id in list(workload.bodies)[:5]:
        workload.advance(case_id)
    readmodels.catch_up()
    followed = tables(readmodels)
    assert len(followed["ledger_cases"]) == 39
    assert len(followed["report_history"]) >= 39
    assert followed["ledger_assignments"], "the workload assigns units"

    for name in VIEW_NAMES:
        readmodels.rebuild(name)
    assert tables(readmodels) == followed

    # A rebuild with another batch size gives the same rows too: apply() is a pure fold.
    other = open_readmodels(batch_size=500)
    for name in VIEW_NAMES:
        other.rebuild(name)
    assert tables(other) == followed


def test_a_restarted_follower_resumes_from_its_stored_position(
    application: CaseTrail, open_readmodels: Any
) -> None:
    workload = Workload(application, seed=12)
    workload.cases(12)
    first = open_readmodels(batch_size=5)
    first.catch_up()
    position = first.follower("ledger").position()
    assert position == application.recorder.max_notification_id()
    first.close()

    workload.cases(6)
    second = open_readmodels(batch_size=5)
    assert second.follower("ledger").position() == position
    moved = second.catch_up()
    assert moved["ledger"] == (application.recorder.max_notification_id() or 0) - position
    resumed = tables(second)
    for name in VIEW_NAMES:
        second.rebuild(name)
    assert tables(second) == resumed


def test_lag_is_the_store_head_minus_the_position(
    application: CaseTrail, open_readmodels: Any
) -> None:
    readmodels = open_readmodels(batch_size=4)
    assert [s.lag for s in readmodels.status()] == [0] * len(VIEW_NAMES)
    Workload(application, seed=13).cases(5)
    head = application.recorder.max_notification_id() or 0
    follower = readmodels.follower("ledger")
    assert follower.lag() == head
    follower.step()
    assert follower.position() == 4
    assert follower.lag() == head - 4
    readmodels.catch_up()
    assert {s.name: (s.position, s.head, s.lag) for s in readmodels.status()} == {
        name: (head, head, 0) for name in VIEW_NAMES
    }


def test_access_events_move_the_position_without_rows(
    application: CaseTrail, open_readmodels: Any
) -> None:
    """The case views read case events only; the access events between them still count as
    followed, so the lag comes back to 0 (the access log alone gets a row)."""
    workload = Workload(application, seed=14)
    (case_id,) = workload.cases(1)
    readmodels = open_readmodels()
    readmodels.catch_up()
    rows = tables(readmodels)
    village = workload.bodies[case_id]["minor"]["village"]
    application.read_case(case_id, reporter(village), Purpose.FOLLOW_UP, "req-000001")
    assert readmodels.follower("ledger").lag() >= 1
    readmodels.catch_up()
    assert readmodels.follower("ledger").lag() == 0
    after = tables(readmodels)
    assert len(after.pop("accesses_records")) == len(rows.pop("accesses_records")) + 1
    assert after == rows


def test_concurrent_followers_of_one_view_apply_each_event_once(
    application: CaseTrail, open_readmodels: Any
) -> None:
    Workload(application, seed=15).cases(40)
    racers = [open_readmodels(batch_size=size) for size in (3, 5, 8)]
    errors: list[BaseException] = []

    def race(readmodels: ReadModels) -> None:
        try:
            readmodels.catch_up()
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(r,)) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    raced = tables(racers[0])
    # Double application would show in the counters: one per follow-up stored.
    follow_ups = sum(1 for n in application.notifications() if n.topic.endswith("FollowUpRecorded"))
    with racers[0].ledger.reading() as db:
        (counted,) = db.execute("SELECT SUM(follow_up_count) AS n FROM {ledger_cases}")
    assert counted["n"] == follow_ups > 0
    for name in VIEW_NAMES:
        racers[0].rebuild(name)
    assert tables(racers[0]) == raced


@pytest.mark.postgres
def test_postgres_follower_waits_for_an_insert_in_flight_below_the_head(
    pg_schema: str, tmp_path: Path, index_key: bytes
) -> None:
    """An insert that drew notification id n but has not committed, while n+1 has: the follower
    must not move past n. A follower that trusts the largest id (the control) loses the case
    for good."""
    application = CaseTrail(env=store_environment(pg_url(pg_schema), [new_key_text()]))
    opened: list[ReadModels] = []

    def open_readmodels(env: dict[str, str]) -> ReadModels:
        opened.append(ReadModels(application, ReadModelConfig(env=env, index_key=index_key)))
        return opened[-1]

    try:
        _in_flight_insert_is_waited_for(application, pg_schema, tmp_path, open_readmodels)
    finally:
        for readmodels in opened:
            readmodels.close()
        application.close()


def _in_flight_insert_is_waited_for(
    application: CaseTrail, pg_schema: str, tmp_path: Path, open_readmodels: Any
) -> None:
    workload = Workload(application, seed=16)
    workload.cases(2)
    readmodels = open_readmodels(store_environment(pg_url(pg_schema), None))
    readmodels.catch_up()
    # The control keeps its own ledger (in a SQLite file) and trusts the largest id.
    control_env = store_environment(f"sqlite:///{tmp_path / 'control.sqlite'}", None)
    control = Follower(
        application,
        open_readmodels(env=control_env).ledger,
        horizon=sqlite_horizon(application.recorder),
    )
    control.catch_up()

    # An insert in flight: the next id is drawn by a transaction that stays open.
    body = next(iter(workload.bodies.values()))
    pending = Case.report(
        cmd.ReportClue.model_validate(body),
        street="chengguan-street",
        by=reporter(body["minor"]["village"]).as_record(),
    )
    (event,) = pending.collect_events()
    stored = application.mapper.to_stored_event(event)
    table = f"{pg_schema}.casetrail_events"
    with psycopg.connect(PG_DSN) as held:
        held.execute(
            f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)",
            (stored.originator_id, stored.originator_version, stored.topic, stored.state),
        )
        later = workload.report()  # commits with a higher id
        done = threading.Event()
        moved: list[int] = []

        def follow() -> None:
            moved.append(readmodels.follower("ledger").catch_up())
            done.set()

        thread = threading.Thread(target=follow)
        thread.start()
        control.catch_up()
        assert not done.wait(1.0), "the follower passed an id an open insert holds"
        held.commit()
    thread.join(30)
    assert done.is_set()

    horizon = readmodels.follower("ledger").horizon
    assert isinstance(horizon, PostgresHorizon) and horizon.locks_taken >= 1
    readmodels.catch_up()
    followed = {row[0] for row in readmodels.ledger.dump("ledger_cases")}
    assert {str(pending.id), str(later)} <= followed
    # The control moved past the gap while it was open, and never comes back for it.
    control.catch_up()
    lost = {row[0] for row in control.recorder.dump("ledger_cases")}
    assert str(later) in lost
    assert str(pending.id) not in lost


def test_a_follower_thread_survives_a_store_failure_and_recovers(
    application: CaseTrail, open_readmodels: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workload(application, seed=17).cases(3)
    readmodels = open_readmodels(batch_size=2)
    follower = readmodels.follower("ledger")
    failures = [2]
    original = follower.recorder.process

    def flaky(batch: Any) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise OperationalError("disk I/O error (simulated)")
        original(batch)

    monkeypatch.setattr(follower.recorder, "process", flaky)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop, 0.01))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while follower.lag() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert follower.lag() == 0
        assert follower.last_error is None  # cleared once a batch went through again
        assert failures == [0]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_view_in_the_events_own_sqlite_file_leaves_event_commits_durable(
    tmp_path: Path,
) -> None:
    """A view written through the events' own connection pool must hand the connection back
    with synchronous=FULL, or later event commits would stop waiting for the disk."""
    application = CaseTrail(
        env=store_environment(f"sqlite:///{tmp_path / 'events.sqlite'}", [new_key_text()])
    )
    recorder = relay_recorder(application)
    assert isinstance(recorder, SQLiteViewRecorder)
    pool = recorder.datastore.pool
    for _ in range(3):
        with recorder._writing():  # a view transaction, as a follower's batch runs it
            pass
    connections = [pool.get_connection(is_writer=False) for _ in range(2)]
    try:
        for connection in connections:
            cursor = connection.cursor().sqlite_cursor
            assert cursor.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        for connection in connections:
            pool.put_connection(connection)
        application.close()


def _counting_records(follower: Follower, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The end of every batch the follower's recorder stores (its own recorder, counted)."""
    ends: list[int] = []
    original = follower.recorder.process

    def counted(batch: Any) -> None:
        original(batch)
        ends.append(batch.end)

    monkeypatch.setattr(follower.recorder, "process", counted)
    return ends


def _wait_for(condition: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_running_follower_records_its_advance_over_other_views_events_once_a_second(
    application: CaseTrail, open_readmodels: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a stream of access events the ledger (which reads none of them) records its
    position at most once per IDLE_RECORD_SECONDS, not once per look (four a second); its own
    events are still applied at the next look, and the advance kept in memory is recorded when
    the loop stops."""
    workload = Workload(application, seed=18)
    (case_id,) = workload.cases(1)
    village = workload.bodies[case_id]["minor"]["village"]
    readmodels = open_readmodels()
    follower = readmodels.follower("ledger")
    follower.catch_up()
    records = _counting_records(follower, monkeypatch)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop, 0.01))
    thread.start()
    try:
        started = time.monotonic()
        reads = 0
        while time.monotonic() - started < 3.0:
            application.read_case(case_id, reporter(village), Purpose.FOLLOW_UP, f"req-{reads}")
            reads += 1
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        assert reads >= 20
        # One record at once, then at most one a second (a look every quarter second wrote
        # one each: about twelve).
        assert 1 <= len(records) <= 2 + int(elapsed / follower_module.IDLE_RECORD_SECONDS)
        assert follower.last_error is None

        # The view's own event is applied at the next look, rows and position together.
        workload.cases(1)
        head = application.recorder.max_notification_id() or 0
        assert _wait_for(lambda: follower.position() >= head)
        with readmodels.ledger.reading() as db:
            found = db.execute("SELECT COUNT(*) AS n FROM {ledger_cases}")
        assert found[0]["n"] == 2
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()

    # Access events after the last record: kept in memory, recorded as the loop stopped.
    assert follower.position() == (application.recorder.max_notification_id() or 0)
    assert follower.lag() == 0


def test_an_advance_kept_in_memory_is_recorded_once_it_spans_idle_record_ids(
    application: CaseTrail, open_readmodels: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However recent the last record, a span of IDLE_RECORD_IDS ids is recorded at the next
    look: the lag a status reports (and `/readyz` judges) stays bounded under any load."""
    monkeypatch.setattr(follower_module, "IDLE_RECORD_SECONDS", 3600.0)
    monkeypatch.setattr(follower_module, "IDLE_RECORD_IDS", 5)
    workload = Workload(application, seed=19)
    (case_id,) = workload.cases(1)
    village = workload.bodies[case_id]["minor"]["village"]
    readmodels = open_readmodels()
    follower = readmodels.follower("ledger")
    records = _counting_records(follower, monkeypatch)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop, 0.01))
    thread.start()

    def read(count: int) -> None:
        for n in range(count):
            application.read_case(case_id, reporter(village), Purpose.FOLLOW_UP, f"req-{n}")

    try:
        head = application.recorder.max_notification_id() or 0
        assert _wait_for(lambda: follower.position() == head)  # the first: at once
        recorded = len(records)
        read(3)
        time.sleep(1.0)  # four looks
        assert follower.position() == head, "3 ids: kept in memory"
        assert follower.lag() == 3
        assert len(records) == recorded
        read(3)
        head = application.recorder.max_notification_id() or 0
        assert _wait_for(lambda: follower.position() == head), "6 ids: recorded"
        assert len(records) == recorded + 1
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_running_follower_gives_way_when_another_moves_its_position(
    application: CaseTrail, open_readmodels: Any
) -> None:
    """The loop starts each batch from the position it recorded last, without reading it; a
    position moved meanwhile by another follower of the view (a `catch_up` elsewhere, a
    rebuild) is found at the batch's commit, and the loop reads it again: nothing is applied
    twice or left out."""
    workload = Workload(application, seed=20)
    workload.cases(5)
    looping, other = open_readmodels(batch_size=3), open_readmodels(batch_size=4)
    follower = looping.follower("ledger")
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop, 0.01))
    thread.start()
    try:
        for round_no in range(6):
            workload.cases(4)
            if round_no == 3:
                other.rebuild("ledger")
            else:
                other.follower("ledger").catch_up()
            time.sleep(0.1)
        # Then the loop alone: it must have read the moved position again.
        workload.cases(3)
        head = application.recorder.max_notification_id() or 0
        assert _wait_for(lambda: follower.position() == head)
        assert follower.last_error is None
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    followed = tables(looping)
    follow_ups = sum(1 for n in application.notifications() if n.topic.endswith("FollowUpRecorded"))
    with looping.ledger.reading() as db:
        (counted,) = db.execute("SELECT SUM(follow_up_count) AS n FROM {ledger_cases}")
    assert counted["n"] == follow_ups
    assert len(followed["ledger_cases"]) == 32
    looping.rebuild("ledger")
    assert tables(looping) == followed
