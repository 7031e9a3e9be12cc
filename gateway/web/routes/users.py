"""The administrator's pages of the user registry (issue 18; the registry of issue 16):

- `GET /admin/users`: every registered user (user id, display name, post, roles, unit,
  street, status);
- `GET /admin/users/new` + `POST /admin/users/new`: register a user with a first role and post;
- `GET /admin/users/{user_id}`: the user, their history (who held which post and roles when,
  who changed them why), and the forms: grant / revoke a role, suspend / reinstate, change the
  post, set a first or new password, unlock an account locked by failed sign-ins, remove a
  lost TOTP second factor (`POST /admin/users/{user_id}/grant`, `/revoke`, `/suspend`,
  `/reinstate`, `/post`, `/password`, `/unlock`, `/totp-removal`).

Administrators only, as the JSON API (`gateway.http.routes.users`): anyone else is refused and
the refusal stored as `CommandRefused` before the refusal page (the API's own `_require_admin`);
an administrator's command refused by a rule of `domain.users` with 403 (their own account) is
stored too (`_recording`). Each change is the application's own command
(`CaseTrail.register_user`, `grant_role`, ...) with the administrator as `by`, recorded with
origin channel `web`. A password is set as `casetrail user password` sets it
(`CaseTrail.set_password`: typed by the administrator, twice, never shown, only its argon2id
hash stored). A display name is personal data: it is on these pages for administrators, never in
a URL (a user id is an opaque code). A form with errors is answered 422 with nothing stored and
nothing submitted repeated. Proven by tests/web/test_users_pages.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from domain.access import Actor
from domain.commands import Note
from domain.credentials import MIN_PASSWORD_CHARS
from domain.errors import DomainError
from domain.taxonomy import Role
from domain.users import POST_LABELS, ChangePost, ChangeRole, ChangeStatus, RegisterUser, User
from gateway.http.dependencies import Services
from gateway.http.routes.users import UserIdPath, _recording, _require_admin
from gateway.logs import get_logger
from gateway.web.dependencies import PageActorDep, ServicesDep
from gateway.web.forms import FieldError, first, form_errors, read_form, see_other, validate
from gateway.web.labels import ROLE_LABELS
from gateway.web.templating import render

log = get_logger("casetrail.web")
router = APIRouter()

_REGISTER_LABELS: Final = {
    "user_id": "用户编号",
    "display_name": "姓名",
    "unit": "单位代码",
    "street": "街道代码",
    "role": "角色",
    "post": "岗位",
    "reason": "事由",
}
_ROLE_LABELS_FORM: Final = {"role": "角色", "reason": "事由"}
_STATUS_LABELS: Final = {"reason": "事由"}
_POST_LABELS_FORM: Final = {"post": "岗位", "reason": "事由"}
_REASON_LABELS: Final = {"reason": "事由"}
_PASSWORD_LABELS: Final = {"password": "新密码", "confirm": "再次输入新密码", "reason": "事由"}

# The application's refusals, said in Chinese in the form's summary (no submitted value).
_REFUSALS: Final = {
    "user_already_registered": "该用户编号已注册；请为其授予角色或变更岗位。",
    "role_already_held": "该用户已有此角色。",
    "role_not_held": "该用户没有此角色。",
    "user_already_suspended": "该用户已被停用。",
    "user_not_suspended": "该用户未被停用。",
    "same_post": "该用户已在此岗位。",
    "own_account": "不能对自己的账户进行此操作（撤销自己的管理员角色或停用自己）。",
    "weak_password": f"密码不符合要求：至少 {MIN_PASSWORD_CHARS} 个字符，不含控制字符。",
    "password_mismatch": "两次输入的密码不一致。",
    "unknown_user": "没有此用户。",
    "account_not_locked": "该账户未被锁定。",
    "totp_not_enrolled": "该用户未启用两步验证。",
}


class SetPassword(BaseModel):
    """The new password, typed twice (as the CLI asks for it), and why."""

    password: str
    confirm: str
    reason: Note


class PasswordMismatch(DomainError):
    status = 422
    code = "password_mismatch"


def _refusal(refused: DomainError, label: str) -> list[FieldError]:
    message = _REFUSALS.get(refused.code, "操作未能完成，与当前状态冲突。请刷新页面后重试。")
    return [FieldError(field=refused.field or "form", label=label, message=message)]


def _values(form: dict[str, list[str]], names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        value = first(form, name)
        if value is not None:
            found[name] = value
    return found


def _choices() -> dict[str, Any]:
    return {
        "roles": [(str(r), label) for r, label in ROLE_LABELS.items()],
        "posts": [(str(p), label) for p, label in POST_LABELS.items()],
    }


def _role_label(role: str) -> str:
    try:
        return ROLE_LABELS[Role(role)]
    except ValueError:
        return role


def _described(user: User) -> dict[str, Any]:
    found = user.describe()
    return {
        **found,
        "role_labels": [_role_label(r) for r in found["roles"]],
    }


# --- the list and registration --------------------------------------------------------------------


@router.get("/admin/users")
async def users_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    def read() -> list[dict[str, Any]]:
        _require_admin(actor, svc, "list_users")
        return [_described(u) for u in svc.application.users()]

    users = await run_in_threadpool(read)
    return render(request, "users.html", {"users": users}, title="用户管理")


@router.get("/admin/users/new")
async def new_user_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    await run_in_threadpool(_require_admin, actor, svc, "register_user")
    return render(request, "users_new.html", {**_choices(), "errors": []}, title="登记新用户")


@router.post("/admin/users/new")
async def register_user(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    form = await read_form(request)
    await run_in_threadpool(_require_admin, actor, svc, "register_user")
    command = validate(
        RegisterUser,
        _values(form, ("user_id", "display_name", "unit", "street", "role", "post", "reason")),
        _REGISTER_LABELS,
    )
    context = {**_choices()}
    if isinstance(command, list):
        return form_errors(request, "users_new.html", context, command, title="登记新用户")

    def run() -> User:
        with _recording(actor, svc, "register_user"):
            return svc.application.register_user(command, actor.as_record())

    try:
        user = await run_in_threadpool(run)
    except DomainError as refused:
        if refused.status == 403:
            raise
        return render(
            request,
            "users_new.html",
            {**context, "errors": _refusal(refused, "登记")},
            status=refused.status,
            title="登记新用户",
        )
    log.info("user_changed", user_id=user.user_id, change="registered", version=user.version)
    return see_other(request, f"/admin/users/{user.user_id}")


# --- one user ----------------------------------------------------------------------------------


def _user_context(actor: Actor, svc: Services, user_id: str) -> dict[str, Any]:
    _require_admin(actor, svc, "read_user")
    user = svc.application.user(user_id)
    history = svc.application.user_history_for(user_id, actor)
    for entry in history:
        entry["role_labels"] = [_role_label(r) for r in entry.get("roles", [])]
        entry["role_label"] = _role_label(entry["role"]) if entry.get("role") else ""
    held = sorted(user.roles, key=lambda r: list(Role).index(r))
    credentials = svc.application.credentials(user_id)
    now = datetime.now(UTC)
    return {
        # What the sign-in holds (never a hash or a secret): whether each is set.
        "sign_in": {
            "password": credentials is not None and credentials.password_hash is not None,
            "totp": credentials is not None and credentials.totp_secret is not None,
            "locked": credentials is not None and credentials.is_locked(now),
            "locked_until": credentials.locked_until if credentials is not None else None,
        },
        **_choices(),
        "user": _described(user),
        "held": [(str(r), ROLE_LABELS[r]) for r in held],
        "history": list(reversed(history)),  # newest first
        "errors": [],
    }


@router.get("/admin/users/{user_id}")
async def user_page(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    context = await run_in_threadpool(_user_context, actor, svc, user_id)
    return render(request, "users_detail.html", context, title="用户详情")


async def _user_command(
    request: Request,
    actor: Actor,
    svc: Services,
    user_id: str,
    command_name: str,
    model: type[BaseModel],
    labels: dict[str, str],
    run: Callable[[Any], Any],
    label: str,
    raw: tuple[str, ...] = (),
) -> Response:
    """Validate the posted form against the API's command model, then run the application's
    command as the API does (`_recording`); errors are the user's page again, 422 (or the
    application's status), nothing stored and nothing submitted shown."""
    form = await read_form(request)
    await run_in_threadpool(_require_admin, actor, svc, command_name)
    data = _values(form, tuple(n for n in labels if n not in raw))
    for name in raw:  # a password as typed: never stripped
        if (form.get(name) or [""])[0]:
            data[name] = form[name][0]
    command = validate(model, data, labels)
    if isinstance(command, list):
        context = await run_in_threadpool(_user_context, actor, svc, user_id)
        return form_errors(request, "users_detail.html", context, command, title="用户详情")

    def attempt() -> None:
        with _recording(actor, svc, command_name):
            run(command)

    try:
        await run_in_threadpool(attempt)
    except DomainError as refused:
        if refused.status == 404:
            raise  # no such user: the app's page
        context = await run_in_threadpool(_user_context, actor, svc, user_id)
        return render(
            request,
            "users_detail.html",
            {**context, "errors": _refusal(refused, label)},
            status=refused.status,
            title="用户详情",
        )
    log.info("user_changed", user_id=user_id, change=command_name)
    return see_other(request, f"/admin/users/{user_id}")


@router.post("/admin/users/{user_id}/grant")
async def grant_role(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: ChangeRole) -> None:
        svc.application.grant_role(user_id, command, actor.as_record())

    return await _user_command(
        request, actor, svc, user_id, "grant_role", ChangeRole, _ROLE_LABELS_FORM, run, "授予角色"
    )


@router.post("/admin/users/{user_id}/revoke")
async def revoke_role(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: ChangeRole) -> None:
        svc.application.revoke_role(user_id, command, actor.as_record())

    return await _user_command(
        request, actor, svc, user_id, "revoke_role", ChangeRole, _ROLE_LABELS_FORM, run, "撤销角色"
    )


@router.post("/admin/users/{user_id}/suspend")
async def suspend_user(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: ChangeStatus) -> None:
        svc.application.suspend_user(user_id, command, actor.as_record())

    return await _user_command(
        request, actor, svc, user_id, "suspend_user", ChangeStatus, _STATUS_LABELS, run, "停用"
    )


@router.post("/admin/users/{user_id}/reinstate")
async def reinstate_user(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: ChangeStatus) -> None:
        svc.application.reinstate_user(user_id, command, actor.as_record())

    return await _user_command(
        request, actor, svc, user_id, "reinstate_user", ChangeStatus, _STATUS_LABELS, run, "恢复"
    )


@router.post("/admin/users/{user_id}/post")
async def change_post(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    def run(command: ChangePost) -> None:
        svc.application.change_post(user_id, command, actor.as_record())

    return await _user_command(
        request, actor, svc, user_id, "change_post", ChangePost, _POST_LABELS_FORM, run, "变更岗位"
    )


@router.post("/admin/users/{user_id}/password")
async def set_password(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """The administrator types the new password twice (as `casetrail user password` asks for
    it); only its argon2id hash is stored; the answer never holds it."""

    def run(command: SetPassword) -> None:
        if command.password != command.confirm:
            raise PasswordMismatch("the two passwords differ", field="confirm")
        svc.application.set_password(user_id, command.password, actor.as_record(), command.reason)

    return await _user_command(
        request,
        actor,
        svc,
        user_id,
        "set_password",
        SetPassword,
        _PASSWORD_LABELS,
        run,
        "设置密码",
        raw=("password", "confirm"),
    )


@router.post("/admin/users/{user_id}/unlock")
async def unlock_account(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """Unlock an account locked after repeated failed sign-ins (as `casetrail user unlock`)."""

    def run(command: ChangeStatus) -> None:
        svc.application.unlock_account(user_id, actor.as_record(), command.reason)

    return await _user_command(
        request,
        actor,
        svc,
        user_id,
        "unlock_account",
        ChangeStatus,
        _REASON_LABELS,
        run,
        "解除锁定",
    )


@router.post("/admin/users/{user_id}/totp-removal")
async def remove_totp(
    user_id: UserIdPath, request: Request, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """Remove the user's TOTP second factor, e.g. a lost phone (as `casetrail user totp
    remove`); enrolling one prints its secret once, on the server (the CLI)."""

    def run(command: ChangeStatus) -> None:
        svc.application.remove_totp(user_id, actor.as_record(), command.reason)

    return await _user_command(
        request,
        actor,
        svc,
        user_id,
        "remove_totp",
        ChangeStatus,
        _REASON_LABELS,
        run,
        "移除两步验证",
    )
