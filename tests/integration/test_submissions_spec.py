"""The ledger submission digest is what docs/specs/submission.md says, byte for byte: the
service's implementation (`domain.submissions`) and the spec's standard-library generator
(docs/specs/vectors/gen_submission.py) both give the stored vectors, and the spec's page quotes
them."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path
from typing import Any

from domain.submissions import canonical_rows, ledger_digest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "specs" / "vectors"


def vectors() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((VECTORS / "submission.json").read_text("utf-8"))[
        "vectors"
    ]
    return found


def test_the_service_gives_every_vector_byte_for_byte() -> None:
    found = vectors()
    assert len(found) == 4
    for v in found:
        data = canonical_rows(v["street"], v["village"], v["period"], v["rows"])
        assert data.hex() == v["canonical_hex"], v["name"]
        assert ledger_digest(v["street"], v["village"], v["period"], v["rows"]) == v["digest"]
        assert hashlib.sha256(data).hexdigest() == v["digest"]
    first, reordered, changed, _ = found
    assert first["digest"] == reordered["digest"] != changed["digest"]


def test_the_generator_and_the_page_agree_with_the_vectors() -> None:
    generator = runpy.run_path(str(VECTORS / "gen_submission.py"))
    assert generator["content"]() == (VECTORS / "submission.json").read_text("utf-8")
    page = (ROOT / "docs" / "specs" / "submission.md").read_text("utf-8")
    for v in vectors():
        assert v["digest"] in page, v["name"]
