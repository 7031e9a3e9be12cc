"""Writes docs/specs/vectors/submission.json: the ledger submission digest's test vectors
(docs/specs/submission.md). Standard library only, so it is itself a second implementation;
tests/integration/test_submissions_spec.py checks the service's `domain.submissions` against it.

    python docs/specs/vectors/gen_submission.py      # rewrites submission.json beside it
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

PREFIX = b"casetrail/ledger-submission/v1\n"
COLUMNS = ("id", "version", "found_on", "status", "risk", "updated_at")


def canonical(street: str, village: str, period: str, rows: list[dict[str, object]]) -> bytes:
    lines = sorted("\t".join(str(row[c]) for c in COLUMNS) for row in rows)
    header = "\t".join((street, village, period, str(len(lines))))
    return PREFIX + "".join(f"{line}\n" for line in [header, *lines]).encode("utf-8")


ROWS = [
    {
        "id": "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f",
        "version": 7,
        "found_on": "2026-07-02",
        "status": "intervening",
        "risk": "high",
        "updated_at": "2026-09-28T02:03:04.000005Z",
    },
    {
        "id": "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d",
        "version": 1,
        "found_on": "2026-08-15",
        "status": "awaiting_consultation",
        "risk": "low",
        "updated_at": "2026-08-15T09:00:00.000000Z",
    },
]


def vector(name: str, period: str, rows: list[dict[str, object]]) -> dict[str, object]:
    data = canonical("chengguan-street", "dongshan-village", period, rows)
    return {
        "name": name,
        "street": "chengguan-street",
        "village": "dongshan-village",
        "period": period,
        "rows": rows,
        "canonical_hex": data.hex(),
        "digest": hashlib.sha256(data).hexdigest(),
    }


def content() -> str:
    changed = [dict(ROWS[0], version=8, updated_at="2026-09-29T01:00:00.000000Z"), ROWS[1]]
    vectors = [
        vector("two rows", "2026Q3", ROWS),
        vector("the same rows in another order", "2026Q3", list(reversed(ROWS))),
        vector("one row changed (a follow-up: version and updated_at)", "2026Q3", changed),
        vector("no rows", "initial", []),
    ]
    return json.dumps({"vectors": vectors}, ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    Path(__file__).with_name("submission.json").write_text(content(), encoding="utf-8")
