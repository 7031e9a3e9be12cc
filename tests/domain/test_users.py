"""The user registry's pure rules (domain/users.py): one registration per user id, grants and
revocations, suspension, posts over time, and who a token may get in as."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from faker import Faker

from domain.errors import DomainError
from domain.taxonomy import Role
from domain.users import (
    POST_LABELS,
    OwnAccount,
    Post,
    RegisterUser,
    RoleAlreadyHeld,
    RoleNotHeld,
    SamePost,
    User,
    UserAlreadySuspended,
    UserNotSuspended,
    history,
    post_as_of,
    user_stream_id,
)

ADMIN = {"user": "admin-1", "role": "admin", "unit": "county-admin", "street": "county"}
fake = Faker("zh_CN")


def registered(user_id: str = "grid-7", role: Role = Role.REPORTER) -> User:
    return User.register(
        RegisterUser(
            user_id=user_id,
            display_name=fake.name(),
            unit="dongshan-village",
            street="chengguan-street",
            role=role,
            post=Post.GRID_WORKER,
            reason="新任网格员",
        ),
        by=ADMIN,
    )


def test_one_stream_per_user_id() -> None:
    assert user_stream_id("grid-7") == user_stream_id("grid-7")
    assert user_stream_id("grid-7") != user_stream_id("grid-8")
    assert registered().id == user_stream_id("grid-7")


def test_the_plans_posts_have_their_chinese_labels() -> None:
    labels = set(POST_LABELS.values())
    for plan in (
        "儿童督导员",
        "儿童主任",
        "网格员",
        "联户长",
        "妇联主任",
        "村医",
        "驻村干部",
        "教师",
    ):
        assert plan in labels
    assert set(POST_LABELS) == set(Post)


def test_grants_revocations_and_who_gets_in() -> None:
    user = registered()
    assert user.admits(Role.REPORTER, "dongshan-village", "chengguan-street")
    assert not user.admits(Role.COORDINATOR, "dongshan-village", "chengguan-street")
    assert not user.admits(Role.REPORTER, "other-village", "chengguan-street")
    assert not user.admits(Role.REPORTER, "dongshan-village", "other-street")
    user.grant(Role.COORDINATOR, by=ADMIN, reason="兼任")
    assert user.roles == {Role.REPORTER, Role.COORDINATOR}
    with pytest.raises(RoleAlreadyHeld):
        user.grant(Role.COORDINATOR, by=ADMIN, reason="again")
    user.revoke(Role.REPORTER, by=ADMIN, reason="调岗")
    assert not user.admits(Role.REPORTER, "dongshan-village", "chengguan-street")
    with pytest.raises(RoleNotHeld):
        user.revoke(Role.REPORTER, by=ADMIN, reason="again")


def test_suspension_refuses_every_role_until_reinstated() -> None:
    user = registered()
    with pytest.raises(UserNotSuspended):
        user.reinstate(by=ADMIN, reason="not suspended")
    user.suspend(by=ADMIN, reason="离职")
    assert not user.active
    assert not user.admits(Role.REPORTER, "dongshan-village", "chengguan-street")
    with pytest.raises(UserAlreadySuspended):
        user.suspend(by=ADMIN, reason="again")
    user.reinstate(by=ADMIN, reason="复职")
    assert user.admits(Role.REPORTER, "dongshan-village", "chengguan-street")


def test_an_administrator_cannot_lock_themselves_out() -> None:
    admin = registered("admin-1", Role.ADMIN)
    with pytest.raises(OwnAccount):
        admin.suspend(by=ADMIN, reason="self")
    with pytest.raises(OwnAccount):
        admin.revoke(Role.ADMIN, by=ADMIN, reason="self")
    assert admin.active and Role.ADMIN in admin.roles


def test_refusals_name_a_field_and_write_nothing() -> None:
    user = registered()
    before = len(user.collect_events())
    with pytest.raises(DomainError) as refused:
        user.change_post(Post.GRID_WORKER, by=ADMIN, reason="same")
    assert isinstance(refused.value, SamePost) and refused.value.field == "post"
    assert user.collect_events() == [] and before == 1


def test_history_names_posts_and_roles_over_time() -> None:
    user = registered()
    user.change_post(Post.CHILD_DIRECTOR, by=ADMIN, reason="换届")
    user.grant(Role.UNIT_MEMBER, by=ADMIN, reason="兼任")
    user.change_post(Post.STATIONED_CADRE, by=ADMIN, reason="选派")
    entries = history(user.collect_events())
    assert [(e["what"], e["post"], e["roles"]) for e in entries] == [
        ("registered", "grid_worker", ["reporter"]),
        ("post_changed", "child_director", ["reporter"]),
        ("role_granted", "child_director", ["reporter", "unit_member"]),
        ("post_changed", "stationed_cadre", ["reporter", "unit_member"]),
    ]
    assert entries[1]["post_label_zh"] == "儿童主任"
    assert entries[0]["by"] == {"user": "admin-1", "role": "admin", "unit": "county-admin"}
    assert all("display_name" not in e for e in entries)


def test_post_as_of() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    posts = [(t0, "grid_worker"), (t0 + timedelta(days=10), "child_director")]
    assert post_as_of(posts, t0 - timedelta(seconds=1)) is None
    assert post_as_of(posts, t0) == "grid_worker"
    assert post_as_of(posts, t0 + timedelta(days=9)) == "grid_worker"
    assert post_as_of(posts, t0 + timedelta(days=10)) == "child_director"
    assert post_as_of([], t0) is None
