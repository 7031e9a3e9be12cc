"""The `casetrail` command. Every failure is one line on stderr and a non-zero exit:
exit 2 for something the user must fix (keys, settings, input), 1 for anything else.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import pydantic
from eventsourcing.persistence import PersistenceError

from domain.taxonomy import Role
from gateway import bootstrap, keyring, logs, serving
from gateway.auth import MAX_TTL_SECONDS, issue_token
from gateway.bootstrap import StartupProblem
from gateway.cli import compliance as compliance_cli
from gateway.cli import credentials as credentials_cli
from gateway.cli import deadlines as deadlines_cli
from gateway.cli import evidence as evidence_cli
from gateway.cli import messaging as messaging_cli
from gateway.cli import projections as projection_cli
from gateway.cli import reports as report_cli
from gateway.cli import roster as roster_cli
from gateway.cli import users as users_cli
from gateway.cli.demo import PAGES_URL, demo_passwords, fill_demo
from gateway.settings import Settings, SettingsProblem
from gateway.store.setup import StoreSetupProblem, setup_lock

DEFAULT_STREET = "chengguan-street"


class UserError(click.ClickException):
    exit_code = 2


@click.group(help="casetrail: audited case files for early-warning issues of minor students.")
def cli() -> None:
    pass


# --- keys ---------------------------------------------------------------------------------------


@cli.group(help="Create and inspect the service's keys under $CASETRAIL_HOME/keys.")
def keys() -> None:
    pass


@keys.command("init", help="Create the keys that do not exist yet (mode 0600); never overwrites.")
def keys_init() -> None:
    settings = Settings.from_env()
    event_key = settings.keys_dir / keyring.EVENT_KEY
    if not event_key.exists() and not settings.event_key_env and _store_has_events(settings):
        raise UserError(
            f"the store already holds events but {event_key} is missing: restore the key from "
            "backup (a new key could not read them)"
        )
    created = keyring.init_keys(settings.keys_dir)
    if created:
        click.echo(f"created in {settings.keys_dir}: {', '.join(created)}")
    else:
        click.echo(f"all keys already present in {settings.keys_dir}")


def _store_has_events(settings: Settings) -> bool:
    if settings.store_kind == "sqlite" and not (settings.home / "casetrail.sqlite").exists():
        return False
    try:
        with setup_lock(settings.database_url):  # a missing schema is created here, or refused
            # Without the key (it is missing), with the service's settings (CASETRAIL_CREATE_TABLE).
            application = bootstrap.open_unkeyed(settings, create=None)
    except StoreSetupProblem as exc:
        raise UserError(str(exc)) from None
    try:
        return bool(application.recorder.max_notification_id())
    finally:
        application.close()


# --- serve --------------------------------------------------------------------------------------


@cli.command(help="Start the HTTP API (what `make run` starts).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--messaging/--no-messaging",
    default=True,
    show_default=True,
    help="also run the relay, and the embedded NATS server unless CASETRAIL_NATS_URL is set",
)
def serve(host: str, port: int, messaging: bool) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)

    def announce() -> None:
        click.echo(
            f"casetrail API on http://{host}:{port} ({settings.workers} worker(s)) — "
            f"API docs at http://{host}:{port}/docs"
        )

    serving.run(settings, host=host, port=port, messaging=messaging, announce=announce)


# --- tokens -------------------------------------------------------------------------------------


@cli.group(help="Access tokens for registered users (scripts, unit clients, tests).")
def token() -> None:
    pass


@token.command("issue", help="Print a signed bearer token (and nothing else) on stdout.")
@click.option("--user", required=True, help="user id (not a name)")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--unit", required=True, help="the user's unit code")
@click.option("--street", default=DEFAULT_STREET, show_default=True)
@click.option("--ttl", default=8 * 3600, show_default=True, type=click.IntRange(1, MAX_TTL_SECONDS))
def token_issue(user: str, role: str, unit: str, street: str, ttl: int) -> None:
    settings = Settings.from_env()
    # Only for a registered, active user holding the role in that unit (issue 16): the API
    # would refuse any other token anyway; this says so before it is handed out.
    application = bootstrap.open_application(settings)
    try:
        users_cli.require_admitted(
            application, user=user, role=Role(role), unit=unit, street=street
        )
    finally:
        application.close()
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token signing key")
    click.echo(
        issue_token(key, user=user, role=Role(role), unit=unit, street=street, ttl_seconds=ttl)
    )


# --- demo ---------------------------------------------------------------------------------------


@cli.command(
    help="Fill the store with synthetic cases for one street and print a token and a "
    "sign-in password per role."
)
@click.option("--cases", default=36, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--seed", default=7, show_default=True, type=int)
def demo(cases: int, seed: int) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    keyring.init_keys(settings.keys_dir)
    application = bootstrap.open_application(settings)
    try:
        summary = fill_demo(application, cases=cases, seed=seed, street=DEFAULT_STREET)
        passwords = demo_passwords(application, summary.people)
    finally:
        application.close()
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token signing key")
    click.echo(f"stored {summary.cases} synthetic cases in street {DEFAULT_STREET}")
    click.echo(f"a case to try: {summary.sample_case}")
    click.echo("tokens (valid 8 h):")
    for who in summary.people:
        tok = issue_token(key, user=who.user, role=who.role, unit=who.unit, street=DEFAULT_STREET)
        click.echo(f"  {who.role:<18} {who.unit:<24} {tok}")
    # The pages' sign-in: printed here only (never logged); each run sets new passwords.
    click.echo(f"pages: {PAGES_URL} (after `make run`); sign in as (new passwords each run):")
    for who in summary.people:
        click.echo(f"  user {who.user:<32} password {passwords[who.user]}  ({who.role})")


cli.add_command(evidence_cli.verify)
cli.add_command(evidence_cli.verify_bundle_command)
cli.add_command(evidence_cli.checkpoint)
cli.add_command(evidence_cli.proof)
cli.add_command(evidence_cli.store)
cli.add_command(projection_cli.projections)
cli.add_command(messaging_cli.unit)
cli.add_command(messaging_cli.nats)
cli.add_command(messaging_cli.relay)
cli.add_command(deadlines_cli.deadlines)
cli.add_command(compliance_cli.compliance)
cli.add_command(report_cli.investigate)
cli.add_command(report_cli.verify_report_command)
cli.add_command(roster_cli.roster)
cli.add_command(roster_cli.screening)
cli.add_command(users_cli.user)
credentials_cli.register(users_cli.user)  # `user password | totp | unlock` (sign-in, issue 16)


# --- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="casetrail", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("casetrail: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        # Usage errors too: one line, not click's three.
        click.echo(f"casetrail: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if isinstance(exc, UserError) else 2)
    except (StartupProblem, keyring.KeyProblem, SettingsProblem) as exc:
        click.echo(f"casetrail: error: {exc}", err=True)
        sys.exit(2)
    except PersistenceError as exc:
        # Any command, one line: never a traceback (nor the driver's text, which may quote SQL).
        click.echo(
            f"casetrail: error: the event store failed ({type(exc).__name__}); check that it is "
            "reachable and that CASETRAIL_DATABASE_URL names it",
            err=True,
        )
        sys.exit(2)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        click.echo(f"casetrail: error: {where}: {first.get('msg')}", err=True)
        sys.exit(2)
