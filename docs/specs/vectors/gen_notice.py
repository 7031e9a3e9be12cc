"""Generates `notice.json`: known-answer and negative vectors for the sealed notice envelope
(`docs/specs/notice.md`).

Written from the spec alone, with the standard library and `cryptography`, importing nothing of
the project. HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305) is computed here step by step from the RFC, so that the ephemeral key can be
fixed (a library's `encrypt` draws a fresh one) and every intermediate value can be given;
Ed25519 signatures are deterministic. `tests/specs/test_notice_vectors.py` then checks the
project's code (`gateway.messaging.sealing`) against this file both ways, and that running this
script again writes the committed file byte for byte.

    python docs/specs/vectors/gen_notice.py      # rewrites notice.json beside it
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

OUT: Final = Path(__file__).with_name("notice.json")
FORMAT: Final = "casetrail-notice-vectors/v1"
BUCKETS: Final = (1024, 4096, 16384, 65536)

# RFC 9180 section 7 identifiers.
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003
KEM_SUITE: Final = b"KEM" + KEM_ID.to_bytes(2, "big")
HPKE_SUITE: Final = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (KEM_ID, KDF_ID, AEAD_ID))


def fixed(name: str) -> bytes:
    """A fixed 32-byte test key, never used by a service: SHA-256 of its name."""
    return hashlib.sha256(f"casetrail notice test vectors: {name}".encode()).digest()


SERVICE_SEED: Final = fixed("service signing key")
UNIT_KEY: Final = fixed("unit sealing key")
OTHER_UNIT_KEY: Final = fixed("other unit sealing key")
ME: Final = "u3f9a0c1b2d4e5f60"
OTHER: Final = "u00112233445566ff"
SERVICE: Final = Ed25519PrivateKey.from_private_bytes(SERVICE_SEED)


# --- RFC 9180, by hand ---------------------------------------------------------------------------


def _extract(salt: bytes, ikm: bytes) -> bytes:
    mac = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def public_of(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def hpke_seal(pk_r: bytes, sk_e: bytes, info: bytes, aad: bytes, pt: bytes) -> dict[str, bytes]:
    """SetupBaseS with a given ephemeral key, then Seal at sequence number 0."""
    ephemeral = X25519PrivateKey.from_private_bytes(sk_e)
    enc = ephemeral.public_key().public_bytes_raw()
    dh = ephemeral.exchange(X25519PublicKey.from_public_bytes(pk_r))
    eae_prk = _labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    shared = _labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", enc + pk_r, 32)
    psk_id_hash = _labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    secret = _labeled_extract(HPKE_SUITE, shared, b"secret", b"")
    key = _labeled_expand(HPKE_SUITE, secret, b"key", context, 32)
    base_nonce = _labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)
    sealed = ChaCha20Poly1305(key).encrypt(base_nonce, pt, aad)
    return {
        "enc": enc,
        "shared_secret": shared,
        "key": key,
        "base_nonce": base_nonce,
        "ct": enc + sealed,
    }


# --- the format (docs/specs/notice.md) ------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def label(version: int) -> bytes:
    return f"casetrail/msg/v{version}".encode()


def info_of(to: str, message: str, version: int = 2) -> bytes:
    return label(version) + b"\x00" + to.encode() + b"\x00" + message.encode()


def signed_of(to: str, message: str, ct: bytes, version: int = 2) -> bytes:
    return label(version) + b"\x00sig\x00" + to.encode() + b"\x00" + message.encode() + b"\x00" + ct


def content_of(content: dict[str, Any]) -> bytes:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def bucket(length: int) -> int:
    return next(size for size in BUCKETS if 4 + length <= size)


def pad(content: bytes, size: int | None = None) -> bytes:
    size = size or bucket(len(content))
    return len(content).to_bytes(4, "big") + content + bytes(size - 4 - len(content))


def envelope_of(version: Any, message: str, to: str, ct: str, sig: str) -> str:
    return json.dumps(
        {"v": version, "id": message, "to": to, "ct": ct, "sig": sig}, separators=(",", ":")
    )


def sealed(
    content: bytes,
    *,
    name: str,
    message: str,
    to: str = ME,
    version: int = 2,
    plaintext: bytes | None = None,
    seal_to: bytes = UNIT_KEY,
    info_message: str | None = None,
) -> dict[str, Any]:
    """Every step of one envelope; `plaintext`, `seal_to` and `info_message` make wrong ones."""
    pt = plaintext if plaintext is not None else (pad(content) if version == 2 else content)
    info = info_of(to, info_message or message, version)
    hpke = hpke_seal(public_of(seal_to), fixed(f"ephemeral key: {name}"), info, b"", pt)
    signed = signed_of(to, message, hpke["ct"], version)
    sig = SERVICE.sign(signed)
    return {
        "pt": pt,
        "info": info,
        "sk_e": fixed(f"ephemeral key: {name}"),
        "hpke": hpke,
        "signed": signed,
        "sig": sig,
        "envelope": envelope_of(version, message, to, b64url(hpke["ct"]), b64url(sig)),
    }


# --- the vectors ---------------------------------------------------------------------------------

CASE: Final = "6f1c2e4a-8b3d-4c5e-9f60-718293a4b5c6"
ASSIGNMENT: Final = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
AT: Final = "2026-03-02T08:15:00.123456+00:00"


def message_of(n: int) -> str:
    return hashlib.sha256(f"message {n}".encode()).hexdigest()[:32]


def assignment(message: str, task: str) -> dict[str, Any]:
    return {
        "id": message,
        "kind": "assignment",
        "issued_at": AT,
        "event": f"{CASE}/7",
        "body": {
            "assignment": {
                "id": ASSIGNMENT,
                "case_ref": CASE,
                "function": "family",
                "task": task,
                "due_on": "2026-03-09",
                "assigned_at": AT,
            }
        },
    }


def checkpoint_body() -> dict[str, Any]:
    """A checkpoint as `casetrail checkpoint export` writes one, signed by the same test key
    (its own signed text and checks are docs/specs/checkpoint.md's, not this format's)."""
    seq, size, root, time = 12, 1200, hashlib.sha256(b"root").hexdigest(), "2026-03-02T08:16:00Z"
    text = f"casetrail-checkpoint/v1\nseq {seq}\nsize {size}\nroot {root}\ntime {time}\n"
    public = SERVICE.public_key().public_bytes_raw()
    return {
        "format": "casetrail-checkpoint/v1",
        "seq": seq,
        "size": size,
        "root": root,
        "time": time,
        "key_id": hashlib.sha256(public).digest()[:8].hex(),
        "signature": base64.b64encode(SERVICE.sign(text.encode())).decode(),
    }


def contents() -> list[tuple[str, dict[str, Any]]]:
    """One content per kind, then the two sides of the first bucket's edge."""
    found: list[tuple[str, dict[str, Any]]] = [
        ("assignment", assignment(message_of(1), "家访，核实监护情况并每周反馈。")),
        (
            "case_escalated",
            {
                "id": message_of(2),
                "kind": "case_escalated",
                "issued_at": AT,
                "event": f"{CASE}/8",
                "body": {
                    "case_ref": CASE,
                    "to_level": "county",
                    "to": "police_station",
                    "escalated_at": AT,
                },
            },
        ),
        (
            "due_date_reminder",
            {
                "id": message_of(3),
                "kind": "due_date_reminder",
                "issued_at": AT,
                "event": "5d6e7f80-91a2-4b3c-8d4e-5f6071829304/1",
                "body": {
                    "reminder": "due_soon",
                    "assignment_id": ASSIGNMENT,
                    "case_ref": CASE,
                    "due_on": "2026-03-09",
                },
            },
        ),
        (
            "compliance_alert",
            {
                "id": message_of(4),
                "kind": "compliance_alert",
                "issued_at": AT,
                "event": "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d/1",
                "body": {
                    "alert": "access_denied",
                    "case_ref": CASE,
                    "rule": "no_such_case",
                    "purpose": "intervention",
                    "actor": {"user": "user-17", "role": "unit_member", "unit": "far-school"},
                    "request_id": "4f1e2d3c4b5a69788796a5b4c3d2e1f0",
                    "at": AT,
                },
            },
        ),
        (
            "checkpoint",
            {
                "id": message_of(5),
                "kind": "checkpoint",
                "issued_at": "2026-03-02T08:16:00Z",
                "event": "checkpoint/12",
                "body": checkpoint_body(),
            },
        ),
        (
            "new_clue",
            {
                "id": message_of(9),
                "kind": "new_clue",
                "issued_at": AT,
                "event": f"{CASE}/1",
                "body": {
                    "case_ref": CASE,
                    "risk": "urgent",
                    "found_on": "2026-03-01",
                    "reported_at": AT,
                },
            },
        ),
    ]
    # The task that makes the content exactly 1020 bytes (the most the first bucket holds),
    # and one byte more (the second bucket).
    base = len(content_of(assignment(message_of(6), "")))
    found.append(("assignment_1020_bytes", assignment(message_of(6), "a" * (1020 - base))))
    found.append(("assignment_1021_bytes", assignment(message_of(7), "a" * (1021 - base))))
    return found


def positive() -> list[dict[str, Any]]:
    vectors = []
    cases = [(name, content, 2) for name, content in contents()]
    cases.append(("legacy_v1_assignment", assignment(message_of(8), "约谈家长。"), 1))
    for name, content, version in cases:
        data = content_of(content)
        made = sealed(data, name=name, message=content["id"], version=version)
        vectors.append(
            {
                "name": name,
                "version": version,
                "kind": content["kind"],
                "to": ME,
                "id": content["id"],
                "content": content,
                "content_hex": data.hex(),
                "content_length": len(data),
                "bucket": len(made["pt"]) if version == 2 else None,
                "padded_hex": made["pt"].hex() if version == 2 else None,
                "info_hex": made["info"].hex(),
                "aad_hex": "",
                "ephemeral_private_hex": made["sk_e"].hex(),
                "enc_hex": made["hpke"]["enc"].hex(),
                "shared_secret_hex": made["hpke"]["shared_secret"].hex(),
                "key_hex": made["hpke"]["key"].hex(),
                "base_nonce_hex": made["hpke"]["base_nonce"].hex(),
                "ct_hex": made["hpke"]["ct"].hex(),
                "signed_hex": made["signed"].hex(),
                "sig_hex": made["sig"].hex(),
                "envelope": made["envelope"],
                "envelope_length": len(made["envelope"].encode()),
            }
        )
    return vectors


def _with(envelope: str, **changes: Any) -> str:
    document = json.loads(envelope)
    for key, value in changes.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document, separators=(",", ":"))


def negative() -> list[dict[str, Any]]:
    content = assignment(message_of(20), "家访。")
    data = content_of(content)
    message = content["id"]
    good = sealed(data, name="negative base", message=message)["envelope"]
    doc = json.loads(good)
    ct, sig = (
        base64.urlsafe_b64decode(doc["ct"] + "=="),
        base64.urlsafe_b64decode(doc["sig"] + "=="),
    )

    def signed_with(plaintext: bytes, name: str) -> str:
        return str(sealed(data, name=name, message=message, plaintext=plaintext)["envelope"])

    flipped = ct[:-1] + bytes([ct[-1] ^ 0x01])
    # The last base64url character of `ct` (1072 bytes: one byte in its last group of two
    # characters) with a trailing bit set: the same bytes to a lenient decoder.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = doc["ct"][-1]
    not_canonical = doc["ct"][:-1] + alphabet[alphabet.index(last) | 1]
    short = b"hello"
    entries: list[tuple[str, str | bytes, str, str]] = [
        # --- malformed: not an envelope, or a part of it unreadable (steps 1-3, 5-7)
        ("truncated", good[: len(good) // 2], "malformed", "cut in half: not JSON"),
        ("not_json", "casetrail", "malformed", "not JSON"),
        ("json_array", f"[{good}]", "malformed", "JSON, but not an object"),
        ("utf16", good.encode("utf-16"), "malformed", "the envelope in UTF-16, not UTF-8"),
        ("v_missing", _with(good, v=None), "malformed", "no `v`"),
        ("v_true", _with(good, v=True), "malformed", "`v` is true, not an integer"),
        ("v_float", _with(good, v=2.0), "malformed", "`v` is 2.0, not an integer"),
        ("v_string", _with(good, v="2"), "malformed", '`v` is "2", not an integer'),
        ("sig_missing", _with(good, sig=None), "malformed", "no `sig`"),
        ("to_not_string", _with(good, to=17), "malformed", "`to` is a number"),
        ("ct_padded", _with(good, ct=doc["ct"] + "=="), "malformed", "`ct` with `=` padding"),
        (
            "ct_standard_alphabet",
            _with(good, ct=base64.b64encode(ct).decode()),
            "malformed",
            "`ct` in standard base64 (`+`, `/`, `=`), not base64url",
        ),
        (
            "ct_not_canonical",
            _with(good, ct=not_canonical),
            "malformed",
            "`ct`'s last character has a trailing bit set: not the canonical text of its bytes",
        ),
        ("id_uppercase", _with(good, id=message.upper()), "malformed", "`id` in uppercase hex"),
        ("id_short", _with(good, id=message[:31]), "malformed", "`id` of 31 hex digits"),
        # --- unsupported_version (step 4)
        ("v_3", _with(good, v=3), "unsupported_version", "version 3 is not defined"),
        ("v_0", _with(good, v=0), "unsupported_version", "version 0 is not defined"),
        # --- wrong_recipient (step 8)
        (
            "for_another_unit",
            sealed(data, name="for another", message=message, to=OTHER, seal_to=OTHER_UNIT_KEY)[
                "envelope"
            ],
            "wrong_recipient",
            "sealed and signed for another unit",
        ),
        # --- bad_signature (step 9)
        (
            "readdressed",
            _with(sealed(data, name="readdressed", message=message, to=OTHER)["envelope"], to=ME),
            "bad_signature",
            "signed for another unit, `to` rewritten to this one",
        ),
        ("ct_altered", _with(good, ct=b64url(flipped)), "bad_signature", "one bit of `ct` flipped"),
        (
            "sig_altered",
            _with(good, sig=b64url(bytes([sig[0] ^ 0x01]) + sig[1:])),
            "bad_signature",
            "one bit of `sig` flipped",
        ),
        (
            "sig_short",
            _with(good, sig=b64url(sig[:63])),
            "bad_signature",
            "`sig` of 63 bytes",
        ),
        ("id_changed", _with(good, id=message_of(21)), "bad_signature", "another valid id"),
        (
            "v_downgraded",
            _with(good, v=1),
            "bad_signature",
            "a version 2 envelope presented as version 1: the label is signed",
        ),
        (
            "v1_upgraded",
            _with(sealed(data, name="v1 upgraded", message=message, version=1)["envelope"], v=2),
            "bad_signature",
            "a version 1 envelope presented as version 2",
        ),
        # --- undecryptable (step 10)
        (
            "sealed_to_another_key",
            sealed(data, name="another key", message=message, seal_to=OTHER_UNIT_KEY)["envelope"],
            "undecryptable",
            "signed for this unit, sealed to another unit's key (a rotated-out key)",
        ),
        (
            "info_of_another_message",
            sealed(data, name="another info", message=message, info_message=message_of(22))[
                "envelope"
            ],
            "undecryptable",
            "sealed with the `info` of another message id",
        ),
        # --- bad_padding (step 11): only a wrong sender can make these, so they are signed
        (
            "padding_not_a_bucket",
            signed_with(pad(data)[:1023], "not a bucket"),
            "bad_padding",
            "a padded plaintext of 1023 bytes",
        ),
        (
            "padding_unpadded_content",
            signed_with(data, "unpadded"),
            "bad_padding",
            "version 2 with the content unpadded, as version 1 would seal it",
        ),
        (
            "padding_length_exceeds",
            signed_with((1021).to_bytes(4, "big") + bytes(1020), "length exceeds"),
            "bad_padding",
            "the length prefix says 1021 in a 1024-byte plaintext",
        ),
        (
            "padding_not_smallest_bucket",
            signed_with(pad(data, 4096), "not smallest"),
            "bad_padding",
            "a short content padded to 4096 bytes",
        ),
        (
            "padding_not_zero",
            signed_with(pad(data)[:-1] + b"\x01", "not zero"),
            "bad_padding",
            "the last padding byte is 0x01",
        ),
        # --- malformed content (steps 12-13): signed, sealed and padded right
        (
            "content_not_json",
            signed_with(pad(short), "content not json"),
            "malformed",
            "the content is `hello`",
        ),
        (
            "content_array",
            signed_with(pad(b"[" + data + b"]"), "content array"),
            "malformed",
            "the content is a JSON array",
        ),
        (
            "content_of_another_id",
            signed_with(pad(content_of({**content, "id": message_of(23)})), "content other id"),
            "malformed",
            "the content's `id` is another message's",
        ),
    ]
    found = []
    for name, envelope, reason, why in entries:
        entry: dict[str, Any] = {"name": name, "recipient": ME}
        if isinstance(envelope, bytes):
            entry["envelope_hex"] = envelope.hex()
        else:
            entry["envelope"] = envelope
        entry |= {"reason": reason, "why": why}
        found.append(entry)
    return found


def vectors() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "spec": "docs/specs/notice.md",
        "about": (
            "Test keys only. Positive vectors: a sender that uses `ephemeral_private_hex` as its "
            "HPKE ephemeral key must produce `envelope` byte for byte; a receiver holding "
            "`unit_sealing_private_hex` must open `envelope` to `content_hex`. Negative vectors: "
            "a receiver that is `recipient`, with the same keys, must reject each envelope with "
            "`reason`. `envelope` is the UTF-8 text of the payload, or `envelope_hex` its bytes "
            "where they are not UTF-8."
        ),
        "suite": {"mode": 0, "kem_id": KEM_ID, "kdf_id": KDF_ID, "aead_id": AEAD_ID},
        "buckets": list(BUCKETS),
        "keys": {
            "service_signing_seed_hex": SERVICE_SEED.hex(),
            "service_signing_public_hex": SERVICE.public_key().public_bytes_raw().hex(),
            "unit_sealing_private_hex": UNIT_KEY.hex(),
            "unit_sealing_public_hex": public_of(UNIT_KEY).hex(),
            "other_unit_sealing_private_hex": OTHER_UNIT_KEY.hex(),
            "other_unit_sealing_public_hex": public_of(OTHER_UNIT_KEY).hex(),
        },
        "recipient": ME,
        "other_recipient": OTHER,
        "padding": [
            {"content_length": n, "bucket": bucket(n)}
            for n in (0, 1, 1020, 1021, 4092, 4093, 16380, 16381, 65532)
        ],
        "positive": positive(),
        "negative": negative(),
    }


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
