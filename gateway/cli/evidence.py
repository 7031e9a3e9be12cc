"""`casetrail` commands of tamper evidence (registered in `gateway.cli.main`).

    casetrail verify [--checkpoint FILE] [--public-key PEM]
    casetrail verify-bundle FILE --public-key PEM
    casetrail checkpoint create | list | export [--all] [--seq N] [--out FILE]
    casetrail proof inclusion --position P [--size N] [--out FILE]
    casetrail proof consistency --from M [--to N] [--out FILE]
    casetrail proof check FILE [--public-key PEM]
    casetrail store init
    casetrail store vacuum

None of them needs the event key: the tree is over the stored, encrypted bytes. `checkpoint
create` needs the service signing key. Exit codes: 0 intact (or done), 1 tampering found (the
first line names the first position that differs), 2 something to fix (usage, keys, files,
store unreachable), each a one-line message.

Each command imports what it uses in its own body, so that the offline checks (`verify-bundle`,
`proof check`) start fast, without the store's modules (issue 23,
tests/integration/test_cli_start.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from domain.application import CaseTrail
    from gateway.settings import Settings

FilePath = click.Path(dir_okay=False, path_type=Path)


class EvidenceUsageError(click.ClickException):
    """Something to fix before anything can be checked: exit 2, one line."""

    exit_code = 2


# --- opening things -----------------------------------------------------------------------------


def _open_store(settings: Settings, *, create: bool = False) -> CaseTrail:
    """The store without its event key. Unless `create`, nothing is created: a verifier with
    read-only rights can run."""
    from gateway import bootstrap, logs

    # Log lines go to stderr as JSON, never between a command's own lines on stdout.
    logs.configure(settings.log_level)
    try:
        return bootstrap.open_unkeyed(settings, create=create)
    except bootstrap.StartupProblem as exc:
        raise EvidenceUsageError(str(exc)) from None


def _public_key(settings: Settings, path: Path | None) -> Ed25519PublicKey:
    from gateway import keyring

    where = path or settings.keys_dir / keyring.SERVICE_PUB
    return keyring.load_public_key(where, "service public key")


def _write(document: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"written to {out}", err=True)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceUsageError(f"no {what} at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvidenceUsageError(f"{path} is not a JSON {what}: {exc}") from None


def _store_failed(exc: Exception) -> EvidenceUsageError:
    return EvidenceUsageError(f"the event store failed: {type(exc).__name__}: {exc}")


# --- verify -----------------------------------------------------------------------------------


@click.command(
    "verify",
    help="Recompute the Merkle tree from the stored events and check it against the signed "
    "checkpoints: those stored with the events and, with --checkpoint, those a unit kept. "
    "Exit 0 intact, 1 tampered (naming the first position that differs), 2 cannot check.",
)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=FilePath,
    help="a checkpoint file a unit kept (`casetrail checkpoint export`): one or several",
)
@click.option(
    "--public-key",
    type=FilePath,
    help="the service's public key (default: $CASETRAIL_HOME/keys/service-signing.pub)",
)
def verify(checkpoint_file: Path | None, public_key: Path | None) -> None:
    from eventsourcing.persistence import PersistenceError

    from gateway.evidence.verification import check_held, key_chain, verify_store
    from gateway.settings import Settings
    from projections.evidence.checkpoints import CheckpointFormatError, load_checkpoints

    settings = Settings.from_env()
    key = _public_key(settings, public_key)
    held = []
    if checkpoint_file is not None:
        try:
            held = load_checkpoints(checkpoint_file)
        except CheckpointFormatError as exc:
            raise EvidenceUsageError(str(exc)) from None
    application = _open_store(settings)
    try:
        if held:
            # Checked with the key in force at each checkpoint's number: a unit's file may
            # span a change of the service's signing key (the store's announcements link them).
            problem = check_held(held, key, key_chain(application.recorder, key))
            if problem:
                raise EvidenceUsageError(f"{checkpoint_file}: {problem}")
        report = verify_store(application.recorder, key, held)
    except PersistenceError as exc:
        raise _store_failed(exc) from None
    finally:
        application.close()
    if not report.checkpoints and not report.findings:
        if report.events == 0:
            click.echo("intact: the store holds no events yet")
            return
        raise EvidenceUsageError(
            f"no signed checkpoint to check the {report.events} stored events against: give "
            "--checkpoint FILE, or sign one (`casetrail checkpoint create`)"
        )
    click.echo(report.summary())
    findings = sorted(report.findings, key=lambda f: (f.hi == 0, f.lo, f.hi))
    for finding in findings[1:]:
        click.echo(f"also: {finding.message}")
    if not report.intact:
        sys.exit(1)


@click.command(
    "verify-bundle",
    help="Check an evidence bundle offline, with the service's public key and no database. "
    "Exit 0 intact, 1 altered, 2 cannot check.",
)
@click.argument("bundle_file", type=FilePath)
@click.option("--public-key", required=True, type=FilePath, help="the service's public key")
def verify_bundle_command(bundle_file: Path, public_key: Path) -> None:
    from gateway import keyring
    from gateway.evidence.verification import BundleFormatError, verify_bundle

    key = keyring.load_public_key(public_key, "service public key")
    document = _read_json(bundle_file, "evidence bundle")
    try:
        report = verify_bundle(document, key)
    except BundleFormatError as exc:
        raise EvidenceUsageError(f"{bundle_file}: {exc}") from None
    click.echo(report.summary())
    for problem in report.problems[1:]:
        click.echo(f"also: {problem}")
    if not report.intact:
        sys.exit(1)


# --- checkpoints --------------------------------------------------------------------------------


@click.group(help="Signed checkpoints of the Merkle log: create, list, export for units.")
def checkpoint() -> None:
    pass


@checkpoint.command(
    "create", help="Bring the Merkle log up to date and sign a checkpoint of it now."
)
def checkpoint_create() -> None:
    from eventsourcing.persistence import PersistenceError

    from gateway import bootstrap
    from gateway.evidence.maintainer import TreeInconsistent
    from gateway.settings import Settings
    from gateway.store import guard as store_guard

    settings = Settings.from_env()
    application = _open_store(settings)
    try:
        store_guard.install(application.recorder)
        evidence = bootstrap.open_evidence(settings, application)
        try:
            signed = evidence.checkpoint_now()
        finally:
            evidence.close()
    except (store_guard.StoreGuardProblem, bootstrap.StartupProblem) as exc:
        raise EvidenceUsageError(str(exc)) from None
    except TreeInconsistent as exc:
        click.echo(f"TAMPERED: {exc}")
        sys.exit(1)
    except PersistenceError as exc:
        raise _store_failed(exc) from None
    finally:
        application.close()
    click.echo(f"{signed.describe()}: root {signed.root.hex()}")


@checkpoint.command("list", help="Every stored checkpoint, one line each, oldest first.")
@click.option("--public-key", type=FilePath, help="default: the service's own")
def checkpoint_list(public_key: Path | None) -> None:
    from gateway.settings import Settings
    from projections.evidence.checkpoints import CheckpointStore

    settings = Settings.from_env()
    key = _public_key(settings, public_key)
    application = _open_store(settings)
    try:
        store = CheckpointStore(application.recorder)
        found = store.all() if store.exists() else []
    finally:
        application.close()
    for item in found:
        mark = "signed" if item.verify(key) else "INVALID SIGNATURE"
        click.echo(f"#{item.seq}\tsize {item.size}\t{item.time}\t{item.root.hex()}\t{mark}")


@checkpoint.command(
    "export",
    help="Write the latest checkpoint (or --seq N, or --all) as the JSON file a unit keeps.",
)
@click.option("--all", "everything", is_flag=True, help="every checkpoint, oldest first")
@click.option("--seq", type=click.IntRange(min=1), help="one checkpoint by number")
@click.option("--out", type=FilePath, help="write to this file instead of stdout")
def checkpoint_export(everything: bool, seq: int | None, out: Path | None) -> None:
    from gateway.settings import Settings
    from projections.evidence.checkpoints import CheckpointStore, checkpoints_document

    settings = Settings.from_env()
    application = _open_store(settings)
    try:
        store = CheckpointStore(application.recorder)
        found = store.all() if store.exists() else []
    finally:
        application.close()
    if seq is not None:
        found = [c for c in found if c.seq == seq]
    elif not everything:
        found = found[-1:]
    if not found:
        raise EvidenceUsageError(
            "no such checkpoint in the store (sign one: `casetrail checkpoint create`)"
        )
    _write(checkpoints_document(found), out)


# --- proofs ---------------------------------------------------------------------------------------


@click.group(help="Inclusion and consistency proofs, and checking them offline.")
def proof() -> None:
    pass


@proof.command(
    "inclusion",
    help="Prove that the event at a store position is in a signed checkpoint (with its stored "
    "record, so that the proof can be checked against it).",
)
@click.option("--position", required=True, type=click.IntRange(min=1), help="notification id")
@click.option("--size", type=click.IntRange(min=1), help="a checkpoint's size (default latest)")
@click.option("--out", type=FilePath)
@click.option("--public-key", type=FilePath, help="default: the service's own")
def proof_inclusion(
    position: int, size: int | None, out: Path | None, public_key: Path | None
) -> None:
    from gateway.evidence.documents import EvidenceUnavailable, inclusion_document
    from gateway.settings import Settings

    settings = Settings.from_env()
    key = _public_key(settings, public_key)
    application = _open_store(settings)
    try:
        document = inclusion_document(application.recorder, key, position, size, with_record=True)
    except EvidenceUnavailable as exc:
        raise EvidenceUsageError(str(exc)) from None
    finally:
        application.close()
    _write(document, out)


@proof.command(
    "consistency",
    help="Prove that a later checkpoint extends an earlier one (nothing before it changed).",
)
@click.option("--from", "first", required=True, type=click.IntRange(min=0), help="older size")
@click.option("--to", "second", type=click.IntRange(min=0), help="newer size (default latest)")
@click.option("--out", type=FilePath)
@click.option("--public-key", type=FilePath, help="default: the service's own")
def proof_consistency(
    first: int, second: int | None, out: Path | None, public_key: Path | None
) -> None:
    from gateway.evidence.documents import EvidenceUnavailable, consistency_document
    from gateway.settings import Settings

    settings = Settings.from_env()
    key = _public_key(settings, public_key)
    application = _open_store(settings)
    try:
        document = consistency_document(application.recorder, key, first, second)
    except EvidenceUnavailable as exc:
        raise EvidenceUsageError(str(exc)) from None
    finally:
        application.close()
    _write(document, out)


@proof.command("check", help="Check a proof file offline. Exit 0 valid, 1 invalid, 2 unreadable.")
@click.argument("proof_file", type=FilePath)
@click.option("--public-key", type=FilePath, help="default: the service's own, if present")
def proof_check(proof_file: Path, public_key: Path | None) -> None:
    from gateway import keyring
    from gateway.evidence.verification import check_proof

    document = _read_json(proof_file, "proof")
    key = keyring.load_public_key(public_key, "service public key") if public_key else None
    if key is None:
        # Only without --public-key: the settings say where the service's own key is.
        from gateway.settings import Settings

        default = Settings.from_env().keys_dir / keyring.SERVICE_PUB
        key = keyring.load_public_key(default, "service public key") if default.exists() else None
    problems = check_proof(document, key)
    if problems:
        click.echo(f"INVALID: {problems[0]}")
        for problem in problems[1:]:
            click.echo(f"also: {problem}")
        sys.exit(1)
    signed = "" if key is not None else " (signatures not checked: no public key given)"
    click.echo(f"valid: {document.get('format')}{signed}")


# --- the store ----------------------------------------------------------------------------------


@click.group(help="The event store's own tables and guards, and its maintenance (VACUUM).")
def store() -> None:
    pass


@store.command(
    "init",
    help="Create every table the service uses (events, Merkle log, checkpoints, read models, "
    "the relay's and followers' positions) and the append-only triggers: run as the database "
    "owner; the service's roles then need no right to create (ops/postgres-roles.sql).",
)
def store_init() -> None:
    from gateway import bootstrap, logs
    from gateway.settings import Settings

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    settings.home.mkdir(parents=True, exist_ok=True)
    # One process at a time creates (gateway/store/setup.py); the second finds it all in place.
    missing: list[str] = []
    try:
        created = bootstrap.prepare_store(settings, missing)
    except bootstrap.StartupProblem as exc:
        raise EvidenceUsageError(str(exc)) from None
    click.echo(f"created: {', '.join(created)}" if created else "all in place already")
    for path in missing:
        click.echo(
            f"casetrail: note: the read models' tables were not created: no {path}; run "
            "`casetrail store init` again with the service's CASETRAIL_HOME (its keys)",
            err=True,
        )


@store.command(
    "vacuum",
    help="Compact the SQLite event store (VACUUM) while keeping every event's position: "
    "positions are hashed before and after, and a difference is reported (exit 1). "
    "PostgreSQL: nothing to do here (autovacuum; its positions are a column).",
)
def store_vacuum() -> None:
    from gateway.settings import Settings
    from gateway.store.backup import BackupProblem, sqlite_path
    from gateway.store.vacuum import PositionsMoved, VacuumProblem, vacuum
    from projections.evidence.log import StoreTables

    settings = Settings.from_env()
    if settings.store_kind != "sqlite":
        raise EvidenceUsageError(
            "`store vacuum` is for the SQLite store; on PostgreSQL VACUUM never renumbers "
            "events (their position is the notification_id column): leave it to autovacuum"
        )
    try:
        path = sqlite_path(settings.database_url)
    except BackupProblem as exc:
        raise EvidenceUsageError(str(exc)) from None
    application = _open_store(settings)
    try:
        table = StoreTables(application.recorder).events_table
    finally:
        application.close()
    try:
        report = vacuum(path, table)
    except PositionsMoved as exc:
        click.echo(f"casetrail: error: {exc}", err=True)
        sys.exit(1)
    except VacuumProblem as exc:
        raise EvidenceUsageError(str(exc)) from None
    click.echo(
        f"vacuumed {path}: {report.bytes_before} -> {report.bytes_after} bytes; the "
        f"{report.before.events} events (positions up to {report.before.last}) kept their positions"
    )
