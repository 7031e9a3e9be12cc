"""Writes docs/specs/vectors/checkpoint.json: known answers for docs/specs/checkpoint.md (the
signed text, the Ed25519 signature, the key id, the JSON form, a file of several) with a fixed
key, and negative checkpoints with the reason each must be rejected for. Run from the
repository root:

    .venv/bin/python docs/specs/vectors/gen_checkpoint.py

Ed25519 (RFC 8032) signatures are deterministic, so the expected signatures are fixed bytes.
The values come from the project's code (`projections.evidence.checkpoints`), and the generator
refuses to write a negative vector whose documented reason the code does not give;
`tests/specs/test_checkpoint_vectors.py` checks the committed file against the code both ways
and that this script reproduces it byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from projections.evidence.checkpoints import (  # noqa: E402
    Checkpoint,
    CheckpointFormatError,
    checkpoints_document,
    key_id,
    signed_message,
)
from projections.evidence.merkle import EMPTY_ROOT  # noqa: E402

OUT = Path(__file__).with_name("checkpoint.json")
SEED = hashlib.sha256(b"casetrail checkpoint vectors: service key").digest()
OTHER_SEED = hashlib.sha256(b"casetrail checkpoint vectors: another key").digest()
TIME = "2026-07-23T10:15:00.123456Z"


def _key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def _public(seed: bytes) -> dict[str, str]:
    public = _key(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "private_seed": seed.hex(),
        "public_raw": raw.hex(),
        "public_pem": pem.decode(),
        "key_id": key_id(public),
    }


def _problem(document: Any) -> str | None:
    public = _key(SEED).public_key()
    try:
        return Checkpoint.from_json(document).problem(public)
    except CheckpointFormatError as exc:
        return exc.reason


def vectors() -> dict[str, Any]:
    key = _key(SEED)
    inputs = [
        (1, 0, EMPTY_ROOT, TIME),
        (7, 700, hashlib.sha256(b"a root").digest(), TIME),
        (2**53, 2**53 - 1, bytes(range(32)), "2099-12-31T23:59:59Z"),
    ]
    positive = []
    checkpoints = []
    for seq, size, root, time in inputs:
        checkpoint = Checkpoint.sign(key, seq=seq, size=size, root=root, time=time)
        checkpoints.append(checkpoint)
        message = signed_message(seq, size, root, time)
        positive.append(
            {
                "input": {"seq": seq, "size": size, "root": root.hex(), "time": time},
                "signed_text": message.decode(),
                "signed_bytes": message.hex(),
                "signature": base64.b64encode(checkpoint.signature).decode(),
                "json": checkpoint.to_json(),
            }
        )
    base = checkpoints[1].to_json()
    other = Checkpoint.sign(_key(OTHER_SEED), seq=7, size=700, root=checkpoints[1].root, time=TIME)
    signature = base["signature"]
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sloppy = signature[:85] + last[(last.index(signature[85]) | 1)] + "=="
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("size changed after signing", {**base, "size": 701}, "signature-invalid"),
        ("seq changed after signing", {**base, "seq": 8}, "signature-invalid"),
        ("root changed after signing", {**base, "root": "00" * 32}, "signature-invalid"),
        ("time changed after signing", {**base, "time": "2026-07-23T10:15:01.123456Z"},
         "signature-invalid"),
        ("signed by another key, naming it", other.to_json(), "signature-invalid"),
        ("another key's id", {**base, "key_id": key_id(_key(OTHER_SEED).public_key())},
         "key-id-mismatch"),
        ("another format", {**base, "format": "casetrail-checkpoint/v2"}, "format-unknown"),
        ("no signature", {k: v for k, v in base.items() if k != "signature"}, "field-missing"),
        ("no time", {k: v for k, v in base.items() if k != "time"}, "field-missing"),
        ("seq 0", {**base, "seq": 0}, "integer-invalid"),
        ("seq true", {**base, "seq": True}, "integer-invalid"),
        ("size as a string", {**base, "size": "700"}, "integer-invalid"),
        ("size negative", {**base, "size": -1}, "integer-invalid"),
        ("size 2**63", {**base, "size": 2**63}, "integer-invalid"),
        ("root in uppercase hex", {**base, "root": base["root"].upper()}, "root-invalid"),
        ("root of 31 bytes", {**base, "root": base["root"][:62]}, "root-invalid"),
        ("time without Z", {**base, "time": TIME[:-1]}, "time-invalid"),
        ("time with an offset", {**base, "time": TIME[:-1] + "+00:00"}, "time-invalid"),
        ("time with a forged line", {**base, "time": TIME + "\nsize 9"}, "time-invalid"),
        ("key id in uppercase", {**base, "key_id": base["key_id"].upper()}, "key-id-invalid"),
        ("signature in base64url", {**base, "signature": base64.urlsafe_b64encode(
            base64.b64decode(signature)).decode()}, "signature-malformed"),
        ("signature without padding", {**base, "signature": signature.rstrip("=")},
         "signature-malformed"),
        ("signature with non-zero unused bits", {**base, "signature": sloppy},
         "signature-malformed"),
        ("signature of 63 bytes", {**base, "signature": base64.b64encode(
            base64.b64decode(signature)[:63]).decode()}, "signature-malformed"),
    ]  # fmt: skip
    # The base64url case means something only if the signature has a character that differs.
    if "+" not in signature and "/" not in signature:
        raise SystemExit("pick another input: the signature has no + or / to differ in base64url")
    negative = []
    for description, document, reason in cases:
        found = _problem(document)
        if found != reason:
            raise SystemExit(f"checkpoint vector {description!r}: the code says {found}")
        negative.append({"description": description, "checkpoint": document, "reason": reason})
    return {
        "spec": "docs/specs/checkpoint.md",
        "version": 1,
        "generator": "docs/specs/vectors/gen_checkpoint.py",
        "key": _public(SEED),
        "other_key": _public(OTHER_SEED),
        "checkpoints": positive,
        "file": checkpoints_document(checkpoints),
        "negative": negative,
    }


def render() -> str:
    return json.dumps(vectors(), indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
