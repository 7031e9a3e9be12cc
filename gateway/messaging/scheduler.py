"""The deadline scheduler: every missed deadline stored as a fact, once, and sent to whoever must
act (issue #14; the rules are `domain.deadlines`).

A scan (`DeadlineScheduler.scan(now)`):

1. follows the log into the `deadline_duties` table (a `projections.follower` view with its own
   tracking row, in the events' own database like the relay's position): one row per case with
   what the rules need (`domain.deadlines.CaseDuties`: instants, codes and ids, no content), and
   a flag `pending`, cleared once the case is closed and every fact it can still owe is stored;
2. reads the open rows, asks each for the facts due by `now` (`CaseDuties.due`) and stores them
   (`CaseTrail.record_missed_deadlines`); a fact's id is derived from what it is about, so a fact
   stored before (by this scan before a SIGKILL, by another process) is refused by the store and
   skipped: never doubled, never lost, whatever stops a scan where;
3. follows the log again, so the facts just stored are folded into their rows and not asked
   for again.

Cost per scan: the events stored since the last one (step 1 and 3) plus one JSON row per open
case (step 2), never the whole log. The scan's clock: `now` is given (`--now`, tests) or the
clock minus `SETTLE` (2 s), read before the log is followed, so that an event stamped before a
deadline but committed while the scan reads is not missed (a fact is at most `SETTLE` late,
never early).

Who runs it: the relay, every `RelayOptions.reminder_interval` (60 s by default;
`Relay.scan_deadlines`), and `casetrail deadlines scan [--now ISO]` (`gateway.cli.deadlines`),
once. Both may run at once: the store decides which stores a fact.

Where facts go (`deadline_notices`, called by the relay's `Router` for every `DeadlineFact`),
as sealed notices with ids, codes and instants only:

- `ConsultationOverdue` -> the street's governance office (the fact's `unit`; when that is "",
  the office registered by the time it is sent), kind `deadline_missed`;
- `AssignmentNotSignedFor`, `AssignmentOverdue` -> the assigned unit, `deadline_missed`;
- `QuarterlyUpdateMissed` -> the reporting unit, `deadline_missed`;
- `DeadlineEscalated` -> every `street_supervision` unit of the street, `deadline_escalated`.

A fact whose unit is not registered is logged (`message_undeliverable`), as every notice is.

An erased file (issue 19) owes nothing more: its row goes when the erasure is followed, and its
events, unreadable, are skipped (`domain.tombstones`; tests/retention/test_tombstones.py).

Proven by `tests/messaging/test_deadlines.py`: the command SIGKILLed mid-scan and run again
stores each fact once; over a real nats-server, an unheld consultation reaches the governance
office's client as `deadline_missed`, then the supervisor's as `deadline_escalated`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory

from domain.application import CaseTrail
from domain.deadlines import (
    DUTY_TOPICS,
    AssignmentNotSignedFor,
    AssignmentOverdue,
    CaseDuties,
    ConsultationOverdue,
    DeadlineEscalated,
    DeadlineFact,
    Periods,
    QuarterlyUpdateMissed,
    fold,
)
from domain.retention import KeyScope
from domain.taxonomy import UnitType
from domain.tombstones import ERASURE_TOPICS, erasure_split
from gateway.logs import get_logger
from gateway.store.horizon import settled_horizon
from projections.follower import (
    AnyViewRecorder,
    Batch,
    Db,
    Dialect,
    Follower,
    View,
    horizon_of,
    view_recorder,
)

log = get_logger("casetrail.deadlines")

DUTIES: Final = "deadline_duties"
# How far behind the clock a scan looks: commits in flight when it reads are then visible.
SETTLE: Final = timedelta(seconds=2)
MISSED_KIND: Final = "deadline_missed"
ESCALATED_KIND: Final = "deadline_escalated"
_CHUNK: Final = 500


# --- the duties table -----------------------------------------------------------------------------


class DutiesView(View):
    """One row per case: its `CaseDuties` as JSON, and whether a scan must still look at it."""

    name: ClassVar[str] = DUTIES
    tables: ClassVar[tuple[str, ...]] = (DUTIES,)
    # Issue 19: an erased file owes nothing more; its row goes (`domain.tombstones`).
    topics: ClassVar[tuple[str, ...]] = (*DUTY_TOPICS, *ERASURE_TOPICS)

    def __init__(self, periods: Periods) -> None:
        self.periods = periods

    def create_statements(self, dialect: Dialect) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS {deadline_duties} (case_id TEXT PRIMARY KEY, "
            "pending INTEGER NOT NULL, state TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS deadline_duties_pending ON {deadline_duties} (pending)",
        ]

    def apply(self, db: Db, batch: Batch) -> None:
        events, erasures = erasure_split(batch.events)
        if events:
            self._apply(db, events)
        gone = sorted({str(f.stream_id) for f in erasures if f.scope == KeyScope.CASE})
        for start in range(0, len(gone), _CHUNK):
            chunk = gone[start : start + _CHUNK]
            marks = db.placeholders(len(chunk))
            db.execute(f"DELETE FROM {{deadline_duties}} WHERE case_id IN ({marks})", chunk)  # noqa: S608

    def _apply(self, db: Db, events: list[Any]) -> None:
        duties: dict[UUID, CaseDuties] = {}
        wanted = sorted({str(_case_of(e)) for e in events})
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = db.placeholders(len(chunk))
            # Only "?" placeholders are formatted in: the ids are parameters.
            query = f"SELECT case_id, state FROM {{deadline_duties}} WHERE case_id IN ({marks})"  # noqa: S608
            for row in db.execute(query, chunk):
                duties[UUID(row["case_id"])] = CaseDuties.from_json(row["state"])
        changed = fold(duties, events)
        rows = [
            (str(case), 0 if duties[case].settled(self.periods) else 1, duties[case].to_json())
            for case in sorted(changed)
        ]
        db.insert(DUTIES, ("case_id", "pending", "state"), rows, key=("case_id",))


def _case_of(event: Any) -> UUID:
    if isinstance(event, DeadlineFact):
        found: UUID = event.case_id  # type: ignore[attr-defined]
        return found
    return UUID(str(event.originator_id))


def duties_recorder(application: CaseTrail, periods: Periods) -> AnyViewRecorder:
    """The duties table and its position, in the events' own database (as the relay's)."""
    factory = application.factory
    if not isinstance(factory, SQLiteFactory | PostgresFactory):
        raise TypeError("the deadline scheduler needs the SQLite or PostgreSQL event store")
    return view_recorder(factory.datastore, DutiesView(periods))


# --- the scan -------------------------------------------------------------------------------------


class DeadlineScheduler:
    def __init__(
        self,
        application: CaseTrail,
        *,
        clock: Callable[[], datetime] | None = None,
        batch_size: int = 500,
    ) -> None:
        self.application = application
        self.periods = Periods.from_env(application.env.get)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.follower = Follower(
            application,
            duties_recorder(application, self.periods),
            batch_size=batch_size,
            horizon=settled_horizon(application) or horizon_of(application),
            log=log,
        )

    def scan(self, now: datetime | None = None) -> list[DomainEvent]:
        """Store the facts due by `now` (default: the clock less `SETTLE`); returns those this
        scan stored."""
        if now is None:
            now = self.clock() - SETTLE
        if now.tzinfo is None:
            raise ValueError("a scan's instant needs a time zone")
        self.follower.catch_up()
        with self.follower.recorder.reading() as db:
            rows = db.execute("SELECT state FROM {deadline_duties} WHERE pending = 1")
        duties = [CaseDuties.from_json(row["state"]) for row in rows]
        stored = self.application.record_missed_deadlines(now, duties)
        # Issue 17: villages' ledger submissions (报送) missing at the end of their due day.
        stored += self.application.record_missed_submissions(now)
        self.follower.catch_up()
        if stored:
            counts: dict[str, int] = {}
            for fact in stored:
                counts[type(fact).__name__] = counts.get(type(fact).__name__, 0) + 1
            log.info("deadlines_recorded", count=len(stored), **counts)
        return stored

    def open_duties(self) -> int:
        with self.follower.recorder.reading() as db:
            (row,) = db.execute("SELECT COUNT(*) AS n FROM {deadline_duties} WHERE pending = 1")
        return int(row["n"])


# --- the notices ----------------------------------------------------------------------------------

R = TypeVar("R")


class Units(Protocol[R]):
    """The registered units as the relay knows them (`relay.Directory`)."""

    def get(self, unit_id: str) -> R | None: ...

    def where(self, *, type: str, street: str | None = None) -> list[R]: ...


def deadline_notices(event: DeadlineFact, units: Units[R]) -> list[tuple[R, str, dict[str, Any]]]:
    """(recipient, kind, body) of each notice a deadline fact causes; none when no unit that
    should hear of it is registered (the relay's router stores that as undeliverable).
    Bodies carry ids, codes and instants only."""
    street = str(getattr(event, "street", ""))
    case_ref = str(getattr(event, "case_id", ""))
    if isinstance(event, DeadlineEscalated):
        body: dict[str, Any] = {
            "fact": event.fact,
            "fact_id": str(event.fact_id),
            "case_ref": case_ref,
            "street": street,
            "due": event.due_at,
        }
        recipients = units.where(type=UnitType.STREET_SUPERVISION.value, street=street)
        return [(r, ESCALATED_KIND, body) for r in recipients]
    due: str
    assignment_id: str | None = None
    if isinstance(event, ConsultationOverdue):
        due = event.due_at
    elif isinstance(event, AssignmentNotSignedFor):
        due, assignment_id = event.due_at, event.assignment_id
    elif isinstance(event, AssignmentOverdue):
        due, assignment_id = event.due_on, event.assignment_id
    elif isinstance(event, QuarterlyUpdateMissed):
        due = event.quarter
    else:
        return []
    body = {
        "fact": type(event).__name__,
        "case_ref": case_ref,
        "assignment_id": assignment_id,
        "street": street,
        "due": due,
    }
    unit = str(getattr(event, "unit", ""))
    found = units.get(unit) if unit else None
    if found is None and isinstance(event, ConsultationOverdue):
        # No office was registered when the fact was stored: the one registered now.
        offices = units.where(type=UnitType.GOVERNANCE_OFFICE.value, street=street)
        found = offices[0] if offices else None
    if found is None:
        return []  # the relay's router stores (and logs) it as undeliverable
    return [(found, MISSED_KIND, body)]
