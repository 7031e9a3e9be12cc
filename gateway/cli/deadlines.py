"""`casetrail deadlines ...`: missed deadlines recorded as facts (registered in
`gateway.cli.main`; the rules are `domain.deadlines`, the scan `gateway.messaging.scheduler`).

    casetrail deadlines scan [--now ISO] [--json]   store the facts due now (or at --now), once

The relay scans by itself every minute; this command is for an operator (or cron) who wants a
scan now, or one at a given instant (`--now`, an ISO 8601 instant with its offset). Running it
twice, from two shells at once, or again after it was killed mid-way stores each fact once
(`tests/messaging/test_deadlines.py`). It prints counts by kind, never a case's content.
Failures are one line on stderr and exit 2.
"""

from __future__ import annotations

import json
from datetime import datetime

import click
from eventsourcing.persistence import PersistenceError

from domain.commands import EARLIEST_DATE, LATEST_DATE
from domain.deadlines import FACTS
from gateway import bootstrap, logs
from gateway.messaging.scheduler import DeadlineScheduler
from gateway.settings import Settings


class DeadlineProblem(click.ClickException):
    exit_code = 2


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise DeadlineProblem(
            "--now must be an ISO 8601 instant, e.g. 2026-12-01T08:00:00+08:00"
        ) from None
    if found.tzinfo is None:
        raise DeadlineProblem("--now needs its offset, e.g. 2026-12-01T08:00:00+08:00")
    if not EARLIEST_DATE <= found.date() <= LATEST_DATE:
        # As every date the service takes: the rules count quarters up to it.
        raise DeadlineProblem(
            f"--now must lie between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"
        )
    return found


@click.group(help="Missed deadlines, recorded as facts (docs: domain/deadlines.py).")
def deadlines() -> None:
    pass


@deadlines.command("scan", help="Store the deadline facts due now (or at --now), each once.")
@click.option("--now", "now_text", help="the instant to judge at (ISO 8601 with offset)")
@click.option("--json", "as_json", is_flag=True, help="counts as JSON")
def scan(now_text: str | None, as_json: bool) -> None:
    now = _instant(now_text)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = bootstrap.open_application(settings)
    try:
        stored = DeadlineScheduler(application).scan(now)
    except PersistenceError as exc:
        raise DeadlineProblem(
            f"the store failed: {type(exc).__name__}; check that the database is reachable, "
            "then run the command again (no fact is stored twice)"
        ) from None
    finally:
        application.close()
    counts = {kind.__name__: 0 for kind in FACTS}
    for fact in stored:
        # Also LedgerSubmissionMissed (issue 17), not a case deadline of FACTS.
        counts[type(fact).__name__] = counts.get(type(fact).__name__, 0) + 1
    if as_json:
        click.echo(json.dumps({"stored": len(stored), "by_kind": counts}))
        return
    detail = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    click.echo(f"{len(stored)} fact(s) stored" + (f": {detail}" if detail else ""))
