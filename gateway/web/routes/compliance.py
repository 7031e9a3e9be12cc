"""The compliance auditor's pages (issue 18; the rules and reports of issue 15):

- `GET /compliance`: the rules' findings (rule, status, when, whose access, which unit),
  filtered by query parameters that are codes and dates only (rule, status, unit, user id,
  period), and their counts per rule and unit by status;
- `GET /compliance/findings/{id}` with its forms: `POST .../review` (justified / violation,
  with a reason; once), `POST .../follow-up` (owner, due date) and
  `POST .../follow-up/completion` (date, note), the application's own commands
  (`CaseTrail.review_finding`, ...), as `gateway.http.routes.compliance` calls them;
- `GET /compliance/break-glass` and `POST /compliance/break-glass/{access_id}/review`:
  break-glass accesses awaiting review, and their review (`CaseTrail.review_break_glass`);
- `GET /compliance/disclosures` + `POST /compliance/disclosures`: the accounting of
  disclosures for one minor, the resident ID number POSTed (never in a URL), answered as a
  table, or as the API's .xlsx / CSV file;
- `GET /compliance/accesses`: the access report (reads granted and refused, refused commands)
  filtered by codes, ids and dates in the query (user id, unit, street, role, channel, kind,
  case id, period), a page at a time, and its .xlsx, CSV or FHIR AuditEvent download;
- `GET /compliance/annual?year=Y`: the annual audit report's figures for a year chosen in a
  form, and `GET /compliance/annual/download?year=Y&format=html|pdf|json` its signed file.

Who may read, and what is recorded, is exactly the JSON API's: the findings lists are
recorded before the page is rendered as one access event naming no case (fields
`compliance_findings`), here with channel `web`; anyone but a compliance auditor is refused,
the refusal stored (`compliance_findings_not_for_role:<role>`) and answered 403. The
accounting of disclosures, the access report and the annual report are the API's own functions
(`gateway.http.routes.disclosures`) called with the page's reader (`page_reader`): the access
logs they show are recorded first, channel `compliance` (a download keeps it). No page shows
case content: ids, codes, instants and counts. Proven by tests/web/test_compliance_pages.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from datetime import date, datetime, time
from typing import Annotated, Any, Final
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from domain import errors
from domain.access import NO_CASE, Actor, Channel
from domain.application import AccessRefused
from domain.commands import Code, ReviewBreakGlass
from domain.compliance.commands import CompleteFollowUp, OpenFollowUp, ReviewFinding
from domain.compliance.config import RULE_IDS
from domain.compliance.findings import (
    FINDING_STATUS_LABELS,
    FindingFilter,
    FindingStatus,
    FindingSummary,
)
from domain.compliance.rules import RULES
from domain.errors import DomainError
from domain.investigation_commands import MAX_POSITION
from domain.taxonomy import Purpose, Role
from gateway.compliance.sheets import FIELD_LABELS
from gateway.http.dependencies import Services
from gateway.http.reader import AuditedReader
from gateway.http.routes.compliance import FINDINGS_FIELD, FINDINGS_NOT_FOR_ROLE, counts_of
from gateway.http.routes.disclosures import (
    AccessFilters,
    AnnualFormat,
    DisclosureRequest,
    KindFilter,
    accesses,
    annual_report,
    disclosures,
    fhir_audit_events,
)
from gateway.logs import get_logger
from gateway.web.dependencies import PageActorDep, ServicesDep, page_reader
from gateway.web.forms import FieldError, first, form_errors, read_form, see_other, validate
from gateway.web.labels import ROLE_LABELS
from gateway.web.templating import LOCAL_ZONE, render
from projections.investigation.labels import CHANNEL_LABELS
from projections.ledger.exports import ExportFormat

log = get_logger("casetrail.web")
router = APIRouter()

# Every compliance page reads for one purpose: the only one an auditor may declare.
PURPOSE: Final = Purpose.COMPLIANCE_REVIEW

RULE_LABELS: Final = {rule: RULES[rule].zh for rule in RULE_IDS}
OUTCOME_LABELS: Final = {"justified": "有正当理由", "violation": "违规"}
BREAK_GLASS_OUTCOMES: Final = {"justified": "理由成立", "unjustified": "理由不成立"}

# The keys of a finding's `detail` (domain.compliance.rules), said in Chinese; others as they are.
DETAIL_LABELS: Final = {
    "refusals": "被拒绝次数",
    "threshold": "阈值",
    "window_minutes": "时间窗（分钟）",
    "window_hours": "时间窗（小时）",
    "hours": "复核时限（小时）",
    "files": "档案数",
    "reads": "查阅次数",
    "local_time": "当地时间",
    "weekday": "星期（1 为周一）",
    "channel": "渠道",
    "purpose": "声明的使用目的",
    "rule": "授权依据",
}

_FILTER_LABELS: Final = {
    "rule": "规则",
    "status": "状态",
    "unit": "单位代码",
    "person": "人员（用户编号）",
    "since": "起始日期",
    "until": "截止日期",
}
_REVIEW_LABELS: Final = {"outcome": "复核结论", "reason": "复核理由"}
_FOLLOW_UP_LABELS: Final = {"owner": "整改责任人或单位（代码）", "due_on": "整改期限"}
_COMPLETION_LABELS: Final = {"completed_on": "完成日期", "note": "完成情况"}
_BREAK_GLASS_LABELS: Final = {"outcome": "复核结论", "note": "复核意见"}
_DISCLOSURE_LABELS: Final = {"id_number": "未成年人身份证号码", "format": "查看方式"}
_ANNUAL_LABELS: Final = {"year": "年度", "format": "文件格式"}

# The Chinese words for the application's refusals a form may meet (its summary says them).
_REFUSALS: Final = {
    "finding_already_reviewed": "该发现已复核，复核结论不可更改（如需整改请登记整改事项）。",
    "finding_superseded": "该发现已被重新评估取代，请复核重新评估产生的发现。",
    "follow_up_not_allowed": "仅对复核为“违规”的发现登记整改事项，请先复核。",
    "follow_up_already_opened": "该发现已登记整改事项。",
    "follow_up_not_open": "该发现没有未完成的整改事项。",
    "already_reviewed": "该紧急查阅已复核。",
    "unknown_access_record": "没有这条紧急查阅记录。",
    "not_permitted": "您的角色不能进行此操作。",
}


def _refusal(refused: DomainError, label: str) -> list[FieldError]:
    """An application refusal said in the form's summary (never a submitted value)."""
    message = _REFUSALS.get(refused.code, "操作未能完成，与当前状态冲突。请刷新页面后重试。")
    return [FieldError(field=refused.field or "form", label=label, message=message)]


def _values(form: dict[str, list[str]], names: tuple[str, ...]) -> dict[str, str]:
    """The named fields of a posted form that were filled in (blank ones left out, so a
    missing field is said as missing)."""
    found: dict[str, str] = {}
    for name in names:
        value = first(form, name)
        if value is not None:
            found[name] = value
    return found


# --- the findings lists: recorded as the JSON API records them, channel `web` ---------------------


def _findings_scope(reader: AuditedReader) -> None:
    """Anyone but a compliance auditor declaring compliance_review: the refusal stored
    (channel `web`), then 403."""
    actor = reader.actor
    if actor.role is not Role.COMPLIANCE_AUDITOR or reader.purpose is not PURPOSE:
        with suppress(AccessRefused):
            reader.application.record_refusal(
                f"{FINDINGS_NOT_FOR_ROLE}:{actor.role}",
                actor=actor,
                purpose=reader.purpose,
                request_id=reader.request_id,
                channel=Channel.WEB,
                client=reader.client,
            )
        raise errors.NotPermitted("findings are for compliance auditors; the refusal was recorded")


def _recorded_findings_read(reader: AuditedReader) -> None:
    """Record the findings read (or its refusal, then 403) before anything is rendered: the
    JSON route's record (`gateway.http.routes.compliance._recorded_read`), channel `web`."""
    _findings_scope(reader)
    actor = reader.actor
    reader.application.record_disclosures(
        [(NO_CASE, frozenset({FINDINGS_FIELD}), str(PURPOSE), None)],
        actor=actor,
        purpose=reader.purpose,
        request_id=reader.request_id,
        channel=Channel.WEB,
        client=reader.client,
    )


class FindingsQuery(BaseModel):
    """The findings list's filters: codes and dates only, never a personal value."""

    model_config = ConfigDict(extra="ignore")

    rule: Annotated[str | None, Field(pattern="^(" + "|".join(RULE_IDS) + ")$")] = None
    status: FindingStatus | None = None
    unit: Code | None = None
    person: Code | None = None
    since: date | None = None
    until: date | None = None


def _day_start(day: date | None) -> datetime | None:
    """The start of a day as Beijing counts it (the pages' dates are local)."""
    return datetime.combine(day, time.min, tzinfo=LOCAL_ZONE) if day is not None else None


def _next_day_start(day: date | None) -> datetime | None:
    return _day_start(date.fromordinal(day.toordinal() + 1)) if day is not None else None


def _row(found: FindingSummary) -> dict[str, Any]:
    return {
        "id": str(found.id),
        "rule": found.rule,
        "rule_label": RULE_LABELS.get(found.rule, found.rule),
        "status": str(found.status),
        "status_label": FINDING_STATUS_LABELS[found.status],
        "person": found.person,
        "role_label": _role_label(found.role),
        "unit": found.unit,
        "street": found.street,
        "window_start": found.window_start,
        "window_end": found.window_end,
        "raised_at": found.raised_at,
        "files": len(found.case_ids),
        "records": len(found.evidence),
    }


def _role_label(role: str) -> str:
    try:
        return ROLE_LABELS[Role(role)]
    except ValueError:
        return role


def _filter_choices() -> dict[str, Any]:
    return {
        "rules": list(RULE_LABELS.items()),
        "statuses": [(str(s), label) for s, label in FINDING_STATUS_LABELS.items()],
    }


@router.get("/compliance")
async def findings_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    reader = page_reader(request, svc, actor, PURPOSE)
    given = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    where = validate(FindingsQuery, given, _FILTER_LABELS)
    empty: dict[str, Any] = {
        **_filter_choices(),
        "filters": {},
        "rows": [],
        "counts": [],
        "by_status": [],
        "searched": False,
    }
    if isinstance(where, list):
        # Nothing is listed: only the role is checked (a refusal recorded), then the errors.
        await run_in_threadpool(_findings_scope, reader)
        return form_errors(request, "compliance.html", empty, where, title="合规发现")
    found_filter = FindingFilter(
        rule=where.rule,
        status=where.status,
        unit=where.unit,
        person=where.person,
        since=_day_start(where.since),
        until=_next_day_start(where.until),
    )

    def read() -> tuple[list[FindingSummary], list[FindingSummary]]:
        _recorded_findings_read(reader)
        period = FindingFilter(since=found_filter.since, until=found_filter.until)
        return svc.application.findings(found_filter), svc.application.findings(period)

    listed, in_period = await run_in_threadpool(read)
    statuses = Counter(f.status for f in listed)
    return render(
        request,
        "compliance.html",
        {
            **_filter_choices(),
            "filters": {k: str(v) for k, v in where.model_dump(exclude_none=True).items()},
            "rows": [_row(f) for f in reversed(listed)],  # newest first on the page
            "counts": [
                {
                    **c,
                    "rule_label": RULE_LABELS.get(c["rule"], c["rule"]),
                }
                for c in counts_of(in_period)
            ],
            "by_status": [(FINDING_STATUS_LABELS[s], statuses.get(s, 0)) for s in FindingStatus],
            "searched": bool(given),
            "errors": [],
        },
        title="合规发现",
    )


# --- one finding and its forms ------------------------------------------------------------------


def _finding_context(reader: AuditedReader, finding_id: UUID) -> dict[str, Any]:
    """The finding page's content, its read recorded first (as a findings list read)."""
    _recorded_findings_read(reader)
    found = FindingSummary.of(reader.application.finding(finding_id))
    review = found.review
    follow_up = found.follow_up
    return {
        "finding": _row(found),
        "case_ids": list(found.case_ids),
        "evidence": list(found.evidence),
        "detail": sorted(
            (DETAIL_LABELS.get(str(k), str(k)), _shown(v)) for k, v in found.detail.items()
        ),
        "review": review,
        "review_label": OUTCOME_LABELS.get(str(review["outcome"]), "") if review else "",
        "follow_up": follow_up,
        "can_review": found.status is FindingStatus.OPEN,
        "can_open_follow_up": found.status is FindingStatus.VIOLATION and follow_up is None,
        "can_complete": follow_up is not None and not follow_up.get("completed"),
        "today": datetime.now(LOCAL_ZONE).date().isoformat(),
        "errors": [],
    }


def _shown(value: object) -> str:
    """A finding's detail value as text (counts, codes, thresholds; no case content)."""
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


@router.get("/compliance/findings/{finding_id}")
async def finding_page(
    finding_id: UUID, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    reader = page_reader(request, svc, actor, PURPOSE)
    context = await run_in_threadpool(_finding_context, reader, finding_id)
    return render(request, "compliance_finding.html", context, title="合规发现详情")


async def _finding_command(
    request: Request,
    actor: Actor,
    svc: Services,
    finding_id: UUID,
    model: type[BaseModel],
    names: tuple[str, ...],
    labels: dict[str, str],
    run: Callable[[Any], None],
    label: str,
) -> Response:
    """Validate the posted form against the API's command model, then run the application's
    command; errors (the form's or the application's) are the finding's page again, with
    nothing stored and no submitted value in it."""
    form = await read_form(request)
    reader = page_reader(request, svc, actor, PURPOSE)
    command = validate(model, _values(form, names), labels)
    if isinstance(command, list):
        context = await run_in_threadpool(_finding_context, reader, finding_id)
        return form_errors(
            request, "compliance_finding.html", context, command, title="合规发现详情"
        )
    try:
        await run_in_threadpool(run, command)
    except DomainError as refused:
        if refused.status not in (404, 409, 422):
            raise  # refused for the role: the app's refusal page (recorded by the application)
        context = await run_in_threadpool(_finding_context, reader, finding_id)
        return render(
            request,
            "compliance_finding.html",
            {**context, "errors": _refusal(refused, label)},
            status=refused.status,
            title="合规发现详情",
        )
    return see_other(request, f"/compliance/findings/{finding_id}")


@router.post("/compliance/findings/{finding_id}/review")
async def review_finding(
    finding_id: UUID, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: ReviewFinding) -> None:
        svc.application.review_finding(finding_id, command.outcome, command.reason, actor)
        log.info("finding_reviewed", finding_id=str(finding_id), outcome=str(command.outcome))

    return await _finding_command(
        request,
        actor,
        svc,
        finding_id,
        ReviewFinding,
        ("outcome", "reason"),
        _REVIEW_LABELS,
        run,
        "复核",
    )


@router.post("/compliance/findings/{finding_id}/follow-up")
async def open_follow_up(
    finding_id: UUID, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: OpenFollowUp) -> None:
        svc.application.open_finding_follow_up(finding_id, command.owner, command.due_on, actor)
        log.info("finding_follow_up_opened", finding_id=str(finding_id))

    return await _finding_command(
        request,
        actor,
        svc,
        finding_id,
        OpenFollowUp,
        ("owner", "due_on"),
        _FOLLOW_UP_LABELS,
        run,
        "整改事项",
    )


@router.post("/compliance/findings/{finding_id}/follow-up/completion")
async def complete_follow_up(
    finding_id: UUID, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: CompleteFollowUp) -> None:
        svc.application.complete_finding_follow_up(
            finding_id, command.completed_on, command.note, actor
        )
        log.info("finding_follow_up_completed", finding_id=str(finding_id))

    return await _finding_command(
        request,
        actor,
        svc,
        finding_id,
        CompleteFollowUp,
        ("completed_on", "note"),
        _COMPLETION_LABELS,
        run,
        "整改完成",
    )


# --- break-glass accesses awaiting review -------------------------------------------------------


def _break_glass_context(reader: AuditedReader) -> dict[str, Any]:
    """The pending break-glass accesses (the reader's compliance list: auditors declaring
    compliance_review only, as `GET /v1/compliance/break-glass`)."""
    items = reader.pending_break_glass_reviews()
    return {
        "items": [
            {
                "access_id": str(e.originator_id),
                "case_id": str(e.case_id),
                "at": e.timestamp,
                "user": e.actor.get("user", ""),
                "role_label": _role_label(str(e.actor.get("role", ""))),
                "unit": e.actor.get("unit", ""),
                "reason": e.reason,
                "fields": [FIELD_LABELS.get(f, f) for f in e.fields],
            }
            for e in items
        ],
        "outcomes": list(BREAK_GLASS_OUTCOMES.items()),
        "errors": [],
    }


@router.get("/compliance/break-glass")
async def break_glass_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    reader = page_reader(request, svc, actor, PURPOSE)
    context = await run_in_threadpool(_break_glass_context, reader)
    return render(request, "compliance_break_glass.html", context, title="紧急查阅复核")


@router.post("/compliance/break-glass/{access_id}/review")
async def review_break_glass(
    access_id: UUID, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    form = await read_form(request)
    reader = page_reader(request, svc, actor, PURPOSE)
    command = validate(ReviewBreakGlass, _values(form, ("outcome", "note")), _BREAK_GLASS_LABELS)
    if isinstance(command, list):
        context = await run_in_threadpool(_break_glass_context, reader)
        return form_errors(
            request, "compliance_break_glass.html", context, command, title="紧急查阅复核"
        )
    try:
        # The application refuses anyone but a compliance auditor, and records the refusal.
        await run_in_threadpool(svc.application.review_break_glass, access_id, command, actor)
    except DomainError as refused:
        if refused.status not in (404, 409):
            raise
        context = await run_in_threadpool(_break_glass_context, reader)
        return render(
            request,
            "compliance_break_glass.html",
            {**context, "errors": _refusal(refused, "紧急查阅复核")},
            status=refused.status,
            title="紧急查阅复核",
        )
    log.info("break_glass_reviewed", access_id=str(access_id), outcome=command.outcome)
    return see_other(request, "/compliance/break-glass")


# --- the accounting of disclosures for one minor ------------------------------------------------

_DOWNLOADS: Final = {"xlsx": ExportFormat.XLSX, "csv": ExportFormat.CSV}


def _disclosure_form(reader: AuditedReader) -> None:
    """The form shows nothing yet, but only an auditor is offered it: anyone else is
    refused (and recorded) as the API refuses them."""
    reader.compliance_report_scope()


@router.get("/compliance/disclosures")
async def disclosures_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    reader = page_reader(request, svc, actor, PURPOSE)
    await run_in_threadpool(_disclosure_form, reader)
    return render(
        request, "compliance_disclosures.html", {"result": None, "errors": []}, title="查阅记录查询"
    )


def _labelled(record: dict[str, Any]) -> dict[str, Any]:
    return {
        **record,
        "field_labels": [FIELD_LABELS.get(f, f) for f in record["fields"]],
    }


@router.post("/compliance/disclosures")
async def disclosures_lookup(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """The accounting for the minor whose ID number was posted: the page (a table) or, with
    `format` = xlsx / csv, the API's file. The ID number is never shown back, not even on an
    error; the API's function records what is shown (channel `compliance`) first."""
    form = await read_form(request)
    reader = page_reader(request, svc, actor, PURPOSE)
    await run_in_threadpool(_disclosure_form, reader)
    wanted = first(form, "format") or "page"
    body = validate(DisclosureRequest, _values(form, ("id_number",)), _DISCLOSURE_LABELS)
    found_errors = body if isinstance(body, list) else []
    if wanted != "page" and wanted not in _DOWNLOADS:
        found_errors = [*found_errors, FieldError("format", "查看方式", "请从列表中选择")]
    if found_errors or isinstance(body, list):
        return form_errors(
            request,
            "compliance_disclosures.html",
            {"result": None},
            found_errors,
            title="查阅记录查询",
        )
    if wanted in _DOWNLOADS:
        file: Response = await run_in_threadpool(disclosures, body, reader, svc, _DOWNLOADS[wanted])
        return file
    answer: Response = await run_in_threadpool(disclosures, body, reader, svc, ExportFormat.JSON)
    document = json.loads(bytes(answer.body))
    result = {
        "files": document["files"],
        "entries": len(document["roster_entry_ids"]),
        "case_ids": document["case_ids"],
        "count": document["count"],
        "as_of": document["files_found_as_of"],
        "generated_at": document["generated_at"],
        "rows": [_labelled(r) for r in document["disclosures"]],
    }
    return render(
        request,
        "compliance_disclosures.html",
        {"result": result, "errors": []},
        title="查阅记录查询",
    )


# --- the annual audit report ---------------------------------------------------------------------


class AnnualQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    year: int = Field(ge=2000, le=2100)


class AnnualDownload(AnnualQuery):
    format: AnnualFormat = AnnualFormat.HTML


def _years() -> list[int]:
    this = datetime.now(LOCAL_ZONE).year
    return list(range(this, this - 6, -1))


@router.get("/compliance/annual")
async def annual_page(
    request: Request,
    actor: PageActorDep,
    svc: ServicesDep,
    year: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The year's figures on the page (the API's signed JSON, read back), with its downloads.
    Producing it is recorded first by the API's own function (channel `compliance`)."""
    reader = page_reader(request, svc, actor, PURPOSE)
    await run_in_threadpool(reader.compliance_report_scope)
    context: dict[str, Any] = {"years": _years(), "year": None, "doc": None, "errors": []}
    if year is None or not year.strip():
        return render(request, "compliance_annual.html", context, title="年度审计报告")
    chosen = validate(AnnualQuery, {"year": year.strip()}, _ANNUAL_LABELS)
    if isinstance(chosen, list):
        return form_errors(request, "compliance_annual.html", context, chosen, title="年度审计报告")
    if chosen.year > datetime.now(LOCAL_ZONE).year:
        late = [FieldError("year", "年度", "不能晚于今年")]
        return form_errors(request, "compliance_annual.html", context, late, title="年度审计报告")
    answer: Response = await run_in_threadpool(
        annual_report, request, reader, svc, chosen.year, AnnualFormat.JSON
    )
    signed = json.loads(bytes(answer.body))
    document = signed["report"]  # the envelope of `gateway.reports.signing.sign_json`
    return render(
        request,
        "compliance_annual.html",
        {**context, "year": chosen.year, "doc": document},
        title=f"{chosen.year} 年度审计报告",
    )


@router.get("/compliance/annual/download")
async def annual_download(
    request: Request,
    actor: PageActorDep,
    svc: ServicesDep,
    year: Annotated[str, Query(max_length=8)] = "",
    format: Annotated[str, Query(max_length=8)] = "html",
) -> Response:
    """The API's signed file (html, pdf, json), recorded as the API records it. The scope is
    checked first, as the API does: a refusal is recorded whatever year was asked for."""
    reader = page_reader(request, svc, actor, PURPOSE)
    await run_in_threadpool(reader.compliance_report_scope)
    chosen = validate(AnnualDownload, {"year": year, "format": format}, _ANNUAL_LABELS)
    if isinstance(chosen, list):
        context = {"years": _years(), "year": None, "doc": None}
        return form_errors(request, "compliance_annual.html", context, chosen, title="年度审计报告")
    answer: Response = await run_in_threadpool(
        annual_report, request, reader, svc, chosen.year, chosen.format
    )
    return answer


# --- the access report ---------------------------------------------------------------------------

_ACCESS_LABELS: Final = {
    "user": "人员（用户编号）",
    "unit": "单位代码",
    "street": "街道代码",
    "role": "角色",
    "channel": "渠道",
    "kind": "类型",
    "case_id": "档案编号",
    "since": "起始日期",
    "until": "截止日期",
    "after": "页码位置",
    "download": "下载格式",
}
KIND_LABELS: Final = {
    KindFilter.READ: "准予查阅",
    KindFilter.REFUSED_READ: "被拒绝的查阅",
    KindFilter.REFUSED_COMMAND: "被拒绝的操作",
}
_ACCESS_DOWNLOADS: Final = ("xlsx", "csv", "fhir")
ACCESS_PAGE_SIZE: Final = 200


class AccessQuery(BaseModel):
    """The access report's filters on the page: codes, ids and dates only."""

    model_config = ConfigDict(extra="ignore")

    user: Code | None = None
    unit: Code | None = None
    street: Code | None = None
    role: Role | None = None
    channel: Code | None = None
    kind: KindFilter | None = None
    case_id: UUID | None = None
    since: date | None = None
    until: date | None = None
    after: int = Field(0, ge=0, le=MAX_POSITION)
    download: Annotated[str | None, Field(pattern="^(xlsx|csv|fhir)$")] = None

    def filters(self) -> AccessFilters:
        return AccessFilters(
            user=self.user,
            unit=self.unit,
            street=self.street,
            role=self.role,
            channel=self.channel,
            kind=self.kind,
            case_id=self.case_id,
            since=_day_start(self.since),
            until=_next_day_start(self.until),
            after=self.after,
            limit=ACCESS_PAGE_SIZE,
        )


def _access_choices() -> dict[str, Any]:
    return {
        "roles": [(str(r), label) for r, label in ROLE_LABELS.items()],
        "kinds": [(str(k), label) for k, label in KIND_LABELS.items()],
        "channels": list(CHANNEL_LABELS.items()),
    }


@router.get("/compliance/accesses")
async def accesses_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """The access report: the form, and with `run=1` (or any filter) a page of records (the
    API's `GET /v1/compliance/accesses`, recorded by it first, channel `compliance`), or with
    `download` its file."""
    reader = page_reader(request, svc, actor, PURPOSE)
    await run_in_threadpool(reader.compliance_report_scope)
    given = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    context: dict[str, Any] = {
        **_access_choices(),
        "filters": {},
        "result": None,
        "errors": [],
    }
    if not given:
        return render(request, "compliance_accesses.html", context, title="查阅记录报表")
    query = validate(AccessQuery, given, _ACCESS_LABELS)
    if isinstance(query, list):
        return form_errors(
            request, "compliance_accesses.html", context, query, title="查阅记录报表"
        )
    filters = query.filters()
    if query.download == "fhir":
        fhir: Response = await run_in_threadpool(fhir_audit_events, reader, svc, filters)
        fhir.headers["Content-Disposition"] = 'attachment; filename="audit-events.fhir.json"'
        return fhir
    if query.download in _DOWNLOADS:
        sheet: Response = await run_in_threadpool(
            accesses, reader, svc, filters, _DOWNLOADS[query.download]
        )
        return sheet
    answer: Response = await run_in_threadpool(accesses, reader, svc, filters, ExportFormat.JSON)
    document = json.loads(bytes(answer.body))
    shown = {k: v for k, v in given.items() if k not in ("after", "download", "run")}
    next_after = document["next_after"]
    return render(
        request,
        "compliance_accesses.html",
        {
            **context,
            "filters": shown,
            "result": {
                "count": document["count"],
                "rows": [_labelled(r) for r in document["records"]],
                "generated_at": document["generated_at"],
                "next": urlencode({**shown, "after": next_after}) if next_after else None,
                "downloads": [
                    (label, urlencode({**shown, "after": query.after, "download": code}))
                    for code, label in (
                        ("xlsx", "Excel 表格"),
                        ("csv", "CSV"),
                        ("fhir", "FHIR AuditEvent（JSON）"),
                    )
                ],
            },
        },
        title="查阅记录报表",
    )
