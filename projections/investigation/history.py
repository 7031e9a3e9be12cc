"""One case's history, gathered in one scan of the store: the events the workbench analyses.

`gather(log, case_id)` reads the store's log once, in the order it was recorded, selecting by
topic: the case's own stream (picked by its stream id, which the log holds in clear, so no other
case's event is decrypted), the access events that name the case (their case id is inside the
ciphertext: every access event is decoded, the one cost that grows with the store rather than
the case; a read model indexing access events by case would remove it), the notices and
deadline facts that name it, and the investigation orders for it and their renewals and
revocations, and the reviews of its break-glass reads.

While it reads, it replays the case file through the aggregate's own events (`event.mutate`, the
domain's rules, never a copy of them) and keeps, after each of the case's events, a `FileState`:
what the file held at that version (status, risk, issues, assignments, escalations). Every later
`Step` points at the state it saw, so the analyses (`timeline`, `knowledge`, `deadlines`) are
plain loops over the steps: the whole analysis is linear in the events gathered
(`bench/investigation.py` measures it against decoding the same events).

The log is anything with the application's `notifications(topics=...)` and `mapper`
(`EventLog`): `domain.application.CaseTrail` is one. Proven by
tests/projections/test_investigation_history.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Mapper, Notification

from domain.access import AccessDenied, BreakGlassAccessed, BreakGlassReviewed, CaseAccessed
from domain.case import Case
from domain.notices import DueDateReminder
from domain.orders import InvestigationOrder
from domain.topics import topics_of


class EventLog(Protocol):
    """What the history needs of the application: its log in stored order, and its mapper."""

    @property
    def mapper(self) -> Mapper[UUID]: ...

    def notifications(
        self, start: int = 1, topics: tuple[str, ...] = (), batch: int = 500
    ) -> Iterator[Notification]: ...


def _event_classes(owner: type) -> list[type[DomainEvent]]:
    return [
        v
        for v in vars(owner).values()
        if isinstance(v, type) and issubclass(v, DomainEvent) and v.__name__ not in ("Event",)
    ]


CASE_TOPICS: Final = frozenset(topics_of(*_event_classes(Case)))
ORDER_ISSUED: Final = frozenset(
    topics_of(InvestigationOrder.InvestigationOrderIssued)  # type: ignore[attr-defined]
)
ORDER_LATER: Final = frozenset(
    topics_of(
        InvestigationOrder.InvestigationOrderRenewed,  # type: ignore[attr-defined]
        InvestigationOrder.InvestigationOrderRevoked,  # type: ignore[attr-defined]
    )
)
REVIEW_TOPICS: Final = frozenset(topics_of(BreakGlassReviewed))
# Facts about the case stored in streams of their own: the case id is in the payload.
NAMING_TOPICS: Final = frozenset(
    topics_of(CaseAccessed, BreakGlassAccessed, AccessDenied, DueDateReminder)
)
ALL_TOPICS: Final = tuple(
    sorted(CASE_TOPICS | ORDER_ISSUED | ORDER_LATER | REVIEW_TOPICS | NAMING_TOPICS)
)

_SNAKE: Final = re.compile(r"(?<!^)(?=[A-Z])")


def kind_of(event: object) -> str:
    """The timeline code of an event: its class name in snake_case; an assignment's
    acknowledgement is a person signing for it (签收, `receipt` false) or, for the events
    stored before that distinction (`receipt` true after their upcast, or absent), the unit
    client's automatic receipt."""
    name = type(event).__name__
    if name == "AssignmentAcknowledged":
        return "assignment_received" if getattr(event, "receipt", True) else "assignment_signed_for"
    return _SNAKE.sub("_", name).lower()


@dataclass(frozen=True, slots=True)
class FileState:
    """What the case file held at one version: codes only (the content stays in the events)."""

    version: int
    status: str
    risk: str
    street: str
    reporting_unit: str
    found_on: str
    issues: tuple[tuple[str, str], ...]
    # (assignment id, unit, function)
    assignments: tuple[tuple[str, str, str], ...]
    # (escalation number from 1, level)
    escalations: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One gathered event: its position in the store, its instant, its timeline code, the
    file's state before it and after it (the same object for events outside the case stream)."""

    position: int
    at: datetime
    kind: str
    event: Any
    before: FileState | None
    after: FileState | None


@dataclass
class CaseHistory:
    case_id: UUID
    steps: list[Step] = field(default_factory=list)
    # The file's state at each version (for a read that names the version it disclosed).
    states: dict[int, FileState] = field(default_factory=dict)

    def state_at(self, version: int | None, current: FileState | None) -> FileState | None:
        if version is None:
            return current
        return self.states.get(version, current)


def _state(case: Case) -> FileState:
    return FileState(
        version=case.version,
        status=case.status,
        risk=case.risk,
        street=case.street,
        reporting_unit=case.reporting_unit,
        found_on=case.found_on,
        issues=tuple((i["category"], i["subtype"]) for i in case.issues),
        assignments=tuple((a["id"], a["unit"], a["function"]) for a in case.assignments.values()),
        escalations=tuple((n, e["to_level"]) for n, e in enumerate(case.escalations, 1)),
    )


def gather(log: EventLog, case_id: UUID) -> CaseHistory:
    """Every stored event about the case, in stored order, with the file's state at each."""
    history = CaseHistory(case_id)
    wanted = str(case_id)
    case: Case | None = None
    current: FileState | None = None
    orders: set[str] = set()
    break_glass: set[str] = set()
    decode = log.mapper.to_domain_event
    for notification in log.notifications(topics=ALL_TOPICS):
        topic = notification.topic
        origin = str(notification.originator_id)
        if topic in CASE_TOPICS:
            if origin != wanted:
                continue  # another case's: never decrypted
            event: Any = decode(notification)
            before = current
            case = event.mutate(case)
            if case is None:  # pragma: no cover - a case event always leaves a case
                continue
            current = _state(case)
            history.states[current.version] = current
            history.steps.append(
                Step(notification.id, event.timestamp, kind_of(event), event, before, current)
            )
            continue
        if topic in ORDER_LATER or topic in REVIEW_TOPICS:
            if origin not in (orders if topic in ORDER_LATER else break_glass):
                continue
            event = decode(notification)
        else:
            event = decode(notification)
            if getattr(event, "case_id", None) != case_id:
                continue
            if topic in ORDER_ISSUED:
                orders.add(origin)
            elif isinstance(event, BreakGlassAccessed):
                break_glass.add(origin)
        history.steps.append(
            Step(notification.id, event.timestamp, kind_of(event), event, current, current)
        )
    return history
