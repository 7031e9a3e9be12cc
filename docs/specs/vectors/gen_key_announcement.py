"""Writes docs/specs/vectors/key_announcement.json: known answers for
docs/specs/key-announcement.md (the signed text, both Ed25519 signatures, the JSON form) with
fixed keys, and negative announcements with the reason each must be rejected for. Run from the
repository root:

    .venv/bin/python docs/specs/vectors/gen_key_announcement.py

The values come from the project's code (`projections.evidence.rotation`); the generator refuses
to write a negative vector whose documented reason the code does not give.
`tests/specs/test_key_announcement_vectors.py` checks the committed file against the code and
that this script reproduces it byte for byte.
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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from projections.evidence.checkpoints import Checkpoint  # noqa: E402
from projections.evidence.rotation import Announcement, raw, signed_message  # noqa: E402

OUT = Path(__file__).with_name("key_announcement.json")
OLD_SEED = hashlib.sha256(b"casetrail key announcement vectors: old key").digest()
NEW_SEED = hashlib.sha256(b"casetrail key announcement vectors: new key").digest()
OTHER_SEED = hashlib.sha256(b"casetrail key announcement vectors: another key").digest()
TIME = "2026-07-23T10:15:00.123456Z"


def _key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def vectors() -> dict[str, Any]:
    old, new, other = _key(OLD_SEED), _key(NEW_SEED), _key(OTHER_SEED)
    checkpoint = Checkpoint.sign(
        old, seq=7, size=700, root=hashlib.sha256(b"a root").digest(), time=TIME
    )
    announcement = Announcement.sign(checkpoint, old, new)
    message = signed_message(checkpoint, raw(old.public_key()), raw(new.public_key()))
    document = announcement.to_json()
    positive: dict[str, Any] = {
        "signed_message": message.decode(),
        "old_signature": _b64(announcement.old_signature),
        "new_signature": _b64(announcement.new_signature),
        "json": document,
    }
    by_other = Announcement.sign(
        Checkpoint.sign(other, seq=7, size=700, root=checkpoint.root, time=TIME), old, new
    )
    negatives = [
        ("same-key", Announcement.sign(checkpoint, old, old).to_json()),
        ("old-signature-invalid", {**document, "old_signature": _b64(other.sign(message))}),
        ("new-signature-invalid", {**document, "new_signature": _b64(other.sign(message))}),
        ("old-signature-invalid", {**document, "size": 701}),
        ("checkpoint-not-old-key", by_other.to_json()),
    ]
    negative = []
    for reason, document in negatives:
        found = Announcement.from_json(document).problem()
        if found != reason:
            raise SystemExit(f"the code gives {found!r}, not {reason!r}, for a negative vector")
        negative.append({"reason": reason, "announcement": document})
    return {
        "spec": "docs/specs/key-announcement.md",
        "keys": {
            "old": {"private_seed": OLD_SEED.hex(), "public_raw": raw(old.public_key()).hex()},
            "new": {"private_seed": NEW_SEED.hex(), "public_raw": raw(new.public_key()).hex()},
        },
        "positive": positive,
        "negative": negative,
    }


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
