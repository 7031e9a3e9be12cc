"""Refused authentications are recorded (issue: "Unauthenticated refusals leave no trace").

Over the real ASGI app on SQLite and PostgreSQL: a missing, malformed, expired, forged (signed by
an untrusted key), wrongly addressed (other audience) or unknown-role token is answered 401 and
stored first as an `AuthenticationRefused` event naming the reason, the route template and the
case id of the path, never any part of the token; a flood is stored at a bounded rate, with the
refusals not stored counted; compliance auditors list them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.refusals import AuthenticationRefused
from domain.taxonomy import Role
from gateway import keyring
from gateway.auth import issue_token
from gateway.settings import TOKEN_AUDIENCE, TOKEN_ISSUER, Settings
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case


def _application(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE, "sub": "user-probe", "role": "coordinator",
        "unit": "office", "street": "chengguan-street", "iat": now, "exp": now + 600,
    }  # fmt: skip
    claims.update(changes)
    return claims


def _bad_tokens(settings: Settings) -> dict[str, str | None]:
    """reason -> Authorization header value (None: no header)."""
    trusted = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")
    forger = Ed25519PrivateKey.generate()
    return {
        "missing": None,
        "malformed": "Bearer not.a.jwt-but-a-name-zhangsan-110101200501011234",
        "untrusted_signature": "Bearer " + jwt.encode(_claims(), forger, algorithm="EdDSA"),
        "expired": "Bearer "
        + jwt.encode(_claims(iat=1, exp=2), trusted, algorithm="EdDSA"),
        "invalid_claims": "Bearer " + jwt.encode(_claims(aud="other"), trusted, algorithm="EdDSA"),
        "unknown_role": "Bearer " + jwt.encode(_claims(role="root"), trusted, algorithm="EdDSA"),
    }


@pytest.mark.parametrize(
    ("method", "path", "names_case"),
    [
        ("GET", "/v1/cases/{case}", True),
        ("POST", "/v1/cases/{case}/follow-ups", True),
        ("GET", "/v1/cases/{case}/accesses", True),
        ("GET", "/v1/ledger", False),
    ],
)
def test_each_refused_token_is_stored_before_the_401(
    client: TestClient, settings: Settings, auth: TokenFactory,
    method: str, path: str, names_case: bool,
) -> None:  # fmt: skip
    created = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, "dongshan-village")
    )
    case_id = created.json()["id"]
    application = _application(client)
    for reason, header in _bad_tokens(settings).items():
        # A fresh client address per attempt: the throttle is per (client, reason).
        client.app.state.services.refusals._sources.clear()  # type: ignore[attr-defined]
        headers = {"X-Purpose-Of-Use": "consultation"}
        if header is not None:
            headers["Authorization"] = header
        response = client.request(
            method, path.format(case=case_id), headers=headers,
            json={"visited_on": "2026-01-01", "notes": "走访。"} if method == "POST" else None,
        )  # fmt: skip
        assert response.status_code == 401, (reason, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        request_id = response.headers["X-Request-ID"]
        (event,) = [
            e for e in application.authentication_refusals() if e.request_id == request_id
        ]
        assert isinstance(event, AuthenticationRefused)
        assert event.reason == reason
        assert event.method == method
        assert event.route == path.replace("{case}", "{case_id}")
        assert event.case_id == (uuid.UUID(case_id) if names_case else None)
        stored = repr(event.__dict__)
        if header is not None:
            token = header.removeprefix("Bearer ")
            for part in token.split("."):
                if len(part) >= 8:  # the JWT's parts; short ones could match anything
                    assert part not in stored
                    assert part not in response.text
        assert "zhangsan" not in response.text
        assert "110101200501011234" not in response.text


def test_a_flood_is_stored_at_a_bounded_rate_and_counted(
    client: TestClient, settings: Settings
) -> None:
    application = _application(client)
    forged = _bad_tokens(settings)["untrusted_signature"]
    assert forged is not None
    before = len(application.authentication_refusals())
    for _ in range(300):
        response = client.get("/v1/ledger", headers={"Authorization": forged})
        assert response.status_code == 401
    stored = application.authentication_refusals()
    assert len(stored) - before == 1, "one source, one reason: one event per window"
    throttle = client.app.state.services.refusals  # type: ignore[attr-defined]
    (source,) = throttle._sources.values()
    assert source.pending == 299  # counted, and carried by the source's next stored event


def test_compliance_auditors_list_refusals_and_others_may_not(
    client: TestClient, settings: Settings, auth: TokenFactory
) -> None:
    case_id = str(uuid.uuid4())
    expired = _bad_tokens(settings)["expired"]
    assert expired is not None
    assert client.get(f"/v1/cases/{case_id}", headers={"Authorization": expired}).status_code == 401
    auditor = auth(Role.COMPLIANCE_AUDITOR, "county-audit", purpose="compliance_review")
    listed = client.get(
        "/v1/compliance/authentication-refusals", params={"case_id": case_id}, headers=auditor
    )
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert item["reason"] == "expired"
    assert item["case_id"] == case_id
    assert item["route"] == "/v1/cases/{case_id}"
    assert item["suppressed"] == 0
    coordinator = auth(Role.COORDINATOR, "office", purpose="consultation")
    refused = client.get("/v1/compliance/authentication-refusals", headers=coordinator)
    assert refused.status_code == 403


def test_a_valid_token_is_not_recorded_as_refused(client: TestClient, auth: TokenFactory) -> None:
    coordinator = auth(Role.COORDINATOR, "office", purpose="consultation")
    response = client.get("/v1/ledger", headers=coordinator)
    assert response.status_code in (200, 503)  # 503 only while the read models open
    assert _application(client).authentication_refusals() == []


def test_issue_token_still_verifies(settings: Settings) -> None:
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")
    assert issue_token(key, user="u", role=Role.REPORTER, unit="v", street="s").count(".") == 2
