"""The units' duty cycle on an assignment (issue 14): signing for (签收), declining, the result.

- The three events and the assignment record's keys are the shared contract's (`domain.case`).
- `AssignmentAcknowledged` version 1 (the unit client's automatic acknowledgement) reads as a
  receipt: through the event's upcaster and through the state's (snapshots), and the store
  written before issue 12 (`tests/fixtures/store_v1`) shows its acknowledgements so.
- Each refusal is its own named error, and a refused command triggers no event.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.utils import get_topic

from domain import clock, errors
from domain import commands as cmd
from domain.application import CaseTrail
from domain.case import DUTY_STATE_LABELS, Case, DutyState, duty_state
from domain.taxonomy import Purpose
from gateway.store.eventstore import store_environment
from tests.domain.builders import (
    COORDINATOR,
    HEALTH_CENTRE,
    HEALTH_MEMBER,
    POLICE,
    POLICE_MEMBER,
    new_case,
)

TODAY = clock.local_today()  # the office's calendar (UTC+8), as the rules judge it
BY_COORDINATOR = COORDINATOR.as_record()
BY_POLICE = POLICE_MEMBER.as_record()
FIXTURE_HOME = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1" / "home"
ASSIGNMENT_KEYS = {
    "id",
    "unit",
    "function",
    "task",
    "due_on",
    "assigned_at",
    "ended",
    "received_at",
    "signed_for",
    "acknowledged_at",
    "declined",
    "result",
}


def assign(case: Case, unit: str = POLICE, function: str = "judicial") -> UUID:
    command = cmd.AssignUnit.model_validate(
        {"unit": unit, "function": function, "task": "入户核查", "due_on": TODAY.isoformat()}
    )
    return case.assign_unit(command, by=BY_COORDINATOR)


def decline(reason: str = "不属于本单位职责范围,建议转介学校") -> cmd.DeclineAssignment:
    return cmd.DeclineAssignment.model_validate({"reason": reason})


def result(**overrides: Any) -> cmd.ReportAssignmentResult:
    body = {
        "measures": ["home_visit", "guidance_education"],
        "outcome": "已入户核查,监护人已签字确认",
        "recommendation": "close",
    } | overrides
    return cmd.ReportAssignmentResult.model_validate(body)


def refused(case: Case, error: type[errors.DomainError], command: Callable[[], object]) -> str:
    """The command raises `error` and triggers no event; returns its message."""
    case.collect_events()  # what came before is not this command's
    with pytest.raises(error) as raised:
        command()
    assert case.collect_events() == []
    return raised.value.message


# --- the contract: events, topics, state keys ------------------------------------------------


def test_the_three_events_and_their_topics() -> None:
    acknowledged = Case.AssignmentAcknowledged
    assert acknowledged.class_version == 2
    assert get_topic(acknowledged) == "domain.case:Case.AssignmentAcknowledged"
    assert get_topic(Case.AssignmentDeclined) == "domain.case:Case.AssignmentDeclined"  # type: ignore[attr-defined]
    assert (
        get_topic(Case.AssignmentResultReported)  # type: ignore[attr-defined]
        == "domain.case:Case.AssignmentResultReported"
    )
    state: dict[str, Any] = {"assignment_id": "a", "unit": POLICE, "by": {}}
    acknowledged.upcast_v1_v2(state)
    assert state["receipt"] is True


def test_signing_for_records_the_person_and_keeps_acknowledged_at() -> None:
    case = new_case()
    aid = assign(case)
    record = case.assignments[str(aid)]
    assert set(record) == ASSIGNMENT_KEYS
    assert {k: record[k] for k in ("received_at", "signed_for", "declined", "result")} == {
        "received_at": None,
        "signed_for": None,
        "declined": None,
        "result": None,
    }
    case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE)
    event = case.collect_events()[-1]
    assert isinstance(event, Case.AssignmentAcknowledged)
    assert (event.assignment_id, event.unit, event.by, event.receipt) == (
        str(aid),
        POLICE,
        BY_POLICE,
        False,
    )
    record = case.assignments[str(aid)]
    at = event.timestamp.isoformat()
    assert record["signed_for"] == {"at": at, "user": POLICE_MEMBER.user, "unit": POLICE}
    assert record["acknowledged_at"] == at
    assert record["received_at"] is None
    assert record["ended"] is None


def test_a_version_1_acknowledgement_is_a_receipt_not_a_signature() -> None:
    case = new_case()
    aid = assign(case)
    # What the unit's client stored before the duty cycle, as the upcaster delivers it.
    case._assignment_acknowledged(assignment_id=str(aid), unit=POLICE, by=BY_POLICE, receipt=True)
    record = case.assignments[str(aid)]
    assert record["received_at"] is not None
    assert record["signed_for"] is None
    assert record["acknowledged_at"] is None
    # A person of the unit may still sign for it.
    case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE)
    assert case.assignments[str(aid)]["signed_for"] is not None


def test_declining_ends_the_assignment_with_the_reason() -> None:
    case = new_case()
    aid = assign(case)
    case.decline_assignment(aid, decline(), by=BY_POLICE)
    event = case.collect_events()[-1]
    assert type(event).__name__ == "AssignmentDeclined"
    assert vars(event)["reason"] == "不属于本单位职责范围,建议转介学校"
    record = case.assignments[str(aid)]
    at = event.timestamp.isoformat()
    assert record["declined"] == {
        "at": at,
        "reason": "不属于本单位职责范围,建议转介学校",
        "user": POLICE_MEMBER.user,
    }
    assert record["ended"] == {"at": at, "outcome": "declined"}
    assert case.open_assignments_of(POLICE) == []


def test_the_result_ends_the_assignment() -> None:
    case = new_case()
    aid = assign(case)
    case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE)
    case.report_assignment_result(aid, result(recommendation="continue"), by=BY_POLICE)
    event = case.collect_events()[-1]
    assert type(event).__name__ == "AssignmentResultReported"
    at = event.timestamp.isoformat()
    record = case.assignments[str(aid)]
    assert record["result"] == {
        "at": at,
        "measures": ["home_visit", "guidance_education"],
        "outcome": "已入户核查,监护人已签字确认",
        "recommendation": "continue",
        "user": POLICE_MEMBER.user,
    }
    assert record["ended"] == {"at": at, "outcome": "result_reported"}


# --- each refusal --------------------------------------------------------------------------


def test_signing_for_twice_is_refused() -> None:
    case = new_case()
    aid = assign(case)
    case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE)
    case.collect_events()
    refused(
        case,
        errors.AssignmentAlreadyAcknowledged,
        lambda: case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE),
    )


def test_another_unit_or_the_same_code_in_another_street_is_refused() -> None:
    case = new_case()
    aid = assign(case)
    case.collect_events()
    by_health = HEALTH_MEMBER.as_record()
    for command in (
        lambda: case.acknowledge_assignment(aid, unit=HEALTH_CENTRE, by=by_health),
        lambda: case.decline_assignment(aid, decline(), by=by_health),
        lambda: case.report_assignment_result(aid, result(), by=by_health),
    ):
        refused(case, errors.AssignmentNotHeld, command)
    elsewhere = BY_POLICE | {"street": "xiaoxi-street"}
    refused(
        case,
        errors.AssignmentNotHeld,
        lambda: case.acknowledge_assignment(aid, unit=POLICE, by=elsewhere),
    )


def test_an_unknown_assignment_is_refused() -> None:
    case = new_case()
    case.collect_events()
    stranger = uuid4()
    refused(
        case,
        errors.UnknownAssignment,
        lambda: case.decline_assignment(stranger, decline(), by=BY_POLICE),
    )
    refused(
        case,
        errors.UnknownAssignment,
        lambda: case.report_assignment_result(stranger, result(), by=BY_POLICE),
    )


def test_a_declined_assignment_refuses_everything_after() -> None:
    case = new_case()
    aid = assign(case)
    case.decline_assignment(aid, decline(), by=BY_POLICE)
    case.collect_events()
    message = refused(
        case,
        errors.AssignmentEnded,
        lambda: case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE),
    )
    assert "declined" in message
    refused(
        case, errors.AssignmentEnded, lambda: case.decline_assignment(aid, decline(), by=BY_POLICE)
    )
    refused(
        case,
        errors.AssignmentEnded,
        lambda: case.report_assignment_result(aid, result(), by=BY_POLICE),
    )


def test_an_ended_assignment_refuses_signing_declining_and_results() -> None:
    case = new_case()
    aid = assign(case)
    case.end_assignment(aid, outcome="withdrawn", by=BY_COORDINATOR)
    case.collect_events()
    refused(
        case,
        errors.AssignmentEnded,
        lambda: case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE),
    )
    refused(
        case, errors.AssignmentEnded, lambda: case.decline_assignment(aid, decline(), by=BY_POLICE)
    )
    refused(
        case,
        errors.AssignmentEnded,
        lambda: case.report_assignment_result(aid, result(), by=BY_POLICE),
    )


def test_declining_after_signing_for_is_refused() -> None:
    case = new_case()
    aid = assign(case)
    case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE)
    case.collect_events()
    refused(
        case,
        errors.AssignmentAlreadyAcknowledged,
        lambda: case.decline_assignment(aid, decline(), by=BY_POLICE),
    )


def test_a_result_before_signing_for_is_refused_and_only_once_after() -> None:
    case = new_case()
    aid = assign(case)
    case.collect_events()
    refused(
        case,
        errors.AssignmentNotSignedFor,
        lambda: case.report_assignment_result(aid, result(), by=BY_POLICE),
    )
    case.acknowledge_assignment(aid, unit=POLICE, by=BY_POLICE)
    case.report_assignment_result(aid, result(), by=BY_POLICE)
    case.collect_events()
    refused(
        case,
        errors.AssignmentEnded,
        lambda: case.report_assignment_result(aid, result(), by=BY_POLICE),
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"measures": [], "outcome": "x", "recommendation": "close"}, "measures"),
        ({"measures": ["nonsense"], "outcome": "x", "recommendation": "close"}, "measures"),
        (
            {"measures": ["home_visit", "home_visit"], "outcome": "x", "recommendation": "close"},
            "measures",
        ),
        ({"measures": ["home_visit"], "outcome": "", "recommendation": "close"}, "outcome"),
        ({"measures": ["home_visit"], "outcome": "x", "recommendation": "maybe"}, "recommendation"),
        ({"measures": ["home_visit"], "outcome": "x\u202e", "recommendation": "close"}, "outcome"),
    ],
)
def test_a_bad_result_names_its_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cmd.ReportAssignmentResult.model_validate(body)


def test_a_decline_needs_a_bounded_reason() -> None:
    for reason in ("", " ", "x" * (cmd.MAX_NOTE + 1)):
        with pytest.raises(ValueError, match="reason"):
            cmd.DeclineAssignment.model_validate({"reason": reason})


# --- old state: snapshots and the store written before issue 12 ------------------------------


def test_a_snapshot_taken_before_the_duty_cycle_reads_its_acknowledgement_as_a_receipt() -> None:
    case = new_case()
    received = assign(case)
    untouched = assign(case, HEALTH_CENTRE, "family")
    snapshot = Snapshot.take(case)
    state = dict(snapshot.state)
    # The form of a version 1 snapshot: no class_version, records without the new keys.
    state.pop("class_version")
    for record in state["assignments"].values():
        for key in ("received_at", "signed_for", "declined", "result"):
            del record[key]
    state["assignments"][str(received)]["acknowledged_at"] = "2026-01-02T03:04:05+00:00"
    old = Snapshot(
        originator_id=case.id,
        originator_version=case.version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )
    loaded = old.mutate(None)
    assert isinstance(loaded, Case)
    first = loaded.assignments[str(received)]
    assert set(first) == ASSIGNMENT_KEYS
    assert first["received_at"] == "2026-01-02T03:04:05+00:00"
    assert first["signed_for"] is None
    assert first["acknowledged_at"] is None
    assert loaded.assignments[str(untouched)]["received_at"] is None


def test_the_old_store_shows_its_client_acknowledgements_as_receipts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(FIXTURE_HOME, home)
    key = (home / "keys" / "event.key").read_text(encoding="utf-8").strip()
    application = CaseTrail(env=store_environment(f"sqlite:///{home / 'casetrail.sqlite'}", [key]))
    try:
        acknowledged = [
            application.mapper.to_domain_event(n)
            for n in application.notifications(topics=(get_topic(Case.AssignmentAcknowledged),))
        ]
        assert acknowledged, "the fixture store holds acknowledgements"
        assert all(getattr(e, "receipt", None) is True for e in acknowledged)
        reported = (get_topic(Case.ClueReported),)  # type: ignore[attr-defined]
        records: list[dict[str, Any]] = []
        for n in application.notifications(topics=reported):
            case: object = application.repository.get(UUID(str(n.originator_id)))
            assert isinstance(case, Case)
            records.extend(case.assignments.values())
            # And the read path over the case answers with the new keys.
            answer = application.read_case(case.id, COORDINATOR, Purpose.CONSULTATION, "req-v1")
            for shown in answer.get("assignments", []):
                assert set(shown) == ASSIGNMENT_KEYS
        received = [r for r in records if r["received_at"] is not None]
        assert {(r["id"]) for r in received} == {vars(e)["assignment_id"] for e in acknowledged}
        assert all(r["signed_for"] is None and r["acknowledged_at"] is None for r in received)
        assert all(set(r) == ASSIGNMENT_KEYS for r in records)
    finally:
        application.close()


# --- the state of an assignment --------------------------------------------------------------

DAY = date(2026, 5, 20)
AT = "2026-05-19T08:00:00+00:00"


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, DutyState.PUBLISHED),
        ({"received_at": AT}, DutyState.RECEIVED),
        ({"received_at": AT, "signed_for_at": AT}, DutyState.SIGNED_FOR),
        ({"signed_for_at": AT, "due_on": DAY.isoformat()}, DutyState.RESULT_DUE),
        ({"signed_for_at": AT, "due_on": "2026-05-19"}, DutyState.OVERDUE),
        ({"due_on": "2026-05-19"}, DutyState.OVERDUE),
        ({"due_on": DAY.isoformat()}, DutyState.PUBLISHED),
        ({"ended_at": AT, "outcome": "declined", "due_on": "2026-05-01"}, DutyState.DECLINED),
        ({"ended_at": AT, "outcome": "result_reported"}, DutyState.RESULT_REPORTED),
        ({"ended_at": AT, "outcome": "case_closed", "due_on": "2026-05-01"}, DutyState.ENDED),
        ({"ended_at": AT, "outcome": "withdrawn"}, DutyState.ENDED),
    ],
)
def test_duty_state(facts: dict[str, str], expected: DutyState) -> None:
    given: dict[str, Any] = {
        "ended_at": None,
        "outcome": None,
        "due_on": "2026-05-25",
        "signed_for_at": None,
        "received_at": None,
    } | facts
    assert duty_state(**given, today=DAY) is expected
    assert DutyState(expected) in DUTY_STATE_LABELS
