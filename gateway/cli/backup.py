"""`casetrail backup` and `casetrail restore` (registered in `gateway.cli.main`).

    casetrail backup --out FILE      a consistent copy while the service runs; stays encrypted
    casetrail restore FILE [--no-rebuild]   into an empty store only

The backup's format and guarantees are in `gateway.store.backup`. The keys are never in a
backup: `backup` says which key files to keep separately, and `restore` checks that the keys in
place open the restored events (every event key id the backup names, and the newest event),
then rebuilds the read models from the restored events. Every failure is one line and exit 2;
proven by tests/integration/test_backup.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from domain.application import CaseTrail
    from gateway.settings import Settings
    from gateway.store.backup import Manifest

FilePath = click.Path(dir_okay=False, path_type=Path)


class BackupUsageError(click.ClickException):
    exit_code = 2


def _events_table(application: CaseTrail) -> str:
    from projections.evidence.log import StoreTables

    return StoreTables(application.recorder).events_table


def _open(settings: Settings, *, create: bool) -> CaseTrail:
    from gateway import bootstrap, logs

    logs.configure(settings.log_level)
    try:
        return bootstrap.open_unkeyed(settings, create=create)
    except bootstrap.StartupProblem as exc:
        raise BackupUsageError(str(exc)) from None


@click.command(
    "backup",
    help="Copy the event store into one file while the service runs (SQLite's online backup; "
    "pg_dump of the store's schema). The events stay encrypted; the keys are NOT in the "
    "backup: keep $CASETRAIL_HOME/keys/ separately.",
)
@click.option("--out", required=True, type=FilePath, help="the backup file to write (new)")
def backup(out: Path) -> None:
    from gateway.settings import Settings
    from gateway.store.backup import BackupProblem, take_backup

    settings = Settings.from_env()
    application = _open(settings, create=False)
    try:
        table = _events_table(application)
    finally:
        application.close()
    try:
        manifest = take_backup(settings.database_url, table, out, pg_bin_dir=settings.pg_bin_dir)
    except BackupProblem as exc:
        raise BackupUsageError(str(exc)) from None
    click.echo(f"backup written to {out}: {manifest.describe()}")
    click.echo(
        f"not in it: the keys. Keep {settings.keys_dir}/ ({', '.join(manifest.keys_not_included)}) "
        "separately, offline: without event.key the backup cannot be read"
    )


@click.command(
    "restore",
    help="Restore a backup into an EMPTY store (CASETRAIL_DATABASE_URL holds no event), then "
    "check that the keys in place open it and rebuild the read models. Refuses a store that "
    "holds events.",
)
@click.argument("backup_file", type=FilePath)
@click.option(
    "--rebuild/--no-rebuild",
    default=True,
    show_default=True,
    help="rebuild the read models from the restored events (needs the keys in place)",
)
def restore(backup_file: Path, rebuild: bool) -> None:
    from gateway.settings import Settings
    from gateway.store.backup import BackupProblem, check_target, read_manifest, restore_backup
    from gateway.store.setup import StoreSetupProblem, setup_lock

    settings = Settings.from_env()
    try:
        # A file that is no backup, or one for another kind of store or schema, is refused
        # before the store is opened (opening it creates its tables).
        check_target(read_manifest(backup_file), settings.database_url)
        # No process creates tables meanwhile (a service starting on the empty store).
        with setup_lock(settings.database_url):
            application = _open(settings, create=True)
            try:
                table = _events_table(application)
            finally:
                application.close()
            manifest = restore_backup(
                backup_file, settings.database_url, table, pg_bin_dir=settings.pg_bin_dir
            )
    except (BackupProblem, StoreSetupProblem) as exc:
        raise BackupUsageError(str(exc)) from None
    click.echo(f"restored from {backup_file}: {manifest.describe()}")
    if settings.store_kind == "postgresql":
        click.echo(
            "the restored tables belong to this role: with an append-only service role, run "
            "ops/postgres-roles.sql again (ops/README.md)"
        )
    _check_keys(settings, manifest, rebuild)


def _check_keys(settings: Settings, manifest: Manifest, rebuild: bool) -> None:
    """The keys in place must open the restored events; then the read models are rebuilt."""
    from gateway import bootstrap, keyring
    from gateway.store.eventstore import decode_key, key_id

    try:
        keys = keyring.load_event_keys(settings.keys_dir, settings.event_key_env)
    except keyring.KeyProblem:
        click.echo(
            f"no event key in place ({settings.keys_dir}/event.key or CASETRAIL_EVENT_KEY): put "
            "the store's keys back from their own backup, then run `casetrail projections "
            "rebuild all`"
        )
        return
    have = {key_id(decode_key(text)).hex() for text in keys.texts}
    missing = [found for found in manifest.event_key_ids if found not in have]
    if missing:
        raise BackupUsageError(
            f"restored, but the event key(s) in place do not open events written with key id(s) "
            f"{', '.join(missing)}: put the store's own event.key back from its backup"
        )
    try:
        application = bootstrap.open_application(settings)  # decrypts the newest event
    except bootstrap.StartupProblem as exc:
        raise BackupUsageError(f"restored, but {exc}") from None
    try:
        if not rebuild:
            click.echo("the keys open the restored events; read models not rebuilt (--no-rebuild)")
            return
        readmodels = bootstrap.open_read_models(settings, application)
        try:
            counts = {name: readmodels.rebuild(name) for name in readmodels.followers}
        finally:
            readmodels.close()
        # The Merkle log to the end of the restored events (as the service would at its start),
        # so that `verify` can name the first position a unit's later checkpoint finds missing.
        evidence = bootstrap.open_evidence(settings, application)
        try:
            counts["evidence"] = evidence.catch_up()
        finally:
            evidence.close()
    except bootstrap.StartupProblem as exc:
        raise BackupUsageError(f"restored, but {exc}") from None
    finally:
        application.close()
    rebuilt = ", ".join(f"{name} {count}" for name, count in counts.items())
    click.echo(
        f"the keys open the restored events; read models rebuilt, Merkle log caught up "
        f"(events read: {rebuilt})"
    )
    click.echo("check it: casetrail verify --checkpoint FILE (a unit's checkpoint file)")
