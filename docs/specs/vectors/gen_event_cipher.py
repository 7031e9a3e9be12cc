"""Generates `event_cipher.json`: known-answer and negative vectors for the event ciphertext
and its associated data (`docs/specs/event-cipher.md`).

Written from the spec alone, with the standard library and `cryptography`, importing nothing of
the project: `tests/specs/test_event_cipher_vectors.py` then checks the project's cipher
(`gateway.store.eventstore`) against what this script computes, both ways, and that running it
again gives the committed file byte for byte.

    python docs/specs/vectors/gen_event_cipher.py      # rewrites event_cipher.json beside it
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OUT: Final = Path(__file__).with_name("event_cipher.json")
VERSION: Final = "casetrail-event-cipher/v2"

# Fixed test keys (never used by a service): 32 bytes each.
KEY_A: Final = bytes(range(32))
KEY_B: Final = bytes(range(0x80, 0xA0))
STREAM: Final = "6f1c2e4a-8b3d-4c5e-9f60-718293a4b5c6"
OTHER_STREAM: Final = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
REPORTED: Final = "domain.case:Case.ClueReported"
ACCESSED: Final = "domain.access:CaseAccessed"
DENIED: Final = "domain.access:AccessDenied"


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"casetrail event key id\x00" + key).digest()[:4]


def place(stream_id: str, version: int, topic: str) -> bytes:
    return f"casetrail/event/v1\x00{stream_id}\x00{version}\x00{topic}".encode()


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad_place: bytes) -> bytes:
    header = b"\x01" + key_id(key) + nonce
    return header + AESGCM(key).encrypt(nonce, plaintext, aad_place + header)


# Format 2 (a stream's own data key, wrapped by an event key acting as the KEK).
DATA_KEY: Final = bytes(range(0x40, 0x60))
DATA_KEY_ID: Final = bytes.fromhex("00112233445566778899aabbccddeeff")
WRAP_NONCE: Final = bytes.fromhex("0f0e0d0c0b0a090807060504")


def wrap_aad(data_key_id: bytes, stream_id: str) -> bytes:
    return b"casetrail/data-key/v1\x00" + data_key_id + b"\x00" + stream_id.encode()


def wrap(kek: bytes, nonce: bytes, data_key_id: bytes, stream_id: str, data_key: bytes) -> bytes:
    return nonce + AESGCM(kek).encrypt(nonce, data_key, wrap_aad(data_key_id, stream_id))


def seal_v2(
    data_key: bytes, data_key_id: bytes, nonce: bytes, plaintext: bytes, aad_place: bytes
) -> bytes:
    header = b"\x02" + data_key_id + nonce
    return header + AESGCM(data_key).encrypt(nonce, plaintext, aad_place + header)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def vectors() -> dict[str, Any]:
    # Plaintexts are opaque to the cipher; these stand in for the library's JSON of a state.
    report = '{"minor":{"name":"张小明"},"description":"测试"}'.encode()
    access = b'{"case_id":{"_type_":"uuid_hex","_data_":"6f1c2e4a8b3d4c5e9f60718293a4b5c6"}}'
    positive = []
    cases = [
        ("case event, version 1", KEY_A, bytes(12), STREAM, 1, REPORTED, report),
        ("case event, version 12", KEY_A, bytes(range(1, 13)), STREAM, 12, REPORTED, report),
        ("access event", KEY_A, bytes.fromhex("f0e1d2c3b4a5968778695a4b"), OTHER_STREAM, 1,
         ACCESSED, access),
        ("empty plaintext", KEY_A, bytes.fromhex("000102030405060708090a0b"), STREAM, 2,
         REPORTED, b""),
        ("second key (after rotation)", KEY_B, bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab"),
         STREAM, 3, REPORTED, report),
    ]  # fmt: skip
    for name, key, nonce, stream, version, topic, plaintext in cases:
        aad_place = place(stream, version, topic)
        state = seal(key, nonce, plaintext, aad_place)
        positive.append(
            {
                "name": name,
                "key": b64(key),
                "key_id": key_id(key).hex(),
                "nonce": nonce.hex(),
                "stream_id": stream,
                "version": version,
                "topic": topic,
                "plaintext": plaintext.hex(),
                "associated_data_place": aad_place.hex(),
                "header": state[:17].hex(),
                "associated_data": (aad_place + state[:17]).hex(),
                "state": state.hex(),
            }
        )

    good = seal(KEY_A, bytes(12), report, place(STREAM, 1, REPORTED))
    upper = seal(KEY_A, bytes(12), report, place(STREAM.upper(), 1, REPORTED))
    no_header = b"\x01" + key_id(KEY_A) + bytes(12)
    no_header += AESGCM(KEY_A).encrypt(bytes(12), report, place(STREAM, 1, REPORTED))
    forged_id = b"\x01" + key_id(KEY_A) + bytes(12)
    forged_id += AESGCM(KEY_B).encrypt(bytes(12), report, place(STREAM, 1, REPORTED) + forged_id)
    with_b = seal(KEY_B, bytes(12), report, place(STREAM, 1, REPORTED))
    negative = [
        ("moved to another stream", good, OTHER_STREAM, 1, REPORTED, "authentication_failed"),
        ("version edited", good, STREAM, 2, REPORTED, "authentication_failed"),
        ("topic edited", good, STREAM, 1, DENIED, "authentication_failed"),
        ("tag bit flipped", _flip(good, len(good) - 1), STREAM, 1, REPORTED,
         "authentication_failed"),
        ("ciphertext bit flipped", _flip(good, 17), STREAM, 1, REPORTED, "authentication_failed"),
        ("nonce bit flipped", _flip(good, 5), STREAM, 1, REPORTED, "authentication_failed"),
        ("stream id written in upper case when sealing", upper, STREAM, 1, REPORTED,
         "authentication_failed"),
        ("header left out of the associated data", no_header, STREAM, 1, REPORTED,
         "authentication_failed"),
        ("key id of key A, sealed with key B", forged_id, STREAM, 1, REPORTED,
         "authentication_failed"),
        ("unknown format byte", b"\x03" + good[1:], STREAM, 1, REPORTED, "bad_header"),
        ("shorter than the header", good[:16], STREAM, 1, REPORTED, "bad_header"),
        ("sealed with a key not configured", with_b, STREAM, 1, REPORTED, "unknown_key"),
    ]  # fmt: skip
    wrapped = wrap(KEY_A, WRAP_NONCE, DATA_KEY_ID, STREAM, DATA_KEY)
    data_keys = [
        {
            "name": "data key of the stream, wrapped by key A",
            "kek": "A",
            "kek_id": key_id(KEY_A).hex(),
            "data_key": b64(DATA_KEY),
            "data_key_id": DATA_KEY_ID.hex(),
            "stream_id": STREAM,
            "nonce": WRAP_NONCE.hex(),
            "associated_data": wrap_aad(DATA_KEY_ID, STREAM).hex(),
            "wrapped": wrapped.hex(),
        }
    ]
    positive_v2 = []
    for name, nonce, version, plaintext in [
        ("case event under its data key, version 1", bytes(12), 1, report),
        ("case event under its data key, version 7", bytes(range(12)), 7, report),
        ("empty plaintext under a data key", bytes.fromhex("ffeeddccbbaa998877665544"), 2, b""),
    ]:
        aad_place = place(STREAM, version, REPORTED)
        state = seal_v2(DATA_KEY, DATA_KEY_ID, nonce, plaintext, aad_place)
        positive_v2.append(
            {
                "name": name,
                "data_key_id": DATA_KEY_ID.hex(),
                "nonce": nonce.hex(),
                "stream_id": STREAM,
                "version": version,
                "topic": REPORTED,
                "plaintext": plaintext.hex(),
                "associated_data_place": aad_place.hex(),
                "header": state[:29].hex(),
                "associated_data": (aad_place + state[:29]).hex(),
                "state": state.hex(),
            }
        )
    good_v2 = seal_v2(DATA_KEY, DATA_KEY_ID, bytes(12), report, place(STREAM, 1, REPORTED))
    unknown_id = b"\x02" + bytes(16) + good_v2[17:]
    negative_v2 = [
        ("data key state moved to another stream", good_v2, OTHER_STREAM, 1, REPORTED, "live",
         "authentication_failed"),
        ("data key state, tag bit flipped", _flip(good_v2, len(good_v2) - 1), STREAM, 1,
         REPORTED, "live", "authentication_failed"),
        ("data key id not in the key table", unknown_id, STREAM, 1, REPORTED, "live",
         "unknown_key"),
        ("data key destroyed (erased)", good_v2, STREAM, 1, REPORTED, "destroyed", "erased"),
        ("format 2 shorter than its header", good_v2[:28], STREAM, 1, REPORTED, "live",
         "bad_header"),
    ]  # fmt: skip
    wrap_negative = [
        ("wrap moved to another stream", wrapped, OTHER_STREAM, DATA_KEY_ID),
        ("wrap under another data key id", wrapped, STREAM, bytes(16)),
        ("wrap tag bit flipped", _flip(wrapped, len(wrapped) - 1), STREAM, DATA_KEY_ID),
    ]
    return {
        "format": VERSION,
        "spec": "docs/specs/event-cipher.md",
        "generator": "docs/specs/vectors/gen_event_cipher.py",
        "encodings": "bytes as lowercase hex; keys as standard base64 with padding",
        "reasons": {
            "authentication_failed": "AES-GCM authentication failed: the state, its header or "
            "its place (stream id, version, topic) is not what was sealed",
            "bad_header": "the state does not start with a complete version-1 header",
            "unknown_key": "the header names a key id that no configured key has (format 2: "
            "a data key id the key table does not have)",
            "erased": "format 2: the data key was destroyed (crypto-shredding); the state can "
            "never be opened again",
        },
        "keys": {"A": b64(KEY_A), "B": b64(KEY_B)},
        "positive": positive,
        "negative": [
            {
                "name": name,
                "configured_keys": ["A"],
                "stream_id": stream,
                "version": version,
                "topic": topic,
                "state": state.hex(),
                "reason": reason,
            }
            for name, state, stream, version, topic, reason in negative
        ],
        "data_keys": data_keys,
        "positive_v2": positive_v2,
        "negative_v2": [
            {
                "name": name,
                "data_key": key_state,
                "stream_id": stream,
                "version": version,
                "topic": topic,
                "state": state.hex(),
                "reason": reason,
            }
            for name, state, stream, version, topic, key_state, reason in negative_v2
        ],
        "wrap_negative": [
            {
                "name": name,
                "kek": "A",
                "stream_id": stream,
                "data_key_id": data_key_id.hex(),
                "wrapped": state.hex(),
                "reason": "authentication_failed",
            }
            for name, state, stream, data_key_id in wrap_negative
        ],
    }


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
