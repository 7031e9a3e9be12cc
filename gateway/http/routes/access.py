"""Endpoints of need-to-know: break-glass reads, access logs, investigation orders, reviews.

Reads (break-glass, access logs, the compliance lists) ask the reader (`gateway.http.reader`),
which decides and records them; orders and reviews are commands, checked by the application."""

from __future__ import annotations

from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import Field

from domain import commands as cmd
from domain.investigation_commands import MAX_POSITION
from gateway.http.dependencies import ActorDep, EmergencyReaderDep, ReaderDep, ServicesDep
from gateway.logs import get_logger

log = get_logger("casetrail.api")
router = APIRouter()


class BreakGlass(cmd.Command):
    reason: Annotated[
        cmd.Note, Field(min_length=cmd.BREAK_GLASS_REASON_MIN, description="why, in writing")
    ]


@router.post("/v1/cases/{case_id}/break-glass", tags=["access"])
def break_glass(case_id: UUID, command: BreakGlass, reader: EmergencyReaderDep) -> dict[str, Any]:
    """Open a case outside your scope in an emergency, with a written reason. Granted, recorded
    as break-glass, and queued for a compliance auditor's review."""
    answer = reader.case(case_id, break_glass_reason=command.reason)
    log.warning("break_glass_access", case_id=str(case_id))
    return answer


# A case's log is read a page at a time, as the compliance list is: a file read thousands of
# times must not answer thousands of entries at once.
LOG_PAGE: Final = 200
MAX_LOG_PAGE: Final = 1000


@router.get("/v1/cases/{case_id}/accesses", tags=["access"])
def access_log(
    case_id: UUID,
    reader: ReaderDep,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_POSITION, description="the store position the page starts after"),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE)] = LOG_PAGE,
) -> dict[str, Any]:
    """Who accessed the case, when, for what purpose, which fields (no case content), oldest
    first, a page at a time: `after` = the previous page's `next_after` (null on the last
    page). Each entry's `position` is its place in the store. For compliance auditors, and
    investigators under an order. The reading is recorded too."""
    return reader.access_log(case_id, after=after, limit=limit)


@router.post("/v1/investigation-orders", status_code=201, tags=["access"])
def issue_order(
    command: cmd.IssueInvestigationOrder, actor: ActorDep, svc: ServicesDep, response: Response
) -> dict[str, str]:
    """Issue (or renew) an investigation order: one case, one investigator, a reason, an expiry.
    By a coordinator of the case's street or a county-level admin."""
    order = svc.application.issue_investigation_order(command, actor)
    log.info("investigation_order_issued", order_id=str(order), case_id=str(command.case_id))
    response.headers["Location"] = f"/v1/investigation-orders/{order}"
    return {"id": str(order)}


@router.post("/v1/investigation-orders/{order_id}/revocation", tags=["access"])
def revoke_order(
    order_id: UUID, command: cmd.RevokeInvestigationOrder, actor: ActorDep, svc: ServicesDep
) -> dict[str, str]:
    svc.application.revoke_investigation_order(order_id, command, actor)
    log.info("investigation_order_revoked", order_id=str(order_id))
    return {"id": str(order_id)}


@router.get("/v1/compliance/break-glass", tags=["compliance"])
def pending_reviews(reader: ReaderDep) -> dict[str, Any]:
    """Break-glass accesses awaiting review. Needs purpose `compliance_review`."""
    items = reader.pending_break_glass_reviews()
    return {
        "items": [
            {
                "access_id": str(e.originator_id),
                "case_id": str(e.case_id),
                "at": e.timestamp.isoformat(),
                "actor": e.actor,
                "reason": e.reason,
                "fields": e.fields,
            }
            for e in items
        ]
    }


@router.post("/v1/compliance/break-glass/{access_id}/review", tags=["compliance"])
def review(
    access_id: UUID, command: cmd.ReviewBreakGlass, actor: ActorDep, svc: ServicesDep
) -> dict[str, str]:
    # The application refuses anyone but a compliance auditor, and records the refusal.
    svc.application.review_break_glass(access_id, command, actor)
    log.info("break_glass_reviewed", access_id=str(access_id), outcome=command.outcome)
    return {"access_id": str(access_id), "outcome": command.outcome}


@router.get("/v1/compliance/authentication-refusals", tags=["compliance"])
def authentication_refusals(
    reader: ReaderDep,
    case_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Requests refused before their sender was known (missing, malformed, expired, forged
    tokens), newest first; `case_id` keeps those whose path named that case. A flood is stored
    at a bounded rate: `suppressed` counts the refusals from the same client for the same
    reason that were not stored one by one (`domain/refusals.py`). Needs purpose
    `compliance_review`."""
    items = reader.authentication_refusals(case_id=case_id, limit=limit)
    return {
        "items": [
            {
                "refusal_id": str(e.originator_id),
                "at": e.timestamp.isoformat(),
                "reason": e.reason,
                "method": e.method,
                "route": e.route,
                "case_id": str(e.case_id) if e.case_id else None,
                "client": e.client,
                "request_id": e.request_id,
                "suppressed": e.suppressed,
            }
            for e in items
        ]
    }
