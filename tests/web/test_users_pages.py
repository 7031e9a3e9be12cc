"""The administrator's user pages (gateway/web/routes/users.py).

In a real browser (360 px): an administrator registers a user through the form and grants
them a second role; the stored user events say so, naming the administrator and the reasons;
a form with errors keeps the draft in the page and stores nothing; a non-administrator gets the
refusal page, and the refusal is stored as `CommandRefused`.

Over HTTP without a browser (SQLite and PostgreSQL): a 422 repeats no submitted value (not the
display name, not a password); suspension of one's own account is refused and recorded; a
password set on the page lets the user sign in, and is never in the answer; revoke, suspend,
reinstate and change of post are the registry's events.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from faker import Faker
from fastapi.testclient import TestClient

from domain.access import CommandRefused
from domain.application import CaseTrail
from domain.taxonomy import Role
from domain.users import Post, user_stream_id
from gateway.cli.main import DEFAULT_STREET
from tests.conftest import TokenFactory
from tests.web.conftest import Site, inspect


def _kinds(application: CaseTrail, user_id: str) -> list[str]:
    return [type(e).__name__ for e in application.events.get(user_stream_id(user_id))]


@pytest.mark.browser
def test_an_admin_registers_a_user_and_grants_a_role(site: Site) -> None:
    admin = site.person(Role.ADMIN, "county-it")
    page = site.page(admin, width=360)
    page.goto("/admin/users")
    assert admin.user_id in page.locator("table.users").inner_text()
    inspect(page, "users-list-360")

    page.click("text=登记新用户")
    page.wait_for_url("**/admin/users/new")
    inspect(page, "users-new-360")
    name = str(Faker("zh_CN").name())
    new_id = f"u-new-{secrets.token_hex(3)}"
    # A draft with an error: the script shows it in place, the draft stays, nothing stored.
    # (the browser's own checks off, to reach the server's)
    page.evaluate("() => document.querySelectorAll('form').forEach(f => { f.noValidate = true; })")
    page.fill("#user_id", "不是编号")
    page.fill("#display_name", name)
    page.click("button:has-text('登记')")
    page.wait_for_selector("[data-form-errors].alert")
    assert "用户编号" in page.locator("[data-form-errors]").inner_text()
    assert page.input_value("#display_name") == name  # the draft stays in the page
    assert [u.user_id for u in site.application.users()] == [admin.user_id]
    inspect(page, "users-new-error-360")

    page.fill("#user_id", new_id)
    page.fill("#unit", "dongshan-village")
    page.fill("#street", DEFAULT_STREET)
    page.select_option("#role", "reporter")
    page.select_option("#post", "grid_worker")
    page.fill("#reason", "新任网格员，按街道通知登记。")
    with page.expect_navigation():
        page.click("button:has-text('登记')")
    assert page.url.endswith(f"/admin/users/{new_id}")
    assert name in page.locator("main").inner_text()
    user = site.application.user(new_id)
    assert user.display_name == name and user.post == Post.GRID_WORKER
    assert [str(r) for r in user.roles] == ["reporter"]
    inspect(page, "users-detail-360")

    page.select_option("#grant-role", "coordinator")
    page.fill("#grant-reason", "兼任街道协调办联络人。")
    with page.expect_navigation():
        page.click("button:has-text('授予')")
    user = site.application.user(new_id)
    assert {str(r) for r in user.roles} == {"reporter", "coordinator"}
    assert _kinds(site.application, new_id) == ["UserRegistered", "RoleGranted"]
    history = site.application.user_history(new_id)
    assert [(h["what"], h["by"]["user"], h["reason"]) for h in history] == [
        ("registered", admin.user_id, "新任网格员，按街道通知登记。"),
        ("role_granted", admin.user_id, "兼任街道协调办联络人。"),
    ]
    assert "授予角色：街道协调办" in page.locator("table.history").inner_text()
    inspect(page, "users-detail-granted-360")

    # Not an administrator: the refusal page, the refusal stored.
    other = site.person(Role.COORDINATOR, "office")
    refused = site.page(other, width=360)
    answer = refused.goto("/admin/users")
    assert answer is not None and answer.status == 403
    assert "无权" in refused.locator("main").inner_text()
    assert name not in refused.content()
    inspect(refused, "users-refused-360")
    stored = site.application.command_refusals()
    assert [(c.command, c.actor["user"], c.channel) for c in stored] == [
        ("list_users", other.user_id, "web")
    ]


# --- over HTTP, both stores ----------------------------------------------------------------------


def _application(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def _register(client: TestClient, admin: dict[str, str], user_id: str, name: str) -> None:
    answer = client.post(
        "/admin/users/new",
        data={
            "user_id": user_id,
            "display_name": name,
            "unit": "dongshan-village",
            "street": DEFAULT_STREET,
            "role": "reporter",
            "post": "child_director",
            "reason": "登记。",
        },
        headers=admin,
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/admin/users/{user_id}"


def test_errors_repeat_nothing_and_store_nothing(client: TestClient, auth: TokenFactory) -> None:
    admin = auth(Role.ADMIN, "county-it")
    application = _application(client)
    name = str(Faker("zh_CN").name())
    bad = client.post(
        "/admin/users/new",
        data={"user_id": "u-x", "display_name": name, "role": "emperor", "reason": "登记。"},
        headers=admin,
    )
    assert bad.status_code == 422
    assert name not in bad.text and "emperor" not in bad.text
    assert "角色" in bad.text and "单位代码" in bad.text
    assert "u-x" not in [u.user_id for u in application.users()]

    _register(client, admin, "u-pw", name)
    weak = client.post(
        "/admin/users/u-pw/password",
        data={"password": "short-1", "confirm": "short-1", "reason": "首次设置。"},
        headers=admin,
    )
    assert weak.status_code == 422 and "short-1" not in weak.text and "至少 12" in weak.text
    differ = client.post(
        "/admin/users/u-pw/password",
        data={
            "password": "Long-enough-密码-1",
            "confirm": "Long-enough-密码-2",
            "reason": "设置。",
        },
        headers=admin,
    )
    assert differ.status_code == 422 and "不一致" in differ.text
    assert "Long-enough" not in differ.text
    assert application.credentials("u-pw") is None


def test_a_password_set_on_the_page_signs_the_user_in(
    client: TestClient, auth: TokenFactory
) -> None:
    admin = auth(Role.ADMIN, "county-it")
    _register(client, admin, "u-first", str(Faker("zh_CN").name()))
    password = f"  First-{secrets.token_hex(6)}-密码 "  # spaces kept as typed
    answer = client.post(
        "/admin/users/u-first/password",
        data={"password": password, "confirm": password, "reason": "首次登录密码，当面告知。"},
        headers=admin,
    )
    assert answer.status_code == 200 and password.strip() not in answer.text
    client.cookies.clear()
    signed = client.post(
        "/v1/sessions", json={"user_id": "u-first", "password": password}, follow_redirects=False
    )
    assert signed.status_code in (201, 303), signed.text

    # Locked after failed sign-ins: the page says so, and unlocks it (as the CLI does).
    application = _application(client)
    for _ in range(5):
        client.cookies.clear()
        wrong = {"user_id": "u-first", "password": "Wrong-" + password}
        assert client.post("/v1/sessions", json=wrong).status_code in (401, 429)
    client.cookies.clear()
    now = datetime.now(UTC)
    assert application.credentials("u-first").is_locked(now)  # type: ignore[union-attr]
    page = client.get("/admin/users/u-first", headers=admin)
    assert "已锁定" in page.text and password.strip() not in page.text
    unlocked = client.post(
        "/admin/users/u-first/unlock",
        data={"reason": "已电话核实本人。"},
        headers=admin,
        follow_redirects=False,
    )
    assert unlocked.status_code == 303, unlocked.text
    assert not application.credentials("u-first").is_locked(now)  # type: ignore[union-attr]
    again = client.post("/admin/users/u-first/unlock", data={"reason": "再次。"}, headers=admin)
    assert again.status_code == 409 and "未被锁定" in again.text


def test_the_registry_commands_and_ones_own_account(client: TestClient, auth: TokenFactory) -> None:
    admin = auth(Role.ADMIN, "county-it", user="admin-1")
    application = _application(client)
    _register(client, admin, "u-change", str(Faker("zh_CN").name()))
    for path, data in (
        ("post", {"post": "grid_worker", "reason": "调整岗位。"}),
        ("suspend", {"reason": "离岗。"}),
        ("reinstate", {"reason": "返岗。"}),
        ("grant", {"role": "coordinator", "reason": "兼任。"}),
        ("revoke", {"role": "coordinator", "reason": "不再兼任。"}),
    ):
        answer = client.post(
            f"/admin/users/u-change/{path}", data=data, headers=admin, follow_redirects=False
        )
        assert answer.status_code == 303, (path, answer.text)
    assert _kinds(application, "u-change") == [
        "UserRegistered",
        "PostChanged",
        "UserSuspended",
        "UserReinstated",
        "RoleGranted",
        "RoleRevoked",
    ]
    page = client.get("/admin/users/u-change", headers=admin)
    assert page.status_code == 200 and "不再兼任。" in page.text

    again = client.post(
        "/admin/users/u-change/revoke",
        data={"role": "coordinator", "reason": "再撤销。"},
        headers=admin,
    )
    assert again.status_code == 409 and "没有此角色" in again.text
    own = client.post("/admin/users/admin-1/suspend", data={"reason": "测试。"}, headers=admin)
    assert own.status_code == 403 and "自己的账户" in own.text
    stored = application.command_refusals()
    assert isinstance(stored[-1], CommandRefused) and stored[-1].command == "suspend_user"
    assert application.user("admin-1").active
