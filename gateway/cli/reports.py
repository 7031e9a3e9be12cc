"""`casetrail investigate` and `casetrail verify-report`: the signed investigation report
(一案一倒查报告) from the command line, and checking one offline.

`investigate` is the same audited read as `GET /v1/investigations/{id}/report`
(`gateway.reports.service`): it acts for the investigator whose token it is given (a token from
the service's token keys, e.g. `casetrail token issue --role investigator ...`), is granted
only what that investigator is granted over HTTP, and stores the read of every case file
(channel `report`, client `cli`) before anything is written; a refusal is stored too. The file
is written whole (a temporary file renamed) and readable by its owner only.

`verify-report` needs no database: the file and the service's public key (`docs/specs/
report.md`). Exit 0 intact, 1 changed or signed by another key (one line saying which), 2 not a
report or no usable key.

Proven by tests/reports/test_cli.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Final
from uuid import UUID, uuid4

import click

from domain.access import Client
from domain.application import AccessRefused
from domain.taxonomy import Purpose
from gateway import bootstrap, keyring, logs
from gateway.auth import AuthenticationFailed, UserRegistry
from gateway.reports.pdf import PdfUnavailable
from gateway.reports.service import authorise_report, make_report
from gateway.reports.signing import FORMS, Form, ReportFormatError, verify_report
from gateway.settings import Settings

# The client recorded on the access events of a report made here (not over the network).
CLI_CLIENT: Final = Client(address="cli", user_agent="casetrail investigate")


class ReportUsageError(click.ClickException):
    exit_code = 2


@click.command(
    "investigate",
    help="Write the signed report of an investigation (html, pdf or json), as the "
    "investigator whose token is given; the read of every case file is recorded first.",
)
@click.option("--investigation", "investigation_id", type=click.UUID, required=True)
@click.option("--format", "form", type=click.Choice(FORMS), default="html", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="a file holding the investigator's bearer token (casetrail token issue)",
)
def investigate(investigation_id: UUID, form: Form, out: Path, token_file: Path) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    try:
        actor = bootstrap.token_verifier(settings).verify(
            token_file.read_text(encoding="utf-8").strip()
        )
    except AuthenticationFailed as exc:
        raise ReportUsageError(f"{token_file}: {exc}") from None
    except (OSError, UnicodeDecodeError):
        raise ReportUsageError(f"{token_file}: cannot read the token file") from None
    application = bootstrap.open_application(settings)
    try:
        # Only a registered, active user holding the token's role (issue 16).
        UserRegistry(application).check(actor)
    except AuthenticationFailed as exc:
        application.close()
        raise ReportUsageError(f"{token_file}: {exc}") from None
    evidence = bootstrap.open_evidence(settings, application)
    try:
        investigation = authorise_report(
            application,
            actor,
            Purpose.INVESTIGATION,
            f"cli-{uuid4().hex}",
            investigation_id,
            client=CLI_CLIENT,
        )
        data = make_report(
            application,
            evidence,
            investigation,
            form,
            actor=actor,
            key=evidence.signing_key,
            chromium=settings.chromium,
            consultation_due=timedelta(hours=settings.consultation_deadline_hours),
        )
    except AccessRefused as exc:
        raise ReportUsageError(
            f"the report is refused to {actor.user} (rule {exc.rule}); the refusal was recorded"
        ) from None
    except PdfUnavailable as exc:
        raise ReportUsageError(str(exc)) from None
    finally:
        evidence.close()
        application.close()
    _write_private(out, data)
    click.echo(
        f"wrote {out}: the {form} report of investigation {investigation_id} "
        f"({len(data)} bytes), signed; check it with `casetrail verify-report {out} "
        "--public-key PEM`"
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write the whole file or nothing, readable by its owner only: it holds case history."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise ReportUsageError(f"{path}: no such directory")
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".report-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        raise ReportUsageError(f"{path}: cannot write the report there") from None


@click.command(
    "verify-report",
    help="Check a signed investigation report (html, pdf or json) offline with the "
    "service's public key: exit 0 intact, 1 changed or signed by another key.",
)
@click.argument("report_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="the service's public key (PEM), obtained out of band",
)
def verify_report_command(report_file: Path, public_key: Path) -> None:
    key = keyring.load_public_key(public_key, "service public key")
    try:
        check = verify_report(report_file.read_bytes(), key)
    except ReportFormatError as exc:
        raise ReportUsageError(f"{report_file}: {exc}") from None
    click.echo(check.summary())
    if not check.intact:
        sys.exit(1)
