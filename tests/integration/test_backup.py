"""`casetrail backup` while the service writes, `casetrail restore` into an empty store, then
`casetrail verify` against a unit's checkpoint file and the read models rebuilt from the restored
events equal to the source's at the backup's position (issue 21; SQLite and PostgreSQL).

The source is written by this process (the application and the Merkle log, as an API worker and
the followers would); `backup`, `restore` and `verify` are the real command in processes of
their own. A PostgreSQL restore goes into a new database under the same schema name (a dump
names its schema: `gateway.store.backup`), dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest

from domain.application import CaseTrail
from gateway import keyring
from gateway.bootstrap import open_application, open_evidence, readmodel_config
from gateway.settings import Settings
from gateway.store.backup import read_manifest
from projections.evidence.checkpoints import checkpoints_document
from projections.readmodels import VIEW_NAMES, ReadModels
from tests.conftest import PG_DSN
from tests.evidence.helpers import populate
from tests.projections.workload import Workload

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))


def _cli(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    environ |= {
        "CASETRAIL_HOME": str(home),
        "CASETRAIL_DATABASE_URL": url,
        "CASETRAIL_LOG_LEVEL": "warning",
    }
    return subprocess.run(
        [CASETRAIL, *args], env=environ, capture_output=True, text=True, timeout=300, check=False
    )


def _one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("casetrail: error: "), result.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture
def target_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty store to restore into: a new SQLite file, or a new PostgreSQL database with a
    schema of the source's name (created by the restore)."""
    if store_url.startswith("sqlite:///"):
        yield f"sqlite:///{tmp_path / 'restored' / 'casetrail.sqlite'}"
        return
    schema = urlparse(store_url).query.removeprefix("schema=")
    database = f"ct_restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    try:
        yield f"{urlparse(PG_DSN)._replace(path='/' + database).geturl()}?schema={schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {database} WITH (FORCE)")


def _tables(readmodels: ReadModels) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: recorder.dump(table)
        for recorder in readmodels.recorders.values()
        for table in recorder.view.tables
    }


def _rows(application: CaseTrail, upto: int) -> list[tuple[Any, ...]]:
    found = application.recorder.select_notifications(start=1, limit=upto + 1, stop=upto)
    return [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in found]


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def test_a_backup_under_load_restores_verifies_and_rebuilds_the_same_read_models(
    settings: Settings, target_url: str, tmp_path: Path
) -> None:
    application = open_application(settings)
    evidence = open_evidence(settings, application)
    workload = Workload(application, seed=21)
    workload.cases(6)

    def head() -> int:
        return application.recorder.max_notification_id() or 0

    unit_file = tmp_path / "unit-checkpoints.json"
    stop, errors = threading.Event(), list[BaseException]()

    def load() -> None:
        try:
            while not stop.is_set():
                workload.cases(1)
                evidence.catch_up()  # the Merkle log follows, as the service's follower does
                time.sleep(0.05)  # a steady load, not a flood: the restore has it all to read
        except BaseException as exc:  # reported below
            errors.append(exc)

    writer = threading.Thread(target=load)
    backup = tmp_path / "casetrail.backup"
    writer.start()
    try:
        # What a unit holds: a checkpoint signed before the backup, while writes go on.
        unit_file.write_text(json.dumps(checkpoints_document([evidence.checkpoint_now()])))
        before = head()
        result = _cli(settings.home, settings.database_url, "backup", "--out", str(backup))
        assert result.returncode == 0, result.stderr
        manifest = read_manifest(backup)
        _wait(lambda: head() > manifest.position, 60, "writes after the backup")
    finally:
        stop.set()
        writer.join(60)
    assert not errors, errors
    # Written to while it was taken: events before its start, in it, and after it.
    assert before < manifest.position < head(), (before, manifest.position, head())
    assert "the keys" in result.stdout and "event.key" in result.stdout
    assert oct(backup.stat().st_mode & 0o777) == oct(0o600)
    later = evidence.checkpoint_now()  # signed after the backup: it covers events it lacks
    later_file = tmp_path / "later-checkpoint.json"
    later_file.write_text(json.dumps(checkpoints_document([later])))

    restored_home = tmp_path / "restored"
    shutil.copytree(settings.keys_dir, restored_home / "keys")  # keys come from their own backup
    restored = _cli(restored_home, target_url, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "read models rebuilt" in restored.stdout, restored.stdout

    verified = _cli(restored_home, target_url, "verify", "--checkpoint", str(unit_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("intact"), verified.stdout
    # A checkpoint signed after the backup names what the restore lacks.
    lacking = _cli(restored_home, target_url, "verify", "--checkpoint", str(later_file))
    assert lacking.returncode == 1, lacking.stdout + lacking.stderr
    missing = f"covers {later.size} events and the store holds only {manifest.events}"
    assert missing in lacking.stdout, lacking.stdout

    if not target_url.startswith("sqlite:"):
        # The planner's statistics are made by the restore (pg_restore brings none).
        schema = urlparse(target_url).query.removeprefix("schema=")
        with psycopg.connect(target_url.partition("?")[0]) as conn:
            analysed = conn.execute(
                "SELECT count(*) FROM pg_stats WHERE schemaname = %s AND tablename = %s",
                (schema, manifest.events_table),
            ).fetchone()
        assert analysed is not None and analysed[0] > 0, "the restored events were not analysed"

    # Into an empty store only: a second restore is refused, one line, nothing changed.
    again = _cli(restored_home, target_url, "restore", str(backup))
    _one_line_error(again, "already holds")

    restored_settings = Settings.from_env(
        {"CASETRAIL_HOME": str(restored_home), "CASETRAIL_DATABASE_URL": target_url}
    )
    copy = open_application(restored_settings)
    try:
        assert copy.recorder.max_notification_id() == manifest.position
        # Every event as it was stored: position, stream, version, topic, ciphertext.
        assert _rows(copy, manifest.position) == _rows(application, manifest.position)
        # The read models the restore rebuilt equal the source's rebuilt up to the backup.
        source_models = ReadModels(
            application, readmodel_config(settings), horizon=lambda _p: manifest.position
        )
        restored_models = ReadModels(copy, readmodel_config(restored_settings))
        try:
            for name in VIEW_NAMES:
                source_models.rebuild(name)
                assert restored_models.follower(name).position() == manifest.position
            expected, found = _tables(source_models), _tables(restored_models)
            assert expected["ledger_cases"], "the ledger is empty: nothing was compared"
            for table, rows in expected.items():
                assert found[table] == rows, f"{table} differs after the restore"
        finally:
            source_models.close()
            restored_models.close()
    finally:
        copy.close()
        evidence.close()
        application.close()


def test_restore_refuses_what_it_cannot_restore_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    url = f"sqlite:///{home / 'casetrail.sqlite'}"
    settings = Settings.from_env({"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": url})
    populate(settings, events=6, checkpoint_every=6)
    backup = tmp_path / "store.backup"
    assert _cli(home, url, "backup", "--out", str(backup)).returncode == 0
    # Nothing is overwritten.
    _one_line_error(_cli(home, url, "backup", "--out", str(backup)), "exists already")
    # Not a backup; no such file.
    _one_line_error(_cli(home, url, "restore", "/etc/hostname"), "not a casetrail backup")
    _one_line_error(_cli(home, url, "restore", str(tmp_path / "none")), "no backup at")
    # A store of another kind.
    other = tmp_path / "other"
    pg = "postgresql://casetrail@127.0.0.1:1/casetrail?schema=s"
    _one_line_error(_cli(other, pg, "restore", str(backup)), "is of a sqlite store")
    # Keys that cannot open the events: restored, but said so, non-zero.
    keyring.init_keys(other / "keys")
    wrong = _cli(other, f"sqlite:///{other / 'casetrail.sqlite'}", "restore", str(backup))
    _one_line_error(wrong, "do not open events written with key id")
