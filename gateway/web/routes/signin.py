"""Signing in and out from the pages: `GET /signin` (the form), `POST /signin` (the API's own
password sign-in, `gateway.http.routes.signin.sign_in`: the same checks, lockout and records;
its refusal shown in Chinese, the same words for every cause; a field asked once, the TOTP code
or the role, stays in the form so that a person asked both can finish), `POST /signout` (the
session ended for every worker, the cookie cleared). Proven by tests/web/test_pages_core.py
and tests/web/test_web_review.py."""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from domain.credentials import SessionEndReason
from domain.errors import DomainError
from domain.taxonomy import Role
from gateway.http.dependencies import RequestContextDep, ServicesDep
from gateway.http.routes.signin import sign_in
from gateway.http.sessions import clear_session_cookie, session_secret
from gateway.logs import get_logger
from gateway.web.dependencies import PageActorDep
from gateway.web.errors import SIGNIN_URL
from gateway.web.forms import FORM_TYPE
from gateway.web.templating import render

router = APIRouter()
log = get_logger("casetrail.web")

# One message for every refusal: the page never tells an unknown user from a wrong password.
_REFUSED: Final = "用户名、密码或验证码不正确，或账户已被锁定、停用。请重试，或联系系统管理员。"
_MESSAGES: Final = {
    "sign-in-failed": _REFUSED,
    "totp-required": "此账户已启用两步验证：请填写验证器应用中的 6 位数字。",
    "role-choice": "您有多个角色：请选择本次登录使用的角色。",
    "cross-site-sign-in": "请从本系统自己的登录页登录。",
    "request-invalid": "请填写用户名和密码（用户名为登录编号，不是姓名）。",
}


def _signin_page(
    request: Request,
    *,
    status: int = 200,
    code: str = "",
    roles: bool = False,
    totp: bool = False,
) -> Response:
    """The form; `totp` and `roles` keep the fields a previous answer asked for (a person
    with a second factor and several roles is asked both, one after the other: the form
    must keep both to be completed)."""
    message = _MESSAGES.get(code, _REFUSED) if code else ""
    return render(
        request,
        "signin.html",
        {
            "message": message,
            "ask_totp": totp or code == "totp-required",
            "roles": list(Role) if roles or code == "role-choice" else [],
        },
        status=status,
        title="登录",
    )


@router.get(SIGNIN_URL)
async def signin_page(request: Request) -> Response:
    return _signin_page(request)


@router.post(SIGNIN_URL)
async def signin_submit(request: Request, svc: ServicesDep, context: RequestContextDep) -> Response:
    # The API's sign-in answers its refusals as problem+json: read here, shown as the page.
    # Only for that call: any other problem of this request (a failure) is a page.
    try:
        answer = await _api_sign_in(request, svc, context)
    except RequestValidationError:
        return _signin_page(request, status=422, code="request-invalid", **await _kept(request))
    except DomainError as refused:
        # Recorded by the sign-in itself; the same words for every cause of a refusal.
        log.info("command_refused", code=refused.code)
        code = refused.code.replace("_", "-")
        return _signin_page(request, status=refused.status, code=code, **await _kept(request))
    if answer.status_code in (201, 303):
        # Signed in: the cookie the API set, on to the home page.
        found = RedirectResponse("/", status_code=303)
        for name, value in answer.raw_headers:
            if name.lower() == b"set-cookie":
                found.raw_headers.append((name, value))
        return found
    code = ""
    try:
        code = str(json.loads(bytes(answer.body))["type"]).rsplit(":", 1)[-1]
    except (ValueError, KeyError, TypeError):
        code = "sign-in-failed"
    return _signin_page(request, status=answer.status_code, code=code, **await _kept(request))


async def _api_sign_in(request: Request, svc: ServicesDep, context: RequestContextDep) -> Response:
    request.state.problem_as_json = True
    try:
        return await sign_in(request, svc, context)
    finally:
        request.state.problem_as_json = False


async def _kept(request: Request) -> dict[str, bool]:
    """Which of the optional fields the form posted filled in (their names only, never what
    they held): asked once, they stay in the form."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return {"totp": False, "roles": False}
    filled = {
        name
        for name, value in parse_qsl((await request.body()).decode("utf-8", "replace"))
        if value.strip()
    }
    return {"totp": "totp" in filled, "roles": "role" in filled}


@router.post("/signout")
async def signout(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """End the session (CSRF checked before this runs) and go back to the sign-in page."""
    secret = session_secret(request)
    if secret is not None and getattr(request.state, "session", None) is not None:
        await run_in_threadpool(svc.application.end_session, secret, SessionEndReason.SIGNED_OUT)
    answer = RedirectResponse(SIGNIN_URL, status_code=303)
    clear_session_cookie(answer)
    return answer
