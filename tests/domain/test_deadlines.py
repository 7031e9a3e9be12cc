"""The deadline rules (`domain.deadlines`), clock-controlled: `now` is given, never read.

Each rule fires once, at its instant and not a microsecond before, and not again once its fact
is folded back (as the store's copy is by the scheduler); each escalation likewise, one period
later, only while the duty is unmet.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from domain import clock
from domain import commands as cmd
from domain.case import Case
from domain.commands import MEASURES
from domain.deadlines import (
    AssignmentNotSignedFor,
    AssignmentOverdue,
    CaseDuties,
    ConsultationOverdue,
    DeadlineEscalated,
    DeadlineFact,
    Periods,
    QuarterlyUpdateMissed,
    fold,
    signs_for,
)
from domain.quarters import Quarter, local_date, start_of_day
from tests.domain.builders import (
    COORDINATOR,
    GOVERNANCE_OFFICE,
    POLICE,
    POLICE_MEMBER,
    STREET,
    VILLAGE,
    new_case,
)

# Dates in commands are checked against the process's date (not in the future, due from today).
TODAY = clock.local_today()  # the office's calendar (UTC+8), as the rules judge it
US = timedelta(microseconds=1)
HOURS_24 = timedelta(hours=24)
PERIODS = Periods()
OFFICES = {STREET: GOVERNANCE_OFFICE}
BY_COORDINATOR = COORDINATOR.as_record()


class Scanner:
    """The scheduler's loop without a store: fold events, ask for what is due at `now`, and
    fold what it returned back in (as the stored facts are)."""

    def __init__(self, periods: Periods = PERIODS) -> None:
        self.duties: dict[UUID, CaseDuties] = {}
        self.periods = periods

    def see(self, case: Case) -> list[Any]:
        events = list(case.collect_events())
        fold(self.duties, events)
        return events

    def due(self, now: datetime, kind: type | None = None) -> list[Any]:
        found = [f for d in self.duties.values() for f in d.due(now, self.periods, OFFICES)]
        return [f for f in found if kind is None or isinstance(f, kind)]

    def scan(self, now: datetime, kind: type | None = None) -> list[Any]:
        found = self.due(now)
        # A round trip through the stored form, as the scheduler's table keeps it.
        self.duties = {k: CaseDuties.from_json(v.to_json()) for k, v in self.duties.items()}
        fold(self.duties, found)
        return [f for f in found if kind is None or isinstance(f, kind)]


def reported() -> tuple[Scanner, Case, datetime]:
    scanner = Scanner()
    case = new_case()
    (event,) = scanner.see(case)
    return scanner, case, event.timestamp


def assigned(
    case: Case, scanner: Scanner, due_on: date = TODAY, function: str = "judicial"
) -> tuple[str, datetime]:
    command = cmd.AssignUnit.model_validate(
        {"unit": POLICE, "function": function, "task": "入户核查", "due_on": due_on.isoformat()}
    )
    aid = case.assign_unit(command, by=BY_COORDINATOR)
    (event,) = scanner.see(case)
    return str(aid), event.timestamp


def held(case: Case) -> None:
    case.hold_consultation(
        cmd.HoldConsultation.model_validate(
            {
                "held_on": TODAY.isoformat(),
                "participants": [GOVERNANCE_OFFICE, POLICE],
                "decision": "立即入户核查",
            }
        ),
        by=BY_COORDINATOR,
    )


def test_consultation_overdue_fires_at_its_instant_once_then_escalates_once() -> None:
    scanner, case, at = reported()
    due = at + HOURS_24
    assert scanner.scan(due - timedelta(seconds=1), ConsultationOverdue) == []
    assert scanner.scan(due - US, ConsultationOverdue) == []
    (fact,) = scanner.scan(due)  # nothing else is due yet
    assert isinstance(fact, ConsultationOverdue)
    assert (fact.case_id, fact.street, fact.unit) == (case.id, STREET, GOVERNANCE_OFFICE)
    assert datetime.fromisoformat(fact.due_at) == due
    assert scanner.scan(due) == []
    escalate_at = due + HOURS_24
    assert scanner.scan(escalate_at - US) == []
    (escalation,) = scanner.scan(escalate_at)
    assert isinstance(escalation, DeadlineEscalated)
    assert (escalation.fact, escalation.fact_id) == ("ConsultationOverdue", fact.originator_id)
    assert (escalation.case_id, escalation.street) == (case.id, STREET)
    assert datetime.fromisoformat(escalation.due_at) == escalate_at
    assert scanner.scan(escalate_at + timedelta(days=30), DeadlineFact) == []


def test_a_consultation_in_time_leaves_no_fact_and_a_late_one_stops_the_escalation() -> None:
    scanner, case, at = reported()
    held(case)
    scanner.see(case)
    assert scanner.scan(at + 3 * HOURS_24, ConsultationOverdue) == []

    late, case, at = reported()
    late.scan(at + HOURS_24 + timedelta(hours=1))  # the fact is stored...
    held(case)  # ...then the consultation is held, before the escalation falls due
    late.see(case)
    assert late.scan(at + 5 * HOURS_24, DeadlineEscalated) == []


def test_a_consultation_held_after_the_instant_does_not_undo_a_scan_that_came_late() -> None:
    # The scanner was down: it learns of the late consultation before it looks. The fact
    # depends on the history, not on when the scan ran.
    scanner, case, at = reported()
    held(case)
    events = case.collect_events()
    late = [e for e in events]
    for event in late:
        object.__setattr__(event, "timestamp", at + HOURS_24 + timedelta(minutes=5))
    fold(scanner.duties, late)
    (fact,) = scanner.scan(at + 10 * HOURS_24, ConsultationOverdue)
    assert datetime.fromisoformat(fact.due_at) == at + HOURS_24


def test_an_assignment_not_signed_for_fires_once_at_its_instant_and_escalates() -> None:
    scanner, case, _ = reported()
    held(case)
    scanner.see(case)
    aid, at = assigned(case, scanner, TODAY + timedelta(days=30))
    due = at + HOURS_24
    assert scanner.scan(due - US, AssignmentNotSignedFor) == []
    (fact,) = scanner.scan(due, AssignmentNotSignedFor)
    assert (fact.assignment_id, fact.unit, fact.street) == (aid, POLICE, STREET)
    assert scanner.scan(due + HOURS_24 - US, DeadlineEscalated) == []
    (escalation,) = scanner.scan(due + HOURS_24, DeadlineEscalated)
    assert escalation.fact == "AssignmentNotSignedFor"
    assert escalation.fact_id == fact.originator_id
    assert scanner.scan(due + 3 * HOURS_24, AssignmentNotSignedFor) == []


def test_signing_for_in_time_or_the_assignment_ending_meets_the_duty() -> None:
    scanner, case, _ = reported()
    held(case)
    scanner.see(case)
    signed, at = assigned(case, scanner, TODAY + timedelta(days=30))
    ended, _ = assigned(case, scanner, TODAY + timedelta(days=30), "family")
    case.acknowledge_assignment(UUID(signed), unit=POLICE, by=POLICE_MEMBER.as_record())
    case.end_assignment(UUID(ended), outcome="withdrawn", by=BY_COORDINATOR)
    scanner.see(case)
    assert scanner.scan(at + 5 * HOURS_24, AssignmentNotSignedFor) == []


def test_a_client_receipt_is_not_a_signing() -> None:
    assert signs_for(SimpleNamespace(receipt=False))
    assert not signs_for(SimpleNamespace(receipt=True))
    # The events stored before the contract's version 2 (no such field) are signings.
    assert signs_for(SimpleNamespace())


def test_an_assignment_is_overdue_at_the_local_midnight_after_its_due_date() -> None:
    scanner, case, _ = reported()
    held(case)
    scanner.see(case)
    aid, _ = assigned(case, scanner, TODAY)
    case.acknowledge_assignment(UUID(aid), unit=POLICE, by=POLICE_MEMBER.as_record())
    scanner.see(case)
    due = start_of_day(TODAY + timedelta(days=1))  # Asia/Shanghai
    assert due.utcoffset() == timedelta(hours=8)
    assert scanner.scan(due - US, AssignmentOverdue) == []
    (fact,) = scanner.scan(due, AssignmentOverdue)
    assert (fact.assignment_id, fact.unit, fact.due_on) == (aid, POLICE, TODAY.isoformat())
    assert scanner.scan(due, AssignmentOverdue) == []
    (escalation,) = scanner.scan(due + HOURS_24, DeadlineEscalated)
    assert escalation.fact == "AssignmentOverdue"


def test_an_assignment_ended_before_its_due_date_is_not_overdue() -> None:
    scanner, case, _ = reported()
    # Due tomorrow: "today" in commands is the process's date, which may already have ended
    # in Asia/Shanghai (the rule's time zone).
    aid, _ = assigned(case, scanner, TODAY + timedelta(days=1))
    case.end_assignment(UUID(aid), outcome="completed", by=BY_COORDINATOR)
    scanner.see(case)
    assert scanner.scan(start_of_day(TODAY + timedelta(days=40)), AssignmentOverdue) == []


def test_a_quarter_without_a_follow_up_is_missed_at_its_end_then_each_next_one() -> None:
    scanner, case, at = reported()
    held(case)
    scanner.see(case)
    quarter = Quarter.of(local_date(at)).next()  # the report counts for its own quarter
    due = start_of_day(quarter.end + timedelta(days=1))
    assert scanner.scan(due - US, QuarterlyUpdateMissed) == []
    (fact,) = scanner.scan(due, QuarterlyUpdateMissed)
    assert fact.quarter == f"{quarter.year}-Q{quarter.number}"
    assert (fact.unit, fact.street) == (VILLAGE, STREET)
    assert scanner.scan(due, QuarterlyUpdateMissed) == []
    (escalation,) = scanner.scan(due + HOURS_24, DeadlineEscalated)
    assert escalation.fact == "QuarterlyUpdateMissed"
    following = quarter.next()
    (second,) = scanner.scan(start_of_day(following.end + timedelta(days=1)), QuarterlyUpdateMissed)
    assert second.quarter == f"{following.year}-Q{following.number}"


def test_a_follow_up_keeps_the_quarter_and_stops_an_escalation() -> None:
    scanner, case, at = reported()
    held(case)
    case.record_follow_up(
        cmd.RecordFollowUp.model_validate({"visited_on": TODAY.isoformat(), "notes": "回访"}),
        by=BY_COORDINATOR,
    )
    scanner.see(case)
    quarter = Quarter.of(max(local_date(at), TODAY)).next()
    due = start_of_day(quarter.end + timedelta(days=1))
    # An update this quarter makes the next one the first due: the same instant as before,
    # since the report was this quarter too; a missed quarter's fact comes at its end only.
    (fact,) = scanner.scan(due, QuarterlyUpdateMissed)
    # A follow-up recorded after the quarter ended, before the escalation: none.
    follow_up = cmd.RecordFollowUp.model_validate(
        {"visited_on": TODAY.isoformat(), "notes": "补录回访"}
    )
    case.record_follow_up(follow_up, by=BY_COORDINATOR)
    events = case.collect_events()
    object.__setattr__(events[0], "timestamp", due + timedelta(hours=1))
    fold(scanner.duties, events)
    assert scanner.scan(due + 2 * HOURS_24, DeadlineEscalated) == []
    assert fact.quarter == f"{quarter.year}-Q{quarter.number}"


def test_a_closed_case_has_no_more_duties_and_is_settled() -> None:
    scanner, case, _ = reported()
    case.close(
        cmd.CloseCase.model_validate({"reason": "resolved", "note": "好转"}), by=BY_COORDINATOR
    )
    scanner.see(case)
    assert scanner.scan(datetime(2099, 1, 1, tzinfo=UTC)) == []
    (duties,) = scanner.duties.values()
    assert duties.settled(PERIODS)
    open_scanner, _, _ = reported()
    (still_open,) = open_scanner.duties.values()
    assert not still_open.settled(PERIODS)


def test_ids_are_the_same_for_the_same_fact_whoever_computes_it() -> None:
    one, _, at = reported()
    two = Scanner()
    two.duties = {k: CaseDuties.from_json(v.to_json()) for k, v in one.duties.items()}
    later = at + 3 * HOURS_24
    first = [f.originator_id for f in one.due(later)]
    second = [f.originator_id for f in two.due(later)]
    assert first == second and len(set(first)) == len(first) == 2  # the fact, its escalation


def test_the_periods_come_from_the_environment() -> None:
    env = {"CONSULTATION_DEADLINE_HOURS": "2", "SIGN_FOR_DUE_HOURS": "0.5"}
    periods = Periods.from_env(env.get)
    assert periods == Periods(timedelta(hours=2), timedelta(minutes=30), HOURS_24)
    scanner = Scanner(periods)
    case = new_case()
    (event,) = scanner.see(case)
    assert scanner.scan(event.timestamp + timedelta(hours=2) - US) == []
    assert [type(f) for f in scanner.scan(event.timestamp + timedelta(hours=2))] == [
        ConsultationOverdue
    ]


def test_a_changed_period_does_not_record_a_fact_twice() -> None:
    scanner, _, at = reported()
    (fact,) = scanner.scan(at + HOURS_24, ConsultationOverdue)
    scanner.periods = Periods(consultation=2 * HOURS_24)
    assert scanner.scan(at + 2 * HOURS_24, ConsultationOverdue) == []
    # Its escalation counts from the instant the rules now give.
    assert scanner.scan(at + 3 * HOURS_24 - US, DeadlineEscalated) == []
    (escalation,) = scanner.scan(at + 3 * HOURS_24, DeadlineEscalated)
    assert escalation.fact_id == fact.originator_id


def test_a_decline_or_a_result_ends_the_duty_and_a_client_receipt_does_not() -> None:
    scanner, case, _ = reported()
    held(case)
    scanner.see(case)
    week = TODAY + timedelta(days=7)
    declined, at = assigned(case, scanner, week)
    finished, _ = assigned(case, scanner, week, "family")
    received, _ = assigned(case, scanner, week, "school")
    by = POLICE_MEMBER.as_record()
    case.decline_assignment(UUID(declined), cmd.DeclineAssignment(reason="不属本单位职能。"), by=by)
    case.acknowledge_assignment(UUID(finished), unit=POLICE, by=by)
    case.report_assignment_result(
        UUID(finished),
        cmd.ReportAssignmentResult(
            measures=[MEASURES[0]], outcome="已家访。", recommendation="continue"
        ),
        by=by,
    )
    # What a version-1 acknowledgement is read as: the unit's client, a receipt.
    case._assignment_acknowledged(assignment_id=received, unit=POLICE, by=by, receipt=True)
    scanner.see(case)
    later = start_of_day(week + timedelta(days=3))
    facts = scanner.due(later, AssignmentNotSignedFor) + scanner.due(later, AssignmentOverdue)
    assert {(type(f).__name__, f.assignment_id) for f in facts} == {
        ("AssignmentNotSignedFor", received),
        ("AssignmentOverdue", received),
    }
    assert at < later
