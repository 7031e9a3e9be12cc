"""`casetrail roster import` and `casetrail screening coverage`: a village's roster of minors
(底数) from a file, and a campaign's coverage, from the command line (docs/screening.md).

Both act for the person whose token is given (`--token-file`, a token from the service's token
keys), under the same rules as over HTTP (`domain.roster`): the street's coordinator or the
village's own reporters import; counts for them and the street's supervisor. The import prints
its report (every rejected row: row number, column, reason; never a value), stores nothing from
a file with errors unless `--store-valid`, and exits 0 when it stored, 2 when it did not (one
line on stderr says why). Proven by `tests/integration/test_screening_cli.py`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from uuid import UUID

import click

from domain import errors
from domain.access import Actor
from domain.roster import may_see_counts
from domain.screening import OpenCampaign
from gateway import bootstrap, keyring, logs
from gateway.auth import AuthenticationFailed, UserRegistry
from gateway.imports.roster import ImportFileError, import_roster
from gateway.settings import Settings
from projections.blind_index import BlindIndex
from projections.screening import coverage


class RosterUsageError(click.ClickException):
    exit_code = 2


_TOKEN_FILE = click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="a file holding your bearer token (casetrail token issue)",
)


def _actor(settings: Settings, token_file: Path) -> Actor:
    """The token's actor, when the token is genuine AND its user is registered, active and
    holds the token's role (issue 16, as `casetrail report investigate`): a suspended or
    revoked user's token is refused here with one line, exit 2."""
    try:
        actor = bootstrap.token_verifier(settings).verify(
            token_file.read_text(encoding="utf-8").strip()
        )
    except AuthenticationFailed as exc:
        raise RosterUsageError(f"{token_file}: {exc}") from None
    except (OSError, UnicodeDecodeError):
        raise RosterUsageError(f"{token_file}: cannot read the token file") from None
    application = bootstrap.open_application(settings)
    try:
        UserRegistry(application).check(actor)
    except AuthenticationFailed as exc:
        raise RosterUsageError(f"{token_file}: {exc}") from None
    finally:
        application.close()
    return actor


@click.group(help="The roster of minors (底数) of each village.")
def roster() -> None:
    pass


@roster.command(
    "import",
    help="Check a village's roster file (.xlsx or CSV, columns in docs/screening.md) and list "
    "its minors; nothing is stored from a file with errors unless --store-valid.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--village", required=True, help="the village/community code (村社区)")
@click.option("--store-valid", is_flag=True, help="store the valid rows of a file with errors")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@_TOKEN_FILE
def import_command(
    file: Path, village: str, store_valid: bool, as_json: bool, token_file: Path
) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    actor = _actor(settings, token_file)
    try:
        data = file.read_bytes()
    except OSError:
        raise RosterUsageError(f"{file}: cannot read the file") from None
    index = BlindIndex(keyring.load_index_key(settings.keys_dir))
    application = bootstrap.open_application(settings)
    try:
        report = import_roster(
            application,
            index,
            data,
            village=village,
            actor=actor,
            store_valid=store_valid,
            channel="cli",
        )
    except ImportFileError as exc:
        raise RosterUsageError(f"{file}: {exc}") from None
    except errors.DomainError as exc:
        raise RosterUsageError(exc.message) from None
    finally:
        application.close()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        for problem in report["rejected"]:
            click.echo(f"第{problem['row']}行 {problem['column']}: {problem['reason']}")
        click.echo(
            f"{report['message']} (rows {report['rows']}, listed {report['listed']}, "
            f"updated {report['updated']}, unchanged {report['unchanged']})"
        )
    if not report["stored"]:
        raise RosterUsageError(
            f"{report['rejected_rows']} row(s) rejected, nothing stored; correct them, or "
            "store the valid rows with --store-valid"
        )


@click.group(help="Screening campaigns (走访排查) and their coverage.")
def screening() -> None:
    pass


@screening.command("open", help="Open a screening campaign (走访排查) of your street.")
@click.option("--name", required=True, help="the campaign's name, e.g. 暑期走访排查")
@click.option("--village", "villages", multiple=True, help="a village covered (repeat); none: all")
@click.option("--from", "starts_on", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "ends_on", required=True, type=click.DateTime(["%Y-%m-%d"]))
@_TOKEN_FILE
def open_command(
    name: str,
    villages: tuple[str, ...],
    starts_on: datetime,
    ends_on: datetime,
    token_file: Path,
) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    actor = _actor(settings, token_file)
    command = OpenCampaign.model_validate(
        {
            "name": name,
            "villages": list(villages),
            "starts_on": starts_on.date(),
            "ends_on": ends_on.date(),
        }
    )
    application = bootstrap.open_application(settings)
    try:
        campaign_id = application.open_campaign(command, actor)
    except errors.DomainError as exc:
        raise RosterUsageError(exc.message) from None
    finally:
        application.close()
    click.echo(str(campaign_id))


@screening.command("coverage", help="A campaign's coverage per village and grid (counts only).")
@click.option("--campaign", "campaign_id", type=click.UUID, required=True)
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@_TOKEN_FILE
def coverage_command(campaign_id: UUID, as_json: bool, token_file: Path) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    actor = _actor(settings, token_file)
    application = bootstrap.open_application(settings)
    try:
        try:
            found = application.campaign(campaign_id, actor)
        except errors.DomainError as exc:
            raise RosterUsageError(exc.message) from None
        if not may_see_counts(actor, found.street):
            # Recorded before the answer, as over HTTP (issue 15).
            application.record_command_refusal(
                actor, "campaign_coverage", None, "roster_not_permitted"
            )
            raise RosterUsageError(
                "a campaign's coverage is for the street's coordinator and supervisor"
            )
        readmodels = bootstrap.open_read_models(settings, application)
        try:
            readmodels.follower("screening").catch_up()
            campaign = coverage.CampaignInfo(
                campaign_id=str(found.id),
                street=found.street,
                name=found.name,
                villages=tuple(found.villages),
                starts_on=found.starts_on,
                ends_on=found.ends_on,
            )
            with readmodels.screening.reading() as db:
                figures = coverage.campaign_coverage(db, campaign)
        finally:
            readmodels.close()
    finally:
        application.close()
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    click.echo(f"{found.name} ({found.starts_on} – {found.ends_on})")
    click.echo("村(社区)\t网格\t底数\t已走访\t重点学生\t重点已走访\t未走访\t应签责任书\t已签")
    for line in [figures["total"], *figures["lines"]]:
        click.echo(
            "\t".join(
                str(v)
                for v in (
                    line["village"] or "合计",
                    line["grid"] if line["grid"] is not None else "",
                    line["minors"],
                    line["visited"],
                    line["key_students"],
                    line["key_visited"],
                    line["not_visited"],
                    line["needs_letter"],
                    line["letters"],
                )
            )
        )
