"""The sealed notice envelope against its spec (`docs/specs/notice.md`) and its vectors
(`docs/specs/vectors/notice.json`), both ways.

Build direction: from each vector's inputs the project's code (`gateway.messaging.sealing`)
writes the content's bytes, the padded plaintext, the HPKE `info`, the signed bytes and, around
the vector's ciphertext, the envelope byte for byte; its own `seal` (with a fresh ephemeral key)
writes an envelope of the same size whose plaintext is the vector's padded bytes. Open direction:
the project opens every positive vector (version 2 and the legacy version 1) to its content, its
HPKE library agrees with the generator's step-by-step RFC 9180, and it refuses every negative
vector with exactly the documented reason. The spec's table of envelope sizes is the code's, and
the generator, run again, writes the committed file byte for byte. Section 10's table of the
answers to the acknowledgement call is what the real API answers, case by case; section 9's
stream, consumer and permissions are what the relay makes on a real nats-server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import socket
import subprocess
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi.testclient import TestClient
from nats.js.api import AckPolicy, DeliverPolicy

from domain.notices import notice_published
from domain.taxonomy import Role
from gateway.messaging.broker_config import UnitAddress, unit_permissions
from gateway.messaging.relay import ensure_consumer, ensure_stream
from gateway.messaging.sealing import (
    BUCKETS,
    ENVELOPE_VERSION,
    SUITE,
    Rejected,
    bucket_of,
    content_bytes,
    envelope,
    info,
    open_envelope,
    pad,
    seal,
    signed_bytes,
    unb64url,
    unpad,
)
from projections.evidence.checkpoints import Checkpoint
from tests.conftest import TokenFactory
from tests.messaging.stack import free_port, require_nats_server, wait_for

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs/specs/notice.md"
VECTORS = ROOT / "docs/specs/vectors/notice.json"
GENERATOR = ROOT / "docs/specs/vectors/gen_notice.py"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
KEYS = DATA["keys"]
SERVICE = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS["service_signing_seed_hex"]))
UNIT = X25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS["unit_sealing_private_hex"]))
POSITIVE = {v["name"]: v for v in DATA["positive"]}
NEGATIVE = {v["name"]: v for v in DATA["negative"]}
# Section 7's reasons, each of which some negative vector must prove.
REASONS = {
    "malformed",
    "unsupported_version",
    "wrong_recipient",
    "bad_signature",
    "undecryptable",
    "bad_padding",
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_notice", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generator_writes_the_committed_file_byte_for_byte() -> None:
    assert _generator().render() == VECTORS.read_text(encoding="utf-8"), (
        "docs/specs/vectors/notice.json is not what gen_notice.py writes: run "
        "`python docs/specs/vectors/gen_notice.py` and review the difference"
    )


def test_the_vectors_keys_suite_and_buckets_are_the_codes() -> None:
    assert SERVICE.public_key().public_bytes_raw().hex() == KEYS["service_signing_public_hex"]
    assert UNIT.public_key().public_bytes_raw().hex() == KEYS["unit_sealing_public_hex"]
    assert DATA["suite"] == {"mode": 0, "kem_id": 0x0020, "kdf_id": 0x0001, "aead_id": 0x0003}
    assert tuple(DATA["buckets"]) == BUCKETS
    for row in DATA["padding"]:
        assert bucket_of(row["content_length"]) == row["bucket"]
    assert {v["kind"] for v in POSITIVE.values()} == {
        "assignment",
        "case_escalated",
        "due_date_reminder",
        "compliance_alert",
        "checkpoint",
        "new_clue",
    }
    assert {v["version"] for v in POSITIVE.values()} == {1, ENVELOPE_VERSION}


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_the_code_builds_each_vectors_bytes(name: str) -> None:
    vector = POSITIVE[name]
    version, to, message = vector["version"], vector["to"], vector["id"]
    content = bytes.fromhex(vector["content_hex"])
    ct = bytes.fromhex(vector["ct_hex"])
    assert content_bytes(vector["content"]) == content
    assert len(content) == vector["content_length"]
    if version == 2:
        padded = bytes.fromhex(vector["padded_hex"])
        assert pad(content) == padded
        assert len(padded) == vector["bucket"] == bucket_of(len(content))
        assert unpad(padded) == content
    assert info(to, message, version) == bytes.fromhex(vector["info_hex"])
    assert vector["aad_hex"] == ""  # single shot, no AAD: `Suite.encrypt` takes none
    assert ct[:32] == bytes.fromhex(vector["enc_hex"])
    assert signed_bytes(to, message, ct, version) == bytes.fromhex(vector["signed_hex"])
    built = envelope(recipient=to, message=message, ciphertext=ct, signer=SERVICE, version=version)
    assert built == vector["envelope"].encode()
    assert len(built) == vector["envelope_length"]


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_the_code_opens_each_vector_to_its_content(name: str) -> None:
    vector = POSITIVE[name]
    ct = bytes.fromhex(vector["ct_hex"])
    # The library's HPKE agrees with the generator's RFC 9180, step by step.
    plaintext = SUITE.decrypt(ct, UNIT, info=bytes.fromhex(vector["info_hex"]))
    expected = vector["padded_hex"] if vector["version"] == 2 else vector["content_hex"]
    assert plaintext == bytes.fromhex(expected)
    opened = open_envelope(
        vector["envelope"].encode(),
        recipient=vector["to"],
        private_key=UNIT,
        service_key=SERVICE.public_key(),
    )
    assert opened.message_id == vector["id"]
    assert opened.version == vector["version"]
    assert opened.content == vector["content"]
    assert content_bytes(opened.content) == bytes.fromhex(vector["content_hex"])
    if vector["kind"] == "checkpoint":
        # What the unit's client does next (section 3.2): the body is a checkpoint the project
        # reads, signed by the same service key, named by the notice's `event`.
        checkpoint = Checkpoint.from_json(opened.content["body"])
        assert checkpoint.verify(SERVICE.public_key())
        assert opened.content["event"] == f"checkpoint/{checkpoint.seq}"


@pytest.mark.parametrize("name", sorted(n for n, v in POSITIVE.items() if v["version"] == 2))
def test_the_codes_own_seal_gives_the_vectors_plaintext_and_size(name: str) -> None:
    """`seal` draws a fresh ephemeral key, so its bytes differ from the vector's; what must
    not differ: the plaintext sealed, the size on the wire and every part but `ct` and `sig`."""
    vector = POSITIVE[name]
    data = seal(
        vector["content"],
        recipient=vector["to"],
        message=vector["id"],
        public_key=UNIT.public_key(),
        signer=SERVICE,
    )
    assert len(data) == vector["envelope_length"]
    document, expected = json.loads(data), json.loads(vector["envelope"])
    assert list(document) == list(expected) == ["v", "id", "to", "ct", "sig"]
    assert {k: document[k] for k in ("v", "id", "to")} == {
        k: expected[k] for k in ("v", "id", "to")
    }
    ct = unb64url(document["ct"])
    assert ct[:32] != bytes.fromhex(vector["enc_hex"])  # a fresh ephemeral key
    plaintext = SUITE.decrypt(ct, UNIT, info=bytes.fromhex(vector["info_hex"]))
    assert plaintext == bytes.fromhex(vector["padded_hex"])


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_each_negative_vector_is_rejected_with_its_documented_reason(name: str) -> None:
    vector = NEGATIVE[name]
    data = (
        bytes.fromhex(vector["envelope_hex"])
        if "envelope_hex" in vector
        else vector["envelope"].encode()
    )
    with pytest.raises(Rejected) as caught:
        open_envelope(
            data,
            recipient=vector["recipient"],
            private_key=UNIT,
            service_key=SERVICE.public_key(),
        )
    assert caught.value.reason == vector["reason"], vector["why"]
    assert str(caught.value)  # and a message that says what was wrong


def test_every_documented_reason_has_negative_vectors() -> None:
    assert {v["reason"] for v in NEGATIVE.values()} == REASONS
    step_reasons = set(re.findall(r"^\| \d+ \|.*\| `([a-z_]+)` \|", SPEC.read_text(), re.M))
    assert step_reasons == REASONS, "docs/specs/notice.md section 7 lists other reasons"


def test_the_specs_table_of_envelope_sizes_is_the_codes() -> None:
    """Section 6: the envelope's size is its bucket's alone; one content per bucket, sealed."""
    table = re.findall(r"^\| (\d+) \| (\d+) \| (\d+) \|$", SPEC.read_text(), re.M)
    assert [int(bucket) for bucket, _, _ in table] == list(BUCKETS)
    base = dict(POSITIVE["assignment"]["content"])
    overhead = len(content_bytes({**base, "pad": ""}))
    for bucket, ct_length, size in table:
        content = {**base, "pad": "a" * (int(bucket) - 4 - overhead)}
        assert bucket_of(len(content_bytes(content))) == int(bucket)
        data = seal(
            content,
            recipient=DATA["recipient"],
            message=base["id"],
            public_key=UNIT.public_key(),
            signer=SERVICE,
        )
        assert len(unb64url(json.loads(data)["ct"])) == int(ct_length)
        assert len(data) == int(size)


# --- section 10: the call that confirms receipt, and every answer it gives ----------------------

OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
SCHOOL = "chengguan-school-district-office"
RECEIPT_PATH = "/v1/notices/{message_id}/receipt"


def _answer_table() -> set[tuple[int, str]]:
    """The (status, type code) rows of section 10's table."""
    section = SPEC.read_text().split("## 10.")[1].split("## 11.")[0]
    rows = re.findall(r"^\| (\d{3}) \| (`[^|]*`|—) \|", section, re.M)
    return {
        (int(status), code)
        for status, codes in rows
        for code in (re.findall(r"`([a-z-]+)`", codes) or ["—"])
    }


def test_the_receipt_call_gives_the_answers_section_10_lists(
    client: TestClient, auth: TokenFactory
) -> None:
    table = _answer_table()
    application = client.app.state.services.application  # type: ignore[attr-defined]
    message = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    application.store_events(
        [
            notice_published(
                message_id=message,
                unit=POLICE,
                street="chengguan-street",
                kind="assignment",
                case_id=uuid.uuid4(),
                assignment_id=str(uuid.uuid4()),
                source_event=f"{uuid.uuid4()}/2",
            )
        ]
    )
    police = auth(Role.UNIT_MEMBER, POLICE)
    seen: list[tuple[int, str]] = []
    answers: list[dict[str, Any]] = []

    def confirm(ident: str, headers: dict[str, str], *, method: str = "POST") -> None:
        answer = client.request(method, RECEIPT_PATH.format(message_id=ident), headers=headers)
        code = "—" if answer.status_code < 300 else answer.json()["type"].rsplit(":", 1)[-1]
        assert (answer.status_code, code) in table, f"{answer.status_code} {code}: not in the spec"
        if answer.status_code == 200:
            answers.append(answer.json())
        seen.append((answer.status_code, code))

    confirm(message, {})  # no token
    confirm("not-a-message-id", police)
    confirm("f" * 32, police)  # never published
    confirm(message, auth(Role.UNIT_MEMBER, SCHOOL))  # another unit's notice
    confirm(message, police, method="GET")
    confirm(message, police)
    confirm(message, police)  # again: the same answer, nothing stored
    assert seen == [
        (401, "unauthenticated"),
        (422, "validation-error"),
        (404, "notice-not-found"),
        (404, "notice-not-found"),
        (405, "method-not-allowed"),
        (200, "—"),
        (200, "—"),
    ]
    assert answers[0] == answers[1]
    assert set(answers[0]) == {"message_id", "received_at"}
    # Every status the OpenAPI document gives the operation is in the table.
    operation = client.app.openapi()["paths"][RECEIPT_PATH]["post"]  # type: ignore[attr-defined]
    assert {int(status) for status in operation["responses"]} <= {s for s, _ in table}


# --- section 9: the broker's names and settings, as the relay makes them -------------------------


def test_the_stream_consumer_and_permissions_are_what_section_9_says(tmp_path: Path) -> None:
    """The relay's own `ensure_stream` and `ensure_consumer` against a real nats-server (plain,
    for brevity: TLS and the permissions are exercised by tests/messaging/), read back."""
    binary = require_nats_server()
    port = free_port()
    server = subprocess.Popen(
        [str(binary), "-js", "-sd", str(tmp_path), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    user = DATA["recipient"]
    address = UnitAddress(user, "s0123456789abcdef")

    async def made() -> tuple[Any, Any]:
        nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=5)
        try:
            js = nc.jetstream()
            await ensure_stream(js)
            await ensure_consumer(js, address)
            return await js.stream_info("CASETRAIL"), await js.consumer_info("CASETRAIL", user)
        finally:
            await nc.close()

    try:
        wait_for(lambda: _listening(port), 10, "nats-server")
        stream, consumer = asyncio.run(made())
    finally:
        server.terminate()
        server.wait(10)
    assert stream.config.subjects == ["ct.>"]
    assert stream.config.max_age == 30 * 24 * 3600
    assert stream.config.duplicate_window == 24 * 3600
    assert stream.config.deny_delete and stream.config.deny_purge
    assert consumer.name == consumer.config.durable_name == user
    assert consumer.config.filter_subject == f"ct.*.{user}"
    assert consumer.config.deliver_policy == DeliverPolicy.ALL
    assert consumer.config.ack_policy == AckPolicy.EXPLICIT
    assert consumer.config.ack_wait == 30
    assert consumer.config.max_ack_pending == 1000
    assert address.subject == f"ct.s0123456789abcdef.{user}"
    permissions: Any = unit_permissions(address)
    assert permissions["publish"]["allow"] == [
        f"$JS.API.CONSUMER.MSG.NEXT.CASETRAIL.{user}",
        f"$JS.API.CONSUMER.INFO.CASETRAIL.{user}",
        f"$JS.ACK.CASETRAIL.{user}.>",
    ]
    assert permissions["subscribe"]["allow"] == [f"_INBOX_{user}.>"]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
