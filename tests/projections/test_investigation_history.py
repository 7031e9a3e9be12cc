"""The history the workbench analyses: one scan gathers the case's events and only them.

A real application on a SQLite file; two cases, so that the other case's events (its stream,
its reads) are proven left out, and the file's state at each step is the aggregate's own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.application import AccessRefused, CaseTrail
from domain.taxonomy import Purpose
from gateway.store.eventstore import new_key_text, store_environment
from projections.investigation import gather
from tests.domain import builders as b


@pytest.fixture
def app(tmp_path: Path) -> Iterator[CaseTrail]:
    application = CaseTrail(
        env=store_environment(f"sqlite:///{tmp_path / 'c.sqlite'}", [new_key_text()])
    )
    try:
        yield application
    finally:
        application.close()


def _assess(app: CaseTrail, case_id: UUID, level: str) -> None:
    app.change_case(
        case_id,
        b.COORDINATOR,
        "assess_risk",
        lambda c: c.assess_risk(
            cmd.AssessRisk(level=level, reason="复评"), by=b.COORDINATOR.as_record()
        ),
    )


def test_gather_takes_the_case_stream_and_the_reads_naming_it_in_stored_order(
    app: CaseTrail,
) -> None:
    case_id = app.report_clue(b.report_clue(), b.REPORTER)
    other = app.report_clue(b.report_clue(), b.REPORTER)
    app.read_case(other, b.COORDINATOR, Purpose.CONSULTATION, "other-read")
    app.read_case(case_id, b.COORDINATOR, Purpose.CONSULTATION, "read-1")
    _assess(app, case_id, "high")
    _assess(app, other, "medium")
    with pytest.raises(AccessRefused):
        app.read_case(case_id, b.HEALTH_MEMBER, Purpose.INTERVENTION, "refused-1")

    history = gather(app, case_id)

    assert [s.kind for s in history.steps] == [
        "clue_reported",
        "case_accessed",
        "risk_assessed",
        "access_denied",
    ]
    positions = [s.position for s in history.steps]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert [s.event.request_id for s in history.steps if hasattr(s.event, "request_id")] == [
        "read-1",
        "refused-1",
    ]
    reported, read, assessed, refused = history.steps
    assert reported.before is None and reported.after is not None
    assert (reported.after.status, reported.after.risk) == ("awaiting_consultation", "low")
    assert read.before is read.after is reported.after
    assert assessed.before is reported.after
    assert assessed.after is not None and assessed.after.risk == "high"
    assert refused.after is assessed.after
    assert sorted(history.states) == [1, 2]


def test_a_case_with_no_events_has_an_empty_history(app: CaseTrail) -> None:
    app.report_clue(b.report_clue(), b.REPORTER)
    history = gather(app, UUID(int=5))
    assert history.steps == [] and history.states == {}


def test_state_follows_assignments_and_closure(app: CaseTrail) -> None:
    case_id = app.report_clue(b.report_clue(), b.REPORTER)
    coordinator = b.COORDINATOR.as_record()
    aid = app.change_case(
        case_id,
        b.COORDINATOR,
        "assign_unit",
        lambda c: c.assign_unit(
            cmd.AssignUnit(
                unit=b.POLICE,
                function="judicial",
                task="核查",
                due_on=date.today() + timedelta(days=7),
            ),
            by=coordinator,
        ),
    )
    app.change_case(
        case_id,
        b.COORDINATOR,
        "close",
        lambda c: c.close(cmd.CloseCase(reason="resolved", note="已解决"), by=coordinator),
    )
    history = gather(app, case_id)
    assigned, closed = history.steps[1:]
    assert assigned.after is not None and assigned.after.assignments == (
        (str(aid), b.POLICE, "judicial"),
    )
    assert assigned.after.status == "intervening"
    assert closed.after is not None and closed.after.status == "closed"
