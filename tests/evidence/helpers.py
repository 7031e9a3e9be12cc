"""Shared by the evidence tests: a populated store, the real CLI as a subprocess, and the
tampering an operator with database rights could do (triggers dropped first)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.taxonomy import Purpose, Role
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.settings import Settings
from gateway.store.eventstore import store_environment
from gateway.store.guard import EVIDENCE_TABLES
from projections.evidence.checkpoints import Checkpoint, checkpoints_document
from projections.evidence.log import close_recorder, merkle_follower
from tests.conftest import PG_DSN
from tests.integration.planted import planted_case

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))
REPORTER = Actor("user-r1", Role.REPORTER, "dongshan-village", "chengguan-street")


def populate(settings: Settings, events: int = 24, checkpoint_every: int = 6) -> list[Checkpoint]:
    """About `events` events through the real application (reports and audited reads), with a
    checkpoint signed every `checkpoint_every` events. Returns the checkpoints, oldest first."""
    application = open_application(settings)
    key = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    evidence = Evidence(application, key, EvidenceSettings())
    signed: list[Checkpoint] = []
    try:
        stored = 0
        while stored < events:
            case_id = application.report_clue(
                cmd.ReportClue.model_validate(planted_case().body), REPORTER
            )
            application.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-populate")
            stored += 2
            if stored % checkpoint_every == 0:
                signed.append(evidence.checkpoint_now())
        last = evidence.checkpoint_now()
        if not signed or last.seq != signed[-1].seq:
            signed.append(last)
    finally:
        evidence.close()
        application.close()
    return signed


def write_checkpoints(path: Path, checkpoints: list[Checkpoint]) -> Path:
    path.write_text(json.dumps(checkpoints_document(checkpoints)), encoding="utf-8")
    return path


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "CASETRAIL_HOME": str(settings.home),
        "CASETRAIL_DATABASE_URL": settings.database_url,
    }
    environ.pop("CASETRAIL_EVENT_KEY", None)
    return subprocess.run(
        [CASETRAIL, *args], env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def first_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stdout.strip().splitlines()
    return lines[0] if lines else ""


# --- tampering, directly in the database ------------------------------------------------------


class Tamper:
    """Direct SQL on the store, as its database owner or a superuser would."""

    def __init__(self, settings: Settings) -> None:
        self.sqlite = settings.store_kind == "sqlite"
        self.url = settings.database_url
        if self.sqlite:
            self.events, self.pos = "stored_events", "rowid"
            self.path = settings.database_url.removeprefix("sqlite:///")
            self.schema = ""
        else:
            self.schema = settings.database_url.rsplit("schema=", 1)[1]
            self.events, self.pos = f"{self.schema}.casetrail_events", "notification_id"

    @contextmanager
    def connection(self) -> Iterator[Any]:
        if self.sqlite:
            conn = sqlite3.connect(self.path)
            try:
                yield conn
                conn.commit()
            finally:
                conn.close()
        else:
            with psycopg.connect(PG_DSN, autocommit=True) as pg:
                yield pg

    def q(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    def drop_triggers(self) -> None:
        with self.connection() as conn:
            if self.sqlite:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type='trigger' "
                        "AND name LIKE 'casetrail_%'"
                    ).fetchall()
                ]
                for name in names:
                    conn.execute(f"DROP TRIGGER {name}")
            else:
                for table in ("casetrail_events", *EVIDENCE_TABLES):
                    for trigger in ("casetrail_append_only", "casetrail_no_truncate"):
                        conn.execute(f"DROP TRIGGER {trigger} ON {self.schema}.{table}")

    def count(self) -> int:
        with self.connection() as conn:
            (n,) = conn.execute(f"SELECT COUNT(*) FROM {self.events}").fetchone()
        return int(n)

    def modify(self, position: int) -> None:
        """Flip one bit of one stored event's encrypted state."""
        with self.connection() as conn:
            (state,) = conn.execute(
                self.q(f"SELECT state FROM {self.events} WHERE {self.pos}=?"), (position,)
            ).fetchone()
            changed = bytearray(state)
            changed[-1] ^= 0x01
            conn.execute(
                self.q(f"UPDATE {self.events} SET state=? WHERE {self.pos}=?"),
                (bytes(changed), position),
            )

    def delete(self, position: int) -> None:
        with self.connection() as conn:
            conn.execute(self.q(f"DELETE FROM {self.events} WHERE {self.pos}=?"), (position,))

    def shift(self, start: int, by: int) -> None:
        """Renumber every event from `start` on by `by` (to open or close a gap)."""
        with self.connection() as conn:
            conn.execute(
                self.q(
                    f"UPDATE {self.events} SET {self.pos} = {self.pos} + 1000000 "
                    f"WHERE {self.pos} >= ?"
                ),
                (start,),
            )
            conn.execute(
                f"UPDATE {self.events} SET {self.pos} = {self.pos} - 1000000 + ({by}) "
                f"WHERE {self.pos} >= 1000000"
            )

    def insert(self, position: int) -> None:
        """A forged event slipped in at `position`, the later ones renumbered to make room."""
        self.shift(position, 1)
        with self.connection() as conn:
            (topic,) = conn.execute(
                self.q(f"SELECT topic FROM {self.events} WHERE {self.pos}=?"), (position + 1,)
            ).fetchone()
            stream = uuid.uuid4()
            conn.execute(
                self.q(
                    f"INSERT INTO {self.events} "
                    f"(originator_id, originator_version, topic, state, {self.pos}) "
                    "VALUES (?, 1, ?, ?, ?)"
                ),
                (stream.hex if self.sqlite else stream, topic, os.urandom(120), position),
            )

    def swap(self, a: int, b: int) -> None:
        with self.connection() as conn:
            for old, new in ((a, -1), (b, a), (-1, b)):
                conn.execute(
                    self.q(f"UPDATE {self.events} SET {self.pos}=? WHERE {self.pos}=?"),
                    (new, old),
                )

    def truncate_tail(self, keep: int) -> None:
        with self.connection() as conn:
            conn.execute(self.q(f"DELETE FROM {self.events} WHERE {self.pos} > ?"), (keep,))

    def forget_checkpoints(self) -> None:
        with self.connection() as conn:
            conn.execute(f"DELETE FROM {self.prefix}casetrail_checkpoints")

    @property
    def prefix(self) -> str:
        return "" if self.sqlite else f"{self.schema}."

    def recompute_tree(self) -> None:
        """Rebuild the Merkle log over the store as it now is: what an attacker with the code
        and the database would do to hide a rewrite."""
        application = CaseTrail(env=store_environment(self.url, None))
        follower = merkle_follower(application)
        try:
            follower.rebuild()
        finally:
            close_recorder(follower.recorder)
            application.close()
