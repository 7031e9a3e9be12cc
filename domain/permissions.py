"""Who may change what: one table, one check. Reads are decided in `domain.access`.

Each command names the (role, relation) pairs allowed to issue it. Relations:
- `any`: no case involved (reporting a new clue);
- `street`: the case is in the actor's street;
- `own_unit`: the actor's unit reported the case;
- `assigned`: the actor's unit holds an open assignment on the case.
A unit is the pair (street, unit code): `Actor.is_unit`, the same test as for reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from domain.access import Actor, CaseScope, can_see
from domain.errors import CaseNotFound, NotPermitted
from domain.taxonomy import Role

R = Role
COMMAND_RULES: Final = MappingProxyType(
    {
        "report_clue": {(R.REPORTER, "any"), (R.COORDINATOR, "any"), (R.SUPERVISOR, "any")},
        "reclassify": {(R.COORDINATOR, "street"), (R.SUPERVISOR, "street")},
        "assess_risk": {(R.COORDINATOR, "street"), (R.SUPERVISOR, "street")},
        "hold_consultation": {(R.COORDINATOR, "street")},
        "assign_unit": {(R.COORDINATOR, "street")},
        "end_assignment": {(R.COORDINATOR, "street")},
        "acknowledge_assignment": {(R.UNIT_MEMBER, "assigned")},
        # The duty cycle (domain.case): a person of the assigned unit, never a coordinator for it.
        "decline_assignment": {(R.UNIT_MEMBER, "assigned")},
        "report_assignment_result": {(R.UNIT_MEMBER, "assigned")},
        "record_intervention": {
            (R.UNIT_MEMBER, "assigned"),
            (R.COORDINATOR, "street"),
            (R.SUPERVISOR, "street"),
        },
        "sign_guardianship_letter": {
            (R.REPORTER, "own_unit"),
            (R.COORDINATOR, "street"),
            (R.SUPERVISOR, "street"),
        },
        "record_follow_up": {
            (R.REPORTER, "own_unit"),
            (R.UNIT_MEMBER, "assigned"),
            (R.COORDINATOR, "street"),
            (R.SUPERVISOR, "street"),
        },
        "escalate": {(R.COORDINATOR, "street"), (R.SUPERVISOR, "street")},
        "close": {(R.COORDINATOR, "street")},
        "reopen": {(R.COORDINATOR, "street")},
        # Issue 17 (动态更新): the street's coordinator, and the reporting unit (the village
        # that keeps the file's details up to date) for its own files; a transfer to another
        # street or village is the sending street's coordinator's.
        "correct_details": {(R.COORDINATOR, "street"), (R.REPORTER, "own_unit")},
        "transfer": {(R.COORDINATOR, "street")},
        # Investigation orders: a coordinator of the case's street, or a county-level admin.
        "issue_investigation_order": {(R.COORDINATOR, "street"), (R.ADMIN, "any")},
        "revoke_investigation_order": {(R.COORDINATOR, "street"), (R.ADMIN, "any")},
        # Issue 19, a guardian's requests (domain/guardian_requests.py): the case's street's
        # coordinator handles them; a compliance auditor may record, refuse and erase, never
        # read the file (the copy) nor correct it.
        "receive_guardian_request": {(R.COORDINATOR, "street"), (R.COMPLIANCE_AUDITOR, "any")},
        "refuse_guardian_request": {(R.COORDINATOR, "street"), (R.COMPLIANCE_AUDITOR, "any")},
        "answer_guardian_access": {(R.COORDINATOR, "street")},
        "answer_guardian_correction": {(R.COORDINATOR, "street")},
        "answer_guardian_deletion": {(R.COORDINATOR, "street"), (R.COMPLIANCE_AUDITOR, "any")},
        # Legal holds on a file (issue 19, domain.retention_holds): a compliance auditor, or
        # the coordinator of the file's street.
        "place_retention_hold": {(R.COORDINATOR, "street"), (R.COMPLIANCE_AUDITOR, "any")},
        "release_retention_hold": {(R.COORDINATOR, "street"), (R.COMPLIANCE_AUDITOR, "any")},
    }
)


def _relations(actor: Actor, scope: CaseScope | None) -> set[str]:
    found = {"any"}
    if scope is not None:
        if scope.street == actor.street:
            found.add("street")
        if scope.reported_by(actor):
            found.add("own_unit")
        if scope.assigned_to(actor):
            found.add("assigned")
    return found


def may(actor: Actor, action: str, scope: CaseScope | None) -> bool:
    relations = _relations(actor, scope)
    return any(role is actor.role and rel in relations for role, rel in COMMAND_RULES[action])


def require_permission(actor: Actor, action: str, scope: CaseScope | None) -> None:
    if may(actor, action, scope):
        return
    if scope is not None and not can_see(actor, scope, datetime.now(UTC)):
        # No relation to the case at all: answer as if it did not exist (need-to-know).
        raise CaseNotFound(f"no case {scope.case_id} is visible to you")
    allowed = sorted(f"{role}({rel})" for role, rel in COMMAND_RULES[action])
    raise NotPermitted(
        f"role '{actor.role}' of unit '{actor.unit}' may not {action.replace('_', ' ')} "
        f"on this case; allowed: {', '.join(allowed)}"
    )
