"""Signed checkpoints published over NATS to every unit, against a real nats-server.

A checkpoint signed with `casetrail checkpoint create` is stored beside the events; the relay
(its own process) finds it past its checkpoint position, broadcasts it sealed to every
registered unit, and each unit's `casetrail unit listen` checks its signature and keeps it in
`<inbox>.checkpoints.json`, which `casetrail verify --checkpoint` reads as it stands.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from domain.taxonomy import Role
from gateway.messaging.relay import checkpoint_recorder
from gateway.messaging.unit_client import checkpoint_file_of
from projections.evidence.checkpoints import CheckpointStore, load_checkpoints
from tests.integration.planted import planted_case
from tests.messaging.stack import CASETRAIL, Listener, Stack, build_stack, wait_for

POLICE = "chengguan-police-station"
SCHOOL = "chengguan-school-district-office"
VILLAGE = "dongshan-village"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        tmp_path_factory.mktemp("checkpoints"),
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


def casetrail(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CASETRAIL, *args],
        env=stack.env,
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def held_seqs(listener: Listener) -> list[int]:
    path = checkpoint_file_of(listener.inbox)
    if not path.exists():
        return []
    return [c.seq for c in load_checkpoints(path)]


def test_a_signed_checkpoint_reaches_every_unit_which_keeps_it_for_verify(stack: Stack) -> None:
    for _ in range(3):
        answer = httpx.post(
            f"{stack.api_url}/v1/cases",
            json=planted_case(VILLAGE).body,
            headers=stack.headers(Role.REPORTER, VILLAGE),
        )
        assert answer.status_code == 201, answer.text
    created = casetrail(stack, "checkpoint", "create")
    assert created.returncode == 0, created.stderr
    with stack.application() as application:
        stored = CheckpointStore(application.recorder).all()
    assert stored and stored[-1].describe() in created.stdout
    seqs = [c.seq for c in stored]

    def every_unit_holds_the_latest() -> bool:
        return all(held_seqs(lst)[-1:] == seqs[-1:] for lst in stack.listeners.values())

    wait_for(every_unit_holds_the_latest, 20, "every unit to keep the checkpoint")

    for unit, listener in stack.listeners.items():
        path = checkpoint_file_of(listener.inbox)
        held = load_checkpoints(path)
        # Each checkpoint once, exactly as stored and signed (the API's own maintainer may
        # have signed earlier ones: they arrive too).
        assert [c.seq for c in held] == sorted({c.seq for c in held})
        assert {c.seq: c for c in stored}.items() >= {c.seq: c for c in held}.items()
        assert path.stat().st_mode & 0o077 == 0
        # Not an assignment: nothing in the inbox, nothing reported to the API.
        assert all(e["kind"] != "checkpoint" for e in listener.entries()), unit
        assert not listener.reported()
        assert listener.process.events("checkpoint_received")
        assert not listener.process.events("message_rejected")

        verified = casetrail(stack, "verify", "--checkpoint", str(path))
        assert "Traceback" not in verified.stderr, verified.stderr
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("intact"), verified.stdout

    # One message per checkpoint per unit, each with its Nats-Msg-Id; the relay's checkpoint
    # position is past the latest, recorded once JetStream acknowledged them.
    messages = stack.stream_messages()
    ids = [headers.get("Nats-Msg-Id") for _, headers, _ in messages]
    assert len(ids) == len(set(ids))
    assert stack.relay is not None
    published = stack.relay.events("checkpoints_published")
    assert sum(line["messages"] for line in published) >= len(stack.listeners) * len(stored)
    with stack.application() as application:
        assert checkpoint_recorder(application).position(application.name) == seqs[-1]
    # The sealed bodies name neither the checkpoint nor the unit in the clear.
    for _, _, data in messages:
        assert "casetrail-checkpoint/v1" not in data.decode()
        assert json.loads(data)["to"] not in (POLICE, SCHOOL)
