"""Writes docs/specs/vectors/merkle.json: known answers for docs/specs/merkle.md (the leaf
encoding, tree hashes, inclusion and consistency proofs) and negative vectors with the reason
each must be rejected for. Run from the repository root:

    .venv/bin/python docs/specs/vectors/gen_merkle.py

The expected values come from the project's own code (`projections.evidence`), and the
generator refuses to write a negative vector whose documented reason the code does not give;
`tests/specs/test_merkle_vectors.py` checks the committed file against the code both ways and
that this script reproduces it byte for byte. The RFC 6962 tree of the eight standard leaves is
included as published (its roots are also in `tests/evidence/test_merkle_kat.py`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from projections.evidence.log import encode_leaf  # noqa: E402
from projections.evidence.merkle import (  # noqa: E402
    EMPTY_ROOT,
    MemoryTree,
    consistency_problem,
    consistency_proof,
    inclusion_problem,
    inclusion_proof,
    leaf_hash,
)

OUT = Path(__file__).with_name("merkle.json")
STREAM = UUID("6f1c2a4e-8b3d-4f5a-9c7e-0d1b2a3c4e5f")
RFC6962_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                  "606162636465666768696a6b6c6d6e6f"]  # fmt: skip


def _state(i: int) -> bytes:
    """Stand-in for stored ciphertext: deterministic bytes of varying length (0 for i = 0)."""
    out = b""
    while len(out) < 7 * i:
        out += hashlib.sha256(f"casetrail vector state {i} {len(out)}".encode()).digest()
    return out[: 7 * i]


def records() -> list[dict[str, Any]]:
    topics = [
        "domain.case:Case.ClueReported",
        "domain.access:AccessLog.CaseAccessed",
        "domain.case:案件.已报告",  # non-ASCII: the length is of the UTF-8 bytes
        "",
        "domain.case:Case.RiskAssessed",
        "domain.orders:InvestigationOrder.Issued",
        "domain.case:Case.Closed",
    ]
    return [
        {
            "position": [1, 2, 3, 5, 6, 2**53, 2**64 - 1][i],  # gaps: rolled-back inserts
            "stream_id": str(STREAM),
            "version": [1, 1, 2, 3, 4, 1, 2**64 - 1][i],
            "topic": topic,
            "state": _state(i).hex(),
        }
        for i, topic in enumerate(topics)
    ]


def _encode(record: dict[str, Any]) -> bytes:
    return encode_leaf(
        record["position"],
        UUID(record["stream_id"]),
        record["version"],
        record["topic"],
        bytes.fromhex(record["state"]),
    )


def _hex(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _inclusion_negative(tree: MemoryTree, size: int) -> list[dict[str, Any]]:
    index = 2
    leaf = tree.read(0, index)
    proof = inclusion_proof(index, size, tree.read)
    root = tree.root(size)
    flipped = bytearray(proof[0])
    flipped[0] ^= 0x01
    cases: list[tuple[str, str, int, int, list[bytes], bytes, bytes]] = [
        ("a proof hash changed", "root-mismatch", index, size,
         [bytes(flipped), *proof[1:]], leaf, root),
        ("another leaf's hash", "root-mismatch", index, size, proof, tree.read(0, 3), root),
        ("the leaf at another index", "root-mismatch", index + 1, size, proof, leaf, root),
        ("the last proof hash dropped", "proof-too-short", index, size, proof[:-1], leaf, root),
        ("a hash added to the proof", "proof-too-long", index, size,
         [*proof, proof[0]], leaf, root),
        ("index equal to the tree size", "index-out-of-range", size, size, proof, leaf, root),
        ("a 31-byte proof hash", "malformed-hash", index, size,
         [proof[0][:31], *proof[1:]], leaf, root),
        ("the proof against the root of a smaller tree", "root-mismatch", index, size,
         proof, leaf, tree.root(size - 1)),
    ]  # fmt: skip
    out = []
    for description, reason, i, n, path, leaf_value, root_value in cases:
        found = inclusion_problem(leaf_value, i, n, path, root_value)
        if found != reason:
            raise SystemExit(f"inclusion vector {description!r}: the code says {found}")
        out.append(
            {
                "description": description,
                "leaf_index": i,
                "tree_size": n,
                "leaf_hash": leaf_value.hex(),
                "root": root_value.hex(),
                "proof": _hex(path),
                "reason": reason,
            }
        )
    return out


def _consistency_negative(tree: MemoryTree) -> list[dict[str, Any]]:
    first, second = 3, 7
    proof = consistency_proof(first, second, tree.read)
    r1, r2 = tree.root(first), tree.root(second)
    last = bytearray(proof[-1])
    last[0] ^= 0x01
    head = bytearray(proof[0])
    head[0] ^= 0x01
    cases: list[tuple[str, str, int, int, bytes, bytes, list[bytes]]] = [
        ("the first root changed", "first-root-mismatch", first, second, r2, r2, proof),
        ("the second root changed", "second-root-mismatch", first, second, r1, r1, proof),
        ("the first proof hash changed", "first-root-mismatch", first, second, r1, r2,
         [bytes(head), *proof[1:]]),
        ("the last proof hash changed", "second-root-mismatch", first, second, r1, r2,
         [*proof[:-1], bytes(last)]),
        ("the last proof hash dropped", "proof-too-short", first, second, r1, r2, proof[:-1]),
        ("a hash added to the proof", "proof-too-long", first, second, r1, r2,
         [*proof, proof[0]]),
        ("an empty proof between different sizes", "proof-too-short", first, second, r1, r2, []),
        ("sizes swapped", "sizes-out-of-order", second, first, r2, r1, proof),
        ("equal sizes, different roots", "root-mismatch", second, second, r1, r2, []),
        ("equal sizes with a non-empty proof", "proof-not-empty", second, second, r2, r2,
         proof[:1]),
        ("a 33-byte proof hash", "malformed-hash", first, second, r1, r2,
         [proof[0] + b"\x00", *proof[1:]]),
    ]  # fmt: skip
    out = []
    for description, reason, m, n, root1, root2, path in cases:
        found = consistency_problem(m, n, root1, root2, path)
        if found != reason:
            raise SystemExit(f"consistency vector {description!r}: the code says {found}")
        out.append(
            {
                "description": description,
                "first": m,
                "second": n,
                "first_root": root1.hex(),
                "second_root": root2.hex(),
                "proof": _hex(path),
                "reason": reason,
            }
        )
    return out


def vectors() -> dict[str, Any]:
    items = records()
    leaves = [_encode(r) for r in items]
    tree = MemoryTree(leaf_hash(leaf) for leaf in leaves)
    size = tree.size
    rfc = MemoryTree(leaf_hash(bytes.fromhex(h)) for h in RFC6962_LEAVES)
    return {
        "spec": "docs/specs/merkle.md",
        "version": 1,
        "generator": "docs/specs/vectors/gen_merkle.py",
        "encoding": "hashes and byte strings: lowercase hex; integers: JSON numbers",
        "empty_root": EMPTY_ROOT.hex(),
        "leaf_encoding": [
            {"record": r, "leaf": leaf.hex(), "leaf_hash": leaf_hash(leaf).hex()}
            for r, leaf in zip(items, leaves, strict=True)
        ],
        "leaf_encoding_negative": [
            {"record": {**items[0], "position": 2**64}, "reason": "integer-out-of-range"},
            {"record": {**items[0], "version": -1}, "reason": "integer-out-of-range"},
            {
                "record": {**items[0], "topic": None, "topic_repeat": ["a", 65536]},
                "reason": "topic-too-long",
            },
        ],
        "rfc6962": {
            "leaves": RFC6962_LEAVES,
            "roots": [rfc.root(n).hex() for n in range(1, rfc.size + 1)],
        },
        "tree": {
            "leaf_hashes": [tree.read(0, i).hex() for i in range(size)],
            "roots": [tree.root(n).hex() for n in range(size + 1)],
        },
        "inclusion": [
            {
                "leaf_index": i,
                "tree_size": n,
                "proof": _hex(inclusion_proof(i, n, tree.read)),
            }
            for n in range(1, size + 1)
            for i in range(n)
        ],
        "consistency": [
            {"first": m, "second": n, "proof": _hex(consistency_proof(m, n, tree.read))}
            for n in range(1, size + 1)
            for m in range(1, n + 1)
        ],
        "inclusion_negative": _inclusion_negative(tree, size),
        "consistency_negative": _consistency_negative(tree),
    }


def render() -> str:
    return json.dumps(vectors(), indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
