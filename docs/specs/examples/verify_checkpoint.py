#!/usr/bin/env python3
"""A minimal offline checker of casetrail checkpoints and proofs, written from
docs/specs/checkpoint.md and docs/specs/merkle.md alone: the Python standard library and the
`cryptography` package, nothing of the project.

    python verify_checkpoint.py --public-key service-signing.pub FILE

FILE is a checkpoint (`casetrail-checkpoint/v1`), a file of several
(`casetrail-checkpoints/v1`, as a unit keeps them), an inclusion proof
(`casetrail-inclusion-proof/v1`) or a consistency proof (`casetrail-consistency-proof/v1`).

Exit 0 and `valid: ...` when it holds; 1 and `INVALID: <reason>: <what>` when it does not (the
reason codes of the specs); 2 when the file or the key cannot be read.
`tests/specs/test_offline_checkpoint_verifier.py` runs it on the committed vectors and on
documents the project wrote, and checks it imports nothing else.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import struct
import sys
import uuid
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CHECKPOINT = "casetrail-checkpoint/v1"
CHECKPOINTS = "casetrail-checkpoints/v1"
INCLUSION = "casetrail-inclusion-proof/v1"
CONSISTENCY = "casetrail-consistency-proof/v1"
FIELDS = ("seq", "size", "root", "time", "key_id", "signature")
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX16 = re.compile(r"[0-9a-f]{16}")
TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
BASE64_64 = re.compile(r"[A-Za-z0-9+/]{86}==")


class Invalid(Exception):
    """The document does not hold: `reason` is the specs' code."""

    def __init__(self, reason: str, what: str) -> None:
        super().__init__(f"{reason}: {what}")
        self.reason = reason


# --- checkpoint.md ----------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def signed_text(checkpoint: dict[str, Any]) -> bytes:
    return (
        f"{CHECKPOINT}\nseq {checkpoint['seq']}\nsize {checkpoint['size']}\n"
        f"root {checkpoint['root']}\ntime {checkpoint['time']}\n"
    ).encode()


def checkpoint_problem(checkpoint: Any, public_key: Ed25519PublicKey) -> str | None:
    """checkpoint.md §4, step by step: the first reason that applies, or None."""
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT:
        return "format-unknown"
    if any(name not in checkpoint for name in FIELDS):
        return "field-missing"
    seq, size = checkpoint["seq"], checkpoint["size"]
    if type(seq) is not int or type(size) is not int:
        return "integer-invalid"
    if not (1 <= seq < 2**63 and 0 <= size < 2**63):
        return "integer-invalid"
    if not isinstance(checkpoint["root"], str) or not HEX64.fullmatch(checkpoint["root"]):
        return "root-invalid"
    if not isinstance(checkpoint["time"], str) or not TIME.fullmatch(checkpoint["time"]):
        return "time-invalid"
    if not isinstance(checkpoint["key_id"], str) or not HEX16.fullmatch(checkpoint["key_id"]):
        return "key-id-invalid"
    text = checkpoint["signature"]
    if not isinstance(text, str) or not BASE64_64.fullmatch(text):
        return "signature-malformed"
    signature = base64.b64decode(text, validate=True)
    if base64.b64encode(signature).decode() != text:
        return "signature-malformed"
    try:
        public_key.verify(signature, signed_text(checkpoint))
    except InvalidSignature:
        return "signature-invalid"
    if checkpoint["key_id"] != key_id(public_key):
        return "key-id-mismatch"
    return None


def check_checkpoint(checkpoint: Any, public_key: Ed25519PublicKey) -> dict[str, Any]:
    reason = checkpoint_problem(checkpoint, public_key)
    if reason is not None:
        seq = checkpoint.get("seq") if isinstance(checkpoint, dict) else None
        raise Invalid(reason, f"checkpoint #{seq}")
    return dict(checkpoint)


# --- merkle.md ------------------------------------------------------------------------------


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def encode_leaf(record: dict[str, Any]) -> bytes:
    """merkle.md §2."""
    topic = str(record["topic"]).encode()
    position, version = int(record["position"]), int(record["version"])
    if not (0 <= position < 2**64 and 0 <= version < 2**64):
        raise Invalid("integer-out-of-range", "position or version")
    if len(topic) > 0xFFFF:
        raise Invalid("topic-too-long", "topic")
    state: bytes = record["state"]
    return (
        struct.pack(">BQ", 1, position)
        + uuid.UUID(str(record["stream_id"])).bytes
        + struct.pack(">QH", version, len(topic))
        + topic
        + struct.pack(">I", len(state))
        + state
    )


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def inclusion_problem(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> str | None:
    """merkle.md §4."""
    if not 0 <= index < size:
        return "index-out-of-range"
    if any(len(h) != 32 for h in (leaf, root, *proof)):
        return "malformed-hash"
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return "proof-too-long"
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return "proof-too-short"
    return None if r == root else "root-mismatch"


def consistency_problem(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]
) -> str | None:
    """merkle.md §5."""
    if not 0 <= first <= second:
        return "sizes-out-of-order"
    if any(len(h) != 32 for h in (first_root, second_root, *proof)):
        return "malformed-hash"
    if first == second:
        if proof:
            return "proof-not-empty"
        return None if first_root == second_root else "root-mismatch"
    if first == 0:
        return "proof-not-empty" if proof else None
    if not proof:
        return "proof-too-short"
    path = [first_root, *proof] if first & (first - 1) == 0 else list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return "proof-too-long"
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return "proof-too-short"
    if fr != first_root:
        return "first-root-mismatch"
    return None if sr == second_root else "second-root-mismatch"


# --- documents --------------------------------------------------------------------------------


def _hashes(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list) or not all(
        isinstance(v, str) and HEX64.fullmatch(v) for v in values
    ):
        raise Invalid("malformed-hash", f"{what} must be a list of 64 lowercase hex digits")
    return [bytes.fromhex(v) for v in values]


def _integer(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if type(value) is not int:
        raise Invalid("malformed", f"{name} must be an integer")
    return value


def check(document: Any, public_key: Ed25519PublicKey) -> str:
    """What holds (one line), or raises Invalid."""
    kind = document.get("format") if isinstance(document, dict) else None
    if kind == CHECKPOINT:
        cp = check_checkpoint(document, public_key)
        return f"checkpoint #{cp['seq']}: size {cp['size']}, root {cp['root']}, {cp['time']}"
    if kind == CHECKPOINTS:
        items = document.get("checkpoints")
        if not isinstance(items, list) or not items:
            raise Invalid("malformed", "the checkpoint list is empty")
        seen: dict[int, dict[str, Any]] = {}
        for item in items:
            cp = check_checkpoint(item, public_key)
            earlier = seen.setdefault(cp["seq"], cp)
            if (earlier["size"], earlier["root"]) != (cp["size"], cp["root"]):
                raise Invalid("forked", f"two signed checkpoints #{cp['seq']} differ")
        return f"{len(items)} checkpoints, each signed by key {key_id(public_key)}"
    if kind == INCLUSION:
        cp = check_checkpoint(document.get("checkpoint"), public_key)
        (leaf,) = _hashes([document.get("leaf_hash")], "leaf_hash")
        index, size = _integer(document, "leaf_index"), _integer(document, "tree_size")
        if size != cp["size"]:
            raise Invalid("size-mismatch", f"tree_size {size}, checkpoint size {cp['size']}")
        record = document.get("record")
        if record is not None:
            try:
                state = base64.b64decode(str(record["state"]), validate=True)
                encoded = encode_leaf({**record, "state": state})
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise Invalid("malformed", f"record: {exc}") from None
            if leaf_hash(encoded) != leaf:
                raise Invalid("record-mismatch", "the record does not hash to leaf_hash")
        proof = _hashes(document.get("proof"), "proof")
        reason = inclusion_problem(leaf, index, size, proof, bytes.fromhex(cp["root"]))
        if reason is not None:
            raise Invalid(reason, f"leaf index {index} in checkpoint #{cp['seq']}")
        return f"leaf index {index} is in checkpoint #{cp['seq']} (size {size})"
    if kind == CONSISTENCY:
        first = check_checkpoint(document.get("first"), public_key)
        second = check_checkpoint(document.get("second"), public_key)
        proof = _hashes(document.get("proof"), "proof")
        reason = consistency_problem(
            first["size"],
            second["size"],
            bytes.fromhex(first["root"]),
            bytes.fromhex(second["root"]),
            proof,
        )
        if reason is not None:
            raise Invalid(reason, f"checkpoint #{second['seq']} from #{first['seq']}")
        return f"checkpoint #{second['seq']} extends checkpoint #{first['seq']}"
    raise ValueError(f"unknown document format {kind!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public-key", required=True, type=Path, help="the service's PEM")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        public_key = serialization.load_pem_public_key(args.public_key.read_bytes())
        if not isinstance(public_key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        document = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"verify_checkpoint: error: {exc}\n")
        return 2
    try:
        sys.stdout.write(f"valid: {check(document, public_key)}\n")
    except Invalid as exc:
        sys.stdout.write(f"INVALID: {exc}\n")
        return 1
    except ValueError as exc:
        sys.stderr.write(f"verify_checkpoint: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
