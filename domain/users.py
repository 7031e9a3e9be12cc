"""The user registry: the people who use casetrail, their posts and their grants, as events.

One `User` aggregate per user id (`user_stream_id`: a uuid5 of a fixed namespace and
`user:{user_id}`), so a user id is registered once only. A user belongs to one unit of one
street, holds a post (岗位: 儿童督导员, 儿童主任, 网格员, ... the plan's list, `Post`) and a set of
roles (`domain.taxonomy.Role`), each granted and revoked by someone for a reason; a user can be
suspended and reinstated. Every change is an event naming who made it and why, so "who held
which post when, and who granted them what" is read from the stream (`history()`), never from
a table that forgets.

The display name is personal data: it is stored in the event (the store encrypts every event)
and shown to administrators and to the registry's history readers only, never to logs, URLs or
read models (projections name a person by user id and post).

Only a registered, active user holding a role gets in with it (`gateway.auth.UserRegistry`).
The rules here are pure; proven by tests/domain/test_users.py, end to end by
tests/integration/test_users.py and tests/integration/test_users_workers.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import Field

from domain.commands import Code, Command, Name, Note
from domain.errors import DomainError
from domain.taxonomy import Role

Record = dict[str, Any]

_NAMESPACE: Final = UUID("0b3c5f0e-7a4e-5c2b-8d61-2f9e4a7c1d35")


class Post(StrEnum):
    """A person's post (岗位): who they are in the plan's mechanism, not what they may see (that
    is their role). The first eight are the plan's finders (一中心一张网十联户, DOMAIN.md); the
    rest are the member units' and the county's people."""

    CHILD_WELFARE_SUPERVISOR = "child_welfare_supervisor"
    CHILD_DIRECTOR = "child_director"
    GRID_WORKER = "grid_worker"
    HOUSEHOLD_GROUP_LEADER = "household_group_leader"
    WOMENS_FEDERATION_DIRECTOR = "womens_federation_director"
    VILLAGE_DOCTOR = "village_doctor"
    STATIONED_CADRE = "stationed_cadre"
    TEACHER = "teacher"
    SCHOOL_CONTACT = "school_contact"
    POLICE_OFFICER = "police_officer"
    TRIBUNAL_OFFICER = "tribunal_officer"
    SOCIAL_AFFAIRS_OFFICER = "social_affairs_officer"
    HEALTH_WORKER = "health_worker"
    SCHOOL_DISTRICT_OFFICER = "school_district_officer"
    GOVERNANCE_OFFICER = "governance_officer"
    STREET_LEADER = "street_leader"
    COUNTY_OFFICER = "county_officer"
    INVESTIGATOR = "investigator"
    COMPLIANCE_REVIEWER = "compliance_reviewer"
    SYSTEM_ADMINISTRATOR = "system_administrator"
    OTHER = "other"


POST_LABELS: Final = MappingProxyType(
    {
        Post.CHILD_WELFARE_SUPERVISOR: "儿童督导员",
        Post.CHILD_DIRECTOR: "儿童主任",
        Post.GRID_WORKER: "网格员",
        Post.HOUSEHOLD_GROUP_LEADER: "联户长",
        Post.WOMENS_FEDERATION_DIRECTOR: "妇联主任",
        Post.VILLAGE_DOCTOR: "村医",
        Post.STATIONED_CADRE: "驻村干部",
        Post.TEACHER: "教师",
        Post.SCHOOL_CONTACT: "学校联络员",
        Post.POLICE_OFFICER: "派出所民警",
        Post.TRIBUNAL_OFFICER: "人民法庭干警",
        Post.SOCIAL_AFFAIRS_OFFICER: "社会事务办工作人员",
        Post.HEALTH_WORKER: "社区卫生服务中心医务人员",
        Post.SCHOOL_DISTRICT_OFFICER: "学区办工作人员",
        Post.GOVERNANCE_OFFICER: "综治办工作人员",
        Post.STREET_LEADER: "街道分管领导",
        Post.COUNTY_OFFICER: "县级协调机制工作人员",
        Post.INVESTIGATOR: "倒查人员",
        Post.COMPLIANCE_REVIEWER: "合规审查员",
        Post.SYSTEM_ADMINISTRATOR: "系统管理员",
        Post.OTHER: "其他",
    }
)


# The post a user is given when only their role is known (the demo, fixtures, bench set-ups).
DEFAULT_POSTS: Final = MappingProxyType(
    {
        Role.REPORTER: Post.GRID_WORKER,
        Role.COORDINATOR: Post.GOVERNANCE_OFFICER,
        Role.SUPERVISOR: Post.STREET_LEADER,
        Role.UNIT_MEMBER: Post.OTHER,
        Role.INVESTIGATOR: Post.INVESTIGATOR,
        Role.COMPLIANCE_AUDITOR: Post.COMPLIANCE_REVIEWER,
        Role.ADMIN: Post.SYSTEM_ADMINISTRATOR,
        Role.COUNTY_LEAD: Post.COUNTY_OFFICER,
    }
)


def post_label(post: str) -> str:
    """The Chinese label of a post code (the code itself for one this version does not know)."""
    try:
        return POST_LABELS[Post(post)]
    except ValueError:
        return post


# A user id: the `sub` of tokens, in URLs and logs. An opaque code, never a person's name.
UserId = Code


class UnknownUser(DomainError):
    status = 404
    code = "unknown_user"


class UserAlreadyRegistered(DomainError):
    code = "user_already_registered"


class RoleAlreadyHeld(DomainError):
    code = "role_already_held"


class RoleNotHeld(DomainError):
    code = "role_not_held"


class UserAlreadySuspended(DomainError):
    code = "user_already_suspended"


class UserNotSuspended(DomainError):
    code = "user_not_suspended"


class UserOfAnotherUnit(DomainError):
    code = "user_of_another_unit"


class SamePost(DomainError):
    code = "same_post"


class OwnAccount(DomainError):
    """An administrator may not suspend themselves nor revoke their own admin role (the last
    administrator would lock everyone out of the registry), nor grant themselves a role (no
    one widens their own access); the CLI on the server can."""

    status = 403
    code = "own_account"


def user_stream_id(user_id: str) -> UUID:
    """The aggregate id of a user: one per user id, so a second registration is refused."""
    return uuid5(_NAMESPACE, f"user:{user_id}")


class RegisterUser(Command):
    """A user as the administrator registers them, with their first role."""

    user_id: UserId = Field(description="the user's id: the `sub` of their tokens; not a name")
    display_name: Name = Field(description="the person's name as shown to administrators")
    unit: Code
    street: Code
    role: Role
    post: Post
    reason: Note


class ChangeRole(Command):
    role: Role
    reason: Note


class ChangePost(Command):
    post: Post
    reason: Note


class ChangeStatus(Command):
    reason: Note


class User(Aggregate):
    """One person: their unit, street, post, roles (granted and not revoked) and whether they
    may sign in at all (`active`)."""

    @staticmethod
    def create_id(user_id: str, **_: Any) -> UUID:
        return user_stream_id(user_id)

    @classmethod
    def register(cls, command: RegisterUser, *, by: Record) -> User:
        return cls(
            user_id=command.user_id,
            display_name=command.display_name,
            unit=command.unit,
            street=command.street,
            role=str(command.role),
            post=str(command.post),
            by=by,
            reason=command.reason,
        )

    @event("UserRegistered")
    def __init__(
        self,
        *,
        user_id: str,
        display_name: str,
        unit: str,
        street: str,
        role: str,
        post: str,
        by: Record,
        reason: str,
    ) -> None:
        self.user_id = user_id
        self.display_name = display_name
        self.unit = unit
        self.street = street
        self.post = post
        self.roles: frozenset[Role] = frozenset({Role(role)})
        self.active = True

    # --- rules ----------------------------------------------------------------------------------

    def grant(self, role: Role, *, by: Record, reason: str) -> None:
        if role in self.roles:
            raise RoleAlreadyHeld("the user already holds this role", field="role")
        if by.get("user") == self.user_id:
            raise OwnAccount(
                "you cannot grant yourself a role; ask another administrator", field="role"
            )
        self._role_granted(role=str(role), by=by, reason=reason)

    def revoke(self, role: Role, *, by: Record, reason: str) -> None:
        if role not in self.roles:
            raise RoleNotHeld("the user does not hold this role", field="role")
        if role is Role.ADMIN and by.get("user") == self.user_id:
            raise OwnAccount(
                "you cannot revoke your own admin role; ask another administrator", field="role"
            )
        self._role_revoked(role=str(role), by=by, reason=reason)

    def suspend(self, *, by: Record, reason: str) -> None:
        if not self.active:
            raise UserAlreadySuspended("the user is already suspended", field="user_id")
        if by.get("user") == self.user_id:
            raise OwnAccount(
                "you cannot suspend yourself; ask another administrator", field="user_id"
            )
        self._suspended(by=by, reason=reason)

    def reinstate(self, *, by: Record, reason: str) -> None:
        if self.active:
            raise UserNotSuspended("the user is not suspended", field="user_id")
        self._reinstated(by=by, reason=reason)

    def change_post(self, post: Post, *, by: Record, reason: str) -> None:
        if post == self.post:
            raise SamePost("the user already holds this post", field="post")
        self._post_changed(post=str(post), by=by, reason=reason)

    def admits(self, role: Role, unit: str, street: str) -> bool:
        """Whether a token naming this user with this role, unit and street may get in."""
        return self.active and role in self.roles and (unit, street) == (self.unit, self.street)

    # --- events ---------------------------------------------------------------------------------

    @event("RoleGranted")
    def _role_granted(self, role: str, by: Record, reason: str) -> None:
        self.roles = self.roles | {Role(role)}

    @event("RoleRevoked")
    def _role_revoked(self, role: str, by: Record, reason: str) -> None:
        self.roles = self.roles - {Role(role)}

    @event("UserSuspended")
    def _suspended(self, by: Record, reason: str) -> None:
        self.active = False

    @event("UserReinstated")
    def _reinstated(self, by: Record, reason: str) -> None:
        self.active = True

    @event("PostChanged")
    def _post_changed(self, post: str, by: Record, reason: str) -> None:
        self.post = post

    # --- answers --------------------------------------------------------------------------------

    def describe(self, *, with_name: bool = True) -> Record:
        """The user as the registry answers it: no case content; the display name only to
        those who may see it (`with_name`)."""
        found: Record = {
            "user_id": self.user_id,
            "unit": self.unit,
            "street": self.street,
            "post": self.post,
            "post_label_zh": post_label(self.post),
            "roles": sorted(str(r) for r in self.roles),
            "active": self.active,
            "registered_at": self.created_on.isoformat(),
        }
        if with_name:
            found["display_name"] = self.display_name
        return found


USER_EVENT_CLASSES: Final = (
    User.UserRegistered,  # type: ignore[attr-defined]
    User.RoleGranted,  # type: ignore[attr-defined]
    User.RoleRevoked,  # type: ignore[attr-defined]
    User.UserSuspended,  # type: ignore[attr-defined]
    User.UserReinstated,  # type: ignore[attr-defined]
    User.PostChanged,  # type: ignore[attr-defined]
)

_WHAT: Final = MappingProxyType(
    {
        "UserRegistered": ("registered", "登记"),
        "RoleGranted": ("role_granted", "授予角色"),
        "RoleRevoked": ("role_revoked", "撤销角色"),
        "UserSuspended": ("suspended", "停用"),
        "UserReinstated": ("reinstated", "恢复"),
        "PostChanged": ("post_changed", "岗位变更"),
    }
)


def history(events: Iterable[Any]) -> list[Record]:
    """A user's stream as who-held-what-when: one entry per event, in order, each with the
    post and roles held from then on, who made the change (user, role, unit) and why."""
    entries: list[Record] = []
    post: str | None = None
    roles: set[str] = set()
    active = True
    for e in events:
        kind = type(e).__name__
        if kind not in _WHAT:
            continue
        what, label = _WHAT[kind]
        entry: Record = {"at": _iso(e.timestamp), "version": e.originator_version}
        if kind == "UserRegistered":
            post, roles = e.post, {e.role}
            entry.update(unit=e.unit, street=e.street, role=e.role)
        elif kind == "RoleGranted":
            roles.add(e.role)
            entry["role"] = e.role
        elif kind == "RoleRevoked":
            roles.discard(e.role)
            entry["role"] = e.role
        elif kind == "UserSuspended":
            active = False
        elif kind == "UserReinstated":
            active = True
        elif kind == "PostChanged":
            post = e.post
        by = e.by or {}
        entry.update(
            what=what,
            label_zh=label,
            post=post,
            post_label_zh=post_label(post) if post is not None else None,
            roles=sorted(roles),
            active=active,
            by={k: by.get(k) for k in ("user", "role", "unit")},
            reason=e.reason,
        )
        entries.append(entry)
    return entries


def _iso(value: datetime) -> str:
    return value.isoformat()


def post_as_of(posts: list[tuple[datetime, str]], at: datetime) -> str | None:
    """The post held at `at`, from a user's (time, post) changes in order; None before the
    registration (or for a user never registered)."""
    held: str | None = None
    for since, post in posts:
        if since > at:
            break
        held = post
    return held
