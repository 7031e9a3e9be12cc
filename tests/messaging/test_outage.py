"""Crashes and outages: nothing lost, nothing doubled.

A burst of assignments over HTTP to two units; during it the relay is killed with SIGKILL and the
nats-server is stopped; the API keeps taking commands; then both come back. Every assignment
must reach its unit's inbox exactly once, be stored once in the stream, have one
`NoticePublished` fact (stored by the relay after the acks, before its position: the SIGKILLed
relay's copies are refused by the store) and one `NoticeReceived` (the unit client's receipt).
Then the relay's position is lost outright (as if it had been killed after JetStream acknowledged
a batch but before recording the position): it publishes everything again, the stream's
deduplication by `Nats-Msg-Id` drops every copy, and the store refuses every copy of the facts.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from eventsourcing.utils import get_topic

from domain.clock import local_today
from domain.notices import NoticePublished, NoticeReceived
from domain.taxonomy import Role
from gateway.messaging.relay import relay_recorder
from tests.integration.planted import planted_case
from tests.messaging.stack import Listener, Stack, build_stack, wait_for

POLICE = "chengguan-police-station"
SCHOOL = "chengguan-school-district-office"
OFFICE = "chengguan-governance-office"
CASES = 14  # two assignments each (one per unit): 28 in the burst
OUTAGE_SECONDS = 2.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        tmp_path_factory.mktemp("outage"),
        [
            (POLICE, "城关派出所", "police_station"),
            (SCHOOL, "城关学区办", "school_district_office"),
        ],
    )
    try:
        built.start_api()
        built.start_relay("--batch-size", "2")
        for unit in (POLICE, SCHOOL):
            built.listeners[unit] = built.start_listener(unit)
        built.wait_api()
        yield built
    finally:
        built.close()


def facts(stack: Stack, cls: type[Any]) -> list[Any]:
    """Every stored event of one notice fact class."""
    with stack.application() as application:
        return [
            e
            for n in application.notifications(topics=(get_topic(cls),))
            if isinstance(e := application.mapper.to_domain_event(n), cls)
        ]


def stream_ids(stack: Stack) -> list[tuple[str, bytes]]:
    return [(json.loads(data)["id"], data) for _, _, data in stack.stream_messages()]


def inbox_ids(stack: Stack) -> set[str]:
    return {
        e["message_id"]
        for listener in stack.listeners.values()
        for e in listener.entries()
        if e["kind"] == "assignment"
    }


def post(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    answer = client.post(url, json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    found = answer.json()
    return str(found.get("assignment_id") or found["id"])


def assignment_ids(listener: Listener) -> Counter[str]:
    return Counter(a["id"] for a in listener.assignments())


def connected(listener: Listener) -> bool:
    return bool(listener.process.events("unit_connected"))


def holds(listener: Listener, expected: set[str]) -> bool:
    return set(assignment_ids(listener)) >= expected


def diagnosis(stack: Stack, expected: dict[str, set[str]]) -> str:
    """Where the notices stopped: each client's state and its log's end, the stream, the relay."""
    lines = [f"stream: {Counter(stack.stream_kinds())}"]
    for unit, listener in stack.listeners.items():
        missing = expected[unit] - set(assignment_ids(listener))
        lines.append(
            f"{unit}: exit={listener.process.popen.poll()} missing={len(missing)} "
            f"of {len(expected[unit])}"
        )
        lines += listener.process.text().splitlines()[-25:]
    if stack.relay is not None:
        lines.append(f"relay: exit={stack.relay.popen.poll()}")
        lines += stack.relay.text().splitlines()[-15:]
    return "\n".join(lines)


def test_a_burst_through_a_relay_crash_and_a_broker_outage_arrives_exactly_once(
    stack: Stack,
) -> None:
    for listener in stack.listeners.values():
        wait_for(partial(connected, listener), 30, "the unit clients")
    first_relay = stack.relay
    assert first_relay is not None
    wait_for(lambda: bool(first_relay.events("relay_connected")), 30, "the relay")

    reporter = stack.headers(Role.REPORTER, "dongshan-village")
    coordinator = stack.headers(Role.COORDINATOR, OFFICE)
    due = (local_today() + timedelta(days=10)).isoformat()
    expected: dict[str, set[str]] = {POLICE: set(), SCHOOL: set()}
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        cases = [
            post(client, "/v1/cases", planted_case("dongshan-village").body, reporter)
            for _ in range(CASES)
        ]
        plan = [(case, unit) for case in cases for unit in (POLICE, SCHOOL)]
        # The burst never stops, but waits at these points for the outage to be in place:
        # items 12-19 are posted while the broker is down, 20- after it is back.
        broker_down, broker_back = threading.Event(), threading.Event()
        gates = {12: broker_down, 20: broker_back}
        progress: list[int] = [0]
        failures: list[str] = []

        def burst() -> None:
            try:
                for index, (case, unit) in enumerate(plan):
                    if index in gates and not gates[index].wait(60):
                        raise TimeoutError(f"gate {index} never opened")
                    body = {"unit": unit, "function": "family", "task": "家访。", "due_on": due}
                    url = f"/v1/cases/{case}/assignments"
                    expected[unit].add(post(client, url, body, coordinator))
                    progress[0] += 1
                    time.sleep(0.05)
            except Exception as exc:  # reported below: every command must be taken
                failures.append(repr(exc))

        sender = threading.Thread(target=burst)
        sender.start()
        try:
            wait_for(lambda: progress[0] >= 5, 30, "the burst to start")
            first_relay.stop(signal.SIGKILL)  # mid-burst, while it publishes
            relay = stack.start_relay("--batch-size", "2")
            wait_for(lambda: bool(relay.events("relay_connected")), 30, "the relay to return")
            stack.broker.stop()  # the broker goes away under the running relay
            down_since = time.monotonic()
            broker_down.set()
            wait_for(lambda: progress[0] >= 20, 30, "commands taken without the broker")
            wait_for(lambda: bool(relay.events("relay_waiting")), 30, "the relay to notice")
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
            stack.broker.start()
            broker_back.set()
        finally:
            broker_down.set()
            broker_back.set()
            sender.join(60)
    assert failures == []
    assert progress[0] == len(plan)
    assert sum(len(ids) for ids in expected.values()) == len(plan)

    # Every assignment in its unit's inbox, once; none in the other's.
    for unit, listener in stack.listeners.items():
        wait_for(
            partial(holds, listener, expected[unit]),
            60,
            f"all assignments at {unit}",
            explain=partial(diagnosis, stack, expected),
        )
    time.sleep(1.0)  # time for any copy to show up
    for unit, listener in stack.listeners.items():
        counts = assignment_ids(listener)
        assert set(counts) == expected[unit]
        assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]

    # Each message once in the stream, too (`Nats-Msg-Id` deduplication across the crash).
    ids = Counter(json.loads(data)["id"] for _, _, data in stack.stream_messages())
    assert max(ids.values()) == 1
    # Besides the assignments, only the signed checkpoints every unit gets (docs/evidence.md).
    kinds = Counter(stack.stream_kinds())
    assert kinds["assignment"] == len(plan)
    assert set(kinds) <= {"assignment", "checkpoint"}

    # One NoticePublished per message in the stream, naming its unit and assignment; the
    # assignments of the burst, no more (the case ids of the burst only).
    assignment_messages = {
        mid: json.loads(data)["to"] for mid, data in stream_ids(stack) if mid in inbox_ids(stack)
    }
    wait_for(lambda: len(facts(stack, NoticePublished)) >= len(plan), 30, "the facts")
    published = facts(stack, NoticePublished)
    assert Counter(f.message_id for f in published) == Counter(set(assignment_messages))
    assert {f.assignment_id for f in published} == set().union(*expected.values())
    assert {str(f.case_id) for f in published} == set(cases)

    # And each notice's receipt stored once through the API, by its unit's client.
    wait_for(lambda: len(facts(stack, NoticeReceived)) == len(plan), 60, "every NoticeReceived")
    received = facts(stack, NoticeReceived)
    assert Counter(f.message_id for f in received) == Counter(set(assignment_messages))
    for listener in stack.listeners.values():
        reported = Counter(r["message_id"] for r in listener.reported())
        assert max(reported.values()) == 1


def test_a_lost_relay_position_republishes_and_the_stream_drops_every_copy(
    stack: Stack,
) -> None:
    assert stack.relay is not None
    before = {unit: listener.entries() for unit, listener in stack.listeners.items()}
    stored_before = len(stack.stream_messages())
    published_before = sum(line["messages"] for line in stack.relay.events("relay_published"))
    stack.relay.stop()
    with stack.application() as application:
        recorder = relay_recorder(application)
        assert recorder.position(application.name) > 0
        recorder.reset(application.name)  # as if every batch had been published, never recorded
        assert recorder.position(application.name) == 0
        head = application.recorder.max_notification_id()
    relay = stack.start_relay("--batch-size", "50")

    def caught_up() -> bool:
        with stack.application() as application:
            return relay_recorder(application).position(application.name) == head

    wait_for(caught_up, 60, "the relay to publish everything again")
    republished = relay.events("relay_published")
    assert sum(line["messages"] for line in republished) >= published_before > 0
    assert sum(line["duplicates"] for line in republished) == sum(
        line["messages"] for line in republished
    )
    assert len(stack.stream_messages()) == stored_before
    # The facts of every re-published notice: refused by the store, none stored twice.
    published = facts(stack, NoticePublished)
    assert len(published) == len({f.message_id for f in published}) > 0
    assert sum(line["facts"] for line in republished) == 0  # every copy refused by the store
    time.sleep(1.0)
    assert {unit: lst.entries() for unit, lst in stack.listeners.items()} == before
