"""The reference unit client of `docs/specs/examples/`, written from `docs/specs/notice.md` alone,
against a real nats-server from the wheel and the real service (`tests/messaging/stack.py`).

It runs as a subprocess of the venv's Python with `-S` and only the venv's site-packages on its
path, so that the project's editable install is not loaded: the test first shows that `gateway`,
`domain` and `projections` cannot be imported there. What it proves: the client prints exactly
the content the service sealed (opened here with the project's own code), with the signature
checked; its confirmation is recorded by the service (the assignment's `acknowledged_at`); a
notice altered in the stream, and every notice under a wrong service key, is refused with
`bad_signature`, a re-addressed one with `wrong_recipient` and a replayed one with `replayed`,
none kept or confirmed. Beside that, the client's opening code
agrees with every vector of `docs/specs/vectors/notice.json` (opens each positive one to its
content, refuses each negative one with its reason) and its checkpoint check with every vector
of `docs/specs/vectors/checkpoint.json`, and the file is clean under ruff and
mypy --strict, which `make lint`/`make typecheck` do not run on docs/.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from domain.clock import local_today
from domain.notices import NoticeReceived, received_id
from domain.taxonomy import Role
from gateway import keyring
from gateway.messaging.sealing import Rejected, UnitCredentials, open_envelope
from tests.integration.planted import planted_case
from tests.messaging.stack import Stack, build_stack, wait_for

CLIENT = Path(__file__).resolve().parents[2] / "docs" / "specs" / "examples" / "unit_client.py"
VECTORS = CLIENT.parents[1] / "vectors" / "notice.json"
CHECKPOINT_VECTORS = CLIENT.parents[1] / "vectors" / "checkpoint.json"
POLICE = "chengguan-police-station"
OFFICE = "chengguan-governance-office"
VILLAGE = "dongshan-village"
TASK = "到校了解情况并约谈家长。参考客户端"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        tmp_path_factory.mktemp("reference-client"),
        [(POLICE, "城关派出所", "police_station"), (OFFICE, "城关街道综治办", "governance_office")],
    )
    try:
        built.start_api()
        built.start_relay()
        built.wait_api()
        yield built
    finally:
        built.close()


# --- the client's environment: no project on its path ---------------------------------------


def outside_env() -> dict[str, str]:
    """Only the venv's site-packages (nats-py, cryptography) on the path; with `-S` its .pth
    files, among them the project's editable finder, are not run."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "PYTHONNOUSERSITE": "1",
    }


def outside(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", *args],
        env=outside_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_client(
    stack: Stack, name: str, service_key: Path | None = None
) -> tuple[list[dict[str, Any]], Path]:
    token_file = stack.root / f"{name}.token"
    token_file.write_text(stack.token(Role.UNIT_MEMBER, POLICE))
    inbox = stack.root / f"{name}.inbox.jsonl"
    result = outside(
        [
            str(CLIENT),
            "--credentials",
            str(stack.credentials[POLICE]),
            "--service-key",
            str(service_key or stack.settings.keys_dir / keyring.SERVICE_PUB),
            "--nats",
            stack.nats.servers[0],
            "--inbox",
            str(inbox),
            "--api",
            stack.api_url,
            "--token-file",
            str(token_file),
            "--idle",
            "3",
        ],
        cwd=stack.root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line], inbox


# --- the service's side -----------------------------------------------------------------------


def assign_new_case(stack: Stack) -> tuple[str, str]:
    answer = httpx.post(
        f"{stack.api_url}/v1/cases",
        json=planted_case(VILLAGE).body,
        headers=stack.headers(Role.REPORTER, VILLAGE),
    )
    assert answer.status_code == 201, answer.text
    case_id = str(answer.json()["id"])
    answer = httpx.post(
        f"{stack.api_url}/v1/cases/{case_id}/assignments",
        json={
            "unit": POLICE,
            "function": "judicial",
            "task": TASK,
            "due_on": (local_today() + timedelta(days=7)).isoformat(),
        },
        headers=stack.headers(Role.COORDINATOR, OFFICE),
    )
    assert answer.status_code == 201, answer.text
    return case_id, str(answer.json()["assignment_id"])


def acknowledged_at(stack: Stack, case_id: str, assignment_id: str) -> str | None:
    answer = httpx.get(
        f"{stack.api_url}/v1/cases/{case_id}",
        headers=stack.headers(Role.COORDINATOR, OFFICE, purpose="consultation"),
    )
    assert answer.status_code == 200, answer.text
    [found] = [a for a in answer.json()["assignments"] if a["id"] == assignment_id]
    return found["acknowledged_at"]  # type: ignore[no-any-return]


def receipts(stack: Stack, message_id: str) -> list[NoticeReceived]:
    """The `NoticeReceived` stored for a message (at most one: its id derives from it)."""
    with stack.application() as application:
        return [
            e
            for e in application.events.get(received_id(message_id))
            if isinstance(e, NoticeReceived)
        ]


def sealed_for_police(stack: Stack, assignment_id: str) -> tuple[str, bytes, dict[str, Any]]:
    """The assignment's message as stored in the stream (subject, envelope), and its content as
    the project's own code opens it."""
    police = UnitCredentials.load(stack.credentials[POLICE])
    found: list[tuple[str, bytes, dict[str, Any]]] = []

    def look() -> bool:
        for subject, _, data in stack.stream_messages():
            if json.loads(data)["to"] != police.user:
                continue
            try:
                content = open_envelope(
                    data,
                    recipient=police.user,
                    private_key=police.sealing_key,
                    service_key=police.service_key,
                ).content
            except Rejected:  # a copy an earlier test altered
                continue
            if content["kind"] == "assignment" and content["body"]["assignment"]["id"] == (
                assignment_id
            ):
                found.append((subject, data, dict(content)))
                return True
        return False

    wait_for(look, 30, "the relay to publish the assignment")

    def recorded() -> bool:
        # The relay stores its NoticePublished just after the stream's acknowledgement; a
        # receipt before that is answered 404 and retried (section 10), slower than `--idle`.
        with stack.application() as application:
            return application.published_notice(found[0][2]["id"]) is not None

    wait_for(recorded, 30, "the relay to record the publication")
    return found[0]


# --- the tests --------------------------------------------------------------------------------


def test_the_project_cannot_be_imported_where_the_client_runs(tmp_path: Path) -> None:
    for package in ("gateway", "domain", "projections"):
        result = outside(["-c", f"import {package}"], cwd=tmp_path)
        assert result.returncode != 0
        assert f"No module named '{package}'" in result.stderr
    # ...while what the spec allows is there.
    result = outside(["-c", "import nats, cryptography.hazmat.primitives.hpke"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def load_client() -> Any:
    """The same code the subprocess runs, loaded by path (it is not a package of the project)."""
    spec = importlib.util.spec_from_file_location("reference_unit_client", CLIENT)
    assert spec is not None and spec.loader is not None
    client = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = client  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(client)
    finally:
        del sys.modules[spec.name]
    return client


def test_the_client_agrees_with_every_checkpoint_vector() -> None:
    # A checkpoint notice's own signature is checked as docs/specs/checkpoint.md says.
    client = load_client()
    vectors = json.loads(CHECKPOINT_VECTORS.read_text(encoding="utf-8"))
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vectors["key"]["public_raw"]))
    other = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vectors["other_key"]["public_raw"]))
    for vector in vectors["checkpoints"]:
        assert client.checkpoint_text(vector["json"]) == bytes.fromhex(vector["signed_bytes"])
        assert client.checkpoint_refusal(vector["json"], key) is None
        assert client.checkpoint_refusal(vector["json"], other) == "signature-invalid"
    for checkpoint in vectors["file"]["checkpoints"]:
        assert client.checkpoint_refusal(checkpoint, key) is None
    assert vectors["negative"]
    for vector in vectors["negative"]:
        assert client.checkpoint_refusal(vector["checkpoint"], key) == vector["reason"], vector[
            "description"
        ]


def test_the_client_agrees_with_every_notice_vector() -> None:
    client = load_client()
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    keys = vectors["keys"]
    sealing = X25519PrivateKey.from_private_bytes(bytes.fromhex(keys["unit_sealing_private_hex"]))
    service = Ed25519PublicKey.from_public_bytes(bytes.fromhex(keys["service_signing_public_hex"]))
    assert vectors["positive"] and vectors["negative"]
    for vector in vectors["positive"]:
        opened = client.open_envelope(vector["envelope"].encode(), vector["to"], sealing, service)
        assert opened.version == vector["version"], vector["name"]
        assert json.dumps(opened.content, sort_keys=True) == json.dumps(
            json.loads(bytes.fromhex(vector["content_hex"])), sort_keys=True
        ), vector["name"]
    for vector in vectors["negative"]:
        data = (
            bytes.fromhex(vector["envelope_hex"])
            if "envelope_hex" in vector
            else vector["envelope"].encode()
        )
        with pytest.raises(client.Rejected) as refused:
            client.open_envelope(data, vector["recipient"], sealing, service)
        assert refused.value.reason == vector["reason"], vector["name"]


def test_the_client_is_lint_and_type_clean() -> None:
    # `make lint` and `make typecheck` cover the packages and tests, not docs/: this holds the
    # example to the same rules (ruff, mypy --strict from pyproject.toml).
    root = CLIENT.parents[3]
    bin_dir = Path(sys.executable).parent
    for tool in (["ruff", "check"], ["mypy"]):
        result = subprocess.run(
            [str(bin_dir / tool[0]), *tool[1:], str(CLIENT.relative_to(root))],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_client_receives_verifies_opens_and_confirms_an_assignment(stack: Stack) -> None:
    case_id, assignment_id = assign_new_case(stack)
    _, envelope, sealed = sealed_for_police(stack, assignment_id)
    assert receipts(stack, sealed["id"]) == []

    lines, inbox = run_client(stack, "genuine")

    assert not [line for line in lines if line["outcome"] == "rejected"], lines
    [kept] = [
        line for line in lines if line["outcome"] == "kept" and line["message_id"] == sealed["id"]
    ]
    # Exactly the notice the service sealed, opened and with its signature checked.
    assert kept["content"] == sealed
    assert kept["content"]["body"]["assignment"]["task"] == TASK
    assert kept["signature"] == "verified"
    assert kept["version"] == json.loads(envelope)["v"]
    # Any checkpoint notice met on the way (the API signs one at start) passed its own check.
    for line in lines:
        if line["outcome"] == "kept" and line["kind"] == "checkpoint":
            assert line["content"]["body"]["format"] == "casetrail-checkpoint/v1"
    # Kept before the acknowledgement, and its receipt confirmed to the API, which stored it
    # (a machine's receipt: nobody signed for the task).
    assert sealed["id"] in inbox.read_text(encoding="utf-8")
    confirmations = [
        line
        for line in lines
        if line["outcome"] == "confirmation" and line["message_id"] == sealed["id"]
    ]
    assert [(c["status"], c["code"]) for c in confirmations][-1:] == [(200, "received")]
    assert {(c["status"], c["code"]) for c in confirmations[:-1]} <= {(404, "notice-not-found")}
    [receipt] = receipts(stack, sealed["id"])
    assert (str(receipt.case_id), receipt.assignment_id) == (case_id, assignment_id)
    assert acknowledged_at(stack, case_id, assignment_id) is None

    # Acknowledged on the broker: a second run finds nothing left to take.
    again, _ = run_client(stack, "genuine")
    assert not [line for line in again if line["outcome"] in ("kept", "rejected")], again


def test_altered_replayed_and_misaddressed_notices_are_refused(stack: Stack) -> None:
    _, assignment_id = assign_new_case(stack)
    subject, envelope, sealed = sealed_for_police(stack, assignment_id)
    altered = json.loads(envelope)
    ct = bytearray(altered["ct"].encode())
    ct[60] = ord("A") if ct[60] != ord("A") else ord("B")
    altered["ct"] = ct.decode()
    misaddressed = {
        **json.loads(envelope),
        "to": UnitCredentials.load(stack.credentials[OFFICE]).user,
    }

    async def inject() -> None:
        nc = await stack.connect(stack.layout.admin_bundle)
        try:
            js = nc.jetstream()
            # After the genuine notice, on its subject: an altered copy, the same notice again
            # as a new message (past the duplicate window, in effect), and one re-addressed.
            for n, data in enumerate(
                [json.dumps(altered).encode(), envelope, json.dumps(misaddressed).encode()]
            ):
                await js.publish(subject, data, headers={"Nats-Msg-Id": f"t{n}-{time.time_ns()}"})
        finally:
            await nc.close()

    asyncio.run(inject())
    lines, inbox = run_client(stack, "altered")

    assert [line["reason"] for line in lines if line["outcome"] == "rejected"] == [
        "bad_signature",
        "replayed",
        "wrong_recipient",
    ]
    # The genuine notice is kept and confirmed once; none of the copies is kept or confirmed.
    assert [line["message_id"] for line in lines if line["outcome"] == "kept"].count(
        sealed["id"]
    ) == 1
    kept_ids = [json.loads(line)["message_id"] for line in inbox.read_text().splitlines()]
    assert kept_ids.count(sealed["id"]) == 1
    assert [
        line["status"]
        for line in lines
        if line["outcome"] == "confirmation" and line["message_id"] == sealed["id"]
    ][-1:] == [200]
    assert len(receipts(stack, sealed["id"])) == 1
    # Each was answered (acknowledged or terminated): a second run finds nothing left.
    again, _ = run_client(stack, "altered")
    assert not [line for line in again if line["outcome"] in ("kept", "rejected")], again


def test_a_wrong_service_key_refuses_every_notice(stack: Stack) -> None:
    case_id, assignment_id = assign_new_case(stack)
    sealed_for_police(stack, assignment_id)
    impostor = stack.root / "impostor.pub"
    impostor.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    lines, inbox = run_client(stack, "impostor", service_key=impostor)

    refusals = [line for line in lines if line["outcome"] == "rejected"]
    assert refusals
    assert {line["reason"] for line in refusals} == {"bad_signature"}
    assert not [line for line in lines if line["outcome"] in ("kept", "confirmation")]
    assert not inbox.exists() or not inbox.read_text(encoding="utf-8")
    assert acknowledged_at(stack, case_id, assignment_id) is None
