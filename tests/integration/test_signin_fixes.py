"""Sign-in input that used to answer 500 (issue 16 review), over real HTTP on SQLite (as
test_signin_sessions.py; the credentials' storage on both stores is test_signin.py):

- a sign-in body of JSON nested deeper than the parser's stack is a 422 problem naming the
  body, nothing written;
- a session's change with a non-ASCII CSRF token is a wrong token: 403 csrf-failed, recorded,
  nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.http.app import create_app
from gateway.http.examples import REPORT_CLUE_BODY
from gateway.settings import Settings
from tests.integration.test_signin import application_of, planted_password, register, sign_in
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
