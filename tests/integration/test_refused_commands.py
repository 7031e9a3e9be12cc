"""Every command a permission rule refuses is stored as `CommandRefused` before the answer leaves
(issue 15; `domain.application.records_refusals`, `domain.compliance.origin`).

Over real HTTP (TestClient on the real app, SQLite and PostgreSQL): each refused command kind
leaves exactly one `CommandRefused` naming the actor, the command, the case (the id the request
named, also when the answer is 404 to hide the case, or the case does not exist), the rule, the
request id, the channel and the client; a 422 (bad input) and a 409 (a rule of the file) leave
none. In-process commands are recorded with the in-process origin.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from domain import errors
from domain.access import NO_CASE, Actor, CommandRefused
from domain.application import CaseTrail
from domain.clock import local_today
from domain.compliance.origin import IN_PROCESS_ORIGIN
from domain.taxonomy import Role
from gateway.cli.main import DEFAULT_STREET
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import planted_case

STREET = DEFAULT_STREET  # the auth fixture's default street
OTHER_STREET = "far-street"


def _app(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def _refusals(client: TestClient) -> list[CommandRefused]:
    return _app(client).command_refusals()


def _report(client: TestClient, auth: TokenFactory) -> str:
    response = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, "v-own")
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _assign(client: TestClient, auth: TokenFactory, case_id: str, unit: str) -> str:
    body = {
        "unit": unit,
        "function": "school",
        "task": "介入核实。",
        "due_on": (local_today() + timedelta(days=5)).isoformat(),
    }
    response = client.post(
        f"/v1/cases/{case_id}/assignments", json=body, headers=auth(Role.COORDINATOR, "office")
    )
    assert response.status_code == 201, response.text
    return str(response.json()["assignment_id"])


Attempt = Callable[[TestClient, TokenFactory, dict[str, str]], tuple[Any, str, str, str | None]]


def _closing() -> dict[str, str]:
    return {"reason": "resolved", "note": "问题已解决。"}


def refused_attempts() -> dict[str, Attempt]:
    """name -> attempt(client, auth, ids) -> (response, command, rule, case id named or None)."""

    def report_by_unit_member(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> Any:
        headers = a(Role.UNIT_MEMBER, "pcs-1")
        return c.post("/v1/cases", json=planted_case().body, headers=headers), (
            "report_clue",
            "not_permitted",
            None,
        )

    def reclassify_by_reporter(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> Any:
        body = {
            "issues": [{"category": "social_abnormality", "subtype": "withdrawn"}],
            "reason": "重新分类。",
        }
        path = f"/v1/cases/{ids['case']}/reclassification"
        return c.post(path, json=body, headers=a(Role.REPORTER, "v-own")), (
            "reclassify",
            "not_permitted",
            ids["case"],
        )

    def close_from_other_street(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> Any:
        headers = a(Role.COORDINATOR, "office", street=OTHER_STREET)
        path = f"/v1/cases/{ids['case']}/closure"
        return c.post(path, json=_closing(), headers=headers), ("close", "not_visible", ids["case"])

    def close_missing_case(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> Any:
        path = f"/v1/cases/{ids['missing']}/closure"
        return c.post(path, json=_closing(), headers=a(Role.COORDINATOR, "office")), (
            "close",
            "not_visible",
            ids["missing"],
        )

    def acknowledge_other_units_task(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> Any:
        path = f"/v1/cases/{ids['case']}/assignments/{ids['school_task']}/acknowledgement"
        return c.post(path, json={}, headers=a(Role.UNIT_MEMBER, "pcs-1")), (
            "acknowledge_assignment",
            "assignment_not_held",
            ids["case"],
        )

    def order_by_reporter(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> Any:
        body = {
            "case_id": ids["case"],
            "investigator": "inv-1",
            "reason": "一案一倒查。",
            "expires_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        }
        return c.post("/v1/investigation-orders", json=body, headers=a(Role.REPORTER, "v-own")), (
            "issue_investigation_order",
            "not_permitted",
            ids["case"],
        )

    def investigation_by_coordinator(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> Any:
        body = {
            "kind": "harm",
            "incident_on": (local_today() - timedelta(days=2)).isoformat(),
            "minor": {"id_number": planted_case().body["minor"]["id_number"]},
            "investigators": ["inv-1"],
            "reason": "一案一倒查。",
            "expires_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        }
        return c.post("/v1/investigations", json=body, headers=a(Role.COORDINATOR, "office")), (
            "open_investigation",
            "not_permitted",
            None,
        )

    def break_glass_review_by_coordinator(
        c: TestClient, a: TokenFactory, ids: dict[str, str]
    ) -> Any:
        path = f"/v1/compliance/break-glass/{uuid4()}/review"
        body = {"outcome": "justified", "note": "紧急情况属实。"}
        return c.post(path, json=body, headers=a(Role.COORDINATOR, "office")), (
            "review_break_glass",
            "not_permitted",
            None,
        )

    found = {
        "report_clue": report_by_unit_member,
        "reclassify": reclassify_by_reporter,
        "close (other street, 404)": close_from_other_street,
        "close (no such case, 404)": close_missing_case,
        "acknowledge_assignment": acknowledge_other_units_task,
        "issue_investigation_order": order_by_reporter,
        "open_investigation": investigation_by_coordinator,
        "review_break_glass": break_glass_review_by_coordinator,
    }

    def flat(attempt: Any) -> Attempt:
        def run(c: TestClient, a: TokenFactory, ids: dict[str, str]) -> tuple[Any, str, str, Any]:
            response, (command, rule, case) = attempt(c, a, ids)
            return response, command, rule, case

        return run

    return {name: flat(attempt) for name, attempt in found.items()}


ATTEMPTS = refused_attempts()


@pytest.fixture
def ids(client: TestClient, auth: TokenFactory) -> dict[str, str]:
    register_units(_app(client), "pcs-1", "school-1", street=STREET)
    case_id = _report(client, auth)
    _assign(client, auth, case_id, "pcs-1")
    school_task = _assign(client, auth, case_id, "school-1")
    return {"case": case_id, "school_task": school_task, "missing": str(uuid4())}


def test_each_refused_command_leaves_exactly_one_command_refused(
    client: TestClient, auth: TokenFactory, ids: dict[str, str]
) -> None:
    # One app per store for every kind (a parametrised test would start eight apps each).
    for name, attempt in sorted(ATTEMPTS.items()):
        before = len(_refusals(client))
        response, command, rule, case = attempt(client, auth, ids)
        assert response.status_code in (403, 404), (name, response.text)
        after = _refusals(client)
        assert len(after) == before + 1, name
        refused = after[-1]
        assert (refused.command, refused.rule) == (command, rule), name
        assert refused.case_id == (UUID(case) if case else NO_CASE), name
        assert refused.request_id == response.headers["X-Request-ID"], name
        assert refused.channel == "api", name
        assert refused.client["address"] != "in-process", name


def test_bad_input_and_broken_file_rules_are_no_refusals_and_in_process_ones_are(
    client: TestClient, auth: TokenFactory, ids: dict[str, str]
) -> None:
    coordinator = auth(Role.COORDINATOR, "office")
    invalid = client.post(f"/v1/cases/{ids['case']}/closure", json={}, headers=coordinator)
    assert invalid.status_code == 422
    closed = client.post(f"/v1/cases/{ids['case']}/closure", json=_closing(), headers=coordinator)
    assert closed.status_code == 200, closed.text
    again = client.post(f"/v1/cases/{ids['case']}/closure", json=_closing(), headers=coordinator)
    assert again.status_code == 409
    assert _refusals(client) == []
    # A command refused inside the process is recorded with the in-process origin.
    application = _app(client)
    outsider = Actor("outsider", Role.UNIT_MEMBER, "pcs-9", OTHER_STREET)
    with pytest.raises(errors.CaseNotFound):
        application.change_case(UUID(ids["case"]), outsider, "record_follow_up", lambda c: None)
    (refused,) = application.command_refusals(case_id=UUID(ids["case"]))
    assert refused.request_id == IN_PROCESS_ORIGIN.request_id
    assert refused.client == IN_PROCESS_ORIGIN.client.as_record()
    assert refused.actor == outsider.as_record()
