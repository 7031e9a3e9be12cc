"""Bad input gets 422 problem+json naming the field, and the store holds no new event."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.clock import local_today
from domain.identity import make_id_number
from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

Body = dict[str, Any]


def _adult(body: Body) -> None:
    today = local_today()
    born = date(today.year - 18, today.month, min(today.day, 28))
    if born > date(today.year - 18, today.month, today.day):
        born = date(today.year - 19, today.month, 1)
    body["minor"]["date_of_birth"] = born.isoformat()
    sequence = 11 if body["minor"]["gender"] == "male" else 12
    body["minor"]["id_number"] = make_id_number("330102", born, sequence)


def _bad_checksum(body: Body) -> None:
    number = body["minor"]["id_number"]
    body["minor"]["id_number"] = number[:17] + ("0" if number[17] != "0" else "1")


def _set(path: str, value: Any) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        *parents, last = path.split(".")
        target: Any = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


CASES: list[tuple[str, Callable[[Body], None], str]] = [
    ("bad ID checksum", _bad_checksum, "minor.id_number"),
    ("ID date disagrees", _set("minor.date_of_birth", "2012-01-01"), "minor.id_number"),
    ("an adult", _adult, "minor.date_of_birth"),
    ("unknown subtype", _set("issues.0.subtype", "no_such_subtype"), "issues.0.subtype"),
    ("unknown category", _set("issues.0.category", "weather"), "issues.0.category"),
    ("over-long description", _set("description", "长" * 2001), "description"),
    ("over-long name", _set("minor.name", "名" * 33), "minor.name"),
    # An unknown key is what was submitted: the answer names its parent, never the key.
    ("unknown field", _set("nickname", "x"), "body"),
    ("unknown nested field", _set("minor.nickname", "x"), "minor"),
    ("bad phone", _set("guardians.0.phone", "12345"), "guardians.0.phone"),
    ("future found_on", _set("found_on", "2999-01-01"), "found_on"),
    ("unknown risk", _set("risk", "extreme"), "risk"),
    ("no issues", _set("issues", []), "issues"),
]


def _event_count(client: TestClient) -> int:
    app = client.app.state.services.application  # type: ignore[attr-defined]
    return int(app.recorder.max_notification_id() or 0)


@pytest.mark.parametrize(("label", "change", "field"), CASES, ids=[c[0] for c in CASES])
def test_invalid_report_is_refused_naming_the_field_and_writes_nothing(
    client: TestClient, auth: TokenFactory, label: str, change: Callable[[Body], None], field: str
) -> None:
    body = copy.deepcopy(planted_case(seed=3).body)
    change(body)
    headers = auth(Role.REPORTER, "dongshan-village")  # registers the user: an event, not counted
    before = _event_count(client)
    response = client.post("/v1/cases", json=body, headers=headers)
    assert response.status_code == 422, f"{label}: {response.text}"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert _event_count(client) == before


def test_risk_below_the_floor_is_refused_naming_risk(
    client: TestClient, auth: TokenFactory
) -> None:
    body = planted_case(seed=4).body
    body["issues"] = [{"category": "mental_health", "subtype": "self_harm"}]
    body["risk"] = "medium"
    headers = auth(Role.REPORTER, "dongshan-village")  # registers the user: an event, not counted
    before = _event_count(client)
    response = client.post("/v1/cases", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "risk", "message": response.json()["detail"]}]
    assert _event_count(client) == before


def test_malformed_json_is_a_problem_too(client: TestClient, auth: TokenFactory) -> None:
    headers = {**auth(Role.REPORTER, "dongshan-village"), "Content-Type": "application/json"}
    response = client.post("/v1/cases", content=b"{not json", headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


def test_problem_never_echoes_the_submitted_values(client: TestClient, auth: TokenFactory) -> None:
    planted = planted_case(seed=5)
    body = copy.deepcopy(planted.body)
    _adult(body)
    response = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, "dongshan-village"))
    assert response.status_code == 422
    for needle in (planted.name, body["minor"]["id_number"], planted.description):
        assert needle not in response.text
