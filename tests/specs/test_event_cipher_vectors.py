"""The event cipher against its spec (`docs/specs/event-cipher.md`) and its vectors
(`docs/specs/vectors/event_cipher.json`), both ways: the project's cipher seals each input to
the expected bytes and opens them; every negative vector is refused with the documented reason;
the project's mapper binds a real event's place exactly as the spec says; and the generator,
run again, writes the committed file byte for byte."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, StoredEvent, UUIDAsHex

from domain.access import Actor, CaseAccessed
from domain.taxonomy import Role
from gateway.store.eventstore import (
    ENV_CIPHER_KEYS,
    BoundAESGCMCipher,
    BoundMapper,
    EventIntegrityError,
    KeyMismatchError,
    associated_data,
    key_id,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs/specs/vectors/event_cipher.json"
GENERATOR = ROOT / "docs/specs/vectors/gen_event_cipher.py"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))

# What each documented reason is, as the project raises it.
REASONS: dict[str, tuple[type[Exception], str]] = {
    "authentication_failed": (EventIntegrityError, "authentication failed"),
    "bad_header": (EventIntegrityError, "no valid casetrail header"),
    "unknown_key": (KeyMismatchError, "is not configured"),
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_event_cipher", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cipher(*keys: str) -> BoundAESGCMCipher:
    return BoundAESGCMCipher({ENV_CIPHER_KEYS: ",".join(keys)})  # type: ignore[arg-type]


def _mapper(*keys: str) -> BoundMapper:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return BoundMapper(transcoder=transcoder, cipher=_cipher(*keys))


def test_the_generator_gives_the_committed_file_byte_for_byte() -> None:
    assert _generator().render() == VECTORS.read_text(encoding="utf-8")


def test_every_reason_is_documented_and_tested() -> None:
    assert set(DATA["reasons"]) == set(REASONS)
    assert {v["reason"] for v in DATA["negative"]} == set(REASONS)


@pytest.mark.parametrize("vector", DATA["positive"], ids=lambda v: v["name"])
def test_the_cipher_seals_each_input_to_the_expected_bytes_and_opens_them(
    vector: dict[str, Any],
) -> None:
    key = base64.b64decode(vector["key"], validate=True)
    assert key_id(key).hex() == vector["key_id"]
    place = associated_data(UUID(vector["stream_id"]), vector["version"], vector["topic"])
    assert place.hex() == vector["associated_data_place"]
    plaintext = bytes.fromhex(vector["plaintext"])
    cipher = _cipher(vector["key"])
    state = cipher.encrypt_with_nonce(plaintext, place, bytes.fromhex(vector["nonce"]))
    assert state.hex() == vector["state"]
    assert state[:17].hex() == vector["header"]
    assert (place + state[:17]).hex() == vector["associated_data"]
    # Opened by the cipher, also when the key is only one of several configured (rotation).
    others = [k for k in DATA["keys"].values() if k != vector["key"]]
    assert _cipher(*others, vector["key"]).decrypt(state, place) == plaintext
    # A fresh random nonce each time in service: same header prefix, different bytes.
    sealed = cipher.encrypt(plaintext, place)
    assert sealed[:5] == state[:5] and sealed != state
    assert cipher.decrypt(sealed, place) == plaintext


@pytest.mark.parametrize("vector", DATA["negative"], ids=lambda v: v["name"])
def test_every_negative_vector_is_refused_with_its_documented_reason(
    vector: dict[str, Any],
) -> None:
    keys = [DATA["keys"][name] for name in vector["configured_keys"]]
    stored = StoredEvent(
        originator_id=UUID(vector["stream_id"]),
        originator_version=vector["version"],
        topic=vector["topic"],
        state=bytes.fromhex(vector["state"]),
    )
    kind, message = REASONS[vector["reason"]]
    with pytest.raises(kind, match=message) as refused:
        _mapper(*keys).to_domain_event(stored)
    if vector["reason"] != "unknown_key":
        assert not isinstance(refused.value, KeyMismatchError)


def test_the_mapper_binds_a_real_events_place_as_the_spec_says() -> None:
    """A real access event sealed by the project's mapper opens with the spec's construction,
    written here with `cryptography` alone."""
    key_text = DATA["keys"]["A"]
    event = CaseAccessed(  # type: ignore[call-arg]
        originator_id=UUID("6f1c2e4a-8b3d-4c5e-9f60-718293a4b5c6"),
        originator_version=1,
        timestamp=CaseAccessed.create_timestamp(),
        case_id=UUID("0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"),
        actor=Actor("u-1", Role.COORDINATOR, "office", "street").as_record(),
        purpose="consultation",
        rule="coordinator_same_street",
        request_id="r-1",
        fields=["minor"],
        case_version=3,
        channel="api",
        client={"address": "127.0.0.1", "user_agent": "spec-test"},
    )
    stored = _mapper(key_text).to_stored_event(event)
    key = base64.b64decode(key_text)
    header = stored.state[:17]
    place = (
        b"casetrail/event/v1\x00" + str(event.originator_id).encode() + b"\x00" + b"1" + b"\x00"
    ) + b"domain.access:CaseAccessed"
    assert stored.topic == "domain.access:CaseAccessed"
    assert header[:5] == b"\x01" + bytes.fromhex(DATA["positive"][0]["key_id"])
    plaintext = AESGCM(key).decrypt(header[5:], stored.state[17:], place + header)
    assert json.loads(plaintext)["request_id"] == "r-1"
    assert _mapper(key_text).to_domain_event(stored).request_id == "r-1"  # type: ignore[attr-defined]
