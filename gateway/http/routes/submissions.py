"""Ledger submissions with receipts (报送, issue 17).

- `POST /v1/submissions` `{"period": "initial" | "2026Q3"}`: a village's committee (a reporter
  whose unit is the village's code) signs off the rows of its ledger for the period; answers
  the submission with its row count and digest (docs/specs/submission.md) and whether it came
  after the due date (`late`).
- `POST /v1/submissions/{id}/receipt` `{"digest"}`: the street's coordinator or supervisor
  received it (`LedgerReceived`), naming the digest received.
- `GET /v1/submissions/{id}`: the submission, to its village and its street's office.
- `GET /v1/worklists/submissions[?period=]`: the street's villages and where each stands for
  the period (received, submitted, submitted late, missing), and every missed-submission fact.

Codes, ids, counts and digests only. Proven by tests/integration/test_submissions.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import Field

from domain import commands as cmd
from domain import errors
from domain.access import Channel
from domain.application import NOT_VISIBLE_RULE
from domain.quarters import Quarter
from domain.submissions import LedgerSubmission, Period
from gateway.http.dependencies import ActorDep, ReaderDep, Services, ServicesDep, readmodels_of
from gateway.http.routes.ledger import Day
from gateway.logs import get_logger
from projections.ledger.exports import quarterly_xlsx
from projections.ledger.quarters import today
from projections.ledger.reports import QuarterlyReport, quarterly_report, with_missed_submissions
from projections.ledger.submissions import submission_rows
from projections.screening.coverage import coverage_counts

log = get_logger("casetrail.api")
router = APIRouter()
XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

PeriodText = Annotated[str, Field(max_length=8, pattern=r"^(initial|\d{4}Q[1-4])$")]


class SubmitLedger(cmd.Command):
    period: PeriodText = Field(description="`initial` (首次报送) or a quarter, e.g. `2026Q3`")


class ReceiveLedger(cmd.Command):
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


@router.post("/v1/submissions", status_code=201, tags=["submissions"])
def submit(body: SubmitLedger, reader: ReaderDep, svc: ServicesDep) -> dict[str, Any]:
    """报送: your village signs off its ledger for the period (a village committee's reporter)."""
    scope = reader.ledger_scope(channel=Channel.LEDGER)
    if scope.reporting_unit is None:
        refused = errors.NotPermitted(
            "only a village's committee (reporter) submits its ledger; the street's office "
            "receives it (POST /v1/submissions/{id}/receipt)"
        )
        # Recorded before the answer, as every refused command (issue 15).
        svc.application.record_command_refusal(reader.actor, "submit_ledger", None, refused.code)
        raise refused
    period = Period.parse(body.period)
    application = svc.application
    with readmodels_of(svc).ledger.reading() as db:
        rows = submission_rows(db, scope, period, application.initial_submission_due)
    submission = application.submit_ledger(reader.actor, period, rows)
    log.info("ledger_submitted", period=period.code, rows=len(rows))
    return submission.as_dict()


@router.post("/v1/submissions/{submission_id}/receipt", tags=["submissions"])
def receive(
    submission_id: UUID, body: ReceiveLedger, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """The street's office received the submission holding `digest` (签收)."""
    submission = svc.application.receive_ledger(submission_id, body.digest, actor)
    log.info("ledger_received", period=submission.period)
    return submission.as_dict()


@router.get("/v1/submissions/{submission_id}", tags=["submissions"])
def read_submission(submission_id: UUID, actor: ActorDep, svc: ServicesDep) -> dict[str, Any]:
    """A submission, to its village's committee and its street's office."""
    found = svc.application.submission(submission_id)
    if found is None or not _may_see(actor, found):
        # Recorded whether it exists or not (`not_visible`), before the hiding answer.
        svc.application.record_command_refusal(actor, "read_submission", None, NOT_VISIBLE_RULE)
        raise errors.SubmissionNotFound("no submission with this id is visible to you")
    return found.as_dict()


def _may_see(actor: Any, submission: LedgerSubmission) -> bool:
    if actor.street != submission.street:
        return False
    return str(actor.role) in ("coordinator", "supervisor") or actor.unit == submission.village


@router.get("/v1/worklists/submissions", tags=["worklists"])
def submissions_worklist(
    reader: ReaderDep,
    svc: ServicesDep,
    period: Annotated[str | None, Query(max_length=8, pattern=r"^(initial|\d{4}Q[1-4])$")] = None,
) -> dict[str, Any]:
    """The street's villages for a period (the current quarter by default): received,
    submitted, submitted late or missing; and every missed-submission fact (逾期未报送)."""
    scope = reader.report_scope()
    application = svc.application
    chosen = Period.parse(period or Quarter.of(today()).code)
    due = chosen.due_on(application.initial_submission_due)
    villages = []
    for village in application.villages(scope.street):
        found = application.ledger_submission(scope.street, village.unit_id, chosen.code)
        state = "missing"
        if found is not None and found.submissions:
            answer = found.as_dict()
            latest = answer["latest"]
            state = "received" if answer["received"] else "submitted"
            if latest["late"] and state == "submitted":
                state = "submitted_late"
        villages.append(
            {
                "village": village.unit_id,
                "state": state,
                "state_label": _STATE_LABELS[state],
                "submission_id": str(found.id) if found is not None else None,
                "overdue": state == "missing" and today() > due,
            }
        )
    missed = application.missed_submissions(scope.street)
    return {
        "street": scope.street,
        "period": chosen.code,
        "period_label": chosen.label,
        "due_on": due.isoformat(),
        "villages": villages,
        "missed": [
            {
                "village": m.village,
                "period": m.period,
                "period_label": Period(m.period).label,
                "due_on": m.due_on,
                "recorded_at": m.timestamp.isoformat(),
                "kind_label": "逾期未报送",
            }
            for m in missed
        ],
    }


_STATE_LABELS = {
    "missing": "未报送",
    "submitted": "已报送",
    "submitted_late": "逾期报送",
    "received": "已接收",
}


# --- the quarterly report as the office hands it on (季度报表 .xlsx) ---


@router.get(
    "/v1/reports/quarterly.xlsx",
    tags=["reports"],
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "the quarterly report (.xlsx)"}},
)
def quarterly_xlsx_report(reader: ReaderDep, svc: ServicesDep, as_of: Day = None) -> Response:
    """The street's quarterly report (季度报表) as a workbook in the Chinese layout the office
    hands on: totals, by category, subtype, village, risk and status, the units' tasks,
    interventions by protection function, overdue counts (tasks, ledger submissions missed)
    and coverage. Counts only. For the street's coordinators and supervisors."""
    scope = reader.report_scope()
    readmodels = readmodels_of(svc)
    day = as_of or today()
    with readmodels.reports.reading() as db:
        report = quarterly_report(db, scope.street, day)
    report = report_with_submissions(svc, report)
    with readmodels.screening.reading() as db:
        report = replace(report, coverage=coverage_counts(db, scope.street, report.quarter))
    return Response(
        quarterly_xlsx(report),
        media_type=XLSX,
        headers={
            "Content-Disposition": (
                f'attachment; filename="quarterly-{scope.street}-{report.quarter.code}.xlsx"'
            )
        },
    )


def report_with_submissions(svc: Services, report: QuarterlyReport) -> QuarterlyReport:
    """The report with its street's missed ledger submissions among the overdue counts."""
    missed = svc.application.missed_submissions(report.street)
    return with_missed_submissions(report, [m.due_on for m in missed])
