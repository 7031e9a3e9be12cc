"""A guardian's requests (issue 19; 个人信息保护法 第四十五条、第四十六条、第四十七条): record a
request to see, correct or delete a minor's data, and its handling and outcome.

- `POST /v1/guardian-requests`: record a request (kind, case id, the guardian's relation and
  how their identity was checked); due `CASETRAIL_GUARDIAN_REQUEST_DAYS` days later.
- `GET /v1/guardian-requests[?status=open|closed]`, `GET /v1/guardian-requests/{id}`: the
  requests (coordinators: their street's; compliance auditors: all), each with its due day,
  `overdue`, and its outcome. Codes, ids and dates only: nothing of the file's content.
- `POST /v1/guardian-requests/{id}/answer`: handle it as its kind says.
  `access`: the guardian's copy, read through the one audited reader with purpose
  `guardian_request` (the fields `domain.access.GUARDIAN_COPY_FIELDS`, granted only while the
  request is open) together with the file's accounting of disclosures (the compliance
  accounting's records, `gateway.compliance.source`, county-order reads left out as for every
  street role); recorded as access events before the answer, then the outcome. `correction`:
  the body's `correction` goes through the file's own correction (docs/corrections.md; its
  checks answer 422 naming `correction.<field>`), the outcome naming the case version made.
  `deletion`: `CaseTrail.erase` (hold-checked): erased, or refused with the holds' reasons.
- `POST /v1/guardian-requests/{id}/refuse`: a ground and a reason.

Who: `domain.permissions` (the case's street's coordinator; a compliance auditor may record,
refuse and erase). Refused commands are recorded. Proven by
tests/retention/test_guardian_requests.py.
"""

from __future__ import annotations

from typing import Any, Final, Literal
from uuid import UUID

from fastapi import APIRouter, Response, status

from domain import commands as cmd
from domain.compliance.records import RecordKind
from domain.guardian_requests import (
    AnswerIncomplete,
    GuardianRequest,
    GuardianRequests,
    ReceiveGuardianRequest,
    RefuseGuardianRequest,
    RequestKind,
)
from domain.investigations import hidden_from_street
from gateway.compliance.sheets import record_json
from gateway.compliance.source import find_records, is_disclosure
from gateway.http.dependencies import (
    ActorDep,
    GuardianRequestReaderDep,
    ServicesDep,
    readmodels_of,
)
from gateway.logs import get_logger
from projections.compliance.access_log import AccessQuery

log = get_logger("casetrail.api")
router = APIRouter()

TAGS: list[str | Any] = ["guardian requests"]


class AnswerRequest(cmd.Command):
    """What answering needs beyond the request itself: for a correction, the correction (as
    `POST /v1/cases/{id}/corrections` takes it); nothing for access and deletion."""

    correction: cmd.CorrectDetails | None = None


def _requests(svc: ServicesDep) -> GuardianRequests:
    return GuardianRequests(svc.application)


def _shown(request: GuardianRequest) -> dict[str, Any]:
    return request.as_dict()


@router.post("/v1/guardian-requests", tags=TAGS, status_code=status.HTTP_201_CREATED)
def receive(body: ReceiveGuardianRequest, actor: ActorDep, svc: ServicesDep) -> dict[str, Any]:
    """Record a guardian's request to see (access), correct (correction) or delete (deletion)
    the data a case file holds on their child: the guardian's relation and the documents their
    identity was checked against, never their name or number. The case's street's
    coordinator, or a compliance auditor."""
    request = _requests(svc).receive(body, actor)
    log.info("guardian_request_received", guardian_request=str(request.id), kind=request.kind)
    return _shown(request)


@router.get("/v1/guardian-requests", tags=TAGS)
def list_requests(
    actor: ActorDep, svc: ServicesDep, status: Literal["open", "closed"] | None = None
) -> dict[str, Any]:
    """The guardians' requests you may see, oldest first: a coordinator's street's, every one
    for a compliance auditor; `status` filters open or closed ones; `overdue` marks open
    requests past their due day."""
    found = [_shown(r) for r in _requests(svc).all(actor)]
    if status is not None:
        found = [r for r in found if r["status"] == status]
    return {"count": len(found), "requests": found}


@router.get("/v1/guardian-requests/{request_id}", tags=TAGS)
def one(request_id: UUID, actor: ActorDep, svc: ServicesDep) -> dict[str, Any]:
    """One request, with its outcome."""
    return _shown(_requests(svc).one(actor, request_id))


@router.post("/v1/guardian-requests/{request_id}/refuse", tags=TAGS)
def refuse(
    request_id: UUID, body: RefuseGuardianRequest, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Refuse the request, on a ground (`identity_not_verified`, `not_a_guardian`,
    `exception_by_law`, `held`) with a reason."""
    request = _requests(svc).refuse(request_id, body, actor)
    log.info("guardian_request_refused", guardian_request=str(request.id))
    return _shown(request)


@router.post("/v1/guardian-requests/{request_id}/answer", tags=TAGS, response_model=None)
def answer(
    request_id: UUID,
    body: AnswerRequest,
    actor: ActorDep,
    reader: GuardianRequestReaderDep,
    svc: ServicesDep,
) -> dict[str, Any] | Response:
    """Handle the request as its kind says: `access`, the guardian's copy with the file's
    accounting of disclosures (recorded first); `correction`, the body's `correction` made on
    the file; `deletion`, the file erased unless held (then refused, naming the holds)."""
    requests = _requests(svc)
    request = requests.one(actor, request_id)
    if request.kind == RequestKind.CORRECTION:
        if body.correction is None:
            raise AnswerIncomplete(
                "a correction request is answered with the correction to make: give "
                "`correction` as POST /v1/cases/{id}/corrections takes it",
                field="correction",
            )
        request = requests.answer_correction(request_id, body.correction, actor)
    elif request.kind == RequestKind.DELETION:
        request = requests.answer_deletion(request_id, actor)
    else:
        return _access_copy(request_id, actor, reader, svc)
    log.info(
        "guardian_request_answered",
        guardian_request=str(request.id),
        kind=request.kind,
        outcome=(request.outcome or {}).get("outcome"),
    )
    return _shown(request)


# What a guardian's accounting says of each disclosure: when, which role of which unit, for what
# purpose, which fields, by which channel; not the person's user id, the client's address or
# the request id (the compliance accounting's, for auditors).
GUARDIAN_ENTRY: Final = (
    "at",
    "role",
    "role_label",
    "unit",
    "street",
    "purpose",
    "purpose_label",
    "fields",
    "channel",
    "channel_label",
    "break_glass",
)


def guardian_entry(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in GUARDIAN_ENTRY}


def _access_copy(
    request_id: UUID, actor: ActorDep, reader: GuardianRequestReaderDep, svc: ServicesDep
) -> dict[str, Any]:
    requests = _requests(svc)
    request = requests.may_answer_access(actor, request_id)
    copy, fields = reader.guardian_copy(request.case_id)
    records = find_records(
        readmodels_of(svc),
        svc.application,
        AccessQuery(case_ids=(request.case_id,), kinds=(RecordKind.READ,)),
    )
    accounting = [
        guardian_entry(record_json(r))
        for r in records
        if is_disclosure(r) and not hidden_from_street(r.rule, actor.role)
    ]
    request = requests.answer_access(
        request_id,
        actor,
        fields=sorted(fields),
        disclosures=len(accounting),
        read_request_id=reader.request_id,
    )
    log.info(
        "guardian_request_answered",
        guardian_request=str(request.id),
        kind=request.kind,
        disclosures=len(accounting),
    )
    return {
        "request": _shown(request),
        "copy": copy,
        "accounting": {"count": len(accounting), "disclosures": accounting},
    }
