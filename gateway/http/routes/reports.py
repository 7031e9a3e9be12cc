"""`GET /v1/investigations/{id}/report?format=html|pdf|json`: the signed investigation report
(一案一倒查报告) of issue 13.

An audited read: the one reader (`AuditedReader.investigation_report`) grants it only to an
investigator the investigation names, and each of its case files by the case read's rules
(content and access log), storing the access events before anything is built; a refusal is
stored and answered as a case read's. The report is then built (`gateway.reports.document`),
rendered, signed with the service's signing key (`docs/specs/report.md`; check it with
`casetrail verify-report FILE --public-key PEM`) and recorded on the investigation as issued.
A PDF that cannot be printed (no Chromium) answers 503 `report-unavailable`, naming the html
form as the way out; nothing else of the request is echoed.

Proven by tests/reports/test_route.py.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Final
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from gateway.evidence.maintainer import Evidence
from gateway.http.dependencies import ReaderDep, ServicesDep
from gateway.http.problems import problem
from gateway.logs import get_logger
from gateway.reports.pdf import PdfUnavailable
from gateway.reports.render import MEDIA_TYPES
from gateway.reports.service import make_report
from gateway.reports.signing import Form

log = get_logger("casetrail.api")

router = APIRouter()


class ReportFormat(StrEnum):
    HTML = "html"
    PDF = "pdf"
    JSON = "json"


FORMS: Final[dict[ReportFormat, Form]] = {
    ReportFormat.HTML: "html",
    ReportFormat.PDF: "pdf",
    ReportFormat.JSON: "json",
}


@router.get(
    "/v1/investigations/{investigation_id}/report",
    tags=["investigations"],
    response_class=Response,
    responses={
        200: {
            "description": "The signed report (`format`: html, pdf or json; docs/specs/report.md)",
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
        }
    },
)
def investigation_report(
    request: Request,
    investigation_id: UUID,
    reader: ReaderDep,
    svc: ServicesDep,
    format: Annotated[
        ReportFormat, Query(description="html (default), pdf or json")
    ] = ReportFormat.HTML,
) -> Response:
    """The investigation's report: its case files' timelines (an SVG chart), knowledge
    matrices, deadline checks with misses marked, the findings and rectification items, and
    an integrity statement against the latest signed checkpoint; self-contained Chinese HTML,
    its PDF, or the JSON document, each signed by the service. For the investigators the
    investigation names; every case file's disclosure is recorded first."""
    investigation = reader.investigation_report(investigation_id)
    # Built by the wiring point (gateway.bootstrap.api), set by the app's lifespan.
    evidence: Evidence = request.app.state.evidence
    try:
        data = make_report(
            svc.application,
            evidence,
            investigation,
            FORMS[format],
            actor=reader.actor,
            key=evidence.signing_key,
            chromium=svc.settings.chromium,
            consultation_due=timedelta(hours=svc.settings.consultation_deadline_hours),
        )
    except PdfUnavailable as exc:
        log.warning("report_pdf_unavailable")
        return problem(
            request,
            status=503,
            code="report-unavailable",
            title="The PDF report cannot be printed here",
            detail=str(exc),
        )
    log.info("investigation_report_issued", format=format.value, size=len(data))
    return Response(
        data,
        media_type=MEDIA_TYPES[format.value],
        headers={
            "Content-Disposition": (
                f'attachment; filename="investigation-{investigation_id}.{format.value}"'
            ),
            "Cache-Control": "no-store",
        },
    )
