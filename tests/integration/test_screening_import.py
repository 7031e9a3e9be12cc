"""Importing a village's roster (底数) over HTTP, on SQLite and PostgreSQL: a file with planted
errors (bad check character, date of birth disagreeing with the ID number, a duplicate row, a
missing name) rejects exactly those rows with reasons that never quote a value and stores
nothing; with `store_valid=true` the rest is stored; a re-import (CSV or .xlsx) stores nothing
new; only the street's coordinator and the village's reporters may import."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.roster import RosterEntry
from domain.taxonomy import Role
from gateway.imports.roster import MAX_SHEET_ROWS, ImportFileError, parse_roster
from tests.conftest import TokenFactory
from tests.integration.screening_roster import (
    csv_bytes,
    kids,
    with_bad_checksum,
    with_other_birthday,
    xlsx_bytes,
)

VILLAGE = "dongshan-village"
OTHER_VILLAGE = "xishan-village"
OFFICE = "chengguan-governance-office"
ROSTER_TOPICS = (get_topic(RosterEntry.Listed), get_topic(RosterEntry.DetailsUpdated))  # type: ignore[attr-defined]


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def roster_events(client: TestClient) -> int:
    return sum(1 for _ in application_of(client).notifications(topics=ROSTER_TOPICS))


def upload(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    *,
    village: str = VILLAGE,
    store_valid: bool | None = None,
    name: str = "roster.csv",
) -> Any:
    form: dict[str, str] = {"village": village}
    if store_valid is not None:
        form["store_valid"] = "true" if store_valid else "false"
    return client.post(
        "/v1/roster/imports", files={"file": (name, data)}, data=form, headers=headers
    )


def test_planted_errors_reject_exactly_those_rows_and_store_nothing_unless_asked(
    client: TestClient, auth: TokenFactory
) -> None:
    minors = kids(20, VILLAGE, seed=7)
    rows = [k.cells() for k in minors]
    # Sheet rows: the header is row 1, minors[i] is row i + 2.
    rows[2] = with_bad_checksum(minors[2]).cells()  # row 4
    rows[5] = with_other_birthday(minors[5]).cells()  # row 7
    rows[7] = minors[1].cells()  # row 9 repeats row 3
    rows[10][0] = ""  # row 12: no name
    data = csv_bytes(rows)
    reporter = auth(Role.REPORTER, VILLAGE)

    refused = upload(client, reporter, data)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    report = refused.json()["report"]
    rejected = {(p["row"], p["column"]) for p in report["rejected"]}
    assert rejected == {(4, "身份证号"), (7, "出生日期"), (9, "身份证号"), (12, "姓名")}
    assert report["stored"] is False and report["rows"] == 20 and report["valid"] == 16
    assert roster_events(client) == 0
    planted = [minors[i] for i in (1, 2, 5, 10)]
    for value in [k.id_number for k in planted] + [k.name for k in planted]:
        assert value not in refused.text
    assert with_bad_checksum(minors[2]).id_number not in refused.text
    reasons = {p["row"]: p["reason"] for p in report["rejected"]}
    assert "校验位" in reasons[4] and "不一致" in reasons[7] and "第3行" in reasons[9]

    stored = upload(client, reporter, data, store_valid=True)
    assert stored.status_code == 200, stored.text
    assert stored.json()["stored"] is True
    assert stored.json()["listed"] == 16
    assert len(stored.json()["rejected"]) == 4
    assert roster_events(client) == 16

    position = application_of(client).recorder.max_notification_id()
    again = upload(client, reporter, data, store_valid=True)
    assert again.json()["listed"] == 0 and again.json()["unchanged"] == 16
    assert application_of(client).recorder.max_notification_id() == position


def test_an_xlsx_roster_imports_once_and_a_changed_row_updates_it(
    client: TestClient, auth: TokenFactory
) -> None:
    minors = kids(12, VILLAGE, seed=11)
    rows = [k.cells() for k in minors]
    coordinator = auth(Role.COORDINATOR, OFFICE)
    first = upload(client, coordinator, xlsx_bytes(rows), name="名册.xlsx")
    assert first.status_code == 200, first.text
    assert first.json()["listed"] == 12 and first.json()["rejected"] == []

    position = application_of(client).recorder.max_notification_id()
    assert upload(client, coordinator, csv_bytes(rows)).json()["unchanged"] == 12
    assert application_of(client).recorder.max_notification_id() == position

    rows[0][9] = "留守、孤儿"
    changed = upload(client, coordinator, xlsx_bytes(rows))
    assert changed.json()["updated"] == 1 and changed.json()["unchanged"] == 11
    assert roster_events(client) == 13


def test_a_minor_on_another_villages_roster_is_a_rejected_row(
    client: TestClient, auth: TokenFactory
) -> None:
    minors = kids(3, VILLAGE, seed=5)
    coordinator = auth(Role.COORDINATOR, OFFICE)
    assert upload(client, coordinator, csv_bytes([k.cells() for k in minors])).status_code == 200
    moved = [k.cells() for k in kids(2, OTHER_VILLAGE, seed=6)]
    elsewhere = minors[0].cells()
    elsewhere[4] = OTHER_VILLAGE
    answer = upload(client, coordinator, csv_bytes([*moved, elsewhere]), village=OTHER_VILLAGE)
    assert answer.status_code == 422
    assert [(p["row"], p["column"]) for p in answer.json()["report"]["rejected"]] == [
        (4, "村(社区)")
    ]
    assert roster_events(client) == 3


def test_only_the_coordinator_and_the_villages_reporters_import(
    client: TestClient, auth: TokenFactory
) -> None:
    data = csv_bytes([k.cells() for k in kids(2, VILLAGE, seed=3)])
    for headers in (
        auth(Role.UNIT_MEMBER, "chengguan-police-station"),
        auth(Role.REPORTER, OTHER_VILLAGE),
        auth(Role.SUPERVISOR, "chengguan-street-supervision"),
        auth(Role.INVESTIGATOR, "county-investigation"),
    ):
        answer = upload(client, headers, data)
        assert answer.status_code == 403, answer.text
    assert roster_events(client) == 0


def test_a_file_that_is_no_roster_is_one_problem_naming_the_file(
    client: TestClient, auth: TokenFactory
) -> None:
    reporter = auth(Role.REPORTER, VILLAGE)
    for data in (
        b"PK\x03\x04 not a workbook",
        "姓名,性别\n张三,男\n".encode(),
        b"\xe5\xa7\x93\xe5\x90\x8d,a\x00b\n",
        b"",
    ):
        answer = upload(client, reporter, data)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "file"
    assert roster_events(client) == 0


def test_blank_xlsx_rows_count_against_the_row_bound() -> None:
    """A workbook of a few minors and then more blank rows than the bound (cells holding only
    spaces, which read as blank): refused as a whole file once the bound is passed, rather
    than every blank row read (a small .xlsx can hold millions)."""
    rows = [k.cells() for k in kids(2, VILLAGE, seed=61)]
    rows += [[" "]] * (MAX_SHEET_ROWS + 1)
    with pytest.raises(ImportFileError, match=f"more than {MAX_SHEET_ROWS} rows"):
        parse_roster(xlsx_bytes(rows), VILLAGE)
    # At the bound (header, minors and blank rows included), the file is read.
    assert parse_roster(xlsx_bytes(rows[: MAX_SHEET_ROWS - 1]), VILLAGE).total == 2
