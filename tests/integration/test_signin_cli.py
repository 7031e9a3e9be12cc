"""`casetrail user password | totp enrol | totp remove | unlock` (`gateway/cli/credentials.py`),
run in-process through click on a real SQLite store: the password is read from stdin, never
printed, and signs in afterwards; a weak one is one line and exit 2, nothing stored; the TOTP
provisioning URI is printed once and holds the secret that the stored event holds; unlocking
an account that is not locked, or credentials for an unregistered user, are one line and exit 2.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from domain.credentials import Policy, SessionLimits, credentials_stream_id
from gateway.cli.main import cli
from gateway.http.app import create_app
from tests.integration.test_signin import (
    application_of,
    planted_password,
    register,
    sign_in,
    signin_settings,
)


def run(home: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        cli, ["user", *args], input=stdin, env={"CASETRAIL_HOME": str(home)}, catch_exceptions=False
    )


def test_credentials_from_the_command_line(home: Path) -> None:
    settings = signin_settings(home, f"sqlite:///{home / 'casetrail.sqlite'}")
    password = planted_password()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        register(application_of(client), "u-cli")

    weak = run(home, "password", "--user", "u-cli", stdin="short\n")
    assert weak.exit_code == 2 and "at least 12 characters" in weak.output
    assert "short" not in weak.output and len(weak.output.strip().splitlines()) == 1
    unknown = run(home, "password", "--user", "u-nobody", stdin=f"{password}\n")
    assert unknown.exit_code == 2 and len(unknown.output.strip().splitlines()) == 1

    done = run(home, "password", "--user", "u-cli", stdin=f"{password}\n")
    assert done.exit_code == 0, done.output
    assert password not in done.output

    enrolled = run(home, "totp", "enrol", "--user", "u-cli")
    assert enrolled.exit_code == 0, enrolled.output
    uri = next(line for line in enrolled.output.splitlines() if line.startswith("otpauth://"))
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    again = run(home, "totp", "enrol", "--user", "u-cli")
    assert again.exit_code == 2 and secret not in again.output  # shown once, never again

    not_locked = run(home, "unlock", "--user", "u-cli", "--reason", "test")
    assert not_locked.exit_code == 2 and "not locked" in not_locked.output

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = application_of(client)
        code = pyotp.TOTP(secret).at(datetime.now(UTC))
        assert sign_in(client, "u-cli", password, totp=code).status_code == 201
        stored = list(app.events.get(credentials_stream_id("u-cli")))
        assert [type(e).__name__ for e in stored][:3] == [
            "CredentialsCreated",
            "PasswordSet",
            "TotpEnrolled",
        ]
        assert stored[0].by["user"].startswith("cli:")  # type: ignore[attr-defined]
        found = app.credentials("u-cli")
        assert found is not None and found.totp_secret == secret
        assert found.describe() == {
            "user_id": "u-cli",
            "password": True,
            "totp": True,
            "locked_until": None,
        }
        # Removed, the code is no longer asked for.
        assert run(home, "totp", "remove", "--user", "u-cli", "--reason", "lost").exit_code == 0
        client.cookies.clear()
        session = app.sign_in_with_password(
            "u-cli",
            password,
            totp_code=None,
            role=None,
            secret="s" * 43,
            client={"address": "in-process", "user_agent": ""},
            policy=Policy(),
            limits=SessionLimits(),
        )
        assert session.user_id == "u-cli"
