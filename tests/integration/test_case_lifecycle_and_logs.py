"""A whole case life over HTTP, and the log output of it holding no personal data."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from domain.clock import local_today
from domain.taxonomy import Role
from gateway import logs
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
TASK = "到校了解欺凌情况并约谈相关学生家长。"


def _lifecycle(client: TestClient, auth: TokenFactory, body: dict[str, object]) -> str:
    register_units(client.app.state.services.application, POLICE)  # type: ignore[attr-defined]
    reporter = auth(Role.REPORTER, VILLAGE)
    coordinator = auth(Role.COORDINATOR, OFFICE)
    police = auth(Role.UNIT_MEMBER, POLICE)
    case_id = str(client.post("/v1/cases", json=body, headers=reporter).json()["id"])
    base = f"/v1/cases/{case_id}"
    today = local_today().isoformat()

    consult = {"held_on": today, "participants": [OFFICE, POLICE], "decision": "派出所介入。"}
    assert (
        client.post(f"{base}/consultations", json=consult, headers=coordinator).status_code == 200
    )
    assignment = client.post(
        f"{base}/assignments",
        json={
            "unit": POLICE,
            "function": "judicial",
            "task": TASK,
            "due_on": (local_today() + timedelta(days=7)).isoformat(),
        },
        headers=coordinator,
    )
    assert assignment.status_code == 201, assignment.text
    assignment_id = assignment.json()["assignment_id"]

    # Another unit cannot acknowledge; the holder can, once.
    school = auth(Role.UNIT_MEMBER, "chengguan-school-district-office")
    ack = f"{base}/assignments/{assignment_id}/acknowledgement"
    assert client.post(ack, headers=school).status_code == 404
    assert client.post(ack, headers=police).status_code == 200
    second = client.post(ack, headers=police)
    assert second.status_code == 409
    assert second.json()["type"] == "urn:casetrail:problem:assignment-already-acknowledged"

    intervention = {
        "assignment_id": assignment_id,
        "function": "judicial",
        "measure": "guidance_education",
        "notes": "已约谈家长。",
        "done_on": today,
    }
    assert (
        client.post(f"{base}/interventions", json=intervention, headers=police).status_code == 201
    )
    follow_up = {"visited_on": today, "notes": "季度回访,情况稳定。"}
    assert client.post(f"{base}/follow-ups", json=follow_up, headers=reporter).status_code == 201
    close = {"reason": "resolved", "note": "已化解。"}
    assert client.post(f"{base}/closure", json=close, headers=coordinator).status_code == 200

    # Nothing is assigned on a closed case, and the police lose sight of it with closure.
    again = client.post(
        f"{base}/assignments",
        json={"unit": POLICE, "function": "judicial", "task": TASK, "due_on": today},
        headers=coordinator,
    )
    assert again.status_code == 409
    assert again.json()["type"] == "urn:casetrail:problem:case-closed"
    assert (
        client.post(
            f"{base}/reopening", json={"reason": "再次发现问题。"}, headers=coordinator
        ).status_code
        == 200
    )
    return case_id


def test_a_case_lives_from_report_to_reopening(client: TestClient, auth: TokenFactory) -> None:
    case_id = _lifecycle(client, auth, planted_case().body)
    answer = client.get(
        f"/v1/cases/{case_id}", headers=auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    ).json()
    assert answer["status"] == "awaiting_consultation"
    assert answer["version"] == 8
    (assignment,) = answer["assignments"]
    assert assignment["acknowledged_at"] is not None
    assert assignment["ended"]["outcome"] == "case_closed"
    assert [i["measure"] for i in answer["interventions"]] == ["guidance_education"]


def test_reporter_may_not_assign(client: TestClient, auth: TokenFactory) -> None:
    reporter = auth(Role.REPORTER, VILLAGE)
    case_id = client.post("/v1/cases", json=planted_case().body, headers=reporter).json()["id"]
    response = client.post(
        f"/v1/cases/{case_id}/assignments",
        json={
            "unit": POLICE,
            "function": "judicial",
            "task": TASK,
            "due_on": local_today().isoformat(),
        },
        headers=reporter,
    )
    assert response.status_code == 403
    assert response.json()["type"] == "urn:casetrail:problem:not-permitted"


def test_log_output_of_a_full_scenario_holds_no_personal_data(
    client: TestClient, auth: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    captured = io.StringIO()
    logs.configure("debug", stream=captured)
    caplog.set_level(logging.DEBUG)
    planted = planted_case()
    try:
        case_id = _lifecycle(client, auth, planted.body)
        reader = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
        assert client.get(f"/v1/cases/{case_id}", headers=reader).status_code == 200
        outsider = auth(Role.REPORTER, "xihe-village", purpose="follow_up")
        assert client.get(f"/v1/cases/{case_id}", headers=outsider).status_code == 404
        bad = dict(planted.body, risk="extreme")
        assert (
            client.post("/v1/cases", json=bad, headers=auth(Role.REPORTER, VILLAGE)).status_code
            == 422
        )
    finally:
        logs.configure("info")
    output = captured.getvalue() + caplog.text
    assert '"event": "request"' in output, "the scenario produced no log lines to search"
    assert case_id in output
    for needle in (planted.name, planted.id_number, planted.description, planted.phone, TASK):
        assert needle not in output
