"""`casetrail retention ...`: what is due for erasure, erasing it, and legal holds (issue 19;
the rules are `domain.retention`, the holds `domain.retention_holds`, README "Retention").

    casetrail retention status [--json] [--today YYYY-MM-DD]   closed files and roster entries
    casetrail retention apply [--dry-run] [--json]             erase what is due today, unheld
    casetrail retention hold --case ID --reason TEXT           an explicit hold on a file
    casetrail retention release HOLD_ID --reason TEXT          release it

Run on the server by its operator (the store is opened directly): each erasure and each hold
is recorded with the operator's OS account (`cli:<login>`, as `casetrail user ...`). `apply`
judges today in the street office's calendar (Beijing), never a given day: `--today` is only
for `status`, to see what a later day will bring. The relay under `casetrail serve` runs `apply`
once a day by itself (`CASETRAIL_RETENTION_RUN`). Nothing printed names a minor: ids, streets,
dates, states and hold reasons. Failures are one line on stderr and exit 2. Proven by
tests/retention/test_apply.py and tests/retention/test_holds.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any
from uuid import UUID

import click
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError

from domain.application import CaseTrail
from domain.clock import local_today
from domain.errors import DomainError
from domain.retention_holds import PlaceHold, ReleaseHold
from gateway import bootstrap, logs
from gateway.cli.users import operator
from gateway.settings import Settings


class RetentionProblem(click.ClickException):
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
        raise RetentionProblem(f"{where}{exc.message}") from None
    except PersistenceError as exc:
        raise RetentionProblem(
            f"the store failed: {type(exc).__name__}; check that the database is reachable, "
            "then run the command again (nothing is erased twice)"
        ) from None
    finally:
        application.close()


def _reason(make: type[PlaceHold] | type[ReleaseHold], **values: Any) -> Any:
    try:
        return make.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise RetentionProblem(f"--{where.replace('_', '-')}: {first.get('msg')}") from None


@click.group(help="Retention and erasure of closed files (README: Retention).")
def retention() -> None:
    pass


def _line(row: dict[str, Any]) -> str:
    held = ",".join(row["held"]) or "-"
    return (
        f"{row['kind']:<5} {row['stream_id']} street={row['street'] or '-'} "
        f"closed={row['closed_on'] or '-'} due={row['due_on'] or '-'} "
        f"state={row['state']} held={held}"
    )


@retention.command("status", help="Closed files and roster entries: kept, due, held or erased.")
@click.option("--json", "as_json", is_flag=True, help="the rows as JSON")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="judge on this day instead of today (only to look ahead; apply always uses today)",
)
def status(as_json: bool, today: Any) -> None:
    day: date = today.date() if today is not None else local_today()
    with _opened() as application:
        rows = application.retention_status(day)
        basis = application.retention_rules.basis()
    if as_json:
        click.echo(json.dumps({"today": day.isoformat(), "rule": basis, "items": rows}))
        return
    for row in rows:
        click.echo(_line(row))
    counts = {s: sum(r["state"] == s for r in rows) for s in ("kept", "due", "held", "erased")}
    click.echo(
        f"{day.isoformat()} ({basis}): " + ", ".join(f"{n} {state}" for state, n in counts.items())
    )


@retention.command("apply", help="Erase the files due today and not held (crypto-shredding).")
@click.option("--dry-run", is_flag=True, help="say what would be erased; erase nothing")
@click.option("--json", "as_json", is_flag=True, help="the outcomes as JSON")
def apply(dry_run: bool, as_json: bool) -> None:
    day = local_today()
    with _opened() as application:
        outcomes = application.apply_retention(day, operator(), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"today": day.isoformat(), "dry_run": dry_run, "items": outcomes}))
        return
    for found in outcomes:
        click.echo(f"{found['outcome']:<14} {found['kind']:<5} {found['stream_id']}")
    tally: dict[str, int] = {}
    for found in outcomes:
        tally[found["outcome"]] = tally.get(found["outcome"], 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.items()))
    click.echo(f"{day.isoformat()}: {summary or 'nothing due'}")


@retention.command("hold", help="Place an explicit hold on a file (and every file of its minor).")
@click.option("--case", "case_id", required=True, type=click.UUID, help="the case file's id")
@click.option("--reason", required=True, help="why (recorded with the hold)")
def hold(case_id: UUID, reason: str) -> None:
    command = _reason(PlaceHold, case_id=case_id, reason=reason)
    with _opened() as application:
        placed = application.place_hold_by_operator(command, operator())
    click.echo(f"hold {placed.id} placed on case {case_id}")


@retention.command("release", help="Release an explicit hold.")
@click.argument("hold_id", type=click.UUID)
@click.option("--reason", required=True, help="why (recorded with the release)")
def release(hold_id: UUID, reason: str) -> None:
    command = _reason(ReleaseHold, reason=reason)
    with _opened() as application:
        released = application.release_hold_by_operator(hold_id, command, operator())
    click.echo(f"hold {released.id} released")
