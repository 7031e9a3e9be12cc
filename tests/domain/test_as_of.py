"""A case as of an instant equals the case rebuilt from only the events up to that instant.

`CaseTrail.read_case_as_of` loads the version `version_as_of` names through the repository,
which starts from the latest snapshot at or before it (every 20 events: the case here has 47, so
both snapshots and the events after them are exercised); `case_as_of` replays the events
alone. For random instants (each event's own, a microsecond either side, before the first and
after the last), both equal the replay of exactly the events whose timestamp is not after T.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import commands as cmd
from domain.application import SNAPSHOT_EVERY, CaseTrail, case_as_of, replay, version_as_of
from domain.case import Case
from domain.clock import local_today
from tests.domain.builders import COORDINATOR, report_clue

FOLLOW_UPS = 46


@pytest.fixture(scope="module")
def stored() -> Iterator[tuple[CaseTrail, UUID, list[Any]]]:
    application = CaseTrail(env={})  # the library's in-memory store, snapshots on
    case_id = application.report_clue(report_clue(), COORDINATOR)
    for n in range(FOLLOW_UPS):
        follow_up = cmd.RecordFollowUp(visited_on=local_today(), notes=f"第{n + 1}次回访。")

        def visit(case: Case, command: cmd.RecordFollowUp = follow_up) -> None:
            case.record_follow_up(command, by=COORDINATOR.as_record())

        application.change_case(case_id, COORDINATOR, "record_follow_up", visit)
    events = list(application.events.get(case_id))
    assert application.snapshots is not None
    assert len(list(application.snapshots.get(case_id))) == (FOLLOW_UPS + 1) // SNAPSHOT_EVERY
    yield application, case_id, events
    application.close()


def state(case: Case | None) -> dict[str, Any] | None:
    if case is None:
        return None
    return {k: v for k, v in vars(case).items() if k != "_pending_events"}


def instants(events: list[Any]) -> st.SearchStrategy[datetime]:
    stamps = [e.timestamp for e in events]
    near = st.builds(
        lambda t, d: t + timedelta(microseconds=d),
        st.sampled_from(stamps),
        st.integers(min_value=-1, max_value=1),
    )
    outside = st.sampled_from([stamps[0] - timedelta(seconds=1), stamps[-1] + timedelta(days=1)])
    return st.one_of(near, outside)


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_state_as_of_t_is_the_state_of_the_events_up_to_t(
    stored: tuple[CaseTrail, UUID, list[Any]], data: st.DataObject
) -> None:
    application, case_id, events = stored
    as_of = data.draw(instants(events))
    oracle = replay(None, [e for e in events if e.timestamp <= as_of])

    assert state(case_as_of(events, as_of)) == state(oracle)
    version = version_as_of([e.timestamp for e in events], as_of)
    if oracle is None:
        assert version is None
        return
    assert version == oracle.version
    loaded = application.repository.get(case_id, version=version, projector_func=replay)
    assert state(loaded) == state(oracle)


def test_before_the_first_event_there_is_no_case() -> None:
    first = datetime(2026, 1, 1, 8, 0, 0).astimezone()
    assert version_as_of([first], first - timedelta(microseconds=1)) is None
    assert version_as_of([first], first) == 1
    assert version_as_of([], first) is None
