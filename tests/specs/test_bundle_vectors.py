"""The evidence bundle and its attestation against the spec (`docs/specs/bundle.md`) and its
vectors (`docs/specs/vectors/bundle.json`), both ways: the project's code writes the expected
leaves, tree, checkpoint, records and attestation bytes from the vectors' inputs; its verifier
accepts every positive bundle and refuses every negative one for exactly the documented
reasons; and the generator, run again, writes the committed file byte for byte."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.evidence.verification import (
    BUNDLE_FORMAT,
    BundleFormatError,
    canonical,
    record_to_json,
    verify_bundle,
)
from projections.evidence.checkpoints import Checkpoint, key_id
from projections.evidence.log import StoredRecord, encode_leaf
from projections.evidence.merkle import MemoryTree, inclusion_proof, leaf_hash

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs/specs/vectors/bundle.json"
GENERATOR = ROOT / "docs/specs/vectors/gen_bundle.py"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))

# Each documented reason, as the project's verifier words it.
MESSAGES: dict[str, str] = {
    "checkpoint-unreadable": "the bundle's checkpoint is unreadable",
    "checkpoint-signature": "is not signed by the given public key",
    "attestation-invalid": "the bundle's signature does not match its content",
    "no-records": "the bundle holds no records",
    "case-id-invalid": "the bundle names no valid case id",
    "record-malformed": "a record is malformed",
    "record-not-included": ") is not in checkpoint #",
    "kind-unknown": "has unknown kind",
    "kind-mismatch": "record at position",
    "case-stream-missing": "the bundle holds none of the case's own events",
    "stream-incomplete": "is not complete from version 1",
    "content-mismatch": "the decrypted content does not match the records one for one",
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_bundle", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _service_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(DATA["keys"]["service"]["seed"]))


def _reasons(problems: list[str]) -> list[str]:
    found = []
    for problem in problems:
        codes = [code for code, text in MESSAGES.items() if text in problem]
        # "record at position N has unknown kind" also starts as a kind mismatch does.
        if "kind-unknown" in codes:
            codes = ["kind-unknown"]
        assert len(codes) == 1, f"no single documented reason for {problem!r}: {codes}"
        found.append(codes[0])
    return sorted(set(found))


def test_the_generator_gives_the_committed_file_byte_for_byte() -> None:
    assert _generator().render() == VECTORS.read_text(encoding="utf-8")


def test_every_reason_is_documented_and_tested() -> None:
    assert set(DATA["reasons"]) == {*MESSAGES, "not-a-bundle"}
    assert {r for v in DATA["negative"] for r in v["reasons"]} == set(DATA["reasons"])
    spec = (ROOT / "docs/specs/bundle.md").read_text(encoding="utf-8")
    for reason in DATA["reasons"]:
        assert f"`{reason}`" in spec, reason


def test_the_service_key_and_its_key_id() -> None:
    public = _service_key().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert raw.hex() == DATA["keys"]["service"]["public_key"]
    assert pem.decode() == DATA["keys"]["service"]["public_key_pem"]
    assert key_id(public) == DATA["keys"]["service"]["key_id"]


def test_the_project_writes_each_leaf_the_tree_and_the_checkpoint() -> None:
    leaves = DATA["log"]["leaves"]
    tree = MemoryTree()
    for item in leaves:
        state = base64.b64decode(item["state"], validate=True)
        data = encode_leaf(
            item["position"], UUID(item["stream_id"]), item["version"], item["topic"], state
        )
        assert data.hex() == item["leaf"]
        assert leaf_hash(data).hex() == item["leaf_hash"]
        tree.append(leaf_hash(data))
    expected = DATA["log"]["checkpoint"]
    root = tree.root()
    assert root.hex() == expected["root"]
    signed = Checkpoint.sign(
        _service_key(), seq=expected["seq"], size=tree.size, root=root, time=expected["time"]
    )
    assert signed.to_json() == expected
    assert Checkpoint.from_json(expected) == signed
    message = DATA["log"]["checkpoint_message"].encode()
    _service_key().public_key().verify(base64.b64decode(expected["signature"]), message)


@pytest.mark.parametrize("vector", DATA["positive"], ids=lambda v: v["name"])
def test_the_project_writes_each_record_and_the_attestation(vector: dict[str, Any]) -> None:
    bundle = vector["bundle"]
    leaves = {item["leaf_index"]: item for item in DATA["log"]["leaves"]}
    tree = MemoryTree(bytes.fromhex(item["leaf_hash"]) for item in DATA["log"]["leaves"])
    size = bundle["checkpoint"]["size"]
    for record in bundle["records"]:
        item = leaves[record["leaf_index"]]
        stored = StoredRecord(
            position=item["position"],
            stream_id=UUID(item["stream_id"]),
            version=item["version"],
            topic=item["topic"],
            state=base64.b64decode(item["state"]),
        )
        assert {**record_to_json(stored), "kind": record["kind"]} == {
            k: v for k, v in record.items() if k not in ("leaf_index", "inclusion_proof")
        }
        proof = inclusion_proof(record["leaf_index"], size, tree.read)
        assert [h.hex() for h in proof] == record["inclusion_proof"]
    assert [r["leaf_index"] for r in bundle["records"]] == sorted(
        r["leaf_index"] for r in bundle["records"]
    )
    message = canonical(bundle)
    assert message == vector["attestation_message"].encode("utf-8")
    assert message.startswith(BUNDLE_FORMAT.encode() + b"\n")
    # Ed25519 is deterministic: the project's signing of these bytes gives the same signature.
    assert (
        base64.b64encode(_service_key().sign(message)).decode()
        == (bundle["attestation"]["signature"])
    )
    assert bundle["attestation"]["key_id"] == key_id(_service_key().public_key())
    report = verify_bundle(bundle, _service_key().public_key())
    assert report.intact, report.problems
    assert report.records == len(bundle["records"])


@pytest.mark.parametrize("vector", DATA["negative"], ids=lambda v: v["name"])
def test_every_negative_bundle_is_refused_for_its_documented_reasons(
    vector: dict[str, Any],
) -> None:
    public = _service_key().public_key()
    if vector["reasons"] == ["not-a-bundle"]:
        with pytest.raises(BundleFormatError):
            verify_bundle(vector["bundle"], public)
        return
    report = verify_bundle(vector["bundle"], public)
    assert not report.intact
    assert _reasons(report.problems) == sorted(vector["reasons"])
    assert vector["reason"] in vector["reasons"]
