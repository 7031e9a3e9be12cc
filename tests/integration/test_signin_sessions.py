"""Browser sessions (`gateway/http/sessions.py`): a session cookie acts as its user on every
endpoint (reads audited as that user, commands stored as theirs); a state-changing request with
the cookie needs the session's CSRF token (refused and recorded without it, nothing written),
a bearer-token request does not; sign-out ends the session for good; a suspended user's session
is refused within the registry's bound and ended; idle and absolute limits end a session; over
TLS the cookie is `Secure` (`__Host-`); the form variant for web pages, and a cross-site form
refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain.case import Case
from domain.credentials import SessionEndReason, session_stream_id
from domain.taxonomy import Role
from domain.users import ChangeStatus
from gateway import bootstrap
from gateway.http.app import create_app
from gateway.http.examples import REPORT_CLUE_BODY
from gateway.http.sessions import COOKIE, SECURE_COOKIE
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_signin import (
    BY,
    VILLAGE,
    application_of,
    planted_password,
    register,
    sign_in,
    signin_settings,
)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Sessions are events like the credentials, whose test runs on both stores
    (test_signin.py): SQLite only here, to keep the module quick."""
    return sqlite_url(tmp_path)


def clues(client: TestClient) -> int:
    topic = "domain.case:Case.ClueReported"
    return len(list(application_of(client).notifications(topics=(topic,))))


def session_kinds(client: TestClient, secret: str) -> list[str]:
    stream = application_of(client).events.get(session_stream_id(secret))
    return [type(e).__name__ for e in stream]


def refusal_reasons(client: TestClient) -> list[str]:
    return [e.reason for e in application_of(client).authentication_refusals()]


def test_a_session_acts_as_its_user_and_its_changes_need_the_csrf_token(
    settings: Settings, auth: TokenFactory
) -> None:
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        register(application_of(client), "u-browser", password=password)
        signed_in = sign_in(client, "u-browser", password)
        assert signed_in.status_code == 201
        token = signed_in.json()["csrf_token"]
        secret = client.cookies[COOKIE]
        assert client.get("/v1/sessions/current").json()["session"]["csrf_token"] == token

        # A change without the token, or with another session's, is refused and recorded.
        before = clues(client)
        missing = client.post("/v1/cases", json=REPORT_CLUE_BODY)
        assert missing.status_code == 403, missing.text
        assert missing.json()["type"] == "urn:casetrail:problem:csrf-failed"
        forged = client.post("/v1/cases", json=REPORT_CLUE_BODY, headers={"X-CSRF-Token": "0" * 64})
        assert forged.status_code == 403
        assert clues(client) == before
        assert "csrf_failed" in refusal_reasons(client)

        # With the token: stored as the session's user.
        made = client.post("/v1/cases", json=REPORT_CLUE_BODY, headers={"X-CSRF-Token": token})
        assert made.status_code == 201, made.text
        case_id = made.json()["id"]
        first: Any = next(iter(application_of(client).events.get(UUID(case_id))))
        assert isinstance(first, Case.ClueReported)  # type: ignore[attr-defined]
        assert first.reported_by["user"] == "u-browser"

        # A read needs no token, and is recorded as the session's user.
        read = client.get(f"/v1/cases/{case_id}", headers={"X-Purpose-Of-Use": "follow_up"})
        assert read.status_code == 200, read.text
        accesses = application_of(client).access_events(UUID(case_id))
        assert accesses[-1].actor["user"] == "u-browser"

        # Bearer tokens are exempt: a browser never adds that header by itself.
        bearer = auth(Role.REPORTER, VILLAGE)
        client.cookies.clear()
        assert client.post("/v1/cases", json=REPORT_CLUE_BODY, headers=bearer).status_code == 201

        # Sign-out needs the token too; then the cookie is refused by every worker (stored).
        client.cookies.set(COOKIE, secret)
        assert client.delete("/v1/sessions/current").status_code == 403
        out = client.delete("/v1/sessions/current", headers={"X-CSRF-Token": token})
        assert out.status_code == 204
        assert "casetrail_session=" in out.headers["set-cookie"]
        client.cookies.set(COOKIE, secret)
        after = client.get("/v1/sessions/current")
        assert after.status_code == 401
        assert session_kinds(client, secret)[-1] == "SessionEnded"
        assert "session_invalid" in refusal_reasons(client)


def test_a_suspended_users_session_is_refused_within_the_bound_and_ended(
    settings: Settings,
) -> None:
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = application_of(client)
        register(app, "u-suspended", password=password)
        assert sign_in(client, "u-suspended", password).status_code == 201
        secret = client.cookies[COOKIE]
        assert client.get("/v1/sessions/current").status_code == 200
        app.suspend_user("u-suspended", ChangeStatus(reason="test: left the post"), BY)
        suspended_at = time.monotonic()
        bound = client.app.state.services.users.refresh_seconds  # type: ignore[attr-defined]
        while client.get("/v1/sessions/current").status_code == 200:
            assert time.monotonic() - suspended_at < bound + 1.5
            time.sleep(0.2)
        assert session_kinds(client, secret)[-1] == "SessionEnded"
        ended: Any = list(app.events.get(session_stream_id(secret)))[-1]
        assert ended.reason == "user_refused"
        assert "user_suspended" in refusal_reasons(client)
        # Reinstated, the user signs in again; the ended session stays ended.
        app.reinstate_user("u-suspended", ChangeStatus(reason="test: back"), BY)
        client.cookies.set(COOKIE, secret)
        assert client.get("/v1/sessions/current").status_code == 401
        client.cookies.clear()
        assert sign_in(client, "u-suspended", password).status_code == 201


def test_idle_and_absolute_limits_end_a_session(home: Path, tmp_path: Path) -> None:
    settings = signin_settings(
        home,
        sqlite_url(tmp_path),
        CASETRAIL_SESSION_IDLE_MINUTES="30",
        CASETRAIL_SESSION_ABSOLUTE_HOURS="1",
    )
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = application_of(client)
        register(app, "u-idle", password=password)
        assert sign_in(client, "u-idle", password).status_code == 201
        idle = client.cookies[COOKIE]
        client.cookies.clear()
        assert sign_in(client, "u-idle", password).status_code == 201
        busy = client.cookies[COOKIE]
        now = datetime.now(UTC)

        # Idle: a use within 30 minutes keeps it (stored once the tenth of it has passed).
        assert app.use_session(idle, now + timedelta(minutes=2)) is not None
        assert session_kinds(client, idle) == ["SessionStarted"]  # within the tenth: not stored
        assert app.use_session(idle, now + timedelta(minutes=4)) is not None
        assert app.use_session(idle, now + timedelta(minutes=33)) is not None
        assert session_kinds(client, idle) == ["SessionStarted", "SessionTouched", "SessionTouched"]
        assert app.use_session(idle, now + timedelta(minutes=64)) is None
        assert session_kinds(client, idle)[-1] == "SessionEnded"

        # Absolute: however busy, an hour after the sign-in it is over.
        for minutes in (20, 40, 59):
            assert app.use_session(busy, now + timedelta(minutes=minutes)) is not None
        assert app.use_session(busy, now + timedelta(minutes=61)) is None
        reasons = [getattr(e, "reason", None) for e in app.events.get(session_stream_id(busy))]
        assert reasons[-1] == "expired"
        client.cookies.set(COOKIE, busy)
        assert client.get("/v1/sessions/current").status_code == 401


def test_a_sign_out_on_one_worker_is_seen_by_another_that_has_the_session_loaded(
    settings: Settings,
) -> None:
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        register(application_of(client), "u-two-workers", password=password)
        assert sign_in(client, "u-two-workers", password).status_code == 201
        secret = client.cookies[COOKIE]
        assert client.get("/v1/sessions/current").status_code == 200  # loaded here, cached
        other = bootstrap.open_application(settings)  # a second API process's application
        try:
            assert other.use_session(secret) is not None
            assert other.end_session(secret, SessionEndReason.SIGNED_OUT)
        finally:
            other.close()
        assert client.get("/v1/sessions/current").status_code == 401


def test_over_tls_the_cookie_is_secure_and_forms_sign_in_from_this_site_only(
    home: Path, tmp_path: Path
) -> None:
    settings = signin_settings(home, sqlite_url(tmp_path))
    password = planted_password()
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        register(application_of(client), "u-tls", password=password)
        signed_in = sign_in(client, "u-tls", password)
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith(f"{SECURE_COOKIE}=") and "Secure" in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert client.get("/v1/sessions/current").status_code == 200
        client.cookies.clear()

        form = {"user_id": "u-tls", "password": password, "totp": "", "csrf_token": "x"}
        posted = client.post("/v1/sessions", data=form, follow_redirects=False)
        assert posted.status_code == 303 and posted.headers["location"] == "/"
        assert posted.headers["set-cookie"].startswith(f"{SECURE_COOKIE}=")
        client.cookies.clear()
        cross = client.post(
            "/v1/sessions",
            data=form,
            headers={"Sec-Fetch-Site": "cross-site"},
            follow_redirects=False,
        )
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
