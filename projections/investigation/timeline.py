"""The timeline of a case (一案一倒查): one ordered list of everything that happened to it.

Changes of the file, reads granted and refused (fields, purpose, rule, channel), notices and
their receipts, signatures for assignments (签收), consultations with their participants,
deadline facts and investigation orders: each an entry with its instant (`at`), its position in
the store (`position`, the order of the list: the store's order is the one every verifier can
check), its code (`kind`) and Chinese label (`label_zh`), who acted (`actor`; a unit alone for a
notice or a unit client's receipt; a person with the post they held then, `post` and
`post_label_zh`, None when they were not a registered user then), its `details` (codes, dates,
units and users only: never a name, a note, a description or a reason, which the case read
discloses under its own rules), and `state`: the file's status and risk before and after the
step.

A file erased (issue 19) shows the reads, notices and facts about it that stay readable and an
entry `data_key_destroyed` with the rule, its basis, the day it fell due and who applied it;
its own events are unreadable and left out (`erased_records` counts them).

`as_of` drops every step recorded after that instant. Proven by
tests/projections/test_investigation_scenario.py (the scripted scenario, entry by entry).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from domain.access import OPERATIONAL, BreakGlassAccessed
from domain.taxonomy import CaseStatus, RiskLevel
from domain.users import post_label
from projections.investigation.history import CaseHistory, FileState, Step
from projections.investigation.labels import (
    CHANNEL_LABELS,
    KIND_LABELS,
    function_label,
    issue_label,
    risk_label,
    status_label,
)

Details = dict[str, Any]
# Code -> label of a status and of a risk level (also the report's rows': gateway/reports).
STATUS_LABEL: Final = {str(s): status_label(s) for s in CaseStatus}
RISK_LABEL: Final = {str(r): risk_label(r) for r in RiskLevel}

# What a timeline discloses of the file (field names of `domain.access`), recorded with its read:
# the operational fields, every category's subtypes, when consultations, interventions, letters
# and follow-ups happened and their codes; with the access log, in a second access event.
TIMELINE_FIELDS: Final = frozenset(
    OPERATIONAL
    | {
        "issues.mental_health",
        "issues.unlawful_harm",
        "consultations",
        "interventions",
        "letters",
        "follow_ups",
    }
)


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
    # The event's own list of fields (decoded for this answer alone): not copied.
    fields = getattr(e, "fields", None)
    channel = channel_of(e)
    return {
        "granted": fields is not None,
        "purpose": e.purpose,
        "rule": e.rule,
        "channel": channel,
        "channel_label_zh": CHANNEL_LABELS.get(channel, channel),
        "fields": fields if fields is not None else [],
        "break_glass": isinstance(e, BreakGlassAccessed),
        "request_id": e.request_id,
        "case_version": getattr(e, "case_version", None),
    }


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
    "follow_up_recorded": lambda e: {"visited_on": e.visited_on},
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
    # Issue 19: the erasure (that the file existed and was erased, when, under which rule).
    "data_key_destroyed": lambda e: _plain(e, "scope", "rule", "basis", "due_on"),
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


# Where each kind of event names who acted (`by` for the others; None: a unit, `actor_of`).
ACTOR_FIELD: Final[dict[str, str | None]] = {
    **dict.fromkeys(_UNIT_KINDS),
    "clue_reported": "reported_by",
    "case_accessed": "actor",
    "break_glass_accessed": "actor",
    "access_denied": "actor",
    "break_glass_reviewed": "reviewer",
}


def actor_of(step: Step) -> dict[str, Any] | None:
    """Who acted at a step: the person recorded with it, or the unit for a notice, a unit
    client's receipt or a deadline fact (none for an escalation of a deadline)."""
    event = step.event
    field = ACTOR_FIELD.get(step.kind, "by")
    if field is None:
        street = step.after.street if step.after is not None else None
        return _unit_actor(getattr(event, "unit", None), getattr(event, "street", street))
    record = getattr(event, field, None)
    return dict(record) if isinstance(record, dict) and record else None


def _state(state: FileState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "status": state.status,
        "status_label_zh": STATUS_LABEL.get(state.status, state.status),
        "risk": state.risk,
        "risk_label_zh": RISK_LABEL.get(state.risk, state.risk),
    }


def entry(
    step: Step,
    states: dict[Any, dict[str, Any]] | None = None,
    history: CaseHistory | None = None,
) -> dict[str, Any]:
    """One timeline entry (see the module's docstring). `states`: the state answers already
    built, by status and risk (shared between entries: build the answer, never change it).
    With `history`, a person acting is named with the post they held at that instant
    (`post`, `post_label_zh`: None for a user not registered then)."""
    details = _DETAILS.get(step.kind)
    if states is None:
        states = {}
    # One answer per change of (status, risk): most steps share a handful of them; a step that
    # changed nothing (a read, a notice, a fact) is found by its state alone.
    after_state, before_state = step.after, step.before
    fast = id(after_state) if before_state is after_state else None
    state = states.get(fast) if fast is not None else None
    if state is None:
        key = (
            (before_state.status, before_state.risk) if before_state is not None else None,
            (after_state.status, after_state.risk) if after_state is not None else None,
        )
        state = states.get(key)
        if state is None:
            state = states[key] = {"before": _state(before_state), "after": _state(after_state)}
        if fast is not None:
            states[fast] = state
    actor = actor_of(step)
    if history is not None and actor is not None and actor.get("user") is not None:
        post = history.post_of(actor["user"], step.at)
        actor["post"] = post
        actor["post_label_zh"] = post_label(post) if post is not None else None
    return {
        "at": step.at.isoformat(),
        "position": step.position,
        "kind": step.kind,
        "label_zh": KIND_LABELS.get(step.kind, step.kind),
        "actor": actor,
        "details": details(step.event) if details is not None else {},
        "state": state,
    }


def timeline(history: CaseHistory, *, as_of: datetime | None = None) -> dict[str, Any]:
    """`{"case_id", "as_of", "entries": [...]}`, in the store's order."""
    states: dict[Any, dict[str, Any]] = {}
    return {
        "case_id": str(history.case_id),
        "as_of": as_of.isoformat() if as_of is not None else None,
        "entries": [
            entry(step, states, history)
            for step in history.steps
            if as_of is None or step.at <= as_of
        ],
        "erased_records": len(history.erased),
    }
