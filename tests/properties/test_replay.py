"""Replay equals state for any prefix (issue 22, Properties).

For a random sequence of commands on one file (any of them may be refused: a refusal changes
nothing), the state after k stored events equals the aggregate rebuilt from the first k events:

- pure, by `domain.application.replay` over the events;
- through the store's encrypted form (`gateway.store.eventstore.BoundMapper`: what is stored
  is what is replayed);
- through a `CaseTrail`'s repository at version k, which starts from the latest snapshot at or
  before k (one every `SNAPSHOT_EVERY` events) and replays the rest: the path every read and
  every look-back (`read_case_as_of`) takes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from domain import commands as cmd
from domain import errors
from domain.access import Actor
from domain.application import CaseTrail, replay
from domain.case import Case
from domain.clock import local_today
from domain.taxonomy import ProtectionFunction, RiskLevel
from gateway.store.eventstore import (
    ENV_CIPHER_KEYS,
    BoundAESGCMCipher,
    BoundMapper,
    new_key_text,
)
from tests.domain.builders import (
    COORDINATOR,
    HEALTH_CENTRE,
    POLICE,
    POLICE_MEMBER,
    register_units,
    report_clue,
)
from tests.properties.conftest import bounded

NOTE = "按计划跟进。"
Change = tuple[Actor, str, Callable[[Case], Any]]


def state(case: Any) -> dict[str, Any] | None:
    if case is None:
        return None
    return {k: v for k, v in vars(case).items() if k != "_pending_events"}


def first_assignment(case: Case) -> UUID:
    if not case.assignments:
        raise errors.UnknownAssignment("none yet")
    # The first assigned (insertion order): the same on every run of an example.
    return UUID(next(iter(case.assignments)))


def changes() -> dict[str, Change]:
    """One command of each kind, by whoever may give it (a refusal is part of the sequence)."""
    today = local_today()
    coordinator, police = COORDINATOR.as_record(), POLICE_MEMBER.as_record()
    return {
        "follow_up": (
            COORDINATOR,
            "record_follow_up",
            lambda c: c.record_follow_up(
                cmd.RecordFollowUp(visited_on=today, notes=NOTE), by=coordinator
            ),
        ),
        "escalate": (
            COORDINATOR,
            "escalate",
            lambda c: c.escalate(cmd.Escalate(reason=NOTE), by=coordinator),
        ),
        "urgent": (
            COORDINATOR,
            "assess_risk",
            lambda c: c.assess_risk(
                cmd.AssessRisk(level=RiskLevel.URGENT, reason=NOTE), by=coordinator
            ),
        ),
        "medium": (
            COORDINATOR,
            "assess_risk",
            lambda c: c.assess_risk(
                cmd.AssessRisk(level=RiskLevel.MEDIUM, reason=NOTE), by=coordinator
            ),
        ),
        "consult": (
            COORDINATOR,
            "hold_consultation",
            lambda c: c.hold_consultation(
                cmd.HoldConsultation(held_on=today, participants=["police"], decision=NOTE),
                by=coordinator,
            ),
        ),
        "assign_police": (
            COORDINATOR,
            "assign_unit",
            lambda c: c.assign_unit(
                cmd.AssignUnit(
                    unit=POLICE,
                    function=ProtectionFunction.JUDICIAL,
                    task=NOTE,
                    due_on=today + timedelta(days=7),
                ),
                by=coordinator,
            ),
        ),
        "assign_health": (
            COORDINATOR,
            "assign_unit",
            lambda c: c.assign_unit(
                cmd.AssignUnit(
                    unit=HEALTH_CENTRE,
                    function=ProtectionFunction.SOCIETY,
                    task=NOTE,
                    due_on=today + timedelta(days=3),
                ),
                by=coordinator,
            ),
        ),
        "sign_for": (
            POLICE_MEMBER,
            "acknowledge_assignment",
            lambda c: c.acknowledge_assignment(first_assignment(c), unit=POLICE, by=police),
        ),
        "result": (
            POLICE_MEMBER,
            "report_assignment_result",
            lambda c: c.report_assignment_result(
                first_assignment(c),
                cmd.ReportAssignmentResult(
                    measures=["home_visit"], outcome=NOTE, recommendation="close"
                ),
                by=police,
            ),
        ),
        "end": (
            COORDINATOR,
            "end_assignment",
            lambda c: c.end_assignment(first_assignment(c), outcome="completed", by=coordinator),
        ),
        "close": (
            COORDINATOR,
            "close",
            lambda c: c.close(cmd.CloseCase(reason="resolved", note=NOTE), by=coordinator),
        ),
        "reopen": (
            COORDINATOR,
            "reopen",
            lambda c: c.reopen(cmd.ReopenCase(reason=NOTE), by=coordinator),
        ),
    }


CHANGES = changes()
# The duty cycle's commands weigh more: a sign-for or a result counts only after an assignment.
commands = st.sampled_from(sorted(CHANGES) + ["assign_police", "sign_for", "result"] * 2)
sequences = st.lists(commands, min_size=3, max_size=30)


def run(sequence: list[str]) -> tuple[list[Any], list[dict[str, Any] | None]]:
    """The events of a file given `sequence`, and its state after each event (index k: after
    the first k events; refused commands leave neither)."""
    case = Case.report(report_clue(), street="chengguan-street", by=COORDINATOR.as_record())
    events = list(case.collect_events())
    states: list[dict[str, Any] | None] = [None, copy.deepcopy(state(case))]
    for name in sequence:
        _, _, change = CHANGES[name]
        try:
            change(case)
        except errors.DomainError:
            assert case.pending_events == []
            continue
        new = case.collect_events()
        assert len(new) == 1
        events += new
        states.append(copy.deepcopy(state(case)))
    return events, states


@given(sequence=sequences)
@bounded()
def test_every_prefix_replays_to_the_state_after_it(sequence: list[str]) -> None:
    events, states = run(sequence)
    for k in range(len(events) + 1):
        assert state(replay(None, events[:k])) == states[k], f"prefix of {k} events"


def mapper() -> BoundMapper:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    cipher = BoundAESGCMCipher({ENV_CIPHER_KEYS: new_key_text()})  # type: ignore[arg-type]
    return BoundMapper(transcoder=transcoder, cipher=cipher)


@given(sequence=sequences)
@bounded(max_examples=30)
def test_the_stored_form_replays_to_the_same_states(sequence: list[str]) -> None:
    events, states = run(sequence)
    through = mapper()
    back = [through.to_domain_event(through.to_stored_event(e)) for e in events]
    for k in range(len(back) + 1):
        assert state(replay(None, back[:k])) == states[k], f"prefix of {k} events"


@pytest.fixture(scope="module")
def application() -> Iterator[CaseTrail]:
    app = CaseTrail(env={})  # the library's in-memory store, snapshots on
    register_units(app, POLICE, HEALTH_CENTRE)
    yield app
    app.close()


@given(sequence=st.lists(commands, min_size=15, max_size=40))
@bounded(max_examples=15)
def test_the_repository_at_any_version_is_the_state_then(
    application: CaseTrail, sequence: list[str]
) -> None:
    case_id = application.report_clue(report_clue(), COORDINATOR)
    states: dict[int, dict[str, Any] | None] = {1: state(application.repository.get(case_id))}
    for name in sequence:
        actor, action, change = CHANGES[name]
        try:
            application.change_case(case_id, actor, action, change)
        except errors.DomainError:
            continue
        now: Any = application.repository.get(case_id)
        states[now.version] = copy.deepcopy(state(now))
    events = list(application.events.get(case_id))
    assert len(events) == max(states)
    for version, expected in states.items():
        loaded: Any = application.repository.get(case_id, version=version, projector_func=replay)
        assert state(loaded) == expected, f"version {version}"
        assert state(replay(None, events[:version])) == expected
