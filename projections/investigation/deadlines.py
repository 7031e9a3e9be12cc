"""Deadline analysis (时限分析): how long each step took, and each duty met or missed.

`milestones`: the time from finding the clue (its `found_on`, from local midnight, UTC+8) to its
report (ClueReported), to the first consultation (问题会商), to each assignment (交办), to each
signing for (签收), and to the first intervention, in hours, each with its instant and store
position.

`checks`: each duty with its due instant, when it was done, and its `status`:
`met` (done by the due instant), `late` (done after it), `missed` (not done and the due instant
passed, or the duty ended undone after it), `open` (not done, not yet due), `ended` (the
assignment ended undone before it was due: withdrawn, transferred, declined, the file closed).
Each names the unit and the person responsible at the time:
- `consultation`: due `consultation_due` after the report (setting
  `CASETRAIL_CONSULTATION_DEADLINE_HOURS`, default 24); done when the first consultation was
  recorded (the instant the store proves; its `held_on` is beside it); the unit and person who
  recorded it, or, undone, the unit a `ConsultationOverdue` fact named;
- `sign_for`, per assignment: done when a person of the unit signed for it; due at the instant
  an `AssignmentNotSignedFor` fact gave, when there is one (a signature after such a fact is
  `late`); without one, `missed` once the assignment ended unsigned;
- `assignment_due`, per assignment: its `due_on` (to the end of that local day); done when its
  result was reported (办结反馈) or it ended `completed`; the unit assigned and the person who
  signed for it;
- `quarterly_update` (每季度更新一次): a file reported or updated in one quarter is due an update
  by the end of the next (`projections.ledger.quarters.quarterly_update_due`), while it is open;
  the reporting unit and the person who recorded the update.

`now` decides what is `missed` rather than `open`. Proven by
tests/projections/test_investigation_scenario.py and test_investigation_deadlines.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from projections.investigation.history import CaseHistory, Step
from projections.investigation.labels import DUTY_LABELS, STATUS_LABELS, STEP_LABELS
from projections.ledger.quarters import (
    Quarter,
    local_date,
    quarterly_update_due,
    start_of_day,
)

DEFAULT_CONSULTATION_DUE: Final = timedelta(hours=24)
_DONE_OUTCOMES: Final = frozenset({"completed"})


@dataclass
class _Assignment:
    aid: str
    unit: str
    due_on: str
    assigned: Step
    signed: Step | None = None
    not_signed_fact: Step | None = None
    done: Step | None = None
    ended: Step | None = None

    def apply(self, step: Step) -> None:
        kind = step.kind
        if kind == "assignment_signed_for":
            self.signed = self.signed or step
        elif kind == "assignment_not_signed_for":
            self.not_signed_fact = self.not_signed_fact or step
        elif kind == "assignment_result_reported" or (
            kind == "assignment_ended" and step.event.outcome in _DONE_OUTCOMES
        ):
            self.done = self.done or step
        if kind in ("assignment_declined", "assignment_result_reported", "assignment_ended"):
            self.ended = self.ended or step


def _hours(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() / 3600, 2)


def _iso(moment: datetime | None) -> str | None:
    # Every instant in UTC, as the events carry them (local days only decide due dates).
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _who(step: Step | None) -> str | None:
    if step is None:
        return None
    by = getattr(step.event, "by", None)
    return by.get("user") if isinstance(by, dict) else None


def _status(
    done: datetime | None, due: datetime | None, ended: datetime | None, now: datetime
) -> str:
    if done is not None:
        return "met" if due is None or done <= due else "late"
    if due is None:
        return "missed" if ended is not None else "open"
    if ended is not None:
        return "missed" if ended > due else "ended"
    return "missed" if now > due else "open"


def _check(
    duty: str,
    *,
    due: datetime | None,
    done: Step | None,
    ended: datetime | None,
    now: datetime,
    unit: str | None,
    person: str | None,
    assignment_id: str | None = None,
    quarter: str | None = None,
) -> dict[str, Any]:
    status = _status(done.at if done else None, due, ended, now)
    return {
        "duty": duty,
        "label_zh": DUTY_LABELS[duty],
        "assignment_id": assignment_id,
        "quarter": quarter,
        "due_at": _iso(due),
        "done_at": _iso(done.at if done else None),
        "position": done.position if done else None,
        "status": status,
        "status_label_zh": STATUS_LABELS[status],
        "unit": unit,
        "person": person,
    }


def _milestone(step_code: str, step: Step, found: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "step": step_code,
        "label_zh": STEP_LABELS[step_code],
        "at": step.at.isoformat(),
        "position": step.position,
        "hours_since_found": _hours(found, step.at),
        **extra,
    }


def _quarterly(
    updates: list[tuple[date, Step]],
    reported_on: date,
    closed_on: date | None,
    now: datetime,
    unit: str | None,
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    last = reported_on
    limit = closed_on or local_date(now)
    pending = iter(sorted(updates, key=lambda u: u[0]))
    upcoming = next(pending, None)
    while True:
        due_day = quarterly_update_due(last)
        quarter = Quarter.of(due_day)
        due = start_of_day(due_day + timedelta(days=1))
        while upcoming is not None and upcoming[0] <= last:
            upcoming = next(pending, None)
        if (
            closed_on is not None
            and due_day >= closed_on
            and (upcoming is None or upcoming[0] > closed_on)
        ):
            return checks  # closed before the update fell due
        code = f"{quarter.year}-Q{quarter.number}"
        if upcoming is not None and upcoming[0] <= due_day:
            day, step = upcoming
            checks.append(
                _check(
                    "quarterly_update",
                    due=due,
                    done=step,
                    ended=None,
                    now=now,
                    unit=unit,
                    person=_who(step),
                    quarter=code,
                )
            )
            last = day
            continue
        if due_day >= limit:
            checks.append(
                _check(
                    "quarterly_update",
                    due=due,
                    done=None,
                    ended=None,
                    now=now,
                    unit=unit,
                    person=None,
                    quarter=code,
                )
            )
            return checks
        checks.append(
            _check(
                "quarterly_update",
                due=due,
                done=None,
                ended=None,
                now=now,
                unit=unit,
                person=None,
                quarter=code,
            )
        )
        last = due_day


@dataclass
class _Scan:
    """What the analysis needs of the steps, collected in one loop."""

    reported: Step | None = None
    consultation: Step | None = None
    consultation_overdue: Step | None = None
    first_intervention: Step | None = None
    closed: Step | None = None
    assignments: dict[str, _Assignment] = field(default_factory=dict)
    updates: list[tuple[date, Step]] = field(default_factory=list)

    def apply(self, step: Step) -> None:
        kind, event = step.kind, step.event
        if kind == "clue_reported":
            self.reported = step
        elif kind == "consultation_held":
            self.consultation = self.consultation or step
        elif kind == "consultation_overdue":
            self.consultation_overdue = self.consultation_overdue or step
        elif kind == "unit_assigned":
            self.assignments[event.assignment_id] = _Assignment(
                event.assignment_id, event.unit, event.due_on, step
            )
        elif kind == "intervention_recorded":
            self.first_intervention = self.first_intervention or step
        elif kind == "follow_up_recorded":
            self.updates.append((date.fromisoformat(event.visited_on), step))
        elif kind == "closed":
            self.closed = step
        elif kind == "reopened":
            self.closed = None
        held = self.assignments.get(str(getattr(event, "assignment_id", "")))
        if held is not None:
            held.apply(step)

    def finish(self) -> None:
        if self.closed is not None:
            for held in self.assignments.values():
                held.ended = held.ended or self.closed


def _milestones(scan: _Scan, reported: Step, found: datetime) -> list[dict[str, Any]]:
    milestones: list[dict[str, Any]] = [_milestone("reported", reported, found)]
    if scan.consultation is not None:
        milestones.append(_milestone("consultation", scan.consultation, found))
    for held in scan.assignments.values():
        extra = {"assignment_id": held.aid, "unit": held.unit}
        milestones.append(_milestone("assignment", held.assigned, found, **extra))
        if held.signed is not None:
            milestones.append(_milestone("signed_for", held.signed, found, **extra))
    if scan.first_intervention is not None:
        milestones.append(_milestone("first_intervention", scan.first_intervention, found))
    milestones.sort(key=lambda m: int(m["position"]))
    return milestones


def _consultation_unit(scan: _Scan) -> str | None:
    if scan.consultation is not None:
        unit = scan.consultation.event.by.get("unit")
        return str(unit) if unit else None
    if scan.consultation_overdue is not None:
        return getattr(scan.consultation_overdue.event, "unit", None) or None
    return None


def _assignment_checks(held: _Assignment, now: datetime) -> list[dict[str, Any]]:
    ended_at = held.ended.at if held.ended is not None else None
    fact = held.not_signed_fact
    return [
        _check(
            "sign_for",
            due=datetime.fromisoformat(fact.event.due_at) if fact is not None else None,
            done=held.signed,
            ended=ended_at if held.signed is None else None,
            now=now,
            unit=held.unit,
            person=_who(held.signed),
            assignment_id=held.aid,
        ),
        _check(
            "assignment_due",
            due=start_of_day(date.fromisoformat(held.due_on) + timedelta(days=1)),
            done=held.done,
            ended=ended_at if held.done is None else None,
            now=now,
            unit=held.unit,
            person=_who(held.signed),
            assignment_id=held.aid,
        ),
    ]


def deadlines(
    history: CaseHistory,
    *,
    now: datetime,
    consultation_due: timedelta = DEFAULT_CONSULTATION_DUE,
) -> dict[str, Any]:
    """`{"case_id", "now", "consultation_due_hours", "found_on", "milestones", "checks"}`."""
    scan = _Scan()
    for step in history.steps:
        scan.apply(step)
    scan.finish()
    reported = scan.reported
    answer: dict[str, Any] = {
        "case_id": str(history.case_id),
        "now": now.isoformat(),
        "consultation_due_hours": consultation_due.total_seconds() / 3600,
        "found_on": reported.event.found_on if reported is not None else None,
        "milestones": [],
        "checks": [],
    }
    if reported is None:
        return answer
    answer["milestones"] = _milestones(
        scan, reported, start_of_day(date.fromisoformat(reported.event.found_on))
    )
    closed_at = scan.closed.at if scan.closed is not None else None
    checks = [
        _check(
            "consultation",
            due=reported.at + consultation_due,
            done=scan.consultation,
            ended=closed_at if scan.consultation is None else None,
            now=now,
            unit=_consultation_unit(scan),
            person=_who(scan.consultation),
        )
    ]
    for held in scan.assignments.values():
        checks.extend(_assignment_checks(held, now))
    checks.extend(
        _quarterly(
            scan.updates,
            local_date(reported.at),
            local_date(closed_at) if closed_at is not None else None,
            now,
            reported.event.reported_by.get("unit"),
        )
    )
    answer["checks"] = checks
    return answer
