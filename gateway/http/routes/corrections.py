"""Corrections and transfers of a case file (动态更新, issue 17).

`POST /v1/cases/{id}/corrections`: the minor's details, guardians, village or description
corrected, with a reason; one `DetailsCorrected` event holds each changed field's value before
and after (the store encrypts it), and the case's answer shows that history field by field to
readers granted the field only (`domain.access.corrections_shown`). The ledger's masks and
blind indexes follow the corrected values: the earlier ID number no longer finds the file.
`POST /v1/cases/{id}/transfer`: the file moves to another street and/or village; the sending
street keeps sight for the grace period. `GET /v1/transfers`: the transfers out of and into the
reader's street (case ids and streets only). Who may: `domain.permissions` (correct_details,
transfer). Proven by tests/integration/test_corrections.py and test_transfers.py.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from domain import commands as cmd
from gateway.http.dependencies import ActorDep, ReaderDep, ServicesDep, readmodels_of
from gateway.logs import get_logger
from projections.ledger.view import transfers_of

log = get_logger("casetrail.api")

router = APIRouter()


@router.post("/v1/cases/{case_id}/corrections", tags=["case commands"])
def correct_details(
    case_id: UUID, command: cmd.CorrectDetails, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """动态更新: correct the minor's details (name, gender, date of birth, ID number, school,
    grade/class), the guardians (the whole list), the village or the description, with a
    reason. The street's coordinator, or the reporting unit for its own files. The earlier
    values stay in the file's history, shown only to readers granted each field."""
    svc.application.change_case(
        case_id,
        actor,
        "correct_details",
        lambda c: c.correct_details(command, by=actor.as_record()),
    )
    log.info("case_changed", case_id=str(case_id), action="correct_details")
    return {"id": str(case_id)}


@router.post("/v1/cases/{case_id}/transfer", tags=["case commands"])
def transfer(
    case_id: UUID, command: cmd.TransferCase, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """The minor moved: the file goes to another street (naming the village there) and/or
    another village. The sending street's coordinator only. The receiving street's
    coordinators see the file from now on, the sending street's for the grace period
    (`CASETRAIL_ASSIGNMENT_GRACE_HOURS`); the sending street's units' open assignments end
    (`transferred`). The receiving street's governance office is notified (ids only)."""
    # Only to a street some registered unit belongs to (else nobody there would see it).
    streets = {unit.street for unit in svc.application.units()}
    svc.application.change_case(
        case_id,
        actor,
        "transfer",
        lambda c: c.transfer(command, by=actor.as_record(), streets=streets),
    )
    log.info("case_changed", case_id=str(case_id), action="transfer")
    return {"id": str(case_id)}


@router.get("/v1/transfers", tags=["ledgers"])
def transfers(reader: ReaderDep, svc: ServicesDep) -> dict[str, Any]:
    """The transfers out of (`out`) and into (`in`) your street, newest first: case id,
    instant and both streets, nothing of the minor. Street roles (coordinator, supervisor)."""
    scope = reader.report_scope()
    readmodels = readmodels_of(svc)
    with readmodels.ledger.reading() as db:
        rows = transfers_of(db, scope.street)
    return {
        "street": scope.street,
        "transfers": [
            {
                "id": r["case_id"],
                "at": r["moved_at"],
                "from_street": r["from_street"],
                "to_street": r["to_street"],
                "direction": r["direction"],
                "direction_label": "转出" if r["direction"] == "out" else "转入",
            }
            for r in rows
        ],
    }
