"""Notices as stored facts, and the notices that exist only to be sent (due-date reminders).

**Notice facts** (issue 13 "exact knowledge records", issue 14 "no silent drops"): what a unit was
told, and when, is evidence for a reverse investigation, so each is an event of its own stream,
with an id derived from what it is about, so that a second copy is refused by the store (stored
once, whoever stores it and however often):

- `NoticePublished`: the relay published a sealed notice to a unit's stream and JetStream
  acknowledged it (the event's timestamp is that instant). Id: `published_id(message_id)`.
  Stored by `gateway.messaging.relay` after the acks and before its position moves past the
  batch, so a relay killed in between publishes again (the stream drops the copy) and stores
  again (the store refuses the copy): `tests/messaging/test_outage.py` (SIGKILL mid-burst),
  `tests/messaging/test_notice_events.py` (ids), `tests/messaging/test_routing_facts.py`.
- `NoticeReceived`: the unit's client confirmed receipt, automatically (a machine, not a person:
  a person signing for a task is `Case.AssignmentAcknowledged`). Id: `received_id(message_id)`.
  Stored by `POST /v1/notices/{message_id}/receipt` (`gateway.http.routes.notices`).
- `NoticeUndeliverable`: a notice that could not be sent (its unit is not registered, or no
  registered unit has the role it is meant for). Id: `undeliverable_id(...)` of the source
  event, the kind, the unit or street and the reason.

None of them carries personal data: codes, ids and times only. None of them causes a notice
(the relay's router reads other topics only), so they cannot loop.

A reminder is an event of its own, stored like any other, so that the store's log stays the one
outbox the relay follows. Its id is derived from the assignment, the kind of reminder and the due
date, so scanning twice (or from two processes) stores it once: the second save is refused.

The rule: an open assignment gets one `due_soon` reminder once its due date is at most
`DUE_SOON_DAYS` days away, and one `overdue` reminder once the due date has passed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, ClassVar, Final
from uuid import UUID, uuid5

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic

from domain.access import NO_CASE
from domain.case import Case
from domain.errors import DomainError

# Namespace of the notice facts' ids (uuid5): "published:<mid>", "received:<mid>", ...
NOTICE_FACTS_NAMESPACE: Final = UUID("5b0e4e43-1d6c-5c3c-9f55-7a2f0b4c8e61")

DUE_SOON_DAYS: Final = 1
DUE_SOON: Final = "due_soon"
OVERDUE: Final = "overdue"
_NAMESPACE: Final = UUID("0b8f8a8e-4f3e-5c55-8d0e-2f7c5e1b9d31")

# The case events that open and end assignments.
ASSIGNMENT_TOPICS: Final = (
    get_topic(Case.UnitAssigned),  # type: ignore[attr-defined]
    get_topic(Case.AssignmentEnded),  # type: ignore[attr-defined]
    get_topic(Case.Closed),  # type: ignore[attr-defined]
)


class DueDateReminder(DomainEvent):
    """An open assignment is due soon, or overdue: its unit is reminded."""

    case_id: UUID
    assignment_id: str
    unit: str
    due_on: str
    reminder: str


@dataclass(frozen=True)
class OpenAssignment:
    case_id: UUID
    assignment_id: str
    unit: str
    due_on: date


class OpenAssignments:
    """The open assignments, built by applying case events in the order they were stored."""

    def __init__(self) -> None:
        self._open: dict[str, OpenAssignment] = {}

    def apply(self, event: object) -> None:
        if isinstance(event, Case.UnitAssigned):  # type: ignore[attr-defined]
            self._open[event.assignment_id] = OpenAssignment(
                case_id=event.originator_id,
                assignment_id=event.assignment_id,
                unit=event.unit,
                due_on=date.fromisoformat(event.due_on),
            )
        elif isinstance(event, Case.AssignmentEnded):  # type: ignore[attr-defined]
            self._open.pop(event.assignment_id, None)
        elif isinstance(event, Case.Closed):  # type: ignore[attr-defined]
            for key in [k for k, a in self._open.items() if a.case_id == event.originator_id]:
                del self._open[key]

    def all(self) -> list[OpenAssignment]:
        return list(self._open.values())


def reminder_id(assignment_id: str, reminder: str, due_on: date) -> UUID:
    return uuid5(_NAMESPACE, f"{assignment_id}:{reminder}:{due_on.isoformat()}")


def reminders_due(assignments: Iterable[OpenAssignment], today: date) -> list[DueDateReminder]:
    """The reminders the rule asks for today; some may already be stored (their ids repeat)."""
    found: list[DueDateReminder] = []
    for assignment in assignments:
        if assignment.due_on < today:
            kind = OVERDUE
        elif assignment.due_on - today <= timedelta(days=DUE_SOON_DAYS):
            kind = DUE_SOON
        else:
            continue
        values: dict[str, Any] = {
            "originator_id": reminder_id(assignment.assignment_id, kind, assignment.due_on),
            "originator_version": 1,
            "timestamp": DueDateReminder.create_timestamp(),
            "case_id": assignment.case_id,
            "assignment_id": assignment.assignment_id,
            "unit": assignment.unit,
            "due_on": assignment.due_on.isoformat(),
            "reminder": kind,
        }
        found.append(DueDateReminder(**values))
    return found


# --- notice facts -------------------------------------------------------------------------------


class NoticeNotFound(DomainError):
    """No notice with this id was published to the caller's unit (or none at all, yet: the
    relay stores the fact a moment after JetStream took the notice; a client asks again)."""

    status = 404
    code = "notice_not_found"


class NoticePublished(DomainEvent):
    """A sealed notice published to `unit`'s stream and acknowledged by JetStream, at the
    event's timestamp. `source_event` is the stored event that caused it (`<stream>/<version>`)."""

    message_id: str
    unit: str
    street: str
    kind: str
    case_id: UUID
    assignment_id: str | None
    source_event: str


class NoticeReceived(DomainEvent):
    """The unit's client confirmed it holds the notice (automatic; `client` is the client's
    identity as the service saw it: the token's user, role and unit, address, user agent)."""

    message_id: str
    unit: str
    street: str
    kind: str
    case_id: UUID
    assignment_id: str | None
    client: dict[str, Any]


class NoticeUndeliverable(DomainEvent):
    """A notice that could not be sent: `unit` not registered (`unit_not_registered`), or no
    registered unit of the role it is meant for (`no_<unit type>`, `no_recipient`)."""

    source_event: str
    kind: str
    unit: str | None
    street: str | None
    case_id: UUID
    reason: str


def published_id(message_id: str) -> UUID:
    return uuid5(NOTICE_FACTS_NAMESPACE, f"published:{message_id}")


def received_id(message_id: str) -> UUID:
    return uuid5(NOTICE_FACTS_NAMESPACE, f"received:{message_id}")


def undeliverable_id(
    source_event: str, kind: str, unit: str | None, street: str | None, reason: str
) -> UUID:
    return uuid5(
        NOTICE_FACTS_NAMESPACE,
        f"undeliverable:{source_event}:{kind}:{unit or ''}:{street or ''}:{reason}",
    )


def _first(originator_id: UUID, cls: type[DomainEvent], **fields: Any) -> Any:
    return cls(
        originator_id=originator_id,
        originator_version=1,
        timestamp=cls.create_timestamp(),
        **fields,
    )


def notice_published(
    *,
    message_id: str,
    unit: str,
    street: str,
    kind: str,
    case_id: UUID | None,
    assignment_id: str | None,
    source_event: str,
) -> NoticePublished:
    """The fact, timestamped now (call it once JetStream has acknowledged the notice)."""
    event: NoticePublished = _first(
        published_id(message_id),
        NoticePublished,
        message_id=message_id,
        unit=unit,
        street=street,
        kind=kind,
        case_id=case_id or NO_CASE,
        assignment_id=assignment_id,
        source_event=source_event,
    )
    return event


def notice_received(published: NoticePublished, client: dict[str, Any]) -> NoticeReceived:
    """The receipt of a published notice: what it was (copied from the published fact, never
    from the client) and who confirmed it."""
    event: NoticeReceived = _first(
        received_id(published.message_id),
        NoticeReceived,
        message_id=published.message_id,
        unit=published.unit,
        street=published.street,
        kind=published.kind,
        case_id=published.case_id,
        assignment_id=published.assignment_id,
        client=client,
    )
    return event


def notice_undeliverable(
    *,
    source_event: str,
    kind: str,
    unit: str | None,
    street: str | None,
    case_id: UUID | None,
    reason: str,
) -> NoticeUndeliverable:
    event: NoticeUndeliverable = _first(
        undeliverable_id(source_event, kind, unit, street, reason),
        NoticeUndeliverable,
        source_event=source_event,
        kind=kind,
        unit=unit,
        street=street,
        case_id=case_id or NO_CASE,
        reason=reason,
    )
    return event


@dataclass
class UndeliverableSeen:
    """The undeliverable facts an application has read so far, and where it reads on from."""

    # Positions read again at each call: a later commit may hold a lower position.
    RESCAN_WINDOW: ClassVar[int] = 10_000

    lock: threading.Lock = field(default_factory=threading.Lock)
    events: dict[UUID, NoticeUndeliverable] = field(default_factory=dict)  # by id, in order
    next: int = 1
