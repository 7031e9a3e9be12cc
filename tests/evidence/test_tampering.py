"""Each kind of tampering, made directly in the database with the triggers dropped, is found by
the real `casetrail verify --checkpoint FILE` against checkpoints a unit exported before it,
on SQLite and PostgreSQL; the first line names the first position that differs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.settings import Settings
from projections.evidence.checkpoints import Checkpoint
from tests.evidence.helpers import Tamper, cli, first_line, populate, write_checkpoints

# Positions are notification ids (from 1); leaf indexes count from 0.
POSITION = 7


def _unit_file(settings: Settings, tmp_path: Path, every: int = 6) -> Path:
    """Populate the store; the checkpoints signed meanwhile are what a unit received."""
    signed = populate(settings, events=24, checkpoint_every=every)
    return write_checkpoints(tmp_path / "unit-checkpoints.json", signed)


def _verify(settings: Settings, unit_file: Path) -> tuple[int, str]:
    result = cli(settings, "verify", "--checkpoint", str(unit_file))
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, first_line(result)


def test_an_untouched_store_verifies(settings: Settings, tmp_path: Path) -> None:
    populate(settings, events=24, checkpoint_every=6)
    unit_file = tmp_path / "exported.json"
    exported = cli(settings, "checkpoint", "export", "--all", "--out", str(unit_file))
    assert exported.returncode == 0, exported.stderr
    code, line = _verify(settings, unit_file)
    assert code == 0, line
    assert line.startswith("intact: 24 events")
    plain = cli(settings, "verify")
    assert plain.returncode == 0
    assert first_line(plain).startswith("intact")


TAMPERINGS: dict[str, tuple[Callable[[Tamper], None], str]] = {
    "modified": (lambda t: t.modify(POSITION), "leaf index 6 (store position 7)"),
    "deleted": (lambda t: t.delete(POSITION), "leaf index 6 (store position 8)"),
    "inserted": (lambda t: t.insert(POSITION), "leaf index 6 (store position 7)"),
    "swapped": (lambda t: t.swap(5, 11), "leaf index 4 (store position 5)"),
    "tail truncated": (lambda t: t.truncate_tail(21), "leaf index 21, missing"),
}


@pytest.mark.parametrize("kind", list(TAMPERINGS))
def test_tampering_is_found_at_its_first_position(
    settings: Settings, tmp_path: Path, kind: str
) -> None:
    unit_file = _unit_file(settings, tmp_path)
    tamper, where = TAMPERINGS[kind]
    store = Tamper(settings)
    store.drop_triggers()
    tamper(store)

    code, line = _verify(settings, unit_file)
    assert code == 1, line
    assert line.startswith("TAMPERED: the store differs from checkpoint #"), line
    assert f"first difference at {where}" in line, line


def test_a_rewritten_history_with_a_recomputed_tree_is_found(
    settings: Settings, tmp_path: Path
) -> None:
    """The attacker deletes an event, closes the gap, rebuilds the Merkle log over the result
    and removes the stored checkpoints: the store is consistent with itself, and `verify`
    without a unit's checkpoint finds nothing to compare. The unit's checkpoints catch it."""
    unit_file = _unit_file(settings, tmp_path, every=4)
    store = Tamper(settings)
    store.drop_triggers()
    store.delete(POSITION)
    store.shift(POSITION + 1, -1)
    store.forget_checkpoints()
    store.recompute_tree()
    assert store.count() == 23

    alone = cli(settings, "verify")
    assert alone.returncode == 2, alone.stdout  # nothing signed left in the store to check

    code, line = _verify(settings, unit_file)
    assert code == 1, line
    assert "TAMPERED: the store differs from checkpoint #2 (size 8" in line, line
    # The rebuilt tree no longer leads to the signed root, so the position is bounded by the
    # unit's checkpoints: intact up to size 4 (checkpoint #1), different within size 8.
    found = re.search(r"a leaf between index (\d+) and (\d+)", line)
    assert found is not None, line
    assert (int(found[1]), int(found[2])) == (4, 7)
    assert int(found[1]) <= POSITION - 1 <= int(found[2])


def test_verify_against_a_checkpoint_signed_by_another_key_is_a_usage_error(
    settings: Settings, tmp_path: Path
) -> None:
    populate(settings, events=4, checkpoint_every=4)
    forged = Checkpoint.sign(Ed25519PrivateKey.generate(), seq=1, size=4, root=b"\x00" * 32)
    forged_file = write_checkpoints(tmp_path / "forged.json", [forged])
    result = cli(settings, "verify", "--checkpoint", str(forged_file))
    assert result.returncode == 2
    assert result.stderr.startswith("casetrail: error: ")
    assert "not signed by the given public key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
