"""The user registry over HTTP (issue 16): `/v1/users` for administrators, and each user's
history of posts and grants for administrators, compliance auditors and investigators under an
order.

An administrator registers users, grants and revokes roles, suspends and reinstates users and
changes their posts; each change is an event naming the administrator and the reason
(`domain.users`). None of this discloses case content. A display name is personal data: it is
answered to administrators (who registered it) and in histories, never put in a URL or a log
line (a user id is an opaque code). A revoked role or a suspension is refused on every API
process within `gateway.auth.DEFAULT_REFRESH_SECONDS`. Bad input is problem+json naming the
field, nothing written. Proven by tests/integration/test_users.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response

from domain.access import Actor
from domain.errors import DomainError, NotPermitted
from domain.taxonomy import Role
from domain.users import ChangePost, ChangeRole, ChangeStatus, RegisterUser, User
from gateway.http.dependencies import ActorDep, Services, ServicesDep
from gateway.logs import get_logger

log = get_logger("casetrail.api")

# A user id in a path: the shape of `domain.users.UserId`, bounded like every parameter.
UserIdPath = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="user id"),
]
router = APIRouter(tags=["users"])


def _require_admin(actor: Actor, svc: Services, command: str) -> None:
    # A refusal is stored (CommandRefused, promise 1) before the 403 leaves; if storing
    # fails, that error leaves instead (503), never an unrecorded refusal.
    if actor.role is not Role.ADMIN:
        svc.application.record_command_refusal(actor, command, None, NotPermitted.code)
        raise NotPermitted("only administrators manage the user registry")


@contextmanager
def _recording(actor: Actor, svc: Services, command: str) -> Iterator[None]:
    """An administrator's registry command whose refusal by a rule of `domain.users` (403:
    own_account) is stored as `CommandRefused` before it leaves."""
    _require_admin(actor, svc, command)
    try:
        yield
    except DomainError as refused:
        if refused.status == 403:
            svc.application.record_command_refusal(actor, command, None, refused.code)
        raise


def _changed(user: User, what: str) -> dict[str, Any]:
    # The log names the user id and the change, never the display name.
    log.info("user_changed", user_id=user.user_id, change=what, version=user.version)
    return user.describe()


@router.post("/v1/users", status_code=201)
def register_user(
    command: RegisterUser, actor: ActorDep, svc: ServicesDep, response: Response
) -> dict[str, Any]:
    """Register a user with their first role and post. Administrators."""
    with _recording(actor, svc, "register_user"):
        user = svc.application.register_user(command, actor.as_record())
    response.headers["Location"] = f"/v1/users/{user.user_id}"
    return _changed(user, "registered")


@router.get("/v1/users")
def list_users(actor: ActorDep, svc: ServicesDep) -> dict[str, Any]:
    """Every registered user with their unit, post, roles and state. Administrators."""
    _require_admin(actor, svc, "list_users")
    return {"users": [u.describe() for u in svc.application.users()]}


@router.get("/v1/users/{user_id}")
def read_user(user_id: UserIdPath, actor: ActorDep, svc: ServicesDep) -> dict[str, Any]:
    """One user. Administrators."""
    _require_admin(actor, svc, "read_user")
    return svc.application.user(user_id).describe()


@router.post("/v1/users/{user_id}/grants")
def grant_role(
    user_id: UserIdPath, command: ChangeRole, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Grant a role. Administrators."""
    with _recording(actor, svc, "grant_role"):
        user = svc.application.grant_role(user_id, command, actor.as_record())
    return _changed(user, "granted")


@router.post("/v1/users/{user_id}/revocations")
def revoke_role(
    user_id: UserIdPath, command: ChangeRole, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Revoke a role: its tokens are refused on every API process within 2 s. Administrators
    (not their own admin role)."""
    with _recording(actor, svc, "revoke_role"):
        user = svc.application.revoke_role(user_id, command, actor.as_record())
    return _changed(user, "revoked")


@router.post("/v1/users/{user_id}/suspension")
def suspend_user(
    user_id: UserIdPath, command: ChangeStatus, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Suspend a user: every token of theirs is refused within 2 s. Administrators (not
    themselves)."""
    with _recording(actor, svc, "suspend_user"):
        user = svc.application.suspend_user(user_id, command, actor.as_record())
    return _changed(user, "suspended")


@router.post("/v1/users/{user_id}/reinstatement")
def reinstate_user(
    user_id: UserIdPath, command: ChangeStatus, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Reinstate a suspended user. Administrators."""
    with _recording(actor, svc, "reinstate_user"):
        user = svc.application.reinstate_user(user_id, command, actor.as_record())
    return _changed(user, "reinstated")


@router.post("/v1/users/{user_id}/post")
def change_post(
    user_id: UserIdPath, command: ChangePost, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """Change a user's post (岗位); the history keeps every earlier one. Administrators."""
    with _recording(actor, svc, "change_post"):
        user = svc.application.change_post(user_id, command, actor.as_record())
    return _changed(user, "post_changed")


@router.get("/v1/users/{user_id}/history")
def user_history(
    user_id: UserIdPath,
    actor: ActorDep,
    svc: ServicesDep,
    case_id: Annotated[
        UUID | None,
        Query(description="investigators: the case the order you read under covers"),
    ] = None,
) -> dict[str, Any]:
    """Who held which post and roles when, and who changed them why: administrators,
    compliance auditors, and investigators under an order in force naming `case_id`."""
    entries = svc.application.user_history_for(user_id, actor, case_id)
    return {"user_id": user_id, "entries": entries}
