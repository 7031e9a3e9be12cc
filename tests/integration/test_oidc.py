"""OpenID Connect sign-in (`gateway/signin/oidc.py`) against a provider this test starts on
loopback: a small FastAPI app under uvicorn serving discovery, JWKS, an authorize endpoint that
signs the configured subject in at once, and a token endpoint that checks the client's secret,
the redirect URI and the PKCE verifier against the S256 challenge, and signs an RS256 ID token.
casetrail runs under uvicorn too, and one HTTP client (a browser's part: cookies, redirects
followed) goes login → provider → callback over real HTTP; casetrail redeems the code over
real HTTP.

Shown: the code flow with PKCE signs a registered, active user in (a session that works, a
`SignInSucceeded` with method `oidc`); an unknown subject, a suspended user, a changed `state`,
a replayed callback and an ID token signed by another key are each refused (401) and recorded.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

from domain.application import CaseTrail
from domain.credentials import credentials_stream_id
from domain.taxonomy import Role
from domain.users import ChangeRole, ChangeStatus
from gateway.http.app import create_app
from tests.integration.live_service import free_port
from tests.integration.test_signin import BY, register, signin_settings

CLIENT_ID = "casetrail-test"
CLIENT_SECRET = secrets.token_urlsafe(16)


def _key(kid: str) -> RSAKey:
    return RSAKey.generate_key(
        2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True
    )


@dataclass
class Provider:
    """The identity provider: who signs in next (`subject`), and what it was sent."""

    issuer: str
    redirect_uri: str
    subject: str = "u-oidc"
    key: RSAKey = field(default_factory=lambda: _key("provider-1"))
    other_key: RSAKey = field(default_factory=lambda: _key("provider-1"))
    sign_with_other_key: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            return {"keys": [self.key.as_dict(private=False)]}

        @app.get("/authorize")
        async def authorize(request: Request) -> Response:
            given = dict(request.query_params)
            self.authorize_requests.append(given)
            if (
                given.get("response_type") != "code"
                or given.get("client_id") != CLIENT_ID
                or given.get("redirect_uri") != self.redirect_uri
                or given.get("code_challenge_method") != "S256"
                or not given.get("code_challenge")
            ):
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            code = secrets.token_urlsafe(24)
            self.codes[code] = {
                "challenge": given["code_challenge"],
                "nonce": given.get("nonce", ""),
                "subject": self.subject,
            }
            query = urlencode({"code": code, "state": given.get("state", "")})
            return RedirectResponse(f"{self.redirect_uri}?{query}", status_code=302)

        @app.post("/token")
        async def token(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            basic = request.headers.get("authorization", "")
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .decode()
                .rstrip("=")
            )
            self.token_requests.append(
                {"form": form, "client_authenticated": basic == f"Basic {expected}"}
            )
            if basic != f"Basic {expected}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if (
                grant is None
                or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != self.redirect_uri
                or challenge != grant["challenge"]
            ):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {
                "iss": self.issuer,
                "aud": CLIENT_ID,
                "sub": grant["subject"],
                "nonce": grant["nonce"],
                "iat": now,
                "exp": now + 300,
            }
            key = self.other_key if self.sign_with_other_key else self.key
            id_token = jwt.encode({"alg": "RS256", "kid": "provider-1"}, claims, key)
            return JSONResponse(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "id_token": id_token,
                }
            )

        return app


class Served:
    """An ASGI app under uvicorn in a thread, on a loopback port."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            assert self.thread.is_alive(), "the server stopped at start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class World:
    provider: Provider
    base: str
    application: CaseTrail

    def browser(self) -> httpx.Client:
        return httpx.Client(follow_redirects=True, timeout=30)


@pytest.fixture
def world(home: Path, tmp_path: Path) -> Iterator[World]:
    provider_port, port = free_port(), free_port()
    # Two host names, so that the browser's cookies for one are never sent to the other.
    issuer, base = f"http://127.0.0.1:{provider_port}", f"http://localhost:{port}"
    provider = Provider(issuer=issuer, redirect_uri=f"{base}/v1/sessions/oidc/callback")
    settings = signin_settings(
        home,
        f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}",
        CASETRAIL_OIDC_ISSUER=issuer,
        CASETRAIL_OIDC_CLIENT_ID=CLIENT_ID,
        CASETRAIL_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        CASETRAIL_OIDC_REDIRECT_URI=provider.redirect_uri,
    )
    app = create_app(settings)
    with (
        Served(provider.app(), "127.0.0.1", provider_port),
        Served(app, "127.0.0.1", port),
    ):
        application: CaseTrail = app.state.services.application
        register(application, "u-oidc")
        yield World(provider, base, application)


def refusals(application: CaseTrail) -> list[str]:
    return [e.reason for e in application.authentication_refusals()]


def test_the_code_flow_with_pkce_signs_a_registered_user_in(world: World) -> None:
    with world.browser() as browser:
        landed = browser.get(f"{world.base}/v1/sessions/oidc/login")
        # login → provider → callback → "/" (nothing is served there yet: the web pages come
        # with issue 18), every hop a real redirect.
        hops = [(urlsplit(str(r.url)).path, r.status_code) for r in landed.history]
        assert hops == [
            ("/v1/sessions/oidc/login", 303),
            ("/authorize", 302),
            ("/v1/sessions/oidc/callback", 303),
        ], hops
        set_cookie = landed.history[-1].headers["set-cookie"]
        assert "casetrail_session=" in set_cookie and "HttpOnly" in set_cookie
        assert "SameSite=strict" in set_cookie
        me = browser.get(f"{world.base}/v1/sessions/current")
        assert me.status_code == 200, me.text
        assert me.json()["user_id"] == "u-oidc" and me.json()["session"]["method"] == "oidc"

    # PKCE: the provider got an S256 challenge, then the verifier that hashes to it, with the
    # client's secret; the challenge is not the verifier.
    asked = world.provider.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["scope"].startswith("openid")
    redeemed = world.provider.token_requests[-1]
    assert redeemed["client_authenticated"]
    assert redeemed["form"]["code_verifier"] != asked["code_challenge"]
    assert len(redeemed["form"]["code_verifier"]) >= 43
    events = list(world.application.events.get(credentials_stream_id("u-oidc")))
    assert [type(e).__name__ for e in events] == ["CredentialsCreated", "SignInSucceeded"]
    assert events[-1].method == "oidc"  # type: ignore[attr-defined]


def test_refusals_are_answered_401_and_recorded(world: World) -> None:
    base = world.base
    # An unknown subject: no stream is made for it, the refusal is recorded.
    world.provider.subject = "u-stranger"
    with world.browser() as browser:
        refused = browser.get(f"{base}/v1/sessions/oidc/login")
        assert refused.status_code == 401, refused.text
        assert refused.json()["type"] == "urn:casetrail:problem:sign-in-failed"
        assert "casetrail_session" not in str(refused.history[-1].headers)
    assert not list(world.application.events.get(credentials_stream_id("u-stranger")))
    assert refusals(world.application).count("oidc_refused") == 1

    # A suspended user: refused, and the refusal is an event of their credentials.
    world.provider.subject = "u-oidc"
    world.application.suspend_user("u-oidc", ChangeStatus(reason="test: suspended"), BY)
    with world.browser() as browser:
        assert browser.get(f"{base}/v1/sessions/oidc/login").status_code == 401
    events = list(world.application.events.get(credentials_stream_id("u-oidc")))
    assert getattr(events[-1], "reason", None) == "user_not_admitted"
    world.application.reinstate_user("u-oidc", ChangeStatus(reason="test: back"), BY)

    with world.browser() as browser:
        browser.follow_redirects = False
        # A changed state: refused before the code is redeemed.
        to_provider = browser.get(f"{base}/v1/sessions/oidc/login").headers["location"]
        callback = browser.get(to_provider).headers["location"]
        query = parse_qs(urlsplit(callback).query)
        changed = f"{base}/v1/sessions/oidc/callback?" + urlencode(
            {"code": query["code"][0], "state": "x" + query["state"][0]}
        )
        assert browser.get(changed).status_code == 401
        # The genuine callback still works once; its replay does not (the code is spent).
        assert browser.get(callback).status_code == 303
        assert browser.get(callback).status_code == 401
    # Throttled per client and reason: the later refusals are counted into the next event.
    assert refusals(world.application).count("oidc_refused") >= 1

    # An ID token signed by a key the provider never published.
    world.provider.sign_with_other_key = True
    with world.browser() as browser:
        forged = browser.get(f"{base}/v1/sessions/oidc/login")
        assert forged.status_code == 401
        assert "ID token is not valid" in forged.json()["detail"]


def test_a_user_holding_several_roles_is_refused_401_and_recorded(world: World) -> None:
    # A provider's sign-in names no role (the fixers' review: this was a bare 422, unrecorded).
    world.application.grant_role(
        "u-oidc", ChangeRole(role=Role.SUPERVISOR, reason="test: acting supervisor"), BY
    )
    with world.browser() as browser:
        refused = browser.get(f"{world.base}/v1/sessions/oidc/login")
        assert refused.status_code == 401, refused.text
        assert refused.json()["type"] == "urn:casetrail:problem:sign-in-failed"
        assert "casetrail_session" not in str(refused.history[-1].headers)
    events = list(world.application.events.get(credentials_stream_id("u-oidc")))
    assert getattr(events[-1], "reason", None) == "role_not_chosen"
