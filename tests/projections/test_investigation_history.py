"""The history the workbench analyses: one scan gathers the case's events and only them.

A real application on a SQLite file; two cases, so that the other case's events (its stream,
its reads) are proven left out, and the file's state at each step is the aggregate's own."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.application import AccessRefused, CaseTrail
from domain.clock import local_today
from domain.taxonomy import Purpose
from gateway.store.eventstore import new_key_text, store_environment
from projections.investigation import FileState, gather
from tests.domain import builders as b
from tests.projections.investigation_scenario import play


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
                due_on=local_today() + timedelta(days=7),
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


def _aggregate_states(app: CaseTrail, case_id: UUID) -> dict[int, FileState]:
    """The file's state at each version, from the aggregate's own replay (the domain's rules)."""
    found: dict[int, FileState] = {}
    case: Any = None
    events: list[Any] = list(app.events.get(case_id))
    for event in events:
        case = event.mutate(case)
        found[case.version] = FileState(
            version=case.version,
            status=case.status,
            risk=case.risk,
            street=case.street,
            reporting_unit=case.reporting_unit,
            found_on=case.found_on,
            issues=tuple((i["category"], i["subtype"]) for i in case.issues),
            assignments=tuple(
                (a["id"], a["unit"], a["function"]) for a in case.assignments.values()
            ),
            escalations=tuple((n, e["to_level"]) for n, e in enumerate(case.escalations, 1)),
        )
    return found


def test_the_fold_equals_the_aggregates_replay_at_every_version(app: CaseTrail) -> None:
    """Every kind of change, twice over, in a seeded order: the history's states are the
    aggregate's, version by version."""
    scenario = play(app)
    case_id = app.report_clue(b.report_clue(), b.REPORTER)
    coordinator = b.COORDINATOR.as_record()
    rng = random.Random(20261201)
    closed = False

    def change(action: str, apply: Any) -> Any:
        return app.change_case(case_id, b.COORDINATOR, action, apply)

    for n in range(60):
        draw = rng.random()
        if closed:
            change("reopen", lambda c: c.reopen(cmd.ReopenCase(reason="情况反复"), by=coordinator))
            closed = False
        elif draw < 0.15:
            issues = [{"category": "unlawful_harm", "subtype": rng.choice(["bullying", "beating"])}]
            change(
                "reclassify",
                lambda c, issues=issues: c.reclassify(
                    cmd.Reclassify(issues=issues, reason="复核"), by=coordinator
                ),
            )
        elif draw < 0.3:
            _assess(app, case_id, rng.choice(["low", "medium", "high", "urgent"]))
        elif draw < 0.4:
            change(
                "hold_consultation",
                lambda c: c.hold_consultation(
                    cmd.HoldConsultation(
                        held_on=local_today(), participants=[b.POLICE], decision="跟进"
                    ),
                    by=coordinator,
                ),
            )
        elif draw < 0.55:
            unit = f"unit-{n}"
            change(
                "assign_unit",
                lambda c, unit=unit: c.assign_unit(
                    cmd.AssignUnit(
                        unit=unit,
                        function="society",
                        task="走访",
                        due_on=local_today() + timedelta(days=3),
                    ),
                    by=coordinator,
                ),
            )
        elif draw < 0.7:
            change(
                "escalate",
                lambda c: c.escalate(
                    cmd.Escalate(to_level=rng.choice(["street", "county"]), reason="升级"),
                    by=coordinator,
                ),
            )
        elif draw < 0.8:
            change(
                "close",
                lambda c: c.close(cmd.CloseCase(reason="resolved", note="好转"), by=coordinator),
            )
            closed = True
        else:
            change(
                "record_follow_up",
                lambda c: c.record_follow_up(
                    cmd.RecordFollowUp(visited_on=local_today(), notes="回访"), by=coordinator
                ),
            )
    for case in (scenario.case_id, case_id):
        history = gather(app, case)
        assert history.states == _aggregate_states(app, case)
        assert [s.after for s in history.steps if s.before is not s.after] == list(
            history.states.values()
        )
    assert len(gather(app, case_id).states) == 61
