"""The broker down for a while during commands (issue 22, "Outages").

A real nats-server (`tests.messaging.stack`) is stopped under a running API, relay and two unit
clients, stays down for `OUTAGE_SECONDS` (15 s in `make test`; a minute in `make soak`) while
assignments keep being posted, then is started again on the same port. What must hold: every
command is taken (201) while the broker is away (the API never talks to it); afterwards every
assignment reaches its unit's inbox exactly once (checked by assignment id and message id), is
stored once in the stream, and has one `NoticePublished` fact. The shorter relay-crash case is
`tests/messaging/test_outage.py`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest

from domain.clock import local_today
from domain.notices import NoticePublished
from domain.taxonomy import Role
from tests.integration.planted import planted_case
from tests.messaging.stack import Stack, build_stack, wait_for
from tests.messaging.test_outage import assignment_ids, connected, facts, holds, post

POLICE = "chengguan-police-station"
SCHOOL = "chengguan-school-district-office"
OFFICE = "chengguan-governance-office"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = build_stack(
        tmp_path,
        [
            (POLICE, "城关派出所", "police_station"),
            (SCHOOL, "城关学区办", "school_district_office"),
        ],
    )
    try:
        built.start_api()
        built.start_relay()
        for unit in (POLICE, SCHOOL):
            built.listeners[unit] = built.start_listener(unit)
        built.wait_api()
        yield built
    finally:
        built.close()


@pytest.mark.parametrize(
    "outage_seconds", [15, pytest.param(60, marks=pytest.mark.soak)], ids=["15s", "60s"]
)
def test_commands_go_on_while_the_broker_is_down_and_every_notice_arrives_once(
    stack: Stack, outage_seconds: int
) -> None:
    for listener in stack.listeners.values():
        wait_for(partial(connected, listener), 60, "the unit clients")
    relay = stack.relay
    assert relay is not None
    wait_for(lambda: bool(relay.events("relay_connected")), 60, "the relay")

    reporter = stack.headers(Role.REPORTER, "dongshan-village")
    coordinator = stack.headers(Role.COORDINATOR, OFFICE)
    due = (local_today() + timedelta(days=10)).isoformat()
    expected: dict[str, set[str]] = {POLICE: set(), SCHOOL: set()}
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:

        def assign(unit: str) -> None:
            # A new case for each (a unit holds one open assignment per function and case).
            case = post(client, "/v1/cases", planted_case("dongshan-village").body, reporter)
            body = {"unit": unit, "function": "family", "task": "家访。", "due_on": due}
            expected[unit].add(post(client, f"/v1/cases/{case}/assignments", body, coordinator))

        assign(POLICE)  # before: delivered while the broker is up
        stack.broker.stop()
        down_since = time.monotonic()
        during = 0
        # Commands all through the outage, spread over it: each taken at once.
        while time.monotonic() - down_since < outage_seconds:
            assign((POLICE, SCHOOL)[during % 2])
            during += 1
            time.sleep(min(2.0, outage_seconds / 10))
        wait_for(lambda: bool(relay.events("relay_waiting")), 30, "the relay to notice")
        stack.broker.start()
        assign(SCHOOL)  # after
    assert during >= 8

    for unit, listener in stack.listeners.items():
        wait_for(partial(holds, listener, expected[unit]), 120, f"all assignments at {unit}")
    time.sleep(1.0)  # time for any copy to show up
    for unit, listener in stack.listeners.items():
        counts = assignment_ids(listener)
        assert set(counts) == expected[unit]
        assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
        messages = Counter(e["message_id"] for e in listener.entries())
        assert max(messages.values()) == 1
    total = sum(len(ids) for ids in expected.values())
    assert Counter(stack.stream_kinds())["assignment"] == total
    wait_for(lambda: len(facts(stack, NoticePublished)) >= total, 60, "the facts")
    published = [f for f in facts(stack, NoticePublished) if f.assignment_id]
    assert Counter(f.assignment_id for f in published) == Counter(set().union(*expected.values()))
