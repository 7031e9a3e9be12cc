"""The compliance reports of issue 15: the accounting of disclosures for one minor, access
reports, the FHIR R5 AuditEvent export and the annual audit of minors' personal information.

- `POST /v1/compliance/disclosures[?format=json|csv|xlsx]`, the minor's resident ID number in
  the body (never in a URL or a log line): the minor's files and roster entries (底数) are
  found through the read models' blind index (a keyed token of the number, as investigations
  find them), then every disclosure of any of them is listed: who, role, unit, when, purpose,
  the names of the fields, channel, rule. A disclosure is a granted read whose fields include
  any of the case's own (a read of the access log alone, a compliance review's, is not). An
  ID number with no file answers exactly like one whose files were never disclosed but for
  `files`: 0; auditors may know whether a minor has files (they read any file's access
  log), nobody else reaches this.
- `GET /v1/compliance/accesses`: the access records (granted, refused reads, refused commands)
  filtered by person, unit, street, role, rule, channel, kind, case and period, paged by store
  position (`after`, `limit`, `next_after`); JSON, CSV or .xlsx. Counts of findings per rule
  and unit are the rules' (`/v1/compliance/findings/counts`, linked from the answer).
- `GET /v1/compliance/fhir/AuditEvent`: the same records, filters and pages as a FHIR R5
  `Bundle` of `AuditEvent`s (`gateway.compliance.fhir`), `application/fhir+json`.
- `GET /v1/compliance/annual-report?year=Y&format=html|pdf|json`: the annual audit
  (未成年人网络保护条例 第三十七条), counts only (`gateway.compliance.annual`), signed like the
  investigation report (`docs/specs/report.md`, checked by `casetrail verify-report`).

Compliance auditors with purpose `compliance_review` only; anyone else is refused and the
refusal recorded before any read model is read. Each answer's disclosure (the access logs of
the files it covers; for the annual report, one record naming no case) is stored before the
answer leaves (`AuditedReader.record_compliance_report`). No answer holds case content: no
name, ID number, school, description, nothing but codes, ids and counts. Spreadsheets
neutralise formulas (`projections.ledger.exports.neutralise`). Proven by
tests/integration/test_disclosures.py, tests/integration/test_fhir_audit_events.py and
tests/reports/test_annual_report.py.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, StringConstraints, field_validator

from domain import commands as cmd
from domain import errors, identity
from domain.compliance.records import AccessRecord, RecordKind
from domain.investigation_commands import MAX_POSITION
from domain.taxonomy import Role
from gateway.compliance import fhir
from gateway.compliance.annual import annual_document, render_annual
from gateway.compliance.sheets import (
    ACCESS_COLUMNS,
    ACCESS_SHEET,
    DISCLOSURE_COLUMNS,
    DISCLOSURE_SHEET,
    local,
    record_json,
    records_csv,
    records_xlsx,
)
from gateway.compliance.source import find_records, is_disclosure
from gateway.evidence.maintainer import Evidence
from gateway.http.dependencies import ReaderDep, Services, ServicesDep, readmodels_of
from gateway.http.problems import problem
from gateway.http.reader import AuditedReader
from gateway.http.routes.investigations import files_of_minor
from gateway.logs import get_logger
from gateway.reports.html import CHINA
from gateway.reports.pdf import PdfUnavailable
from gateway.reports.render import MEDIA_TYPES as REPORT_MEDIA_TYPES
from projections.compliance.access_log import AccessQuery
from projections.ledger.exports import MEDIA_TYPES, ExportFormat

log = get_logger("casetrail.api")
router = APIRouter()

MAX_LIMIT: Final = 1000
FINDINGS_COUNTS: Final = "/v1/compliance/findings/counts"


class InvalidFilter(errors.DomainError):
    status = 422
    code = "invalid_filter"


def _now() -> datetime:
    return datetime.now(UTC)


def _generated(reader: AuditedReader) -> dict[str, Any]:
    actor = reader.actor
    return {
        "generated_at": _now().isoformat(),
        "generated_by": {"user": actor.user, "role": str(actor.role), "unit": actor.unit},
    }


def _file(data: bytes, format: ExportFormat, name: str) -> Response:
    return Response(
        data,
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{name}.{format.value}"',
            "Cache-Control": "no-store",
        },
    )


# --- the accounting of disclosures ----------------------------------------------------------------


class DisclosureRequest(cmd.Command):
    """Whose disclosures: the minor, by resident ID number (in this body only)."""

    id_number: Annotated[
        str, StringConstraints(strip_whitespace=True, to_upper=True, max_length=32)
    ]

    @field_validator("id_number")
    @classmethod
    def _id_number_is_valid(cls, value: str) -> str:
        try:
            identity.parse_id_number(value)
        except identity.InvalidIdNumber as exc:
            raise ValueError(f"resident ID number {exc}") from None
        return value


_FILE_ANSWERS: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "JSON, or the file (`format`: csv, xlsx)",
        "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
    }
}


def roster_entries_of_minor(svc: Services, id_number: str) -> list[UUID]:
    """The ids of the minor's roster entries (底数, issue 17), in every street: the screening
    read model keeps the same blind index of the ID number as the ledger (never the number)."""
    readmodels = readmodels_of(svc)
    token = readmodels.blind_index.id_number(id_number)
    with readmodels.screening.reading() as db:
        rows = db.execute(
            "SELECT entry_id FROM {screening_entries} WHERE id_index = ? ORDER BY entry_id",
            [token],
        )
    return [UUID(str(r["entry_id"])) for r in rows]


@router.post(
    "/v1/compliance/disclosures",
    tags=["compliance"],
    response_class=Response,
    responses=_FILE_ANSWERS,
)
def disclosures(
    body: DisclosureRequest,
    reader: ReaderDep,
    svc: ServicesDep,
    format: ExportFormat = ExportFormat.JSON,
) -> Response:
    """The accounting of disclosures of one minor (a guardian's request): every disclosure of
    any of the minor's files, who, role, unit, when, purpose, fields, channel and rule; JSON,
    CSV or .xlsx with Chinese headers. Compliance auditors (compliance_review); recorded as a
    read of each file's access log before the answer."""
    reader.compliance_report_scope()
    readmodels = readmodels_of(svc)
    # The files are found through the ledger: one reported after its position is not yet
    # among them (the answer says how far the ledger had followed the store).
    ledger = readmodels.follower("ledger").status()
    files = files_of_minor(svc, body.id_number)
    # The minor's roster entries (issue 17) are disclosed too: their reads are recorded with
    # the entry id as the subject (case_id).
    entries = roster_entries_of_minor(svc, body.id_number)
    subjects = (*files, *entries)
    records = (
        find_records(
            readmodels,
            svc.application,
            AccessQuery(case_ids=subjects, kinds=(RecordKind.READ,)),
        )
        if subjects
        else []
    )
    found = [r for r in records if is_disclosure(r)]
    reader.record_compliance_report("accounting", subjects)
    log.info(
        "disclosures_accounted", files=len(files), entries=len(entries), disclosures=len(found)
    )
    if format is ExportFormat.JSON:
        document = {
            **_generated(reader),
            "files": len(files),
            "files_found_as_of": {"position": ledger.position, "lag": ledger.lag},
            "case_ids": [str(c) for c in files],
            "roster_entry_ids": [str(e) for e in entries],
            "count": len(found),
            "disclosures": [record_json(r) for r in found],
        }
        return _json(document)
    stamp = _now().strftime("%Y%m%d%H%M%S")
    if format is ExportFormat.CSV:
        return _file(records_csv(found, DISCLOSURE_COLUMNS), format, f"disclosures-{stamp}")
    subtitle = (
        f"涉及档案 {len(files)} 份、底数名册 {len(entries)} 条，披露 {len(found)} 次"
        f"　生成于 {local(_now())}（北京时间）"
        f"　生成人 {reader.actor.user}"
    )
    data = records_xlsx(
        found,
        DISCLOSURE_COLUMNS,
        title="未成年人个人信息披露记录",
        subtitle=subtitle,
        sheet_name=DISCLOSURE_SHEET,
    )
    return _file(data, format, f"disclosures-{stamp}")


def _json(document: dict[str, Any], media_type: str = "application/json") -> Response:
    return Response(
        json.dumps(document, ensure_ascii=False).encode(),
        media_type=media_type,
        headers={"Cache-Control": "no-store"},
    )


# --- access reports and the FHIR export ----------------------------------------------------------


class KindFilter(StrEnum):
    READ = "read"
    REFUSED_READ = "refused_read"
    REFUSED_COMMAND = "refused_command"


def _printable(value: str | None) -> str | None:
    """No control, invisible or bidi character (PostgreSQL refuses NUL; the others make a
    filter read other than it matches): categories Cc, Cf (bidi controls included), Cs."""
    if value is not None and any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
        raise ValueError("must not contain control, invisible or bidirectional characters")
    return value


# A user id as tokens carry it (any printable text); unit and street codes; a rule as stored.
_User = Annotated[str | None, Query(min_length=1, max_length=128), AfterValidator(_printable)]
_Code = Annotated[cmd.Code | None, Query(min_length=1, max_length=64)]
_Rule = Annotated[str | None, Query(min_length=1, max_length=256), AfterValidator(_printable)]


def _in_window(value: datetime | None) -> datetime | None:
    if value is not None and not cmd.EARLIEST_DATE <= value.date() <= cmd.LATEST_DATE:
        raise ValueError(f"must lie between {cmd.EARLIEST_DATE} and {cmd.LATEST_DATE}")
    return value


# An instant with its offset, within the window every date of the service lies in.
Instant = Annotated[
    AwareDatetime | None,
    Query(
        description="RFC 3339, with offset",
        json_schema_extra={
            "formatMinimum": f"{cmd.EARLIEST_DATE}T00:00:00Z",
            "formatMaximum": f"{cmd.LATEST_DATE}T23:59:59Z",
        },
    ),
    AfterValidator(_in_window),
]


@dataclass(frozen=True)
class AccessFilters:
    """The filters of the access reports and the FHIR export, as a query string."""

    user: _User = None
    unit: _Code = None
    street: _Code = None
    role: Annotated[Role | None, Query()] = None
    rule: _Rule = None
    channel: _Code = None
    kind: Annotated[KindFilter | None, Query()] = None
    case_id: Annotated[UUID | None, Query()] = None
    since: Instant = None  # inclusive
    until: Instant = None  # exclusive
    after: Annotated[
        int,
        Query(ge=0, le=MAX_POSITION, description="the store position the page starts after"),
    ] = 0
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 200

    def query(self) -> AccessQuery:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidFilter("until must be later than since", field="until")
        return AccessQuery(
            case_ids=(self.case_id,) if self.case_id is not None else None,
            user=self.user,
            unit=self.unit,
            street=self.street,
            role=str(self.role) if self.role is not None else None,
            rule=self.rule,
            channel=self.channel,
            kinds=(RecordKind(self.kind.value),) if self.kind is not None else None,
            since=self.since,
            until=self.until,
            after_position=self.after,
            limit=self.limit,
        )

    def params(self, after: int) -> dict[str, str]:
        """The query string of the page after `after` (the same filters)."""
        found: dict[str, str] = {}
        for key in ("user", "unit", "street", "role", "rule", "channel", "kind", "case_id"):
            value = getattr(self, key)
            if value is not None:
                found[key] = str(value)
        for key in ("since", "until"):
            moment = getattr(self, key)
            if moment is not None:
                found[key] = moment.isoformat()
        found["after"] = str(after)
        found["limit"] = str(self.limit)
        return found


FiltersDep = Annotated[AccessFilters, Depends()]


def _page(
    reader: AuditedReader, svc: Services, filters: AccessFilters, report: str
) -> tuple[list[AccessRecord], int | None]:
    reader.compliance_report_scope()
    query = filters.query()
    records = find_records(readmodels_of(svc), svc.application, query)
    reader.record_compliance_report(report, (r.case_id for r in records))
    full = len(records) == filters.limit
    return records, (records[-1].position if full and records else None)


@router.get(
    "/v1/compliance/accesses",
    tags=["compliance"],
    response_class=Response,
    responses=_FILE_ANSWERS,
)
def accesses(
    reader: ReaderDep,
    svc: ServicesDep,
    filters: FiltersDep,
    format: ExportFormat = ExportFormat.JSON,
) -> Response:
    """Access records (reads granted and refused, refused commands) by person, unit, street,
    role, rule, channel, kind, case and period, in store order, a page at a time (`after` =
    the previous page's `next_after`); JSON, CSV or .xlsx with Chinese headers. Compliance
    auditors (compliance_review); the access logs shown are recorded as read first."""
    records, next_after = _page(reader, svc, filters, "access_report")
    log.info("access_report", records=len(records), format=format.value)
    if format is ExportFormat.JSON:
        return _json(
            {
                **_generated(reader),
                "count": len(records),
                "next_after": next_after,
                "records": [record_json(r) for r in records],
                "findings_counts": FINDINGS_COUNTS,
            }
        )
    stamp = _now().strftime("%Y%m%d%H%M%S")
    if format is ExportFormat.CSV:
        return _file(records_csv(records, ACCESS_COLUMNS), format, f"accesses-{stamp}")
    more = f"，下一页 after={next_after}" if next_after is not None else ""
    data = records_xlsx(
        records,
        ACCESS_COLUMNS,
        title="查阅记录报表",
        subtitle=f"共 {len(records)} 条{more}　生成于 {local(_now())}（北京时间）",
        sheet_name=ACCESS_SHEET,
    )
    return _file(data, format, f"accesses-{stamp}")


@router.get(
    "/v1/compliance/fhir/AuditEvent",
    tags=["compliance"],
    response_class=Response,
    responses={
        200: {
            "description": "A FHIR R5 Bundle (searchset) of AuditEvent resources",
            "content": {fhir.MEDIA_TYPE: {}},
        }
    },
)
def fhir_audit_events(reader: ReaderDep, svc: ServicesDep, filters: FiltersDep) -> Response:
    """The access records as a FHIR R5 `Bundle` of `AuditEvent`s (same filters and pages as
    `/v1/compliance/accesses`; the `next` link gives the following page). Compliance auditors
    (compliance_review); recorded as the access report is."""
    records, next_after = _page(reader, svc, filters, "fhir_export")
    path = "/v1/compliance/fhir/AuditEvent"
    document = fhir.bundle(
        records,
        self_url=f"{path}?{urlencode(filters.params(filters.after))}",
        next_url=f"{path}?{urlencode(filters.params(next_after))}" if next_after else None,
    )
    log.info("fhir_audit_events", records=len(records))
    return _json(document, media_type=fhir.MEDIA_TYPE)


# --- the annual audit report ---------------------------------------------------------------------


class AnnualFormat(StrEnum):
    HTML = "html"
    PDF = "pdf"
    JSON = "json"


@router.get(
    "/v1/compliance/annual-report",
    tags=["compliance"],
    response_class=Response,
    responses={
        200: {
            "description": "The signed annual report (`format`: html, pdf or json)",
            "content": {media_type: {} for media_type in REPORT_MEDIA_TYPES.values()},
        }
    },
)
def annual_report(
    request: Request,
    reader: ReaderDep,
    svc: ServicesDep,
    year: Annotated[int, Query(ge=2000, le=2100, description="the calendar year (Beijing time)")],
    format: AnnualFormat = AnnualFormat.HTML,
) -> Response:
    """The annual compliance audit of minors' personal information (未成年人网络保护条例
    第三十七条): categories collected and how many files, who accessed them (by role and
    unit), disclosures and exports, refusals, break-glass uses and their reviews, findings
    and outcomes, key rotations and verification results; counts only, in Chinese, signed.
    Compliance auditors (compliance_review); producing it is recorded first."""
    # Scope first: a refusal is recorded whatever the year asked for (a 422 before it would
    # leave a non-auditor's attempt unrecorded).
    reader.compliance_report_scope()
    if year > _now().astimezone(CHINA).year:  # the year as Beijing counts it
        raise InvalidFilter("year must not be later than the current year", field="year")
    evidence: Evidence = request.app.state.evidence
    document = annual_document(
        svc.application, readmodels_of(svc), evidence, year=year, actor=reader.actor
    )
    reader.record_compliance_report("annual_report", [])
    try:
        data = render_annual(
            document, format.value, evidence.signing_key, chromium=svc.settings.chromium
        )
    except PdfUnavailable as exc:
        log.warning("annual_report_pdf_unavailable")
        return problem(
            request,
            status=503,
            code="report-unavailable",
            title="The PDF report cannot be printed here",
            detail=str(exc),
        )
    log.info("annual_report_issued", year=year, format=format.value, size=len(data))
    return Response(
        data,
        media_type=REPORT_MEDIA_TYPES[format.value],
        headers={
            "Content-Disposition": f'attachment; filename="annual-report-{year}.{format.value}"',
            "Cache-Control": "no-store",
        },
    )
