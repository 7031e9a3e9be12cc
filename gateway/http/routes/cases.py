"""Endpoints of case files: report, read (audited), and one POST per command on a case."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from domain import commands as cmd
from domain import errors
from domain.access import Actor
from domain.case import Case
from domain.taxonomy import CATEGORY_LABELS, PROTECTION_FUNCTION_LABELS, SUBTYPES
from gateway.auth import AuthenticationFailed
from gateway.http.dependencies import ActorDep, ReaderDep, Services, ServicesDep
from gateway.http.durability import answer_when_durable
from gateway.http.examples import REPORT_CLUE_EXAMPLE
from gateway.logs import get_logger
from projections.readmodels import ReadModels

log = get_logger("casetrail.api")


def _created(response: Response, case_id: UUID, case_version: int | None = None) -> dict[str, Any]:
    response.headers["Location"] = f"/v1/cases/{case_id}"
    body: dict[str, Any] = {"id": str(case_id)}
    if case_version is not None:
        body["version"] = case_version
    return body


router = APIRouter()


@router.get("/healthz", tags=["service"])
def health(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Liveness (`{"status": "ok"}`) for anyone. With a valid bearer token (any role), also the
    store's position and the read models' lag, for monitoring: how many events the store holds
    is not for anonymous callers. No case content either way."""
    if not _authenticated(svc, request.headers.get("authorization", "")):
        return {"status": "ok"}
    return {
        "status": "ok",
        "store": svc.settings.store_kind,
        "position": svc.application.recorder.max_notification_id() or 0,
        "projections": _projections_status(svc.readmodels),
        "undeliverable_notices": len(svc.application.undeliverable_notices()),  # a count only
    }


def _projections_status(readmodels: ReadModels | None) -> dict[str, Any]:
    """Each read model's position and lag, no case content."""
    if readmodels is None:
        return {"status": "unavailable", "projections": []}
    try:
        found = [s.as_dict() for s in readmodels.status()]
    except PersistenceError as exc:
        return {"status": "unavailable", "error": type(exc).__name__, "projections": []}
    worst = max((p["lag"] for p in found), default=0)
    return {"status": "ok", "max_lag": worst, "projections": found}


def _authenticated(svc: Services, authorization: str) -> bool:
    """A liveness probe never fails on its token: a missing or bad one only withholds detail."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        # Only a registered, active user's token (issue 16, gateway.auth.UserRegistry).
        svc.users.check(svc.verifier.verify(token.strip()))
    except AuthenticationFailed:
        return False
    return True


@router.get("/v1/taxonomy", tags=["reference"])
def taxonomy() -> dict[str, Any]:
    """Category and subtype codes with their Chinese labels; protection functions."""
    return {
        "categories": [
            {
                "code": str(category),
                "label": CATEGORY_LABELS[category],
                "subtypes": [{"code": c, "label": lbl} for c, lbl in subtypes.items()],
            }
            for category, subtypes in SUBTYPES.items()
        ],
        "protection_functions": [
            {"code": str(f), "label": lbl} for f, lbl in PROTECTION_FUNCTION_LABELS.items()
        ],
    }


@router.post("/v1/cases", status_code=201, tags=["cases"])
async def report_clue(
    command: Annotated[cmd.ReportClue, Body(openapi_examples=REPORT_CLUE_EXAMPLE)],
    actor: ActorDep,
    svc: ServicesDep,
    response: Response,
) -> dict[str, Any]:
    """Report a clue: one clue, one file (一线索一档案). Answers the new case's id."""
    # In a worker thread, the answer checked on the event loop (as `_run`, below).
    case_id = await run_in_threadpool(svc.application.report_clue, command, actor)
    log.info("clue_reported", case_id=str(case_id))
    return _created(response, case_id, 1)


# An instant with its offset (RFC 3339), in the window of every date the service takes.
AsOf = Annotated[
    AwareDatetime | None,
    Query(
        description="the case as it stood at this instant (RFC 3339, with offset): "
        "investigators holding an order in force for the case only",
        json_schema_extra={
            "formatMinimum": f"{cmd.EARLIEST_DATE}T00:00:00Z",
            "formatMaximum": f"{cmd.LATEST_DATE}T23:59:59Z",
        },
    ),
]


@router.get("/v1/cases/{case_id}", tags=["cases"])
async def read_case(case_id: UUID, reader: ReaderDep, as_of: AsOf = None) -> dict[str, Any]:
    """The fields of the case you may see. The access is recorded before the answer.
    With `as_of`, the case as it stood then (its last event at or before that instant), for
    an investigator under an order in force now; anyone else is refused as for a case out of
    scope, and an instant before the clue was reported as for a missing case (both recorded)."""
    if as_of is not None:
        if not cmd.EARLIEST_DATE <= as_of.date() <= cmd.LATEST_DATE:
            raise errors.InvestigationInvalid(
                f"as_of must lie between {cmd.EARLIEST_DATE} and {cmd.LATEST_DATE}",
                field="as_of",
            )
        return await run_in_threadpool(reader.case_as_of, case_id, as_of)
    # Decided and handed to the shared commit in a worker thread (it loads the case); the
    # commit is awaited here, holding no thread; disclosed only once it is durable.
    return await answer_when_durable(await run_in_threadpool(reader.begin_case, case_id))


# --- one POST per command on a case ---


async def _run(
    svc: Services, actor: Actor, case_id: UUID, action: str, change: Callable[[Case], Any]
) -> dict[str, Any]:
    """The command in a worker thread (it loads the case and waits for the durable commit).
    The routes are `async` so that FastAPI checks their answer on the event loop: a plain
    `def` route costs a second hand-off to the thread pool for that check alone (about 0.1 ms
    of CPU a command on PostgreSQL, bench/README.md, seventeenth round)."""
    return await run_in_threadpool(_change, svc, actor, case_id, action, change)


def _change(
    svc: Services, actor: Actor, case_id: UUID, action: str, change: Callable[[Case], Any]
) -> dict[str, Any]:
    result = svc.application.change_case(case_id, actor, action, change)
    log.info("case_changed", case_id=str(case_id), action=action)
    body: dict[str, Any] = {"id": str(case_id)}
    if isinstance(result, UUID):
        body["assignment_id"] = str(result)
    return body


@router.post("/v1/cases/{case_id}/reclassification", tags=["case commands"])
async def reclassify(
    case_id: UUID, command: cmd.Reclassify, actor: ActorDep, svc: ServicesDep
) -> Any:
    return await _run(
        svc, actor, case_id, "reclassify", lambda c: c.reclassify(command, by=actor.as_record())
    )


@router.post("/v1/cases/{case_id}/risk-assessments", tags=["case commands"])
async def assess_risk(
    case_id: UUID, command: cmd.AssessRisk, actor: ActorDep, svc: ServicesDep
) -> Any:
    return await _run(
        svc,
        actor,
        case_id,
        "assess_risk",
        lambda c: c.assess_risk(command, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/consultations", tags=["case commands"])
async def hold_consultation(
    case_id: UUID, command: cmd.HoldConsultation, actor: ActorDep, svc: ServicesDep
) -> Any:
    return await _run(
        svc,
        actor,
        case_id,
        "hold_consultation",
        lambda c: c.hold_consultation(command, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/assignments", status_code=201, tags=["case commands"])
async def assign_unit(
    case_id: UUID, command: cmd.AssignUnit, actor: ActorDep, svc: ServicesDep
) -> Any:
    return await _run(
        svc,
        actor,
        case_id,
        "assign_unit",
        lambda c: svc.application.assignable(command.unit, c).assign_unit(
            command, by=actor.as_record()
        ),
    )


@router.post(
    "/v1/cases/{case_id}/assignments/{assignment_id}/acknowledgement", tags=["case commands"]
)
async def acknowledge(case_id: UUID, assignment_id: UUID, actor: ActorDep, svc: ServicesDep) -> Any:
    """签收: a member of the assigned unit (same street, same unit code) signs for the task; the
    stored event names that person. 409 when it is already signed for, declined or ended. The
    unit's client confirming receipt of the notice is another fact (`NoticeReceived`)."""
    return await _run(
        svc,
        actor,
        case_id,
        "acknowledge_assignment",
        lambda c: c.acknowledge_assignment(assignment_id, unit=actor.unit, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/assignments/{assignment_id}/decline", tags=["case commands"])
async def decline_assignment(
    case_id: UUID,
    assignment_id: UUID,
    command: cmd.DeclineAssignment,
    actor: ActorDep,
    svc: ServicesDep,
) -> Any:
    """A member of the assigned unit declines the task, with a reason; the assignment ends and
    the coordinator can assign again. 409 once it is signed for (report its result instead)."""
    return await _run(
        svc,
        actor,
        case_id,
        "decline_assignment",
        lambda c: c.decline_assignment(assignment_id, command, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/assignments/{assignment_id}/result", tags=["case commands"])
async def report_assignment_result(
    case_id: UUID,
    assignment_id: UUID,
    command: cmd.ReportAssignmentResult,
    actor: ActorDep,
    svc: ServicesDep,
) -> Any:
    """办结反馈: the unit that signed for the task reports the measures taken (the plan's kinds
    of measure), the outcome and whether it recommends closing the file or continuing; the
    assignment ends. 409 before it is signed for, or once it ended."""
    return await _run(
        svc,
        actor,
        case_id,
        "report_assignment_result",
        lambda c: c.report_assignment_result(assignment_id, command, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/assignments/{assignment_id}/end", tags=["case commands"])
async def end_assignment(
    case_id: UUID,
    assignment_id: UUID,
    command: cmd.EndAssignment,
    actor: ActorDep,
    svc: ServicesDep,
) -> Any:
    """End an assignment (completed, withdrawn, transferred); the unit keeps sight of the case
    for the grace period only."""
    return await _run(
        svc,
        actor,
        case_id,
        "end_assignment",
        lambda c: c.end_assignment(assignment_id, outcome=command.outcome, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/interventions", status_code=201, tags=["case commands"])
async def record_intervention(
    case_id: UUID, command: cmd.RecordIntervention, actor: ActorDep, svc: ServicesDep
) -> Any:
    return await _run(
        svc,
        actor,
        case_id,
        "record_intervention",
        lambda c: c.record_intervention(command, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/guardianship-letters", status_code=201, tags=["case commands"])
async def sign_letter(
    case_id: UUID, command: cmd.SignGuardianshipLetter, actor: ActorDep, svc: ServicesDep
) -> Any:
    return await _run(
        svc,
        actor,
        case_id,
        "sign_guardianship_letter",
        lambda c: c.sign_guardianship_letter(command, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/follow-ups", status_code=201, tags=["case commands"])
async def record_follow_up(
    case_id: UUID, command: cmd.RecordFollowUp, actor: ActorDep, svc: ServicesDep
) -> Any:
    return await _run(
        svc,
        actor,
        case_id,
        "record_follow_up",
        lambda c: c.record_follow_up(command, by=actor.as_record()),
    )


@router.post("/v1/cases/{case_id}/escalations", status_code=201, tags=["case commands"])
async def escalate(case_id: UUID, command: cmd.Escalate, actor: ActorDep, svc: ServicesDep) -> Any:
    return await _run(
        svc, actor, case_id, "escalate", lambda c: c.escalate(command, by=actor.as_record())
    )


@router.post("/v1/cases/{case_id}/closure", tags=["case commands"])
async def close(case_id: UUID, command: cmd.CloseCase, actor: ActorDep, svc: ServicesDep) -> Any:
    return await _run(
        svc, actor, case_id, "close", lambda c: c.close(command, by=actor.as_record())
    )


@router.post("/v1/cases/{case_id}/reopening", tags=["case commands"])
async def reopen(case_id: UUID, command: cmd.ReopenCase, actor: ActorDep, svc: ServicesDep) -> Any:
    return await _run(
        svc, actor, case_id, "reopen", lambda c: c.reopen(command, by=actor.as_record())
    )
