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
VERSION: Final = "casetrail-event-cipher/v1"

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
        ("unknown format byte", b"\x02" + good[1:], STREAM, 1, REPORTED, "bad_header"),
        ("shorter than the header", good[:16], STREAM, 1, REPORTED, "bad_header"),
        ("sealed with a key not configured", with_b, STREAM, 1, REPORTED, "unknown_key"),
    ]  # fmt: skip
    return {
        "format": VERSION,
        "spec": "docs/specs/event-cipher.md",
        "generator": "docs/specs/vectors/gen_event_cipher.py",
        "encodings": "bytes as lowercase hex; keys as standard base64 with padding",
        "reasons": {
            "authentication_failed": "AES-GCM authentication failed: the state, its header or "
            "its place (stream id, version, topic) is not what was sealed",
            "bad_header": "the state does not start with a complete version-1 header",
            "unknown_key": "the header names a key id that no configured key has",
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
    }


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
