"""Dates that cannot be, over HTTP: every command endpoint with a date refuses one before the
clue was found, one in the future (or, for a due date, past or beyond the horizon) and the
extremes (year 1, 1999, 2100, 9999) with 422 problem+json naming the field; the case's version
and the store's position are unchanged. The same body with a possible date then succeeds, so
each refusal is the date's."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain.clock import local_today
from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"


# Days are taken when a test runs, never when the module is collected: a run that goes past
# midnight would otherwise send "tomorrow" when it has become today.
def today() -> date:
    return local_today()


def found_on() -> date:
    return today() - timedelta(days=10)


TOMORROW = "tomorrow"  # a parameter, turned into a date by the test itself
EXTREMES = ["0001-01-01", "1999-12-31", "2100-01-01", "9999-12-31"]

# endpoint, body with the date left out, the date's field
HAPPENED: list[tuple[str, dict[str, Any], str]] = [
    ("consultations", {"participants": [OFFICE, POLICE], "decision": "派出所介入。"}, "held_on"),
    (
        "interventions",
        {"function": "family", "measure": "home_visit", "notes": "入户家访。"},
        "done_on",
    ),
    (
        "guardianship-letters",
        {"guardian_index": 0, "reason": "parents_working_away"},
        "signed_on",
    ),
    ("follow-ups", {"notes": "季度回访,情况稳定。"}, "visited_on"),
]


def impossible_happened() -> list[str]:
    return [
        (found_on() - timedelta(days=1)).isoformat(),
        (found_on() - timedelta(days=400)).isoformat(),
        (today() + timedelta(days=1)).isoformat(),
        *EXTREMES,
    ]


def _application(client: TestClient) -> Any:
    return client.app.state.services.application  # type: ignore[attr-defined]


def _position(client: TestClient) -> int:
    return int(_application(client).recorder.max_notification_id() or 0)


def _version(client: TestClient, case_id: str) -> int:
    return int(_application(client).repository.get(UUID(case_id)).version)


@pytest.fixture
def case_id(client: TestClient, auth: TokenFactory) -> str:
    body = copy.deepcopy(planted_case(seed=71).body)
    body["found_on"] = found_on().isoformat()
    body["guardians"][0]["works_away"] = True  # a guardianship letter applies
    response = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, VILLAGE))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _refused(
    client: TestClient, url: str, body: dict[str, Any], headers: dict[str, str], field: str
) -> dict[str, Any]:
    response = client.post(url, json=body, headers=headers)
    assert response.status_code == 422, (field, body.get(field), response.text)
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    return problem


@pytest.mark.parametrize(("endpoint", "body", "field"), HAPPENED, ids=[h[0] for h in HAPPENED])
def test_a_date_that_cannot_have_happened_is_refused_and_nothing_is_written(
    client: TestClient,
    auth: TokenFactory,
    case_id: str,
    endpoint: str,
    body: dict[str, Any],
    field: str,
) -> None:
    url = f"/v1/cases/{case_id}/{endpoint}"
    coordinator = auth(Role.COORDINATOR, OFFICE)
    version, position = _version(client, case_id), _position(client)
    for day in impossible_happened():
        _refused(client, url, {**body, field: day}, coordinator, field)
    assert _version(client, case_id) == version
    assert _position(client) == position
    # The day the clue was found and today are possible: the refusals were the date's.
    for possible in (found_on(), today()):
        response = client.post(url, json={**body, field: possible.isoformat()}, headers=coordinator)
        assert response.status_code in (200, 201), response.text
    assert _version(client, case_id) == version + 2


def test_a_due_date_past_or_beyond_the_horizon_is_refused_and_nothing_is_written(
    client: TestClient, auth: TokenFactory, case_id: str
) -> None:
    register_units(_application(client), POLICE)
    url = f"/v1/cases/{case_id}/assignments"
    coordinator = auth(Role.COORDINATOR, OFFICE)
    body = {"unit": POLICE, "function": "judicial", "task": "到校了解情况。"}
    version, position = _version(client, case_id), _position(client)
    for day in (
        (today() - timedelta(days=1)).isoformat(),
        (found_on() - timedelta(days=1)).isoformat(),
        (today() + cmd.DUE_HORIZON + timedelta(days=1)).isoformat(),
        (today() + timedelta(days=3650)).isoformat(),
        *EXTREMES,
    ):
        _refused(client, url, {**body, "due_on": day}, coordinator, "due_on")
    assert _version(client, case_id) == version
    assert _position(client) == position
    due = (today() + timedelta(days=30)).isoformat()
    response = client.post(url, json={**body, "due_on": due}, headers=coordinator)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("found_on", "0001-01-01"),
        ("found_on", "1999-12-31"),
        ("found_on", "9999-12-31"),
        ("found_on", TOMORROW),
        ("minor.date_of_birth", "0001-01-01"),
        ("minor.date_of_birth", "9999-12-31"),
    ],
)
def test_a_report_with_a_date_that_cannot_be_is_refused(
    client: TestClient, auth: TokenFactory, path: str, value: str
) -> None:
    body = copy.deepcopy(planted_case(seed=72).body)
    if value == TOMORROW:
        value = (today() + timedelta(days=1)).isoformat()
    if path == "found_on":
        body["found_on"] = value
    else:
        body["minor"]["date_of_birth"] = value
    headers = auth(Role.REPORTER, VILLAGE)  # registers the user: an event, not counted
    position = _position(client)
    problem = _refused(client, "/v1/cases", body, headers, path)
    assert value not in str(problem)
    assert _position(client) == position


@pytest.mark.parametrize(
    "expires_at",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2100-01-01T00:00:00+00:00",
        "1999-12-31T00:00:00+08:00",
    ],
)
def test_an_order_expiry_that_cannot_be_is_refused(
    client: TestClient, auth: TokenFactory, case_id: str, expires_at: str
) -> None:
    body = {
        "case_id": case_id,
        "investigator": "investigator-1",
        "reason": "一案一倒查。",
        "expires_at": expires_at,
    }
    headers = auth(Role.COORDINATOR, OFFICE)  # registers the user: an event, not counted
    position = _position(client)
    _refused(client, "/v1/investigation-orders", body, headers, "expires_at")
    assert _position(client) == position
