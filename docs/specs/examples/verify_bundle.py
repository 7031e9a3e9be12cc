"""A minimal offline verifier of casetrail evidence bundles, written from docs/specs/bundle.md
(and the checkpoint and Merkle specs it builds on) alone: the standard library and
`cryptography`, nothing of the project. It runs every check of bundle.md section 4, in order,
and reports each failure with the reason code the spec gives.

    python verify_bundle.py BUNDLE.json --public-key service-signing.pub [--json]

Exit codes: 0 intact; 1 tampered (the first problem on the first line, `TAMPERED: [reason] ...`,
the others on lines starting `also:`); 2 cannot check (not a bundle, unreadable file or key).
`--json` prints {"intact": bool, "problems": [{"reason": ..., "message": ...}]} instead.

Proven against the spec's vectors and against bundles the service issues by
tests/specs/test_offline_bundle_verifier.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_FORMAT = "casetrail-evidence-bundle/v1"
CHECKPOINT_FORMAT = "casetrail-checkpoint/v1"
KINDS = ("case", "access", "order")

_HEX32 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class NotABundle(ValueError):
    """Step 1 failed: there is nothing to check."""


class Malformed(ValueError):
    pass


# --- encodings ------------------------------------------------------------------------------


def b64(text: Any) -> bytes:
    """Strict standard base64 with padding (not base64url); raises Malformed otherwise."""
    if not isinstance(text, str) or not _B64.fullmatch(text):
        raise Malformed("not standard base64 with padding")
    data = base64.b64decode(text, validate=True)
    if base64.b64encode(data).decode() != text:  # one encoding per value (unused bits zero)
        raise Malformed("not canonical base64")
    return data


def integer(value: Any, least: int) -> int:
    # JSON true/false are not integers, whatever Python thinks.
    if type(value) is not int or not least <= value < 1 << 63:
        raise Malformed(f"not an integer from {least}")
    return value


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


# --- the Merkle tree (RFC 9162 section 2.1) -------------------------------------------------


def leaf_bytes(
    position: int, stream_id: uuid.UUID, version: int, topic: str, state: bytes
) -> bytes:
    name = topic.encode("utf-8")
    if len(name) > 0xFFFF or len(state) > 0xFFFFFFFF:
        raise Malformed("topic or state too long for a leaf")
    return (
        b"\x01"
        + position.to_bytes(8, "big")
        + stream_id.bytes
        + version.to_bytes(8, "big")
        + len(name).to_bytes(2, "big")
        + name
        + len(state).to_bytes(4, "big")
        + state
    )


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def included(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False  # the proof is longer than the path
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --- the checkpoint (docs/specs/checkpoint.md) ----------------------------------------------


def read_checkpoint(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise Malformed(f"not a checkpoint (format {CHECKPOINT_FORMAT!r})")
    for name in ("seq", "size", "root", "time", "key_id", "signature"):
        if name not in data:
            raise Malformed(f"the checkpoint has no {name!r}")
    integer(data["seq"], 1)
    integer(data["size"], 0)
    if not isinstance(data["root"], str) or not _HEX32.fullmatch(data["root"]):
        raise Malformed("the root is not 64 lowercase hex digits")
    if not isinstance(data["time"], str) or not _TIME.fullmatch(data["time"]):
        raise Malformed("the time is not UTC as YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
    if not isinstance(data["key_id"], str) or not _KEY_ID.fullmatch(data["key_id"]):
        raise Malformed("the key id is not 16 lowercase hex digits")
    if len(b64(data["signature"])) != 64:
        raise Malformed("the signature is not 64 bytes")
    return data


def checkpoint_text(c: dict[str, Any]) -> bytes:
    return (
        f"{CHECKPOINT_FORMAT}\nseq {c['seq']}\nsize {c['size']}\nroot {c['root']}\n"
        f"time {c['time']}\n"
    ).encode()


def signed_by(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# --- the bundle (docs/specs/bundle.md) ------------------------------------------------------


def attestation_message(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "attestation"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return BUNDLE_FORMAT.encode("ascii") + b"\n" + text.encode("utf-8")


def _record(item: Any) -> tuple[int, uuid.UUID, int, str, bytes, str, int, list[bytes]]:
    if not isinstance(item, dict):
        raise Malformed("a record is not an object")
    for name in ("position", "stream_id", "version", "topic", "state", "kind", "leaf_index",
                 "inclusion_proof"):  # fmt: skip
        if name not in item:
            raise Malformed(f"a record has no {name!r}")
    stream = item["stream_id"]
    if not isinstance(stream, str) or str(_uuid(stream)) != stream:
        raise Malformed("stream_id is not a lowercase hyphenated UUID")
    if not isinstance(item["topic"], str) or not isinstance(item["kind"], str):
        raise Malformed("topic and kind must be strings")
    proof = item["inclusion_proof"]
    if not isinstance(proof, list) or not all(
        isinstance(h, str) and _HEX32.fullmatch(h) for h in proof
    ):
        raise Malformed("inclusion_proof is not a list of 64 lowercase hex digits")
    return (
        integer(item["position"], 1),
        uuid.UUID(stream),
        integer(item["version"], 1),
        item["topic"],
        b64(item["state"]),
        item["kind"],
        integer(item["leaf_index"], 0),
        [bytes.fromhex(h) for h in proof],
    )


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise Malformed("not a UUID") from None


def verify(document: Any, key: Ed25519PublicKey) -> list[tuple[str, str]]:
    """Every problem as (reason, message), in the order of bundle.md section 4; empty when the
    bundle is intact. Raises NotABundle when step 1 fails."""
    problems: list[tuple[str, str]] = []
    # 1
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        raise NotABundle(f"not an evidence bundle (expected format {BUNDLE_FORMAT!r})")
    # 2
    try:
        checkpoint = read_checkpoint(document.get("checkpoint"))
    except Malformed as exc:
        return [("checkpoint-unreadable", f"the bundle's checkpoint is unreadable: {exc}")]
    name = f"checkpoint #{checkpoint['seq']} (size {checkpoint['size']})"
    # 3
    signature = b64(checkpoint["signature"])
    if not signed_by(key, signature, checkpoint_text(checkpoint)) or (
        checkpoint["key_id"] != key_id(key)
    ):
        problems.append(("checkpoint-signature", f"{name} is not signed by the given key"))
    # 4
    if not _attested(document, key):
        problems.append(("attestation-invalid", "the attestation does not verify: altered"))
    # 5
    records = document.get("records")
    if not isinstance(records, list) or not records:
        return [*problems, ("no-records", "the bundle holds no records")]
    # 6
    case_id = document.get("case_id")
    try:
        case = _uuid(case_id) if isinstance(case_id, str) else _uuid("")
    except Malformed:
        return [*problems, ("case-id-invalid", "case_id is not a UUID")]
    root, size = bytes.fromhex(checkpoint["root"]), checkpoint["size"]
    streams: dict[tuple[str, uuid.UUID], list[int]] = {}
    for item in records:
        # 7
        try:
            position, stream, version, topic, state, kind, index, proof = _record(item)
            data = leaf_bytes(position, stream, version, topic, state)
        except Malformed as exc:
            problems.append(("record-malformed", f"a record is malformed: {exc}"))
            continue
        # 8
        leaf_hash = hashlib.sha256(b"\x00" + data).digest()
        if not included(leaf_hash, index, size, proof, root):
            problems.append(
                (
                    "record-not-included",
                    f"the record at leaf index {index} (position {position}) is not in {name}",
                )
            )
            continue
        # 9, 10
        if kind not in KINDS:
            problems.append(
                ("kind-unknown", f"the record at position {position} has kind {kind!r}")
            )
        elif (kind == "case") != (stream == case):
            problems.append(
                ("kind-mismatch", f"the record at position {position} is not a {kind} record")
            )
        streams.setdefault((kind, stream), []).append(version)
    # 11
    if ("case", case) not in streams:
        problems.append(("case-stream-missing", "the bundle holds none of the case's own events"))
    # 12
    for (kind, stream), versions in sorted(streams.items(), key=str):
        if sorted(versions) != list(range(1, len(versions) + 1)):
            problems.append(
                ("stream-incomplete", f"the {kind} stream {stream} is not complete from version 1")
            )
    # 13
    if "content" in document:
        content = document["content"]
        indexes = {item.get("leaf_index") for item in records if isinstance(item, dict)}
        if not isinstance(content, list) or indexes != {
            c.get("leaf_index") for c in content if isinstance(c, dict)
        }:
            problems.append(
                ("content-mismatch", "the decrypted content does not match the records")
            )
    return problems


def _attested(document: dict[str, Any], key: Ed25519PublicKey) -> bool:
    attestation = document.get("attestation")
    if not isinstance(attestation, dict) or attestation.get("key_id") != key_id(key):
        return False
    try:
        signature = b64(attestation.get("signature"))
    except Malformed:
        return False
    return signed_by(key, signature, attestation_message(document))


def own_access_records(document: dict[str, Any]) -> int:
    """How many records are access events (every bundle holds its own: bundle.md section 2)."""
    return sum(
        1 for r in document.get("records", []) if isinstance(r, dict) and r.get("kind") == "access"
    )


# --- the command ----------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise NotABundle("the JSON has an object with a member named twice")
    return dict(pairs)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a casetrail evidence bundle offline.")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="the service's PEM key")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        key = serialization.load_pem_public_key(args.public_key.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        document = json.loads(
            args.bundle.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates
        )
        problems = verify(document, key)
    except (OSError, ValueError) as exc:  # NotABundle, JSON and key errors are ValueErrors
        sys.stderr.write(f"verify_bundle: error: {exc}\n")
        return 2
    if args.json:
        listed = [{"reason": r, "message": m} for r, m in problems]
        say(json.dumps({"intact": not problems, "problems": listed}))
    elif problems:
        reason, message = problems[0]
        say(f"TAMPERED: [{reason}] {message}")
        for reason, message in problems[1:]:
            say(f"also: [{reason}] {message}")
    else:
        records = len(document["records"])
        say(
            f"intact: {records} stored events of case {document['case_id']}, each included in "
            f"checkpoint #{document['checkpoint']['seq']} (size {document['checkpoint']['size']}); "
            "the bundle is signed by the service"
        )
        if not own_access_records(document):
            say("note: no access record: a bundle issued before this spec does not hold its own")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
