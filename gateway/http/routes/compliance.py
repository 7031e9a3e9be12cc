"""Findings of the compliance rules (issue 15): list, counts, review, follow-ups.

    GET  /v1/compliance/findings?rule=&status=&unit=&person=&since=&until=
    GET  /v1/compliance/findings/counts?since=&until=        per rule and unit, by status
    POST /v1/compliance/findings/{id}/review                 {"outcome", "reason"}
    POST /v1/compliance/findings/{id}/follow-up              {"owner", "due_on"}
    POST /v1/compliance/findings/{id}/follow-up/completion   {"completed_on", "note"}

Compliance auditors only, with purpose `compliance_review`. Each list read is recorded before
the answer leaves, as an access event naming no case (fields `compliance_findings`); a refused
one as `AccessDenied`, then answered 403. The commands are the application's
(`CaseTrail.review_finding`, ...): anyone else is refused and the refusal stored as
`CommandRefused`. No answer holds case content: ids, codes, instants, counts and store
positions. Proven by tests/integration/test_findings.py.
"""

from __future__ import annotations

from collections import Counter
from contextlib import suppress
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from domain import errors
from domain.access import NO_CASE, Actor, Channel
from domain.application import AccessRefused
from domain.compliance.commands import CompleteFollowUp, OpenFollowUp, ReviewFinding
from domain.compliance.config import RULE_IDS
from domain.compliance.findings import FindingFilter, FindingStatus, FindingSummary
from domain.taxonomy import Purpose, Role
from gateway.http.dependencies import (
    ActorDep,
    RequestContext,
    RequestContextDep,
    Services,
    ServicesDep,
    purpose_of_use,
)
from gateway.http.routes.disclosures import Instant
from gateway.logs import get_logger

log = get_logger("casetrail.api")
router = APIRouter()

FINDINGS_FIELD = "compliance_findings"
FINDINGS_NOT_FOR_ROLE = "compliance_findings_not_for_role"
PurposeDep = Annotated[Purpose, Depends(purpose_of_use)]
RuleQuery = Annotated[
    str | None, Query(max_length=64, pattern="^(" + "|".join(RULE_IDS) + ")$")
]
Code = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]


def _recorded_read(svc: Services, actor: Actor, purpose: Purpose, context: RequestContext) -> None:
    """Record the list read (or its refusal, then answer 403) before anything is answered."""
    if actor.role is not Role.COMPLIANCE_AUDITOR or purpose is not Purpose.COMPLIANCE_REVIEW:
        with suppress(AccessRefused):
            svc.application.record_refusal(
                f"{FINDINGS_NOT_FOR_ROLE}:{actor.role}",
                actor=actor,
                purpose=purpose,
                request_id=context.request_id,
                channel=Channel.API,
                client=context.client,
            )
        raise errors.NotPermitted(
            "findings are for compliance auditors declaring X-Purpose-Of-Use: "
            "compliance_review; the refusal was recorded"
        )
    svc.application.record_disclosures(
        [(NO_CASE, frozenset({FINDINGS_FIELD}), "compliance_review", None)],
        actor=actor,
        purpose=purpose,
        request_id=context.request_id,
        channel=Channel.API,
        client=context.client,
    )


@router.get("/v1/compliance/findings", tags=["compliance"])
def list_findings(
    actor: ActorDep,
    purpose: PurposeDep,
    svc: ServicesDep,
    context: RequestContextDep,
    rule: RuleQuery = None,
    status: FindingStatus | None = None,
    unit: Code = None,
    person: Code = None,
    since: Instant = None,
    until: Instant = None,
) -> dict[str, Any]:
    """Findings, oldest first; `since`/`until` bound the end of each finding's window."""
    where = FindingFilter(
        rule=rule, status=status, unit=unit, person=person, since=since, until=until
    )
    _recorded_read(svc, actor, purpose, context)
    return {"items": [f.as_json() for f in svc.application.findings(where)]}


@router.get("/v1/compliance/findings/counts", tags=["compliance"])
def finding_counts(
    actor: ActorDep,
    purpose: PurposeDep,
    svc: ServicesDep,
    context: RequestContextDep,
    since: Instant = None,
    until: Instant = None,
) -> dict[str, Any]:
    """How many findings per rule and unit, by status."""
    _recorded_read(svc, actor, purpose, context)
    return {"counts": counts_of(svc.application.findings(FindingFilter(since=since, until=until)))}


def counts_of(found: list[FindingSummary]) -> list[dict[str, Any]]:
    tally: Counter[tuple[str, str, str, FindingStatus]] = Counter(
        (f.rule, f.street, f.unit, f.status) for f in found
    )
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (rule, street, unit, status), n in sorted(tally.items()):
        row = rows.setdefault(
            (rule, street, unit),
            {"rule": rule, "street": street, "unit": unit, "total": 0}
            | {str(s): 0 for s in FindingStatus},
        )
        row[str(status)] += n
        row["total"] += n
    return list(rows.values())


@router.post("/v1/compliance/findings/{finding_id}/review", tags=["compliance"])
def review_finding(
    finding_id: UUID, command: ReviewFinding, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Review a finding: `justified` or `violation`, with a reason. Once."""
    found = svc.application.review_finding(finding_id, command.outcome, command.reason, actor)
    log.info("finding_reviewed", finding_id=str(finding_id), outcome=str(command.outcome))
    return {"id": str(found.id), "status": str(found.status)}


@router.post("/v1/compliance/findings/{finding_id}/follow-up", status_code=201, tags=["compliance"])
def open_follow_up(
    finding_id: UUID, command: OpenFollowUp, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Open the follow-up of a violation: its owner (a user or unit code) and due date."""
    found = svc.application.open_finding_follow_up(finding_id, command.owner, command.due_on, actor)
    log.info("finding_follow_up_opened", finding_id=str(finding_id))
    return {"id": str(found.id), "follow_up": found.follow_up}


@router.post("/v1/compliance/findings/{finding_id}/follow-up/completion", tags=["compliance"])
def complete_follow_up(
    finding_id: UUID, command: CompleteFollowUp, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    found = svc.application.complete_finding_follow_up(
        finding_id, command.completed_on, command.note, actor
    )
    log.info("finding_follow_up_completed", finding_id=str(finding_id))
    return {"id": str(found.id), "follow_up": found.follow_up}
