"""SQLite maintenance does not make `casetrail verify` report tampering (issue 21).

An event's position is its SQLite rowid, which SQLite says VACUUM *may* renumber in a table
without an INTEGER PRIMARY KEY (`gateway.store.vacuum` says why the event table keeps them).
Here: a plain `VACUUM` on a store with signed checkpoints keeps every position, and verify
passes against a unit's checkpoint file; the event table's own layout keeps rowids across gaps
(which a never-deleting store does not even have), while the same check catches the renumbering
SQLite does in a table without an index (so the check can fail); `casetrail store vacuum` says
what it kept, and refuses a PostgreSQL store in one line.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from gateway import keyring
from gateway.bootstrap import open_unkeyed
from gateway.evidence.verification import check_held, verify_store
from gateway.settings import Settings
from gateway.store.vacuum import positions
from tests.evidence.helpers import cli, populate, write_checkpoints

EVENTS = "stored_events"


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": f"sqlite:///{home / 'casetrail.sqlite'}",
        }
    )


def _store(settings: Settings) -> Path:
    return Path(settings.database_url.removeprefix("sqlite:///"))


def test_vacuum_keeps_positions_and_verify_passes(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    signed = populate(sqlite_settings, events=30, checkpoint_every=10)
    unit_file = write_checkpoints(tmp_path / "unit.json", signed)
    path = _store(sqlite_settings)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        before = positions(db, EVENTS)
        db.execute("VACUUM")  # what an operator would type in sqlite3
        assert positions(db, EVENTS) == before
    verified = cli(sqlite_settings, "verify", "--checkpoint", str(unit_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("intact"), verified.stdout

    vacuumed = cli(sqlite_settings, "store", "vacuum")
    assert vacuumed.returncode == 0, vacuumed.stderr
    assert f"the {before.events} events (positions up to {before.last}) kept" in vacuumed.stdout
    key = keyring.load_public_key(sqlite_settings.keys_dir / keyring.SERVICE_PUB, "service key")
    assert check_held(signed, key) is None
    application = open_unkeyed(sqlite_settings)
    try:
        report = verify_store(application.recorder, key, signed)
    finally:
        application.close()
    assert report.intact and len(report.matched) == len(signed), report.summary()


def _layout_keeps_rowids(tmp_path: Path, create: str) -> tuple[list[tuple[int, str, int]], ...]:
    """Rows with rowid gaps (1, 2, 4, 5, 7, ...) in a table made by `create`, before and after
    VACUUM."""
    with closing(sqlite3.connect(tmp_path / "layout.sqlite", isolation_level=None)) as db:
        db.execute(create)
        db.execute("BEGIN")
        for n in range(1, 301):
            db.execute(
                f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, state) "
                "VALUES (?, ?, 't', randomblob(200))",
                (f"s{n % 17}", n),
            )
        db.execute(f"DELETE FROM {EVENTS} WHERE rowid % 3 = 0")
        db.execute("COMMIT")
        query = f"SELECT rowid, originator_id, originator_version FROM {EVENTS} ORDER BY rowid"
        before = db.execute(query).fetchall()
        digest = positions(db, EVENTS)
        db.execute("VACUUM")
        after = db.execute(query).fetchall()
        assert (positions(db, EVENTS) == digest) == (after == before)
    return before, after


def test_the_event_tables_layout_keeps_rowids_across_gaps(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    populate(sqlite_settings, events=2)
    with closing(sqlite3.connect(_store(sqlite_settings))) as db:
        (create,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (EVENTS,)
        ).fetchone()
    (tmp_path / "layout").mkdir()
    before, after = _layout_keeps_rowids(tmp_path / "layout", create)
    assert [row[0] for row in before][:4] == [1, 2, 4, 5]
    assert after == before


def test_the_check_catches_a_renumbering(tmp_path: Path) -> None:
    # Without an index SQLite does renumber: the positions' hash sees it.
    no_index = (
        f"CREATE TABLE {EVENTS} (originator_id TEXT, originator_version INTEGER, topic TEXT, "
        "state BLOB)"
    )
    before, after = _layout_keeps_rowids(tmp_path, no_index)
    assert after != before
    assert [row[0] for row in after][:4] == [1, 2, 3, 4]


def test_store_vacuum_on_postgresql_is_one_line(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "CASETRAIL_HOME": str(tmp_path),
            "CASETRAIL_DATABASE_URL": "postgresql://casetrail@127.0.0.1:1/casetrail?schema=s",
        }
    )
    result = cli(settings, "store", "vacuum")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "autovacuum" in lines[0], result.stderr
