"""Browser sessions: the cookie, its server-side record, and CSRF protection (issue 16).

- The cookie holds an opaque random secret (32 bytes, URL-safe base64) and nothing else; the
  store holds the session under a uuid5 of the secret's SHA-256 (`domain.credentials.Session`),
  never the secret. It is `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` (named
  `__Host-casetrail_session`) when the request came over TLS, or from a trusted proxy
  (`CASETRAIL_TRUSTED_PROXIES`) that says `X-Forwarded-Proto: https`.
- Every request with the cookie (and no bearer token: a token wins) loads the session: unknown,
  signed out, idle or past its absolute limit is a 401, recorded as `AuthenticationRefused`
  (`session_invalid`); a live session acts as its user with the role chosen at sign-in, the same
  `Actor` a bearer token gives, through the same registry check (a suspended user, a revoked
  role: refused, and the session ended).
- CSRF: a state-changing request (POST, PUT, PATCH, DELETE) authenticated by the cookie must
  carry the session's CSRF token, in `X-CSRF-Token` or, for a form, the field `csrf_token`;
  otherwise 403 `csrf-failed`, recorded (`csrf_failed`). The token is an HMAC of the session
  secret (`domain.credentials.csrf_token`): the server recomputes it from the cookie, so it needs
  no storage and dies with the session. Bearer-token requests are exempt (a browser never adds
  that header by itself).

Proven by tests/integration/test_signin_sessions.py.
"""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from domain.access import Actor
from domain.application import CaseTrail
from domain.credentials import SessionEndReason, csrf_matches
from domain.refusals import RefusalReason
from domain.taxonomy import Role
from gateway.auth import AuthenticationFailed
from gateway.http.client import parse_address
from gateway.http.problems import problem

COOKIE: Final = "casetrail_session"
SECURE_COOKIE: Final = "__Host-casetrail_session"
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf_token"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM: Final = "application/x-www-form-urlencoded"


class CsrfRefused(AuthenticationFailed):
    """A state-changing request with a session cookie but without its CSRF token (403)."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def session_secret(request: Request) -> str | None:
    """The session secret the request's cookie carries, if any."""
    found = request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)
    # A secret is 43 URL-safe characters; anything else names no session (and is not looked up).
    if found and len(found) == 43 and all(c.isalnum() or c in "-_" for c in found):
        return found
    return None


def over_tls(request: Request, trusted: object) -> bool:
    """Whether the browser reached us over TLS: directly, or through a trusted proxy that says
    so. `trusted` is the services' `ProxyTrust`."""
    if request.url.scheme == "https":
        return True
    proto = request.headers.get("x-forwarded-proto", "").strip().lower()
    if proto != "https" or request.client is None:
        return False
    peer = parse_address(request.client.host)
    trusts = getattr(trusted, "trusts", None)
    return peer is not None and callable(trusts) and bool(trusts(peer))


def set_session_cookie(response: Response, secret: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(
        SECURE_COOKIE if secure else COOKIE,
        secret,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response) -> None:
    for name, secure in ((COOKIE, False), (SECURE_COOKIE, True)):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")


async def session_actor(request: Request, application: CaseTrail, secret: str) -> Actor:
    """The actor of a live session, its use stored when due; `AuthenticationFailed` if the
    session is not live, `CsrfRefused` for a state-changing request without its token."""
    session = await run_in_threadpool(application.use_session, secret)
    if session is None:
        raise AuthenticationFailed(
            "the session has ended or is not known; sign in again", RefusalReason.SESSION_INVALID
        )
    if request.method in UNSAFE_METHODS and not csrf_matches(secret, await _csrf_given(request)):
        raise CsrfRefused(
            f"a request that changes something, made with a session cookie, needs the "
            f"session's CSRF token in the X-CSRF-Token header or the `{CSRF_FIELD}` form field "
            "(GET /v1/sessions/current gives it)",
            RefusalReason.CSRF_FAILED,
        )
    request.state.session = session
    return Actor(
        user=session.user_id, role=Role(session.role), unit=session.unit, street=session.street
    )


async def end_refused_session(application: CaseTrail, secret: str) -> None:
    """The registry refused a session's user (suspended, role revoked): the session ends."""
    await run_in_threadpool(application.end_session, secret, SessionEndReason.USER_REFUSED)


async def _csrf_given(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == _FORM:
        # The body is read once and kept by the request (the endpoint reads the same bytes).
        body = await request.body()
        for name, value in parse_qsl(body.decode("utf-8", "replace")):
            if name == CSRF_FIELD:
                return value
    return ""


def install(app: FastAPI) -> None:
    """The answer to a CSRF refusal: 403 `csrf-failed` (a refused token is 401)."""

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return problem(
            request,
            status=403,
            code="csrf-failed",
            title="The request's CSRF token is missing or wrong",
            detail=str(exc),
            errors=[{"field": "X-CSRF-Token", "message": str(exc)}],
        )
