"""Endpoints of the read models: ledgers (台账), lookups, worklists, quarterly reports, exports.

Who sees what is the reader's (`gateway.http.reader`); these endpoints ask it and show what
it grants:
- the reader's `ledger_scope` says whether an actor has ledgers at all (a refusal is stored as
  `AccessDenied` and answered as a case read's) and pre-filters the rows (street; own unit;
  units' assignments); `ledger_rows` decides each row's fields as for a case read, from what
  the ledger holds of the file.
- Names and ID numbers are masked in every answer; a row that shows identity fields in clear
  (school, gender, age) is recorded as one `CaseAccessed` per file, stored before the answer.
- A full-identity export (`identity=true`): the reader fetches names and ID numbers from the
  event store, decides each file again on its live state, and records one access event per file
  with the purpose and the fields exported, before the file is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from domain import commands as cmd
from domain import errors
from domain.access import NO_CASE, Channel, LedgerScope
from domain.identity import InvalidIdNumber, parse_id_number
from domain.taxonomy import CaseStatus, Category, RiskLevel, is_known_subtype
from gateway.http.dependencies import ActorDep, ReaderDep, Services, ServicesDep, readmodels_of
from gateway.http.reader import AuditedReader
from gateway.logs import get_logger
from projections.ledger.exports import (
    MEDIA_TYPES,
    ExportFormat,
    ledger_csv,
    ledger_json,
    ledger_xlsx,
)
from projections.ledger.quarters import FIRST_DAY, LAST_DAY, LOCAL_TZ, local_date, stamp, today
from projections.ledger.reports import quarterly_report, with_missed_submissions
from projections.ledger.view import LedgerQuery, LedgerRow, cells, ledger_page
from projections.ledger.worklists import (
    AssignmentState,
    WorkItem,
    assignments,
    awaiting_consultation,
    quarterly_updates,
)
from projections.readmodels import ReadModels
from projections.screening.coverage import coverage_counts

log = get_logger("casetrail.api")
router = APIRouter()

MAX_PAGE: Final = 200
MAX_EXPORT_ROWS: Final = 20_000


class InvalidFilter(errors.DomainError):
    status = 422
    code = "invalid_filter"


# --- where ------------------------------------------------------------------------------------


def _freshness(readmodels: ReadModels, name: str) -> dict[str, int]:
    status = readmodels.follower(name).status()
    return {"position": status.position, "lag": status.lag}


# Streets, villages and units are codes (as in commands and tokens): the pattern keeps NUL and
# other characters no store accepts out of a query (PostgreSQL refuses NUL in text).
Text = Annotated[cmd.Code | None, Query(min_length=1, max_length=64)]
# Every date a query names lies in the window a command's dates may (JSON Schema's
# minimum/maximum are for numbers, so the schema shows formatMinimum/formatMaximum): no date
# arithmetic near date.max, no report "as of" a time the service had no data
# (tests/integration/test_bounds.py).
Day = Annotated[
    date | None,
    Query(
        ge=FIRST_DAY,
        le=LAST_DAY,
        json_schema_extra={
            "formatMinimum": FIRST_DAY.isoformat(),
            "formatMaximum": LAST_DAY.isoformat(),
        },
    ),
]


def ledger_filters(
    street: Text = None,
    village: Text = None,
    # The school as stored: normalised like the command's (no invisible characters).
    school: Annotated[cmd.ShortText | None, Query(min_length=1, max_length=64)] = None,
    category: Category | None = None,
    subtype: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    risk: RiskLevel | None = None,
    status: CaseStatus | None = None,
    found_from: Day = None,
    found_to: Day = None,
) -> LedgerQuery:
    """The ledger's filters, shared by its pages and its exports (a FastAPI dependency)."""
    if subtype is not None:
        categories = [category] if category is not None else list(Category)
        if not any(is_known_subtype(c, subtype) for c in categories):
            raise InvalidFilter(
                f"'{subtype}' is not a subtype"
                + (f" of category '{category}'" if category else "")
                + "; GET /v1/taxonomy lists the codes",
                field="subtype",
            )
    if found_from is not None and found_to is not None and found_from > found_to:
        raise InvalidFilter("found_from is after found_to; swap them", field="found_from")
    return LedgerQuery(
        street=street,
        village=village,
        school=school,
        category=str(category) if category else None,
        subtype=subtype,
        risk=str(risk) if risk else None,
        status=str(status) if status else None,
        found_from=found_from,
        found_to=found_to,
    )


LedgerFilters = Annotated[LedgerQuery, Depends(ledger_filters)]


# --- pages ---------------------------------------------------------------------------------------


def _ended_since(svc: Services, now: datetime) -> str:
    return stamp(now - svc.application.assignment_grace)


def _page_answer(
    reader: AuditedReader,
    svc: Services,
    readmodels: ReadModels,
    scope: LedgerScope,
    query: LedgerQuery,
    *,
    page: int,
    per_page: int,
    prefix: Channel,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    with readmodels.ledger.reading() as db:
        total, rows = ledger_page(
            db,
            scope,
            query,
            limit=per_page,
            offset=(page - 1) * per_page,
            ended_since=_ended_since(svc, now),
        )
    granted = reader.ledger_rows(rows, channel=prefix, now=now)
    deadline = readmodels.consultation_deadline
    return {
        **_freshness(readmodels, "ledger"),
        "total": total,
        "page": page,
        "per_page": per_page,
        "rows": [
            row.as_dict(d.fields, now=now, consultation_deadline=deadline) for row, d in granted
        ],
    }


# --- ledgers and lookups -------------------------------------------------------------------------


@router.get("/v1/ledger", tags=["ledgers"])
def ledger(
    reader: ReaderDep,
    svc: ServicesDep,
    query: LedgerFilters,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """The ledger (台账) of your street, village, school...: one row per file, newest found
    first, names and ID numbers masked. Rows showing identity fields are recorded as accesses."""
    scope = reader.ledger_scope(channel=Channel.LEDGER)
    readmodels = readmodels_of(svc)
    return _page_answer(
        reader, svc, readmodels, scope, query, page=page, per_page=per_page, prefix=Channel.LEDGER
    )


class PersonalDataInUrl(errors.DomainError):
    status = 422
    code = "personal_data_in_url"


@router.get("/v1/cases", tags=["ledgers"])
def find_cases(
    actor: ActorDep,
    id_number: Annotated[str | None, Query(max_length=32)] = None,
    name: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    """Refused: a minor's ID number or name never travels in a URL (proxies, browsers and
    servers keep URLs in their logs and histories). Look a minor up with
    `POST /v1/cases/search`, the ID number or name in the body. Answered 422 (to an authenticated
    caller; 401 as any route otherwise) before anything is read or decided; the value given is
    neither parsed nor echoed."""
    del actor  # authenticated only: an unauthenticated call is refused and recorded first
    field = "name" if id_number is None and name is not None else "id_number"
    raise PersonalDataInUrl(
        "a minor's ID number or name is not accepted in a URL: send it in the JSON body of "
        "POST /v1/cases/search instead",
        field=field,
    )


class Lookup(cmd.Command):
    id_number: Annotated[str | None, Field(max_length=32)] = None
    name: cmd.Name | None = None


@router.post("/v1/cases/search", tags=["ledgers"])
def search_cases(lookup: Lookup, reader: ReaderDep, svc: ServicesDep) -> dict[str, Any]:
    """Files of a minor, found by exact ID number or name through the blind index (the read
    models hold neither), given in the body (never in a URL). Answers ledger rows, masked;
    recorded like a ledger page."""
    return _lookup(reader, svc, lookup.id_number, lookup.name)


def _lookup(
    reader: AuditedReader, svc: Services, id_number: str | None, name: str | None
) -> dict[str, Any]:
    if id_number is None and name is None:
        raise InvalidFilter("give id_number or name to look a minor up", field="id_number")
    scope = reader.ledger_scope(channel=Channel.LOOKUP)
    readmodels = readmodels_of(svc)
    id_index = name_index = None
    if id_number is not None:
        try:
            parse_id_number(id_number)
        except InvalidIdNumber as exc:
            raise InvalidFilter(f"resident ID number {exc}", field="id_number") from None
        id_index = readmodels.blind_index.id_number(id_number)
    if name is not None:
        name_index = readmodels.blind_index.name(name)
    query = LedgerQuery(id_index=id_index, name_index=name_index)
    return _page_answer(
        reader, svc, readmodels, scope, query, page=1, per_page=MAX_PAGE, prefix=Channel.LOOKUP
    )


# --- exports -------------------------------------------------------------------------------------


@router.get(
    "/v1/ledger/export",
    tags=["ledgers"],
    response_class=Response,
    responses={
        200: {
            "description": "The ledger as a file (`format`: xlsx, csv or json)",
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
        }
    },
)
def export_ledger(
    reader: ReaderDep,
    svc: ServicesDep,
    query: LedgerFilters,
    format: ExportFormat = ExportFormat.XLSX,
    identity: bool = False,
) -> Response:
    """The ledger as a file: `.xlsx` laid out as a 台账 (with the quarter's counts on a second
    sheet), CSV or JSON. `identity=true` puts full names and ID numbers in (coordinators of the
    street; reporters for their own unit): each file exported is then recorded as disclosed,
    with the purpose and the fields, before the file is made."""
    scope = reader.export_scope(identity=identity)
    readmodels = readmodels_of(svc)
    now = datetime.now(UTC)
    with readmodels.ledger.reading() as db:
        total, rows = ledger_page(
            db, scope, query, limit=MAX_EXPORT_ROWS, ended_since=_ended_since(svc, now)
        )
    if total > MAX_EXPORT_ROWS:
        raise InvalidFilter(
            f"{total} files match; an export holds at most {MAX_EXPORT_ROWS}: narrow it by "
            "village, category or dates",
            field="village",
        )
    grant = reader.export_rows(rows, identity=identity, now=now)
    deadline = readmodels.consultation_deadline
    lines = [
        _cells(line.row, grant.columns, line.fields, now, deadline, line.identity)
        for line in grant.lines
    ]
    log.info(
        "ledger_exported",
        format=str(format),
        identity=identity,
        files=len(lines),
        identities=sum(1 for line in grant.lines if line.identity is not None),
    )
    body = _render(format, scope, query, grant.columns, lines, readmodels, now, identity)
    stamp_text = datetime.now(LOCAL_TZ).strftime("%Y%m%d-%H%M")
    return Response(
        body,
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": (
                f'attachment; filename="ledger-{scope.street}-{stamp_text}.{format}"'
            ),
            "Cache-Control": "no-store",
        },
    )


def _cells(
    row: LedgerRow,
    columns: Sequence[Any],
    fields: frozenset[str],
    now: datetime,
    deadline: timedelta,
    identity: tuple[str, str] | None,
) -> list[Any]:
    return cells(row, columns, fields, now=now, consultation_deadline=deadline, identity=identity)


def _render(
    format: ExportFormat,
    scope: LedgerScope,
    query: LedgerQuery,
    columns: Sequence[Any],
    lines: list[list[Any]],
    readmodels: ReadModels,
    now: datetime,
    identity: bool,
) -> bytes:
    place = query.village or "全部村(社区)"
    when = now.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    if format is ExportFormat.CSV:
        return ledger_csv(columns, lines)
    if format is ExportFormat.JSON:
        meta = {"street": scope.street, "village": query.village, "as_of": now.isoformat()}
        return ledger_json(columns, lines, meta)
    report = None
    if scope.reporting_unit is None and scope.assigned_unit is None:
        with readmodels.reports.reading() as db:
            report = quarterly_report(db, scope.street, local_date(now), village=query.village)
    masked = "" if identity else "　姓名、身份证号已脱敏"
    return ledger_xlsx(
        title=f"{scope.street} 未成年学生苗头性问题台账",
        subtitle=(
            f"街道：{scope.street}　村(社区)：{place}　截至：{when}　共 {len(lines)} 条{masked}"
        ),
        columns=columns,
        lines=lines,
        report=report,
    )


# --- worklists and deadlines ---------------------------------------------------------------------


def _items(items: list[WorkItem]) -> list[dict[str, Any]]:
    return [item.as_dict() for item in items]


@router.get("/v1/worklists/consultations", tags=["worklists"])
def consultations(reader: ReaderDep, svc: ServicesDep) -> dict[str, Any]:
    """Clues awaiting a consultation (问题会商), longest waiting first, overdue flagged
    (CASETRAIL_CONSULTATION_DEADLINE_HOURS after the report). Operational fields only."""
    scope = reader.ledger_scope(channel=Channel.WORKLIST)
    readmodels = readmodels_of(svc)
    deadline = readmodels.consultation_deadline
    with readmodels.ledger.reading() as db:
        items = awaiting_consultation(db, scope, now=datetime.now(UTC), deadline=deadline)
    return {
        **_freshness(readmodels, "ledger"),
        "deadline_hours": deadline.total_seconds() / 3600,
        "overdue": sum(1 for i in items if i.values["overdue"]),
        "items": _items(items),
    }


@router.get("/v1/worklists/assignments", tags=["worklists"])
def unit_assignments(
    reader: ReaderDep,
    svc: ServicesDep,
    unit: Text = None,
    state: AssignmentState = AssignmentState.OPEN,
    on: Day = None,
) -> dict[str, Any]:
    """Open assignments with their due dates: all units of your street (coordinators,
    supervisors), or your own unit's. `state=unacknowledged|overdue` narrows; `on` is the day
    deadlines are judged on (today by default)."""
    scope = reader.ledger_scope(channel=Channel.WORKLIST)
    if scope.assigned_unit is not None:
        unit = scope.assigned_unit
    readmodels = readmodels_of(svc)
    day = on or today()
    with readmodels.ledger.reading() as db:
        items = assignments(db, scope, today=day, unit=unit, state=state)
    return {
        **_freshness(readmodels, "ledger"),
        "on": day.isoformat(),
        "unit": unit,
        "overdue": sum(1 for i in items if i.values["overdue"]),
        "unacknowledged": sum(1 for i in items if not i.values["acknowledged"]),
        "items": _items(items),
    }


@router.get("/v1/worklists/quarterly-updates", tags=["worklists"])
def updates_due(reader: ReaderDep, svc: ServicesDep, on: Day = None) -> dict[str, Any]:
    """Open files without an update (follow-up) in the current quarter (每季度更新一次), due by
    its last day; overdue when a whole quarter passed without one."""
    scope = reader.ledger_scope(channel=Channel.WORKLIST)
    readmodels = readmodels_of(svc)
    day = on or today()
    with readmodels.ledger.reading() as db:
        items = quarterly_updates(db, scope, today=day)
    return {
        **_freshness(readmodels, "ledger"),
        "on": day.isoformat(),
        "overdue": sum(1 for i in items if i.values["overdue"]),
        "items": _items(items),
    }


@router.get("/v1/worklists/undeliverable-notices", tags=["worklists"])
def undeliverable_notices(reader: ReaderDep, svc: ServicesDep) -> dict[str, Any]:
    """Notices about your street's cases that nobody could take (`NoticeUndeliverable`: the
    unit is not registered, or no unit of the type a rule names is), oldest first: register
    the unit (`casetrail unit add`) and tell it by other means. Codes, ids and instants only.
    Coordinators and supervisors of the street; others are refused, the refusal recorded."""
    scope = reader.street_worklist_scope()
    found = svc.application.undeliverable_notices(scope.street)
    return {
        "street": scope.street,
        "count": len(found),
        "items": [
            {
                "at": e.timestamp.isoformat(),
                "kind": e.kind,
                "unit": e.unit,
                "case_id": None if e.case_id == NO_CASE else str(e.case_id),
                "reason": e.reason,
                "source_event": e.source_event,
            }
            for e in found
        ],
    }


# --- reports -------------------------------------------------------------------------------------


@router.get("/v1/reports/quarterly", tags=["reports"])
def quarterly(
    reader: ReaderDep, svc: ServicesDep, as_of: Day = None, village: Text = None
) -> dict[str, Any]:
    """The street's quarterly report (季度报表) as of a date (today by default): counts by
    category, subtype, village, risk and status, files new and closed in the quarter. Counts
    what was recorded up to the end of that day, so a past quarter is re-issued exactly.
    For the street's coordinators and supervisors."""
    scope = reader.report_scope()
    readmodels = readmodels_of(svc)
    day = as_of or today()
    with readmodels.reports.reading() as db:
        report = quarterly_report(db, scope.street, day, village=village)
    if village is None:
        # Issue 17: the street's villages' ledger submissions missed, among the overdue counts.
        missed = svc.application.missed_submissions(scope.street)
        report = with_missed_submissions(report, [m.due_on for m in missed])
    with readmodels.screening.reading() as db:
        coverage = coverage_counts(db, scope.street, report.quarter, village=village)
    report = replace(report, coverage=coverage)
    return {**_freshness(readmodels, "reports"), **report.as_dict()}
