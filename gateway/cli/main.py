"""The `casetrail` command. Every failure is one line on stderr and a non-zero exit:
exit 2 for something the user must fix (keys, settings, input), 1 for anything else.

It starts fast (issue 23): this module imports only what parsing the arguments needs (click and
the role names). The commands of other modules are registered by name (`COMMANDS`) and imported
when dispatched, and every handler imports the service's modules it uses inside itself, so
`casetrail --help`, `token issue`, `verify-bundle` and `proof check` never load the HTTP app,
the messaging stack or the read models. Proven by tests/integration/test_cli_start.py (what
each light command imports) and measured by bench/cli_start.py (against `python -c pass`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import click
from click.formatting import HelpFormatter

from domain.taxonomy import Role

if TYPE_CHECKING:
    from gateway.settings import Settings

DEFAULT_STREET = "chengguan-street"


class UserError(click.ClickException):
    exit_code = 2


# Maximum token lifetime: the same number as gateway.auth.MAX_TTL_SECONDS (which issue_token
# enforces), written here so that parsing `--ttl` does not import the token code; a test keeps
# the two equal (tests/integration/test_cli_start.py).
MAX_TTL_SECONDS: Final = 7 * 24 * 3600


# The commands that live in other modules: name -> (module, attribute, the first sentence of its
# help as `casetrail --help` lists it). The module is imported when the command is dispatched (or
# its own --help asked for); the summary lets the top-level help list every command without
# importing any. A test checks each summary against the command's own help.
COMMANDS: Final[Mapping[str, tuple[str, str, str]]] = {
    "verify": (
        "gateway.cli.evidence",
        "verify",
        "Recompute the Merkle tree from the stored events and check it against the signed "
        "checkpoints: those stored with the events and, with --checkpoint, those a unit kept.",
    ),
    "verify-bundle": (
        "gateway.cli.evidence",
        "verify_bundle_command",
        "Check an evidence bundle offline, with the service's public key and no database.",
    ),
    "checkpoint": (
        "gateway.cli.evidence",
        "checkpoint",
        "Signed checkpoints of the Merkle log: create, list, export for units.",
    ),
    "proof": (
        "gateway.cli.evidence",
        "proof",
        "Inclusion and consistency proofs, and checking them offline.",
    ),
    "store": (
        "gateway.cli.evidence",
        "store",
        "The event store's own tables and guards, and its maintenance (VACUUM).",
    ),
    "backup": (
        "gateway.cli.backup",
        "backup",
        "Copy the event store into one file while the service runs (SQLite's online backup; "
        "pg_dump of the store's schema).",
    ),
    "restore": (
        "gateway.cli.backup",
        "restore",
        "Restore a backup into an EMPTY store (CASETRAIL_DATABASE_URL holds no event), then "
        "check that the keys in place open it and rebuild the read models.",
    ),
    "projections": (
        "gateway.cli.projections",
        "projections",
        "Read models (ledgers, worklists, reports) that follow the event store.",
    ),
    "unit": (
        "gateway.cli.messaging",
        "unit",
        "The unit registry: member units that receive sealed notices.",
    ),
    "nats": (
        "gateway.cli.messaging",
        "nats",
        "The NATS broker: its config, TLS material, and the embedded server.",
    ),
    "relay": (
        "gateway.cli.messaging",
        "relay",
        "The relay: publishes sealed notices from the event store to the broker.",
    ),
    "deadlines": (
        "gateway.cli.deadlines",
        "deadlines",
        "Missed deadlines, recorded as facts (docs: domain/deadlines.py).",
    ),
    "compliance": (
        "gateway.cli.compliance",
        "compliance",
        "Compliance rules over every access, and their findings (docs/compliance.md).",
    ),
    "investigate": (
        "gateway.cli.reports",
        "investigate",
        "Write the signed report of an investigation (html, pdf or json), as the investigator "
        "whose token is given; the read of every case file is recorded first.",
    ),
    "verify-report": (
        "gateway.cli.reports",
        "verify_report_command",
        "Check a signed investigation report (html, pdf or json) offline with the service's "
        "public key: exit 0 intact, 1 changed or signed by another key.",
    ),
    "retention": (
        "gateway.cli.retention",
        "retention",
        "Retention and erasure of closed files (README: Retention).",
    ),
    "roster": ("gateway.cli.roster", "roster", "The roster of minors (底数) of each village."),
    "screening": (
        "gateway.cli.roster",
        "screening",
        "Screening campaigns (走访排查) and their coverage.",
    ),
    # `user password | totp | unlock` (sign-in, issue 16) join the group when it is loaded.
    "user": (
        "gateway.cli.main",
        "user_group",
        "The user registry: people, their posts and roles (issue 16).",
    ),
}


def user_group() -> click.Command:
    from gateway.cli import credentials as credentials_cli
    from gateway.cli import users as users_cli

    credentials_cli.register(users_cli.user)
    return users_cli.user


class LazyGroup(click.Group):
    """A group whose `COMMANDS` are imported on first use, and listed from their summaries."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute, _ = COMMANDS[cmd_name]
            found: Any = getattr(importlib.import_module(module), attribute)
            # A command, or a function that builds one (`user_group`).
            command: click.Command = found if isinstance(found, click.Command) else found()
            self.add_command(command, cmd_name)  # loaded once: later calls find it here
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: HelpFormatter) -> None:
        # click's own listing, but without importing a command only to print its summary.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                if not loaded.hidden:
                    rows.append((name, loaded.get_short_help_str(limit)))
            else:
                # Shortened exactly as click shortens a loaded command's help.
                summary = click.Command(name, help=COMMANDS[name][2])
                rows.append((name, summary.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    help="casetrail: audited case files for early-warning issues of minor students.",
)
def cli() -> None:
    pass


# --- keys ---------------------------------------------------------------------------------------


@cli.group(help="Create and inspect the service's keys under $CASETRAIL_HOME/keys.")
def keys() -> None:
    pass


@keys.command("init", help="Create the keys that do not exist yet (mode 0600); never overwrites.")
def keys_init() -> None:
    from gateway import keyring
    from gateway.settings import Settings

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


@keys.command(
    "rotate",
    help="Replace one key: --event (a new key encrypts from now on; the old ones still decrypt), "
    "--token (a new token signing pair; the old public key verifies tokens for --grace-hours), "
    "--service (a new signing key, announced in a checkpoint signed by the old key), "
    "--kek (a new key-encryption key wraps every file's data key; then `keys retire-kek`).",
)
@click.option("--event", "kind", flag_value="event", help="the event encryption key")
@click.option("--kek", "kind", flag_value="kek", help="the data keys' key-encryption key")
@click.option("--token", "kind", flag_value="token", help="the token signing key")
@click.option("--service", "kind", flag_value="service", help="the service signing key")
@click.option(
    "--grace-hours",
    type=click.IntRange(0, 24 * 365),
    default=MAX_TTL_SECONDS // 3600,
    show_default=True,
    help="--token only: how long the old public key still verifies tokens",
)
def keys_rotate(kind: str | None, grace_hours: int) -> None:
    from gateway.cli import keys as keys_cli

    if kind is None:
        raise UserError("say which key to rotate: --event, --token, --service or --kek")
    keys_cli.rotate(kind, grace_hours)


@keys.command(
    "retire-kek",
    help="Retire a key-encryption key after `keys rotate --kek` and a restart of every process: "
    "rewrap what it still wraps, drop its wraps from the key table, remove it from the key file. "
    "Copies of the table made before (backups, PostgreSQL's WAL) can then no longer open a key.",
)
@click.argument("kek_id")
def keys_retire_kek(kek_id: str) -> None:
    from gateway.cli import keys as keys_cli

    keys_cli.retire_kek(kek_id)


@keys.command(
    "status",
    help="Each key with its id, use and age, and the stored events per event key id.",
)
@click.option("--no-events", is_flag=True, help="do not count the stored events (no store)")
def keys_status(no_events: bool) -> None:
    from gateway.cli import keys as keys_cli

    keys_cli.status(count_events=not no_events)


def _store_has_events(settings: Settings) -> bool:
    from gateway import bootstrap
    from gateway.store.setup import StoreSetupProblem, setup_lock

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
    from gateway import logs, serving
    from gateway.settings import Settings

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
    # Only what issuing needs: the settings, the user's record and the signing key.
    from gateway import keyring
    from gateway.auth import issue_token
    from gateway.cli import users as users_cli
    from gateway.settings import Settings

    settings = Settings.from_env()
    # Only for a registered, active user holding the role in that unit (issue 16): the API
    # would refuse any other token anyway; this says so before it is handed out.
    users_cli.require_admitted(settings, user=user, role=Role(role), unit=unit, street=street)
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
    from gateway import bootstrap, keyring, logs
    from gateway.auth import issue_token
    from gateway.cli.demo import PAGES_URL, demo_passwords, fill_demo
    from gateway.settings import Settings

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
    except Exception as exc:
        _one_line(exc)
        raise


def _one_line(exc: Exception) -> None:
    """Exit 2 with one line for the problems a user fixes; return for anything else.

    Each class is looked at only if its module was imported: an exception of a class whose
    module never loaded cannot have been raised, and a light command stays light."""
    if "gateway.bootstrap" in sys.modules:
        from gateway.bootstrap import StartupProblem

        _fixable(exc, StartupProblem)
    if "gateway.keyring" in sys.modules:
        from gateway.keyring import KeyProblem

        _fixable(exc, KeyProblem)
    if "gateway.settings" in sys.modules:
        from gateway.settings import SettingsProblem

        _fixable(exc, SettingsProblem)
    if "eventsourcing.persistence" in sys.modules:
        from eventsourcing.persistence import PersistenceError

        if isinstance(exc, PersistenceError):
            # Any command, one line: never a traceback (nor the driver's text, which may
            # quote SQL).
            click.echo(
                f"casetrail: error: the event store failed ({type(exc).__name__}); check that "
                "it is reachable and that CASETRAIL_DATABASE_URL names it",
                err=True,
            )
            sys.exit(2)
    if "pydantic" in sys.modules:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            click.echo(f"casetrail: error: {where}: {first.get('msg')}", err=True)
            sys.exit(2)


def _fixable(exc: Exception, kind: type[Exception]) -> None:
    if isinstance(exc, kind):
        click.echo(f"casetrail: error: {exc}", err=True)
        sys.exit(2)
