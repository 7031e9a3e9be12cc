"""Refusals on the user registry are stored before the 403 leaves (issue 16 review, promise 1),
over real HTTP on SQLite and PostgreSQL.

- A reporter's registry command (a grant) and history read each leave exactly one
  `CommandRefused`, naming the command and the rule, and nothing of what was sent.
- An administrator cannot grant themselves a role (own_account, 403), and that refusal is
  stored like the others; their roles are unchanged.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.people import fixture_user

ADMIN_UNIT = "county-admin"
VILLAGE = "dongshan-village"


def _app(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def _refusals(client: TestClient) -> list[tuple[str, str, str]]:
    return [(r.actor["user"], r.command, r.rule) for r in _app(client).command_refusals()]


def test_a_reporters_grant_and_history_read_each_leave_one_refusal(
    client: TestClient, auth: TokenFactory
) -> None:
    reporter = auth(Role.REPORTER, VILLAGE)
    who = fixture_user(Role.REPORTER, VILLAGE)
    assert _refusals(client) == []

    grant = client.post(
        "/v1/users/grid-201/grants", json={"role": "admin", "reason": "自封"}, headers=reporter
    )
    assert grant.status_code == 403, grant.text
    assert "自封" not in grant.text
    assert _refusals(client) == [(who, "grant_role", "not_permitted")]

    history = client.get("/v1/users/grid-201/history", headers=reporter)
    assert history.status_code == 403, history.text
    assert _refusals(client) == [
        (who, "grant_role", "not_permitted"),
        (who, "read_user_history", "not_permitted"),
    ]


def test_an_administrator_cannot_grant_themselves_a_role_and_the_refusal_is_stored(
    client: TestClient, auth: TokenFactory
) -> None:
    admin = auth(Role.ADMIN, ADMIN_UNIT, street="county")
    me = fixture_user(Role.ADMIN, ADMIN_UNIT, "county")
    before = client.get(f"/v1/users/{me}", headers=admin).json()["roles"]

    own = client.post(
        f"/v1/users/{me}/grants",
        json={"role": "compliance_auditor", "reason": "兼任"},
        headers=admin,
    )
    assert own.status_code == 403, own.text
    assert own.json()["type"].endswith("own-account") or "own_account" in own.json()["type"]
    assert client.get(f"/v1/users/{me}", headers=admin).json()["roles"] == before
    assert _refusals(client) == [(me, "grant_role", "own_account")]
