"""The deadline scheduler (`gateway.messaging.scheduler`) on real stores and a real broker.

- a scan stores exactly the facts the rules say are due, once: again, or from a fresh scheduler
  (another process), nothing; closed files leave the scan (SQLite and PostgreSQL);
- the relay's own scan, on its clock, and its router's notices for the facts;
- `casetrail deadlines scan` SIGKILLed mid-run and run again: each fact stored once, none lost;
- end to end over a real nats-server: an unheld consultation becomes `ConsultationOverdue`, a
  `deadline_missed` notice to the governance office's client, then, a period later,
  `DeadlineEscalated` and a `deadline_escalated` notice to the street supervisor's client.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.clock import local_today
from domain.deadlines import (
    DUTY_TOPICS,
    FACT_TOPICS,
    CaseDuties,
    ConsultationOverdue,
    DeadlineEscalated,
    DeadlineFact,
    Periods,
    fold,
)
from domain.taxonomy import Role
from domain.units import RegisterUnit
from gateway import keyring
from gateway.bootstrap import open_application, open_relay
from gateway.messaging.registry import register_unit
from gateway.messaging.relay import Directory, Router
from gateway.messaging.scheduler import DeadlineScheduler
from gateway.settings import Settings
from gateway.store.eventstore import store_environment
from tests.integration.planted import planted_case
from tests.messaging.stack import CASETRAIL, Listener, Stack, build_stack, wait_for

STREET = "chengguan-street"
OFFICE = "chengguan-governance-office"
SUPERVISOR = "chengguan-street-supervision"
POLICE = "chengguan-police-station"
VILLAGE = "dongshan-village"
REPORTER = Actor("user-reporter", Role.REPORTER, VILLAGE, STREET)
COORDINATOR = Actor("user-coordinator", Role.COORDINATOR, OFFICE, STREET)
# The store written by the main before issue 12 (tests/architecture/test_stored_topics.py).
FIXTURE_HOME = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1" / "home"


def register(settings: Settings, application: CaseTrail, unit: str, kind: str) -> None:
    register_unit(
        settings,
        application,
        RegisterUnit(unit_id=unit, name="测试单位", type=kind, street=STREET),
        settings.home / f"{unit}.pem",
    )


def fill(application: CaseTrail, count: int, seed: int = 0) -> dict[str, list[UUID]]:
    """Case files in several states: unheld, held, assigned (due tomorrow), closed."""
    found: dict[str, list[UUID]] = {"closed": [], "open": []}
    for i in range(count):
        case_id = application.report_clue(
            cmd.ReportClue(**planted_case(VILLAGE, seed=seed + i).body), REPORTER
        )
        if i % 3 == 1:
            application.change_case(
                case_id,
                COORDINATOR,
                "hold_consultation",
                lambda c: c.hold_consultation(
                    cmd.HoldConsultation(
                        held_on=local_today(), participants=[OFFICE], decision="入户核查。"
                    ),
                    by=COORDINATOR.as_record(),
                ),
            )
        if i % 3 == 2:
            application.change_case(
                case_id,
                COORDINATOR,
                "assign_unit",
                lambda c: c.assign_unit(
                    cmd.AssignUnit(
                        unit=POLICE,
                        function="judicial",
                        task="入户核查。",
                        due_on=local_today() + timedelta(days=1),
                    ),
                    by=COORDINATOR.as_record(),
                ),
            )
        if i % 4 == 3:
            application.change_case(
                case_id,
                COORDINATOR,
                "close",
                lambda c: c.close(
                    cmd.CloseCase(reason="resolved", note="情况好转。"), by=COORDINATOR.as_record()
                ),
            )
            found["closed"].append(case_id)
        else:
            found["open"].append(case_id)
    return found


def unaware(application: CaseTrail) -> list[CaseDuties]:
    """Every case's duties from the case events alone, as if no fact were stored yet."""
    duties: dict[UUID, CaseDuties] = {}
    found = application.notifications(topics=DUTY_TOPICS)
    events = [application.mapper.to_domain_event(n) for n in found]
    fold(duties, [e for e in events if not isinstance(e, DeadlineFact)])
    return list(duties.values())


def expected(application: CaseTrail, now: datetime) -> set[UUID]:
    """What the rules say is due by `now`, from the case events alone (no fact folded)."""
    periods = Periods.from_env(application.env.get)
    return {f.originator_id for d in unaware(application) for f in d.due(now, periods, {})}


def stored(application: CaseTrail) -> list[Any]:
    return [
        application.mapper.to_domain_event(n) for n in application.notifications(topics=FACT_TOPICS)
    ]


@pytest.fixture
def application(settings: Settings) -> Iterator[CaseTrail]:
    opened = open_application(settings)
    try:
        yield opened
    finally:
        opened.close()


def test_a_scan_stores_each_due_fact_once_and_closed_files_leave_the_scan(
    settings: Settings, application: CaseTrail
) -> None:
    register(settings, application, OFFICE, "governance_office")
    cases = fill(application, 12)
    now = datetime.now(UTC) + timedelta(days=3)
    scheduler = DeadlineScheduler(application)

    first = scheduler.scan(now)
    want = expected(application, now)
    assert want  # unheld consultations, unsigned and overdue assignments, escalations
    assert {f.originator_id for f in first} == want
    facts = stored(application)
    assert len(facts) == len(want) == len({f.originator_id for f in facts})
    kinds = {type(f).__name__ for f in facts}
    assert {"ConsultationOverdue", "AssignmentNotSignedFor", "AssignmentOverdue"} <= kinds
    assert "DeadlineEscalated" in kinds
    assert all(f.unit == OFFICE for f in facts if isinstance(f, ConsultationOverdue))
    assert not {f.case_id for f in facts} & set(cases["closed"])

    # Again, from this scheduler, a new one (another process), or the whole-log path: nothing.
    assert scheduler.scan(now) == []
    assert DeadlineScheduler(application).scan(now) == []
    assert application.record_missed_deadlines(now) == []
    assert len(stored(application)) == len(want)
    # Closed files with nothing owed are no longer read by a scan.
    assert scheduler.open_duties() == len(cases["open"])


def test_a_scan_that_does_not_know_what_another_stored_stores_only_the_rest(
    settings: Settings, application: CaseTrail
) -> None:
    fill(application, 6)
    start = datetime.now(UTC)
    first = DeadlineScheduler(application).scan(start + timedelta(hours=25))
    assert first
    # Another process, its table behind: it asks for all of them; the store keeps the first.
    later = start + timedelta(days=3)
    second = application.record_missed_deadlines(later, unaware(application))
    want = expected(application, later)
    assert {f.originator_id for f in second} == want - {f.originator_id for f in first}
    facts = stored(application)
    assert len(facts) == len({f.originator_id for f in facts}) == len(want)


def test_the_relay_scans_on_its_own_clock_and_routes_the_facts(
    settings: Settings, application: CaseTrail
) -> None:
    register(settings, application, OFFICE, "governance_office")
    register(settings, application, SUPERVISOR, "street_supervision")
    case_id = application.report_clue(cmd.ReportClue(**planted_case(VILLAGE).body), REPORTER)
    reported_at: datetime = application.repository.get(case_id).created_on
    clock = [reported_at]
    relay = open_relay(settings, application)
    relay.scheduler = DeadlineScheduler(application, clock=lambda: clock[0])

    # The scan looks `SETTLE` behind its clock: at the deadline plus less than that, nothing.
    clock[0] = reported_at + timedelta(hours=24, seconds=1)
    assert asyncio.run(relay.scan_deadlines()) == 0
    clock[0] = reported_at + timedelta(hours=48, seconds=2)
    assert asyncio.run(relay.scan_deadlines()) == 2  # the fact and its escalation
    assert asyncio.run(relay.scan_deadlines()) == 0

    directory = Directory(application)
    directory.load()
    router = Router(application, directory)
    notices = [o for f in stored(application) for o in router.route(f)]
    by_kind = {o.kind: o for o in notices}
    assert sorted(by_kind) == ["deadline_escalated", "deadline_missed"]
    missed, escalated = by_kind["deadline_missed"], by_kind["deadline_escalated"]
    assert missed.recipient.unit_id == OFFICE
    assert missed.body["fact"] == "ConsultationOverdue"
    assert missed.body["case_ref"] == str(case_id)
    assert escalated.recipient.unit_id == SUPERVISOR
    assert escalated.body["fact"] == "ConsultationOverdue"
    # Ids, codes and instants only.
    assert set(missed.body) == {"fact", "case_ref", "assignment_id", "street", "due"}
    assert set(escalated.body) == {"fact", "fact_id", "case_ref", "street", "due"}


# --- SIGKILL mid-run ------------------------------------------------------------------------------


def progress(home: Path) -> tuple[int, int]:
    """The scan's position in the log and how many facts are stored, read from the SQLite
    file by a reader of its own."""
    db = sqlite3.connect(f"file:{home / 'casetrail.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        marks = ",".join("?" * len(FACT_TOPICS))
        (facts,) = db.execute(
            f"SELECT COUNT(*) FROM stored_events WHERE topic IN ({marks})",
            FACT_TOPICS,
        ).fetchone()
        try:
            (position,) = db.execute(
                "SELECT COALESCE(MAX(notification_id), 0) FROM deadline_duties_tracking"
            ).fetchone()
        except sqlite3.OperationalError:  # no scan has made its table yet
            position = 0
        return int(position), int(facts)
    finally:
        db.close()


def test_the_scan_command_killed_mid_run_and_run_again_stores_each_fact_once(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    with_app = open_application(settings)
    try:
        register(settings, with_app, OFFICE, "governance_office")
        fill(with_app, 90)
    finally:
        with_app.close()
    now = (datetime.now(UTC) + timedelta(days=200)).isoformat()
    env = {"CASETRAIL_HOME": str(home), "CASETRAIL_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"}
    rng = random.Random(14)
    mid_scan = 0
    for _ in range(3):
        before = progress(home)
        popen = subprocess.Popen(
            [CASETRAIL, "deadlines", "scan", "--now", now],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Once the scan has begun (its position or the facts moved), at a random moment.
        deadline = time.monotonic() + 60
        while popen.poll() is None and progress(home) == before:
            assert time.monotonic() < deadline, "the scan did not begin"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.4))
        if popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
            mid_scan += 1
        popen.communicate(timeout=30)
    assert mid_scan, "every run ended before it was killed"
    finished = subprocess.run(
        [CASETRAIL, "deadlines", "scan", "--now", now, "--json"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr.decode()
    assert json.loads(finished.stdout)["stored"] >= 0

    application = open_application(settings)
    try:
        facts = stored(application)
        ids = [f.originator_id for f in facts]
        want = expected(application, datetime.fromisoformat(now))
        # None lost, none twice.
        assert len(ids) == len(set(ids)) == len(want)
        assert set(ids) == want
    finally:
        application.close()
    again = subprocess.run(
        [CASETRAIL, "deadlines", "scan", "--now", now],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0
    assert again.stdout.decode().startswith("0 fact(s) stored")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("2026-12-01T08:00:00", "--now needs its offset, e.g. 2026-12-01T08:00:00+08:00"),
        ("yesterday", "--now must be an ISO 8601 instant, e.g. 2026-12-01T08:00:00+08:00"),
        ("9999-12-31T23:00:00+00:00", "--now must lie between 2000-01-01 and 2099-12-31"),
    ],
)
def test_the_scan_command_refuses_a_bad_instant_in_one_line(
    tmp_path: Path, given: str, message: str
) -> None:
    found = subprocess.run(
        [CASETRAIL, "deadlines", "scan", "--now", given],
        env={"CASETRAIL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert found.returncode == 2
    assert found.stderr.decode().strip().splitlines() == [f"casetrail: error: {message}"]
    assert not (tmp_path / "home").exists()  # nothing opened, nothing written


# --- end to end over a real nats-server -----------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        tmp_path_factory.mktemp("deadlines"),
        [
            (OFFICE, "城关街道综治办", "governance_office"),
            (SUPERVISOR, "城关街道督导组", "street_supervision"),
        ],
    )
    try:
        built.start_api()
        built.start_relay()
        for unit in (OFFICE, SUPERVISOR):
            built.listeners[unit] = built.start_listener(unit)
        built.wait_api()
        yield built
    finally:
        built.close()


def scan_at(stack: Stack, now: datetime) -> str:
    run = stack.spawn("scan", "deadlines", "scan", "--now", now.isoformat())
    assert run.popen.wait(60) == 0, run.text()
    return run.text()


def test_an_unheld_consultation_reaches_the_office_then_the_supervisor(stack: Stack) -> None:
    planted = planted_case(VILLAGE)
    answer = httpx.post(
        f"{stack.api_url}/v1/cases",
        json=planted.body,
        headers=stack.headers(Role.REPORTER, VILLAGE),
    )
    assert answer.status_code == 201, answer.text
    case_id = str(answer.json()["id"])
    with stack.application() as application:
        reported_at: datetime = application.repository.get(UUID(case_id)).created_on
    due = reported_at + timedelta(hours=24)
    office, supervisor = stack.listeners[OFFICE], stack.listeners[SUPERVISOR]

    def notices(listener: Listener, kind: str) -> list[dict[str, Any]]:
        return [
            e["body"]
            for e in listener.entries()
            if e["kind"] == kind and e["body"].get("case_ref") == case_id
        ]

    assert "0 fact(s) stored" in scan_at(stack, due - timedelta(seconds=1))
    assert "1 fact(s) stored: 1 ConsultationOverdue" in scan_at(stack, due)
    wait_for(lambda: bool(notices(office, "deadline_missed")), 30, "the office's reminder")
    [missed] = notices(office, "deadline_missed")
    assert missed["fact"] == "ConsultationOverdue"
    assert datetime.fromisoformat(missed["due"]) == due
    assert "1 fact(s) stored: 1 DeadlineEscalated" in scan_at(stack, due + timedelta(hours=24))
    wait_for(lambda: bool(notices(supervisor, "deadline_escalated")), 30, "the escalation")
    [escalated] = notices(supervisor, "deadline_escalated")
    with stack.application() as application:
        facts = {type(f).__name__: f for f in stored(application)}
    assert escalated["fact_id"] == str(facts["ConsultationOverdue"].originator_id)
    assert isinstance(facts["DeadlineEscalated"], DeadlineEscalated)
    # To the units the rules name, once each, and nothing of the child in any of it.
    assert notices(office, "deadline_escalated") == []
    assert notices(supervisor, "deadline_missed") == []
    assert len(notices(office, "deadline_missed")) == 1
    everything = json.dumps(office.entries() + supervisor.entries(), ensure_ascii=False)
    assert planted.name not in everything
    assert planted.body["minor"]["id_number"] not in everything


class BrokenScheduler(DeadlineScheduler):
    def scan(self, now: datetime | None = None) -> list[Any]:
        raise RuntimeError("a fault in a rule")


def test_a_failing_scan_does_not_stop_the_relay(settings: Settings, application: CaseTrail) -> None:
    relay = open_relay(settings, application)
    relay.scheduler = BrokenScheduler(application)
    asyncio.run(relay._maybe_scan(0.0))  # logged (deadline_scan_failed), not raised
    with pytest.raises(RuntimeError):
        asyncio.run(relay.scan_deadlines())


def test_the_store_written_before_issue_12_is_scanned(tmp_path: Path) -> None:
    """Old stores hold version-1 acknowledgements and due-date reminders: a scan reads them."""
    home = tmp_path / "home"
    shutil.copytree(FIXTURE_HOME, home)
    key = (home / "keys" / "event.key").read_text(encoding="utf-8").strip()
    application = CaseTrail(env=store_environment(f"sqlite:///{home / 'casetrail.sqlite'}", [key]))
    try:
        now = datetime.now(UTC) + timedelta(days=3)
        facts = DeadlineScheduler(application).scan(now)
        assert {f.originator_id for f in facts} == expected(application, now)
        assert facts
        assert DeadlineScheduler(application).scan(now) == []
    finally:
        application.close()
