"""`casetrail user ...` and `casetrail token issue` (issue 16), the real entry point in this
process on SQLite and PostgreSQL: the first administrator registered from the server, each change
recorded with the operator's account, display names printed only when asked, bad input one
line and exit 2, and a token issued only for a registered, active user holding the role in
that unit and street."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from faker import Faker

from gateway import logs
from gateway.bootstrap import open_application
from gateway.cli.main import main
from gateway.settings import Settings


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    monkeypatch.setenv("CASETRAIL_HOME", str(settings.home))
    monkeypatch.setenv("CASETRAIL_DATABASE_URL", settings.database_url)
    configure = logs.configure
    monkeypatch.setattr(
        "gateway.logs.configure",
        lambda level="info", stream=None: configure(level, stream or sys.__stderr__),
    )

    def invoke(*args: str) -> Ran:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return invoke


# The commands' storage is the application's, proven on both stores over HTTP
# (tests/integration/test_users.py): here SQLite only, each command opening the store costs.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_registry_from_the_command_line(run: Any, settings: Settings) -> None:
    name = Faker("zh_CN").name()
    added = run(
        *("user", "add", "--user", "admin-1", "--name", name, "--unit", "county-admin"),
        *("--street", "county", "--role", "admin", "--post", "system_administrator"),
        *("--reason", "首位管理员"),
    )
    assert added.code == 0, added.err
    assert "admin-1" in added.out and name not in added.out
    token = run(
        *("token", "issue", "--user", "admin-1", "--role", "admin"),
        *("--unit", "county-admin", "--street", "county"),
    )
    assert token.code == 0, token.err
    assert token.out.count(".") == 2

    # Refused: an unregistered user, a role not held, another unit; one line each, exit 2.
    for args, words in (
        (("--user", "ghost", "--role", "admin", "--unit", "county-admin"), "not registered"),
        (("--user", "admin-1", "--role", "coordinator", "--unit", "county-admin"), "role"),
        (("--user", "admin-1", "--role", "admin", "--unit", "elsewhere"), "unit"),
    ):
        refused = run("token", "issue", *args, "--street", "county")
        assert refused.code == 2 and refused.out == "", (args, refused)
        assert refused.err.count("\n") == 1 and words in refused.err

    grant = run(
        "user", "grant", "--user", "admin-1", "--role", "compliance_auditor", "--reason", "兼任"
    )
    assert grant.code == 0 and "compliance_auditor" in grant.out
    post = run(
        "user", "post", "--user", "admin-1", "--post", "compliance_reviewer", "--reason", "调岗"
    )
    assert post.code == 0 and "合规审查员" in post.out
    assert run("user", "suspend", "--user", "admin-1", "--reason", "离职").code == 0
    suspended = run(
        *("token", "issue", "--user", "admin-1", "--role", "admin"),
        *("--unit", "county-admin", "--street", "county"),
    )
    assert suspended.code == 2 and "suspended" in suspended.err
    again = run("user", "suspend", "--user", "admin-1", "--reason", "again")
    assert again.code == 2 and again.err.count("\n") == 1 and "already suspended" in again.err
    assert run("user", "reinstate", "--user", "admin-1", "--reason", "复职").code == 0
    revoked = run("user", "revoke", "--user", "admin-1", "--role", "admin", "--reason", "卸任")
    assert revoked.code == 0 and "roles=compliance_auditor" in revoked.out

    listed = run("user", "list")
    assert "admin-1" in listed.out and name not in listed.out
    assert name in run("user", "list", "--names").out
    history = json.loads(run("user", "history", "--user", "admin-1", "--json").out)
    assert [e["what"] for e in history] == [
        "registered",
        "role_granted",
        "post_changed",
        "suspended",
        "reinstated",
        "role_revoked",
    ]
    assert {e["by"]["user"] for e in history} == {f"cli:{_login()}"}

    # Bad input: one line naming the field, exit 2, nothing written.
    bad = run(
        *("user", "add", "--user", "Not A Code", "--name", name, "--unit", "u", "--street", "s"),
        *("--role", "admin", "--post", "teacher", "--reason", "x"),
    )
    assert bad.code == 2 and bad.err.count("\n") == 1 and "user_id" in bad.err
    assert name not in bad.err
    unknown = run("user", "history", "--user", "nobody")
    assert unknown.code == 2 and "no user is registered" in unknown.err
    application = open_application(settings)
    try:
        assert [u.user_id for u in application.users()] == ["admin-1"]
    finally:
        application.close()


def _login() -> str:
    return getpass.getuser()
