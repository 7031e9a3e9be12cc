"""Notices that exist only to be sent: due-date reminders of open assignments.

A reminder is an event of its own, stored like any other, so that the store's log stays the one
outbox the relay follows. Its id is derived from the assignment, the kind of reminder and the due
date, so scanning twice (or from two processes) stores it once: the second save is refused.

The rule: an open assignment gets one `due_soon` reminder once its due date is at most
`DUE_SOON_DAYS` days away, and one `overdue` reminder once the due date has passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic

from domain.case import Case

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
