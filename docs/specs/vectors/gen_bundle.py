"""Generates `bundle.json`: known-answer and negative vectors for the evidence bundle and its
attestation (`docs/specs/bundle.md`).

Written from the specs alone (the leaf encoding and the Merkle tree of RFC 9162, the checkpoint,
the bundle), with the standard library and `cryptography`, importing nothing of the project:
`tests/specs/test_bundle_vectors.py` checks the project's code against what this script computes,
both ways, and that running it again gives the committed file byte for byte. Ed25519 signatures
are deterministic (RFC 8032), so the file is too.

    python docs/specs/vectors/gen_bundle.py      # rewrites bundle.json beside it
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

OUT: Final = Path(__file__).with_name("bundle.json")
BUNDLE_FORMAT: Final = "casetrail-evidence-bundle/v1"
CHECKPOINT_FORMAT: Final = "casetrail-checkpoint/v1"

# Fixed test keys (never a service's): RFC 8032 §7.1 TEST 1 and TEST 2 secret keys.
SERVICE_SEED: Final = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)
OTHER_SEED: Final = bytes.fromhex(
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
)

CASE: Final = "6f1c2e4a-8b3d-4c5e-9f60-718293a4b5c6"
OTHER_CASE: Final = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
REPORTED: Final = "domain.case:Case.ClueReported"
ASSESSED: Final = "domain.case:Case.RiskAssessed"
ACCESSED: Final = "domain.access:CaseAccessed"
ORDERED: Final = "domain.orders:InvestigationOrder.InvestigationOrderIssued"
CHECKPOINT_TIME: Final = "2026-07-23T10:15:00.123456Z"
CREATED_AT: Final = "2026-07-23T10:15:00.234567Z"


# --- the specs, written out ---------------------------------------------------------------


def leaf(position: int, stream_id: str, version: int, topic: str, state: bytes) -> bytes:
    """docs/evidence.md / docs/specs/merkle.md: the leaf encoding, version 1."""
    name = topic.encode()
    head = struct.pack(">BQ16sQH", 1, position, uuid.UUID(stream_id).bytes, version, len(name))
    return head + name + struct.pack(">I", len(state)) + state


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), bottom up."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def key_id(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def checkpoint_message(seq: int, size: int, root: bytes, time: str) -> bytes:
    return f"{CHECKPOINT_FORMAT}\nseq {seq}\nsize {size}\nroot {root.hex()}\ntime {time}\n".encode()


def attestation_message(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "attestation"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return BUNDLE_FORMAT.encode() + b"\n" + text.encode("utf-8")


def attest(document: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    signed = {k: v for k, v in document.items() if k != "attestation"}
    signed["attestation"] = {
        "key_id": key_id(key),
        "signature": base64.b64encode(key.sign(attestation_message(signed))).decode(),
    }
    return signed


# --- a small log: two cases, their access events, an order -------------------------------


def _state(label: str, size: int) -> bytes:
    # Stands in for a sealed state (docs/specs/event-cipher.md): opaque to the bundle.
    return b"\x01" + hashlib.shake_256(label.encode()).digest(size - 1)


def _stream(label: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(label.encode()).digest()[:16], version=4))


ACCESS_OWN: Final = _stream("the coordinator's bundle read")
ACCESS_INVESTIGATOR: Final = _stream("the investigator's bundle read")
ACCESS_LOG: Final = _stream("the investigator's access log read")
ACCESS_OTHER: Final = _stream("a read of the other case")
ORDER: Final = _stream("the investigation order")

# (position, stream, version, topic, kind in a bundle of CASE or None, content event)
LOG: Final[list[tuple[int, str, int, str, str | None, dict[str, Any]]]] = [
    (1, CASE, 1, REPORTED, "case", {"minor": {"name": "张小明"}, "description": "测试线索"}),
    (2, OTHER_CASE, 1, REPORTED, None, {}),
    # The note exercises the canonical JSON's string rules (bundle.md section 3): a named
    # escape, a control character as \u001f, U+2028 and "/" as themselves, a quote, a backslash.
    (3, CASE, 2, ASSESSED, "case",
     {"level": "high", "note": "需要会商\n复核\u001f\u2028 a/b \"q\" \\", "score": -3}),
    (4, ORDER, 1, ORDERED, "order", {"case_id": CASE, "reason": "一案一倒查"}),
    (6, ACCESS_OTHER, 1, ACCESSED, None, {}),
    (7, OTHER_CASE, 2, ASSESSED, None, {}),
    (8, ACCESS_OWN, 1, ACCESSED, "access",
     {"case_id": CASE, "rule": "coordinator_same_street", "request_id": "req-0001"}),
    (9, ACCESS_INVESTIGATOR, 1, ACCESSED, "access",
     {"case_id": CASE, "rule": "investigation_order", "request_id": "req-0002"}),
    (10, ACCESS_LOG, 1, ACCESSED, "access",
     {"case_id": CASE, "rule": "investigation_order", "request_id": "req-0002"}),
    (11, OTHER_CASE, 3, ASSESSED, None, {}),
    (12, OTHER_CASE, 4, ASSESSED, None, {}),
]  # fmt: skip
SEQ: Final = 5


def _leaves() -> list[dict[str, Any]]:
    found = []
    for index, (position, stream, version, topic, _, _) in enumerate(LOG):
        state = _state(f"state {position}", 48 + 5 * index)
        data = leaf(position, stream, version, topic, state)
        found.append(
            {
                "leaf_index": index,
                "position": position,
                "stream_id": stream,
                "version": version,
                "topic": topic,
                "state": base64.b64encode(state).decode(),
                "leaf": data.hex(),
                "leaf_hash": leaf_hash(data).hex(),
            }
        )
    return found


def _checkpoint(key: Ed25519PrivateKey, hashes: list[bytes]) -> dict[str, Any]:
    root = mth(hashes)
    message = checkpoint_message(SEQ, len(hashes), root, CHECKPOINT_TIME)
    return {
        "format": CHECKPOINT_FORMAT,
        "seq": SEQ,
        "size": len(hashes),
        "root": root.hex(),
        "time": CHECKPOINT_TIME,
        "key_id": key_id(key),
        "signature": base64.b64encode(key.sign(message)).decode(),
    }


def _bundle(
    key: Ed25519PrivateKey,
    leaves: list[dict[str, Any]],
    checkpoint: dict[str, Any],
    streams: set[str],
    with_content: bool,
) -> dict[str, Any]:
    hashes = [bytes.fromhex(item["leaf_hash"]) for item in leaves]
    records, content = [], []
    for item, (_, stream, _, topic, kind, event) in zip(leaves, LOG, strict=True):
        if kind is None or stream not in streams:
            continue
        records.append(
            {
                "position": item["position"],
                "stream_id": stream,
                "version": item["version"],
                "topic": topic,
                "state": item["state"],
                "kind": kind,
                "leaf_index": item["leaf_index"],
                "inclusion_proof": [h.hex() for h in path(item["leaf_index"], hashes)],
            }
        )
        content.append(
            {"leaf_index": item["leaf_index"], "type": topic.rsplit(":", 1)[-1], "event": event}
        )
    document: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "case_id": CASE,
        "created_at": CREATED_AT,
        "checkpoint": checkpoint,
        "records": records,
    }
    if with_content:
        document["content"] = content
    return attest(document, key)


# --- negative vectors: one change each ------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _negatives(
    key: Ed25519PrivateKey,
    other: Ed25519PrivateKey,
    investigator: dict[str, Any],
    coordinator: dict[str, Any],
) -> list[dict[str, Any]]:
    def flip_state(record: dict[str, Any]) -> None:
        state = bytearray(base64.b64decode(record["state"]))
        state[-1] ^= 0x01
        record["state"] = base64.b64encode(bytes(state)).decode()

    def by_kind(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda b: next(r for r in b["records"] if r["kind"] == kind)

    access, case = by_kind("access"), by_kind("case")
    plans: list[tuple[str, str, dict[str, Any], Edit, bool, list[str]]] = [
        ("not-a-bundle", "another format", coordinator,
         lambda b: b.update({"format": "casetrail-evidence-bundle/v2"}), True, ["not-a-bundle"]),
        ("attestation-invalid", "content edited after signing", investigator,
         lambda b: b["content"][0]["event"].update({"description": "改写"}), False,
         ["attestation-invalid"]),
        ("attestation-invalid", "attested with another key", coordinator,
         lambda b: b.update(attest(b, other)), False, ["attestation-invalid"]),
        ("attestation-invalid", "attestation key id altered", coordinator,
         lambda b: b["attestation"].update({"key_id": key_id(other)}), False,
         ["attestation-invalid"]),
        ("attestation-invalid", "attestation signature in base64url", coordinator,
         lambda b: b["attestation"].update(
             {"signature": b["attestation"]["signature"].replace("+", "-").replace("/", "_")
              if any(c in b["attestation"]["signature"] for c in "+/")
              else b["attestation"]["signature"].rstrip("=")}),
         False, ["attestation-invalid"]),
        ("checkpoint-unreadable", "checkpoint without its root", coordinator,
         lambda b: b["checkpoint"].pop("root"), True, ["checkpoint-unreadable"]),
        ("checkpoint-unreadable", "checkpoint root of 31 bytes", coordinator,
         lambda b: b["checkpoint"].update({"root": b["checkpoint"]["root"][:62]}), True,
         ["checkpoint-unreadable"]),
        ("checkpoint-signature", "checkpoint signed by another key", coordinator,
         lambda b: b.update({"checkpoint": _checkpoint(other, _hashes())}), True,
         ["checkpoint-signature"]),
        ("checkpoint-signature", "checkpoint size edited", coordinator,
         # Proofs of leaves below 8 still lead to the root with size 10: only the checkpoint's
         # signature binds the size (docs/specs/bundle.md, step 3).
         lambda b: b["checkpoint"].update({"size": 10}), True, ["checkpoint-signature"]),
        ("no-records", "no records", coordinator, lambda b: b.update({"records": []}), True,
         ["no-records"]),
        ("case-id-invalid", "case id not a UUID", coordinator,
         lambda b: b.update({"case_id": "case-17"}), True, ["case-id-invalid"]),
        ("record-malformed", "state not base64", coordinator,
         lambda b: access(b).update({"state": "not base64!"}), True, ["record-malformed"]),
        ("record-not-included", "stored state altered", coordinator,
         lambda b: flip_state(access(b)), True, ["record-not-included"]),
        ("record-not-included", "record moved to another position", coordinator,
         lambda b: access(b).update({"position": 5}), True, ["record-not-included"]),
        ("record-not-included", "inclusion proof reversed", coordinator,
         lambda b: access(b)["inclusion_proof"].reverse(), True, ["record-not-included"]),
        ("record-not-included", "record given another leaf index", coordinator,
         lambda b: access(b).update({"leaf_index": 7}), True, ["record-not-included"]),
        ("kind-unknown", "unknown kind", coordinator, lambda b: access(b).update({"kind": "note"}),
         True, ["kind-unknown"]),
        ("kind-mismatch", "an access record called a case record", coordinator,
         lambda b: access(b).update({"kind": "case"}), True, ["kind-mismatch"]),
        ("kind-mismatch", "the case's record called an access record", coordinator,
         lambda b: b["records"].__setitem__(slice(None), [
             {**r, "kind": "access"} if r["version"] == 2 and r["kind"] == "case" else r
             for r in b["records"]]),
         True, ["kind-mismatch", "stream-incomplete"]),
        ("case-stream-missing", "the case's own records left out", coordinator,
         lambda b: b.update({"records": [r for r in b["records"] if r["kind"] != "case"]}), True,
         ["case-stream-missing"]),
        ("case-stream-missing", "another case's id", coordinator,
         lambda b: b.update({"case_id": OTHER_CASE}), True,
         ["kind-mismatch", "case-stream-missing"]),
        ("stream-incomplete", "the case's first event left out", coordinator,
         lambda b: b["records"].remove(case(b)), True, ["stream-incomplete"]),
        ("content-mismatch", "decrypted content of one record left out", investigator,
         lambda b: b["content"].pop(), True, ["content-mismatch"]),
        ("content-mismatch", "content not a list", investigator,
         lambda b: b.update({"content": {}}), True, ["content-mismatch"]),
        ("content-mismatch", "content a number", investigator,
         lambda b: b.update({"content": 5}), True, ["content-mismatch"]),
    ]  # fmt: skip
    found = []
    for reason, name, base, edit, resign, reasons in plans:
        document = copy.deepcopy(base)
        edit(document)
        if resign:
            document = attest(document, key)
        found.append(
            {"name": name, "reason": reason, "reasons": reasons, "resigned": resign,
             "bundle": document}
        )  # fmt: skip
    return found


def _hashes() -> list[bytes]:
    return [bytes.fromhex(item["leaf_hash"]) for item in _leaves()]


def vectors() -> dict[str, Any]:
    key = Ed25519PrivateKey.from_private_bytes(SERVICE_SEED)
    other = Ed25519PrivateKey.from_private_bytes(OTHER_SEED)
    leaves = _leaves()
    checkpoint = _checkpoint(key, _hashes())
    investigator = _bundle(key, leaves, checkpoint, {CASE, ORDER, ACCESS_INVESTIGATOR,
                                                     ACCESS_LOG, ACCESS_OWN}, True)  # fmt: skip
    coordinator = _bundle(key, leaves, checkpoint, {CASE, ACCESS_OWN}, False)
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    positive = []
    for name, bundle in (
        ("an investigator's bundle, with content", investigator),
        ("a coordinator's bundle, content=false", coordinator),
    ):
        message = attestation_message(bundle)
        positive.append(
            {
                "name": name,
                "attestation_message": message.decode("utf-8"),
                "attestation_message_sha256": hashlib.sha256(message).hexdigest(),
                "bundle": bundle,
            }
        )
    return {
        "format": "casetrail-evidence-bundle-vectors/v1",
        "spec": "docs/specs/bundle.md",
        "generator": "docs/specs/vectors/gen_bundle.py",
        "encodings": "hashes and leaves as lowercase hex; states, signatures as standard "
        "base64 with padding; keys: seed and raw public key as lowercase hex, PEM as text",
        "reasons": REASONS,
        "keys": {
            "service": {
                "seed": SERVICE_SEED.hex(),
                "public_key": raw.hex(),
                "public_key_pem": pem.decode(),
                "key_id": key_id(key),
            },
            "other": {"seed": OTHER_SEED.hex(), "key_id": key_id(other)},
        },
        "log": {
            "leaves": leaves,
            "checkpoint_message": checkpoint_message(
                SEQ, len(leaves), bytes.fromhex(checkpoint["root"]), CHECKPOINT_TIME
            ).decode(),
            "checkpoint": checkpoint,
        },
        "positive": positive,
        "negative": _negatives(key, other, investigator, coordinator),
    }


REASONS: Final = {
    "not-a-bundle": "the document is not an object with format casetrail-evidence-bundle/v1",
    "checkpoint-unreadable": "the bundle's checkpoint is not a checkpoint in the form of "
    "docs/specs/checkpoint.md",
    "checkpoint-signature": "the checkpoint is not signed by the given public key (or names "
    "another key id)",
    "attestation-invalid": "the attestation's signature does not verify over the attestation "
    "message with the given key, or its key id is not the key's",
    "no-records": "records is missing, not a list, or empty",
    "case-id-invalid": "case_id is not a UUID",
    "record-malformed": "a record lacks a field or a field is not of its form",
    "record-not-included": "a record's leaf is not proven at its leaf index in the checkpoint",
    "kind-unknown": "a record's kind is not case, access or order",
    "kind-mismatch": "a record of kind case is not of the case's stream, or one of another kind is",
    "case-stream-missing": "no (checked) record is of the case's own stream",
    "stream-incomplete": "the versions of one stream's records are not exactly 1..n",
    "content-mismatch": "content is present but not a list whose leaf indexes are exactly the "
    "records'",
}


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
