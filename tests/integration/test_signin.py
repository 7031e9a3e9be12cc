"""Password sign-in (issue 16, `domain.credentials`, `gateway/http/routes/signin.py`), over the
real app on SQLite and PostgreSQL: the same answer for an unknown user and a wrong password;
a lockout after N failures, refused even with the right password, unlocked by an operator; a
second factor required, a wrong and a replayed code refused; every attempt recorded as an
event; and the planted password, TOTP secret and codes in no log line, no answer (body or
header), and not in the store's bytes (whose control search finds the credentials' topics).
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pyotp
import pytest
from faker import Faker
from fastapi.testclient import TestClient
from httpx import Response

from domain.application import CaseTrail
from domain.credentials import credentials_stream_id
from domain.refusals import AuthenticationRefused
from domain.taxonomy import Role
from domain.users import ChangeRole, Post, RegisterUser
from gateway import logs
from gateway.cli.main import DEFAULT_STREET
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.conftest import PG_DSN

VILLAGE = "dongshan-village"
BY = {"user": "test-admin", "role": "admin", "unit": "", "street": ""}


def signin_settings(home: Path, store_url: str, **extra: str) -> Settings:
    return Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": store_url, **extra}
    )


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def register(
    application: CaseTrail,
    user_id: str,
    *,
    role: Role = Role.REPORTER,
    unit: str = VILLAGE,
    password: str | None = None,
) -> None:
    fake = Faker("zh_CN")
    application.register_user(
        RegisterUser(
            user_id=user_id,
            display_name=fake.name(),
            unit=unit,
            street=DEFAULT_STREET,
            role=role,
            post=Post.CHILD_DIRECTOR,
            reason="test: a person who signs in",
        ),
        BY,
    )
    if password is not None:
        application.set_password(user_id, password, BY, "test: first password")


def planted_password() -> str:
    return f"Planted-{uuid4().hex[:16]}-密码"


def sign_in(client: TestClient, user_id: str, password: str, **extra: str) -> Response:
    found: Response = client.post(
        "/v1/sessions", json={"user_id": user_id, "password": password, **extra}
    )
    return found


def credential_events(application: CaseTrail, user_id: str) -> list[Any]:
    return list(application.events.get(credentials_stream_id(user_id)))


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("debug", stream=stream)
    caplog.set_level(logging.DEBUG)
    try:
        yield stream
    finally:
        logs.configure("info")


def log_text(stream: io.StringIO, caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        [stream.getvalue()]
        + [caplog.handler.format(r) for r in caplog.records if not r.name.startswith("httpx")]
    )


def store_bytes(settings: Settings) -> bytes:
    """The event store as stored: the SQLite file and its WAL, or the PostgreSQL rows."""
    url = settings.database_url
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    schema = url.split("schema=")[1]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(f"SELECT topic, state FROM {schema}.casetrail_events").fetchall()
    return b"".join(str(r[0]).encode() + bytes(r[1]) for r in rows)


def test_password_sign_in_lockout_second_factor_and_no_secret_leaks(
    home: Path, store_url: str, captured: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    settings = signin_settings(home, store_url, CASETRAIL_SIGNIN_MAX_FAILURES="3")
    password, wrong = planted_password(), planted_password()
    totp_secret = pyotp.random_base32()
    codes: list[str] = []
    answers: list[Response] = []
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = application_of(client)
        register(app, "u-signin", password=password)

        # Unknown user and wrong password: one answer, bar the request's own id.
        unknown = sign_in(client, "u-nobody", password)
        bad = sign_in(client, "u-signin", wrong)
        answers += [unknown, bad]
        assert unknown.status_code == bad.status_code == 401
        same = ("type", "title", "detail", "status", "instance")
        assert {k: unknown.json()[k] for k in same} == {k: bad.json()[k] for k in same}
        assert unknown.json()["type"] == "urn:casetrail:problem:sign-in-failed"
        assert "set-cookie" not in unknown.headers and "set-cookie" not in bad.headers

        # The right password: a session cookie, HttpOnly and SameSite=Strict (no TLS here).
        good = sign_in(client, "u-signin", password)
        answers.append(good)
        assert good.status_code == 201, good.text
        cookie = good.headers["set-cookie"]
        assert cookie.startswith("casetrail_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
        assert good.json()["user_id"] == "u-signin" and good.json()["role"] == "reporter"
        me = client.get("/v1/sessions/current")
        assert me.status_code == 200 and me.json()["user_id"] == "u-signin"
        client.cookies.clear()

        # Three wrong passwords lock the account: then even the right one is refused, alike.
        for _ in range(3):
            answers.append(sign_in(client, "u-signin", wrong))
        locked = sign_in(client, "u-signin", password)
        answers.append(locked)
        assert locked.status_code == 401
        assert locked.json()["detail"] == bad.json()["detail"]
        app.unlock_account("u-signin", BY, "test: the user called the help desk")
        assert sign_in(client, "u-signin", password).status_code == 201
        client.cookies.clear()

        # A second factor: required, a wrong code refused, the right one good once.
        app.enrol_totp("u-signin", totp_secret, BY)
        required = sign_in(client, "u-signin", password)
        answers.append(required)
        assert required.status_code == 401
        assert required.json()["type"] == "urn:casetrail:problem:totp-required"
        assert [e["field"] for e in required.json()["errors"]] == ["totp"]
        totp = pyotp.TOTP(totp_secret)
        now = datetime.now(UTC)
        right = totp.at(now)
        wrong_code = next(c for c in ("000000", "111111", "222222") if c != right)
        codes += [right, wrong_code, totp.at(now + timedelta(seconds=30))]
        answers.append(sign_in(client, "u-signin", password, totp=wrong_code))
        assert answers[-1].status_code == 401
        assert answers[-1].json()["detail"] == bad.json()["detail"]
        answers.append(sign_in(client, "u-signin", password, totp=right))
        assert answers[-1].status_code == 201, answers[-1].text
        client.cookies.clear()
        replayed = sign_in(client, "u-signin", password, totp=right)
        answers.append(replayed)
        assert replayed.status_code == 401  # a code is good once
        answers.append(sign_in(client, "u-signin", password, totp=codes[2]))
        assert answers[-1].status_code == 201, answers[-1].text

        # Every attempt is an event of the user's credentials; the unknown user and the
        # attempt on the locked account are refusals (no stream is made for an unknown id).
        events = credential_events(app, "u-signin")
        failed = [e.reason for e in events if type(e).__name__ == "SignInFailed"]
        assert failed == [
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "totp_required",
            "wrong_totp",
            "totp_replayed",
        ]
        assert kinds(events).count("AccountLocked") == 1
        assert kinds(events).count("AccountUnlocked") == 1
        assert kinds(events).count("SignInSucceeded") == 4
        assert not list(app.events.get(credentials_stream_id("u-nobody")))
        refused = {e.reason for e in app.authentication_refusals()}
        assert {"unknown_account", "account_locked"} <= refused
        assert all(isinstance(e, AuthenticationRefused) for e in app.authentication_refusals())

    secrets = [password, wrong, totp_secret, *codes]
    for answer in answers:
        text = answer.text + str(answer.headers)
        for secret in secrets:
            assert secret not in text, f"an answer repeats a secret: {text[:200]}"
    output = log_text(captured, caplog)
    assert '"event": "sign_in_refused"' in output and '"event": "signed_in"' in output
    for secret in secrets:
        assert secret not in output, "a log line holds a secret"
    stored = store_bytes(settings)
    assert b"domain.credentials:Credentials.SignInFailed" in stored  # the search finds rows
    for secret in [*secrets, "$argon2id$"]:
        assert secret.encode() not in stored, "the store holds a secret (or a hash) in clear"


def test_a_role_is_chosen_among_several_and_a_weak_password_is_refused(
    home: Path, tmp_path: Path
) -> None:
    settings = signin_settings(home, f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}")
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = application_of(client)
        register(app, "u-two-roles", role=Role.COORDINATOR, unit=f"{DEFAULT_STREET}-office")
        app.grant_role(
            "u-two-roles",
            ChangeRole(role=Role.SUPERVISOR, reason="test: acting supervisor"),
            BY,
        )
        with pytest.raises(Exception, match="at least 12 characters"):
            app.set_password("u-two-roles", "short", BY, "test")
        app.set_password("u-two-roles", password, BY, "test")
        several = sign_in(client, "u-two-roles", password)
        assert several.status_code == 422, several.text
        assert [e["field"] for e in several.json()["errors"]] == ["role"]
        chosen = sign_in(client, "u-two-roles", password, role="supervisor")
        assert chosen.status_code == 201 and chosen.json()["role"] == "supervisor"
        not_held = sign_in(client, "u-two-roles", password, role="admin")
        assert not_held.status_code == 422
        # Bad input is a 422 naming the field, never the value.
        bad = client.post("/v1/sessions", json={"user_id": "U NOT A CODE", "password": password})
        assert bad.status_code == 422 and password not in bad.text
        assert [e["field"] for e in bad.json()["errors"]] == ["user_id"]
        extra = client.post("/v1/sessions", json={"user_id": "u", "password": "p", "x": 1})
        assert extra.status_code == 422
        not_json = client.post(
            "/v1/sessions", content=b"nope", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 422
