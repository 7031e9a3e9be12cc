"""docs/specs/vectors/merkle.json against the project's code, both ways: the code writes every
leaf encoding, leaf hash, root, inclusion and consistency proof of the file; it refuses every
negative leaf record and rejects every negative proof for exactly its documented reason
(docs/specs/merkle.md, "Reasons"); and the generator, run again, writes the file byte for byte."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest

from projections.evidence.log import LeafFormatError, encode_leaf
from projections.evidence.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_problem,
    consistency_proof,
    inclusion_problem,
    inclusion_proof,
    leaf_hash,
)
from tests.evidence.test_merkle_kat import ROOTS

SPECS = Path(__file__).resolve().parents[2] / "docs" / "specs"
VECTORS = SPECS / "vectors" / "merkle.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_merkle", SPECS / "vectors" / "gen_merkle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _h(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _encode(record: dict[str, Any]) -> bytes:
    topic = record["topic"]
    if "topic_repeat" in record:
        text, times = record["topic_repeat"]
        topic = text * times
    return encode_leaf(
        record["position"],
        UUID(record["stream_id"]),
        record["version"],
        topic,
        bytes.fromhex(record["state"]),
    )


def _tree() -> MemoryTree:
    return MemoryTree(_h(DATA["tree"]["leaf_hashes"]))


def test_the_generator_gives_the_committed_file_byte_for_byte() -> None:
    assert _generator().render() == VECTORS.read_text(encoding="utf-8")


def test_every_reason_is_documented() -> None:
    spec = (SPECS / "merkle.md").read_text(encoding="utf-8")
    reasons = {
        v["reason"]
        for part in ("leaf_encoding_negative", "inclusion_negative", "consistency_negative")
        for v in DATA[part]
    }
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", spec, flags=re.MULTILINE))
    assert reasons <= documented, reasons - documented


def test_the_code_writes_each_leaf() -> None:
    assert DATA["empty_root"] == EMPTY_ROOT.hex()
    for vector in DATA["leaf_encoding"]:
        leaf = _encode(vector["record"])
        assert leaf.hex() == vector["leaf"]
        assert leaf_hash(leaf).hex() == vector["leaf_hash"]
    assert [v["leaf_hash"] for v in DATA["leaf_encoding"]] == DATA["tree"]["leaf_hashes"]


@pytest.mark.parametrize("vector", DATA["leaf_encoding_negative"], ids=lambda v: v["reason"])
def test_the_code_refuses_each_negative_leaf(vector: dict[str, Any]) -> None:
    with pytest.raises(LeafFormatError):
        _encode(vector["record"])


def test_the_code_gives_each_root_and_the_rfc6962_roots() -> None:
    tree = _tree()
    assert [tree.root(n).hex() for n in range(tree.size + 1)] == DATA["tree"]["roots"]
    rfc = MemoryTree(leaf_hash(leaf) for leaf in _h(DATA["rfc6962"]["leaves"]))
    assert [rfc.root(n).hex() for n in range(1, 9)] == DATA["rfc6962"]["roots"]
    assert DATA["rfc6962"]["roots"] == [r.hex() for r in ROOTS]  # as published


def test_the_code_gives_and_accepts_each_inclusion_proof() -> None:
    tree = _tree()
    roots = _h(DATA["tree"]["roots"])
    assert len(DATA["inclusion"]) == sum(range(1, tree.size + 1))
    for vector in DATA["inclusion"]:
        index, size = vector["leaf_index"], vector["tree_size"]
        assert inclusion_proof(index, size, tree.read) == _h(vector["proof"])
        leaf = tree.read(0, index)
        assert inclusion_problem(leaf, index, size, _h(vector["proof"]), roots[size]) is None


def test_the_code_gives_and_accepts_each_consistency_proof() -> None:
    tree = _tree()
    roots = _h(DATA["tree"]["roots"])
    for vector in DATA["consistency"]:
        first, second = vector["first"], vector["second"]
        proof = _h(vector["proof"])
        assert consistency_proof(first, second, tree.read) == proof
        assert consistency_problem(first, second, roots[first], roots[second], proof) is None


@pytest.mark.parametrize("vector", DATA["inclusion_negative"], ids=lambda v: v["description"])
def test_each_negative_inclusion_proof_is_rejected_for_its_reason(vector: dict[str, Any]) -> None:
    found = inclusion_problem(
        bytes.fromhex(vector["leaf_hash"]),
        vector["leaf_index"],
        vector["tree_size"],
        _h(vector["proof"]),
        bytes.fromhex(vector["root"]),
    )
    assert found == vector["reason"]


@pytest.mark.parametrize("vector", DATA["consistency_negative"], ids=lambda v: v["description"])
def test_each_negative_consistency_proof_is_rejected_for_its_reason(
    vector: dict[str, Any],
) -> None:
    found = consistency_problem(
        vector["first"],
        vector["second"],
        bytes.fromhex(vector["first_root"]),
        bytes.fromhex(vector["second_root"]),
        _h(vector["proof"]),
    )
    assert found == vector["reason"]
