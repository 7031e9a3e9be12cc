"""The Case aggregate: every command, its event, and every rule refusing with its named error."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from domain import clock, errors
from domain import commands as cmd
from domain.case import Case
from domain.taxonomy import (
    CaseStatus,
    ClosingReason,
    LetterReason,
    ProtectionFunction,
    RiskLevel,
)
from tests.domain.builders import (
    COORDINATOR,
    HEALTH_CENTRE,
    HEALTH_MEMBER,
    POLICE,
    POLICE_MEMBER,
    REPORTER,
    STREET,
    new_case,
    report_clue,
)

E = TypeVar("E", bound=errors.DomainError)

TODAY = clock.local_today()  # the office's calendar (UTC+8), as the rules judge it
BY_COORDINATOR = COORDINATOR.as_record()
BY_POLICE = POLICE_MEMBER.as_record()
BY_HEALTH = HEALTH_MEMBER.as_record()

SELF_HARM = {"category": "mental_health", "subtype": "self_harm"}
ANXIETY = {"category": "mental_health", "subtype": "anxiety"}
LEFT_BEHIND = {"category": "growth_environment", "subtype": "left_behind"}
BULLYING = {"category": "unlawful_harm", "subtype": "bullying"}


# --- command builders -----------------------------------------------------------------------


def assign(unit: str = POLICE, function: str = "judicial") -> cmd.AssignUnit:
    return cmd.AssignUnit.model_validate(
        {"unit": unit, "function": function, "task": "入户核查", "due_on": TODAY.isoformat()}
    )


def consultation(held_on: date = TODAY) -> cmd.HoldConsultation:
    return cmd.HoldConsultation.model_validate(
        {
            "held_on": held_on.isoformat(),
            "participants": ["chengguan-governance-office", POLICE],
            "decision": "立即入户核查,学校心理老师介入",
        }
    )


def intervention(assignment_id: UUID | None = None) -> cmd.RecordIntervention:
    return cmd.RecordIntervention.model_validate(
        {
            "assignment_id": str(assignment_id) if assignment_id else None,
            "function": "judicial",
            "measure": "home_visit",
            "notes": "入户核查,与监护人谈话",
            "done_on": TODAY.isoformat(),
        }
    )


def reclassify(issues: list[dict[str, str]], risk: str | None = None) -> cmd.Reclassify:
    return cmd.Reclassify.model_validate({"issues": issues, "reason": "会商后复核", "risk": risk})


def assess(level: str) -> cmd.AssessRisk:
    return cmd.AssessRisk.model_validate({"level": level, "reason": "复评"})


def letter(
    reason: str = "parents_working_away", guardian_index: int = 0
) -> cmd.SignGuardianshipLetter:
    return cmd.SignGuardianshipLetter.model_validate(
        {"guardian_index": guardian_index, "reason": reason, "signed_on": TODAY.isoformat()}
    )


def follow_up() -> cmd.RecordFollowUp:
    return cmd.RecordFollowUp.model_validate({"visited_on": TODAY.isoformat(), "notes": "季度回访"})


def escalation() -> cmd.Escalate:
    return cmd.Escalate.model_validate(
        {"to": "police_station", "to_level": "county", "reason": "需司法介入"}
    )


def closing() -> cmd.CloseCase:
    return cmd.CloseCase.model_validate({"reason": "resolved", "note": "情况好转"})


def reopening() -> cmd.ReopenCase:
    return cmd.ReopenCase.model_validate({"reason": "再次发现苗头"})


# --- helpers --------------------------------------------------------------------------------


def names(events: Sequence[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def refuses(case: Case, error: type[E], action: Callable[[], object]) -> E:
    """Run `action`, expect exactly `error`, and check the case did not change at all."""
    before = copy.deepcopy(case)
    pending = len(case.pending_events)
    with pytest.raises(error) as caught:
        action()
    assert type(caught.value) is error
    assert len(case.pending_events) == pending, "a refused command must not add an event"
    assert case == before, "a refused command must not change the aggregate"
    return caught.value


def replay(events: Sequence[Any]) -> Case:
    aggregate: Case | None = None
    for event in events:
        aggregate = event.mutate(aggregate)
    assert isinstance(aggregate, Case)
    return aggregate


def closed_case() -> tuple[Case, UUID]:
    case = new_case()
    assignment_id = case.assign_unit(assign(), by=BY_COORDINATOR)
    case.close(closing(), by=BY_COORDINATOR)
    return case, assignment_id


# --- reporting ------------------------------------------------------------------------------


def test_report_triggers_clue_reported_with_the_file() -> None:
    clue = report_clue(issues=[ANXIETY], risk="medium")
    case = Case.report(clue, street=STREET, by=REPORTER.as_record())
    events = case.collect_events()
    assert names(events) == ["ClueReported"]
    assert events[0].originator_id == case.id
    assert case.version == 1
    assert case.street == STREET
    assert case.reporting_unit == REPORTER.unit
    assert case.status == CaseStatus.AWAITING_CONSULTATION
    assert case.risk == "medium"
    assert case.issues == [ANXIETY]
    assert case.minor["id_number"] == clue.minor.id_number
    assert case.found_on == clue.found_on.isoformat()
    assert case.assignments == {}
    assert case.closure is None
    assert case.collect_events() == []


@pytest.mark.parametrize("risk", ["low", "medium"])
def test_report_below_the_floor_is_refused_with_field_risk(risk: str) -> None:
    clue = report_clue(issues=[ANXIETY, SELF_HARM], risk=risk)
    with pytest.raises(errors.RiskBelowFloor) as caught:
        Case.report(clue, street=STREET, by=REPORTER.as_record())
    assert caught.value.field == "risk"


@pytest.mark.parametrize("risk", ["high", "urgent"])
def test_report_at_or_above_the_floor_passes(risk: str) -> None:
    case = new_case(issues=[SELF_HARM], risk=risk)
    assert case.risk == risk


# --- the whole life of a case ---------------------------------------------------------------


def test_every_command_produces_its_event() -> None:
    case = new_case(issues=[LEFT_BEHIND], risk="low")

    case.reclassify(reclassify([LEFT_BEHIND, SELF_HARM], risk="high"), by=BY_COORDINATOR)
    assert case.issues == [LEFT_BEHIND, SELF_HARM]
    assert case.risk == "high"

    case.assess_risk(assess("urgent"), by=BY_COORDINATOR)
    assert case.risk == "urgent"

    case.hold_consultation(consultation(), by=BY_COORDINATOR)
    assert case.status == CaseStatus.INTERVENING
    assert case.consultations[0]["held_on"] == TODAY.isoformat()

    assignment_id = case.assign_unit(assign(POLICE, "judicial"), by=BY_COORDINATOR)
    assignment = case.assignments[str(assignment_id)]
    assert (assignment["unit"], assignment["function"]) == (POLICE, "judicial")
    assert assignment["due_on"] == TODAY.isoformat()
    assert assignment["acknowledged_at"] is None
    assert assignment["ended"] is None
    assert case.open_assignments_of(POLICE) == [assignment]

    case.acknowledge_assignment(assignment_id, unit=POLICE, by=BY_POLICE)
    assert case.assignments[str(assignment_id)]["acknowledged_at"] is not None

    case.record_intervention(intervention(assignment_id), by=BY_POLICE)
    assert case.interventions[0]["assignment_id"] == str(assignment_id)
    assert case.interventions[0]["unit"] == POLICE

    case.end_assignment(assignment_id, outcome="核查完毕", by=BY_COORDINATOR)
    assert case.assignments[str(assignment_id)]["ended"]["outcome"] == "核查完毕"
    assert case.open_assignments_of(POLICE) == []

    case.sign_guardianship_letter(letter("unsupervised"), by=BY_COORDINATOR)
    assert case.letters == [
        {"guardian_index": 0, "reason": "unsupervised", "signed_on": TODAY.isoformat()}
    ]

    case.record_follow_up(follow_up(), by=REPORTER.as_record())
    assert case.follow_ups[0]["unit"] == REPORTER.unit

    case.escalate(escalation(), by=BY_COORDINATOR)
    assert case.escalations[0]["to_level"] == "county"

    case.close(closing(), by=BY_COORDINATOR)
    assert case.status == CaseStatus.CLOSED
    assert case.closure is not None
    assert case.closure["reason"] == "resolved"

    case.reopen(reopening(), by=BY_COORDINATOR)
    assert case.status == CaseStatus.AWAITING_CONSULTATION
    assert case.closure is None

    events = case.collect_events()
    assert names(events) == [
        "ClueReported",
        "Reclassified",
        "RiskAssessed",
        "ConsultationHeld",
        "UnitAssigned",
        "AssignmentAcknowledged",
        "InterventionRecorded",
        "AssignmentEnded",
        "GuardianshipLetterSigned",
        "FollowUpRecorded",
        "Escalated",
        "Closed",
        "Reopened",
    ]
    assert [e.originator_version for e in events] == list(range(1, 14))
    assert {e.originator_id for e in events} == {case.id}
    assert case.version == 13


def test_times_recorded_in_the_state_are_those_of_their_own_events() -> None:
    case = new_case()
    assignment_id = case.assign_unit(assign(), by=BY_COORDINATOR)
    case.acknowledge_assignment(assignment_id, unit=POLICE, by=BY_POLICE)
    ended_id = case.assign_unit(assign(HEALTH_CENTRE, "family"), by=BY_COORDINATOR)
    case.end_assignment(ended_id, outcome="已转介", by=BY_COORDINATOR)
    case.escalate(escalation(), by=BY_COORDINATOR)
    case.close(closing(), by=BY_COORDINATOR)
    at = {
        type(e).__name__ + str(i): e.timestamp.isoformat()
        for i, e in enumerate(case.collect_events())
    }
    # Events: 0 ClueReported, 1 UnitAssigned, 2 AssignmentAcknowledged, 3 UnitAssigned,
    # 4 AssignmentEnded, 5 Escalated, 6 Closed.
    held = case.assignments[str(assignment_id)]
    ended = case.assignments[str(ended_id)]
    assert held["assigned_at"] == at["UnitAssigned1"]
    assert held["acknowledged_at"] == at["AssignmentAcknowledged2"]
    assert ended["assigned_at"] == at["UnitAssigned3"]
    assert ended["ended"]["at"] == at["AssignmentEnded4"]
    assert case.escalations[0]["at"] == at["Escalated5"]
    assert case.closure is not None
    assert case.closure["at"] == at["Closed6"]
    assert held["ended"] == {"at": at["Closed6"], "outcome": "case_closed"}


def test_replaying_the_events_gives_the_same_state() -> None:
    case = new_case(issues=[LEFT_BEHIND], works_away=True)
    case.hold_consultation(consultation(), by=BY_COORDINATOR)
    police_id = case.assign_unit(assign(POLICE, "judicial"), by=BY_COORDINATOR)
    health_id = case.assign_unit(assign(HEALTH_CENTRE, "family"), by=BY_COORDINATOR)
    case.acknowledge_assignment(police_id, unit=POLICE, by=BY_POLICE)
    case.record_intervention(intervention(police_id), by=BY_POLICE)
    case.end_assignment(police_id, outcome="核查完毕", by=BY_COORDINATOR)
    case.sign_guardianship_letter(letter("parents_working_away"), by=BY_COORDINATOR)
    case.reclassify(reclassify([LEFT_BEHIND, SELF_HARM], risk="high"), by=BY_COORDINATOR)
    case.assess_risk(assess("urgent"), by=BY_COORDINATOR)
    case.record_follow_up(follow_up(), by=BY_HEALTH)
    case.escalate(escalation(), by=BY_COORDINATOR)
    case.close(closing(), by=BY_COORDINATOR)
    events = case.collect_events()

    replayed = replay(events)

    assert replayed.id == case.id
    assert replayed.version == case.version == len(events)
    assert replayed.status == case.status == CaseStatus.CLOSED
    assert replayed.risk == case.risk == RiskLevel.URGENT
    assert replayed.assignments == case.assignments
    assert set(replayed.assignments) == {str(police_id), str(health_id)}
    assert replayed.assignments[str(health_id)]["ended"]["outcome"] == "case_closed"
    assert replayed == case

    # A replay of part of the history gives the state as it was then.
    assert replay(events[:3]).status == CaseStatus.INTERVENING
    assert replay(events[:3]).assignments[str(police_id)]["ended"] is None


# --- risk floor -----------------------------------------------------------------------------


@pytest.mark.parametrize("risk", [None, "low", "medium"])
def test_reclassify_below_the_floor_is_refused_with_field_risk(risk: str | None) -> None:
    case = new_case(issues=[ANXIETY], risk="low")
    error = refuses(
        case,
        errors.RiskBelowFloor,
        lambda: case.reclassify(reclassify([SELF_HARM], risk=risk), by=BY_COORDINATOR),
    )
    assert error.field == "risk"


def test_reclassify_keeps_the_risk_when_none_is_given() -> None:
    case = new_case(issues=[ANXIETY], risk="medium")
    case.reclassify(reclassify([BULLYING]), by=BY_COORDINATOR)
    assert case.risk == "medium"
    assert case.issues == [BULLYING]


def test_reclassify_away_from_the_floor_allows_a_lower_risk_later() -> None:
    case = new_case(issues=[SELF_HARM], risk="high")
    case.reclassify(reclassify([ANXIETY]), by=BY_COORDINATOR)
    case.assess_risk(assess("low"), by=BY_COORDINATOR)
    assert case.risk == "low"


@pytest.mark.parametrize("level", ["low", "medium"])
def test_assess_risk_below_the_floor_is_refused_with_field_level(level: str) -> None:
    case = new_case(issues=[ANXIETY, SELF_HARM], risk="high")
    error = refuses(
        case, errors.RiskBelowFloor, lambda: case.assess_risk(assess(level), by=BY_COORDINATOR)
    )
    assert error.field == "level"


# --- closed cases ---------------------------------------------------------------------------


CLOSED_CASE_ACTIONS: dict[str, Callable[[Case], object]] = {
    "assign": lambda c: c.assign_unit(assign(HEALTH_CENTRE, "family"), by=BY_COORDINATOR),
    "intervention": lambda c: c.record_intervention(intervention(), by=BY_COORDINATOR),
    "follow-up": lambda c: c.record_follow_up(follow_up(), by=BY_COORDINATOR),
    "consultation": lambda c: c.hold_consultation(consultation(), by=BY_COORDINATOR),
    "reclassify": lambda c: c.reclassify(reclassify([BULLYING]), by=BY_COORDINATOR),
    "assess risk": lambda c: c.assess_risk(assess("medium"), by=BY_COORDINATOR),
    "escalate": lambda c: c.escalate(escalation(), by=BY_COORDINATOR),
    "letter": lambda c: c.sign_guardianship_letter(letter("unsupervised"), by=BY_COORDINATOR),
    "close again": lambda c: c.close(closing(), by=BY_COORDINATOR),
}


@pytest.mark.parametrize("action", list(CLOSED_CASE_ACTIONS))
def test_commands_on_a_closed_case_are_refused_with_case_closed(action: str) -> None:
    case, _ = closed_case()
    refuses(case, errors.CaseClosed, lambda: CLOSED_CASE_ACTIONS[action](case))


def test_closing_ends_every_open_assignment() -> None:
    case = new_case()
    open_id = case.assign_unit(assign(POLICE, "judicial"), by=BY_COORDINATOR)
    ended_id = case.assign_unit(assign(HEALTH_CENTRE, "family"), by=BY_COORDINATOR)
    case.end_assignment(ended_id, outcome="已完成", by=BY_COORDINATOR)
    case.close(closing(), by=BY_COORDINATOR)
    assert case.assignments[str(open_id)]["ended"]["outcome"] == "case_closed"
    assert case.assignments[str(ended_id)]["ended"]["outcome"] == "已完成"
    assert case.open_assignments_of(POLICE) == []


def test_assignment_ended_after_close() -> None:
    case, assignment_id = closed_case()
    refuses(
        case,
        errors.AssignmentEnded,
        lambda: case.acknowledge_assignment(assignment_id, unit=POLICE, by=BY_POLICE),
    )
    refuses(
        case,
        errors.AssignmentEnded,
        lambda: case.end_assignment(assignment_id, outcome="x", by=BY_COORDINATOR),
    )


def test_reopen_of_an_open_case_is_refused_with_case_not_closed() -> None:
    case = new_case()
    refuses(case, errors.CaseNotClosed, lambda: case.reopen(reopening(), by=BY_COORDINATOR))


def test_reopened_case_accepts_commands_again_but_old_assignments_stay_ended() -> None:
    case, assignment_id = closed_case()
    case.reopen(reopening(), by=BY_COORDINATOR)
    refuses(
        case,
        errors.AssignmentEnded,
        lambda: case.acknowledge_assignment(assignment_id, unit=POLICE, by=BY_POLICE),
    )
    new_id = case.assign_unit(assign(), by=BY_COORDINATOR)
    assert new_id != assignment_id
    assert case.open_assignments_of(POLICE) == [case.assignments[str(new_id)]]


# --- assignments ----------------------------------------------------------------------------


def test_unknown_assignment() -> None:
    case = new_case()
    case.assign_unit(assign(), by=BY_COORDINATOR)
    stranger = uuid4()
    refuses(
        case,
        errors.UnknownAssignment,
        lambda: case.acknowledge_assignment(stranger, unit=POLICE, by=BY_POLICE),
    )
    refuses(
        case,
        errors.UnknownAssignment,
        lambda: case.end_assignment(stranger, outcome="x", by=BY_COORDINATOR),
    )
    refuses(
        case,
        errors.UnknownAssignment,
        lambda: case.record_intervention(intervention(stranger), by=BY_POLICE),
    )


def test_another_unit_cannot_acknowledge_an_assignment() -> None:
    case = new_case()
    assignment_id = case.assign_unit(assign(POLICE), by=BY_COORDINATOR)
    refuses(
        case,
        errors.AssignmentNotHeld,
        lambda: case.acknowledge_assignment(assignment_id, unit=HEALTH_CENTRE, by=BY_HEALTH),
    )


def test_another_unit_cannot_record_an_intervention_under_an_assignment() -> None:
    case = new_case()
    assignment_id = case.assign_unit(assign(POLICE), by=BY_COORDINATOR)
    error = refuses(
        case,
        errors.AssignmentNotHeld,
        lambda: case.record_intervention(intervention(assignment_id), by=BY_HEALTH),
    )
    assert error.field == "assignment_id"


def test_intervention_under_an_ended_assignment_is_refused() -> None:
    case = new_case()
    assignment_id = case.assign_unit(assign(POLICE), by=BY_COORDINATOR)
    case.end_assignment(assignment_id, outcome="完成", by=BY_COORDINATOR)
    error = refuses(
        case,
        errors.AssignmentEnded,
        lambda: case.record_intervention(intervention(assignment_id), by=BY_POLICE),
    )
    assert error.field == "assignment_id"


def test_acknowledging_twice_is_refused() -> None:
    case = new_case()
    assignment_id = case.assign_unit(assign(POLICE), by=BY_COORDINATOR)
    case.acknowledge_assignment(assignment_id, unit=POLICE, by=BY_POLICE)
    refuses(
        case,
        errors.AssignmentAlreadyAcknowledged,
        lambda: case.acknowledge_assignment(assignment_id, unit=POLICE, by=BY_POLICE),
    )


def test_ending_twice_is_refused() -> None:
    case = new_case()
    assignment_id = case.assign_unit(assign(POLICE), by=BY_COORDINATOR)
    case.end_assignment(assignment_id, outcome="完成", by=BY_COORDINATOR)
    refuses(
        case,
        errors.AssignmentEnded,
        lambda: case.end_assignment(assignment_id, outcome="again", by=BY_COORDINATOR),
    )


def test_duplicate_assignment_same_unit_and_function_while_open() -> None:
    case = new_case()
    case.assign_unit(assign(POLICE, "judicial"), by=BY_COORDINATOR)
    error = refuses(
        case,
        errors.DuplicateAssignment,
        lambda: case.assign_unit(assign(POLICE, "judicial"), by=BY_COORDINATOR),
    )
    assert error.field == "unit"


def test_same_unit_may_hold_another_function_or_the_same_after_it_ended() -> None:
    case = new_case()
    first = case.assign_unit(assign(POLICE, "judicial"), by=BY_COORDINATOR)
    other = case.assign_unit(assign(POLICE, "society"), by=BY_COORDINATOR)
    case.end_assignment(first, outcome="完成", by=BY_COORDINATOR)
    again = case.assign_unit(assign(POLICE, "judicial"), by=BY_COORDINATOR)
    assert len({first, other, again}) == 3
    assert {a["function"] for a in case.open_assignments_of(POLICE)} == {
        ProtectionFunction.SOCIETY,
        ProtectionFunction.JUDICIAL,
    }


# --- guardianship letters, dates ------------------------------------------------------------


def test_letter_for_parents_working_away_needs_a_reason_on_file() -> None:
    case = new_case(issues=[ANXIETY], works_away=False)
    error = refuses(
        case,
        errors.GuardianshipLetterNotApplicable,
        lambda: case.sign_guardianship_letter(letter("parents_working_away"), by=BY_COORDINATOR),
    )
    assert error.field == "reason"


def test_letter_for_an_unsupervised_minor_needs_a_reason_on_file() -> None:
    case = new_case(issues=[ANXIETY], works_away=True)
    error = refuses(
        case,
        errors.GuardianshipLetterNotApplicable,
        lambda: case.sign_guardianship_letter(letter("unsupervised"), by=BY_COORDINATOR),
    )
    assert error.field == "reason"


def test_letter_for_a_guardian_not_on_file_is_refused() -> None:
    case = new_case(issues=[LEFT_BEHIND], works_away=True)
    error = refuses(
        case,
        errors.GuardianshipLetterNotApplicable,
        lambda: case.sign_guardianship_letter(
            letter("parents_working_away", guardian_index=1), by=BY_COORDINATOR
        ),
    )
    assert error.field == "guardian_index"


@pytest.mark.parametrize(
    ("issues", "works_away", "reason"),
    [
        ([ANXIETY], True, LetterReason.PARENTS_WORKING_AWAY),
        ([LEFT_BEHIND], False, LetterReason.PARENTS_WORKING_AWAY),
        (
            [{"category": "growth_environment", "subtype": "orphan"}],
            False,
            LetterReason.UNSUPERVISED,
        ),
        (
            [{"category": "growth_environment", "subtype": "long_without_guardianship"}],
            False,
            LetterReason.UNSUPERVISED,
        ),
    ],
)
def test_letters_that_apply_are_signed(
    issues: list[dict[str, str]], works_away: bool, reason: LetterReason
) -> None:
    risk = "high" if issues[0]["subtype"] == "long_without_guardianship" else "low"
    case = new_case(issues=issues, works_away=works_away, risk=risk)
    case.sign_guardianship_letter(letter(str(reason)), by=BY_COORDINATOR)
    assert case.letters[0]["reason"] == reason
    assert names(case.collect_events())[-1] == "GuardianshipLetterSigned"


def test_consultation_before_the_clue_was_found_is_refused() -> None:
    case = new_case(found_on=TODAY - timedelta(days=5))
    error = refuses(
        case,
        errors.DateOutOfOrder,
        lambda: case.hold_consultation(consultation(TODAY - timedelta(days=6)), by=BY_COORDINATOR),
    )
    assert error.field == "held_on"


def test_consultation_on_the_day_the_clue_was_found_passes() -> None:
    found_on = TODAY - timedelta(days=5)
    case = new_case(found_on=found_on)
    case.hold_consultation(consultation(found_on), by=BY_COORDINATOR)
    assert case.status == CaseStatus.INTERVENING


def test_closing_reason_is_recorded() -> None:
    case = new_case()
    case.close(
        cmd.CloseCase(reason=ClosingReason.MOVED_AWAY, note="随父母迁居外省"), by=BY_COORDINATOR
    )
    assert case.closure is not None
    assert case.closure["reason"] == "moved_away"
    assert case.closure["note"] == "随父母迁居外省"
