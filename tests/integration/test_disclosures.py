"""The accounting of disclosures for one minor and the access reports, over HTTP through the
real ASGI app, on SQLite and PostgreSQL.

A scenario: two files of the same child (the same ID number) and one of another child; several
readers (the reporter, the street's coordinator and supervisor, a full-identity export, a
compliance auditor reading an access log, a refused reader). The accounting lists exactly the
disclosures the scenario made of both files (checked against the access events in the store,
and by who read what), none of the other child's, and none of the audit-only reads; CSV and
.xlsx have Chinese headers and a `=HYPERLINK(...)` sent as a reader's User-Agent neutralised;
no answer holds the planted name, ID number, school or description; every answer is recorded
as a read of the files' access logs before it is returned; other roles are refused and their
refusal recorded. Also: the reports list reads made just before them though the access-log
view is behind (read-your-writes), and bad input is a problem naming the field.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import replace
from typing import Any, Final
from uuid import UUID

import openpyxl
import pytest
from fastapi.testclient import TestClient

from domain import identity
from domain.access import NO_CASE, AccessDenied, CaseAccessed
from domain.taxonomy import Role
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.compliance_world import (
    FORMULA,
    OFFICE,
    SQLITE_ONLY,
    VILLAGE,
    World,
    make_world,
)
from tests.integration.planted import planted_case
from tests.integration.screening_roster import csv_bytes, kids


@pytest.fixture
def world(client: TestClient, settings: Settings, auth: TokenFactory) -> World:
    return make_world(client, settings, auth)


def _scenario(world: World) -> None:
    """The reads the accounting must list (and some it must not)."""
    client = world.client
    first, second = world.files
    reporter = world.headers(Role.REPORTER, VILLAGE, purpose="follow_up")
    coordinator = world.headers(Role.COORDINATOR, OFFICE, purpose="consultation")
    supervisor = world.headers(Role.SUPERVISOR, OFFICE, user="sup-1", purpose="consultation")
    planted = world.headers(
        Role.COORDINATOR, OFFICE, user="coord-2", purpose="consultation", agent=FORMULA
    )
    for headers, case_id in (
        (reporter, first),
        (coordinator, first),
        (coordinator, second),
        (supervisor, second),
        (planted, first),
        (coordinator, world.other_file),  # another child's: never in this accounting
    ):
        assert client.get(f"/v1/cases/{case_id}", headers=headers).status_code == 200
    # A full-identity export: one disclosure of each file (all three).
    export = client.get("/v1/ledger/export?format=json&identity=true", headers=coordinator)
    assert export.status_code == 200, export.text
    # Not disclosures: an auditor's read of an access log, a refused read.
    assert client.get(f"/v1/cases/{first}/accesses", headers=world.auditor()).status_code == 200
    outsider = world.headers(Role.UNIT_MEMBER, "far-unit", purpose="intervention")
    assert client.get(f"/v1/cases/{first}", headers=outsider).status_code == 404


def _expected(world: World) -> Counter[tuple[str, str, str, str]]:
    """(case, user, channel, rule) of every disclosure of the child's files, from the store."""
    files = {UUID(f) for f in world.files}
    return Counter(
        (str(e.case_id), e.actor["user"], e.channel, e.rule)
        for e in world.accesses()
        if isinstance(e, CaseAccessed) and e.case_id in files and set(e.fields) - {"access_log"}
    )


def test_the_accounting_lists_exactly_the_disclosures_of_both_files(world: World) -> None:
    _scenario(world)
    before = len(world.accesses())
    response = world.client.post(
        "/v1/compliance/disclosures", json={"id_number": world.child.id_number},
        headers=world.auditor(),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["files"] == 2 and sorted(answer["case_ids"]) == sorted(world.files)
    assert answer["files_found_as_of"]["lag"] >= 0
    listed = Counter(
        (d["case_id"], d["user"], d["channel"], d["rule"]) for d in answer["disclosures"]
    )
    assert listed == _expected(world)
    assert answer["count"] == len(answer["disclosures"]) == 7
    by_user = Counter((d["user"], d["case_id"]) for d in answer["disclosures"])
    first, second = world.files
    coordinator = f"user-{Role.COORDINATOR}-{OFFICE}"
    assert by_user == {
        (f"user-{Role.REPORTER}-{VILLAGE}", first): 1,
        (coordinator, first): 2,  # a read, and the full-identity export
        (coordinator, second): 2,
        ("sup-1", second): 1,
        ("coord-2", first): 1,
    }
    assert {d["channel"] for d in answer["disclosures"]} == {"api", "export"}
    assert world.other_file not in response.text
    assert "auditor-1" not in {d["user"] for d in answer["disclosures"]}
    for value in world.planted_values():
        assert value not in response.text
    # The accounting itself: one read of each file's access log, stored before the answer.
    new = world.accesses()[before:]
    assert sorted(str(e.case_id) for e in new) == sorted(world.files)
    assert all(
        isinstance(e, CaseAccessed)
        and e.fields == ["access_log"]
        and e.rule == "accounting:compliance_review"
        and e.channel == "compliance"
        and e.actor["user"] == "auditor-1"
        for e in new
    )


def test_the_accounting_covers_the_minors_roster_entry(world: World) -> None:
    """The minor on a street's roster (issue 17): a read of the roster entry (recorded with
    the entry id as its subject) is a disclosure the accounting lists, and the accounting is
    recorded as a read of the entry's access log too."""
    client = world.client
    number = world.child.id_number
    born, male = identity.parse_id_number(number)
    kid = replace(
        kids(1, VILLAGE, seed=31)[0], id_number=number, born=born, gender="男" if male else "女"
    )
    imported = client.post(
        "/v1/roster/imports",
        files={"file": ("r.csv", csv_bytes([kid.cells()]))},
        data={"village": VILLAGE},
        headers=world.headers(Role.COORDINATOR, OFFICE),
    )
    assert imported.status_code == 200, imported.text
    world.readmodels.catch_up()
    with world.readmodels.screening.reading() as db:
        (entry,) = [
            str(r["entry_id"]) for r in db.execute("SELECT entry_id FROM {screening_entries}")
        ]
    coordinator = world.headers(Role.COORDINATOR, OFFICE, purpose="consultation")
    assert client.get(f"/v1/roster/entries/{entry}", headers=coordinator).status_code == 200
    before = len(world.accesses())
    response = client.post(
        "/v1/compliance/disclosures", json={"id_number": number}, headers=world.auditor()
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    listed = [(d["case_id"], d["user"]) for d in answer["disclosures"]]
    assert listed == [(entry, f"user-{Role.COORDINATOR}-{OFFICE}")]
    assert answer["roster_entry_ids"] == [entry]
    assert kid.name not in response.text and number not in response.text
    new = world.accesses()[before:]
    assert sorted(str(e.case_id) for e in new) == sorted([*world.files, entry])
    assert all(isinstance(e, CaseAccessed) and e.fields == ["access_log"] for e in new)


@SQLITE_ONLY
def test_an_unknown_id_number_answers_an_empty_accounting(world: World) -> None:
    _scenario(world)
    unknown = planted_case(VILLAGE, seed=99).id_number
    before = len(world.accesses())
    response = world.client.post(
        "/v1/compliance/disclosures", json={"id_number": unknown}, headers=world.auditor()
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["files"], answer["case_ids"], answer["disclosures"]) == (0, [], [])
    # Recorded all the same, as a read naming no case.
    new = world.accesses()[before:]
    assert len(new) == 1 and isinstance(new[0], CaseAccessed) and new[0].case_id == NO_CASE


@SQLITE_ONLY
def test_the_accounting_as_csv_and_xlsx_has_chinese_headers_and_no_formula(
    world: World,
) -> None:
    _scenario(world)
    body = {"id_number": world.child.id_number}
    found = world.client.post(
        "/v1/compliance/disclosures?format=csv", json=body, headers=world.auditor()
    )
    assert found.status_code == 200, found.text
    assert found.headers["content-type"].startswith("text/csv")
    assert world.child.id_number not in found.headers["content-disposition"]
    text = found.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["序号", "披露时间", "查阅人", "角色"]
    assert len(rows) == 1 + 7
    agents = [r[-1] for r in rows[1:]]
    assert rows[0][-2:] == ["客户端地址", "客户端标识"]
    assert "'" + FORMULA in agents and FORMULA not in agents
    for value in world.planted_values():
        assert value not in text

    found = world.client.post(
        "/v1/compliance/disclosures?format=xlsx", json=body, headers=world.auditor()
    )
    assert found.status_code == 200, found.text
    book = openpyxl.load_workbook(io.BytesIO(found.content))
    sheet = book["披露记录"]
    assert sheet["A1"].value == "未成年人个人信息披露记录"
    assert [c.value for c in sheet[3]][:4] == ["序号", "披露时间", "查阅人", "角色"]
    cells = [c for row in sheet.iter_rows(min_row=4) for c in row]
    planted = [c for c in cells if isinstance(c.value, str) and FORMULA in c.value]
    assert len(planted) == 1
    assert planted[0].value == "'" + FORMULA and planted[0].data_type == "s"
    assert not any(isinstance(c.value, str) and c.value.startswith("=") for c in cells)
    everything = " ".join(str(c.value) for row in sheet.iter_rows() for c in row)
    for value in world.planted_values():
        assert value not in everything


def test_access_reports_filter_page_and_are_recorded(world: World) -> None:
    _scenario(world)
    client = world.client
    first = world.files[0]
    answer = client.get(
        "/v1/compliance/accesses", params={"case_id": first}, headers=world.auditor()
    ).json()
    records = answer["records"]
    assert records and {r["case_id"] for r in records} == {first}
    kinds = Counter(r["kind"] for r in records)
    assert kinds["read"] >= 5 and kinds["refused_read"] == 1
    assert answer["findings_counts"] == "/v1/compliance/findings/counts"
    for value in world.planted_values():
        assert value not in str(answer)

    by_user = client.get(
        "/v1/compliance/accesses", params={"user": "sup-1"}, headers=world.auditor()
    ).json()["records"]
    assert [(r["user"], r["case_id"]) for r in by_user] == [("sup-1", world.files[1])]
    refused = client.get(
        "/v1/compliance/accesses", params={"kind": "refused_read"}, headers=world.auditor()
    ).json()["records"]
    assert [r["unit"] for r in refused] == ["far-unit"]
    exports = client.get(
        "/v1/compliance/accesses",
        params={"channel": "export", "role": "coordinator"},
        headers=world.auditor(),
    ).json()["records"]
    assert len(exports) == 3

    # Pages of two, in store order, each recorded as reads of the logs it shows.
    seen: list[int] = []
    after = 0
    while True:
        before = len(world.accesses())
        page = client.get(
            "/v1/compliance/accesses",
            params={"case_id": first, "limit": 2, "after": after},
            headers=world.auditor(),
        ).json()
        new = world.accesses()[before:]
        assert {str(e.case_id) for e in new} == ({first} if page["records"] else {str(NO_CASE)})
        assert all(e.rule == "access_report:compliance_review" for e in new)
        seen += [r["position"] for r in page["records"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == sorted(seen) and len(seen) >= len(records)

    csv_answer = client.get(
        "/v1/compliance/accesses", params={"format": "csv"}, headers=world.auditor()
    )
    header = csv_answer.content.decode("utf-8-sig").splitlines()[0]
    assert header.startswith('"序号","存储位置","时间","结果"')
    book = openpyxl.load_workbook(
        io.BytesIO(
            client.get(
                "/v1/compliance/accesses", params={"format": "xlsx"}, headers=world.auditor()
            ).content
        )
    )
    assert book.sheetnames == ["查阅记录"]


@SQLITE_ONLY
def test_the_reports_list_reads_the_view_has_not_applied_yet(world: World) -> None:
    """Read-your-writes: the view is stopped behind the store; the reads are still listed."""
    world.readmodels.stop()
    world.readmodels.catch_up()
    coordinator = world.headers(Role.COORDINATOR, OFFICE, purpose="consultation")
    assert world.client.get(f"/v1/cases/{world.files[0]}", headers=coordinator).status_code == 200
    answer = world.client.post(
        "/v1/compliance/disclosures", json={"id_number": world.child.id_number},
        headers=world.auditor(),
    ).json()  # fmt: skip
    assert [d["channel"] for d in answer["disclosures"]] == ["api"]


REFUSED: Final = [
    (Role.COORDINATOR, "consultation", 403, "not-permitted"),
    (Role.INVESTIGATOR, "investigation", 403, "not-permitted"),
    (Role.COMPLIANCE_AUDITOR, "consultation", 403, "purpose-not-allowed"),
]


@SQLITE_ONLY
def test_other_roles_and_purposes_are_refused_and_recorded(world: World) -> None:
    calls = [
        ("post", "/v1/compliance/disclosures", {"json": {"id_number": world.child.id_number}}),
        ("get", "/v1/compliance/accesses", {}),
        ("get", "/v1/compliance/fhir/AuditEvent", {}),
        ("get", "/v1/compliance/annual-report?year=2026&format=json", {}),
        # A future year is refused for its role first (and recorded), not a 422 unrecorded.
        ("get", "/v1/compliance/annual-report?year=2099&format=json", {}),
    ]
    for role, purpose, status, code in REFUSED:
        headers = world.headers(role, OFFICE, purpose=purpose)
        for method, path, extra in calls:
            before = len(world.accesses())
            response = getattr(world.client, method)(path, headers=headers, **extra)
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == f"urn:casetrail:problem:{code}"
            new = world.accesses()[before:]
            assert len(new) == 1 and isinstance(new[0], AccessDenied), path
            assert new[0].case_id == NO_CASE and new[0].channel == "compliance"
            assert world.child.id_number not in response.text


BAD_INPUT: Final[list[tuple[str, str, dict[str, Any], str]]] = [
    ("post", "/v1/compliance/disclosures", {"json": {"id_number": "110101200001011234"}},
     "id_number"),
    ("post", "/v1/compliance/disclosures", {"json": {}}, "id_number"),
    ("get", "/v1/compliance/accesses?since=2026-01-01T00:00:00", {}, "since"),
    ("get", "/v1/compliance/accesses?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
     {}, "until"),
    ("get", "/v1/compliance/accesses?limit=0", {}, "limit"),
    ("get", "/v1/compliance/accesses?format=pdf", {}, "format"),
    ("get", "/v1/compliance/fhir/AuditEvent?case_id=not-a-uuid", {}, "case_id"),
    ("get", "/v1/compliance/annual-report?year=1999", {}, "year"),
    ("get", "/v1/compliance/annual-report?year=2999", {}, "year"),
    ("get", "/v1/compliance/annual-report?year=2099", {}, "year"),
]  # fmt: skip


@SQLITE_ONLY
def test_bad_input_is_a_problem_naming_the_field(world: World) -> None:
    for method, path, extra, field in BAD_INPUT:
        before = len(world.accesses())
        response = getattr(world.client, method)(path, headers=world.auditor(), **extra)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in response.json()["errors"]] == [field], path
        assert "110101200001011234" not in response.text
        assert len(world.accesses()) == before, path  # nothing written
