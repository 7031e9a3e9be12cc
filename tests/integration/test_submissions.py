"""Ledger submissions with receipts (报送, issue 17) over HTTP, on SQLite and PostgreSQL: a
quarter's submission missing at the end of its due day becomes a fact (stored once by the
deadline scan) and appears in the street's worklist; the village then submits late; the
digest equals one computed independently from the village's own ledger rows, and changes when
any row of the period changes (not when a file of another period does); the office receives
it by its digest."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.clock import local_today
from domain.quarters import Quarter, start_of_day
from domain.submissions import LedgerSubmissionMissed
from domain.taxonomy import PROTECTION_FUNCTION_LABELS, Role
from gateway.messaging.scheduler import DeadlineScheduler
from gateway.settings import Settings
from projections.readmodels import ReadModels
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import planted_case

STREET = "chengguan-street"
VILLAGE, OTHER_VILLAGE = "dongshan-village", "xihe-village"
OFFICE = "chengguan-governance-office"
# The quarter before today's: its submission is due by its last day, already past.
PAST = Quarter.of(Quarter.of(local_today()).start - timedelta(days=1))
INITIAL_DUE = PAST.start + timedelta(days=14)


@pytest.fixture
def settings(home: Path, store_url: str) -> Settings:
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": store_url,
            "CASETRAIL_INITIAL_SUBMISSION_DUE": INITIAL_DUE.isoformat(),
        }
    )


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def synced(client: TestClient) -> ReadModels:
    readmodels: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()
    return readmodels


def independent_digest(period: str, rows: list[dict[str, Any]]) -> str:
    """docs/specs/submission.md, from the ledger rows the village's own GET /v1/ledger gives."""
    lines = sorted(
        "\t".join(str(r[k]) for k in ("id", "version", "found_on", "status", "risk", "updated_at"))
        for r in rows
    )
    text = "\t".join([STREET, VILLAGE, period, str(len(lines))]) + "\n"
    text += "".join(line + "\n" for line in lines)
    return hashlib.sha256(b"casetrail/ledger-submission/v1\n" + text.encode()).hexdigest()


def test_a_late_quarterly_submission_is_a_fact_then_submitted_received_and_digested(
    client: TestClient, auth: TokenFactory
) -> None:
    application = application_of(client)
    register_units(application, VILLAGE, OTHER_VILLAGE, OFFICE)
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    ids = []
    for seed, found_on in ((1, PAST.start + timedelta(days=1)), (2, PAST.end), (3, local_today())):
        body = planted_case(VILLAGE, seed).body
        body["found_on"] = found_on.isoformat()
        created = client.post("/v1/cases", json=body, headers=reporter)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    in_period, later = ids[:2], ids[2]

    # Before the end of the due day: no fact for the quarter (the initial one is past).
    scheduler = DeadlineScheduler(application)
    before = start_of_day(PAST.end) + timedelta(hours=23)
    stored = [f for f in scheduler.scan(before) if isinstance(f, LedgerSubmissionMissed)]
    assert {(f.village, f.period) for f in stored} == {
        (VILLAGE, "initial"),
        (OTHER_VILLAGE, "initial"),
    }
    # At the end of the due day: both villages' quarter missed, each fact once.
    after = start_of_day(PAST.end + timedelta(days=1)) + timedelta(minutes=1)
    stored = [f for f in scheduler.scan(after) if isinstance(f, LedgerSubmissionMissed)]
    assert {(f.village, f.period) for f in stored} == {
        (VILLAGE, PAST.code),
        (OTHER_VILLAGE, PAST.code),
    }
    assert {f.due_on for f in stored} == {PAST.end.isoformat()}
    assert [f for f in scheduler.scan(after) if isinstance(f, LedgerSubmissionMissed)] == []

    def worklist() -> dict[str, Any]:
        answer = client.get(
            "/v1/worklists/submissions", params={"period": PAST.code}, headers=coordinator
        )
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    listed = worklist()
    assert {v["village"]: (v["state"], v["overdue"]) for v in listed["villages"]} == {
        VILLAGE: ("missing", True),
        OTHER_VILLAGE: ("missing", True),
    }
    assert {(m["village"], m["period"]) for m in listed["missed"]} >= {
        (VILLAGE, PAST.code),
        (OTHER_VILLAGE, PAST.code),
    }

    # The village submits, late; the digest is the spec's over its own ledger rows.
    synced(client)
    submitted = client.post("/v1/submissions", json={"period": PAST.code}, headers=reporter)
    assert submitted.status_code == 201, submitted.text
    first = submitted.json()
    latest = first["latest"]
    assert latest["late"] is True and latest["row_count"] == 2
    rows = client.get("/v1/ledger", headers=reporter).json()["rows"]
    assert latest["digest"] == independent_digest(
        PAST.code, [r for r in rows if r["id"] in in_period]
    )
    assert {v["village"]: v["state"] for v in worklist()["villages"]}[VILLAGE] == "submitted_late"

    # A file of a later period changes: the quarter's digest does not.
    follow = {"visited_on": local_today().isoformat(), "notes": "季度随访。"}
    done = client.post(f"/v1/cases/{later}/follow-ups", json=follow, headers=reporter)
    assert done.status_code == 201, done.text
    synced(client)
    again = client.post("/v1/submissions", json={"period": PAST.code}, headers=reporter).json()
    assert again["latest"]["digest"] == latest["digest"]
    # A row of the quarter changes: its digest does.
    done = client.post(f"/v1/cases/{in_period[0]}/follow-ups", json=follow, headers=reporter)
    assert done.status_code == 201, done.text
    synced(client)
    changed = client.post("/v1/submissions", json={"period": PAST.code}, headers=reporter).json()
    assert changed["latest"]["digest"] != latest["digest"]
    assert changed["latest"]["row_count"] == 2 and len(changed["submissions"]) == 3

    # The office receives the latest submission by its digest, once.
    receipt = f"/v1/submissions/{changed['id']}/receipt"
    stale = client.post(receipt, json={"digest": latest["digest"]}, headers=coordinator)
    assert stale.status_code == 422 and "digest" in stale.text
    assert (
        client.post(receipt, json={"digest": latest["digest"]}, headers=reporter).status_code == 403
    )
    received = client.post(
        receipt, json={"digest": changed["latest"]["digest"]}, headers=coordinator
    )
    assert received.status_code == 200, received.text
    assert received.json()["received"] is True
    twice = client.post(receipt, json={"digest": changed["latest"]["digest"]}, headers=coordinator)
    assert twice.status_code == 409
    assert {v["village"]: v["state"] for v in worklist()["villages"]}[VILLAGE] == "received"

    # Who sees a submission: its village and its street's office; not another village.
    other = auth(Role.REPORTER, OTHER_VILLAGE, purpose="follow_up")
    assert client.get(f"/v1/submissions/{changed['id']}", headers=other).status_code == 404
    assert client.get(f"/v1/submissions/{changed['id']}", headers=coordinator).status_code == 200
    # Not the office's to submit; a period not begun is refused, naming the field.
    assert (
        client.post("/v1/submissions", json={"period": PAST.code}, headers=coordinator).status_code
        == 403
    )
    future = Quarter.of(local_today()).next().next().code
    refused = client.post("/v1/submissions", json={"period": future}, headers=reporter)
    assert refused.status_code == 422 and "period" in refused.text


def test_the_quarterly_report_counts_interventions_by_function_and_overdue_submissions(
    client: TestClient, auth: TokenFactory
) -> None:
    application = application_of(client)
    register_units(application, VILLAGE, OTHER_VILLAGE, OFFICE)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    functions = ["family", "school", "family", "judicial", "online"]
    case_ids = [
        client.post("/v1/cases", json=planted_case(VILLAGE, 40 + i).body, headers=reporter).json()[
            "id"
        ]
        for i in range(2)
    ]
    for index, function in enumerate(functions):
        done = client.post(
            f"/v1/cases/{case_ids[index % 2]}/interventions",
            json={
                "function": function,
                "measure": "home_visit",
                "notes": "入户走访。",
                "done_on": local_today().isoformat(),
            },
            headers=coordinator,
        )
        assert done.status_code == 201, done.text
    # The current quarter's submission of one village is missed, as of its last day's end.
    current = Quarter.of(local_today())
    DeadlineScheduler(application).scan(start_of_day(current.end + timedelta(days=1)))
    synced(client)
    answer = client.get(
        "/v1/reports/quarterly", params={"as_of": current.end.isoformat()}, headers=coordinator
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    expected = {f: functions.count(f) for f in set(functions)}
    counted = {c["code"]: c["count"] for c in report["interventions_by_function"]}
    assert {k: v for k, v in counted.items() if v} == expected
    assert len(counted) == 6  # every protection function listed, 0 when none
    overdue = {c["code"]: c["count"] for c in report["overdue"]}
    assert overdue["submissions"] == 2  # both villages, the current quarter
    # No roster in this scenario: every coverage line is there, at zero (tests/projections/
    # test_coverage.py checks the figures against a roster).
    assert {c["code"]: c["count"] for c in report["coverage"]} == dict.fromkeys(
        ("roster_minors", "visited", "key_students", "key_visited", "needs_letter", "letters"), 0
    )

    sheet = client.get(
        "/v1/reports/quarterly.xlsx", params={"as_of": current.end.isoformat()}, headers=coordinator
    )
    assert sheet.status_code == 200, sheet.text
    workbook = openpyxl.load_workbook(io.BytesIO(sheet.content))
    (name,) = workbook.sheetnames
    rows = [tuple(r) for r in workbook[name].iter_rows(min_row=4, values_only=True)]
    by_function = {r[1]: r[2] for r in rows if r[0] == "按保护职能干预"}
    assert by_function == {
        label: functions.count(str(f)) for f, label in PROTECTION_FUNCTION_LABELS.items()
    }
    assert ("逾期事项", "逾期未报送台账", 2) in rows
    assert client.get("/v1/reports/quarterly.xlsx", headers=reporter).status_code == 403
