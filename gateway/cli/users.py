"""`casetrail user add|grant|revoke|suspend|reinstate|post|list|history`: the user registry.

Run on the server by its operator (the store is opened directly), e.g. to register the first
administrator before anyone can use `/v1/users`. Each change is recorded with who made it: the
operator's OS account (`cli:<login>`), never a token. A display name is personal data: `list`
prints it only with `--names`, and nothing here logs it. Proven by
tests/integration/test_users_cli.py.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from domain.access import Actor
from domain.errors import DomainError
from domain.taxonomy import Role
from domain.users import (
    POST_LABELS,
    ChangePost,
    ChangeRole,
    ChangeStatus,
    Post,
    RegisterUser,
    User,
)
from gateway import bootstrap
from gateway.auth import Standing, refusal_of
from gateway.settings import Settings

if TYPE_CHECKING:
    from domain.application import CaseTrail

_ROLES = [r.value for r in Role]
_POSTS = [p.value for p in Post]


class UserProblem(click.ClickException):
    exit_code = 2


def operator() -> dict[str, str]:
    """Who made a change from the command line: the OS account running it."""
    try:
        login = getpass.getuser()
    except (OSError, KeyError):
        login = "unknown"
    return {"user": f"cli:{login}", "role": "operator", "unit": "", "street": ""}


@contextmanager
def _opened() -> Iterator[CaseTrail]:
    from gateway import logs  # structlog only where it logs: `token issue` starts without it

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = bootstrap.open_application(settings)
    try:
        yield application
    except DomainError as exc:
        where = f"{exc.field}: " if exc.field else ""
        raise UserProblem(f"{where}{exc.message}") from None
    finally:
        application.close()


def require_admitted(settings: Settings, *, user: str, role: Role, unit: str, street: str) -> None:
    """Refuse (one line, exit 2) a token for a user who would not get in with it: read through
    the user directory alone (`bootstrap.registered_user`), so that `token issue` starts fast."""
    try:
        standing = Standing.of(bootstrap.registered_user(settings, user))
    except DomainError:
        standing = Standing(user_id=user, registered=False)
    refused = refusal_of(standing, Actor(user=user, role=role, unit=unit, street=street))
    if refused is not None:
        raise UserProblem(f"no token issued: {refused}")


def _summary(user: User) -> str:
    roles = ",".join(sorted(str(r) for r in user.roles)) or "-"
    state = "active" if user.active else "suspended"
    return f"{user.user_id} {user.unit}@{user.street} post={user.post} roles={roles} {state}"


@click.group(help="The user registry: people, their posts and roles (issue 16).")
def user() -> None:
    pass


_reason = click.option("--reason", required=True, help="why (recorded with the change)")


@user.command("add", help="Register a user with their first role and post.")
@click.option("--user", "user_id", required=True, help="the user id, as in tokens (not a name)")
@click.option("--name", "display_name", required=True, help="the person's name (personal data)")
@click.option("--unit", required=True, help="the user's unit code")
@click.option("--street", required=True, help="the user's street code")
@click.option("--role", required=True, type=click.Choice(_ROLES))
@click.option("--post", required=True, type=click.Choice(_POSTS), help="the person's post (岗位)")
@_reason
def user_add(
    user_id: str, display_name: str, unit: str, street: str, role: str, post: str, reason: str
) -> None:
    command = RegisterUser(
        user_id=user_id,
        display_name=display_name,
        unit=unit,
        street=street,
        role=Role(role),
        post=Post(post),
        reason=reason,
    )
    with _opened() as application:
        registered = application.register_user(command, operator())
        click.echo(f"registered {_summary(registered)}")


@user.command("grant", help="Grant a user a role.")
@click.option("--user", "user_id", required=True)
@click.option("--role", required=True, type=click.Choice(_ROLES))
@_reason
def user_grant(user_id: str, role: str, reason: str) -> None:
    command = ChangeRole(role=Role(role), reason=reason)
    with _opened() as application:
        click.echo(f"granted: {_summary(application.grant_role(user_id, command, operator()))}")


@user.command("revoke", help="Revoke a role from a user (refused on every API process in ≤ 2 s).")
@click.option("--user", "user_id", required=True)
@click.option("--role", required=True, type=click.Choice(_ROLES))
@_reason
def user_revoke(user_id: str, role: str, reason: str) -> None:
    command = ChangeRole(role=Role(role), reason=reason)
    with _opened() as application:
        click.echo(f"revoked: {_summary(application.revoke_role(user_id, command, operator()))}")


@user.command("suspend", help="Suspend a user (refused on every API process in ≤ 2 s).")
@click.option("--user", "user_id", required=True)
@_reason
def user_suspend(user_id: str, reason: str) -> None:
    command = ChangeStatus(reason=reason)
    with _opened() as application:
        click.echo(f"suspended: {_summary(application.suspend_user(user_id, command, operator()))}")


@user.command("reinstate", help="Reinstate a suspended user.")
@click.option("--user", "user_id", required=True)
@_reason
def user_reinstate(user_id: str, reason: str) -> None:
    command = ChangeStatus(reason=reason)
    with _opened() as application:
        reinstated = application.reinstate_user(user_id, command, operator())
        click.echo(f"reinstated: {_summary(reinstated)}")


@user.command("post", help="Change a user's post (岗位); the history keeps the earlier ones.")
@click.option("--user", "user_id", required=True)
@click.option("--post", required=True, type=click.Choice(_POSTS))
@_reason
def user_post(user_id: str, post: str, reason: str) -> None:
    command = ChangePost(post=Post(post), reason=reason)
    with _opened() as application:
        changed = application.change_post(user_id, command, operator())
        click.echo(f"post changed: {_summary(changed)} ({POST_LABELS[Post(changed.post)]})")


@user.command("list", help="The registered users (names only with --names).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--names", is_flag=True, help="also print display names (personal data)")
def user_list(as_json: bool, names: bool) -> None:
    with _opened() as application:
        users = application.users()
    if as_json:
        found = [u.describe(with_name=names) for u in users]
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    for each in users:
        line = _summary(each)
        click.echo(f"{line} {each.display_name}" if names else line)


@user.command("history", help="Who held which post and roles when, and who changed them why.")
@click.option("--user", "user_id", required=True)
@click.option("--json", "as_json", is_flag=True)
def user_history(user_id: str, as_json: bool) -> None:
    with _opened() as application:
        entries = application.user_history(user_id)
    if as_json:
        click.echo(json.dumps(entries, ensure_ascii=False, indent=2))
        return
    for e in entries:
        by = e["by"].get("user") or "-"
        roles = ",".join(e["roles"]) or "-"
        state = "active" if e["active"] else "suspended"
        detail = f" role={e['role']}" if "role" in e else ""
        click.echo(
            f"{e['at']} {e['what']:<13}{detail} post={e['post']} roles={roles} {state} "
            f"by={by} reason={e['reason']}"
        )
