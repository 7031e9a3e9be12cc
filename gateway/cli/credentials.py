"""`casetrail user password | totp enrol | totp remove | unlock`: a user's sign-in credentials
(issue 16, `domain.credentials`), run on the server by its operator.

- `password` reads the new password from the terminal (asked twice, not shown) or, when stdin
  is not a terminal, from its first line: never from an option, which would leave it in the
  shell's history and the process list. Only its argon2id hash is stored.
- `totp enrol` makes a TOTP secret, stores it (encrypted, like every event) and prints the
  provisioning URI (`otpauth://...`, for the authenticator app's QR code) once; it is never
  shown again. `totp remove` removes it, with a reason.
- `unlock` unlocks an account locked by repeated failures, with a reason.

Each change is recorded with the operator's OS account (`gateway.cli.users.operator`). Nothing
here logs a password, a secret or a code. Proven by tests/integration/test_signin_cli.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from domain.application import CaseTrail
from domain.credentials import new_totp_secret, provisioning_uri
from domain.errors import DomainError
from gateway import bootstrap, logs
from gateway.cli.users import operator
from gateway.settings import Settings


class CredentialsProblem(click.ClickException):
    exit_code = 2


@contextmanager
def _opened() -> Iterator[CaseTrail]:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = bootstrap.open_application(settings)
    try:
        yield application
    except DomainError as exc:
        where = f"{exc.field}: " if exc.field else ""
        raise CredentialsProblem(f"{where}{exc.message}") from None
    finally:
        application.close()


def _read_password() -> str:
    if sys.stdin.isatty():
        entered: str = click.prompt(
            "new password", hide_input=True, confirmation_prompt=True, err=True
        )
        return entered
    line = sys.stdin.readline()
    if not line:
        raise CredentialsProblem("no password on stdin: give it as the first line")
    return line.rstrip("\r\n")


@click.command("password", help="Set a user's password (read from the terminal or stdin).")
@click.option("--user", "user_id", required=True, help="the user id")
@click.option("--reason", default="password set by the operator", show_default=True)
def user_password(user_id: str, reason: str) -> None:
    password = _read_password()
    with _opened() as application:
        application.set_password(user_id, password, operator(), reason)
    click.echo(f"password set for {user_id} (only its argon2id hash is stored)")


@click.group("totp", help="A user's TOTP second factor.")
def totp() -> None:
    pass


@totp.command("enrol", help="Enrol a TOTP secret and print its provisioning URI, once.")
@click.option("--user", "user_id", required=True)
def totp_enrol(user_id: str) -> None:
    secret = new_totp_secret()
    with _opened() as application:
        application.enrol_totp(user_id, secret, operator())
    click.echo("scan this into the user's authenticator app now; it is not shown again:", err=True)
    click.echo(provisioning_uri(secret, user_id))


@totp.command("remove", help="Remove a user's TOTP secret (e.g. a lost phone).")
@click.option("--user", "user_id", required=True)
@click.option("--reason", required=True, help="why (recorded)")
def totp_remove(user_id: str, reason: str) -> None:
    with _opened() as application:
        application.remove_totp(user_id, operator(), reason)
    click.echo(f"TOTP removed for {user_id}")


@click.command("unlock", help="Unlock an account locked after repeated failed sign-ins.")
@click.option("--user", "user_id", required=True)
@click.option("--reason", required=True, help="why (recorded)")
def user_unlock(user_id: str, reason: str) -> None:
    with _opened() as application:
        application.unlock_account(user_id, operator(), reason)
    click.echo(f"unlocked {user_id}")


def register(group: click.Group) -> None:
    """Add these commands to `casetrail user` (gateway/cli/main.py)."""
    for command in (user_password, totp, user_unlock):
        group.add_command(command)
