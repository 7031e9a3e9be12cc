"""The investigation workbench (一案一倒查): a case's timeline, knowledge matrix and deadlines.

`GET /v1/cases/{id}/timeline[?as_of=T]`, `/knowledge[?as_of=T]`, `/deadlines`: audited reads
through the one reader (`gateway.http.reader.AuditedReader.timeline`, `.knowledge`,
`.deadlines`), for investigators under an investigation order in force for the case, declaring
purpose `investigation`. Anyone else is refused, the refusal stored (`AccessDenied`) and
answered as a case read's: 403 for a purpose the role may not declare, otherwise 404 "no such
case is visible to you" after the refusal floor. The grant is stored before the analysis is
built (`CaseAccessed` with the fields the answer discloses, and the access log's). The analyses
are `projections.investigation`; the answers hold codes, dates, unit codes and user ids, never
a name, an ID number or free text.

`as_of` is an instant with its offset, between 2000-01-01 and 2099-12-31 (422 naming `as_of`
otherwise). The consultation deadline is the setting `CASETRAIL_CONSULTATION_DEADLINE_HOURS`;
the period for signing for an assignment is the scheduler's (`domain.deadlines.Periods`).
Proven by tests/integration/test_workbench.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import AfterValidator, AwareDatetime

from domain.commands import EARLIEST_DATE, LATEST_DATE
from domain.deadlines import Periods
from gateway.http.dependencies import ReaderDep, ServicesDep
from gateway.logs import get_logger

log = get_logger("casetrail.api")
router = APIRouter()


def _within_bounds(value: datetime) -> datetime:
    # Checked on the instant's own date, before any arithmetic: near year 1 or 9999, moving it
    # to another offset overflows.
    if not EARLIEST_DATE <= value.date() <= LATEST_DATE:
        raise ValueError(f"must be an instant between {EARLIEST_DATE} and {LATEST_DATE}")
    return value


AsOf = Annotated[
    Annotated[AwareDatetime, AfterValidator(_within_bounds)] | None,
    Query(
        description="the instant to look back from, with its offset (default: now)",
        json_schema_extra={
            "formatMinimum": f"{EARLIEST_DATE}T00:00:00Z",
            "formatMaximum": f"{LATEST_DATE}T23:59:59Z",
        },
    ),
]


@router.get("/v1/cases/{case_id}/timeline", tags=["investigation"])
def case_timeline(case_id: UUID, reader: ReaderDep, as_of: AsOf = None) -> dict[str, Any]:
    """Everything that happened to the case, in stored order: changes, reads granted and
    refused, notices and their receipts, signatures, consultations, deadline facts, orders;
    each with `label_zh` and the file's status and risk before and after. Investigators under
    an order; the reading is recorded first."""
    answer = reader.timeline(case_id, as_of=as_of)
    log.info("timeline_read", case_id=str(case_id), entries=len(answer["entries"]))
    return answer


@router.get("/v1/cases/{case_id}/knowledge", tags=["investigation"])
def case_knowledge(case_id: UUID, reader: ReaderDep, as_of: AsOf = None) -> dict[str, Any]:
    """Who knew each fact of the case (the clue, the identity, each issue, each risk level, the
    description, each assignment and escalation), from when and how. Investigators under an
    order; the reading is recorded first."""
    answer = reader.knowledge(case_id, as_of=as_of)
    log.info("knowledge_read", case_id=str(case_id), facts=len(answer["facts"]))
    return answer


@router.get("/v1/cases/{case_id}/deadlines", tags=["investigation"])
def case_deadlines(case_id: UUID, reader: ReaderDep, svc: ServicesDep) -> dict[str, Any]:
    """Time from finding to report, consultation, assignment, signing for and first
    intervention; each duty (consultation, signing for, due dates, quarterly updates) met, late,
    missed or open, with the unit and person responsible. Investigators under an order."""
    due = timedelta(hours=svc.settings.consultation_deadline_hours)
    # The scheduler's periods, from the application's environment (domain.deadlines).
    sign_for = Periods.from_env(svc.application.env.get).sign_for
    answer = reader.deadlines(
        case_id, now=datetime.now(UTC), consultation_due=due, sign_for_due=sign_for
    )
    log.info("deadlines_read", case_id=str(case_id), checks=len(answer["checks"]))
    return answer
