"""Retention and legal holds over HTTP (issue 19; the rules are `domain.retention`, the holds
`domain.retention_holds`, README "Retention").

    GET  /v1/retention[?today=YYYY-MM-DD]         closed files and roster entries, their state
    POST /v1/retention/holds                       {"case_id", "reason"}: an explicit hold
    POST /v1/retention/holds/{hold_id}/release     {"reason"}

Compliance auditors (every street, each hold's source) and coordinators (their own street's
files, the hold reasons only). The list read
is recorded before the answer leaves, as an access event naming no case (fields
`retention_status`); anyone else's attempt as `AccessDenied`, then answered 403. `today` only
looks ahead (what a later day will bring): erasing is `casetrail retention apply` and the
scheduled run, never this API. The holds are the application's commands
(`CaseTrail.place_hold`, `release_hold`): a refusal by the rules is stored as `CommandRefused`;
a file already erased is answered 410. No answer holds case content: ids, streets, dates,
states and hold reasons. Proven by tests/retention/test_holds.py.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from domain import errors
from domain.access import NO_CASE, Actor, Channel
from domain.application import AccessRefused
from domain.clock import local_today
from domain.commands import EARLIEST_DATE, LATEST_DATE
from domain.retention_holds import PlaceHold, ReleaseHold
from domain.taxonomy import Purpose, Role
from gateway.http.dependencies import (
    ActorDep,
    RequestContext,
    RequestContextDep,
    Services,
    ServicesDep,
    purpose_of_use,
)
from gateway.logs import get_logger

log = get_logger("casetrail.api")
router = APIRouter()

STATUS_FIELD = "retention_status"
STATUS_NOT_FOR_ROLE = "retention_status_not_for_role"
READERS = frozenset({Role.COMPLIANCE_AUDITOR, Role.COORDINATOR})
PurposeDep = Annotated[Purpose, Depends(purpose_of_use)]
Today = Annotated[
    date | None,
    Query(
        ge=EARLIEST_DATE,
        le=LATEST_DATE,
        description="judge on this day (default: today in Beijing); only to look ahead",
        # `ge`/`le` are for numbers in the schema: the bounds of a date are these.
        json_schema_extra={
            "formatMinimum": EARLIEST_DATE.isoformat(),
            "formatMaximum": LATEST_DATE.isoformat(),
        },
    ),
]


def _recorded_read(svc: Services, actor: Actor, purpose: Purpose, context: RequestContext) -> None:
    """Record the read (or its refusal, then answer 403) before anything is answered."""
    if actor.role not in READERS:
        with suppress(AccessRefused):
            svc.application.record_refusal(
                f"{STATUS_NOT_FOR_ROLE}:{actor.role}",
                actor=actor,
                purpose=purpose,
                request_id=context.request_id,
                channel=Channel.API,
                client=context.client,
            )
        raise errors.NotPermitted(
            "the retention status is for compliance auditors and the street's coordinator; "
            "the refusal was recorded"
        )
    svc.application.record_disclosures(
        [(NO_CASE, frozenset({STATUS_FIELD}), f"{STATUS_FIELD}:{actor.role}", None)],
        actor=actor,
        purpose=purpose,
        request_id=context.request_id,
        channel=Channel.API,
        client=context.client,
    )


@router.get("/v1/retention", tags=["retention"])
def retention_status(
    actor: ActorDep,
    purpose: PurposeDep,
    svc: ServicesDep,
    context: RequestContextDep,
    today: Today = None,
) -> dict[str, Any]:
    """Closed files and roster entries: `kept`, `due`, `held` (due, but held) or `erased`."""
    _recorded_read(svc, actor, purpose, context)
    day = today or local_today()
    auditor = actor.role is Role.COMPLIANCE_AUDITOR
    rows = svc.application.retention_status(day, street=None if auditor else actor.street)
    if not auditor:
        # A coordinator sees the reasons; which source, and which other file of the minor (in
        # another street, perhaps) it names, is the auditors' (need-to-know).
        rows = [{**row, "holds": []} for row in rows]
    return {
        "today": day.isoformat(),
        "rule": svc.application.retention_rules.basis(),
        "items": rows,
    }


@router.post("/v1/retention/holds", status_code=201, tags=["retention"])
async def place_hold(command: PlaceHold, actor: ActorDep, svc: ServicesDep) -> dict[str, Any]:
    """An explicit hold on a case file, and so on every file of its minor."""
    hold = await run_in_threadpool(svc.application.place_hold, command, actor)
    log.info("retention_hold_placed", hold_id=str(hold.id))
    return {"id": str(hold.id), "case_id": hold.case_id, "active": hold.active}


@router.post("/v1/retention/holds/{hold_id}/release", tags=["retention"])
async def release_hold(
    hold_id: UUID, command: ReleaseHold, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Release an explicit hold; the files are due again if nothing else holds them."""
    hold = await run_in_threadpool(svc.application.release_hold, hold_id, command, actor)
    log.info("retention_hold_released", hold_id=str(hold.id))
    return {"id": str(hold.id), "case_id": hold.case_id, "active": hold.active}
