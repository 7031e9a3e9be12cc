"""Coverage of a campaign over a synthetic street (several hundred minors in two villages, Faker
zh_CN, valid synthetic ID numbers), on SQLite and PostgreSQL: per village and grid, the figures
the API gives equal an independent count from the test's own data (minors, visited, key
students visited, not visited, letters needed and signed, on the roster or on a case file);
the quarterly figures (`visit_coverage`, `letter_coverage`) agree; and the read models' bytes
hold no planted name or ID number."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from domain.clock import local_today
from domain.identity import id_check_character
from domain.quarters import Quarter
from domain.roster import roster_entry_id
from domain.taxonomy import Role
from gateway.settings import Settings
from projections.readmodels import ReadModels
from projections.screening import Span, letter_coverage, visit_coverage
from tests.conftest import PG_DSN, TokenFactory
from tests.domain.builders import register_units
from tests.integration.screening_roster import Kid, csv_bytes, kids

OFFICE = "chengguan-governance-office"
STREET = "chengguan-street"
VILLAGES = ("dongshan-village", "xishan-village")
LETTER_WORDS = {"留守", "事实无人抚养", "孤儿"}
TODAY = local_today()


def synced(client: TestClient) -> ReadModels:
    readmodels: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()
    return readmodels


def expected_lines(
    minors: list[Kid], visited: set[str], lettered: set[str]
) -> dict[tuple[str | None, str | None], dict[str, int]]:
    """The coverage lines counted from the test's own data, keyed by (village, grid)."""
    lines: dict[tuple[str | None, str | None], Counter[str]] = {}
    for kid in minors:
        seen = kid.id_number in visited
        key = bool(kid.markers)
        needs = bool(LETTER_WORDS & set(kid.markers))
        for place in ((None, None), (kid.village, None), (kid.village, kid.grid)):
            line = lines.setdefault(place, Counter())
            line["minors"] += 1
            line["visited"] += seen
            line["key_students"] += key
            line["key_visited"] += key and seen
            line["needs_letter"] += needs
            line["letters"] += needs and kid.id_number in lettered
            line["not_visited"] += not seen
    return {place: {k: line[k] for k in (*FIGURES,)} for place, line in lines.items()}


FIGURES = (
    "minors",
    "visited",
    "key_students",
    "key_visited",
    "needs_letter",
    "letters",
    "not_visited",
)


def post(client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def readmodel_bytes(settings: Settings, schema: str | None) -> bytes:
    if schema is None:
        found = b""
        for path in Path(settings.home).glob("readmodels.sqlite*"):
            found += path.read_bytes()
        return found
    with psycopg.connect(PG_DSN) as conn:
        chunks = []
        for table in (
            "screening_entries",
            "screening_campaigns",
            "screening_visits",
            "screening_case_letters",
            "ledger_cases",
        ):
            for row in conn.execute(f'SELECT * FROM "{schema}".{table}').fetchall():
                chunks.append(repr(row))
        return "\n".join(chunks).encode()


def test_campaign_coverage_equals_an_independent_count(
    client: TestClient, auth: TokenFactory, settings: Settings, store_url: str
) -> None:
    postgres = store_url.startswith("postgresql")
    sizes = (90, 60) if postgres else (260, 180)
    minors = [
        kid
        for village, size, seed in zip(VILLAGES, sizes, (31, 32), strict=True)
        for kid in kids(size, village, seed=seed)
    ]
    coordinator = auth(Role.COORDINATOR, OFFICE)
    for village in VILLAGES:
        rows = [k.cells() for k in minors if k.village == village]
        answer = client.post(
            "/v1/roster/imports",
            files={"file": ("r.csv", csv_bytes(rows))},
            data={"village": village},
            headers=coordinator,
        )
        assert answer.status_code == 200, answer.text
    campaign_id = post(
        client,
        "/v1/screening/campaigns",
        {
            "name": "走访排查",
            "villages": list(VILLAGES),
            "starts_on": (TODAY - timedelta(days=10)).isoformat(),
            "ends_on": (TODAY + timedelta(days=10)).isoformat(),
        },
        coordinator,
    )["id"]

    rng = random.Random(5)
    visited = {k.id_number for k in minors if rng.random() < 0.6}
    reporters = {v: auth(Role.REPORTER, v) for v in VILLAGES}
    for kid in minors:
        if kid.id_number not in visited:
            continue
        for _ in range(1 + (rng.random() < 0.1)):  # some households visited twice
            post(
                client,
                f"/v1/screening/campaigns/{campaign_id}/visits",
                {
                    "id_number": kid.id_number,
                    "visited_on": TODAY.isoformat(),
                    "method": rng.choice(("home_visit", "phone", "school")),
                    "result": "no_issue",
                },
                reporters[kid.village],
            )

    # Letters: on the roster for some minors who need one; on a case file for one more.
    needing = [k for k in minors if LETTER_WORDS & set(k.markers)]
    lettered = {k.id_number for k in needing[::3]}
    synced(client)
    index = synced(client).blind_index
    for kid in needing[::3]:
        entry_id = roster_entry_id(STREET, index.id_number(kid.id_number))
        reason = "parents_working_away" if "留守" in kid.markers else "unsupervised"
        post(
            client,
            f"/v1/roster/entries/{entry_id}/guardianship-letters",
            {"reason": reason, "signed_on": TODAY.isoformat()},
            reporters[kid.village],
        )
    on_file = next(k for k in needing[1::3] if k.id_number not in lettered)
    case_id = post(
        client,
        "/v1/cases",
        {
            "minor": {
                "name": on_file.name,
                "gender": "male" if on_file.gender == "男" else "female",
                "date_of_birth": on_file.born.isoformat(),
                "id_number": on_file.id_number,
                "school": on_file.school,
                "village": on_file.village,
            },
            "guardians": [
                {"name": on_file.guardian, "relation": "grandparent", "phone": "13900001111"}
            ],
            "issues": [{"category": "growth_environment", "subtype": "left_behind"}],
            "description": "父母外出务工。",
            "found_by": {"role": "child_director", "unit": on_file.village},
            "method": "home_visit",
            "found_on": TODAY.isoformat(),
            "risk": "low",
        },
        coordinator,
    )["id"]
    post(
        client,
        f"/v1/cases/{case_id}/guardianship-letters",
        {"guardian_index": 0, "reason": "parents_working_away", "signed_on": TODAY.isoformat()},
        coordinator,
    )
    lettered.add(on_file.id_number)
    readmodels = synced(client)

    answer = client.get(f"/v1/screening/campaigns/{campaign_id}/coverage", headers=coordinator)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = expected_lines(minors, visited, lettered)
    got = {(None, None): {k: body["total"][k] for k in FIGURES}}
    for line in body["lines"]:
        got[(line["village"], line["grid"])] = {k: line[k] for k in FIGURES}
    assert got == expected
    assert len(minors) == body["total"]["minors"] >= 150

    # The quarterly figures: the same counts over the quarter (every visit was today).
    quarter = Quarter.of(TODAY)
    figures = client.get(f"/v1/screening/coverage?quarter={quarter.code}", headers=coordinator)
    assert figures.status_code == 200, figures.text
    visits, letters = figures.json()["visits"], figures.json()["letters"]
    whole = expected[(None, None)]
    assert (visits["minors"], visits["visited"], visits["key_visited"]) == (
        whole["minors"],
        whole["visited"],
        whole["key_visited"],
    )
    assert (letters["needs_letter"], letters["letters"]) == (
        whole["needs_letter"],
        whole["letters"],
    )
    # The street's quarterly report carries the same coverage lines (counts only).
    report = client.get(
        "/v1/reports/quarterly", headers={**coordinator, "X-Purpose-Of-Use": "consultation"}
    )
    assert report.status_code == 200, report.text
    lines = {c["code"]: c["count"] for c in report.json()["coverage"]}
    assert lines == {
        "roster_minors": whole["minors"],
        "visited": whole["visited"],
        "key_students": whole["key_students"],
        "key_visited": whole["key_visited"],
        "needs_letter": whole["needs_letter"],
        "letters": whole["letters"],
    }
    with readmodels.screening.reading() as db:
        before = Span(quarter.start - timedelta(days=400), quarter.start - timedelta(days=1))
        assert visit_coverage(db, STREET, before)["minors"] == 0
        assert letter_coverage(db, STREET, quarter)["letters"] == whole["letters"]

    stored = readmodel_bytes(settings, store_url.partition("schema=")[2] or None)
    assert b"screening" in stored or postgres
    for kid in minors:
        for value in (kid.name, kid.id_number, kid.guardian):
            assert value.encode() not in stored, "a roster value is in clear in the read models"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_byte_scan_finds_a_value_written_in_clear(
    client: TestClient, settings: Settings, store_url: str
) -> None:
    """The scan above can fail: a name written in clear into a screening table is found."""
    synced(client)
    with sqlite3.connect(Path(settings.home) / "readmodels.sqlite") as conn:
        conn.execute(
            "INSERT INTO screening_campaigns VALUES (?, ?, ?, ?, ?, ?)",
            ("x", STREET, "林小雨", "[]", "2026-01-01", "2026-01-02"),
        )
    assert "林小雨".encode() in readmodel_bytes(settings, None)


def case_body(kid: Kid, id_number: str, village: str) -> dict[str, Any]:
    return {
        "minor": {
            "name": kid.name,
            "gender": "male" if kid.gender == "男" else "female",
            "date_of_birth": kid.born.isoformat(),
            "id_number": id_number,
            "school": kid.school,
            "village": village,
        },
        "guardians": [{"name": kid.guardian, "relation": "grandparent", "phone": "13900001111"}],
        "issues": [{"category": "growth_environment", "subtype": "left_behind"}],
        "description": "父母外出务工。",
        "found_by": {"role": "child_director", "unit": village},
        "method": "home_visit",
        "found_on": TODAY.isoformat(),
        "risk": "low",
    }


def test_a_files_letter_follows_a_corrected_id_number_and_a_transfer(
    client: TestClient, auth: TokenFactory
) -> None:
    """Letter coverage (issue 17): a letter signed on a file whose ID number is then corrected
    counts for the corrected minor; a file transferred counts in the receiving street."""
    other_street, other_village = "xiaoxi-street", "xiaoxi-village"
    other_office = "xiaoxi-governance-office"
    application = client.app.state.services.application  # type: ignore[attr-defined]
    register_units(application, OFFICE)
    register_units(application, other_office, street=other_street)
    coordinator = auth(Role.COORDINATOR, OFFICE)
    receiving = auth(Role.COORDINATOR, other_office, street=other_street)
    here, there = kids(12, VILLAGES[0], seed=41), kids(12, other_village, seed=42)
    for group, village, headers in (
        (here, VILLAGES[0], coordinator),
        (there, other_village, receiving),
    ):
        answer = client.post(
            "/v1/roster/imports",
            files={"file": ("r.csv", csv_bytes([k.cells() for k in group]))},
            data={"village": village},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
    corrected = next(k for k in here if LETTER_WORDS & set(k.markers))
    moved = next(k for k in there if LETTER_WORDS & set(k.markers))
    # A typo in the sequence digits (same birth date, same sex, valid check character).
    sequence = (int(corrected.id_number[14:17]) + 2) % 1000
    wrong = f"{corrected.id_number[:14]}{sequence:03d}"
    wrong += id_check_character(wrong)
    letter = {"guardian_index": 0, "reason": "parents_working_away", "signed_on": TODAY.isoformat()}

    first = post(client, "/v1/cases", case_body(corrected, wrong, VILLAGES[0]), coordinator)["id"]
    post(client, f"/v1/cases/{first}/guardianship-letters", letter, coordinator)
    fixed = client.post(
        f"/v1/cases/{first}/corrections",
        json={"minor": {"id_number": corrected.id_number}, "reason": "身份证号录入错误"},
        headers=coordinator,
    )
    assert fixed.status_code == 200, fixed.text

    second = post(client, "/v1/cases", case_body(moved, moved.id_number, VILLAGES[0]), coordinator)
    post(client, f"/v1/cases/{second['id']}/guardianship-letters", letter, coordinator)
    transferred = client.post(
        f"/v1/cases/{second['id']}/transfer",
        json={"to_street": other_street, "to_village": other_village, "reason": "随父母迁居"},
        headers=coordinator,
    )
    assert transferred.status_code == 200, transferred.text

    quarter = Quarter.of(TODAY)
    with synced(client).screening.reading() as db:
        assert letter_coverage(db, STREET, quarter)["letters"] == 1  # the corrected minor
        assert letter_coverage(db, other_street, quarter)["letters"] == 1  # the moved minor
