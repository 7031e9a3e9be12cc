"""Sign-in for browsers: `POST /v1/sessions` (password, and TOTP when enrolled),
`GET|DELETE /v1/sessions/current`, and OIDC (`GET /v1/sessions/oidc/login`, `.../callback`).

- `POST /v1/sessions` takes JSON or a form (`application/x-www-form-urlencoded`, for the web
  pages): `user_id`, `password`, `totp` (6 digits, when the account has a second factor),
  `role` (when the user holds several). Success: the session cookie (`gateway.http.sessions`)
  and, for JSON, 201 with the user, role, unit, street, limits and the CSRF token; for a form,
  303 to `/`. Every failure is the same 401 `sign-in-failed` (unknown user, wrong password,
  wrong code, locked, suspended), after the same argon2 work; only a right password without its
  code says `totp-required`, and only right secrets with a role not held (or several held and
  none chosen) say `role-choice`. Each attempt is recorded (`domain.credentials`); nothing
  submitted is ever logged or answered. A sign-in a browser says comes from another site or a
  sibling subdomain (`Sec-Fetch-Site`, else `Origin`) is refused (403), and a body that is
  neither JSON nor a form is a 415 (a cross-site `text/plain` form cannot pass for JSON).
- `GET /v1/sessions/current`: who the request acts as, and for a session its limits and CSRF
  token. `DELETE /v1/sessions/current`: signs out (the session is ended in the store, so every
  worker refuses its cookie from then on) and clears the cookie; needs the CSRF token.
- OIDC (`gateway.signin.oidc`, when CASETRAIL_OIDC_* are set; else 404): `login` redirects to
  the provider with PKCE, `callback` redeems the code, maps the configured claim to a
  registered, active user and starts a session; a refusal (bad state, token, ID token, an
  unknown subject) is recorded as `AuthenticationRefused` (`oidc_refused`) and answered 401.

Proven by tests/integration/test_signin.py, test_signin_sessions.py and test_oidc.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from domain.commands import Code
from domain.credentials import RoleChoice, SessionEndReason, SignInRefused, csrf_token
from domain.refusals import RefusalReason
from domain.taxonomy import Role
from gateway import bootstrap
from gateway.http.dependencies import (
    ActorDep,
    RequestContextDep,
    Services,
    ServicesDep,
    _record_refusal,
)
from gateway.http.problems import problem
from gateway.http.sessions import (
    clear_session_cookie,
    new_secret,
    over_tls,
    session_secret,
    set_session_cookie,
)
from gateway.logs import get_logger
from gateway.signin import SignIn
from gateway.signin.oidc import TRANSACTION_SECONDS, OidcRefused

log = get_logger("casetrail.api")
router = APIRouter()
T = TypeVar("T")

OIDC_COOKIE: Final = "casetrail_oidc"
OIDC_PATH: Final = "/v1/sessions/oidc"
_FORM: Final = "application/x-www-form-urlencoded"
# argon2id takes 64 MiB per hash: at most this many at once per process, so that a flood of
# sign-ins queues instead of taking the machine's memory.
_HASHING: Final = threading.BoundedSemaphore(2)


class SignInBody(BaseModel):
    """A password sign-in."""

    model_config = ConfigDict(extra="forbid")

    user_id: Code = Field(description="your user id (not your name)")
    password: str = Field(min_length=1, max_length=1024, description="never logged or stored")
    totp: str | None = Field(
        None,
        pattern=r"^[0-9]{6}$",
        min_length=6,
        max_length=6,
        description="the 6-digit code of your authenticator app, when your account has one",
    )
    role: Role | None = Field(None, description="the role to act in, when you hold several")


def signin_of(svc: Services) -> SignIn:
    """Sign-in's configuration, built once per worker from its settings (the wiring point)."""
    if svc.signin is None:
        svc.signin = bootstrap.sign_in(svc.settings)
    return svc.signin


def _hashing(call: Callable[[], T]) -> T:
    with _HASHING:
        return call()


_BODY_SCHEMA: Final = SignInBody.model_json_schema(ref_template="#/components/schemas/{model}")
_PROBLEM: Final = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _answers(**described: str) -> dict[int | str, dict[str, Any]]:
    """Problem answers of an operation the app's document does not add by itself (the sign-in
    endpoints take no token: `_problem_statuses` adds 401/403 only to secured operations)."""
    return {
        int(k.lstrip("s")): {"description": v, "content": _PROBLEM} for k, v in described.items()
    }


@router.post(
    "/v1/sessions",
    tags=["sessions"],
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _BODY_SCHEMA},
                _FORM: {"schema": _BODY_SCHEMA},
            },
        }
    },
    responses={
        303: {"description": "Signed in from a form: on to `/`, the cookie set"},
        **_answers(
            s401="Sign-in failed (`sign-in-failed`, the same for every cause) or a TOTP code is "
            "needed (`totp-required`)",
            s403="A sign-in form posted from another site",
            s415="A body neither JSON nor a form",
            s503="The event store could not record the sign-in; retry later",
        ),
    },
)
async def sign_in(request: Request, svc: ServicesDep, context: RequestContextDep) -> Response:
    """Sign in with a password (and TOTP code): a session cookie (HttpOnly, SameSite=Strict,
    Secure over TLS). The same 401 for an unknown user, a wrong password or code, a lock."""
    kind = _content_type(request)
    form = kind == _FORM
    if _from_another_site(request):
        return problem(
            request,
            status=403,
            code="cross-site-sign-in",
            title="A sign-in form posted from another site",
            detail="sign in from casetrail's own page",
        )
    if not form and not _json_type(kind):
        # A cross-site form may post `text/plain` holding JSON without a preflight: a body is
        # read as JSON only when it says it is.
        return problem(
            request,
            status=415,
            code="unsupported-media-type",
            title="A sign-in is JSON or a form",
            detail="post application/json or application/x-www-form-urlencoded",
        )
    body = await _body(request, form=form)
    config = signin_of(svc)
    secret = new_secret()
    try:
        session = await run_in_threadpool(
            _hashing,
            lambda: svc.application.sign_in_with_password(
                body.user_id,
                body.password,
                totp_code=body.totp,
                role=body.role,
                secret=secret,
                client=context.client.as_record(),
                policy=config.policy,
                limits=config.limits,
            ),
        )
    except SignInRefused as refused:
        log.info("sign_in_refused", reason=refused.reason)
        if refused.unrecorded is not None:
            await _record_refusal(request, svc, refused.unrecorded)
        raise
    log.info("signed_in", actor=session.user_id, role=session.role, method="password")
    answer: Response
    if form:
        answer = RedirectResponse("/", status_code=303)
    else:
        answer = JSONResponse(_describe(session, secret), status_code=201)
    set_session_cookie(
        answer,
        secret,
        secure=over_tls(request, svc.proxy_trust),
        max_age=int(config.limits.absolute.total_seconds()),
    )
    return answer


@router.get("/v1/sessions/current", tags=["sessions"])
async def current_session(request: Request, actor: ActorDep) -> dict[str, Any]:
    """Who this request acts as; for a browser session, also its limits and CSRF token."""
    session = getattr(request.state, "session", None)
    secret = session_secret(request)
    found: dict[str, Any] = {
        "user_id": actor.user,
        "role": str(actor.role),
        "unit": actor.unit,
        "street": actor.street,
        "session": None,
    }
    if session is not None and secret is not None:
        found["session"] = _describe(session, secret)
    return found


@router.delete(
    "/v1/sessions/current",
    tags=["sessions"],
    status_code=204,
    responses=_answers(s409="The request carries a bearer token, not a session"),
)
async def sign_out(request: Request, actor: ActorDep, svc: ServicesDep) -> Response:
    """Sign out: the session ends for every worker at once, and the cookie is cleared."""
    secret = session_secret(request)
    if getattr(request.state, "session", None) is None or secret is None:
        return problem(
            request,
            status=409,
            code="no-session",
            title="This request carries no session",
            detail="a bearer token is not a session: it ends when it expires",
        )
    await run_in_threadpool(svc.application.end_session, secret, SessionEndReason.SIGNED_OUT)
    log.info("signed_out", actor=actor.user)
    answer = Response(status_code=204)
    clear_session_cookie(answer)
    return answer


# --- OIDC ---------------------------------------------------------------------------------------


@router.get(
    f"{OIDC_PATH}/login",
    tags=["sessions"],
    status_code=303,
    responses={
        303: {"description": "On to the identity provider"},
        **_answers(
            s404="No OpenID Connect provider is configured",
            s503="The identity provider cannot be reached",
        ),
    },
)
async def oidc_login(request: Request, svc: ServicesDep) -> Response:
    """Sign in at the configured OpenID Connect provider (authorization code flow, PKCE)."""
    oidc = signin_of(svc).oidc
    if oidc is None:
        return _no_oidc(request)
    try:
        url, transaction = await oidc.begin()
    except OidcRefused as refused:
        log.warning("oidc_unavailable", error=str(refused))
        return problem(
            request,
            status=503,
            code="oidc-unavailable",
            title="The identity provider cannot be reached",
            detail=str(refused),
            headers={"Retry-After": "30"},
        )
    answer = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the provider sends the browser back here by a cross-site redirect.
    answer.set_cookie(
        OIDC_COOKIE,
        transaction,
        max_age=TRANSACTION_SECONDS,
        path=OIDC_PATH,
        secure=over_tls(request, svc.proxy_trust),
        httponly=True,
        samesite="lax",
    )
    return answer


@router.get(
    f"{OIDC_PATH}/callback",
    tags=["sessions"],
    status_code=303,
    responses={
        303: {"description": "Signed in: on to `/`, the session cookie set"},
        **_answers(
            s401="The sign-in was refused (state, code, ID token, or no such active user)",
            s404="No OpenID Connect provider is configured",
            s503="The event store could not record the sign-in; retry later",
        ),
    },
)
async def oidc_callback(
    request: Request,
    svc: ServicesDep,
    context: RequestContextDep,
    # What providers send: printable ASCII only (RFC 6749 §A.11, §A.5); anything else is a 422.
    code: Annotated[str | None, Query(max_length=2048, pattern=r"^[\x21-\x7e]+$")] = None,
    state: Annotated[str | None, Query(max_length=512, pattern=r"^[\x21-\x7e]+$")] = None,
) -> Response:
    """Where the provider sends the browser back: the code is redeemed (with the PKCE
    verifier), the ID token verified, and its user signed in if registered and active."""
    config = signin_of(svc)
    oidc = config.oidc
    if oidc is None:
        return _no_oidc(request)
    try:
        if not code or not state:
            raise OidcRefused("the provider sent no code (the sign-in was cancelled or refused)")
        user_id = await oidc.finish(code, state, request.cookies.get(OIDC_COOKIE))
    except OidcRefused as refused:
        log.info("oidc_refused", error=str(refused))
        await _record_refusal(request, svc, RefusalReason.OIDC_REFUSED)
        return _refused(request, str(refused))
    secret = new_secret()
    try:
        session = await run_in_threadpool(
            svc.application.sign_in_external,
            user_id,
            method="oidc",
            role=None,
            secret=secret,
            client=context.client.as_record(),
            limits=config.limits,
        )
    except SignInRefused as refused:
        log.info("sign_in_refused", reason=refused.reason, method="oidc")
        if refused.unrecorded is not None:
            await _record_refusal(request, svc, refused.unrecorded)
        return _refused(request, refused.message)
    except RoleChoice as refused:
        # A provider's sign-in names no role: a user holding several is refused (recorded on
        # their credentials as role_not_chosen) with a problem that says what to do.
        log.info("sign_in_refused", reason="role_not_chosen", method="oidc")
        return _refused(
            request,
            f"{refused}; sign in with a password and a role, or ask an administrator",
        )
    log.info("signed_in", actor=session.user_id, role=session.role, method="oidc")
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(OIDC_COOKIE, path=OIDC_PATH, httponly=True, samesite="lax")
    set_session_cookie(
        answer,
        secret,
        secure=over_tls(request, svc.proxy_trust),
        max_age=int(config.limits.absolute.total_seconds()),
    )
    return answer


# --- helpers ------------------------------------------------------------------------------------


def _describe(session: Any, secret: str) -> dict[str, Any]:
    return {
        "user_id": session.user_id,
        "role": session.role,
        "unit": session.unit,
        "street": session.street,
        "method": session.method,
        "expires_at": session.expires_at.isoformat(),
        "idle_minutes": session.idle.total_seconds() / 60,
        "csrf_token": csrf_token(secret),
    }


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _json_type(kind: str) -> bool:
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _from_another_site(request: Request) -> bool:
    """Whether a browser says the sign-in comes from a page not of this origin (login CSRF:
    another site, a sibling subdomain included, signing the browser in as someone else).
    `Sec-Fetch-Site` where the browser sends it; else an `Origin` naming another host (a
    sandboxed page's `null` too). A client that is not a browser sends neither."""
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    if site:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "").strip().lower()
    try:
        named = urlsplit(origin.strip()).netloc.lower()
    except ValueError:  # not a URL ("http://[::1"): not this site
        return True
    return not host or named != host


async def _body(request: Request, *, form: bool) -> SignInBody:
    """The body, JSON or form, validated; a 422 naming the field (never its value)."""
    raw = await request.body()
    values: Any
    if form:
        values = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        values.pop("csrf_token", None)  # a page's forms all carry it; sign-in needs none
        for optional in ("totp", "role"):
            if values.get(optional) == "":
                values.pop(optional)
    else:
        try:
            values = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: JSON nested deeper than the parser's stack; no sign-in body is.
            values = None
        if not isinstance(values, dict):
            raise RequestValidationError(
                [{"type": "model_type", "loc": ("body",), "msg": "must be a JSON object"}]
            )
    try:
        return SignInBody.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _no_oidc(request: Request) -> Response:
    return problem(
        request,
        status=404,
        code="oidc-not-configured",
        title="No OpenID Connect provider is configured",
        detail="sign in with a password (POST /v1/sessions), or ask the operators to set "
        "CASETRAIL_OIDC_ISSUER, CASETRAIL_OIDC_CLIENT_ID and CASETRAIL_OIDC_REDIRECT_URI",
    )


def _refused(request: Request, detail: str) -> Response:
    return problem(
        request,
        status=401,
        code="sign-in-failed",
        title="Sign-in refused",
        detail=detail,
    )
