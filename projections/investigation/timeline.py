"""The timeline of a case (一案一倒查): one ordered list of everything that happened to it.

Changes of the file, reads granted and refused (fields, purpose, rule, channel), notices and
their receipts, signatures for assignments (签收), consultations with their participants,
deadline facts and investigation orders: each an entry with its instant (`at`), its position in
the store (`position`, the order of the list: the store's order is the one every verifier can
check), its code (`kind`) and Chinese label (`label_zh`), who acted (`actor`; a unit alone for a
notice or a unit client's receipt), its `details` (codes, dates, units and users only: never a
name, a note, a description or a reason, which the case read discloses under its own rules),
and `state`: the file's status and risk before and after the step.

`as_of` drops every step recorded after that instant. Proven by
tests/projections/test_investigation_scenario.py (the scripted scenario, entry by entry).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from projections.investigation.history import CaseHistory, FileState, Step
from projections.investigation.labels import (
    CHANNEL_LABELS,
    function_label,
    issue_label,
    kind_label,
    risk_label,
    status_label,
)

Details = dict[str, Any]


def _actor(record: dict[str, str] | None) -> dict[str, Any] | None:
    if not record:
        return None
    return {
        "user": record.get("user"),
        "role": record.get("role"),
        "unit": record.get("unit"),
        "street": record.get("street"),
    }


def _unit_actor(unit: str | None, street: str | None) -> dict[str, Any]:
    return {"user": None, "role": None, "unit": unit, "street": street}


def channel_of(event: Any) -> str:
    """The channel of an access event: stored since access events carry it; before, the
    rule's prefix says it for ledgers, lookups and exports, and anything else was a case read."""
    channel = getattr(event, "channel", None)
    if channel and channel != "unrecorded":
        return str(channel)
    prefix, sep, _ = str(event.rule).partition(":")
    if sep and prefix in ("ledger", "lookup", "export"):
        return prefix
    return "api"


def _issues(pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {
            "category": i["category"],
            "subtype": i["subtype"],
            "label_zh": issue_label(i["category"], i["subtype"]),
        }
        for i in pairs
    ]


def _plain(event: Any, *names: str) -> Details:
    return {n: _json(getattr(event, n, None)) for n in names}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is not None and not isinstance(value, str | int | float | bool | list | dict):
        return str(value)
    return value


def _clue(e: Any) -> Details:
    return {
        "issues": _issues(e.issues),
        "risk": e.risk,
        "risk_label_zh": risk_label(e.risk),
        "found_on": e.found_on,
        "method": e.method,
        "found_by": {"role": e.found_by.get("role"), "unit": e.found_by.get("unit")},
    }


def _assigned(e: Any) -> Details:
    return {
        "assignment_id": e.assignment_id,
        "unit": e.unit,
        "function": e.function,
        "function_label_zh": function_label(e.function),
        "due_on": e.due_on,
    }


def _access(e: Any) -> Details:
    granted = hasattr(e, "fields")
    channel = channel_of(e)
    found: Details = {
        "granted": granted,
        "purpose": e.purpose,
        "rule": e.rule,
        "channel": channel,
        "channel_label_zh": CHANNEL_LABELS.get(channel, channel),
        "fields": list(e.fields) if granted else [],
        "break_glass": type(e).__name__ == "BreakGlassAccessed",
        "request_id": e.request_id,
        "case_version": getattr(e, "case_version", None),
    }
    return found


_DETAILS: Final[dict[str, Callable[[Any], Details]]] = {
    "clue_reported": _clue,
    "reclassified": lambda e: {
        "issues": _issues(e.issues),
        "risk": e.risk,
        "risk_label_zh": risk_label(e.risk),
    },
    "risk_assessed": lambda e: {"level": e.level, "level_label_zh": risk_label(e.level)},
    "consultation_held": lambda e: {"held_on": e.held_on, "participants": list(e.participants)},
    "unit_assigned": _assigned,
    "assignment_received": lambda e: _plain(e, "assignment_id", "unit"),
    "assignment_signed_for": lambda e: _plain(e, "assignment_id", "unit"),
    "assignment_declined": lambda e: _plain(e, "assignment_id"),
    "assignment_result_reported": lambda e: _plain(e, "assignment_id", "recommendation"),
    "assignment_ended": lambda e: _plain(e, "assignment_id", "outcome"),
    "intervention_recorded": lambda e: _plain(e, "assignment_id", "function", "measure", "done_on"),
    "guardianship_letter_signed": lambda e: _plain(e, "guardian_index", "reason", "signed_on"),
    "follow_up_recorded": lambda e: _plain(e, "visited_on"),
    "escalated": lambda e: _plain(e, "to", "to_level"),
    "closed": lambda e: _plain(e, "reason"),
    "reopened": lambda e: {},
    "case_accessed": _access,
    "break_glass_accessed": _access,
    "access_denied": _access,
    "break_glass_reviewed": lambda e: {"access_id": str(e.originator_id), "outcome": e.outcome},
    "due_date_reminder": lambda e: _plain(e, "assignment_id", "unit", "due_on", "reminder"),
    "notice_published": lambda e: _plain(e, "message_id", "unit", "kind", "assignment_id"),
    "notice_received": lambda e: _plain(e, "message_id", "unit", "kind", "assignment_id"),
    "notice_undeliverable": lambda e: _plain(e, "kind", "unit", "reason", "source_event"),
    "consultation_overdue": lambda e: _plain(e, "unit", "due_at"),
    "assignment_not_signed_for": lambda e: _plain(e, "assignment_id", "unit", "due_at"),
    "assignment_overdue": lambda e: _plain(e, "assignment_id", "unit", "due_on"),
    "quarterly_update_missed": lambda e: _plain(e, "unit", "quarter"),
    "deadline_escalated": lambda e: _plain(e, "fact", "fact_id", "due_at"),
    "investigation_order_issued": lambda e: {
        "order_id": str(e.originator_id),
        "investigator": e.investigator,
        "expires_at": e.expires_at,
    },
    "investigation_order_renewed": lambda e: {
        "order_id": str(e.originator_id),
        "expires_at": e.expires_at,
    },
    "investigation_order_revoked": lambda e: {"order_id": str(e.originator_id)},
}

# Events whose actor is a unit (a machine or the unit as a whole), not a person.
_UNIT_KINDS: Final = frozenset(
    {
        "assignment_received",
        "due_date_reminder",
        "notice_published",
        "notice_received",
        "notice_undeliverable",
        "consultation_overdue",
        "assignment_not_signed_for",
        "assignment_overdue",
        "quarterly_update_missed",
    }
)


def actor_of(step: Step) -> dict[str, Any] | None:
    """Who acted at a step: the person recorded with it, or the unit for a notice, a unit
    client's receipt or a deadline fact (none for an escalation of a deadline)."""
    event = step.event
    street = step.after.street if step.after is not None else None
    if step.kind in _UNIT_KINDS:
        return _unit_actor(getattr(event, "unit", None), getattr(event, "street", street))
    for name in ("by", "reported_by", "actor", "reviewer"):
        record = getattr(event, name, None)
        if isinstance(record, dict):
            return _actor(record)
    return None


def _state(state: FileState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "status": state.status,
        "status_label_zh": status_label(state.status),
        "risk": state.risk,
        "risk_label_zh": risk_label(state.risk),
        "version": state.version,
    }


def entry(step: Step) -> dict[str, Any]:
    """One timeline entry (see the module's docstring)."""
    details = _DETAILS.get(step.kind)
    return {
        "at": step.at.isoformat(),
        "position": step.position,
        "kind": step.kind,
        "label_zh": kind_label(step.kind),
        "actor": actor_of(step),
        "details": details(step.event) if details is not None else {},
        "state": {"before": _state(step.before), "after": _state(step.after)},
    }


def timeline(history: CaseHistory, *, as_of: datetime | None = None) -> dict[str, Any]:
    """`{"case_id", "as_of", "entries": [...]}`, in the store's order."""
    return {
        "case_id": str(history.case_id),
        "as_of": as_of.isoformat() if as_of is not None else None,
        "entries": [entry(step) for step in history.steps if as_of is None or step.at <= as_of],
    }
