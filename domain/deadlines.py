"""Missed deadlines become facts (issue #14): the rules, pure, and the events that record them.

A deadline the plan sets and nobody met is stored as an event of its own, so that a reverse
investigation (一案一倒查) reads *that* it was missed, *when*, and *who* was responsible, from the
log itself rather than from a report computed later. The rules, each computed from a case's
event history and a given `now` (never the clock: the caller passes it):

- `ConsultationOverdue`: missed at D = `ClueReported` (or `Reopened`) + `Periods.consultation`
  (24 h; the plan says *immediately*) unless a `ConsultationHeld` (or the case's closure) came
  before D. Responsible: the street's governance office (街道综治办), "" if none is registered.
- `AssignmentNotSignedFor`: D = `UnitAssigned` + `Periods.sign_for` (24 h), unless a person of
  the unit signed for it (`signs_for`) or the assignment ended before. Responsible: that unit.
- `AssignmentOverdue`: D = the end of its `due_on` (the local midnight after it, Asia/Shanghai),
  unless the assignment ended before (result reported, declined, ended, case closed).
- `QuarterlyUpdateMissed`: D = the end of a quarter in which an update was due by
  `domain.quarters.quarterly_update_due` (the ledger's rule, counted from the last
  `FollowUpRecorded.visited_on`, the report or the reopening), the case open at D. Responsible:
  the reporting unit, whose ledger (台账) the file is in.
- `DeadlineEscalated`: E = D + `Periods.escalation` (24 h) of one of the four, unless the duty
  was met before E (quarterly: a follow-up recorded, or the case closed, since D). To the
  street supervisor (a `street_supervision` unit of the street).

Instants are half-open: a duty met at any instant before D is met; at D itself (and after) it is
missed, and the fact is due from `now >= D` on, not a microsecond earlier. Dates (`due_on`,
quarters) are local dates in China Standard Time (UTC+8, no daylight saving), as the whole
service counts them (`domain.quarters`, README); stored instants are UTC ISO texts.

Each fact is stored once: its id is a uuid5 over its kind, the case, the assignment and what
fixes the duty (the instant the wait began, the due date, the quarter: not D, so that a changed
period never records a fact twice; an escalation's over the id of the fact it escalates), and it
is the version 1 of a stream of its own, so a second save (a rescan, another process, a restart
after SIGKILL) is refused by the store. Whether a fact is due depends only on the history and
`now`, never on when a scan ran: a scanner that was down for a day records the same facts, once,
when it returns.

`CaseDuties` is what a scan needs of one case, folded from its events (`fold`), small and
JSON-serialisable, so that the scheduler (`gateway.messaging.scheduler`) can keep it in a table
and look only at new events and open duties. Proven by `tests/domain/test_deadlines.py` (every
rule at its instant, not a second before, and not again) and `tests/messaging/test_deadlines.py`
(SIGKILLed scans store each fact once; notices over a real nats-server).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import DomainEvent

from domain.case import Case
from domain.quarters import Quarter, local_date, quarterly_update_due, start_of_day
from domain.topics import topics_of

NAMESPACE: Final = UUID("4d3c8f0e-9a51-5b7e-8c2f-6e0a1d9b7c53")
DEFAULT_CONSULTATION_HOURS: Final = 24.0
DEFAULT_SIGN_FOR_HOURS: Final = 24.0
DEFAULT_ESCALATION_HOURS: Final = 24.0
# Follow-ups kept per case, newest: enough to tell whether one came after a missed quarter.
_FOLLOW_UPS_KEPT: Final = 16
# "Everything that will ever fall due" for a closed case: far beyond any stored date.
_FAR_FUTURE: Final = datetime(9000, 1, 1, tzinfo=UTC)
NO_ASSIGNMENT: Final = ""


# --- the facts ------------------------------------------------------------------------------------


class DeadlineFact:
    """What every deadline fact is (a marker, not an event: never stored itself). The relay
    sends each one as a sealed notice (`gateway.messaging.scheduler.deadline_notices`)."""


class ConsultationOverdue(DeadlineFact, DomainEvent):
    """No consultation (问题会商) was held within the period after the clue was reported."""

    case_id: UUID
    street: str
    unit: str  # the street's governance office, "" when none was registered
    due_at: str  # D, UTC ISO


class AssignmentNotSignedFor(DeadlineFact, DomainEvent):
    """Nobody of the assigned unit signed for the task (签收) within the period."""

    case_id: UUID
    assignment_id: str
    unit: str
    street: str
    due_at: str


class AssignmentOverdue(DeadlineFact, DomainEvent):
    """The assignment's due date passed without a result (办结反馈) or its end."""

    case_id: UUID
    assignment_id: str
    unit: str
    street: str
    due_on: str  # the local date; missed at the local midnight after it


class QuarterlyUpdateMissed(DeadlineFact, DomainEvent):
    """An open file had no follow-up in a quarter it was due (每季度更新一次)."""

    case_id: UUID
    street: str
    unit: str  # the reporting unit
    quarter: str  # "YYYY-Qn"


class DeadlineEscalated(DeadlineFact, DomainEvent):
    """A missed deadline was still unmet a second period later: to the street supervisor."""

    fact: str  # the missed fact's class name
    fact_id: UUID
    case_id: UUID
    street: str
    due_at: str  # the instant the escalation fell due (D + the escalation period), UTC ISO


MISSED_FACTS: Final = (
    ConsultationOverdue,
    AssignmentNotSignedFor,
    AssignmentOverdue,
    QuarterlyUpdateMissed,
)
FACTS: Final = (*MISSED_FACTS, DeadlineEscalated)
FACT_TOPICS: Final = topics_of(*FACTS)


# --- which case events matter ---------------------------------------------------------------------


def _case_event(name: str) -> type | None:
    # The decline and the result (办结反馈) are the duty cycle's events; a case module without
    # them simply never stores them.
    found = getattr(Case, name, None)
    return found if isinstance(found, type) else None


_ENDING_NAMES: Final = ("AssignmentEnded", "AssignmentDeclined", "AssignmentResultReported")
_CASE_EVENT_NAMES: Final = (
    "ClueReported",
    "ConsultationHeld",
    "UnitAssigned",
    "AssignmentAcknowledged",
    *_ENDING_NAMES,
    "FollowUpRecorded",
    "Closed",
    "Reopened",
    "Transferred",  # issue 17: the file's street changes; its units' assignments end
)
_CASE_EVENTS: Final = {
    name: cls for name in _CASE_EVENT_NAMES if (cls := _case_event(name)) is not None
}
_NAMES: Final = {cls: name for name, cls in _CASE_EVENTS.items()}
# The topics a scan folds: the case events above and the facts themselves (already stored).
# By `topics_of`: once a class moves, its events stored under the old topic still count.
DUTY_TOPICS: Final = (*topics_of(*_CASE_EVENTS.values()), *FACT_TOPICS)


def signs_for(event: Any) -> bool:
    """Whether an `AssignmentAcknowledged` is a person of the unit signing for the task (签收).
    Since version 2 of the event a signing carries `receipt=False`; the version-1 events the
    unit's client sent automatically are upcast with `receipt=True` (a machine receipt, not a
    signing). An event without the field is a signing: nothing else stores one."""
    return not bool(getattr(event, "receipt", False))


# --- the periods ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Periods:
    consultation: timedelta = timedelta(hours=DEFAULT_CONSULTATION_HOURS)
    sign_for: timedelta = timedelta(hours=DEFAULT_SIGN_FOR_HOURS)
    escalation: timedelta = timedelta(hours=DEFAULT_ESCALATION_HOURS)

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> Periods:
        """From the application's environment (`gateway.settings` writes these keys)."""

        def hours(key: str, default: float) -> timedelta:
            return timedelta(hours=float(get(key) or default))

        return cls(
            consultation=hours("CONSULTATION_DEADLINE_HOURS", DEFAULT_CONSULTATION_HOURS),
            sign_for=hours("SIGN_FOR_DUE_HOURS", DEFAULT_SIGN_FOR_HOURS),
            escalation=hours("ESCALATION_AFTER_HOURS", DEFAULT_ESCALATION_HOURS),
        )


# --- one case's duties ----------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _quarter_code(quarter: Quarter) -> str:
    return f"{quarter.year}-Q{quarter.number}"


def _quarter_of(code: str) -> Quarter:
    year, number = code.split("-Q")
    return Quarter(int(year), int(number))


def _end_of(day: date) -> datetime:
    """The local midnight after `day`: the first instant that is no longer `day`."""
    return start_of_day(day + timedelta(days=1))


@dataclass
class CaseDuties:
    """What the rules need of one case: instants only (UTC ISO texts), codes and ids; no
    content. `rounds`: each wait for a consultation, `[since, met_at]` (one per report or
    reopening); `assignments`: id -> unit, assigned_at, due_on, signed_at, ended_at;
    `recorded`: ids of the facts stored for the case; `missed_quarters`: their quarters."""

    case_id: str
    street: str
    reporting_unit: str
    last_update_on: str  # the local date the quarterly rule counts from
    closed_at: str | None = None
    rounds: list[list[str | None]] = field(default_factory=list)
    assignments: dict[str, dict[str, str | None]] = field(default_factory=dict)
    follow_ups: list[str] = field(default_factory=list)  # instants recorded, newest last
    closures: list[str] = field(default_factory=list)  # instants the case was closed
    missed_quarters: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CaseDuties:
        return cls(**json.loads(text))

    # --- the fold ---

    @classmethod
    def reported(cls, event: Any) -> CaseDuties:
        at = _iso(event.timestamp)
        return cls(
            case_id=str(event.originator_id),
            street=event.street,
            reporting_unit=str(event.reported_by.get("unit", "")),
            last_update_on=local_date(event.timestamp).isoformat(),
            rounds=[[at, None]],
        )

    def apply(self, event: Any) -> None:
        """One stored event of this case (or a fact about it), in the order stored."""
        at = _iso(event.timestamp)
        if isinstance(event, DeadlineFact):
            self._recorded(event)
            return
        name = _NAMES.get(type(event))
        if name == "ConsultationHeld":
            if self.rounds and self.rounds[-1][1] is None:
                self.rounds[-1][1] = at
        elif name == "UnitAssigned":
            self.assignments[event.assignment_id] = {
                "unit": event.unit,
                "assigned_at": at,
                "due_on": event.due_on,
                "signed_at": None,
                "ended_at": None,
            }
        elif name == "AssignmentAcknowledged":
            found = self.assignments.get(event.assignment_id)
            if found is not None and found["signed_at"] is None and signs_for(event):
                found["signed_at"] = at
        elif name in _ENDING_NAMES:
            self._end(event.assignment_id, at)
        elif name == "FollowUpRecorded":
            self.follow_ups = [*self.follow_ups, at][-_FOLLOW_UPS_KEPT:]
            self.last_update_on = max(self.last_update_on, event.visited_on)
        elif name == "Closed":
            self.closed_at = at
            self.closures.append(at)
            if self.rounds and self.rounds[-1][1] is None:
                self.rounds[-1][1] = at
            for assignment_id in self.assignments:
                self._end(assignment_id, at)
        elif name == "Reopened":
            # As the ledger does: a reopened file waits for a consultation again, and its
            # quarterly updates count from the reopening.
            self.closed_at = None
            self.rounds.append([at, None])
            self.last_update_on = local_date(event.timestamp).isoformat()
        elif name == "Transferred" and event.to_street != event.from_street:
            # As the aggregate does: the receiving street's office owes what is still due,
            # and the sending street's units' open assignments end with the transfer.
            self.street = event.to_street
            for assignment_id in self.assignments:
                self._end(assignment_id, at)

    def _end(self, assignment_id: str, at: str) -> None:
        found = self.assignments.get(assignment_id)
        if found is not None and found["ended_at"] is None:
            found["ended_at"] = at

    def _recorded(self, event: DeadlineFact) -> None:
        ident = str(getattr(event, "originator_id"))  # noqa: B009 (a DomainEvent's id)
        if ident not in self.recorded:
            self.recorded.append(ident)
        if isinstance(event, QuarterlyUpdateMissed) and event.quarter not in self.missed_quarters:
            self.missed_quarters.append(event.quarter)

    # --- the rules ---

    def missed(self, now: datetime, periods: Periods) -> list[Missed]:
        """Every deadline of this case missed by `now` (stored already or not)."""
        found: list[Missed] = []
        case = UUID(self.case_id)
        for since, met in self.rounds:
            if since is None:
                continue
            due = _at(since) + periods.consultation
            found += _if_missed(ConsultationOverdue, case, NO_ASSIGNMENT, since, due, met, now)
        for aid, a in self.assignments.items():
            assigned_at = str(a["assigned_at"])
            signed = [t for t in (a["signed_at"], a["ended_at"]) if t is not None]
            due = _at(assigned_at) + periods.sign_for
            met = min(signed, default=None)
            found += _if_missed(AssignmentNotSignedFor, case, aid, assigned_at, due, met, now)
            due_on = str(a["due_on"])
            due = _end_of(date.fromisoformat(due_on))
            found += _if_missed(AssignmentOverdue, case, aid, due_on, due, a["ended_at"], now)
        for quarter in self._missed_quarters(now):
            due = _end_of(quarter.end)
            met = min(
                (t for t in (*self.follow_ups, *self.closures) if _at(t) >= due), default=None
            )
            code = _quarter_code(quarter)
            found.append(
                Missed(QuarterlyUpdateMissed, case, NO_ASSIGNMENT, code, due, met, quarter)
            )
        return found

    def _missed_quarters(self, now: datetime) -> list[Quarter]:
        """The quarters due since the last update that ended before `now` with the case open,
        and those recorded as missed before (a follow-up entered later with an earlier visit
        date does not undo a fact)."""
        found = {_quarter_of(code) for code in self.missed_quarters}
        quarter = Quarter.of(quarterly_update_due(date.fromisoformat(self.last_update_on)))
        closed = _at(self.closed_at) if self.closed_at is not None else None
        while not quarter.is_last:
            due = _end_of(quarter.end)
            if due > now or (closed is not None and closed < due):
                break
            found.add(quarter)
            quarter = quarter.next()
        return sorted(found)

    def due(self, now: datetime, periods: Periods, offices: Mapping[str, str]) -> list[DomainEvent]:
        """The facts due by `now` that are not stored yet (as far as this state knows: the
        store refuses any it holds already). `offices`: street -> its governance office."""
        facts: list[DomainEvent] = []
        for missed in self.missed(now, periods):
            fact_id = missed.fact_id
            if str(fact_id) not in self.recorded:
                facts.append(self._fact(missed, offices))
            escalate_at = missed.due + periods.escalation
            unmet = missed.met_at is None or _at(missed.met_at) >= escalate_at
            if now >= escalate_at and unmet:
                escalation = escalation_id(fact_id)
                if str(escalation) not in self.recorded:
                    facts.append(
                        _new(
                            DeadlineEscalated,
                            escalation,
                            fact=missed.kind.__name__,
                            fact_id=fact_id,
                            case_id=missed.case_id,
                            street=self.street,
                            due_at=_iso(escalate_at),
                        )
                    )
        return facts

    def settled(self, periods: Periods) -> bool:
        """Closed, with every fact that can still fall due stored: nothing more to scan for
        until the case is reopened."""
        return self.closed_at is not None and not self.due(_FAR_FUTURE, periods, {})

    def _fact(self, missed: Missed, offices: Mapping[str, str]) -> DomainEvent:
        kind, case = missed.kind, missed.case_id
        if kind is ConsultationOverdue:
            return _new(
                kind,
                missed.fact_id,
                case_id=case,
                street=self.street,
                unit=offices.get(self.street, ""),
                due_at=_iso(missed.due),
            )
        if kind is QuarterlyUpdateMissed:
            quarter = missed.quarter or Quarter.of(local_date(missed.due - timedelta(days=1)))
            return _new(
                kind,
                missed.fact_id,
                case_id=case,
                street=self.street,
                unit=self.reporting_unit,
                quarter=_quarter_code(quarter),
            )
        unit = str(self.assignments[missed.assignment_id]["unit"])
        if kind is AssignmentNotSignedFor:
            return _new(
                kind,
                missed.fact_id,
                case_id=case,
                assignment_id=missed.assignment_id,
                unit=unit,
                street=self.street,
                due_at=_iso(missed.due),
            )
        return _new(
            kind,
            missed.fact_id,
            case_id=case,
            assignment_id=missed.assignment_id,
            unit=unit,
            street=self.street,
            due_on=str(self.assignments[missed.assignment_id]["due_on"]),
        )


@dataclass(frozen=True)
class Missed:
    """One missed deadline: its kind, where, what fixed the duty (`anchor`: the instant the
    wait began, the due date, the quarter), the instant D, and when the duty was met after
    all (at or after D; None: not yet)."""

    kind: type[DomainEvent]
    case_id: UUID
    assignment_id: str
    anchor: str
    due: datetime
    met_at: str | None
    quarter: Quarter | None = None

    @property
    def fact_id(self) -> UUID:
        return fact_id(self.kind.__name__, self.case_id, self.assignment_id, self.anchor)


def _if_missed(
    kind: type[DomainEvent],
    case: UUID,
    assignment_id: str,
    anchor: str,
    due: datetime,
    met: str | None,
    now: datetime,
) -> list[Missed]:
    if now < due or (met is not None and _at(met) < due):
        return []
    return [Missed(kind, case, assignment_id, anchor, due, met)]


def fact_id(kind: str, case_id: UUID, assignment_id: str, anchor: str) -> UUID:
    """The stream id of a missed-deadline fact: the same fact always has the same id. Over
    what fixes the duty (when the wait began, the due date, the quarter), not over the
    instant D, so that changing a period (CASETRAIL_*_HOURS) never records a fact twice."""
    return uuid5(NAMESPACE, f"{kind}:{case_id}:{assignment_id}:{anchor}")


def escalation_id(missed_fact_id: UUID) -> UUID:
    return uuid5(NAMESPACE, f"DeadlineEscalated:{missed_fact_id}")


def _new(kind: type[DomainEvent], ident: UUID, **values: Any) -> DomainEvent:
    # The fact's timestamp is when it was recorded; the instant it concerns is in its fields.
    return kind(
        originator_id=ident, originator_version=1, timestamp=kind.create_timestamp(), **values
    )


# --- a whole log ----------------------------------------------------------------------------------


def case_of(event: Any) -> UUID:
    """The case an event folded by `CaseDuties` belongs to."""
    if isinstance(event, DeadlineFact):
        found: UUID = getattr(event, "case_id")  # noqa: B009 (every fact names its case)
        return found
    return UUID(str(event.originator_id))


def fold(duties: dict[UUID, CaseDuties], events: Iterable[Any]) -> set[UUID]:
    """Fold events (of `DUTY_TOPICS`, in stored order) into `duties`, a case's entry made at
    its report. Returns the cases changed."""
    changed: set[UUID] = set()
    for event in events:
        case = case_of(event)
        if _NAMES.get(type(event)) == "ClueReported":
            duties[case] = CaseDuties.reported(event)
        elif case in duties:
            duties[case].apply(event)
        else:
            continue
        changed.add(case)
    return changed
