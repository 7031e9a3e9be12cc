"""Need-to-know: the one place that decides who may see which case and which of its fields.

`decide()` is a pure function of the actor, what is known of the case's scope, and the declared
purpose of use. Its `Decision` names the rule that decided and, when granted, exactly the fields
to disclose; `disclose()` builds the answer from those fields and no others. Every decision, grant
or refusal, is stored as an access event (`CaseAccessed`, `AccessDenied`) before anything is
returned: see `domain.application.CaseTrail.read_case`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from eventsourcing.domain import DomainEvent

from domain.event_ids import time_ordered_id
from domain.taxonomy import ProtectionFunction, Purpose, Role

# How long a unit still sees a case after its assignment ended (its own follow-up notes etc.).
DEFAULT_GRACE_HOURS: Final = 72

if TYPE_CHECKING:
    from domain.case import Case


@dataclass(frozen=True)
class Actor:
    """Who is asking, as established by authentication (never by the request body).

    A unit is identified by the pair (street, unit code), never by its code alone: member units
    (成员单位) belong to one street's coordination, so a token naming a unit's code in another
    street is another unit. Every relation of an actor to a case compares both
    (`Actor.is_unit`), for reads here and for commands in `domain.permissions`; proven cell by
    cell by the "same code, other street" column of README's matrix
    (tests/integration/test_need_to_know.py)."""

    user: str
    role: Role
    unit: str
    street: str

    def is_unit(self, unit: str, street: str) -> bool:
        """Whether the actor belongs to this unit: same code, same street."""
        return (self.unit, self.street) == (unit, street)

    def as_record(self) -> dict[str, str]:
        return {"user": self.user, "role": str(self.role), "unit": self.unit, "street": self.street}


class Sensitivity(StrEnum):
    IDENTITY = "identity"
    SENSITIVE = "sensitive"
    OPERATIONAL = "operational"
    AUDIT = "audit"


# Every field a case read can disclose, with its sensitivity group. Order is the answer's order.
# `issues.<category>` discloses the file's subtypes of that category; `interventions.own_unit`
# the interventions the reader's own unit recorded; `access_log` who accessed the case.
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
        "categories": Sensitivity.OPERATIONAL,
        "issues.growth_environment": Sensitivity.OPERATIONAL,
        "issues.social_abnormality": Sensitivity.OPERATIONAL,
        "assignments": Sensitivity.OPERATIONAL,
        "escalations": Sensitivity.OPERATIONAL,
        "closure": Sensitivity.OPERATIONAL,
        # Issue 17: the file's corrections (each change's old and new values shown only to a
        # reader granted that field; its reason only to one granted every field it changed)
        # and its transfers between streets/villages (the reason only with `description`).
        "corrections": Sensitivity.OPERATIONAL,
        "transfers": Sensitivity.OPERATIONAL,
        "minor.name": Sensitivity.IDENTITY,
        "minor.gender": Sensitivity.IDENTITY,
        "minor.date_of_birth": Sensitivity.IDENTITY,
        "minor.id_number": Sensitivity.IDENTITY,
        "minor.school": Sensitivity.IDENTITY,
        "minor.grade_class": Sensitivity.IDENTITY,
        "guardians": Sensitivity.IDENTITY,
        "issues.mental_health": Sensitivity.SENSITIVE,
        "issues.unlawful_harm": Sensitivity.SENSITIVE,
        "description": Sensitivity.SENSITIVE,
        "consultations": Sensitivity.SENSITIVE,
        "interventions": Sensitivity.SENSITIVE,
        "interventions.own_unit": Sensitivity.SENSITIVE,
        "letters": Sensitivity.SENSITIVE,
        "follow_ups": Sensitivity.SENSITIVE,
        "access_log": Sensitivity.AUDIT,
    }
)


def _group(*groups: Sensitivity) -> frozenset[str]:
    return frozenset(k for k, v in FIELDS.items() if v in groups)


OPERATIONAL: Final = _group(Sensitivity.OPERATIONAL)
IDENTITY: Final = _group(Sensitivity.IDENTITY)
CASE_CONTENT: Final = _group(Sensitivity.OPERATIONAL, Sensitivity.IDENTITY, Sensitivity.SENSITIVE)
ALL_FIELDS: Final = CASE_CONTENT - {"interventions.own_unit"}
# Identity is what makes a disclosure personal: lists record an access event per case only then.
IDENTITY_FIELDS: Final = IDENTITY

# The reporting unit follows the child up; consultations and other units' notes are not its own.
REPORTER_FIELDS: Final = ALL_FIELDS - {"consultations", "interventions"}
# In an emergency: who the child is, how to reach the guardians, what is known of the risk.
BREAK_GLASS_FIELDS: Final = (
    OPERATIONAL
    | IDENTITY
    | {
        "issues.mental_health",
        "issues.unlawful_harm",
        "description",
    }
)
# Investigators reconstruct who knew what: everything, and the access log.
INVESTIGATOR_FIELDS: Final = ALL_FIELDS | {"access_log"}

# A guardian's copy of the minor's data (个人信息保护法 第四十五条, issue 19; purpose
# `guardian_request`): the minor's own identity data, where the file stands, its corrections (the
# values of these fields only), and the file's accounting of disclosures (`access_log`).
# Withheld: what others said and did about the child (the clue's description, who found it, the
# issues, consultations, interventions, letters, follow-ups) and the guardians' entries (the
# other guardian's phone and address are not the minor's data): third parties' information and
# the authorities' own work, which a disclosure to a guardian could impede or endanger (第十八条,
# 第三十五条); the guardian may be the very risk a file is about. The coordinator who hands the
# copy over decides nothing more: this is the one decision (tests/retention/
# test_guardian_requests.py).
GUARDIAN_REQUEST_NOT_OPEN: Final = "guardian_request_not_open"
GUARDIAN_COPY_FIELDS: Final = frozenset(
    {
        "id",
        "street",
        "village",
        "status",
        "reported_at",
        "updated_at",
        "corrections",
        "minor.name",
        "minor.gender",
        "minor.date_of_birth",
        "minor.id_number",
        "minor.school",
        "minor.grade_class",
        "access_log",
    }
)

# A member unit sees, beyond operational fields and identity, the detail its protection
# function needs (need-to-know), and its own interventions.
FUNCTION_DETAIL: Final = MappingProxyType(
    {
        ProtectionFunction.FAMILY: frozenset({"issues.mental_health", "letters"}),
        ProtectionFunction.SCHOOL: frozenset({"issues.mental_health"}),
        ProtectionFunction.SOCIETY: frozenset(),
        ProtectionFunction.ONLINE: frozenset({"issues.mental_health"}),
        ProtectionFunction.GOVERNMENT: frozenset({"letters"}),
        ProtectionFunction.JUDICIAL: frozenset({"issues.unlawful_harm", "description"}),
    }
)
UNIT_MEMBER_BASE: Final = OPERATIONAL | IDENTITY | {"interventions.own_unit"}

# The rule of a read under a county order (`domain.orders.CountyOrder`, issued for an
# investigation): the street under review is not told of it
# (`domain.investigations.hidden_from_street`).
COUNTY_ORDER_RULE: Final = "investigation_county_order"

# Which purposes of use each role may declare.
ROLE_PURPOSES: Final = MappingProxyType(
    {
        Role.REPORTER: frozenset(
            {Purpose.INTERVENTION, Purpose.FOLLOW_UP, Purpose.CONSULTATION, Purpose.EMERGENCY}
        ),
        Role.COORDINATOR: frozenset(
            {
                Purpose.CONSULTATION,
                Purpose.INTERVENTION,
                Purpose.FOLLOW_UP,
                Purpose.EMERGENCY,
                Purpose.GUARDIAN_REQUEST,
            }
        ),
        Role.SUPERVISOR: frozenset(
            {Purpose.CONSULTATION, Purpose.INTERVENTION, Purpose.FOLLOW_UP, Purpose.EMERGENCY}
        ),
        Role.UNIT_MEMBER: frozenset({Purpose.INTERVENTION, Purpose.FOLLOW_UP, Purpose.EMERGENCY}),
        Role.INVESTIGATOR: frozenset({Purpose.INVESTIGATION}),
        Role.COMPLIANCE_AUDITOR: frozenset({Purpose.COMPLIANCE_REVIEW}),
        Role.ADMIN: frozenset(),
        # Declares `investigation` for the investigations it leads; no case rule grants it.
        Role.COUNTY_LEAD: frozenset({Purpose.INVESTIGATION}),
    }
)


@dataclass(frozen=True)
class HeldAssignment:
    unit: str
    function: ProtectionFunction
    ended_at: datetime | None
    # The street the case was in when the unit was assigned (a unit is the pair street + code);
    # None: the case's street (a file never transferred).
    street: str | None = None


@dataclass(frozen=True)
class PreviousStreet:
    """A street the file was transferred out of, and the instant it left (issue 17)."""

    street: str
    until: datetime


@dataclass(frozen=True)
class CaseScope:
    """What the rules need to know of a case: never its content."""

    case_id: UUID
    street: str
    reporting_unit: str
    assignments: tuple[HeldAssignment, ...] = ()
    # Issue 17 (transfers): the streets the file left, each with the instant it left, oldest
    # first; the street of the reporting unit (None: the case's street, never transferred).
    previous_streets: tuple[PreviousStreet, ...] = ()
    reporting_street: str | None = None

    @classmethod
    def of(cls, case: Case) -> CaseScope:
        transfers = [
            (datetime.fromisoformat(t["at"]), t["from_street"], t["to_street"])
            for t in getattr(case, "transfers", [])
            if t["from_street"] != t["to_street"]
        ]

        def street_at(instant: str) -> str | None:
            # The street the file was in at `instant`: the first street left after it.
            if not transfers:
                return None
            moment = datetime.fromisoformat(instant)
            return next((old for at, old, _ in transfers if at > moment), case.street)

        return cls(
            case_id=case.id,
            street=case.street,
            reporting_unit=case.reporting_unit,
            assignments=tuple(
                HeldAssignment(
                    unit=a["unit"],
                    function=ProtectionFunction(a["function"]),
                    ended_at=datetime.fromisoformat(a["ended"]["at"]) if a["ended"] else None,
                    street=street_at(a["assigned_at"]),
                )
                for a in case.assignments.values()
            ),
            previous_streets=tuple(PreviousStreet(old, at) for at, old, _ in transfers),
            reporting_street=case.reported_by.get("street") if transfers else None,
        )

    def left_at(self, street: str) -> datetime | None:
        """When the file last left `street` (None: it is there now, or never was)."""
        if street == self.street:
            return None
        left = [p.until for p in self.previous_streets if p.street == street]
        return max(left) if left else None

    def reported_by(self, actor: Actor) -> bool:
        """The actor's unit reported the file and the file is still in that unit's street
        (a reporter of a street the file left keeps sight for the grace period only:
        `reported_by_within`)."""
        street = self.reporting_street or self.street
        return street == self.street and actor.is_unit(self.reporting_unit, street)

    def reported_by_within(self, actor: Actor, now: datetime, grace: timedelta) -> bool:
        """The actor's unit reported the file, and the file is in its street or left it less
        than `grace` ago."""
        if self.reported_by(actor):
            return True
        street = self.reporting_street or self.street
        left = self.left_at(street)
        return (
            left is not None and now - left <= grace and actor.is_unit(self.reporting_unit, street)
        )

    def held_by(self, actor: Actor) -> list[HeldAssignment]:
        """The assignments, open or ended, of the actor's unit (same code, same street: the
        street the file was in when the unit was assigned)."""
        return [a for a in self.assignments if actor.is_unit(a.unit, a.street or self.street)]

    def assigned_to(self, actor: Actor) -> bool:
        """Whether the actor's unit holds an open assignment on the case."""
        return any(a.ended_at is None for a in self.held_by(actor))


@dataclass(frozen=True)
class ReadContext:
    """Everything a read decision depends on besides the actor and the purpose."""

    scope: CaseScope | None
    now: datetime
    grace: timedelta = timedelta(hours=DEFAULT_GRACE_HOURS)
    # Expiry of an active investigation order naming this case and this investigator.
    order_expires_at: datetime | None = None
    break_glass_reason: str | None = None
    # That order is the county's (`domain.orders.CountyOrder`): its reads are recorded under
    # COUNTY_ORDER_RULE, which the access log street roles see leaves out.
    county_order: bool = False
    # An access request of a guardian (domain/guardian_requests.py) about this case is open:
    # only then is purpose `guardian_request` granted (issue 19).
    guardian_request_open: bool = False


@dataclass(frozen=True)
class Decision:
    granted: bool
    rule: str
    fields: frozenset[str] = frozenset()
    break_glass: bool = False


def _unit_member_grant(
    actor: Actor, scope: CaseScope, now: datetime, grace: timedelta
) -> tuple[str, frozenset[str]] | None:
    held = scope.held_by(actor)
    live = [a for a in held if a.ended_at is None]
    recent = [a for a in held if a.ended_at is not None and now - a.ended_at <= grace]
    current, rule = (live, "unit_member_assigned") if live else (recent, "unit_member_grace")
    if not current:
        return None
    fields = UNIT_MEMBER_BASE.union(*(FUNCTION_DETAIL[a.function] for a in current))
    return rule, fields


def scope_grant(actor: Actor, context: ReadContext) -> tuple[str, frozenset[str]] | None:
    """The rules table, as code (README.md shows it as one table).

    - coordinator, supervisor: cases of their street; all fields.
    - reporter: cases their unit reported (in their street); all but consultations and other
      units' intervention notes.
    - unit_member: while their unit holds an open assignment, or held one that ended less than
      the grace period ago; operational fields, identity, their own notes, and the detail their
      protection function needs (FUNCTION_DETAIL).
    - investigator: under an investigation order in force naming them and the case; all fields
      and the access log.
    - compliance_auditor: any case's access log, never its content. admin: nothing.
    """
    scope = context.scope
    if scope is None:
        return None
    role = actor.role
    if role in (Role.COORDINATOR, Role.SUPERVISOR) and actor.street == scope.street:
        return f"{role}_same_street", ALL_FIELDS
    if role in (Role.COORDINATOR, Role.SUPERVISOR):
        # A file transferred out of the actor's street: seen for the grace period (issue 17).
        left = scope.left_at(actor.street)
        if left is not None and context.now - left <= context.grace:
            return f"{role}_transferred_grace", ALL_FIELDS
        return None
    if role is Role.REPORTER and scope.reported_by(actor):
        return "reporter_own_unit", REPORTER_FIELDS
    if role is Role.REPORTER and scope.reported_by_within(actor, context.now, context.grace):
        return "reporter_transferred_grace", REPORTER_FIELDS
    if role is Role.UNIT_MEMBER:
        return _unit_member_grant(actor, scope, context.now, context.grace)
    if role is Role.INVESTIGATOR:
        expires = context.order_expires_at
        if expires is not None and expires > context.now:
            rule = COUNTY_ORDER_RULE if context.county_order else "investigation_order"
            return rule, INVESTIGATOR_FIELDS
        return None
    if role is Role.COMPLIANCE_AUDITOR:
        return "compliance_review", frozenset({"access_log"})
    return None


def decide(actor: Actor, context: ReadContext, purpose: Purpose) -> Decision:
    """Decide one read. A missing case (`context.scope is None`) is refused exactly like a case
    out of scope, so that a caller cannot learn whether a case exists."""
    if purpose not in ROLE_PURPOSES[actor.role]:
        return Decision(False, f"purpose_not_allowed_for_role:{actor.role}:{purpose}")
    if context.scope is None:
        return Decision(False, "no_such_case")
    grant = scope_grant(actor, context)
    if grant is not None:
        rule, fields = grant
        if purpose is Purpose.GUARDIAN_REQUEST:
            # The guardian's copy, while an access request about the file is open: the fields
            # the law allows of a file the reader may open (the access log with them: the
            # accounting of disclosures is part of the copy).
            if not context.guardian_request_open:
                return Decision(False, GUARDIAN_REQUEST_NOT_OPEN)
            fields = GUARDIAN_COPY_FIELDS & (fields | {"access_log"})
        return Decision(True, rule, fields)
    if purpose is Purpose.EMERGENCY:
        if context.break_glass_reason:
            return Decision(True, "break_glass", BREAK_GLASS_FIELDS, break_glass=True)
        return Decision(False, "break_glass_without_reason")
    return Decision(False, "out_of_scope")


def can_see(actor: Actor, scope: CaseScope, now: datetime) -> bool:
    """Whether the actor may know this case exists (for commands: else answer as if missing)."""
    return scope_grant(actor, ReadContext(scope=scope, now=now)) is not None


@dataclass(frozen=True)
class LedgerScope:
    """Which files an actor's ledgers and worklists list (a pre-filter: each file's fields are
    still decided by `decide()`, as for a case read), and whether the actor may export the
    ledger with full names and ID numbers, an audited disclosure of each file."""

    rule: str
    street: str
    reporting_unit: str | None = None
    assigned_unit: str | None = None
    identity_export: bool = False


def ledger_scope(actor: Actor) -> LedgerScope | None:
    """Ledgers (台账), worklists and reports: coordinators and supervisors see their street's
    files, reporters their own unit's, unit members those their unit holds an assignment on;
    investigators, compliance auditors and admins get none. Full-identity exports: the
    coordinator of the street, and a reporter for their own unit's files."""
    if actor.role is Role.COORDINATOR:
        return LedgerScope("ledger_street", actor.street, identity_export=True)
    if actor.role is Role.SUPERVISOR:
        return LedgerScope("ledger_street", actor.street)
    if actor.role is Role.REPORTER:
        return LedgerScope(
            "ledger_own_unit", actor.street, reporting_unit=actor.unit, identity_export=True
        )
    if actor.role is Role.UNIT_MEMBER:
        return LedgerScope("ledger_assigned", actor.street, assigned_unit=actor.unit)
    return None


def disclose(case: Case, fields: frozenset[str], *, reader_unit: str) -> dict[str, Any]:
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
        "categories": sorted({i["category"] for i in case.issues}),
        "assignments": list(case.assignments.values()),
        "escalations": case.escalations,
        "closure": case.closure,
        "guardians": case.guardians,
        "description": case.description,
        "consultations": case.consultations,
        "letters": case.letters,
        "follow_ups": case.follow_ups,
    }
    answer = {key: value for key, value in values.items() if key in fields}
    shown_categories = {f.removeprefix("issues.") for f in fields if f.startswith("issues.")}
    if shown_categories:
        answer["issues"] = [i for i in case.issues if i["category"] in shown_categories]
    if "interventions" in fields:
        answer["interventions"] = case.interventions
    elif "interventions.own_unit" in fields:
        answer["interventions"] = [i for i in case.interventions if i["unit"] == reader_unit]
    if minor:
        answer["minor"] = minor
    if "corrections" in fields:
        answer["corrections"] = corrections_shown(getattr(case, "corrections", []), fields)
    if "transfers" in fields:
        answer["transfers"] = [
            {k: v for k, v in t.items() if k != "reason" or "description" in fields}
            for t in getattr(case, "transfers", [])
        ]
    return answer


def corrections_shown(corrections: list[dict[str, Any]], fields: frozenset[str]) -> list[Any]:
    """The history of a file's corrections as a reader granted `fields` sees it: every
    correction (when, by whom, which fields), the earlier and later values of a field only if
    that field is granted, the reason only if every field it changed is granted (a reason may
    quote what was wrong). Proven in tests/domain/test_corrections.py."""
    shown: list[Any] = []
    for correction in corrections:
        changed = [c["field"] for c in correction["changes"]]
        entry: dict[str, Any] = {
            "at": correction["at"],
            "by": {k: correction["by"].get(k) for k in ("role", "unit")},
            "fields": changed,
            "changes": [c for c in correction["changes"] if c["field"] in fields],
        }
        if set(changed) <= fields:
            entry["reason"] = correction["reason"]
        shown.append(entry)
    return shown


# --- access events: one per read attempt, each its own stream (no contention between readers) ---
#
# Version 2 of the access events (issue 13, "exact knowledge records") adds what a reverse
# investigation (一案一倒查) needs to say exactly who knew what, and how:
# - `case_version`: the version of the case the decision was taken on, the one disclosed when
#   granted (None when no case was loaded: a missing case, a refusal naming none);
# - `channel`: the way the read came (`Channel`);
# - `client`: `{"address", "user_agent"}` as seen by the service (`Client`, resolved by the HTTP
#   gateway: the socket peer, or a trusted proxy's forwarded address).
# Events stored before hold none of these: `upcast_v1_v2` gives them the values that say so
# (`UNRECORDED_CHANNEL`, an empty client), never a guess. Proven by
# tests/domain/test_access_events.py, and by tests/integration/test_knowledge_records.py (the
# store written before, tests/fixtures/store_v1, and every channel over HTTP).


# The case id of an event about no case (an `AccessDenied` for a read that named none: a
# ledger page, a lookup, an export; a notice about no case): the nil UUID, never a case's (those
# are version-4 UUIDs), so the event keeps its stored shape (`case_id: UUID`) for every reader of
# it, old and new, and no case's access log lists it (tests/integration/test_one_reader.py).
NO_CASE: Final = UUID(int=0)


class Channel(StrEnum):
    """How a read reached the service: recorded on every access event."""

    API = "api"  # a case read, its access log, a break-glass read
    LEDGER = "ledger"
    LOOKUP = "lookup"
    EXPORT = "export"
    BUNDLE = "bundle"
    REPORT = "report"
    WORKLIST = "worklist"
    INBOX = "inbox"  # a unit's inbox (assignment metadata; only its refusals are recorded)
    # Reserved for the investigation workbench's reads (issue 13).
    TIMELINE = "timeline"
    KNOWLEDGE = "knowledge"
    DEADLINES = "deadlines"
    # A compliance auditor's report of access records (issue 15: accounting of disclosures,
    # access reports, the FHIR AuditEvent export, the annual audit report).
    COMPLIANCE = "compliance"
    # A web page (issue 18): the case page, the ledger, worklists, inbox and workbench pages.
    # Downloads keep their own channel (export, bundle, report, compliance).
    WEB = "web"


# The channel of an access event stored before channels were recorded (class version 1).
UNRECORDED_CHANNEL: Final = "unrecorded"


@dataclass(frozen=True)
class Client:
    """The client of a read as the service saw it. Both values come from the network and the
    request, never from a token: the gateway bounds and sanitises them before they get here."""

    address: str
    user_agent: str

    def as_record(self) -> dict[str, str]:
        return {"address": self.address, "user_agent": self.user_agent}


# The client of a read made inside a process (a test, a benchmark, a command of the service
# itself), not over the network.
IN_PROCESS_CLIENT: Final = Client(address="in-process", user_agent="")
UNRECORDED_CLIENT: Final = MappingProxyType({"address": "", "user_agent": ""})


def _upcast_knowledge(state: dict[str, Any]) -> None:
    state["case_version"] = None
    state["channel"] = UNRECORDED_CHANNEL
    state["client"] = dict(UNRECORDED_CLIENT)


class CaseAccessed(DomainEvent):
    """A case was disclosed: to whom, for what purpose, which fields, of which version of the
    case, through which channel, to which client."""

    class_version = 2

    case_id: UUID
    actor: dict[str, str]
    purpose: str
    rule: str
    fields: list[str]
    request_id: str
    case_version: int | None
    channel: str
    client: dict[str, str]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        _upcast_knowledge(state)


class BreakGlassAccessed(CaseAccessed):
    """A case opened outside the reader's scope in an emergency: awaits a compliance review.
    (Version 2 and its upcast are `CaseAccessed`'s.)"""

    reason: str


class BreakGlassReviewed(DomainEvent):
    """A compliance auditor's review of a break-glass access (same stream, version 2)."""

    outcome: str
    note: str
    reviewer: dict[str, str]


class AccessDenied(DomainEvent):
    """A read was refused, and by which rule; with the case version decided on, the channel
    and the client, as `CaseAccessed`."""

    class_version = 2

    case_id: UUID
    actor: dict[str, str]
    purpose: str
    rule: str
    request_id: str
    case_version: int | None
    channel: str
    client: dict[str, str]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        _upcast_knowledge(state)


def access_event(
    decision: Decision,
    *,
    case_id: UUID,
    actor: Actor,
    purpose: Purpose,
    request_id: str,
    case_version: int | None,
    channel: Channel,
    client: Client,
    break_glass_reason: str | None = None,
) -> CaseAccessed | AccessDenied:
    """The access event of one decision. `case_version` is the version of the case the decision
    was taken on (None when no case was loaded); `channel` and `client` how the read came."""
    common: dict[str, Any] = {
        "originator_id": time_ordered_id(),
        "originator_version": 1,
        "timestamp": DomainEvent.create_timestamp(),
        "case_id": case_id,
        "actor": actor.as_record(),
        "purpose": str(purpose),
        "rule": decision.rule,
        "request_id": request_id,
        "case_version": case_version,
        "channel": str(channel),
        "client": client.as_record(),
    }
    if decision.granted:
        common["fields"] = sorted(decision.fields)
        if decision.break_glass:
            common["reason"] = break_glass_reason or ""
            return BreakGlassAccessed(**common)
        return CaseAccessed(**common)
    return AccessDenied(**common)


def review_event(access_id: UUID, outcome: str, note: str, reviewer: Actor) -> BreakGlassReviewed:
    """The review, as version 2 of the break-glass access record's own stream."""
    values: dict[str, Any] = {
        "originator_id": access_id,
        "originator_version": 2,
        "timestamp": DomainEvent.create_timestamp(),
        "outcome": outcome,
        "note": note,
        "reviewer": reviewer.as_record(),
    }
    return BreakGlassReviewed(**values)


# --- refused commands (issue 15): a command refused by a rule is a fact, as a refused read is ---


class CommandRefused(DomainEvent):
    """A command was refused by a permission rule (`domain.permissions`): who tried, on which
    case (`NO_CASE` when it named none, or when the case was not visible: then `rule` says
    `not_visible` and the case id the request named is kept, so a reviewer sees the attempt),
    which command, which rule refused it, the request id, the channel and the client. No value
    of the command itself is kept (no echo of submitted data)."""

    case_id: UUID
    actor: dict[str, str]
    command: str
    rule: str
    request_id: str
    channel: str
    client: dict[str, str]


def command_refused(
    *,
    case_id: UUID,
    actor: Actor,
    command: str,
    rule: str,
    request_id: str,
    channel: Channel,
    client: Client,
) -> CommandRefused:
    values: dict[str, Any] = {
        "originator_id": time_ordered_id(),
        "originator_version": 1,
        "timestamp": DomainEvent.create_timestamp(),
        "case_id": case_id,
        "actor": actor.as_record(),
        "command": command,
        "rule": rule,
        "request_id": request_id,
        "channel": str(channel),
        "client": client.as_record(),
    }
    return CommandRefused(**values)
