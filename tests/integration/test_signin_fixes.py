"""Sign-in input that used to answer 500 (issue 16 review), over real HTTP on SQLite (as
test_signin_sessions.py; the credentials' storage on both stores is test_signin.py):

- a sign-in body of JSON nested deeper than the parser's stack is a 422 problem naming the
  body, nothing written;
- a session's change with a non-ASCII CSRF token is a wrong token: 403 csrf-failed, recorded,
  nothing written;
- a session started just after a reinstatement is not ended by the process's registry snapshot
  that still says suspended: a refusal by the snapshot is confirmed from the store first (a
  user still suspended is refused and the session ended: test_signin_sessions.py);
- the right password of a user holding several roles, no role chosen: 422 naming `role`, and
  the attempt recorded (`SignInFailed`, role_not_chosen; not counted towards a lockout), no
  secret stored or echoed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from domain.access import Actor
from domain.credentials import credentials_stream_id, session_stream_id
from domain.taxonomy import Role
from domain.users import ChangeRole, ChangeStatus
from gateway.auth import AuthenticationFailed, UserRegistry
from gateway.cli.main import DEFAULT_STREET
from gateway.http.app import create_app
from gateway.http.examples import REPORT_CLUE_BODY
from gateway.http.sessions import COOKIE
from gateway.settings import Settings
from tests.integration.test_signin import (
    BY,
    VILLAGE,
    application_of,
    planted_password,
    register,
    sign_in,
)
from tests.integration.test_signin_sessions import clues, refusal_reasons


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}"


def test_deeply_nested_json_is_a_422_naming_the_body(settings: Settings) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # under the body limit (256 KiB)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        before = application_of(client).recorder.max_notification_id()
        answer = client.post(
            "/v1/sessions", content=deep, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert "body" in answer.text
        assert application_of(client).recorder.max_notification_id() == before


def test_a_non_ascii_csrf_token_is_a_recorded_403(settings: Settings) -> None:
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        register(application_of(client), "u-csrf", password=password)
        assert sign_in(client, "u-csrf", password).status_code == 201
        before = clues(client)
        answer = client.post(
            "/v1/cases",
            json=REPORT_CLUE_BODY,
            headers={"X-CSRF-Token": "令牌".encode()},  # bytes: read back as latin-1 text
        )
        assert answer.status_code == 403, answer.text
        assert answer.json()["type"] == "urn:casetrail:problem:csrf-failed"
        assert clues(client) == before
        assert refusal_reasons(client).count("csrf_failed") == 1


def test_a_session_started_just_after_a_reinstatement_is_not_ended_by_a_stale_snapshot(
    settings: Settings,
) -> None:
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = application_of(client)
        register(app, "u-back", password=password)
        registry: UserRegistry = client.app.state.services.users  # type: ignore[attr-defined]
        registry.refresh_seconds = 3600.0  # the snapshot stays as it is for this test
        actor = Actor("u-back", Role.REPORTER, VILLAGE, DEFAULT_STREET)
        app.suspend_user("u-back", ChangeStatus(reason="调查期间"), BY)
        with pytest.raises(AuthenticationFailed):
            registry.check(actor)  # the snapshot learns the suspension
        app.reinstate_user("u-back", ChangeStatus(reason="恢复"), BY)

        assert sign_in(client, "u-back", password).status_code == 201
        secret = client.cookies[COOKIE]
        current = client.get("/v1/sessions/current")
        assert current.status_code == 200, current.text
        ended = [type(e).__name__ for e in app.events.get(session_stream_id(secret))]
        assert "SessionEnded" not in ended, ended


def test_a_right_password_with_no_role_chosen_among_several_is_recorded(
    settings: Settings,
) -> None:
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = application_of(client)
        register(app, "u-roles", role=Role.COORDINATOR, unit=f"{DEFAULT_STREET}-office")
        app.grant_role("u-roles", ChangeRole(role=Role.SUPERVISOR, reason="代理"), BY)
        app.set_password("u-roles", password, BY, "test")

        answer = sign_in(client, "u-roles", password)
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["role"]
        assert password not in answer.text
        failed = [
            e
            for e in app.events.get(credentials_stream_id("u-roles"))
            if type(e).__name__ == "SignInFailed"
        ]
        assert [vars(e)["reason"] for e in failed] == ["role_not_chosen"]
        assert password not in repr(failed[0].__dict__)
        assert app.credentials("u-roles").failures == ()  # type: ignore[union-attr]
