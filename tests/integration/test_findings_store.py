"""Findings are events of their own streams, stored once (issue 15; `domain.compliance.findings`).

On a real SQLite file and a real PostgreSQL schema: a finding raised twice is stored once (its id
derives from rule and evidence); `CaseTrail.findings` lists and filters them; only a compliance
auditor reviews, once; a follow-up opens for a violation only and completes once; a superseded
finding is kept, marked, and cannot be reviewed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from domain import errors
from domain.access import Actor
from domain.application import CaseTrail
from domain.compliance.findings import (
    Finding,
    FindingAlreadyReviewed,
    FindingFilter,
    FindingStatus,
    FindingSupersededError,
    FollowUpNotAllowed,
    Outcome,
    finding_id,
)
from domain.taxonomy import Role
from gateway.store.eventstore import new_key_text, store_environment

AUDITOR = Actor(user="auditor-1", role=Role.COMPLIANCE_AUDITOR, unit="audit", street="s-1")
COORDINATOR = Actor(user="coord-1", role=Role.COORDINATOR, unit="office", street="s-1")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def application(store_url: str) -> Iterator[CaseTrail]:
    if store_url.startswith("sqlite:///"):
        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app = CaseTrail(env=store_environment(store_url, [new_key_text()]))
    try:
        yield app
    finally:
        app.close()


def raised(rule: str, evidence: list[int], *, unit: str = "pcs-1", person: str = "u-1") -> Finding:
    return Finding(
        rule=rule,
        evidence=evidence,
        person=person,
        role="unit_member",
        unit=unit,
        street="s-1",
        case_ids=[str(uuid4())],
        window_start=T0.isoformat(),
        window_end=(T0 + timedelta(minutes=5)).isoformat(),
        detail={"count": len(evidence)},
    )


def test_a_finding_raised_twice_is_stored_once(application: CaseTrail) -> None:
    first = application.record_findings([raised("repeated_refusals", [3, 1, 2])])
    again = application.record_findings(
        [raised("repeated_refusals", [1, 2, 3]), raised("bulk_browsing", [1, 2, 3])]
    )
    assert [f.id for f in first] == [finding_id("repeated_refusals", [1, 2, 3])]
    assert [f.rule for f in again] == ["bulk_browsing"]
    listed = application.findings()
    assert sorted(f.rule for f in listed) == ["bulk_browsing", "repeated_refusals"]
    assert application.findings(FindingFilter(rule="bulk_browsing"))[0].evidence == (1, 2, 3)


def test_filters_review_follow_up_and_supersede(application: CaseTrail) -> None:
    a, b, c = (
        raised("after_hours", [10], unit="pcs-1"),
        raised("after_hours", [11], unit="school-2", person="u-2"),
        raised("bulk_browsing", [12, 13]),
    )
    application.record_findings([a, b, c])
    assert [f.id for f in application.findings(FindingFilter(unit="school-2"))] == [b.id]
    assert [f.id for f in application.findings(FindingFilter(person="u-2"))] == [b.id]
    assert application.findings(FindingFilter(until=T0)) == []
    assert len(application.findings(FindingFilter(since=T0, until=T0 + timedelta(hours=1)))) == 3

    with pytest.raises(errors.NotPermitted):
        application.review_finding(a.id, Outcome.VIOLATION, "looked without a task", COORDINATOR)
    with pytest.raises(FollowUpNotAllowed):
        application.open_finding_follow_up(a.id, "pcs-1 head", date(2026, 4, 1), AUDITOR)
    application.review_finding(a.id, Outcome.VIOLATION, "looked without a task", AUDITOR)
    with pytest.raises(FindingAlreadyReviewed):
        application.review_finding(a.id, Outcome.JUSTIFIED, "second thoughts", AUDITOR)
    application.open_finding_follow_up(a.id, "pcs-1 head", date(2026, 4, 1), AUDITOR)
    application.complete_finding_follow_up(a.id, date(2026, 3, 20), "trained", AUDITOR)
    application.review_finding(b.id, Outcome.JUSTIFIED, "on duty that night", AUDITOR)

    # A re-run no longer raising a, b, c: the reviewed ones stay as they are, c is superseded.
    assert application.supersede_findings([a.id, b.id, c.id], "digest-2", AUDITOR.as_record()) == 1
    with pytest.raises(FindingSupersededError):
        application.review_finding(c.id, Outcome.JUSTIFIED, "too late", AUDITOR)
    status = {f.id: f.status for f in application.findings()}
    assert status == {
        a.id: FindingStatus.VIOLATION,
        b.id: FindingStatus.JUSTIFIED,
        c.id: FindingStatus.SUPERSEDED,
    }
    (done,) = application.findings(FindingFilter(status=FindingStatus.VIOLATION))
    assert done.follow_up is not None and done.follow_up["completed"]["on"] == "2026-03-20"
