"""The scripted scenario of issue 13, checked fact by fact: the timeline, the knowledge matrix
and the deadline findings equal the expected ones exactly (`investigation_scenario.play`: a
grid worker's clue, a late consultation, the school and the police assigned and notified, the
police sign for it and the school never does, a health-centre member refused, a break-glass
read by a member of the social affairs office, the file closed).

The expected positions and instants are read back from the store by a plain decode at each step
of the scenario; the analyses never see them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.application import CaseTrail
from gateway.store.eventstore import new_key_text, store_environment
from projections.investigation import deadlines, gather, history_of, knowledge, timeline
from projections.investigation.labels import HOW_LABELS, KIND_LABELS
from projections.ledger.quarters import LOCAL_TZ, start_of_day
from tests.domain import builders as b
from tests.projections.investigation_scenario import (
    FOUND_ON,
    GRID,
    SCHOOL,
    SOCIAL,
    Scenario,
    play,
)

OFFICE = b.GOVERNANCE_OFFICE
POLICE = b.POLICE


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    path: Path = tmp_path_factory.mktemp("scenario") / "casetrail.sqlite"
    app = CaseTrail(env=store_environment(f"sqlite:///{path}", [new_key_text()]))
    try:
        yield play(app)
    finally:
        app.close()


def _knower(
    s: Scenario, user: str | None, unit: str, role: str | None, how: str, mark: str
) -> dict[str, Any]:
    m = s.marks[mark]
    return {
        "user": user,
        "unit": unit,
        "role": role,
        # The scenario's people are not registered users (issue 16): no post is named.
        "post": None,
        "post_label_zh": None,
        "first_at": m.iso,
        "how": how,
        "position": m.position,
    }


def test_the_timeline_is_every_step_in_stored_order_with_its_state(scenario: Scenario) -> None:
    s = scenario
    found = timeline(gather(s.app, s.case_id))
    awaiting, intervening, closed = "awaiting_consultation", "intervening", "closed"
    expected = [
        ("reported", "clue_reported", GRID.user, b.VILLAGE, None, awaiting),
        ("coordinator_read", "case_accessed", "coordinator-1", OFFICE, awaiting, awaiting),
        ("consultation", "consultation_held", "coordinator-1", OFFICE, awaiting, intervening),
        ("school_assigned", "unit_assigned", "coordinator-1", OFFICE, intervening, intervening),
        ("school_published", "notice_published", None, SCHOOL, intervening, intervening),
        ("school_received", "notice_received", None, SCHOOL, intervening, intervening),
        ("police_assigned", "unit_assigned", "coordinator-1", OFFICE, intervening, intervening),
        ("police_published", "notice_published", None, POLICE, intervening, intervening),
        ("police_received", "notice_received", None, POLICE, intervening, intervening),
        ("police_signed", "assignment_signed_for", "police-1", POLICE, intervening, intervening),
        ("police_read", "case_accessed", "police-1", POLICE, intervening, intervening),
        ("health_refused", "access_denied", "health-1", b.HEALTH_CENTRE, intervening, intervening),
        ("break_glass", "break_glass_accessed", "social-1", SOCIAL, intervening, intervening),
        ("closed", "closed", "coordinator-1", OFFICE, intervening, closed),
    ]
    got = [
        (
            e["position"],
            e["at"],
            e["kind"],
            e["label_zh"],
            e["actor"]["user"],
            e["actor"]["unit"],
            e["state"]["before"]["status"] if e["state"]["before"] else None,
            e["state"]["after"]["status"],
            e["state"]["after"]["risk"],
        )
        for e in found["entries"]
    ]
    assert got == [
        (
            s.marks[mark].position,
            s.marks[mark].iso,
            kind,
            KIND_LABELS[kind],
            user,
            unit,
            before,
            after,
            "medium",
        )
        for mark, kind, user, unit, before, after in expected
    ]
    by_kind = {e["position"]: e for e in found["entries"]}
    assert by_kind[s.marks["consultation"].position]["details"] == {
        "held_on": s.held_on.isoformat(),
        "participants": [OFFICE, SCHOOL, POLICE],
    }
    refused = by_kind[s.marks["health_refused"].position]["details"]
    assert (refused["granted"], refused["rule"], refused["fields"]) == (False, "out_of_scope", [])
    assert refused["purpose"] == "intervention" and refused["channel"] == "api"
    glass = by_kind[s.marks["break_glass"].position]["details"]
    assert (glass["granted"], glass["break_glass"], glass["rule"]) == (True, True, "break_glass")
    assert "description" in glass["fields"] and "consultations" not in glass["fields"]
    assert by_kind[s.marks["police_signed"].position]["details"] == {
        "assignment_id": s.police_aid,
        "unit": POLICE,
    }
    assert by_kind[s.marks["closed"].position]["details"] == {"reason": "resolved"}


def test_the_knowledge_matrix_names_who_knew_each_fact_first_and_how(
    scenario: Scenario,
) -> None:
    s = scenario
    found = knowledge(gather(s.app, s.case_id))
    grid = _knower(s, GRID.user, b.VILLAGE, "reporter", "reported", "reported")
    coordinator = _knower(s, "coordinator-1", OFFICE, "coordinator", "read", "coordinator_read")
    consulted = [
        _knower(s, None, u, None, "consultation", "consultation") for u in (OFFICE, SCHOOL, POLICE)
    ]
    police_read = _knower(s, "police-1", POLICE, "unit_member", "read", "police_read")
    glass = _knower(s, "social-1", SOCIAL, "unit_member", "read", "break_glass")
    everyone = [grid, coordinator, *consulted, police_read, glass]
    # The police's unit-member grant (judicial) shows unlawful-harm subtypes, not mental health.
    without_police = [grid, coordinator, *consulted, glass]
    expected = [
        ("clue", "线索存在", everyone),
        ("minor.identity", "未成年人身份", everyone),
        ("issue:mental_health:depression", "问题类别:心理健康/抑郁", without_police),
        ("issue:growth_environment:left_behind", "问题类别:成长环境/留守儿童", everyone),
        ("risk:medium", "风险等级:中", everyone),
        ("description", "情况描述", everyone),
        (
            f"assignment:{s.school_aid}",
            f"交办任务:{SCHOOL}(学校保护)",
            [
                _knower(s, "coordinator-1", OFFICE, "coordinator", "reported", "school_assigned"),
                _knower(s, None, SCHOOL, None, "notice_published", "school_published"),
                police_read,
                glass,
            ],
        ),
        (
            f"assignment:{s.police_aid}",
            f"交办任务:{POLICE}(司法保护)",
            [
                _knower(s, "coordinator-1", OFFICE, "coordinator", "reported", "police_assigned"),
                _knower(s, None, POLICE, None, "notice_published", "police_published"),
                _knower(s, "police-1", POLICE, "unit_member", "signed_for", "police_signed"),
                glass,
            ],
        ),
    ]
    assert found["case_id"] == str(s.case_id) and found["as_of"] is None
    assert found["facts"] == [
        {"fact": fact, "label_zh": label, "known_by": known_by}
        for fact, label, known_by in expected
    ]
    # The health-centre member was refused: they know nothing.
    assert not any(k["user"] == "health-1" for f in found["facts"] for k in f["known_by"])
    assert {k["how"] for f in found["facts"] for k in f["known_by"]} <= set(HOW_LABELS)


def test_facts_learned_after_as_of_are_absent(scenario: Scenario) -> None:
    s = scenario
    history = gather(s.app, s.case_id)
    as_of = s.marks["consultation"].at
    found = knowledge(history, as_of=as_of)
    assert found["as_of"] == as_of.isoformat()
    assert [f["fact"] for f in found["facts"]] == [
        "clue",
        "minor.identity",
        "issue:mental_health:depression",
        "issue:growth_environment:left_behind",
        "risk:medium",
        "description",
    ]
    assert all(
        k["position"] <= s.marks["consultation"].position
        for f in found["facts"]
        for k in f["known_by"]
    )
    before = knowledge(history, as_of=s.marks["reported"].at - timedelta(microseconds=1))
    assert before["facts"] == []
    entries = timeline(history, as_of=s.marks["police_signed"].at)["entries"]
    assert entries[-1]["position"] == s.marks["police_signed"].position
    assert len(entries) == 10


def test_the_deadline_findings(scenario: Scenario) -> None:
    s = scenario
    marks = s.marks
    now = datetime.now(UTC)
    # The consultation is due at once (0 hours): the one recorded after the report is late.
    found = deadlines(gather(s.app, s.case_id), now=now, consultation_due=timedelta(0))
    start = start_of_day(FOUND_ON)

    def hours(mark: str) -> float:
        return round((marks[mark].at - start).total_seconds() / 3600, 2)

    def milestone(step: str, label: str, mark: str, **extra: str) -> dict[str, Any]:
        m = marks[mark]
        return {
            "step": step,
            "label_zh": label,
            "at": m.iso,
            "position": m.position,
            "hours_since_found": hours(mark),
            **extra,
        }

    assert found["found_on"] == FOUND_ON.isoformat()
    assert found["consultation_due_hours"] == 0
    assert found["milestones"] == [
        milestone("reported", "上报", "reported"),
        milestone("consultation", "首次会商", "consultation"),
        milestone("assignment", "交办", "school_assigned", assignment_id=s.school_aid, unit=SCHOOL),
        milestone("assignment", "交办", "police_assigned", assignment_id=s.police_aid, unit=POLICE),
        milestone("signed_for", "签收", "police_signed", assignment_id=s.police_aid, unit=POLICE),
    ]
    due_at = datetime.combine(s.due_on + timedelta(days=1), datetime.min.time(), LOCAL_TZ)

    def check(
        duty: str, label: str, status: str, status_label: str, **values: Any
    ) -> dict[str, Any]:
        return {
            "duty": duty,
            "label_zh": label,
            "assignment_id": None,
            "quarter": None,
            "due_at": None,
            "done_at": None,
            "position": None,
            "status": status,
            "status_label_zh": status_label,
            "unit": None,
            "person": None,
            **values,
        }

    assert found["checks"] == [
        check(
            "consultation",
            "问题会商",
            "late",
            "逾期完成",
            due_at=marks["reported"].at.astimezone(UTC).isoformat(),
            done_at=marks["consultation"].at.astimezone(UTC).isoformat(),
            position=marks["consultation"].position,
            unit=OFFICE,
            person="coordinator-1",
        ),
        # The school never signed for its assignment, and it ended with the file.
        check(
            "sign_for",
            "任务签收",
            "missed",
            "未完成(已超期)",
            assignment_id=s.school_aid,
            unit=SCHOOL,
        ),
        check(
            "assignment_due",
            "任务办结期限",
            "ended",
            "任务已结束(未办结)",
            assignment_id=s.school_aid,
            due_at=due_at.astimezone(UTC).isoformat(),
            unit=SCHOOL,
        ),
        check(
            "sign_for",
            "任务签收",
            "met",
            "按时完成",
            assignment_id=s.police_aid,
            done_at=marks["police_signed"].at.astimezone(UTC).isoformat(),
            position=marks["police_signed"].position,
            unit=POLICE,
            person="police-1",
        ),
        check(
            "assignment_due",
            "任务办结期限",
            "ended",
            "任务已结束(未办结)",
            assignment_id=s.police_aid,
            due_at=due_at.astimezone(UTC).isoformat(),
            unit=POLICE,
            person="police-1",
        ),
    ]
    # With the default day for the consultation, the same one is on time.
    on_time = deadlines(gather(s.app, s.case_id), now=now)["checks"][0]
    assert (on_time["status"], on_time["due_at"]) == (
        "met",
        (marks["reported"].at + timedelta(hours=24)).astimezone(UTC).isoformat(),
    )


def test_no_analysis_repeats_a_name_a_number_or_free_text(scenario: Scenario) -> None:
    s = scenario
    history = gather(s.app, s.case_id)
    text = json.dumps(
        [timeline(history), knowledge(history), deadlines(history, now=datetime.now(UTC))],
        ensure_ascii=False,
    )
    assert len(s.secrets) == 9
    assert [secret for secret in s.secrets if secret in text] == []


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=14), nudge=st.sampled_from([-1, 0, 1]))
def test_as_of_t_equals_the_analysis_of_only_the_events_up_to_t(
    scenario: Scenario, cut: int, nudge: int
) -> None:
    """For any instant T (each step's instant, a microsecond either side), the matrix and the
    timeline as of T are those of a history holding only the events recorded up to T."""
    s = scenario
    history = gather(s.app, s.case_id)
    steps = history.steps
    as_of = (steps[cut].at if cut < len(steps) else steps[-1].at) + timedelta(microseconds=nudge)
    only = history_of(s.case_id, [(p.position, p.event) for p in steps if p.at <= as_of])
    assert knowledge(history, as_of=as_of)["facts"] == knowledge(only)["facts"]
    assert timeline(history, as_of=as_of)["entries"] == timeline(only)["entries"]
