"""Corrections over HTTP (issue 17), on SQLite and PostgreSQL: a wrong ID number corrected; the
earlier number no longer finds the file, the corrected one does; the history shows both values
to the coordinator (and to the reporting unit); bad input answers a problem naming the field and
writes nothing; a unit member may not correct; the read models' bytes hold neither number nor
name in clear."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.case import Case
from domain.identity import make_id_number
from domain.taxonomy import Role
from gateway import logs
from gateway.settings import Settings
from projections.readmodels import ReadModels
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case
from tests.projections.test_privacy import _postgres_bytes, _sqlite_bytes

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def synced(client: TestClient) -> ReadModels:
    readmodels: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()
    return readmodels


def stored_bytes(settings: Settings, readmodels: ReadModels) -> bytes:
    if settings.store_kind == "sqlite":
        return _sqlite_bytes(settings.home)
    return _postgres_bytes(settings.database_url.rsplit("schema=", 1)[1], readmodels)


def found_ids(client: TestClient, headers: dict[str, str], **lookup: str) -> set[str]:
    answer = client.post("/v1/cases/search", json=lookup, headers=headers)
    assert answer.status_code == 200, answer.text
    return {row["id"] for row in answer.json()["rows"]}


def corrected_number(body: dict[str, Any]) -> str:
    """Another valid number with the same date of birth and gender (the right one)."""
    minor = body["minor"]
    sequence = int(minor["id_number"][14:17])
    other = sequence + 2 if sequence < 990 else sequence - 2  # same parity: same gender
    area = minor["id_number"][:6]
    return make_id_number(area, date.fromisoformat(minor["date_of_birth"]), other)


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    """The service's own log lines, whatever stream an earlier test configured (order-proof)."""
    captured = io.StringIO()
    logs.configure("info", stream=captured)
    try:
        yield captured
    finally:
        logs.configure("info")


def test_a_wrong_id_number_corrected_is_found_by_the_new_number_only(
    client: TestClient,
    auth: TokenFactory,
    settings: Settings,
    service_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    planted = planted_case(VILLAGE, seed=1717)
    wrong = planted.id_number
    right = corrected_number(planted.body)
    new_name = planted.name[:1] + "瑾萱泽"
    created = client.post("/v1/cases", json=planted.body, headers=reporter)
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    synced(client)
    assert found_ids(client, coordinator, id_number=wrong) == {case_id}

    corrected = client.post(
        f"/v1/cases/{case_id}/corrections",
        json={"minor": {"id_number": right, "name": new_name}, "reason": "身份证号录入错误"},
        headers=reporter,  # the reporting unit, for its own file
    )
    assert corrected.status_code == 200, corrected.text
    readmodels = synced(client)
    assert found_ids(client, coordinator, id_number=wrong) == set()
    assert found_ids(client, coordinator, id_number=right) == {case_id}
    assert found_ids(client, coordinator, name=new_name) == {case_id}
    assert found_ids(client, coordinator, name=planted.name) == set()
    # The ledger's mask follows too.
    (row,) = client.get("/v1/ledger", headers=coordinator).json()["rows"]
    assert row["id_number"].endswith(right[-4:])

    answer = client.get(f"/v1/cases/{case_id}", headers=coordinator)
    assert answer.status_code == 200, answer.text
    case = answer.json()
    assert case["minor"]["id_number"] == right
    (entry,) = case["corrections"]
    assert entry["fields"] == ["minor.name", "minor.id_number"]
    values = {c["field"]: (c["old"], c["new"]) for c in entry["changes"]}
    assert values == {"minor.id_number": (wrong, right), "minor.name": (planted.name, new_name)}
    assert entry["reason"] == "身份证号录入错误"
    assert entry["by"] == {"role": "reporter", "unit": VILLAGE}
    # The read was recorded with the corrections field among those disclosed.
    (last,) = application_of(client).access_log(UUID(case_id))[-1:]
    assert "corrections" in last["fields"] and last["granted"]

    # The read models hold none of the four values in clear (masks and keyed indexes only).
    held = stored_bytes(settings, readmodels)
    for value in (wrong, right, planted.name, new_name):
        assert value.encode() not in held
    # Nor do the service's logs (stdout and the logging records): ids and actions only.
    logged = service_log.getvalue() + caplog.text
    assert "correct_details" in logged
    for value in (wrong, right, planted.name, new_name, "身份证号录入错误"):
        assert value not in logged


def test_bad_corrections_are_problems_naming_the_field_and_write_nothing(
    client: TestClient, auth: TokenFactory
) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    planted = planted_case(VILLAGE, seed=1818)
    case_id = client.post("/v1/cases", json=planted.body, headers=coordinator).json()["id"]
    minor = planted.body["minor"]
    bad_checksum = minor["id_number"][:-1] + ("0" if minor["id_number"][-1] != "0" else "1")
    # A valid number whose 17th digit says the other gender: inconsistent with the file.
    other_gender = make_id_number(
        minor["id_number"][:6],
        date.fromisoformat(minor["date_of_birth"]),
        int(minor["id_number"][14:17]) + 1,
    )
    cases: list[tuple[dict[str, Any], str]] = [
        ({"minor": {"id_number": bad_checksum}, "reason": "录入错误"}, "minor.id_number"),
        (
            {"minor": {"id_number": minor["id_number"][:10]}, "reason": "录入错误"},
            "minor.id_number",
        ),
        ({"minor": {"school": minor["school"]}, "reason": "无变化"}, "minor"),
        ({"minor": {"grade_class": "5年级"}}, "reason"),
        ({"minor": {"shoe_size": 40}, "reason": "录入错误"}, "minor"),
        ({"minor": {"id_number": other_gender}, "reason": "录入错误"}, "minor.id_number"),
    ]
    for body, field in cases:
        answer = client.post(f"/v1/cases/{case_id}/corrections", json=body, headers=coordinator)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        text = answer.text
        assert field in text, (field, text)
        assert planted.id_number[6:14] not in text  # no submitted value echoed
    stored: object = application_of(client).repository.get(UUID(case_id))
    assert isinstance(stored, Case) and stored.version == 1 and stored.corrections == []


def test_a_unit_member_may_not_correct_and_another_street_sees_nothing(
    client: TestClient, auth: TokenFactory
) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    planted = planted_case(VILLAGE, seed=1919)
    case_id = client.post("/v1/cases", json=planted.body, headers=coordinator).json()["id"]
    body = {"description": "更正后的描述。", "reason": "描述有误"}
    member = auth(Role.UNIT_MEMBER, POLICE, purpose="intervention")
    assert client.post(
        f"/v1/cases/{case_id}/corrections", json=body, headers=member
    ).status_code in (
        403,
        404,
    )
    elsewhere = auth(
        Role.COORDINATOR, "xiaoxi-governance-office", street="xiaoxi-street", purpose="consultation"
    )
    refused = client.post(f"/v1/cases/{case_id}/corrections", json=body, headers=elsewhere)
    assert refused.status_code == 404
    stored: object = application_of(client).repository.get(UUID(case_id))
    assert isinstance(stored, Case) and stored.version == 1
