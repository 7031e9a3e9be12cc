"""`record_of`: every access event becomes one record, every other event none."""

from __future__ import annotations

from uuid import UUID, uuid4

from eventsourcing.domain import DomainEvent

from domain.access import (
    NO_CASE,
    Actor,
    Channel,
    Client,
    Decision,
    access_event,
    command_refused,
)
from domain.compliance.records import RecordKind, record_of
from domain.refusals import RefusalReason, refusal_event
from domain.taxonomy import Purpose, Role

ACTOR = Actor(user="u-1", role=Role.UNIT_MEMBER, unit="pcs-1", street="s-1")
CLIENT = Client(address="10.0.0.9", user_agent="probe/1")


def _event(decision: Decision, case_id: UUID) -> DomainEvent:
    return access_event(
        decision,
        case_id=case_id,
        actor=ACTOR,
        purpose=Purpose.INTERVENTION,
        request_id="r-1",
        case_version=7,
        channel=Channel.API,
        client=CLIENT,
        break_glass_reason="x" * 20 if decision.break_glass else None,
    )


def test_a_grant_a_refusal_and_a_break_glass_read_become_records() -> None:
    case_id = uuid4()
    granted = record_of(
        3, _event(Decision(True, "unit_member_assigned", frozenset({"id"})), case_id)
    )
    refused = record_of(4, _event(Decision(False, "out_of_scope"), case_id))
    glass = record_of(5, _event(Decision(True, "break_glass", frozenset({"id"}), True), case_id))
    assert granted is not None and refused is not None and glass is not None
    assert (granted.kind, granted.granted, granted.fields, granted.position) == (
        RecordKind.READ,
        True,
        ("id",),
        3,
    )
    assert (refused.kind, refused.granted, refused.fields, refused.rule) == (
        RecordKind.REFUSED_READ,
        False,
        (),
        "out_of_scope",
    )
    assert glass.break_glass and not granted.break_glass
    assert (granted.user, granted.role, granted.unit, granted.street) == (
        "u-1",
        "unit_member",
        "pcs-1",
        "s-1",
    )
    assert (granted.case_id, granted.case_version, granted.client_address) == (
        case_id,
        7,
        "10.0.0.9",
    )


def test_a_refused_command_is_a_record_and_no_case_is_none() -> None:
    event = command_refused(
        case_id=NO_CASE,
        actor=ACTOR,
        command="close",
        rule="not_permitted",
        request_id="r-2",
        channel=Channel.API,
        client=CLIENT,
    )
    record = record_of(9, event)
    assert record is not None
    assert (record.kind, record.case_id, record.command, record.purpose) == (
        RecordKind.REFUSED_COMMAND,
        None,
        "close",
        "",
    )


def test_other_events_are_not_records() -> None:
    event = refusal_event(
        reason=RefusalReason.MISSING,
        method="GET",
        route="/v1/cases",
        case_id=None,
        client="x",
        request_id="r",
        suppressed=0,
    )
    assert record_of(1, event) is None
