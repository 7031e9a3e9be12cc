"""A store written before data keys (issue 19) opens, reads, verifies and migrates: its events
keep the service's key (format 1, never rewritten); a new event of an old case file, and every
event of a new one, is sealed under the file's own data key (format 2); `casetrail verify` passes
before and after; erasing an old file makes its old events unreadable through the service too
(they still open with the service's key, so the service refuses them: `BoundMapper`), while the
other old files still read.

The store is `tests/fixtures/store_v1/` (written by the main before issue 12), copied per test."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.retention import DataErased, KeyScope
from domain.taxonomy import Purpose, RiskLevel, Role
from gateway.store.eventstore import store_environment
from tests.architecture.test_stored_topics import (
    COORDINATOR,
    FIXTURE_HOME,
    case_ids_in,
    casetrail,
)
from tests.integration.planted import planted_case

ROOT = Path(__file__).resolve().parents[2]
REPORTER = Actor("user-1", Role.REPORTER, "dongshan-village", "chengguan-street")


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(FIXTURE_HOME, home)
    return home


def _open(home: Path) -> CaseTrail:
    key = (home / "keys" / "event.key").read_text(encoding="utf-8").strip()
    return CaseTrail(env=store_environment(f"sqlite:///{home / 'casetrail.sqlite'}", [key]))


def _formats(home: Path, stream: UUID) -> list[int]:
    with sqlite3.connect(home / "casetrail.sqlite") as db:
        rows = db.execute(
            "SELECT state FROM stored_events WHERE originator_id = ? ORDER BY originator_version",
            (stream.hex,),
        ).fetchall()
    return [bytes(r[0])[0] for r in rows]


def _all_rows(home: Path) -> list[tuple[str, int, bytes]]:
    with sqlite3.connect(home / "casetrail.sqlite") as db:
        return [
            (str(a), int(b), bytes(c))
            for a, b, c in db.execute(
                "SELECT originator_id, originator_version, state FROM stored_events"
            )
        ]


def test_an_old_store_migrates_without_rewriting_a_row(old_home: Path) -> None:
    before = _all_rows(old_home)
    assert before and {state[0] for _, _, state in before} == {1}

    application = _open(old_home)
    try:
        old_ids = case_ids_in(application)
        open_case = next(c for c in old_ids if not application.repository.get(c).is_closed)
        old_version: int = application.repository.get(open_case).version
        application.change_case(
            open_case,
            COORDINATOR,
            "assess_risk",
            lambda c: c.assess_risk(
                cmd.AssessRisk(level=RiskLevel.HIGH, reason="迁移后的评估"),
                by=COORDINATOR.as_record(),
            ),
        )
        new_case = application.report_clue(
            cmd.ReportClue.model_validate(planted_case().body), REPORTER
        )
        # Old and new events of the old file read together; the new file reads.
        migrated: Case = application.repository.get(open_case)
        assert migrated.version == old_version + 1
        assert migrated.risk == RiskLevel.HIGH
        answer = application.read_case(new_case, REPORTER, Purpose.FOLLOW_UP, "req-new")
        assert answer["id"] == str(new_case)
    finally:
        application.close()

    # Not one stored row changed; the old file's new event and the new file are format 2.
    after = _all_rows(old_home)
    assert set(before) <= set(after)
    assert _formats(old_home, open_case) == [1] * old_version + [2]
    assert set(_formats(old_home, new_case)) == {2}

    result = casetrail(old_home, ROOT, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("intact:"), result.stdout


def test_erasing_an_old_file_refuses_its_old_events_too(old_home: Path) -> None:
    application = _open(old_home)
    try:
        old_ids = case_ids_in(application)
        erased, kept = old_ids[0], old_ids[1]
        fact = application.erase(
            erased,
            scope=KeyScope.CASE,
            rule="retention",
            basis="test",
            due_on=None,
            by={"user_id": "retention-test"},
        )
        assert fact.key_id and application.erasure_of(erased) is not None
        with pytest.raises(DataErased):
            application.repository.get(erased)
        with pytest.raises(DataErased):
            application.read_case(erased, COORDINATOR, Purpose.CONSULTATION, "req-erased")
        assert application.read_case(kept, COORDINATOR, Purpose.CONSULTATION, "req-kept")["id"]
    finally:
        application.close()
    # Another process (a fresh cache) refuses them as well.
    again = _open(old_home)
    try:
        with pytest.raises(DataErased):
            again.repository.get(erased)
    finally:
        again.close()
    result = casetrail(old_home, ROOT, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
