"""Endpoints of investigations (一案一倒查): opening one, county orders, findings, rectifications.

The minor is named by ID number in the body of `POST /v1/investigations` only, never in a URL
or a log line. The route finds the minor's files through the read models' blind index (the
ledger's `id_index`, every street: an investigation is the county's) and hands their ids to the
application, which keeps only those whose file names that ID number and stores them with the
opening. Orders are the county's (`domain.orders.CountyOrder`): a street's coordinator can
neither see nor revoke them. Reading an investigation with the minor's identity is an audited
disclosure (`CaseTrail.read_investigation`). Every command is checked whole before anything is
stored; a broken rule answers problem+json naming the field. Proven over HTTP in
`tests/integration/test_investigations.py`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from domain.investigation_commands import (
    AddRectification,
    CompleteRectification,
    IssueCountyOrder,
    OpenInvestigation,
    RecordFinding,
    RevokeCountyOrder,
)
from gateway.http.dependencies import (
    ActorDep,
    RequestContextDep,
    Services,
    ServicesDep,
    readmodels_of,
)
from gateway.logs import get_logger

log = get_logger("casetrail.api")
router = APIRouter()


def files_of_minor(svc: Services, id_number: str) -> list[UUID]:
    """The ids of every case file the ledger holds for this ID number, in every street (the
    blind index: a keyed token of the number, never the number itself, is compared)."""
    readmodels = readmodels_of(svc)
    token = readmodels.blind_index.id_number(id_number)
    with readmodels.ledger.reading() as db:
        rows = db.execute(
            "SELECT c.case_id FROM {ledger_cases} c WHERE c.id_index = ? ORDER BY c.case_id",
            [token],
        )
    return [UUID(str(r["case_id"])) for r in rows]


@router.post("/v1/investigations", status_code=201, tags=["investigations"])
def open_investigation(
    command: OpenInvestigation, actor: ActorDep, svc: ServicesDep, response: Response
) -> dict[str, Any]:
    """Open an investigation of an incident (suicide, attempted suicide, harm) of one minor,
    given by ID number in this body: links every case file of that minor and issues a county
    order for each file and investigator. County leads and admins."""
    found = files_of_minor(svc, command.minor.id_number)
    investigation_id = svc.application.open_investigation(command, found, actor)
    opened = svc.application.investigation(investigation_id)
    log.info(
        "investigation_opened",
        investigation_id=str(investigation_id),
        cases=len(opened.case_ids),
        orders=len(opened.orders),
    )
    response.headers["Location"] = f"/v1/investigations/{investigation_id}"
    return {
        "id": str(investigation_id),
        "case_ids": list(opened.case_ids),
        "orders": [o["id"] for o in opened.orders.values()],
    }


@router.get("/v1/investigations/{investigation_id}", tags=["investigations"])
def read_investigation(
    investigation_id: UUID, actor: ActorDep, svc: ServicesDep, context: RequestContextDep
) -> dict[str, Any]:
    """The investigation: linked case ids, orders, findings, rectifications, reports issued.
    For the county (county leads, admins), without the minor's identity, and for the
    investigators it names, with it (recorded as a disclosure of each linked file first)."""
    return svc.application.read_investigation(
        investigation_id, actor, context.request_id, client=context.client
    )


@router.post(
    "/v1/investigations/{investigation_id}/orders", status_code=201, tags=["investigations"]
)
def issue_order(
    investigation_id: UUID, command: IssueCountyOrder, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """A county order for one investigator: one linked file (`case_id`), or every file of the
    minor (`minor: true`, linking the minor's files found since the opening)."""
    found: list[UUID] = []
    if command.minor:
        minor = svc.application.investigation(investigation_id).minor["id_number"]
        found = files_of_minor(svc, minor)
    orders = svc.application.issue_county_order(investigation_id, command, found, actor)
    log.info("county_order_issued", investigation_id=str(investigation_id), orders=len(orders))
    return {"id": str(investigation_id), "orders": [str(o) for o in orders]}


@router.post(
    "/v1/investigations/{investigation_id}/orders/{order_id}/revocation",
    tags=["investigations"],
)
def revoke_order(
    investigation_id: UUID,
    order_id: UUID,
    command: RevokeCountyOrder,
    actor: ActorDep,
    svc: ServicesDep,
) -> dict[str, str]:
    svc.application.revoke_county_order(investigation_id, order_id, command, actor)
    log.info("county_order_revoked", investigation_id=str(investigation_id))
    return {"id": str(order_id)}


@router.post(
    "/v1/investigations/{investigation_id}/findings", status_code=201, tags=["investigations"]
)
def record_finding(
    investigation_id: UUID, command: RecordFinding, actor: ActorDep, svc: ServicesDep
) -> dict[str, str]:
    """A finding on a duty: the responsible unit and person, `fulfilled`, `late` or
    `not_fulfilled`, and the store positions of the events it rests on (each must exist)."""
    svc.application.record_finding(investigation_id, command, actor)
    log.info("finding_recorded", investigation_id=str(investigation_id))
    return {"id": str(investigation_id)}


@router.post(
    "/v1/investigations/{investigation_id}/rectifications",
    status_code=201,
    tags=["investigations"],
)
def add_rectification(
    investigation_id: UUID, command: AddRectification, actor: ActorDep, svc: ServicesDep
) -> dict[str, str]:
    """A rectification item (整改): what, by whom, by when."""
    item_id = svc.application.add_rectification(investigation_id, command, actor)
    log.info("rectification_added", investigation_id=str(investigation_id))
    return {"id": str(investigation_id), "item_id": str(item_id)}


@router.post(
    "/v1/investigations/{investigation_id}/rectifications/{item_id}/completion",
    tags=["investigations"],
)
def complete_rectification(
    investigation_id: UUID,
    item_id: UUID,
    command: CompleteRectification,
    actor: ActorDep,
    svc: ServicesDep,
) -> dict[str, str]:
    svc.application.complete_rectification(investigation_id, item_id, command, actor)
    log.info("rectification_completed", investigation_id=str(investigation_id))
    return {"id": str(investigation_id), "item_id": str(item_id)}
