"""Ledgers, worklists, reports and exports over HTTP through the real ASGI app, on SQLite and
PostgreSQL: filters and pages, each role's scope, access events, deadlines, the quarterly
report and its exact re-issue, the .xlsx ledger, and full-identity exports as audited
disclosures."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import openpyxl
import pytest
from fastapi.testclient import TestClient

from domain.access import CaseAccessed
from domain.application import CaseTrail
from domain.case import Case
from domain.clock import local_today
from domain.identity import mask_name
from domain.taxonomy import CATEGORY_LABELS, Role
from gateway.cli.demo import MEMBER_UNITS
from projections.ledger.exports import FIRST_DATA_ROW, LEDGER_SHEET, SUMMARY_SHEET, summary_lines
from projections.ledger.quarters import Quarter, stamp, today
from projections.ledger.reports import quarterly_report
from projections.ledger.view import HEADERS
from projections.readmodels import VIEW_NAMES, ReadModels
from tests.conftest import TokenFactory
from tests.projections.workload import Workload

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
STREET = "chengguan-street"


def services(client: TestClient) -> Any:
    return client.app.state.services  # type: ignore[attr-defined]


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = services(client).application
    return found


def synced(client: TestClient) -> ReadModels:
    readmodels: ReadModels = services(client).readmodels
    readmodels.catch_up()
    return readmodels


def cases_of(client: TestClient, ids: list[UUID]) -> dict[str, Case]:
    found = {}
    for case_id in ids:
        case: object = application_of(client).repository.get(case_id)
        assert isinstance(case, Case)
        found[str(case_id)] = case
    return found


@pytest.fixture
def populated(client: TestClient) -> tuple[Workload, dict[str, Case]]:
    workload = Workload(application_of(client), seed=41)
    ids = workload.cases(24)
    synced(client)
    return workload, cases_of(client, ids)


def coordinator(auth: TokenFactory) -> dict[str, str]:
    return auth(Role.COORDINATOR, OFFICE, purpose="consultation")


def all_rows(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/ledger", params={**params, "per_page": 200}, headers=headers)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["rows"]
    assert response.json()["total"] == len(rows)
    return rows


# --- the ledger ----------------------------------------------------------------------------------


def test_ledger_rows_filters_and_pages(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    _, cases = populated
    headers = coordinator(auth)
    rows = all_rows(client, headers)
    assert {r["id"] for r in rows} == set(cases)
    assert [r["found_on"] for r in rows] == sorted((r["found_on"] for r in rows), reverse=True)
    for row in rows:
        case = cases[row["id"]]
        assert row["name"] == mask_name(case.minor["name"]) and "*" in row["name"]
        assert row["id_number"].startswith(case.minor["id_number"][:6])
        assert row["id_number"].endswith(case.minor["id_number"][-4:])
        assert "*" * 8 in row["id_number"]
        assert row["status"] == case.status and row["risk"] == case.risk
        assert [(i["category"], i["subtype"]) for i in row["issues"]] == [
            (i["category"], i["subtype"]) for i in case.issues
        ]
        assert row["issues"][0]["category_label"] in CATEGORY_LABELS.values()
        assert row["follow_ups"]["count"] == len(case.follow_ups)
        assert row["interventions"]["count"] == len(case.interventions)
        assert {a["id"] for a in row["assignments"]} == set(case.assignments)
        assert row["version"] == case.version

    def expect(predicate: Any) -> set[str]:
        return {cid for cid, c in cases.items() if predicate(c)}

    checks: list[tuple[dict[str, Any], set[str]]] = [
        ({"village": VILLAGE}, expect(lambda c: c.minor["village"] == VILLAGE)),
        ({"status": "closed"}, expect(lambda c: c.status == "closed")),
        ({"risk": "high"}, expect(lambda c: c.risk == "high")),
        (
            {"category": "mental_health"},
            expect(lambda c: any(i["category"] == "mental_health" for i in c.issues)),
        ),
        ({"school": "东山村小学"}, expect(lambda c: c.minor["school"] == "东山村小学")),
    ]
    some = next(iter(cases.values())).issues[0]
    checks.append(
        (
            {"category": some["category"], "subtype": some["subtype"]},
            expect(lambda c: some in c.issues),
        )
    )
    middle = sorted(c.found_on for c in cases.values())[len(cases) // 2]
    checks.append(({"found_from": middle}, expect(lambda c: c.found_on >= middle)))
    checks.append(({"found_to": middle}, expect(lambda c: c.found_on <= middle)))
    for params, expected in checks:
        found = {r["id"] for r in all_rows(client, headers, **params)}
        assert found == expected, params
    assert any(expected for _, expected in checks[:4]), "the filters were tested on nothing"

    pages = [
        client.get("/v1/ledger", params={"page": n, "per_page": 10}, headers=headers).json()
        for n in (1, 2, 3)
    ]
    assert [len(p["rows"]) for p in pages] == [10, 10, 4]
    assert {r["id"] for p in pages for r in p["rows"]} == set(cases)
    assert pages[0]["total"] == 24
    # Freshness: the position the page was read at; the lag counts the access events the
    # pages themselves just recorded, which the ledger skips but has not yet passed.
    assert pages[0]["position"] > 0
    assert pages[0]["lag"] >= 0


def test_each_role_sees_its_scope_only(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    _, cases = populated
    reporter_rows = all_rows(client, auth(Role.REPORTER, VILLAGE, purpose="follow_up"))
    assert {r["id"] for r in reporter_rows} == {
        cid for cid, c in cases.items() if c.reporting_unit == VILLAGE
    }
    police = MEMBER_UNITS[next(iter(MEMBER_UNITS))]
    member_rows = all_rows(client, auth(Role.UNIT_MEMBER, police, purpose="intervention"))
    held = {
        cid
        for cid, c in cases.items()
        if any(a["unit"] == police and a["ended"] is None for a in c.assignments.values())
    }
    assert held <= {r["id"] for r in member_rows}
    # Ended assignments stay in sight for the grace period only; nothing else appears.
    ever = {
        cid for cid, c in cases.items() if any(a["unit"] == police for a in c.assignments.values())
    }
    assert {r["id"] for r in member_rows} <= ever
    assert held, "the workload assigned nothing to this unit"
    supervisor = all_rows(client, auth(Role.SUPERVISOR, OFFICE, purpose="consultation"))
    assert {r["id"] for r in supervisor} == set(cases)
    elsewhere = auth(Role.COORDINATOR, "far-office", street="far-street", purpose="consultation")
    assert all_rows(client, elsewhere) == []
    for role, purpose in (
        (Role.INVESTIGATOR, "investigation"),
        (Role.COMPLIANCE_AUDITOR, "compliance_review"),
    ):
        refused = client.get("/v1/ledger", headers=auth(role, "county", purpose=purpose))
        assert refused.status_code == 403
        assert refused.json()["type"] == "urn:casetrail:problem:not-permitted"
    wrong_purpose = client.get(
        "/v1/ledger", headers=auth(Role.UNIT_MEMBER, police, purpose="consultation")
    )
    assert wrong_purpose.status_code == 403
    assert wrong_purpose.json()["errors"][0]["field"] == "X-Purpose-Of-Use"


def test_a_unit_member_sees_only_the_detail_its_function_needs(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    """The rows' fields are decided by the access rules, file by file."""
    _, cases = populated
    school_unit = MEMBER_UNITS[next(f for f in MEMBER_UNITS if f == "school")]
    rows = all_rows(client, auth(Role.UNIT_MEMBER, school_unit, purpose="intervention"))
    assert rows, "the workload assigned nothing to the school district office"
    for row in rows:
        shown = {i["category"] for i in row.get("issues", [])}
        assert shown <= {"growth_environment", "social_abnormality", "mental_health"}
        assert "follow_ups" not in row and "interventions" not in row
        assert {c["code"] for c in row["categories"]} == {
            i["category"] for i in cases[row["id"]].issues
        }


def test_a_ledger_page_records_one_access_event_per_file_shown(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    response = client.get("/v1/ledger", params={"per_page": 5}, headers=coordinator(auth))
    assert response.status_code == 200
    shown = [UUID(r["id"]) for r in response.json()["rows"]]
    for case_id in shown:
        events = [
            e for e in application_of(client).access_events(case_id) if isinstance(e, CaseAccessed)
        ]
        (event,) = events
        assert event.rule == "ledger:coordinator_same_street"
        assert event.purpose == "consultation"
        assert event.request_id == response.headers["X-Request-ID"]
        assert {"minor.name:masked", "minor.school", "minor.gender", "status"} <= set(event.fields)
        assert "minor.name" not in event.fields and "minor.id_number" not in event.fields


def test_bad_filters_are_422_naming_the_field(client: TestClient, auth: TokenFactory) -> None:
    headers = coordinator(auth)
    for params, field in (
        ({"subtype": "no_such_subtype"}, "subtype"),
        ({"category": "mental_health", "subtype": "bullying"}, "subtype"),
        ({"category": "weather"}, "category"),
        ({"risk": "extreme"}, "risk"),
        ({"found_from": "2026-02-30"}, "found_from"),
        ({"found_from": "2026-05-01", "found_to": "2026-04-01"}, "found_from"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": 1000}, "per_page"),
    ):
        response = client.get("/v1/ledger", params=params, headers=headers)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == field, params
    no_purpose = client.get("/v1/ledger", headers=auth(Role.COORDINATOR, OFFICE))
    assert no_purpose.status_code == 422
    assert no_purpose.json()["errors"][0]["field"] == "X-Purpose-Of-Use"


# --- worklists and deadlines ---------------------------------------------------------------------


def test_worklists_flag_what_waits_and_what_is_overdue(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    _, cases = populated
    headers = coordinator(auth)
    waiting = client.get("/v1/worklists/consultations", headers=headers).json()
    expected = {cid for cid, c in cases.items() if c.status == "awaiting_consultation"}
    assert {i["case_id"] for i in waiting["items"]} == expected
    assert waiting["deadline_hours"] == 24
    assert waiting["overdue"] == 0  # all reported moments ago
    assert all("name" not in i and "issues" not in i for i in waiting["items"])

    open_assignments = {
        a["id"]: a
        for c in cases.values()
        for a in c.assignments.values()
        if a["ended"] is None and c.status != "closed"
    }
    listed = client.get("/v1/worklists/assignments", headers=headers).json()
    assert {i["assignment_id"] for i in listed["items"]} == set(open_assignments)
    assert [i["due_on"] for i in listed["items"]] == sorted(i["due_on"] for i in listed["items"])
    unacknowledged = client.get(
        "/v1/worklists/assignments", params={"state": "unacknowledged"}, headers=headers
    ).json()
    assert {i["assignment_id"] for i in unacknowledged["items"]} == {
        aid for aid, a in open_assignments.items() if a["acknowledged_at"] is None
    }
    later = (local_today() + timedelta(days=60)).isoformat()
    overdue = client.get(
        "/v1/worklists/assignments", params={"state": "overdue", "on": later}, headers=headers
    ).json()
    assert overdue["overdue"] == len(open_assignments) == len(overdue["items"])

    police = MEMBER_UNITS[next(iter(MEMBER_UNITS))]
    own = client.get(
        "/v1/worklists/assignments",
        params={"unit": "someone-else"},
        headers=auth(Role.UNIT_MEMBER, police, purpose="intervention"),
    ).json()
    assert own["unit"] == police
    assert {i["unit"] for i in own["items"]} <= {police}

    this_quarter = client.get("/v1/worklists/quarterly-updates", headers=headers).json()
    assert this_quarter["items"] == []  # every file was reported this quarter
    next_quarter_end = Quarter.of(today()).next().end
    due = client.get(
        "/v1/worklists/quarterly-updates",
        params={"on": next_quarter_end.isoformat()},
        headers=headers,
    ).json()
    open_files = {cid for cid, c in cases.items() if c.status != "closed"}
    assert {i["case_id"] for i in due["items"]} == open_files
    assert due["overdue"] == 0
    after = (next_quarter_end + timedelta(days=1)).isoformat()
    missed = client.get(
        "/v1/worklists/quarterly-updates", params={"on": after}, headers=headers
    ).json()
    assert missed["overdue"] == len(open_files)


def test_a_clue_waiting_beyond_the_deadline_is_overdue(
    client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = Workload(application_of(client), seed=42)
    case_id = workload.report()
    readmodels = synced(client)
    # As with CASETRAIL_CONSULTATION_DEADLINE_HOURS set to (almost) nothing.
    monkeypatch.setattr(
        readmodels, "config", replace(readmodels.config, consultation_deadline=timedelta(0))
    )
    waiting = client.get("/v1/worklists/consultations", headers=coordinator(auth)).json()
    (item,) = [i for i in waiting["items"] if i["case_id"] == str(case_id)]
    assert item["overdue"] is True
    row = next(r for r in all_rows(client, coordinator(auth)) if r["id"] == str(case_id))
    assert "consultation" in row["overdue"]


# --- reports -------------------------------------------------------------------------------------


def _counted(cases: dict[str, Case]) -> dict[str, Counter[str]]:
    return {
        "category": Counter(
            c for case in cases.values() for c in {i["category"] for i in case.issues}
        ),
        "status": Counter(case.status for case in cases.values()),
        "risk": Counter(case.risk for case in cases.values()),
        "village": Counter(case.minor["village"] for case in cases.values()),
    }


def test_quarterly_report_counts_the_files_as_they_stand(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    _, cases = populated
    response = client.get("/v1/reports/quarterly", headers=coordinator(auth))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["files"] == report["new_in_quarter"] == len(cases)
    closed = {
        n.originator_id
        for n in application_of(client).notifications()
        if n.topic.endswith("Case.Closed")
    }
    assert report["closed_in_quarter"] == len(closed) > 0
    counted = _counted(cases)
    for key in ("category", "status", "risk", "village"):
        found = {c["code"]: c["count"] for c in report[f"by_{key}"] if c["count"]}
        assert found == dict(counted[key]), key
    subtypes = Counter((i["category"], i["subtype"]) for c in cases.values() for i in c.issues)
    assert {(c["category"], c["code"]): c["count"] for c in report["by_subtype"] if c["count"]} == (
        dict(subtypes)
    )
    assert report["quarter"] == Quarter.of(today()).code
    yesterday = (today() - timedelta(days=1)).isoformat()
    before = client.get(
        "/v1/reports/quarterly", params={"as_of": yesterday}, headers=coordinator(auth)
    ).json()
    assert before["files"] == 0  # nothing was recorded before today
    refused = client.get(
        "/v1/reports/quarterly", headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    )
    assert refused.status_code == 403


def test_a_past_report_is_re_issued_exactly(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    workload, cases = populated
    readmodels = synced(client)
    cutoff = stamp(datetime.now(UTC))
    with readmodels.reports.reading() as db:
        issued = quarterly_report(db, STREET, today(), cutoff=cutoff).as_dict()
    # The files change afterwards: new clues, closures, reclassifications, reopenings.
    for case_id in [UUID(c) for c, case in cases.items() if case.status != "closed"][:5]:
        workload.close(case_id)
    workload.cases(6)
    synced(client)
    with readmodels.reports.reading() as db:
        reissued = quarterly_report(db, STREET, today(), cutoff=cutoff).as_dict()
        now = quarterly_report(db, STREET, today()).as_dict()
    assert reissued == issued
    assert now["files"] == issued["files"] + 6
    assert now["by_status"] != issued["by_status"]


# --- exports -------------------------------------------------------------------------------------


def _sheet_rows(body: bytes, sheet: str) -> list[tuple[Any, ...]]:
    workbook = openpyxl.load_workbook(io.BytesIO(body))
    return list(workbook[sheet].iter_rows(values_only=True))


def test_xlsx_ledger_has_chinese_headers_and_matches_the_quarterly_report(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    _, cases = populated
    headers = coordinator(auth)
    response = client.get("/v1/ledger/export", params={"format": "xlsx"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert "attachment" in response.headers["content-disposition"]
    rows = _sheet_rows(response.content, LEDGER_SHEET)
    assert "台账" in str(rows[0][0])
    assert rows[2] == ("序号", *HEADERS)
    lines = [dict(zip(rows[2], r, strict=True)) for r in rows[FIRST_DATA_ROW - 1 :]]
    assert [line["序号"] for line in lines] == list(range(1, len(cases) + 1))
    assert {line["档案编号"] for line in lines} == set(cases)
    assert all("*" in str(line["姓名"]) for line in lines)

    report = client.get("/v1/reports/quarterly", headers=headers).json()
    assert len(lines) == report["files"]
    by_category = Counter(
        label for line in lines for label in str(line["问题类别"]).split("、") if label
    )
    assert dict(by_category) == {
        c["label"]: c["count"] for c in report["by_category"] if c["count"]
    }
    by_status = Counter(line["状态"] for line in lines)
    assert dict(by_status) == {c["label"]: c["count"] for c in report["by_status"] if c["count"]}
    by_village = Counter(line["村(社区)"] for line in lines)
    assert dict(by_village) == {c["code"]: c["count"] for c in report["by_village"]}

    summary = _sheet_rows(response.content, SUMMARY_SHEET)
    assert summary[2] == ("统计维度", "项目", "数量")
    with synced(client).reports.reading() as db:
        expected = summary_lines(quarterly_report(db, STREET, today()))
    assert [tuple(r) for r in summary[FIRST_DATA_ROW - 1 :]] == expected
    assert ("合计", "档案总数", report["files"]) in expected


def test_csv_and_json_exports(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    _, cases = populated
    headers = coordinator(auth)
    as_csv = client.get(
        "/v1/ledger/export", params={"format": "csv", "village": VILLAGE}, headers=headers
    )
    assert as_csv.status_code == 200
    assert as_csv.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert tuple(table[0]) == ("序号", *HEADERS)
    in_village = {cid for cid, c in cases.items() if c.minor["village"] == VILLAGE}
    assert {line[1] for line in table[1:]} == in_village
    as_json = client.get("/v1/ledger/export", params={"format": "json"}, headers=headers)
    document = json.loads(as_json.content)
    assert {r["id"] for r in document["rows"]} == set(cases)
    assert [c["header"] for c in document["columns"]] == list(HEADERS)


def test_a_full_identity_export_is_an_audited_disclosure(
    client: TestClient, auth: TokenFactory, populated: tuple[Workload, dict[str, Case]]
) -> None:
    workload, cases = populated
    headers = coordinator(auth)
    masked = client.get("/v1/ledger/export", headers=headers)
    for case in cases.values():
        assert case.minor["name"].encode() not in masked.content
    named = client.get(
        "/v1/ledger/export", params={"identity": "true", "village": VILLAGE}, headers=headers
    )
    assert named.status_code == 200, named.text
    rows = _sheet_rows(named.content, LEDGER_SHEET)
    lines = [dict(zip(rows[2], r, strict=True)) for r in rows[FIRST_DATA_ROW - 1 :]]
    in_village = {cid: c for cid, c in cases.items() if c.minor["village"] == VILLAGE}
    assert in_village
    assert {(line["档案编号"], line["姓名"], line["身份证号"]) for line in lines} == {
        (cid, c.minor["name"], c.minor["id_number"]) for cid, c in in_village.items()
    }
    for case_id in in_village:
        exported = [
            e
            for e in application_of(client).access_events(UUID(case_id))
            if isinstance(e, CaseAccessed) and e.rule.startswith("export:")
        ]
        assert [e.request_id for e in exported if "minor.name" in e.fields] == [
            named.headers["X-Request-ID"]
        ]
        (event,) = [e for e in exported if "minor.name" in e.fields]
        assert event.purpose == "consultation"
        assert {"minor.name", "minor.id_number"} <= set(event.fields)

    for role, unit, purpose in (
        (Role.SUPERVISOR, OFFICE, "consultation"),
        (Role.UNIT_MEMBER, MEMBER_UNITS[next(iter(MEMBER_UNITS))], "intervention"),
    ):
        refused = client.get(
            "/v1/ledger/export",
            params={"identity": "true"},
            headers=auth(role, unit, purpose=purpose),
        )
        assert refused.status_code == 403
        assert refused.json()["errors"][0]["field"] == "identity"
    reporter = client.get(
        "/v1/ledger/export",
        params={"identity": "true", "format": "json"},
        headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up"),
    )
    assert reporter.status_code == 200
    assert {r["id"] for r in json.loads(reporter.content)["rows"]} == set(in_village)
    assert workload.bodies  # the names searched for above are the workload's own


def test_health_reports_each_projection_and_its_lag(client: TestClient, auth: TokenFactory) -> None:
    headers = coordinator(auth)  # registers the coordinator (an event) before the sync
    Workload(application_of(client), seed=43).cases(2)
    synced(client)
    # The position and the lag are for authenticated callers (monitoring); anyone gets liveness.
    assert client.get("/healthz").json() == {"status": "ok"}
    health = client.get("/healthz", headers=headers).json()
    projections = {p["name"]: p for p in health["projections"]["projections"]}
    assert set(projections) == set(VIEW_NAMES)
    assert projections["ledger"]["lag"] == 0
    assert projections["ledger"]["position"] == health["position"]
    assert health["projections"]["status"] == "ok"
