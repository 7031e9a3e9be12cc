"""Endpoints of the roster of minors (底数), screening campaigns and visits (走访排查), and their
coverage (issue 17; docs/screening.md).

- `POST /v1/roster/imports`: a village's roster file (multipart: `file`, `village`,
  `store_valid`); the report of every rejected row (row number, column, reason, never the
  value); nothing stored from a file with errors unless `store_valid=true` (then 200), else 422.
- `POST /v1/roster/entries/{entry_id}/guardianship-letters`: a letter (监护责任书) signed for a
  minor on the roster.
- `POST /v1/screening/campaigns`; `POST /v1/screening/campaigns/{id}/visits`: a visit, whose
  clue opens a case file or links the minor's open one (named only if the visitor may see it).
- `GET /v1/screening/campaigns/{id}/coverage`: counts only; `GET .../not-visited`: the names
  not yet visited, a disclosure recorded first (one `CaseAccessed` per minor listed, its
  roster entry as the subject, channel `worklist`), a refusal recorded too.
- `GET /v1/screening/coverage?quarter=2026Q3`: the street's visit and letter coverage.

Who: the roster (names, imports, visits, letters) is the street's coordinator's and the
village's own reporters' (`domain.roster.roster_rule`); counts also the street's supervisor's;
never a unit member's. Proven by `tests/integration/test_screening.py` and
`tests/integration/test_screening_import.py`.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Annotated, Any, NoReturn
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from domain import identity
from domain.access import ROLE_PURPOSES, Actor, Channel
from domain.application import AccessRefused, CaseTrail
from domain.quarters import Quarter
from domain.roster import (
    RosterEntryNotFound,
    RosterNotPermitted,
    may_see_counts,
    roster_entry_id,
    roster_rule,
)
from domain.screening import OpenCampaign, RecordVisit, SignRosterLetter
from domain.taxonomy import Purpose, Role
from gateway.http.dependencies import (
    ActorDep,
    RequestContextDep,
    ServicesDep,
    purpose_of_use,
    readmodels_of,
)
from gateway.http.limits import MAX_BODY_BYTES
from gateway.http.problems import MEDIA_TYPE, problem
from gateway.imports.roster import ImportFileError, import_roster
from gateway.logs import get_logger
from projections.screening import coverage

log = get_logger("casetrail.api")
router = APIRouter(tags=["screening"])

VillageCode = Annotated[
    str,
    Form(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="code of the village/community (村社区) whose roster the file is",
    ),
]
NOT_VISITED_RULE_REFUSED = "roster_not_for_reader"


@router.post("/v1/roster/imports")
def import_roster_file(
    request: Request,
    file: Annotated[
        UploadFile,
        File(
            description=".xlsx or CSV, columns in docs/screening.md",
            # Bounded by the request body's limit (gateway.http.limits), documented here.
            json_schema_extra={"maxLength": MAX_BODY_BYTES},
        ),
    ],
    village: VillageCode,
    actor: ActorDep,
    svc: ServicesDep,
    store_valid: Annotated[bool, Form()] = False,
) -> Any:
    """Import a village's roster of minors (底数). Every row is checked; the answer lists each
    rejected row (row number, column, reason) and what was stored. A file with errors stores
    nothing (422) unless `store_valid=true`; importing the same rows again stores nothing."""
    readmodels = readmodels_of(svc)
    data = file.file.read()
    try:
        report = import_roster(
            svc.application,
            readmodels.blind_index,
            data,
            village=village,
            actor=actor,
            store_valid=store_valid,
            channel="api",
        )
    except ImportFileError as exc:
        return problem(
            request,
            status=422,
            code="roster-file-invalid",
            title="The roster file cannot be read",
            detail=str(exc),
            errors=[{"field": "file", "message": str(exc)}],
        )
    log.info(
        "roster_imported",
        rows=report["rows"],
        rejected_rows=report["rejected_rows"],
        stored=report["stored"],
    )
    if report["stored"]:
        return report
    answer = problem(
        request,
        status=422,
        code="roster-rows-rejected",
        title="Rows of the roster file are not valid; nothing was stored",
        detail=report["message"],
        errors=[
            {"field": f"rows.{p['row']}.{p['column']}", "message": p["reason"]}
            for p in report["rejected"]
        ],
    )
    body = json.loads(bytes(answer.body))
    body["report"] = report
    return JSONResponse(body, status_code=422, media_type=MEDIA_TYPE)


@router.post("/v1/roster/entries/{entry_id}/guardianship-letters", status_code=201)
def sign_roster_letter(
    entry_id: UUID, command: SignRosterLetter, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """监护责任书 signed for a minor on the roster (left-behind or unsupervised)."""
    svc.application.sign_roster_letter(entry_id, command, actor)
    return {"entry_id": str(entry_id), "letter": "recorded"}


# The fields a roster entry's read discloses (recorded with its access event).
ENTRY_FIELDS = frozenset(
    {
        "roster.name",
        "roster.gender",
        "roster.date_of_birth",
        "roster.id_number",
        "roster.school",
        "roster.grade_class",
        "roster.village",
        "roster.grid",
        "roster.guardian",
        "roster.markers",
        "roster.letters",
        "roster.visits",
    }
)


@router.get("/v1/roster/entries/{entry_id}")
def read_roster_entry(
    entry_id: UUID,
    actor: ActorDep,
    svc: ServicesDep,
    context: RequestContextDep,
    purpose: Annotated[Purpose, Depends(purpose_of_use)],
) -> dict[str, Any]:
    """A minor on the roster: details, markers, letters, and every visit (who, when, how, what
    was found): "was this child's household visited, by whom, when?". For the street's
    coordinator and the village's reporters; the read is recorded first (its roster entry as
    the subject), a refusal too, answered as a missing entry."""
    application: CaseTrail = svc.application
    try:
        entry = application.roster_entry(entry_id)
    except RosterEntryNotFound:
        entry = None
    rule = None
    if entry is not None and purpose in ROLE_PURPOSES[actor.role]:
        rule = roster_rule(actor, entry.street, entry.village)
    if entry is None or rule is None:
        application.record_refusal(
            NOT_VISITED_RULE_REFUSED,
            actor=actor,
            purpose=purpose,
            request_id=context.request_id,
            channel=Channel.API,
            client=context.client,
        )
    application.record_disclosures(
        [(entry.id, ENTRY_FIELDS, rule, entry.version)],
        actor=actor,
        purpose=purpose,
        request_id=context.request_id,
        channel=Channel.API,
        client=context.client,
    )
    coordinator = actor.role is Role.COORDINATOR
    return {
        "id": str(entry.id),
        "street": entry.street,
        "minor": dict(entry.minor),
        "letters": entry.letters,
        "visits": [
            {
                **{k: v for k, v in visit.items() if k != "case_id"},
                # The file's id to the coordinator (every file of the street is theirs).
                **({"case_id": visit["case_id"]} if coordinator else {}),
            }
            for visit in entry.visits
        ],
    }


@router.post("/v1/screening/campaigns", status_code=201)
def open_campaign(
    command: OpenCampaign, actor: ActorDep, svc: ServicesDep, response: Response
) -> dict[str, Any]:
    """Open a screening campaign (走访排查) of the street: villages (all when empty), period."""
    campaign_id = svc.application.open_campaign(command, actor)
    response.headers["Location"] = f"/v1/screening/campaigns/{campaign_id}/coverage"
    return {"id": str(campaign_id)}


def _entry_of(command: RecordVisit, actor: Actor, svc: Any) -> tuple[UUID, str | None]:
    """The roster entry a visit names (by id, or by the minor's ID number), and the blind
    index of the ID number when given."""
    if command.entry_id is not None:
        return command.entry_id, None
    number = command.id_number or ""
    try:
        identity.parse_id_number(number)
    except identity.InvalidIdNumber:
        raise RosterEntryNotFound(
            "id_number is not a valid resident ID number (18 characters, check character per "
            "ISO 7064 MOD 11-2)",
            field="id_number",
        ) from None
    index = readmodels_of(svc).blind_index.id_number(number)
    return roster_entry_id(actor.street, index), index


@router.post("/v1/screening/campaigns/{campaign_id}/visits", status_code=201)
def record_visit(
    campaign_id: UUID, command: RecordVisit, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """A visit (走访) of a minor on the roster: `no_issue`, or a clue, which opens a case file
    or, when the minor has an open file already, links it (named only if you may see it)."""
    application: CaseTrail = svc.application
    entry_id, index = _entry_of(command, actor, svc)
    open_files: list[UUID] = []
    if command.clue is not None:
        if index is None:
            index = application.roster_entry(entry_id).id_index
        readmodels = readmodels_of(svc)
        # The ledger's position first: a file reported after it is found in the store itself.
        followed = readmodels.follower("ledger").position()
        with readmodels.screening.reading() as db:
            open_files = coverage.open_files(db, index)
        wanted = index
        open_files += application.clues_reported_since(
            followed,
            lambda number: readmodels.blind_index.id_number(number) == wanted,
            actor.street,
        )
    outcome = application.record_visit(campaign_id, entry_id, command, actor, open_files=open_files)
    answer: dict[str, Any] = {
        "entry_id": str(outcome.entry_id),
        "visit": "recorded",
        "household": [str(other) for other in outcome.household],
    }
    if outcome.opened:
        answer["case"] = {"outcome": "opened", "id": str(outcome.case_id), "message": "已立档"}
    elif outcome.linked:
        answer["case"] = {
            "outcome": "linked",
            "message": "该未成年人已有在办档案：线索已关联到已有档案，未重复立档"
            + ("" if outcome.case_id is not None else "（档案不在你的查阅范围内）"),
        }
        if outcome.case_id is not None:
            answer["case"]["id"] = str(outcome.case_id)
    log.info("visit_recorded", result=str(command.result), linked=outcome.linked)
    return answer


def _campaign(svc: Any, campaign_id: UUID, actor: Actor) -> coverage.CampaignInfo:
    # The campaign's existence and street come from the store (the read model may lag).
    found = svc.application.campaign(campaign_id, actor)
    return coverage.CampaignInfo(
        campaign_id=str(found.id),
        street=found.street,
        name=found.name,
        villages=tuple(found.villages),
        starts_on=found.starts_on,
        ends_on=found.ends_on,
    )


def _refuse_counts(svc: Any, actor: Actor, read: str, message: str) -> NoReturn:
    """Store the refused request for counts (no purpose is declared for counts, so it is a
    `CommandRefused` naming the read, issue 15) before answering 403."""
    refused = RosterNotPermitted(message)
    svc.application.record_command_refusal(actor, read, None, refused.code)
    raise refused


@router.get("/v1/screening/campaigns/{campaign_id}/coverage")
def campaign_coverage(campaign_id: UUID, actor: ActorDep, svc: ServicesDep) -> dict[str, Any]:
    """Coverage of a campaign per village and grid: minors on the roster, visited, key students
    (重点学生) visited, not yet visited, letters. Counts only; a reporter sees their village."""
    campaign = _campaign(svc, campaign_id, actor)
    if may_see_counts(actor, campaign.street):
        scoped = campaign
    elif may_see_counts(actor, campaign.street, actor.unit) and (
        not campaign.villages or actor.unit in campaign.villages
    ):
        scoped = coverage.CampaignInfo(**{**campaign.__dict__, "villages": (actor.unit,)})
    else:
        _refuse_counts(
            svc,
            actor,
            "campaign_coverage",
            "coverage figures are for the street's coordinator and supervisor, and for a "
            "village's reporters (their own village)",
        )
    with readmodels_of(svc).screening.reading() as db:
        return coverage.campaign_coverage(db, scoped)


@router.get("/v1/screening/campaigns/{campaign_id}/not-visited")
def not_visited(
    campaign_id: UUID,
    actor: ActorDep,
    svc: ServicesDep,
    context: RequestContextDep,
    purpose: Annotated[Purpose, Depends(purpose_of_use)],
    village: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="one village only"),
    ] = None,
) -> dict[str, Any]:
    """The minors of the campaign not yet visited, with their names (the village's reporters:
    their village; the coordinator: every village, or `village`). A disclosure: one access
    event per minor listed is stored before the answer; a refusal is stored too."""
    application: CaseTrail = svc.application
    campaign = _campaign(svc, campaign_id, actor)
    screening_view = readmodels_of(svc).screening
    if village is not None:
        villages = [village]
    elif campaign.villages:
        villages = list(campaign.villages)
    else:
        with screening_view.reading() as db:
            villages = coverage.roster_villages(db, campaign.street)
    rules = {v: roster_rule(actor, campaign.street, v) for v in villages}
    if actor.role is Role.REPORTER and village is None:
        # A reporter's list is their own village's.
        rules = {v: r for v, r in rules.items() if v == actor.unit}
    purpose_allowed = purpose in ROLE_PURPOSES[actor.role]
    if not purpose_allowed or not rules or None in rules.values():
        rule = (
            NOT_VISITED_RULE_REFUSED
            if purpose_allowed
            else f"purpose_not_allowed_for_role:{actor.role}:{purpose}"
        )
        with suppress(AccessRefused):  # raised once the refusal is stored
            application.record_refusal(
                rule,
                actor=actor,
                purpose=purpose,
                request_id=context.request_id,
                channel=Channel.WORKLIST,
                client=context.client,
            )
        raise RosterNotPermitted(
            "the names on a village's roster are for the street's coordinator and the "
            "village's own reporters, under a purpose their role may declare; the refusal "
            "was recorded"
        )
    with screening_view.reading() as db:
        found = coverage.not_visited(db, campaign, list(rules))
    application.record_disclosures(
        [(n.entry_id, coverage.NOT_VISITED_FIELDS, rules[n.village] or "", None) for n in found],
        actor=actor,
        purpose=purpose,
        request_id=context.request_id,
        channel=Channel.WORKLIST,
        client=context.client,
    )
    return {
        "campaign_id": campaign.campaign_id,
        "villages": sorted(rules),
        "count": len(found),
        "minors": [n.as_dict() for n in found],
    }


@router.get("/v1/screening/coverage")
def street_coverage(
    actor: ActorDep,
    svc: ServicesDep,
    quarter: Annotated[
        str,
        Query(max_length=6, pattern=r"^20\d{2}Q[1-4]$", description="the quarter, e.g. 2026Q3"),
    ],
) -> dict[str, Any]:
    """The street's visit coverage (走访) and guardianship-letter coverage (监护责任书) for a
    quarter, as the quarterly report shows them. Counts only: coordinators and supervisors."""
    if not (may_see_counts(actor, actor.street) and actor.role is not Role.REPORTER):
        _refuse_counts(
            svc,
            actor,
            "street_coverage",
            "a street's coverage figures are for its coordinator and supervisor",
        )
    year, number = quarter.split("Q")
    period = Quarter(int(year), int(number))
    with readmodels_of(svc).screening.reading() as db:
        return {
            "quarter": period.code,
            "label": period.label,
            "visits": coverage.visit_coverage(db, actor.street, period),
            "letters": coverage.letter_coverage(db, actor.street, period),
        }
