"""The investigator's workbench (倒查工作台, 一案一倒查), as pages:

- `GET /investigations` (for investigators and county leads; any other role is refused, 403): the
  investigations naming the signed-in investigator, or opened by the signed-in county lead
  (`CaseTrail.investigations_of`), and the street's investigation orders naming the investigator
  (`CaseTrail.investigation_orders_of`): ids, kinds, days and counts
  only, never the minor's identity nor case content, so nothing is disclosed by the list;
- `GET /investigations/{id}`: the investigation (`CaseTrail.read_investigation`, the JSON API's
  call: for the investigators it names, with the minor's identity, recorded first as a
  disclosure of each linked file with channel `web`; for the county, without it; anyone else
  is refused as if it did not exist, the refusal recorded): its files, orders, findings,
  rectification items, reports issued, and the report's downloads;
- `GET /investigations/{id}/cases/{case_id}?purpose=investigation` (and
  `/investigations/cases/{case_id}` for a street's order without an investigation; `as_of`
  looks back from an instant, Beijing time, as the API's `as_of`): the case's
  timeline chart (the report's own `timeline_chart`, drawn as inline SVG with presentation
  attributes only, no `style=`), its timeline table, the knowledge matrix (who knew what, from
  when) and the deadlines met or missed, each through the page's reader
  (`page_reader(...).timeline`, `.knowledge`, `.deadlines`: granted under an investigation
  order only, each read recorded first with channel `web`; a refusal recorded and answered as a
  case read's);
- `GET /investigations/{id}/report?format=html|pdf`: the signed report, the JSON API's own route
  function (`gateway.http.routes.reports.investigation_report`): every file's read recorded
  first with its channel, `report`, and the report recorded as issued.

Proven by tests/web/test_workbench_pages.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from domain import errors
from domain.access import Actor, Channel
from domain.commands import EARLIEST_DATE, LATEST_DATE
from domain.deadlines import Periods
from domain.taxonomy import Purpose, Role
from gateway.http.dependencies import ServicesDep, request_context_of
from gateway.http.routes.reports import ReportFormat, investigation_report
from gateway.reports.document import timeline_row
from gateway.reports.html import (
    DETERMINATION_ZH,
    HOW_ZH,
    KIND_ZH,
    LANES,
    knowledge_matrix,
    timeline_chart,
    timeline_rows,
)
from gateway.web.dependencies import PageActorDep, page_reader
from gateway.web.templating import LOCAL_ZONE, render

router = APIRouter()

# How a knower learnt a fact (the report's words), and a page's read.
HOW_LABELS: Final = {**HOW_ZH, "web": "网页查阅", "api": "查阅"}
STATUS_CLASS: Final = {"missed": "missed", "late": "missed", "met": "met"}
# The purpose the reads are recorded with: an investigator declares only `investigation`.
WorkbenchPurpose: Final[Any] = Query(
    Purpose.INVESTIGATION, description="the purpose of use, recorded with the reads"
)


async def _investigation(
    request: Request, svc: ServicesDep, actor: Actor, investigation_id: UUID
) -> dict[str, Any]:
    """The investigation as the JSON API answers it, read with channel `web`."""
    context = request_context_of(request, svc)
    answer: dict[str, Any] = await run_in_threadpool(
        lambda: svc.application.read_investigation(
            investigation_id,
            actor,
            context.request_id,
            client=context.client,
            channel=Channel.WEB,
        )
    )
    return answer


# The roles whose menu holds the workbench (gateway.web.navigation).
WORKBENCH_ROLES: Final = frozenset({Role.INVESTIGATOR, Role.COUNTY_LEAD})


# The instant to look back from (the API's `as_of`), as a datetime-local field gives it: Beijing
# time without an offset (one with an offset is taken as given).
AsOfQuery: Final[Any] = Query(None, max_length=40, description="look back from this instant")


def _instant(text: str | None) -> datetime | Literal[False] | None:
    """The instant asked for; None for none; False when it is not one within the bounds."""
    if not text or not text.strip():
        return None
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    if not EARLIEST_DATE <= found.date() <= LATEST_DATE:
        return False
    return found if found.tzinfo is not None else found.replace(tzinfo=LOCAL_ZONE)


@router.get("/investigations")
async def investigations_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """The investigations and orders the signed-in person may work on (no case content)."""
    if actor.role not in WORKBENCH_ROLES:
        # Not in this role's menu, and refused if asked (gateway.web.navigation).
        raise HTTPException(403, "the workbench is the investigators' and the county lead's")
    found = await run_in_threadpool(svc.application.investigations_of, actor)
    orders = []
    if actor.role is Role.INVESTIGATOR:
        now = datetime.now(UTC)
        orders = [
            {
                "case_id": str(o.case_id),
                "expires_at": o.expires_at,
                "in_force": o.active_until(now) is not None,
            }
            for o in await run_in_threadpool(svc.application.investigation_orders_of, actor.user)
        ]
    rows = [
        {
            "id": str(i.id),
            "kind": KIND_ZH.get(i.kind, i.kind),
            "incident_on": i.incident_on,
            "opened_at": i.created_on.isoformat(),
            "cases": len(i.case_ids),
            "findings": len(i.findings),
            "reports": len(i.reports),
        }
        for i in found
    ]
    return render(
        request,
        "workbench.html",
        {
            "investigations": rows,
            "orders": orders,
            "may_open": actor.role is Role.INVESTIGATOR,
        },
        title="倒查工作台",
    )


@router.get("/investigations/cases/{case_id}")
async def ordered_case_page(
    request: Request,
    case_id: UUID,
    actor: PageActorDep,
    svc: ServicesDep,
    purpose: Purpose = WorkbenchPurpose,
    as_of: str | None = AsOfQuery,
) -> Response:
    """A case under a street's investigation order: its timeline, knowledge, deadlines."""
    return await _case_page(request, svc, actor, case_id, purpose, as_of, investigation=None)


@router.get("/investigations/{investigation_id}")
async def investigation_page(
    request: Request, investigation_id: UUID, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """One investigation: its files, orders, findings, rectifications, reports."""
    summary = await _investigation(request, svc, actor, investigation_id)
    named = actor.role is Role.INVESTIGATOR
    return render(
        request,
        "investigation.html",
        {
            "inv": summary,
            "kind": KIND_ZH.get(summary["kind"], summary["kind"]),
            "determinations": DETERMINATION_ZH,
            "may_open": named,
            "may_download": named,
        },
        title="倒查调查",
    )


@router.get("/investigations/{investigation_id}/cases/{case_id}")
async def investigation_case_page(
    request: Request,
    investigation_id: UUID,
    case_id: UUID,
    actor: PageActorDep,
    svc: ServicesDep,
    purpose: Purpose = WorkbenchPurpose,
    as_of: str | None = AsOfQuery,
) -> Response:
    """A file of the investigation: its timeline, knowledge matrix and deadlines."""
    try:
        found = await run_in_threadpool(svc.application.investigation, investigation_id)
    except errors.InvestigationNotFound:
        found = None
    if found is None or actor.role is not Role.INVESTIGATOR or not found.names(actor.user):
        # Refused as the JSON API refuses an investigation not visible to the reader, and
        # recorded; the county reads it without the minor, then the workbench reader decides.
        await _investigation(request, svc, actor, investigation_id)
    if found is None or str(case_id) not in found.case_ids:
        raise errors.CaseNotFound("no such file in this investigation is visible to you")
    return await _case_page(
        request,
        svc,
        actor,
        case_id,
        purpose,
        as_of,
        investigation=investigation_id,
        findings=found.findings,
    )


async def _case_page(
    request: Request,
    svc: ServicesDep,
    actor: Actor,
    case_id: UUID,
    purpose: Purpose,
    as_of_text: str | None,
    *,
    investigation: UUID | None,
    findings: list[dict[str, Any]] | None = None,
) -> Response:
    as_of = _instant(as_of_text)
    if as_of is False:
        # Nothing read, nothing recorded; the value typed is not repeated.
        return render(
            request,
            "error.html",
            {
                "status": 422,
                "heading": "回看时刻填写有误",
                "detail": f"请填写 {EARLIEST_DATE} 至 {LATEST_DATE} 之间的日期和时间（北京时间）。",
                "fields": ["回看时刻"],
            },
            status=422,
            title="填写有误",
        )
    reader = page_reader(request, svc, actor, purpose)
    due = timedelta(hours=svc.settings.consultation_deadline_hours)
    sign_for = Periods.from_env(svc.application.env.get).sign_for

    def read() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        # Each read decided and recorded (channel `web`) before its analysis is built.
        timeline = reader.timeline(case_id, as_of=as_of)
        knowledge = reader.knowledge(case_id, as_of=as_of)
        deadlines = reader.deadlines(
            case_id, now=datetime.now(UTC), consultation_due=due, sign_for_due=sign_for
        )
        return timeline, knowledge, deadlines

    timeline, knowledge, deadlines = await run_in_threadpool(read)
    entries = [timeline_row(entry) for entry in timeline["entries"]]
    return render(
        request,
        "investigation_case.html",
        {
            "case_id": str(case_id),
            "investigation": str(investigation) if investigation else "",
            "as_of": as_of.astimezone(LOCAL_ZONE).strftime("%Y-%m-%dT%H:%M") if as_of else "",
            "chart": timeline_chart(entries),
            "lanes": [(code, label) for code, label, _ in LANES],
            "rows": timeline_rows(entries),
            "entries": len(entries),
            "knowledge": knowledge,
            "matrix": knowledge_matrix(knowledge),
            "how": HOW_LABELS,
            "checks": deadlines["checks"],
            "milestones": deadlines["milestones"],
            "status_class": STATUS_CLASS,
            # The investigation's own findings (no case content: duties, codes, positions).
            "findings": findings or [],
            "determinations": DETERMINATION_ZH,
        },
        title="案件倒查",
    )


@router.get("/investigations/{investigation_id}/report")
async def report_download(
    request: Request,
    investigation_id: UUID,
    actor: PageActorDep,
    svc: ServicesDep,
    format: ReportFormat = ReportFormat.HTML,
) -> Response:
    """The signed report, as the JSON API serves it (its reads recorded with channel
    `report`, the report recorded as issued)."""
    reader = page_reader(request, svc, actor, Purpose.INVESTIGATION)
    answer: Response = await run_in_threadpool(
        investigation_report, request, investigation_id, reader, svc, format
    )
    return answer
