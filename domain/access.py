"""Need-to-know: the one place that decides who may see which case and which of its fields.

`decide()` is a pure function of the actor, what is known of the case's scope, and the declared
purpose of use. Its `Decision` names the rule that decided and, when granted, exactly the fields
to disclose; `disclose()` builds the answer from those fields and no others. Every decision, grant
or refusal, is stored as an access event (`CaseAccessed`, `AccessDenied`) before anything is
returned: see `domain.application.CaseTrail.read_case`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID, uuid4

from eventsourcing.domain import DomainEvent

from domain.taxonomy import Purpose, Role

if TYPE_CHECKING:
    from domain.case import Case


@dataclass(frozen=True)
class Actor:
    """Who is asking, as established by authentication (never by the request body)."""

    user: str
    role: Role
    unit: str
    street: str

    def as_record(self) -> dict[str, str]:
        return {"user": self.user, "role": str(self.role), "unit": self.unit, "street": self.street}


class Sensitivity(StrEnum):
    IDENTITY = "identity"
    SENSITIVE = "sensitive"
    OPERATIONAL = "operational"


# Every field a case read can disclose, with its sensitivity group. Order is the answer's order.
FIELDS: Final = MappingProxyType(
    {
        "id": Sensitivity.OPERATIONAL,
        "street": Sensitivity.OPERATIONAL,
        "village": Sensitivity.OPERATIONAL,
        "reporting_unit": Sensitivity.OPERATIONAL,
        "status": Sensitivity.OPERATIONAL,
        "risk": Sensitivity.OPERATIONAL,
        "found_on": Sensitivity.OPERATIONAL,
        "method": Sensitivity.OPERATIONAL,
        "found_by": Sensitivity.OPERATIONAL,
        "reported_at": Sensitivity.OPERATIONAL,
        "updated_at": Sensitivity.OPERATIONAL,
        "version": Sensitivity.OPERATIONAL,
        "assignments": Sensitivity.OPERATIONAL,
        "escalations": Sensitivity.OPERATIONAL,
        "closure": Sensitivity.OPERATIONAL,
        "minor.name": Sensitivity.IDENTITY,
        "minor.gender": Sensitivity.IDENTITY,
        "minor.date_of_birth": Sensitivity.IDENTITY,
        "minor.id_number": Sensitivity.IDENTITY,
        "minor.school": Sensitivity.IDENTITY,
        "minor.grade_class": Sensitivity.IDENTITY,
        "guardians": Sensitivity.IDENTITY,
        "issues": Sensitivity.SENSITIVE,
        "description": Sensitivity.SENSITIVE,
        "consultations": Sensitivity.SENSITIVE,
        "interventions": Sensitivity.SENSITIVE,
        "letters": Sensitivity.SENSITIVE,
        "follow_ups": Sensitivity.SENSITIVE,
    }
)

ALL_FIELDS: Final = frozenset(FIELDS)

# Which purposes of use each role may declare.
ROLE_PURPOSES: Final = MappingProxyType(
    {
        Role.REPORTER: frozenset({Purpose.INTERVENTION, Purpose.FOLLOW_UP, Purpose.CONSULTATION}),
        Role.COORDINATOR: frozenset(
            {Purpose.CONSULTATION, Purpose.INTERVENTION, Purpose.FOLLOW_UP, Purpose.EMERGENCY}
        ),
        Role.SUPERVISOR: frozenset(
            {Purpose.CONSULTATION, Purpose.INTERVENTION, Purpose.FOLLOW_UP, Purpose.EMERGENCY}
        ),
        Role.UNIT_MEMBER: frozenset({Purpose.INTERVENTION, Purpose.FOLLOW_UP, Purpose.EMERGENCY}),
        Role.INVESTIGATOR: frozenset({Purpose.INVESTIGATION}),
        Role.COMPLIANCE_AUDITOR: frozenset({Purpose.COMPLIANCE_REVIEW}),
        Role.ADMIN: frozenset(),
    }
)


@dataclass(frozen=True)
class CaseScope:
    """What the rules need to know of a case: never its content."""

    case_id: UUID
    street: str
    reporting_unit: str
    assigned_units: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, case: Case) -> CaseScope:
        return cls(
            case_id=case.id,
            street=case.street,
            reporting_unit=case.reporting_unit,
            assigned_units=frozenset(
                a["unit"] for a in case.assignments.values() if a["ended"] is None
            ),
        )


@dataclass(frozen=True)
class Decision:
    granted: bool
    rule: str
    fields: frozenset[str] = frozenset()


OPERATIONAL_FIELDS: Final = frozenset(k for k, v in FIELDS.items() if v is Sensitivity.OPERATIONAL)


def scope_grant(actor: Actor, scope: CaseScope) -> tuple[str, frozenset[str]] | None:
    """The rule under which the actor sees this case at all, and the fields it may see."""
    if actor.role is Role.COORDINATOR and actor.street == scope.street:
        return "coordinator_same_street", ALL_FIELDS
    if actor.role is Role.REPORTER and actor.unit == scope.reporting_unit:
        return "reporter_own_unit", ALL_FIELDS
    if actor.role is Role.UNIT_MEMBER and actor.unit in scope.assigned_units:
        return "unit_member_assigned", OPERATIONAL_FIELDS
    return None


def decide(actor: Actor, scope: CaseScope | None, purpose: Purpose) -> Decision:
    """Decide one read. `scope` is None when no such case exists: the refusal is then the same
    as for a case out of scope, so that a caller cannot learn whether a case exists."""
    if purpose not in ROLE_PURPOSES[actor.role]:
        return Decision(False, f"purpose_not_allowed_for_role:{actor.role}:{purpose}")
    if scope is None:
        return Decision(False, "no_such_case")
    grant = scope_grant(actor, scope)
    if grant is None:
        return Decision(False, "out_of_scope")
    rule, fields = grant
    return Decision(True, rule, fields)


def disclose(case: Case, fields: frozenset[str]) -> dict[str, Any]:
    """The case as an answer holding the given fields only; withheld fields are absent."""
    minor = {
        key.removeprefix("minor."): case.minor[key.removeprefix("minor.")]
        for key in FIELDS
        if key.startswith("minor.") and key in fields
    }
    values: dict[str, Any] = {
        "id": str(case.id),
        "street": case.street,
        "village": case.minor["village"],
        "reporting_unit": case.reporting_unit,
        "status": case.status,
        "risk": case.risk,
        "found_on": case.found_on,
        "method": case.method,
        "found_by": case.found_by,
        "reported_at": case.created_on.isoformat(),
        "updated_at": case.modified_on.isoformat(),
        "version": case.version,
        "assignments": list(case.assignments.values()),
        "escalations": case.escalations,
        "closure": case.closure,
        "guardians": case.guardians,
        "issues": case.issues,
        "description": case.description,
        "consultations": case.consultations,
        "interventions": case.interventions,
        "letters": case.letters,
        "follow_ups": case.follow_ups,
    }
    answer = {key: value for key, value in values.items() if key in fields}
    if minor:
        answer["minor"] = minor
    return answer


# --- access events: one per read attempt, each its own stream (no contention between readers) ---


class CaseAccessed(DomainEvent):
    """A case was disclosed: to whom, for what purpose, which fields."""

    case_id: UUID
    actor: dict[str, str]
    purpose: str
    rule: str
    fields: list[str]
    request_id: str


class AccessDenied(DomainEvent):
    """A read was refused, and by which rule."""

    case_id: UUID
    actor: dict[str, str]
    purpose: str
    rule: str
    request_id: str


def access_event(
    decision: Decision, *, case_id: UUID, actor: Actor, purpose: Purpose, request_id: str
) -> CaseAccessed | AccessDenied:
    common: dict[str, Any] = {
        "originator_id": uuid4(),
        "originator_version": 1,
        "timestamp": DomainEvent.create_timestamp(),
        "case_id": case_id,
        "actor": actor.as_record(),
        "purpose": str(purpose),
        "rule": decision.rule,
        "request_id": request_id,
    }
    if decision.granted:
        common["fields"] = sorted(decision.fields)
        return CaseAccessed(**common)
    return AccessDenied(**common)
