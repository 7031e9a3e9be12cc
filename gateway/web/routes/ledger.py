"""The ledger pages (线索台账): `GET /ledger`, `POST /ledger/search`, `POST /ledger/export`.

- `GET /ledger`: the ledger as `GET /v1/ledger` gives it (`gateway.http.routes.ledger.ledger`,
  called with the page's reader: the reader's `ledger_scope` and `ledger_rows`, recorded with
  channel `web`), for the purpose chosen on the page (the role's usual one by default). Its
  filters (status, category, risk, village, dates found) and the page number are query
  parameters: codes and dates only, never a personal value. Names and ID numbers are masked,
  as the reader's rows hold them; each row shows exactly the fields the reader returned, and
  links to its case page (`/cases/{id}`).
- `POST /ledger/search`: a minor looked up by exact ID number or name, in the POSTed form
  only (never in a URL), as `POST /v1/cases/search` does (the same call); the answer shows the
  masked rows found and never repeats what was searched for.
- `POST /ledger/export`: the ledger as a file (xlsx or CSV), the same call as
  `GET /v1/ledger/export` (formulas neutralised by `projections.ledger.exports`; every file
  exported with identity fields recorded with channel `export`, before the file is made).
- print: `button[data-print]`; `static/report.css` lays the table out on A4 landscape.

A query that carries `name` or `id_number` is refused (422) without reading anything: a
personal value never travels in a URL. Proven by tests/web/test_ledger_pages.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from domain import commands as cmd
from domain.access import ROLE_PURPOSES, Actor
from domain.taxonomy import (
    CASE_STATUS_LABELS,
    CATEGORY_LABELS,
    RISK_LABELS,
    CaseStatus,
    Category,
    Purpose,
    RiskLevel,
    Role,
)
from gateway.http.dependencies import Services
from gateway.http.routes import ledger as api
from gateway.web.dependencies import PageActorDep, ServicesDep, page_reader
from gateway.web.forms import FieldError, form_errors, read_form, validate
from gateway.web.templating import render
from projections.ledger.exports import ExportFormat
from projections.ledger.quarters import FIRST_DAY, LAST_DAY

router = APIRouter()

PER_PAGE: Final = 50

# The purpose a role usually reads its ledgers and worklists for (the page's default).
_USUAL_PURPOSE: Final = {
    Role.REPORTER: Purpose.FOLLOW_UP,
    Role.COORDINATOR: Purpose.CONSULTATION,
    Role.SUPERVISOR: Purpose.CONSULTATION,
    Role.UNIT_MEMBER: Purpose.INTERVENTION,
}
# Roles that may export names and ID numbers in full (domain.access.ledger_scope decides it
# again, and records a refusal).
_IDENTITY_EXPORT_ROLES: Final = frozenset({Role.REPORTER, Role.COORDINATOR})

LABELS: Final = {
    "purpose": "查阅目的",
    "status": "状态",
    "category": "问题类别",
    "risk": "风险等级",
    "village": "村(社区)代码",
    "found_from": "发现日期（起）",
    "found_to": "发现日期（止）",
    "page": "页码",
    "id_number": "身份证号",
    "name": "姓名",
    "format": "文件格式",
    "identity": "包含完整姓名和身份证号",
    "query": "查询参数",
}

Day = Annotated[date | None, Field(ge=FIRST_DAY, le=LAST_DAY)]


def usual_purpose(role: Role) -> Purpose | None:
    """The purpose a role's ledger and worklists are read for by default (None: no ledgers)."""
    return _USUAL_PURPOSE.get(role)


def purposes_for(role: Role) -> list[Purpose]:
    """The purposes the page offers: the role's own, never an emergency (a ledger is never
    break-glass's way in)."""
    return [
        p
        for p in Purpose
        if p in ROLE_PURPOSES[role] and p not in (Purpose.EMERGENCY, Purpose.GUARDIAN_REQUEST)
    ]


class Filters(BaseModel):
    """The ledger page's query (codes and dates only), and the export form's."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    purpose: Purpose | None = None
    status: CaseStatus | None = None
    category: Category | None = None
    risk: RiskLevel | None = None
    village: cmd.Code | None = None
    found_from: Day = None
    found_to: Day = None
    page: Annotated[int, Field(ge=1, le=100_000)] = 1

    def query_string(self, **changes: Any) -> str:
        """These filters (and `changes`) as a URL's query: codes, dates, a number."""
        values = {**self.model_dump(mode="json", exclude_none=True), **changes}
        if values.get("page") == 1:
            values.pop("page")
        return urlencode(values)


class ExportForm(Filters):
    format: ExportFormat = ExportFormat.XLSX
    identity: bool = False


class SearchForm(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    purpose: Purpose | None = None
    id_number: Annotated[str | None, Field(max_length=32)] = None
    name: cmd.Name | None = None


def _present(data: dict[str, list[str]]) -> dict[str, str]:
    """A form's or query's non-blank values (a blank select means 'any')."""
    return {k: v[0].strip() for k, v in data.items() if v and v[0].strip()}


def _query_data(request: Request) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        found.setdefault(name, []).append(value)
    return found


def _purpose(actor: Actor, chosen: Purpose | None) -> Purpose:
    # A role without ledgers still reads through the reader, which records its refusal.
    return chosen or usual_purpose(actor.role) or Purpose.CONSULTATION


def _filter_query(filters: Filters) -> Any:
    """The API's own filters (`ledger_filters`: the same checks, e.g. dates in order)."""
    return api.ledger_filters(
        village=filters.village,
        category=filters.category,
        risk=filters.risk,
        status=filters.status,
        found_from=filters.found_from,
        found_to=filters.found_to,
    )


def _base_context(
    actor: Actor, filters: Filters | None, purpose: Purpose, error_for: str = "filters"
) -> dict[str, Any]:
    return {
        # Which form's summary shows the errors: filters, search or export.
        "error_for": error_for,
        "filters": filters,
        "purpose": purpose,
        "purposes": purposes_for(actor.role),
        "statuses": CASE_STATUS_LABELS,
        "categories": CATEGORY_LABELS,
        "risks": RISK_LABELS,
        "formats": {ExportFormat.XLSX: "Excel 表格（.xlsx）", ExportFormat.CSV: "CSV 文本（.csv）"},
        "identity_export": actor.role in _IDENTITY_EXPORT_ROLES,
        "answer": None,
        "searched": False,
        "errors": [],
        "prev_url": None,
        "next_url": None,
        "export_values": {},
        # When the page was read: printed with the table.
        "as_of": datetime.now(UTC),
    }


def _read_ledger(request: Request, svc: Services, actor: Actor, filters: Filters) -> dict[str, Any]:
    reader = page_reader(request, svc, actor, _purpose(actor, filters.purpose))
    return api.ledger(reader, svc, _filter_query(filters), filters.page, PER_PAGE)


def _invalid_filter(exc: api.InvalidFilter) -> list[FieldError]:
    name = exc.field or "query"
    return [FieldError(name, LABELS.get(name, name), "内容不符合要求，请检查")]


@router.get("/ledger")
async def ledger_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    data = _query_data(request)
    if "name" in data or "id_number" in data:
        # Never read, never repeated: a lookup by a personal value is a POSTed form.
        errors = [
            FieldError(
                "query", LABELS["query"], "姓名、身份证号不能放在网址中，请使用下方的查询表单"
            )
        ]
        context = _base_context(actor, None, _purpose(actor, None))
        return form_errors(request, "ledger.html", context, errors, title="线索台账")
    checked = validate(Filters, _present(data), LABELS)
    if isinstance(checked, list):
        context = _base_context(actor, None, _purpose(actor, None))
        return form_errors(request, "ledger.html", context, checked, title="线索台账")
    filters = checked
    purpose = _purpose(actor, filters.purpose)
    context = _base_context(actor, filters, purpose)
    try:
        answer = await run_in_threadpool(_read_ledger, request, svc, actor, filters)
    except api.InvalidFilter as exc:
        return form_errors(request, "ledger.html", context, _invalid_filter(exc), title="线索台账")
    pages = (answer["total"] + PER_PAGE - 1) // PER_PAGE
    chosen = filters.model_copy(update={"purpose": purpose})
    context.update(
        answer=answer,
        pages=pages,
        prev_url=f"/ledger?{chosen.query_string(page=filters.page - 1)}"
        if filters.page > 1
        else None,
        next_url=f"/ledger?{chosen.query_string(page=filters.page + 1)}"
        if filters.page < pages
        else None,
        export_values=chosen.model_dump(mode="json", exclude_none=True, exclude={"page"}),
    )
    return render(request, "ledger.html", context, title="线索台账")


def _search(request: Request, svc: Services, actor: Actor, form: SearchForm) -> dict[str, Any]:
    reader = page_reader(request, svc, actor, _purpose(actor, form.purpose))
    lookup = api.Lookup(id_number=form.id_number, name=form.name)
    return api.search_cases(lookup, reader, svc)


@router.post("/ledger/search")
async def search(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """A minor's files by exact ID number or name (POSTed: never in a URL)."""
    data = _present(await read_form(request))
    checked = validate(SearchForm, data, LABELS)
    purpose = _purpose(actor, None)
    if isinstance(checked, list):
        context = _base_context(actor, None, purpose, "search")
        return form_errors(request, "ledger.html", context, checked, title="线索台账")
    purpose = _purpose(actor, checked.purpose)
    context = _base_context(actor, None, purpose, "search")
    if checked.id_number is None and checked.name is None:
        errors = [FieldError("id_number", LABELS["id_number"], "请填写身份证号或姓名")]
        return form_errors(request, "ledger.html", context, errors, title="线索台账")
    try:
        answer = await run_in_threadpool(_search, request, svc, actor, checked)
    except api.InvalidFilter as exc:
        errors = [FieldError("id_number", LABELS["id_number"], "身份证号格式不正确，请核对")]
        del exc
        return form_errors(request, "ledger.html", context, errors, title="线索台账")
    context.update(answer=answer, searched=True, pages=1)
    return render(request, "ledger.html", context, title="台账查询结果")


def _export(request: Request, svc: Services, actor: Actor, form: ExportForm) -> Response:
    reader = page_reader(request, svc, actor, _purpose(actor, form.purpose))
    return api.export_ledger(reader, svc, _filter_query(form), form.format, form.identity)


@router.post("/ledger/export")
async def export(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """The ledger as a file, audited as `GET /v1/ledger/export` (channel `export`)."""
    data = _present(await read_form(request))
    checked = validate(ExportForm, data, LABELS)
    if isinstance(checked, list):
        context = _base_context(actor, None, _purpose(actor, None))
        return form_errors(request, "ledger.html", context, checked, title="线索台账")
    try:
        return await run_in_threadpool(_export, request, svc, actor, checked)
    except api.InvalidFilter as exc:
        context = _base_context(actor, checked, _purpose(actor, checked.purpose))
        return form_errors(request, "ledger.html", context, _invalid_filter(exc), title="线索台账")
