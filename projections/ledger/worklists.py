"""Worklists and deadlines, read from the ledger's tables.

- Clues awaiting a consultation (问题会商): the plan says the lead office convenes one
  immediately on receiving a clue; the deadline is configurable (24 hours by default), counted
  from the report (or the reopening) of the file.
- Assignments per unit with their due dates; open, unacknowledged, overdue.
- Open files without a quarterly update (每季度更新一次) in the current quarter: due by its
  last day; overdue once a whole quarter has passed without one.

Every item carries operational fields only (ids, village, units, risk, dates): a worklist says
what to do next, never who the minor is. The village is held sealed in the ledger's rows
(`projections.ledger.view`): the rows are opened with the keys the reading transaction carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from domain.taxonomy import (
    CASE_STATUS_LABELS,
    PROTECTION_FUNCTION_LABELS,
    RISK_LABELS,
    CaseStatus,
    ProtectionFunction,
    RiskLevel,
)
from projections.follower import Row
from projections.ledger.quarters import Quarter, local_date, parse_stamp
from projections.ledger.view import RowScope, plain_assignment, plain_row, scope_clause
from projections.sealed import KeyedDb

DEFAULT_CONSULTATION_DEADLINE: Final = timedelta(hours=24)
MAX_ITEMS: Final = 1000


class AssignmentState(StrEnum):
    OPEN = "open"
    UNACKNOWLEDGED = "unacknowledged"
    OVERDUE = "overdue"


@dataclass(frozen=True)
class WorkItem:
    case_id: UUID
    values: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"case_id": str(self.case_id), **self.values}


def _case_values(row: Row) -> dict[str, Any]:
    return {
        "village": row["village"],
        "reporting_unit": row["reporting_unit"],
        "risk": row["risk"],
        "risk_label": RISK_LABELS[RiskLevel(row["risk"])],
        "status": row["status"],
        "status_label": CASE_STATUS_LABELS[CaseStatus(row["status"])],
        "found_on": row["found_on"],
    }


def awaiting_consultation(
    db: KeyedDb,
    scope: RowScope,
    *,
    now: datetime,
    deadline: timedelta = DEFAULT_CONSULTATION_DEADLINE,
    limit: int = MAX_ITEMS,
) -> list[WorkItem]:
    """Files waiting for a consultation, longest-waiting first."""
    where, params = scope_clause(db.keys, scope)
    rows = db.execute(
        f"SELECT c.* FROM {{ledger_cases}} c WHERE {where} AND c.status = ? "
        "ORDER BY c.awaiting_since, c.case_id LIMIT ?",
        [*params, CaseStatus.AWAITING_CONSULTATION.value, limit],
    )
    items = []
    for row in (plain_row(db.keys, r) for r in rows):
        waiting_since = parse_stamp(row["awaiting_since"])
        due = waiting_since + deadline
        items.append(
            WorkItem(
                UUID(row["case_id"]),
                {
                    **_case_values(row),
                    "waiting_since": row["awaiting_since"],
                    "due_at": due.isoformat(),
                    "overdue": now > due,
                    "hours_waiting": round((now - waiting_since).total_seconds() / 3600, 1),
                },
            )
        )
    return items


def assignments(
    db: KeyedDb,
    scope: RowScope,
    *,
    today: date,
    unit: str | None = None,
    state: AssignmentState = AssignmentState.OPEN,
    limit: int = MAX_ITEMS,
) -> list[WorkItem]:
    """Open assignments (of one unit, or of every unit in scope), earliest due first."""
    where, params = scope_clause(db.keys, scope)
    conditions = [where, "a.ended_at IS NULL"]
    if unit is not None:
        conditions.append("a.unit_index = ?")
        params.append(db.keys.token("unit", unit))
    if state is AssignmentState.UNACKNOWLEDGED:
        conditions.append("a.acknowledged_at IS NULL")
    elif state is AssignmentState.OVERDUE:
        conditions.append("a.due_on < ?")
        params.append(today.isoformat())
    rows = db.execute(
        "SELECT c.*, a.assignment_id, a.unit_sealed, a.function, a.due_on, a.assigned_at, "
        "a.acknowledged_at FROM {ledger_assignments} a "
        "JOIN {ledger_cases} c ON c.case_id = a.case_id "
        f"WHERE {' AND '.join(conditions)} ORDER BY a.due_on, a.assignment_id LIMIT ?",
        [*params, limit],
    )
    return [
        WorkItem(
            UUID(row["case_id"]),
            {
                **_case_values(row),
                "assignment_id": row["assignment_id"],
                "unit": plain_assignment(db.keys, row)["unit"],
                "function": row["function"],
                "function_label": PROTECTION_FUNCTION_LABELS[ProtectionFunction(row["function"])],
                "assigned_at": row["assigned_at"],
                "due_on": row["due_on"],
                "acknowledged": row["acknowledged_at"] is not None,
                "acknowledged_at": row["acknowledged_at"],
                "overdue": date.fromisoformat(row["due_on"]) < today,
            },
        )
        for row in (plain_row(db.keys, r) for r in rows)
    ]


def quarterly_updates(
    db: KeyedDb, scope: RowScope, *, today: date, limit: int = MAX_ITEMS
) -> list[WorkItem]:
    """Open files with no update in the current quarter, the most overdue first."""
    quarter = Quarter.of(today)
    where, params = scope_clause(db.keys, scope)
    rows = db.execute(
        f"SELECT c.* FROM {{ledger_cases}} c WHERE {where} AND c.status <> ? "
        "AND c.update_due_on <= ? ORDER BY c.update_due_on, c.case_id LIMIT ?",
        [*params, CaseStatus.CLOSED.value, quarter.end.isoformat(), limit],
    )
    return [
        WorkItem(
            UUID(row["case_id"]),
            {
                **_case_values(row),
                "last_follow_up_on": row["last_follow_up_on"],
                "reported_on": local_date(parse_stamp(row["reported_at"])).isoformat(),
                "due_on": row["update_due_on"],
                "overdue": date.fromisoformat(row["update_due_on"]) < today,
                "quarter": quarter.code,
            },
        )
        for row in (plain_row(db.keys, r) for r in rows)
    ]
