"""A relay that connects while JetStream cannot answer yet sets itself up again before it
publishes (found by the chaos run, tests/reliability/test_chaos.py).

A three-node cluster with one node up has no JetStream (no meta leader): the relay's client
connects, but making the stream times out. The relay then must not go on with that half-made
connection: its unit directory was never loaded, so every assignment would be stored as
undeliverable (`unit_not_registered`) and never sent. Here the relay starts with one node up,
fails to set up at least once, the other two nodes start, and an assignment made after that
reaches its unit, with no `NoticeUndeliverable` for it. Real parts: nats-servers, the API, the
relay and a unit client as processes (`tests.messaging.stack`, `test_cluster`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.messaging.broker import EmbeddedCluster
from tests.messaging.stack import Stack, wait_for
from tests.messaging.test_cluster import POLICE, build_cluster_stack
from tests.messaging.test_delivery import assign, received, report


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = build_cluster_stack(tmp_path)
    try:
        yield built
    finally:
        built.close()


def test_a_relay_that_met_jetstream_not_ready_delivers_once_it_is(stack: Stack) -> None:
    cluster = stack.broker
    assert isinstance(cluster, EmbeddedCluster)
    cluster.stop()
    cluster.restart(0)  # one node of three: clients connect, JetStream does not answer
    stack.start_api()
    relay = stack.start_relay()
    stack.wait_api()
    wait_for(lambda: bool(relay.events("relay_waiting")), 90, "the relay to fail its set-up")
    assert not relay.events("relay_connected"), "the relay set up without JetStream"
    for node in (1, 2):
        cluster.restart(node)
    cluster.wait_ready(60)
    wait_for(lambda: bool(relay.events("relay_connected")), 90, "the relay to set up")
    police = stack.listeners[POLICE] = stack.start_listener(POLICE)
    assignment_id = assign(stack, report(stack), POLICE)
    wait_for(lambda: bool(received(police, assignment_id)), 90, "the assignment at the police")
    undeliverable = [
        line
        for line in relay.events("message_undeliverable")
        if line.get("kind") == "assignment"
    ]
    assert undeliverable == [], undeliverable
