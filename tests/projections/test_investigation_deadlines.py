"""The deadline analysis on histories of chosen instants: quarterly updates met, missed and
open; signing for late after an `AssignmentNotSignedFor` fact, or missed by the scheduler's
period; a result reported before its due date; a late consultation after a `ConsultationOverdue`
fact; and the deadline facts on the timeline with their labels.

The events are the domain's own, made by the aggregate's methods; only their instants are set
(the store stamps the wall clock, and quarters need months): `history_of` takes them with their
positions, as `gather` would hand them over."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from domain import commands as cmd
from domain.case import Case
from domain.deadlines import AssignmentNotSignedFor, ConsultationOverdue
from domain.taxonomy import ProtectionFunction
from projections.investigation import deadlines, history_of, timeline
from projections.ledger.quarters import LOCAL_TZ
from tests.domain import builders as b

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=LOCAL_TZ)
REPORTED = datetime(2026, 1, 10, 9, 0, tzinfo=LOCAL_TZ)
COORDINATOR = b.COORDINATOR.as_record()
POLICE = b.POLICE_MEMBER.as_record()


def _at(event: Any, moment: datetime) -> Any:
    object.__setattr__(event, "timestamp", moment.astimezone(UTC))
    return event


def _fact(cls: Any, **fields: Any) -> Any:
    return cls(originator_id=uuid4(), originator_version=1, timestamp=NOW, **fields)


def _history() -> tuple[UUID, list[Any], dict[str, str]]:
    """A file reported on 10 January: a late consultation, two assignments, updates in Q2."""
    case = Case.report(
        b.report_clue(found_on=date(2026, 1, 8)), street=b.STREET, by=b.REPORTER.as_record()
    )
    case.hold_consultation(
        cmd.HoldConsultation(held_on=date(2026, 1, 12), participants=[b.POLICE], decision="跟进"),
        by=COORDINATOR,
    )
    aids = {}
    for unit, function in (
        (b.POLICE, ProtectionFunction.JUDICIAL),
        (b.HEALTH_CENTRE, ProtectionFunction.FAMILY),
    ):
        aids[unit] = str(
            case.assign_unit(
                cmd.AssignUnit.model_construct(
                    unit=unit, function=function, task="走访", due_on=date(2026, 3, 1)
                ),
                by=COORDINATOR,
            )
        )
    case.acknowledge_assignment(UUID(aids[b.POLICE]), unit=b.POLICE, by=POLICE)
    case.report_assignment_result(
        UUID(aids[b.POLICE]),
        cmd.ReportAssignmentResult(
            measures=["home_visit"], outcome="已稳定", recommendation="continue"
        ),
        by=POLICE,
    )
    case.record_follow_up(
        cmd.RecordFollowUp(visited_on=date(2026, 5, 1), notes="回访"), by=COORDINATOR
    )
    stored = case.collect_events()
    instants = [
        REPORTED,
        REPORTED + timedelta(days=2),  # after a ConsultationOverdue at +24 h
        REPORTED + timedelta(days=3),
        REPORTED + timedelta(days=3, minutes=1),
        REPORTED + timedelta(days=4, hours=6),  # after its AssignmentNotSignedFor at +24 h
        datetime(2026, 2, 20, 10, 0, tzinfo=LOCAL_TZ),  # before 1 March
        datetime(2026, 5, 1, 18, 0, tzinfo=LOCAL_TZ),
    ]
    events = [_at(e, t) for e, t in zip(stored, instants, strict=True)]
    overdue = _at(
        _fact(
            ConsultationOverdue,
            case_id=case.id,
            street=b.STREET,
            unit=b.GOVERNANCE_OFFICE,
            due_at=(REPORTED + timedelta(hours=24)).astimezone(UTC).isoformat(),
        ),
        REPORTED + timedelta(hours=24, minutes=5),
    )
    not_signed = _at(
        _fact(
            AssignmentNotSignedFor,
            case_id=case.id,
            assignment_id=aids[b.POLICE],
            unit=b.POLICE,
            street=b.STREET,
            due_at=(instants[2] + timedelta(hours=24)).astimezone(UTC).isoformat(),
        ),
        instants[2] + timedelta(hours=24, minutes=5),
    )
    ordered = [events[0], overdue, events[1], events[2], events[3], not_signed, *events[4:]]
    return case.id, ordered, aids


def test_each_duty_met_late_missed_or_open() -> None:
    case_id, events, aids = _history()
    history = history_of(case_id, list(enumerate(events, 1)))
    found = deadlines(history, now=NOW.astimezone(UTC), sign_for_due=timedelta(hours=24))
    got = [
        (
            c["duty"],
            c["assignment_id"],
            c["quarter"],
            c["status"],
            c["unit"],
            c["person"],
            c["position"],
        )
        for c in found["checks"]
    ]
    police, health = aids[b.POLICE], aids[b.HEALTH_CENTRE]
    assert got == [
        # Held two days after the report, a day after the fact said it was overdue.
        ("consultation", None, None, "late", b.GOVERNANCE_OFFICE, "coordinator-1", 3),
        # Signed for after the scheduler recorded it unsigned; the result came before 1 March.
        ("sign_for", police, None, "late", b.POLICE, "police-1", 7),
        ("assignment_due", police, None, "met", b.POLICE, "police-1", 8),
        # Never signed for: due 24 h after its assignment (the scheduler's period), missed.
        ("sign_for", health, None, "missed", b.HEALTH_CENTRE, None, None),
        ("assignment_due", health, None, "missed", b.HEALTH_CENTRE, None, None),
        # Reported in Q1: an update due by the end of Q2 (met on 1 May), then by the end of Q3
        # (missed), then by the end of Q4 (open on 15 November).
        ("quarterly_update", None, "2026-Q2", "met", b.VILLAGE, "coordinator-1", 9),
        ("quarterly_update", None, "2026-Q3", "missed", b.VILLAGE, None, None),
        ("quarterly_update", None, "2026-Q4", "open", b.VILLAGE, None, None),
    ]
    by_duty = {(c["duty"], c["assignment_id"], c["quarter"]): c for c in found["checks"]}
    assert by_duty[("sign_for", police, None)]["due_at"] == events[5].due_at
    assert (
        by_duty[("sign_for", health, None)]["due_at"]
        == (events[4].timestamp + timedelta(hours=24)).isoformat()
    )
    assert by_duty[("quarterly_update", None, "2026-Q3")]["due_at"] == "2026-09-30T16:00:00+00:00"
    assert [m["step"] for m in found["milestones"]] == [
        "reported",
        "consultation",
        "assignment",
        "assignment",
        "signed_for",
    ]
    assert found["milestones"][0]["hours_since_found"] == 57.0  # 8 Jan 00:00 to 10 Jan 09:00


def test_without_a_period_or_a_fact_an_unsigned_open_assignment_is_open() -> None:
    case_id, events, aids = _history()
    history = history_of(case_id, list(enumerate(events, 1)))
    found = deadlines(history, now=NOW.astimezone(UTC))
    unsigned = [
        c
        for c in found["checks"]
        if c["duty"] == "sign_for" and c["assignment_id"] == aids[b.HEALTH_CENTRE]
    ]
    assert [(c["status"], c["due_at"]) for c in unsigned] == [("open", None)]


def test_deadline_facts_are_on_the_timeline_with_their_units() -> None:
    case_id, events, _ = _history()
    entries = timeline(history_of(case_id, list(enumerate(events, 1))))["entries"]
    facts = [
        (e["kind"], e["label_zh"], e["actor"]["unit"])
        for e in entries
        if e["kind"].endswith(("overdue", "not_signed_for"))
    ]
    assert facts == [
        ("consultation_overdue", "会商超期", b.GOVERNANCE_OFFICE),
        ("assignment_not_signed_for", "任务未签收", b.POLICE),
    ]
    result = next(e for e in entries if e["kind"] == "assignment_result_reported")
    assert result["label_zh"] == "办结反馈" and result["details"]["recommendation"] == "continue"


def test_each_reopening_waits_for_a_consultation_of_its_own() -> None:
    """Reported, consulted in time, closed (ending its open assignment), reopened: a second
    wait, met by the next consultation only if it comes within the period."""
    case = Case.report(
        b.report_clue(found_on=date(2026, 1, 8)), street=b.STREET, by=b.REPORTER.as_record()
    )
    held = cmd.HoldConsultation(held_on=date(2026, 1, 10), participants=[b.POLICE], decision="跟进")
    case.hold_consultation(held, by=COORDINATOR)
    case.assign_unit(
        cmd.AssignUnit.model_construct(
            unit=b.POLICE,
            function=ProtectionFunction.JUDICIAL,
            task="走访",
            due_on=date(2026, 9, 1),
        ),
        by=COORDINATOR,
    )
    case.close(cmd.CloseCase(reason="resolved", note="好转"), by=COORDINATOR)
    case.reopen(cmd.ReopenCase(reason="情况反复"), by=COORDINATOR)
    case.hold_consultation(held, by=COORDINATOR)
    instants = [
        REPORTED,
        REPORTED + timedelta(hours=3),
        REPORTED + timedelta(hours=4),
        datetime(2026, 2, 1, 9, 0, tzinfo=LOCAL_TZ),
        datetime(2026, 3, 1, 9, 0, tzinfo=LOCAL_TZ),
        datetime(2026, 3, 3, 9, 0, tzinfo=LOCAL_TZ),  # two days after the reopening: late
    ]
    events = [_at(e, t) for e, t in zip(case.collect_events(), instants, strict=True)]
    found = deadlines(history_of(case.id, list(enumerate(events, 1))), now=NOW.astimezone(UTC))
    got = [(c["duty"], c["status"], c["due_at"], c["position"]) for c in found["checks"]]
    assert got[:4] == [
        ("consultation", "met", (REPORTED + timedelta(hours=24)).astimezone(UTC).isoformat(), 2),
        ("consultation", "late", "2026-03-02T01:00:00+00:00", 6),
        # The assignment ended with the file, unsigned and before its due date.
        ("sign_for", "missed", None, None),
        ("assignment_due", "ended", "2026-09-01T16:00:00+00:00", None),
    ]
