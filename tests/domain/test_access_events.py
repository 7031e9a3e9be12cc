"""Access events, version 2 (issue 13): each carries the case version, the channel and the
client; an event stored as version 1 reads with the values that say it recorded none of them."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from domain.access import (
    IN_PROCESS_CLIENT,
    UNRECORDED_CHANNEL,
    AccessDenied,
    BreakGlassAccessed,
    CaseAccessed,
    Channel,
    Client,
    Decision,
    access_event,
)
from domain.taxonomy import Purpose
from tests.domain.builders import COORDINATOR

CLIENT = Client(address="203.0.113.7", user_agent="Mozilla/5.0 (X11; Linux x86_64)")


def test_the_channels_are_the_contracts() -> None:
    assert {str(c) for c in Channel} == {
        "api",
        "ledger",
        "lookup",
        "export",
        "bundle",
        "report",
        "worklist",
        "inbox",
        "timeline",
        "knowledge",
        "deadlines",
        "compliance",
        "web",
    }
    assert UNRECORDED_CHANNEL not in {str(c) for c in Channel}


@pytest.mark.parametrize(
    ("decision", "kind"),
    [
        (Decision(True, "coordinator_same_street", frozenset({"id"})), CaseAccessed),
        (Decision(True, "break_glass", frozenset({"id"}), break_glass=True), BreakGlassAccessed),
        (Decision(False, "out_of_scope"), AccessDenied),
    ],
)
def test_every_access_event_carries_version_channel_and_client(
    decision: Decision, kind: type[Any]
) -> None:
    case_id = uuid4()
    event = access_event(
        decision,
        case_id=case_id,
        actor=COORDINATOR,
        purpose=Purpose.CONSULTATION,
        request_id="req-1",
        case_version=7,
        channel=Channel.LEDGER,
        client=CLIENT,
        break_glass_reason="the child is missing since this morning",
    )
    assert type(event) is kind
    assert event.case_id == case_id
    assert event.case_version == 7
    assert event.channel == "ledger"
    assert event.client == {
        "address": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    }
    assert type(event).class_version == 2


def test_a_refusal_naming_no_case_records_no_version() -> None:
    event = access_event(
        Decision(False, "ledger_not_for_role:admin"),
        case_id=uuid4(),
        actor=COORDINATOR,
        purpose=Purpose.CONSULTATION,
        request_id="req-2",
        case_version=None,
        channel=Channel.REPORT,
        client=IN_PROCESS_CLIENT,
    )
    assert event.case_version is None
    assert event.channel == "report"
    assert event.client == {"address": "in-process", "user_agent": ""}


@pytest.mark.parametrize("kind", [CaseAccessed, BreakGlassAccessed, AccessDenied])
def test_upcast_v1_gives_the_values_that_say_nothing_was_recorded(kind: type[Any]) -> None:
    state: dict[str, Any] = {"case_id": uuid4(), "rule": "out_of_scope", "request_id": "r"}
    kind.upcast_v1_v2(state)
    assert state["case_version"] is None
    assert state["channel"] == "unrecorded"
    assert state["client"] == {"address": "", "user_agent": ""}
    # Each upcast gets a client of its own: changing one event's never changes another's.
    other: dict[str, Any] = {}
    kind.upcast_v1_v2(other)
    assert other["client"] is not state["client"]
