"""Applying retention (issue 19): the files due and not held are erased (their data keys
destroyed), then the minors' roster entries whose files are all gone or due; twice is the same
as once; a run stopped between the fact and the key's destruction is completed by the next;
the command line and the scheduled run in the relay; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

import pytest

from domain.application import CaseTrail
from domain.clock import local_today
from domain.quarters import LOCAL_TZ
from domain.retention import DataKeyDestroyed, KeyScope, data_key_destroyed
from domain.roster import RosterMinor, roster_entry_id
from gateway import logs
from gateway.bootstrap import open_application, open_relay
from gateway.cli.main import main
from gateway.messaging.retention_run import RUN_BY, RetentionRun
from gateway.settings import Settings
from tests.domain.builders import COORDINATOR, STREET, VILLAGE, report_body
from tests.retention.retention_world import (
    OPERATOR,
    at,
    closed_file,
    open_file,
    row_of,
    same_minor,
)

TODAY = date(2026, 12, 2)
BORN = date(2005, 3, 1)


@pytest.fixture
def app(settings: Settings) -> Iterator[CaseTrail]:
    found = open_application(settings)
    try:
        yield found
    finally:
        found.close()


def list_on_roster(app: CaseTrail, case_id: UUID, *, on: date) -> UUID:
    """The minor of `case_id` listed on the roster of the street (as an import would)."""
    case: Any = app.repository.get(case_id)
    with at(on):
        minor = RosterMinor.model_validate(dict(case.minor))
        app.import_roster(
            [(2, minor, f"index-of-{case_id}")],
            village=VILLAGE,
            actor=COORDINATOR,
            source={"file_sha256": "0" * 64, "channel": "test"},
            rejected_rows=0,
            store_valid=False,
        )
    return roster_entry_id(STREET, f"index-of-{case_id}")


def erasures(app: CaseTrail) -> list[DataKeyDestroyed]:
    return list(app.erasures().values())


def test_due_files_then_roster_entries_are_erased_once(app: CaseTrail) -> None:
    due = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
    entry = list_on_roster(app, due, on=date(2020, 5, 2))
    recent = closed_file(  # closed a year ago: kept until 2028
        app, born=date(2004, 1, 1), found_on=date(2021, 5, 1), closed_on=date(2025, 6, 1)
    )
    young = open_file(app, report_body(found_on=date(2026, 11, 1)))  # open: not listed

    rows = app.retention_status(TODAY)
    assert row_of(rows, due)["state"] == "due"
    assert row_of(rows, due)["closed_on"] == "2020-06-01"
    assert row_of(rows, due)["due_on"] == "2026-03-01"
    assert row_of(rows, entry) | {"holds": []} == row_of(rows, entry)
    assert (row_of(rows, entry)["kind"], row_of(rows, entry)["state"]) == ("minor", "due")
    assert row_of(rows, recent)["state"] == "kept"
    assert row_of(rows, recent)["due_on"] == "2028-06-01"
    assert all(r["stream_id"] != str(young) for r in rows)

    planned = app.apply_retention(TODAY, OPERATOR, dry_run=True)
    assert [(o["stream_id"], o["outcome"]) for o in planned] == [
        (str(due), "would_erase"),
        (str(entry), "would_erase"),
    ]
    assert erasures(app) == [] and app.data_keyring.has_key(due)

    done = app.apply_retention(TODAY, OPERATOR)
    assert [(o["stream_id"], o["kind"], o["outcome"]) for o in done] == [
        (str(due), "case", "erased"),
        (str(entry), "minor", "erased"),
    ]
    facts = {f.stream_id: f for f in erasures(app)}
    assert set(facts) == {due, entry}
    assert (facts[due].rule, facts[due].due_on, facts[due].scope) == (
        "retention",
        "2026-03-01",
        "case",
    )
    assert facts[due].basis == app.retention_rules.basis()
    assert facts[due].by == OPERATOR and facts[entry].scope == "minor"
    assert not app.data_keyring.has_key(due) and not app.data_keyring.has_key(entry)
    assert app.data_keyring.has_key(recent)

    # Twice is once: nothing more is erased, no fact is stored again.
    positions = app.recorder.max_notification_id()
    assert app.apply_retention(TODAY, OPERATOR) == []
    assert app.recorder.max_notification_id() == positions
    rows = app.retention_status(TODAY)
    assert row_of(rows, due)["state"] == "erased" and row_of(rows, due)["rule"] == "retention"
    assert row_of(rows, entry)["state"] == "erased"


def test_a_roster_entry_waits_while_a_file_of_its_minor_is_kept(app: CaseTrail) -> None:
    due = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
    entry = list_on_roster(app, due, on=date(2020, 5, 2))
    open_file(app, same_minor(app, due, found_on=date(2021, 6, 1)))  # still open
    rows = app.retention_status(TODAY)
    assert row_of(rows, due)["state"] == "due"
    assert row_of(rows, entry)["state"] == "kept"
    assert [o["stream_id"] for o in app.apply_retention(TODAY, OPERATOR)] == [str(due)]
    assert app.data_keyring.has_key(entry)


def test_a_run_stopped_between_the_fact_and_the_key_is_completed(app: CaseTrail) -> None:
    due = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
    # What `erase` does up to its crash: the fact stored, the key not yet destroyed.
    key_id = app.data_keyring.key_id(due)
    assert key_id is not None
    app.save(
        data_key_destroyed(
            stream_id=due,
            scope=KeyScope.CASE,
            rule="retention",
            basis=app.retention_rules.basis(),
            due_on=date(2026, 3, 1),
            key_id=key_id,
            by=OPERATOR,
        )
    )
    assert app.data_keyring.has_key(due)
    assert [o["outcome"] for o in app.apply_retention(TODAY, OPERATOR, dry_run=True)] == [
        "would_complete"
    ]
    assert app.data_keyring.has_key(due)
    done = app.apply_retention(TODAY, OPERATOR)
    assert [(o["stream_id"], o["outcome"]) for o in done] == [(str(due), "completed")]
    assert not app.data_keyring.has_key(due)
    assert len(erasures(app)) == 1
    assert app.apply_retention(TODAY, OPERATOR) == []


def test_the_scheduled_run_applies_once_a_day_from_its_hour(app: CaseTrail) -> None:
    due = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
    run = RetentionRun(app, hour=3)
    before = datetime.combine(TODAY, time(2, 59), tzinfo=LOCAL_TZ)
    assert run.due(before) is None
    assert RetentionRun(app, hour=None).due(before.replace(hour=23)) is None
    at_hour = datetime.combine(TODAY, time(3, 0), tzinfo=LOCAL_TZ).astimezone(UTC)
    assert run.due(at_hour) == TODAY
    assert [o["outcome"] for o in run.run(TODAY)] == ["erased"]
    assert run.due(at_hour.replace(hour=20)) is None  # once that day
    assert app.erasure_of(due) is not None and app.erasure_of(due).by == RUN_BY  # type: ignore[union-attr]


# --- the command line -----------------------------------------------------------------------------


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    monkeypatch.setenv("CASETRAIL_HOME", str(settings.home))
    monkeypatch.setenv("CASETRAIL_DATABASE_URL", settings.database_url)
    configure = logs.configure
    monkeypatch.setattr(
        "gateway.logs.configure",
        lambda level="info", stream=None: configure(level, stream or sys.__stderr__),
    )

    def invoke(*args: str) -> Ran:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return invoke


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_command_line(run: Any, app: CaseTrail) -> None:
    # Due by the real today (2026-03-01 or later), as `apply` judges.
    assert local_today() >= date(2026, 3, 1)
    due = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
    other = open_file(app, same_minor(app, due, found_on=date(2021, 6, 1)))

    status = run("retention", "status", "--json")
    assert status.code == 0, status.err
    assert row_of(json.loads(status.out)["items"], due)["state"] == "due"
    ahead = run("retention", "status", "--today", "2019-01-01")
    assert ahead.code == 0 and f"case  {due}" in ahead.out and "state=kept" in ahead.out
    assert ahead.out.splitlines()[-1].startswith("2019-01-01 (closed + 3 years")

    held = run("retention", "hold", "--case", str(other), "--reason", "诉讼保全")
    assert held.code == 0, held.err
    hold_id = held.out.split()[1]
    assert run("retention", "apply", "--json").out.strip().endswith('"items": []}')
    assert app.data_keyring.has_key(due)

    for args, says in [
        (("retention", "hold", "--case", "not-a-uuid", "--reason", "x"), "not-a-uuid"),
        (("retention", "hold", "--case", str(UUID(int=5)), "--reason", "x"), "no case"),
        (("retention", "hold", "--case", str(other), "--reason", "  "), "--reason"),
        (("retention", "release", str(UUID(int=9)), "--reason", "x"), "no hold"),
    ]:
        refused = run(*args)
        assert refused.code == 2, args
        assert len(refused.err.strip().splitlines()) == 1 and says in refused.err, refused.err

    released = run("retention", "release", hold_id, "--reason", "诉讼终结")
    assert released.code == 0 and "released" in released.out
    dry = run("retention", "apply", "--dry-run")
    assert dry.code == 0 and f"would_erase    case  {due}" in dry.out
    assert app.data_keyring.has_key(due)
    applied = run("retention", "apply")
    assert applied.code == 0 and f"erased         case  {due}" in applied.out
    assert applied.out.splitlines()[-1].endswith(": 1 erased")
    fact = app.erasure_of(due)
    assert fact is not None and fact.by["user"].startswith("cli:")
    again = run("retention", "apply")
    assert again.code == 0 and again.out.strip().endswith("nothing due")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_relay_runs_it_as_the_settings_say(settings: Settings, app: CaseTrail) -> None:
    assert open_relay(settings, app).retention.hour == 3  # daily at 03:00 Beijing by default
    later = settings.model_copy(update={"retention_run_hour": 22})
    assert open_relay(later, app).retention.hour == 22
    off = settings.model_copy(update={"retention_run": "off"})
    assert open_relay(off, app).retention.hour is None
