"""Group commit of access events: concurrent reads share commits, and none returns before its
own access event is durable; a failing store fails every waiting reader."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.access import Actor, CaseAccessed
from domain.application import CaseTrail
from domain.group_commit import GroupCommit
from domain.taxonomy import Purpose, Role
from gateway.store.eventstore import new_key_text, store_environment
from tests.integration.planted import planted_case

REPORTER = Actor("u-1", Role.REPORTER, "dongshan-village", "chengguan-street")


def test_concurrent_reads_each_return_only_after_their_own_event_is_stored(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gc.sqlite"
    app = CaseTrail(env=store_environment(f"sqlite:///{db}", [new_key_text()]))
    case_id = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
    seen_by_reader: dict[str, bool] = {}
    errors: list[BaseException] = []

    def reader(n: int) -> None:
        request_id = f"req-{n:04d}"
        try:
            app.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, request_id)
            # Another connection, as a crash-surviving observer would see the file.
            with sqlite3.connect(db) as conn:
                rows = conn.execute(
                    "SELECT COUNT(*) FROM stored_events WHERE topic LIKE '%CaseAccessed'"
                ).fetchone()[0]
            stored = [e.request_id for e in app.access_events(case_id)]
            seen_by_reader[request_id] = request_id in stored and rows >= 1
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(seen_by_reader) == 32
    assert all(seen_by_reader.values())
    committer = app.access_commits
    assert committer is not None
    assert committer.events == 32
    assert 1 <= committer.batches <= 32
    assert len([e for e in app.access_events(case_id) if isinstance(e, CaseAccessed)]) == 32
    app.close()


def test_a_failed_commit_fails_every_reader_waiting_on_it() -> None:
    release = threading.Event()
    calls: list[int] = []

    def failing_save(events: object) -> None:
        calls.append(len(events))  # type: ignore[arg-type]
        release.wait(5)
        raise OSError("disk full")

    committer = GroupCommit(failing_save)
    outcomes: list[str] = []

    def record(n: int) -> None:
        try:
            committer.record(n)
            outcomes.append("stored")
        except OSError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join()
    committer.close()
    assert outcomes == ["disk full"] * 8
    assert sum(calls) == 8


def test_a_closed_committer_refuses_new_events() -> None:
    committer = GroupCommit(lambda events: None)
    committer.close()
    with pytest.raises(RuntimeError, match="closed"):
        committer.record(object())


def test_group_commit_can_be_switched_off_by_configuration(tmp_path: Path) -> None:
    env = store_environment(f"sqlite:///{tmp_path / 'off.sqlite'}", [new_key_text()])
    app = CaseTrail(env={**env, "ACCESS_GROUP_COMMIT": "n"})
    assert app.access_commits is None
    case_id: UUID = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
    app.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-solo")
    assert [e.request_id for e in app.access_events(case_id)] == ["req-solo"]
    app.close()


def test_batches_are_bounded_in_size() -> None:
    release = threading.Event()
    sizes: list[int] = []

    def slow_save(events: object) -> None:
        sizes.append(len(events))  # type: ignore[arg-type]
        release.wait(5)

    committer = GroupCommit(slow_save, max_batch=4)
    threads = [threading.Thread(target=committer.record, args=(n,)) for n in range(13)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join()
    committer.close()
    assert sum(sizes) == 13
    assert max(sizes) <= 4


def test_a_lone_event_is_committed_without_waiting_for_company() -> None:
    committer = GroupCommit(lambda events: None, max_wait=2.0)
    for _ in range(3):
        started = time.monotonic()
        committer.record(object())
        # The gathering wait applies only after a batch of several: a lone reader never waits.
        assert time.monotonic() - started < 1.0
    committer.close()
    assert committer.batches == 3
