"""A process keeps the case files it changed last (domain/case_cache.py), and a kept file is
never stale, never revived after an erasure and never half-changed. Real stores (SQLite, and
PostgreSQL in its own schema), two applications on one store as two API workers are."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.clock import local_today
from domain.errors import CaseNotFound
from domain.retention import DataErased, KeyScope
from domain.taxonomy import Role
from gateway.store.eventstore import ENV_DATA_KEY_CACHE_SECONDS, new_key_text, store_environment
from tests.domain.builders import COORDINATOR, REPORTER
from tests.integration.planted import planted_case


@pytest.fixture
def workers(store_url: str, tmp_path: Path) -> Iterator[tuple[CaseTrail, CaseTrail]]:
    """Two applications on one store with one key, as two workers of the service."""
    (tmp_path / "home").mkdir(exist_ok=True)
    env = store_environment(store_url, [new_key_text()])
    env[ENV_DATA_KEY_CACHE_SECONDS] = "0.2"
    first, second = CaseTrail(env=dict(env)), CaseTrail(env=dict(env))
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _follow_up(n: int) -> Callable[[Case], int]:
    """A command recording a follow-up; it answers how many follow-ups it found first."""

    def change(case: Case) -> int:
        seen = len(case.follow_ups)
        case.record_follow_up(
            cmd.RecordFollowUp(visited_on=local_today(), notes=f"第{n}次随访,情况稳定"),
            by=COORDINATOR.as_record(),
        )
        return seen

    return change


def _report(app: CaseTrail) -> UUID:
    return app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)


def _assert_kept_as_stored(app: CaseTrail, case_id: UUID) -> None:
    """The kept file equals a fresh load of it from the store."""
    kept = app.case_cache.take(case_id)
    assert kept is not None
    assert dict(vars(kept)) == dict(vars(app._get_case(case_id)))


def test_a_busy_file_is_not_loaded_again_and_ends_as_the_store_has_it(
    workers: tuple[CaseTrail, CaseTrail],
) -> None:
    app, _ = workers
    case_id = _report(app)
    for n in range(5):
        assert app.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(n)) == n
    assert app.case_cache.hits == 5  # the report kept it; every command took it
    _assert_kept_as_stored(app, case_id)


def test_a_change_by_another_worker_is_seen_before_the_rule_runs(
    workers: tuple[CaseTrail, CaseTrail],
) -> None:
    app, other = workers
    case_id = _report(app)
    app.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(1))
    other.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(2))
    seen: list[int] = []

    def change(case: Case) -> None:
        seen.append(_follow_up(3)(case))

    app.change_case(case_id, COORDINATOR, "record_follow_up", change)
    # Once, on the file as the store has it: a stale file would first lose the version race.
    assert seen == [2]
    assert app.case_cache.hits == 2
    assert len(app._get_case(case_id).follow_ups) == 3


def test_a_command_that_fails_after_changing_its_file_leaves_nothing_kept(
    workers: tuple[CaseTrail, CaseTrail],
) -> None:
    app, _ = workers
    case_id = _report(app)
    app.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(1))

    def change_then_fail(case: Case) -> None:
        _follow_up(2)(case)
        raise RuntimeError("the command failed after its rule ran")

    with pytest.raises(RuntimeError):
        app.change_case(case_id, COORDINATOR, "record_follow_up", change_then_fail)
    assert len(app.case_cache) == 0
    # The next command sees the one stored follow-up, and its event takes the next version.
    assert app.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(3)) == 1
    versions = [e.originator_version for e in app.events.get(case_id)]
    assert versions == list(range(1, len(versions) + 1))
    assert len(app._get_case(case_id).follow_ups) == 2


def test_a_refused_command_leaves_nothing_kept(workers: tuple[CaseTrail, CaseTrail]) -> None:
    app, _ = workers
    case_id = _report(app)
    stranger = Actor("user-9", Role.REPORTER, "another-village", "another-street")
    with pytest.raises(CaseNotFound):  # outside its scope, the file is not named at all
        app.change_case(case_id, stranger, "record_follow_up", _follow_up(1))
    assert app.case_cache.take(case_id) is None


def test_a_lost_race_is_retried_on_the_file_as_it_now_stands(
    workers: tuple[CaseTrail, CaseTrail],
) -> None:
    app, other = workers
    case_id = _report(app)
    app.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(1))
    seen: list[int] = []

    def change(case: Case) -> None:
        if not seen:
            # Another worker stores the file's next version while this one holds it.
            other.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(2))
        seen.append(_follow_up(3)(case))

    app.change_case(case_id, COORDINATOR, "record_follow_up", change)
    assert seen == [1, 2]
    _assert_kept_as_stored(app, case_id)


def test_an_erased_file_is_not_revived_from_the_cache(
    workers: tuple[CaseTrail, CaseTrail],
) -> None:
    app, other = workers
    here, there = _report(app), _report(app)
    for case_id in (here, there):
        app.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(1))
    # Erased by this worker: gone from its memory at once.
    app.erase(here, scope=KeyScope.CASE, rule="retention", basis="t", due_on=None, by={})
    assert app.case_cache.take(here) is None
    # Erased by the other worker: this one refuses the kept file within the keyring's period.
    other.erase(there, scope=KeyScope.CASE, rule="retention", basis="t", due_on=None, by={})
    time.sleep(0.3)
    for case_id in (here, there):
        with pytest.raises(DataErased, match="under the rule 'retention'"):
            app.change_case(case_id, COORDINATOR, "record_follow_up", _follow_up(2))
