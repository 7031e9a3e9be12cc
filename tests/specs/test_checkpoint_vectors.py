"""docs/specs/vectors/checkpoint.json against the project's code, both ways: with the fixed key
the code writes every signed text, signature, key id and JSON form of the file (Ed25519 is
deterministic), reads the file of several back, and rejects every negative checkpoint for
exactly its documented reason (docs/specs/checkpoint.md, "Reasons"); the generator, run again,
writes the file byte for byte."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from projections.evidence.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    key_id,
    parse_checkpoints,
    signed_message,
)

SPECS = Path(__file__).resolve().parents[2] / "docs" / "specs"
VECTORS = SPECS / "vectors" / "checkpoint.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))


def _generator() -> ModuleType:
    path = SPECS / "vectors" / "gen_checkpoint.py"
    spec = importlib.util.spec_from_file_location("gen_checkpoint", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(DATA["key"]["private_seed"]))


def _public() -> Ed25519PublicKey:
    loaded = serialization.load_pem_public_key(DATA["key"]["public_pem"].encode())
    assert isinstance(loaded, Ed25519PublicKey)
    return loaded


def test_the_generator_gives_the_committed_file_byte_for_byte() -> None:
    assert _generator().render() == VECTORS.read_text(encoding="utf-8")


def test_every_reason_is_documented() -> None:
    spec = (SPECS / "checkpoint.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", spec, flags=re.MULTILINE))
    reasons = {v["reason"] for v in DATA["negative"]}
    assert reasons <= documented, reasons - documented


def test_the_key_and_its_id() -> None:
    public = _key().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == DATA["key"]["public_raw"]
    assert _public().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw
    assert key_id(public) == DATA["key"]["key_id"]


@pytest.mark.parametrize("vector", DATA["checkpoints"], ids=lambda v: str(v["input"]["seq"]))
def test_the_code_writes_each_checkpoint(vector: dict[str, Any]) -> None:
    given = vector["input"]
    root = bytes.fromhex(given["root"])
    message = signed_message(given["seq"], given["size"], root, given["time"])
    assert message.hex() == vector["signed_bytes"]
    assert message.decode() == vector["signed_text"]
    signed = Checkpoint.sign(
        _key(), seq=given["seq"], size=given["size"], root=root, time=given["time"]
    )
    assert base64.b64encode(signed.signature).decode() == vector["signature"]
    assert signed.to_json() == vector["json"]
    read = Checkpoint.from_json(vector["json"])
    assert read == signed and read.problem(_public()) is None


def test_the_file_of_several_reads_back() -> None:
    read = parse_checkpoints(DATA["file"])
    assert [c.to_json() for c in read] == [v["json"] for v in DATA["checkpoints"]]
    assert all(c.verify(_public()) for c in read)


@pytest.mark.parametrize("vector", DATA["negative"], ids=lambda v: v["description"])
def test_each_negative_checkpoint_is_rejected_for_its_reason(vector: dict[str, Any]) -> None:
    try:
        found = Checkpoint.from_json(vector["checkpoint"]).problem(_public())
    except CheckpointFormatError as exc:
        found = exc.reason
    assert found == vector["reason"]
