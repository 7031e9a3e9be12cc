"""Tombstones (issue 19): after an erasure the read models hold nothing of the file, keep that it
existed and was erased, and following and rebuilding from 0 end in the same rows.

On SQLite and PostgreSQL, with real stores and the real read models: a few synthetic files are
worked through (tests/projections/workload.py), read, followed; one is erased
(`CaseTrail.erase`); then every view (ledger, reports, screening, access log, deadline duties,
compliance rules) has no row of it but its tombstone, its blind indexes find nothing, the other
files are untouched, a rebuild from 0 (with small batches, across the erased events) gives the
same rows, the investigation history shows the erasure but no content, and an erased user
record is no user any more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain.access import Actor
from domain.application import CaseTrail
from domain.clock import local_today
from domain.compliance.config import RulesConfig
from domain.deadlines import Periods
from domain.identity import make_id_number
from domain.retention import DataErased, KeyScope, RetentionRules
from domain.roster import RosterMinor, roster_entry_id
from domain.taxonomy import Purpose, Role
from domain.users import UnknownUser, user_stream_id
from gateway.cli.demo import GOVERNANCE_OFFICE, MEMBER_UNITS
from gateway.messaging.scheduler import DutiesView
from gateway.store.eventstore import new_key_text, store_environment
from projections.compliance.evaluator import RulesView
from projections.follower import AnyViewRecorder, Follower, open_datastore, view_recorder
from projections.investigation import deadlines, gather, knowledge
from projections.investigation.timeline import timeline
from projections.readmodels import ReadModelConfig, ReadModels
from tests.domain.builders import register_units
from tests.people import ensure_registered
from tests.projections.conftest import readmodel_env
from tests.projections.workload import STREET, Workload

VILLAGE = "dongshan-village"

COORDINATOR = Actor("coordinator-1", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)
BY = {"user": "retention-run", "role": "system"}


@dataclass
class World:
    application: CaseTrail
    readmodels: ReadModels
    others: dict[str, AnyViewRecorder]
    workload: Workload
    files: list[UUID]

    @property
    def followers(self) -> list[Follower]:
        extra = [
            Follower(self.application, recorder, batch_size=3) for recorder in self.others.values()
        ]
        return [*self.readmodels.followers.values(), *extra]

    def catch_up(self) -> None:
        for follower in self.followers:
            follower.catch_up()
            assert follower.lag() == 0, follower.name

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table of every view, its rows sorted (their order on disk is not the fold's)."""
        found: dict[str, list[tuple[Any, ...]]] = {}
        recorders = [*self.readmodels.recorders.values(), *self.others.values()]
        for recorder in recorders:
            for table in recorder.view.tables:
                found[table] = sorted(recorder.dump(table), key=repr)
        return found


def erase(application: CaseTrail, case_id: UUID) -> None:
    application.erase(
        case_id,
        scope=KeyScope.CASE,
        rule="retention",
        basis=RetentionRules().basis(),
        due_on=local_today(),
        by=BY,
    )


@pytest.fixture
def world(store_url: str, tmp_path: Path) -> Iterator[World]:
    if store_url.startswith("sqlite:///"):
        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    application = CaseTrail(env=store_environment(store_url, [new_key_text()]))
    env = readmodel_env(store_url, tmp_path)
    readmodels = ReadModels(
        application,
        ReadModelConfig(env=env, index_key=os.urandom(32), batch_size=3, poll_seconds=0.05),
    )
    datastore = open_datastore(env)
    try:
        others: dict[str, AnyViewRecorder] = {
            "duties": view_recorder(datastore, DutiesView(Periods())),
            "rules": view_recorder(datastore, RulesView(RulesConfig())),
        }
        register_units(application, *MEMBER_UNITS)
        workload = Workload(application, seed=19)
        files = workload.cases(4)
        for number, case_id in enumerate(files):
            application.read_case(case_id, COORDINATOR, Purpose.CONSULTATION, f"r-{number}")
        yield World(application, readmodels, others, workload, files)
    finally:
        readmodels.close()
        datastore.close()
        application.close()


def _ids_in(rows: dict[str, list[tuple[Any, ...]]], case_id: UUID) -> list[str]:
    """The tables holding a row that names the file (its id anywhere in the row)."""
    wanted = str(case_id)
    return sorted(
        table for table, found in rows.items() if any(wanted in repr(row) for row in found)
    )


def test_every_view_drops_the_file_keeps_its_tombstone_and_rebuilds_the_same(
    world: World,
) -> None:
    erased, kept = world.files[0], world.files[1:]
    world.catch_up()
    before = world.rows()
    # The control: the file had rows in the views the test then expects it gone from.
    assert {"ledger_cases", "report_cases", "screening_case_letters", "deadline_duties"} <= set(
        _ids_in(before, erased)
    )
    body = world.workload.bodies[erased]
    blind = world.readmodels.blind_index
    with world.readmodels.ledger.reading() as db:
        found = db.execute(
            "SELECT case_id FROM {ledger_cases} WHERE id_index = ?",
            (blind.id_number(body["minor"]["id_number"]),),
        )
    assert [r["case_id"] for r in found] == [str(erased)]

    erase(world.application, erased)
    world.catch_up()
    after = world.rows()
    # Only the tombstones and the trail of accesses still name it: no row with content (the
    # compliance rules' windows of reads and their findings, depending on the hour the test
    # runs, come from the access events, which stay readable; the file's own state is gone).
    naming = set(_ids_in(after, erased))
    tombstones = {"ledger_erased", "report_erased", "screening_erased"}
    assert tombstones | {"accesses_records"} <= naming
    trail = {"compliance_rules_state", "compliance_rules_findings"}
    assert naming - tombstones - trail == {"accesses_records"}
    assert not [r for r in after["compliance_rules_state"] if r[0] == f"case|{erased}"]
    assert [r for r in before["compliance_rules_state"] if r[0] == f"case|{erased}"]
    (tombstone,) = [r for r in after["ledger_erased"] if r[0] == str(erased)]
    assert tombstone[1:3] == ("case", "retention")
    assert tombstone[4] == local_today().isoformat()
    assert tombstone[6] == "system"
    # Its blind indexes find nothing any more: by ID number nor by name.
    with world.readmodels.ledger.reading() as db:
        for column, token in (
            ("id_index", blind.id_number(body["minor"]["id_number"])),
            ("name_index", blind.name(body["minor"]["name"])),
        ):
            hits = db.execute(f"SELECT case_id FROM {{ledger_cases}} WHERE {column} = ?", (token,))
            assert hits == [], column
    with world.readmodels.screening.reading() as db:
        hits = db.execute(
            "SELECT case_id FROM {screening_case_letters} WHERE id_index = ?",
            (blind.id_number(body["minor"]["id_number"]),),
        )
        assert hits == []
    # The other files are untouched.
    for case_id in kept:
        assert _ids_in(after, case_id) == _ids_in(before, case_id)

    # A rebuild from 0, in batches of 3 across the unreadable events, gives the same rows.
    for follower in world.followers:
        follower.rebuild()
        assert follower.lag() == 0, follower.name
    assert world.rows() == after


def test_the_investigation_history_shows_the_erasure_and_no_content(world: World) -> None:
    erased, kept = world.files[0], world.files[1]
    events_before = len(gather(world.application, erased).stored)
    erase(world.application, erased)

    history = gather(world.application, erased)
    assert len(history.stored) == events_before  # its records (ciphertext) are all there
    assert len(history.erased) == events_before  # and none can be read
    answer = timeline(history)
    kinds = [e["kind"] for e in answer["entries"]]
    assert "clue_reported" not in kinds
    assert "case_accessed" in kinds  # the trail of who read it stays
    (erasure,) = [e for e in answer["entries"] if e["kind"] == "data_key_destroyed"]
    assert erasure["details"] == {
        "scope": "case",
        "rule": "retention",
        "basis": RetentionRules().basis(),
        "due_on": local_today().isoformat(),
    }
    assert {k: erasure["actor"][k] for k in BY} == BY
    assert erasure["label_zh"] == "档案已删除(密钥销毁)"
    assert answer["erased_records"] == events_before
    # The other analyses of the workbench and the report run on what is left.
    assert knowledge(history)["case_id"] == str(erased)
    assert deadlines(history, now=datetime.now(UTC))["case_id"] == str(erased)
    # Another file's history is whole, and shows no erasure.
    other = timeline(gather(world.application, kept))
    assert other["erased_records"] == 0
    assert "clue_reported" in [e["kind"] for e in other["entries"]]
    assert "data_key_destroyed" not in [e["kind"] for e in other["entries"]]


def test_an_erased_file_reads_as_erased_and_an_erased_user_is_no_user(world: World) -> None:
    application = world.application
    erase(application, world.files[0])
    with pytest.raises(DataErased):
        application.read_case(world.files[0], COORDINATOR, Purpose.CONSULTATION, "r-late")
    ensure_registered(application, "u-erased", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)
    ensure_registered(application, "u-kept", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)
    users = {u.user_id for u in application.users()}
    assert {"u-erased", "u-kept"} <= users
    application.erase(
        user_stream_id("u-erased"),
        scope=KeyScope.USER,
        rule="retention",
        basis="test",
        due_on=None,
        by=BY,
    )
    users = {u.user_id for u in application.users()}
    assert "u-erased" not in users
    assert "u-kept" in users
    # Looked up one by one (sign-in, the registry, the pages), it is unknown: the same refusal
    # as for anyone never registered, which says nothing of an erasure.
    with pytest.raises(UnknownUser):
        application.user("u-erased")
    assert application.user("u-kept").user_id == "u-kept"
    # A case's history reads every user's posts: an erased one is left out, not a failure.
    assert gather(application, world.files[1]).steps


def test_an_erased_roster_entry_leaves_the_screening_tables(world: World) -> None:
    application, blind = world.application, world.readmodels.blind_index
    reporter = Actor("reporter-1", Role.REPORTER, VILLAGE, STREET)
    minors = []
    for number, sequence in enumerate((481, 483)):
        born = local_today() - timedelta(days=(9 + number) * 365)
        minor = RosterMinor.model_validate(
            {
                "name": f"林晓{'雨泽'[number]}",
                "gender": "male",
                "date_of_birth": born.isoformat(),
                "id_number": make_id_number("990101", born, sequence),
                "school": "城关镇中心小学",
                "grade_class": "四年级",
                "village": VILLAGE,
                "grid": "第1网格",
                "guardian": "林建国",
                "markers": ["left_behind"],
            }
        )
        minors.append((number + 2, minor, blind.id_number(minor.id_number)))
    application.import_roster(
        minors, village=VILLAGE, actor=reporter, source={}, rejected_rows=0, store_valid=False
    )
    erased = roster_entry_id(STREET, minors[0][2])
    kept = roster_entry_id(STREET, minors[1][2])
    world.catch_up()
    before = world.rows()
    assert _ids_in(before, erased) == ["screening_entries"]

    application.erase(
        erased, scope=KeyScope.MINOR, rule="guardian_request", basis="PIPL 47", due_on=None, by=BY
    )
    world.catch_up()
    after = world.rows()
    assert _ids_in(after, erased) == ["screening_erased"]
    assert _ids_in(after, kept) == ["screening_entries"]
    with world.readmodels.screening.reading() as db:
        hits = db.execute(
            "SELECT entry_id FROM {screening_entries} WHERE id_index = ?", (minors[0][2],)
        )
    assert hits == []
    for follower in world.followers:
        follower.rebuild()
    assert world.rows() == after
