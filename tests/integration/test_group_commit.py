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
from domain.access import IN_PROCESS_CLIENT, Actor, CaseAccessed, Channel
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
        with committer.expecting():
            committer.record(object())
        # Nobody else announced events to come: a lone reader never waits.
        assert time.monotonic() - started < 1.0
    committer.close()
    assert committer.batches == 3


def _collecting(max_wait: float) -> tuple[GroupCommit, list[list[object]]]:
    """One committer thread and the batches it commits, in order."""
    batches: list[list[object]] = []
    committer = GroupCommit(
        lambda events: batches.append(list(events)), max_wait=max_wait, committers=1
    )
    return committer, batches


def _record_in(committer: GroupCommit, event: object, after: threading.Event | None) -> None:
    with committer.expecting():
        if after is not None:
            after.wait(5)
        committer.record(event)


def test_a_batch_waits_for_the_events_announced_to_it_and_no_longer() -> None:
    committer, batches = _collecting(max_wait=5.0)
    go = threading.Event()
    # Three readers deciding at once; two record now, the third only when told.
    late = threading.Thread(target=_record_in, args=(committer, "late", go))
    late.start()
    early = [threading.Thread(target=_record_in, args=(committer, n, None)) for n in (1, 2)]
    started = time.monotonic()
    for thread in early:
        thread.start()
    time.sleep(0.3)
    assert batches == []  # the early ones wait for the late one, which is still deciding
    go.set()
    for thread in [late, *early]:
        thread.join(5)
    waited = time.monotonic() - started
    committer.close()
    assert sorted(map(str, batches[0])) == ["1", "2", "late"]
    assert len(batches) == 1
    # Committed once the last announced event arrived, not at the end of `max_wait`.
    assert waited < 2.0


def test_a_reader_that_leaves_without_an_event_holds_nobody_up() -> None:
    committer, batches = _collecting(max_wait=5.0)
    leave = threading.Event()

    def refused_before_any_event() -> None:
        with committer.expecting():
            leave.wait(5)  # e.g. the request failed before its read was decided

    away = threading.Thread(target=refused_before_any_event)
    away.start()
    recorder = threading.Thread(target=_record_in, args=(committer, "only", None))
    started = time.monotonic()
    recorder.start()
    time.sleep(0.3)
    assert batches == []
    leave.set()
    recorder.join(5)
    away.join(5)
    committer.close()
    assert batches == [["only"]]
    assert time.monotonic() - started < 2.0


def test_a_batch_waits_at_most_max_wait_for_an_announced_event() -> None:
    committer, batches = _collecting(max_wait=0.2)
    release = threading.Event()
    slow = threading.Thread(target=_record_in, args=(committer, "slow", release))
    slow.start()
    started = time.monotonic()
    _record_in(committer, "quick", None)
    waited = time.monotonic() - started
    release.set()
    slow.join(5)
    committer.close()
    assert 0.15 <= waited < 2.0
    assert batches == [["quick"], ["slow"]]


def test_after_a_batch_of_several_the_next_waits_for_as_many_and_then_adapts() -> None:
    committer, batches = _collecting(max_wait=0.3)
    go = threading.Event()
    readers = [threading.Thread(target=_record_in, args=(committer, n, go)) for n in range(3)]
    for thread in readers:
        thread.start()
    time.sleep(0.05)
    go.set()
    for thread in readers:
        thread.join(5)
    assert [len(b) for b in batches] == [3]
    # Three came together last time: a lone event now waits (in vain) for two more...
    started = time.monotonic()
    committer.record("alone")
    assert time.monotonic() - started >= 0.25
    # ...and the next lone one, after a batch of one, does not wait at all.
    started = time.monotonic()
    committer.record("alone again")
    assert time.monotonic() - started < 0.2
    committer.close()
    assert batches[1:] == [["alone"], ["alone again"]]


def test_nested_announcements_are_one() -> None:
    committer, batches = _collecting(max_wait=5.0)
    started = time.monotonic()
    with committer.expecting(), committer.expecting():
        committer.record("once")
    committer.close()
    assert batches == [["once"]]
    assert time.monotonic() - started < 2.0


def test_concurrent_reads_share_commits(tmp_path: Path) -> None:
    """Readers deciding at once announce their reads: their events are committed together,
    not one commit each."""
    db = tmp_path / "share.sqlite"
    env = store_environment(f"sqlite:///{db}", [new_key_text()])
    # A long bound, so that only the announcements decide when a batch is complete.
    app = CaseTrail(env={**env, "ACCESS_GROUP_COMMIT_WAIT_MS": "5000"})
    case_id = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
    start = threading.Barrier(16)

    def reader(n: int) -> None:
        start.wait(5)
        app.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, f"req-{n}")

    committer = app.access_commits
    assert committer is not None
    before = committer.batches
    threads = [threading.Thread(target=reader, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert committer.events == 16
        # Each commit waits for the readers still deciding: one or two commits for the 16
        # (without the announcements, 3-5 here: each commit takes whoever has arrived).
        assert committer.batches - before <= 2
    finally:
        app.close()


def test_disclosures_join_the_shared_commit_each_in_one_transaction(tmp_path: Path) -> None:
    """A list's or an export's access events (`record_disclosures`) go through the reads'
    shared commit, each call's events as one unit: stored before it returns, all together, and
    sharing commits with concurrent callers instead of a transaction each."""
    db = tmp_path / "disclosures.sqlite"
    env = store_environment(f"sqlite:///{db}", [new_key_text()])
    app = CaseTrail(env={**env, "ACCESS_GROUP_COMMIT_WAIT_MS": "50"})
    case_ids = [
        app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
        for _ in range(3)
    ]
    committer = app.access_commits
    assert committer is not None
    before_batches, before_events = committer.batches, committer.events
    start = threading.Barrier(8)
    seen: dict[int, int] = {}

    def lister(n: int) -> None:
        start.wait(5)
        app.record_disclosures(
            [(c, frozenset({"minor.name"}), "test_rule", 1) for c in case_ids],
            actor=REPORTER,
            purpose=Purpose.FOLLOW_UP,
            request_id=f"list-{n}",
            channel=Channel.API,
            client=IN_PROCESS_CLIENT,
        )
        # Stored once the call returns: all three of this call's are there to read.
        seen[n] = sum(
            1 for c in case_ids for e in app.access_events(c) if e.request_id == f"list-{n}"
        )

    threads = [threading.Thread(target=lister, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert seen == dict.fromkeys(range(8), 3)
        assert committer.events - before_events == 24
        # Eight callers, eight units: fewer commits than callers (one each before).
        assert committer.batches - before_batches < 8
        stored = [e for c in case_ids for e in app.access_events(c) if isinstance(e, CaseAccessed)]
        assert len(stored) == 24
    finally:
        app.close()
