"""`casetrail compliance ...`: the compliance rules over every access (issue 15; registered in
`gateway.cli.main`; the rules are `domain.compliance.rules`, the evaluator
`gateway.compliance.evaluator`, the table for people docs/compliance.md).

    casetrail compliance rules [--json]                the rules, their ids and thresholds
    casetrail compliance evaluate [--now ISO] [--json] follow the log, store the findings owed
    casetrail compliance rerun [--rule ID]... [--by USER] [--json]
                                                       re-run over the whole history (after a
                                                       threshold changed): new findings stored,
                                                       open ones no longer raised superseded
    casetrail compliance findings [--rule ID] [--status S] [--unit U] [--json]
                                                       list findings (ids, codes, counts)

The relay evaluates by itself every minute; these are for an operator. Running any of them
twice, or again after it was killed, stores each finding once. Output holds ids, codes and
counts, never a case's content. Failures are one line on stderr and exit 2.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from eventsourcing.persistence import PersistenceError

from domain.compliance.config import RulesConfigError
from domain.compliance.findings import FindingFilter, FindingStatus
from domain.compliance.rules import RULES
from gateway import bootstrap, logs
from gateway.compliance.config import load_rules
from gateway.compliance.evaluator import ComplianceEvaluator
from gateway.settings import Settings


class ComplianceProblem(click.ClickException):
    exit_code = 2


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ComplianceProblem(
            "--now must be an ISO 8601 instant, e.g. 2026-12-01T08:00:00+08:00"
        ) from None
    if found.tzinfo is None:
        raise ComplianceProblem("--now needs its offset, e.g. 2026-12-01T08:00:00+08:00")
    return found


def _store_failed(exc: Exception) -> ComplianceProblem:
    return ComplianceProblem(
        f"the store failed: {type(exc).__name__}; check that the database is reachable, then "
        "run the command again (no finding is stored twice)"
    )


@click.group(help="Compliance rules over every access, and their findings (docs/compliance.md).")
def compliance() -> None:
    pass


@compliance.command("rules", help="The rules: id, description (中文 / English), thresholds.")
@click.option("--json", "as_json", is_flag=True)
def rules_command(as_json: bool) -> None:
    settings = Settings.from_env()
    try:
        config = load_rules(settings.compliance_rules)
    except RulesConfigError as exc:
        raise ComplianceProblem(str(exc)) from None
    values = config.as_mapping()
    table = [
        {
            "id": rule.id,
            "zh": rule.zh,
            "en": rule.en,
            "enabled": rule.id in config.enabled,
            "thresholds": values[rule.id],
        }
        for rule in RULES.values()
    ]
    if as_json:
        click.echo(
            json.dumps({"config_digest": config.digest(), "rules": table}, ensure_ascii=False)
        )
        return
    for row in table:
        mark = "" if row["enabled"] else " (disabled)"
        click.echo(f"{row['id']}{mark}: {row['zh']} / {row['en']}; {row['thresholds']}")


@compliance.command("evaluate", help="Follow the log and store the findings owed, each once.")
@click.option("--now", "now_text", help="the instant to settle windows at (ISO 8601 with offset)")
@click.option("--json", "as_json", is_flag=True)
def evaluate(now_text: str | None, as_json: bool) -> None:
    now = _instant(now_text)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = bootstrap.open_application(settings)
    try:
        stored = ComplianceEvaluator(application).step(now)
    except PersistenceError as exc:
        raise _store_failed(exc) from None
    except RulesConfigError as exc:
        raise ComplianceProblem(str(exc)) from None
    finally:
        application.close()
    counts: dict[str, int] = {}
    for finding in stored:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    if as_json:
        click.echo(json.dumps({"stored": len(stored), "by_rule": counts}))
        return
    detail = ", ".join(f"{n} {rule}" for rule, n in sorted(counts.items()))
    click.echo(f"{len(stored)} finding(s) stored" + (f": {detail}" if detail else ""))


@compliance.command(
    "rerun", help="Re-run rules over the whole history (after a threshold changed)."
)
@click.option("--rule", "rules", multiple=True, type=click.Choice(list(RULES)),
              help="a rule to re-run (repeatable; default: all)")  # fmt: skip
@click.option("--by", default="cli", show_default=True, help="who re-runs (recorded)")
@click.option("--now", "now_text", help="the instant to settle windows at (ISO 8601 with offset)")
@click.option("--json", "as_json", is_flag=True)
def rerun(rules: tuple[str, ...], by: str, now_text: str | None, as_json: bool) -> None:
    now = _instant(now_text)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = bootstrap.open_application(settings)
    try:
        result = ComplianceEvaluator(application).rerun(
            rules or None, {"user": by, "role": "cli"}, now
        )
    except PersistenceError as exc:
        raise _store_failed(exc) from None
    except RulesConfigError as exc:
        raise ComplianceProblem(str(exc)) from None
    finally:
        application.close()
    found: dict[str, Any] = {
        "produced": result.produced,
        "stored": result.stored,
        "superseded": result.superseded,
        "config_digest": result.config_digest,
    }
    if as_json:
        click.echo(json.dumps(found))
        return
    click.echo(
        f"re-run with configuration {result.config_digest[:12]}: {result.produced} finding(s) "
        f"produced, {result.stored} new stored, {result.superseded} superseded"
    )


@compliance.command("findings", help="List findings (ids, rules, statuses, counts).")
@click.option("--rule", type=click.Choice(list(RULES)))
@click.option("--status", type=click.Choice([str(s) for s in FindingStatus]))
@click.option("--unit")
@click.option("--json", "as_json", is_flag=True)
def findings(rule: str | None, status: str | None, unit: str | None, as_json: bool) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = bootstrap.open_application(settings)
    try:
        where = FindingFilter(
            rule=rule, status=FindingStatus(status) if status else None, unit=unit
        )
        found = application.findings(where)
    except PersistenceError as exc:
        raise _store_failed(exc) from None
    finally:
        application.close()
    if as_json:
        click.echo(json.dumps({"items": [f.as_json() for f in found]}, ensure_ascii=False))
        return
    for f in found:
        click.echo(f"{f.id} {f.rule} {f.status} unit={f.unit} evidence={len(f.evidence)}")
    click.echo(f"{len(found)} finding(s)")
