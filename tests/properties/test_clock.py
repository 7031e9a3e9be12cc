"""The clock (issue 22): order kept when the wall clock steps back; days and quarters counted in
the plan's time zone (Asia/Shanghai, UTC+8).

The clock is injected (`domain.clock.using`), never the store mocked: commands go through a
`CaseTrail` opened by `gateway.bootstrap.open_application` on a real, encrypted SQLite file, and
the checks read the events back from it.

- A stream's timestamps strictly increase even when the clock steps back between commands, and
  the look-back (`version_as_of`, `case_as_of`) at each event's own instant gives that event's
  version (with the clock's own times it gave None for the event stamped before the report);
  the store still equals its signed Merkle log (`casetrail verify`'s check).
- "Today" is Beijing's: at 00:30 in Beijing (16:30 UTC the day before), a consultation held
  today is not "in the future", a due date of the UTC day is already past, and the quarter is
  the new one (the commands used the server's `date.today()`).
- Deadlines end at Beijing midnight across a quarter boundary: an assignment due on the last day
  of a quarter is overdue from 16:00 UTC that day; a file reported at 00:30 on 1 April (Beijing)
  counts its quarterly update from the second quarter.
- An investigation report counts a rectification overdue from Beijing midnight (it used the
  UTC date).
- The ledger's submission refuses a period that has not begun in Beijing (it allowed one day
  ahead of the UTC date, so the next quarter from a day early).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain import clock, errors
from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail, case_as_of, version_as_of
from domain.case import Case
from domain.deadlines import AssignmentOverdue, CaseDuties, Periods, QuarterlyUpdateMissed, fold
from domain.quarters import Quarter
from domain.submissions import Period
from domain.taxonomy import Role
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.evidence.verification import verify_store
from gateway.reports.document import build_document
from gateway.settings import Settings
from projections.ledger.quarters import today as ledger_today
from tests.domain.builders import COORDINATOR, POLICE, register_units, report_clue
from tests.properties.conftest import bounded
from tests.reports.scenario import INVESTIGATOR, investigated_case

# The instants are years ahead of the real date: commands built on the real clock are valid then.
# 2030-03-31T16:30Z is 00:30 on 1 April 2030 in Beijing: another day, another quarter. Years
# ahead of the real date, so that a rule reading the real clock instead of the injected one
# fails here.
BEIJING_APRIL_FIRST = datetime(2030, 3, 31, 16, 30, tzinfo=UTC)
VILLAGE_REPORTER = Actor("reporter-9", Role.REPORTER, "dongshan-village", "chengguan-street")


def at(moment: datetime) -> Any:
    return clock.using(lambda: moment)


def settings_for(tmp_path: Path) -> Settings:
    """A fresh home with its keys and an encrypted SQLite store, as `casetrail` creates them."""
    home = tmp_path / "home"
    if not (home / "keys").exists():
        keyring.init_keys(home / "keys")
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": f"sqlite:///{home / 'casetrail.sqlite'}",
        }
    )


@pytest.fixture
def application(tmp_path: Path) -> Iterator[CaseTrail]:
    app = open_application(settings_for(tmp_path))
    register_units(app, POLICE)
    try:
        yield app
    finally:
        app.close()


def stored(application: CaseTrail, case_id: UUID) -> list[Any]:
    return list(application.events.get(case_id))


def follow_up(application: CaseTrail, case_id: UUID, note: str) -> None:
    command = cmd.RecordFollowUp(visited_on=date.today(), notes=note)
    application.change_case(
        case_id,
        COORDINATOR,
        "record_follow_up",
        lambda c: c.record_follow_up(command, by=COORDINATOR.as_record()),
    )


# --- the wall clock steps back ------------------------------------------------------------------


def test_a_clock_stepped_back_keeps_the_stream_in_order_in_the_store(
    application: CaseTrail, tmp_path: Path
) -> None:
    start = datetime(2030, 6, 30, 15, 0, tzinfo=UTC)
    with at(start):
        case_id = application.report_clue(report_clue(), COORDINATOR)
    # NTP steps the clock back two hours, then half an hour more: the failing example.
    with at(start - timedelta(hours=2)):
        follow_up(application, case_id, "第一次回访。")
    with at(start - timedelta(hours=2, minutes=30)):
        follow_up(application, case_id, "第二次回访。")
    events = stored(application, case_id)
    stamps = [e.timestamp for e in events]
    assert [e.originator_version for e in events] == [1, 2, 3]
    assert all(a < b for a, b in itertools.pairwise(stamps)), stamps
    assert stamps[0] == start
    # The look-back finds each version at its own event's instant (None for the second before
    # the fix: the stream seemed not to exist at its own time).
    for version, stamp in enumerate(stamps, start=1):
        assert version_as_of(stamps, stamp) == version
        as_of = case_as_of(events, stamp)
        assert as_of is not None and as_of.version == version
    # The clock catches up: once it passes the last stamp, events carry its time again.
    later = start + timedelta(minutes=5)
    with at(later):
        follow_up(application, case_id, "第三次回访。")
    assert stored(application, case_id)[-1].timestamp == later
    # `casetrail verify`'s check: the store equals its signed Merkle log.
    settings = settings_for(tmp_path)
    key = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    evidence = Evidence(application, key, EvidenceSettings())
    try:
        evidence.checkpoint_now()
        report = verify_store(application.recorder, evidence.public_key)
    finally:
        evidence.close()
    assert report.intact, report.summary()


@given(steps=st.lists(st.integers(min_value=-86_400, max_value=600), min_size=1, max_size=8))
@bounded(max_examples=15)
def test_any_clock_walk_keeps_timestamps_increasing(steps: list[int]) -> None:
    """Pure domain, fast: any walk of the clock, forwards and back, on one file."""
    now = datetime(2030, 6, 30, 15, 0, tzinfo=UTC)
    with at(now):
        case = Case.report(report_clue(), street="chengguan-street", by=COORDINATOR.as_record())
    for seconds in steps:
        now += timedelta(seconds=seconds)
        command = cmd.RecordFollowUp(visited_on=date.today(), notes="回访。")
        with at(now):
            case.record_follow_up(command, by=COORDINATOR.as_record())
    stamps = [e.timestamp for e in case.collect_events()]
    assert all(a < b for a, b in itertools.pairwise(stamps)), stamps
    assert stamps[-1] >= now


# --- "today" is the street office's -------------------------------------------------------------


def test_today_is_beijing_s_day_not_the_server_s() -> None:
    with at(BEIJING_APRIL_FIRST - timedelta(minutes=31)):  # 23:59 on 31 March in Beijing
        assert clock.local_today() == date(2030, 3, 31)
    with at(BEIJING_APRIL_FIRST - timedelta(minutes=30)):  # 00:00 on 1 April in Beijing
        assert clock.local_today() == date(2030, 4, 1)
        assert Quarter.of(clock.local_today()) == Quarter(2030, 2)
        # The worklists' and the inbox's default day is the same rule.
        assert ledger_today() == date(2030, 4, 1)


def test_at_half_past_midnight_in_beijing_the_commands_count_beijing_s_day() -> None:
    with at(BEIJING_APRIL_FIRST):
        # Held today (Beijing): not in the future (the UTC date is still 31 March).
        held = cmd.HoldConsultation(
            held_on=date(2030, 4, 1), participants=["police"], decision="会商决定走访。"
        )
        assert held.held_on == date(2030, 4, 1)
        # Due on the UTC date: already yesterday in Beijing.
        with pytest.raises(ValidationError, match="due date is in the past"):
            cmd.AssignUnit(
                unit=POLICE, function="judicial", task="调查核实。", due_on=date(2030, 3, 31)
            )
        cmd.AssignUnit(unit=POLICE, function="judicial", task="调查核实。", due_on=date(2030, 4, 1))
    # 23:30 on 31 March in Beijing: 1 April is tomorrow.
    with (
        at(BEIJING_APRIL_FIRST - timedelta(hours=1)),
        pytest.raises(ValidationError, match="must not be in the future"),
    ):
        cmd.HoldConsultation(
            held_on=date(2030, 4, 1), participants=["police"], decision="会商决定走访。"
        )


# --- deadlines across day and quarter boundaries ------------------------------------------------


def test_deadlines_end_at_beijing_midnight_across_a_quarter(application: CaseTrail) -> None:
    with at(BEIJING_APRIL_FIRST - timedelta(hours=1)):  # 23:30 on 31 March (Q1) in Beijing
        case_id = application.report_clue(report_clue(), COORDINATOR)
        assign = cmd.AssignUnit(
            unit=POLICE, function="judicial", task="调查核实。", due_on=date(2030, 3, 31)
        )
        application.change_case(
            case_id,
            COORDINATOR,
            "assign_unit",
            lambda c: application.assignable(POLICE, c).assign_unit(
                assign, by=COORDINATOR.as_record()
            ),
        )
    duties: dict[UUID, CaseDuties] = {}
    fold(duties, stored(application, case_id))
    found = duties[case_id]
    assert found.last_update_on == "2030-03-31"

    def kinds(now: datetime) -> set[type]:
        return {m.kind for m in found.missed(now, Periods())}

    beijing_midnight = datetime(2030, 3, 31, 16, 0, tzinfo=UTC)
    assert AssignmentOverdue not in kinds(beijing_midnight - timedelta(microseconds=1))
    assert AssignmentOverdue in kinds(beijing_midnight)
    # Reported in Q1 (Beijing): the update is due by the end of Q2, missed from 1 July 00:00.
    end_of_q2 = datetime(2030, 6, 30, 16, 0, tzinfo=UTC)
    assert QuarterlyUpdateMissed not in kinds(end_of_q2 - timedelta(microseconds=1))
    assert QuarterlyUpdateMissed in kinds(end_of_q2)


def test_a_file_reported_after_beijing_midnight_counts_from_the_new_quarter(
    application: CaseTrail,
) -> None:
    with at(BEIJING_APRIL_FIRST):
        case_id = application.report_clue(report_clue(), COORDINATOR)
    duties: dict[UUID, CaseDuties] = {}
    fold(duties, stored(application, case_id))
    found = duties[case_id]
    assert found.last_update_on == "2030-04-01"
    end_of_q3 = datetime(2030, 9, 30, 16, 0, tzinfo=UTC)
    missed = {m.kind for m in found.missed(end_of_q3 - timedelta(microseconds=1), Periods())}
    assert QuarterlyUpdateMissed not in missed
    assert QuarterlyUpdateMissed in {m.kind for m in found.missed(end_of_q3, Periods())}


def test_a_ledger_period_not_begun_in_beijing_is_refused(application: CaseTrail) -> None:
    """The failing example: at 08:00 on 31 March in Beijing (00:00 UTC), the second quarter
    was accepted (the UTC date plus one day's slack); it begins only at Beijing midnight."""
    q2 = Period.parse("2030Q2")
    with pytest.raises(errors.SubmissionInvalid):
        application.submit_ledger(
            VILLAGE_REPORTER, q2, [], now=datetime(2030, 3, 31, 0, 0, tzinfo=UTC)
        )
    submitted = application.submit_ledger(VILLAGE_REPORTER, q2, [], now=BEIJING_APRIL_FIRST)
    assert submitted is not None


def test_a_report_counts_a_rectification_overdue_from_beijing_midnight(tmp_path: Path) -> None:
    """The failing example: the report built at 00:30 on 1 February in Beijing showed a
    rectification due on 31 January as still open (the UTC date was the 31st)."""
    settings = settings_for(tmp_path)
    application = open_application(settings)
    key = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    evidence = Evidence(application, key, EvidenceSettings())
    try:
        scenario = investigated_case(application)  # a rectification due on 2099-01-31
        investigation = application.investigation(scenario.investigation_id)

        def document_at(moment: datetime) -> list[str]:
            document = build_document(
                application,
                evidence,
                investigation,
                generated_by={"user": INVESTIGATOR, "role": "investigator", "unit": "county"},
                now=lambda: moment,
            )
            return [r["status"] for r in document["rectifications"]]

        assert document_at(datetime(2099, 1, 31, 15, 59, tzinfo=UTC)) == ["open"]
        assert document_at(datetime(2099, 1, 31, 16, 30, tzinfo=UTC)) == ["overdue"]
    finally:
        evidence.close()
        application.close()
