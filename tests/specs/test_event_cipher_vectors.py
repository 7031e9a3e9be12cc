"""The event cipher against its spec (`docs/specs/event-cipher.md`) and its vectors
(`docs/specs/vectors/event_cipher.json`), both ways: the project's cipher seals each input to
the expected bytes and opens them; every negative vector is refused with the documented reason;
the project's mapper binds a real event's place exactly as the spec says; format 2 (a stream's
data key, wrapped by the event key) seals, opens, unwraps and refuses as its vectors say; and the
generator, run again, writes the committed file byte for byte."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, StoredEvent, UUIDAsHex

from domain.access import Actor, CaseAccessed
from domain.retention import DataErased
from domain.taxonomy import Role
from gateway.store import datakeys
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
    assert set(DATA["reasons"]) == set(REASONS) | {"erased"}
    assert {v["reason"] for v in DATA["negative"]} == set(REASONS)
    assert {v["reason"] for v in DATA["negative_v2"]} == set(REASONS) | {"erased"}


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


# --- format 2: a stream's data key -----------------------------------------------------------


def _v2_cipher(tmp_path: Path, *, destroyed: bool = False) -> BoundAESGCMCipher:
    """The project's cipher over a key table holding the vectors' data key as the project
    stores it (its wrap under key A; or, destroyed, no wrap and a destruction)."""
    entry = DATA["data_keys"][0]
    path = str(tmp_path / "keys.sqlite")
    table = datakeys.DataKeyTable(
        keks={key_id(base64.b64decode(DATA["keys"]["A"])): base64.b64decode(DATA["keys"]["A"])},
        current_kek=base64.b64decode(DATA["keys"]["A"]),
        sqlite_path=path,
    )
    with table._transaction() as conn:  # the test writes the rows the spec fixes
        conn.execute(
            "INSERT INTO data_keys VALUES (?, ?, 'case', '2026-12-02T00:00:00+00:00')",
            [entry["stream_id"], entry["data_key_id"]],
        )
        if destroyed:
            conn.execute(
                "INSERT INTO data_key_destructions VALUES (?, ?, '2026-12-02T00:00:00+00:00')",
                [entry["data_key_id"], entry["stream_id"]],
            )
        else:
            conn.execute(
                "INSERT INTO data_key_wraps VALUES (?, ?, ?, '2026-12-02T00:00:00+00:00')",
                [entry["data_key_id"], entry["kek_id"], bytes.fromhex(entry["wrapped"])],
            )
    table.close()
    env = {ENV_CIPHER_KEYS: DATA["keys"]["A"], "SQLITE_DBNAME": path}
    return BoundAESGCMCipher(env)  # type: ignore[arg-type]


def test_the_data_key_wrap_is_the_spec_s_bytes_and_unwraps() -> None:
    for entry in DATA["data_keys"]:
        kek = base64.b64decode(DATA["keys"][entry["kek"]])
        assert key_id(kek).hex() == entry["kek_id"]
        data_key_id = bytes.fromhex(entry["data_key_id"])
        aad = datakeys.wrap_aad(data_key_id, UUID(entry["stream_id"]))
        assert aad.hex() == entry["associated_data"]
        data_key = base64.b64decode(entry["data_key"])
        wrapped = datakeys.wrap(
            kek, data_key_id, UUID(entry["stream_id"]), data_key, bytes.fromhex(entry["nonce"])
        )
        assert wrapped.hex() == entry["wrapped"]
        assert datakeys.unwrap(kek, data_key_id, UUID(entry["stream_id"]), wrapped) == data_key


@pytest.mark.parametrize("vector", DATA["wrap_negative"], ids=lambda v: v["name"])
def test_every_altered_or_moved_wrap_is_refused(vector: dict[str, Any]) -> None:
    kek = base64.b64decode(DATA["keys"][vector["kek"]])
    with pytest.raises(InvalidTag):
        datakeys.unwrap(
            kek,
            bytes.fromhex(vector["data_key_id"]),
            UUID(vector["stream_id"]),
            bytes.fromhex(vector["wrapped"]),
        )


@pytest.mark.parametrize("vector", DATA["positive_v2"], ids=lambda v: v["name"])
def test_format_2_seals_each_input_to_the_expected_bytes_and_opens_them(
    vector: dict[str, Any], tmp_path: Path
) -> None:
    cipher = _v2_cipher(tmp_path)
    place = associated_data(UUID(vector["stream_id"]), vector["version"], vector["topic"])
    assert place.hex() == vector["associated_data_place"]
    plaintext = bytes.fromhex(vector["plaintext"])
    state = cipher.encrypt_for_stream(
        UUID(vector["stream_id"]), "case", plaintext, place, bytes.fromhex(vector["nonce"])
    )
    assert state.hex() == vector["state"]
    assert state[:29].hex() == vector["header"]
    assert (place + state[:29]).hex() == vector["associated_data"]
    assert cipher.decrypt(state, place) == plaintext
    sealed = cipher.encrypt_for_stream(UUID(vector["stream_id"]), "case", plaintext, place)
    assert sealed[:17] == state[:17] and sealed != state
    assert cipher.decrypt(sealed, place) == plaintext


V2_REASONS: dict[str, tuple[type[Exception], str]] = {
    **REASONS,
    "unknown_key": (KeyMismatchError, "which the key table does not have"),
    "erased": (DataErased, "erased"),
}


@pytest.mark.parametrize("vector", DATA["negative_v2"], ids=lambda v: v["name"])
def test_every_format_2_negative_vector_is_refused_with_its_reason(
    vector: dict[str, Any], tmp_path: Path
) -> None:
    cipher = _v2_cipher(tmp_path, destroyed=vector["data_key"] == "destroyed")
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper = BoundMapper(transcoder=transcoder, cipher=cipher)
    stored = StoredEvent(
        originator_id=UUID(vector["stream_id"]),
        originator_version=vector["version"],
        topic=vector["topic"],
        state=bytes.fromhex(vector["state"]),
    )
    kind, message = V2_REASONS[vector["reason"]]
    with pytest.raises(kind, match=message):
        mapper.to_domain_event(stored)
