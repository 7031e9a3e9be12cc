"""docs/specs/examples/verify_checkpoint.py, the checker written from the specs alone: it
imports only the standard library and `cryptography`; it agrees with the committed vectors
(every leaf, every proof, every checkpoint; every negative one rejected for its documented
reason); and, run as a separate isolated process (`python -I`, from another directory), it
accepts the checkpoint file, inclusion and consistency proofs the real `casetrail` commands
write, and rejects them once altered."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway import keyring
from gateway.settings import Settings
from tests.evidence.helpers import cli, populate

SPECS = Path(__file__).resolve().parents[2] / "docs" / "specs"
SCRIPT = SPECS / "examples" / "verify_checkpoint.py"
MERKLE: dict[str, Any] = json.loads((SPECS / "vectors" / "merkle.json").read_text("utf-8"))
CHECKPOINT: dict[str, Any] = json.loads((SPECS / "vectors" / "checkpoint.json").read_text("utf-8"))
STDLIB = set(sys.stdlib_module_names)


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_checkpoint_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _module()


def _h(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _public() -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(CHECKPOINT["key"]["public_pem"].encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


def test_it_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    roots = set()
    for found in ast.walk(tree):
        if isinstance(found, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in found.names}
        elif isinstance(found, ast.ImportFrom):
            assert found.level == 0 and found.module is not None
            roots.add(found.module.split(".")[0])
    assert roots - STDLIB == {"cryptography"}, roots - STDLIB


def test_it_agrees_with_the_merkle_vectors() -> None:
    for vector in MERKLE["leaf_encoding"]:
        record = {**vector["record"], "state": bytes.fromhex(vector["record"]["state"])}
        leaf = EXAMPLE.encode_leaf(record)
        assert (leaf.hex(), EXAMPLE.leaf_hash(leaf).hex()) == (vector["leaf"], vector["leaf_hash"])
    for vector in MERKLE["leaf_encoding_negative"]:
        record = {**vector["record"], "state": b""}
        if "topic_repeat" in record:
            record["topic"] = record["topic_repeat"][0] * record["topic_repeat"][1]
        with pytest.raises(EXAMPLE.Invalid) as refused:
            EXAMPLE.encode_leaf(record)
        assert refused.value.reason == vector["reason"]
    leaves, roots = _h(MERKLE["tree"]["leaf_hashes"]), _h(MERKLE["tree"]["roots"])
    for vector in MERKLE["inclusion"]:
        index, size = vector["leaf_index"], vector["tree_size"]
        proof = _h(vector["proof"])
        assert EXAMPLE.inclusion_problem(leaves[index], index, size, proof, roots[size]) is None
    for vector in MERKLE["consistency"]:
        m, n = vector["first"], vector["second"]
        proof = _h(vector["proof"])
        assert EXAMPLE.consistency_problem(m, n, roots[m], roots[n], proof) is None
    for vector in MERKLE["inclusion_negative"]:
        found = EXAMPLE.inclusion_problem(
            bytes.fromhex(vector["leaf_hash"]),
            vector["leaf_index"],
            vector["tree_size"],
            _h(vector["proof"]),
            bytes.fromhex(vector["root"]),
        )
        assert found == vector["reason"], vector["description"]
    for vector in MERKLE["consistency_negative"]:
        found = EXAMPLE.consistency_problem(
            vector["first"],
            vector["second"],
            bytes.fromhex(vector["first_root"]),
            bytes.fromhex(vector["second_root"]),
            _h(vector["proof"]),
        )
        assert found == vector["reason"], vector["description"]


def test_it_agrees_with_the_checkpoint_vectors() -> None:
    public = _public()
    assert EXAMPLE.key_id(public) == CHECKPOINT["key"]["key_id"]
    for vector in CHECKPOINT["checkpoints"]:
        assert EXAMPLE.signed_text(vector["json"]).hex() == vector["signed_bytes"]
        assert EXAMPLE.checkpoint_problem(vector["json"], public) is None
    for vector in CHECKPOINT["negative"]:
        found = EXAMPLE.checkpoint_problem(vector["checkpoint"], public)
        assert found == vector["reason"], vector["description"]


def _run(tmp_path: Path, public: Path, document: Any) -> tuple[int, str]:
    path = tmp_path / "document.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    # Isolated (-I: no PYTHONPATH, no user site, the script's own directory only), from a
    # directory without the project: it cannot import the project even by accident.
    result = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), "--public-key", str(public), str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, (result.stdout + result.stderr).strip()


def test_it_checks_what_the_project_writes(home: Path, tmp_path: Path) -> None:
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    populate(settings, events=12, checkpoint_every=4)
    public = settings.keys_dir / keyring.SERVICE_PUB
    work = tmp_path / "outside"
    work.mkdir()

    exported = cli(settings, "checkpoint", "export", "--all")
    assert exported.returncode == 0, exported.stderr
    checkpoints = json.loads(exported.stdout)
    assert checkpoints["format"] == "casetrail-checkpoints/v1"
    code, line = _run(work, public, checkpoints)
    expected_id = EXAMPLE.key_id(keyring.load_public_key(public, "service key"))
    assert (code, line) == (0, f"valid: 3 checkpoints, each signed by key {expected_id}")
    one = checkpoints["checkpoints"][1]
    assert _run(work, public, one)[0] == 0
    assert _run(work, public, {**one, "size": one["size"] + 1}) == (
        1,
        "INVALID: signature-invalid: checkpoint #2",
    )

    inclusion = cli(settings, "proof", "inclusion", "--position", "3", "--size", "8")
    assert inclusion.returncode == 0, inclusion.stderr
    document = json.loads(inclusion.stdout)
    assert _run(work, public, document) == (0, "valid: leaf index 2 is in checkpoint #2 (size 8)")
    altered = {**document, "record": {**document["record"], "version": 2}}
    assert _run(work, public, altered)[1].startswith("INVALID: record-mismatch")
    moved = {**document, "leaf_index": 3}
    assert _run(work, public, moved)[1].startswith("INVALID: root-mismatch")

    consistency = cli(settings, "proof", "consistency", "--from", "4", "--to", "12")
    assert consistency.returncode == 0, consistency.stderr
    document = json.loads(consistency.stdout)
    assert _run(work, public, document) == (0, "valid: checkpoint #3 extends checkpoint #1")
    flipped = bytearray.fromhex(document["proof"][-1])
    flipped[0] ^= 1
    forged = {**document, "proof": [*document["proof"][:-1], flipped.hex()]}
    assert _run(work, public, forged)[1].startswith("INVALID: second-root-mismatch")

    code, line = _run(work, public, {"format": "something-else"})
    assert code == 2 and line.startswith("verify_checkpoint: error: unknown document format")
