"""docs/specs/vectors/key_announcement.json against the project's code: with the fixed keys the
code writes the signed text, both signatures and the JSON form (Ed25519 is deterministic), reads
the JSON back, rejects every negative announcement for exactly its documented reason
(docs/specs/key-announcement.md §4), and the generator, run again, writes the file byte for
byte. The chain's rule (the key in force at each checkpoint number) is checked here too."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from projections.evidence.checkpoints import Checkpoint
from projections.evidence.rotation import Announcement, KeyChain, signed_message

SPECS = Path(__file__).resolve().parents[2] / "docs" / "specs"
VECTORS = SPECS / "vectors" / "key_announcement.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))


def _generator() -> ModuleType:
    path = SPECS / "vectors" / "gen_key_announcement.py"
    spec = importlib.util.spec_from_file_location("gen_key_announcement", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(DATA["keys"][name]["private_seed"]))


def test_the_generator_gives_the_committed_file_byte_for_byte() -> None:
    assert _generator().render() == VECTORS.read_text(encoding="utf-8")


def test_every_reason_is_documented() -> None:
    spec = (SPECS / "key-announcement.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", spec, flags=re.MULTILINE))
    assert {v["reason"] for v in DATA["negative"]} == documented


def test_the_code_writes_the_known_answer() -> None:
    positive = DATA["positive"]
    announcement = Announcement.from_json(positive["json"])
    assert announcement.problem() is None
    old, new = _key("old"), _key("new")
    resigned = Announcement.sign(announcement.checkpoint, old, new)
    assert resigned.to_json() == positive["json"]
    message = signed_message(announcement.checkpoint, announcement.old_key, announcement.new_key)
    assert message.decode() == positive["signed_message"]
    assert base64.b64encode(old.sign(message)).decode() == positive["old_signature"]
    assert base64.b64encode(new.sign(message)).decode() == positive["new_signature"]


@pytest.mark.parametrize("index", range(len(DATA["negative"])))
def test_each_negative_is_refused_for_its_reason(index: int) -> None:
    vector = DATA["negative"][index]
    assert Announcement.from_json(vector["announcement"]).problem() == vector["reason"]


def test_the_chain_puts_each_key_in_force_for_its_numbers() -> None:
    old, new, newest = _key("old"), _key("new"), Ed25519PrivateKey.generate()
    root = hashlib.sha256(b"root").digest()
    first = Announcement.sign(Checkpoint.sign(old, seq=3, size=3, root=root), old, new)
    second = Announcement.sign(Checkpoint.sign(new, seq=6, size=6, root=root), new, newest)
    for anchor in (old, new, newest):  # any key of the chain finds the same periods
        chain = KeyChain.build(anchor.public_key(), [second, first])
        assert chain.problems == []
        assert [chain.key_for(s) for s in (1, 3, 4, 6, 7)] == [
            old.public_key(),
            old.public_key(),
            new.public_key(),
            new.public_key(),
            newest.public_key(),
        ]
    chain = KeyChain.build(new.public_key(), [first, second])
    late = Checkpoint.sign(old, seq=4, size=4, root=root)
    assert "retired at checkpoint #3" in str(chain.problem(late))
    early = Checkpoint.sign(newest, seq=5, size=5, root=root)
    assert "not yet in force" in str(chain.problem(early))
    stranger = Ed25519PrivateKey.generate().public_key()
    assert KeyChain.build(stranger, [first, second]).keys() == [stranger]
    # An announcement that does not continue the chain is not followed.
    broken = Announcement.sign(Checkpoint.sign(old, seq=6, size=6, root=root), old, newest)
    chain = KeyChain.build(old.public_key(), [first, broken])
    assert chain.problems and "does not continue the chain" in chain.problems[0]
