"""The rows a village's ledger submission (报送, issue 17) is taken over, read from the ledger.

A village signs off the rows its own ledger lists (`GET /v1/ledger` as its committee: the files
it reported, in its street) that belong to the period: found by the period's last day, and, for
a quarter, not closed before its first day. Each row as the digest reads it
(`domain.submissions.DIGEST_COLUMNS`): case id, version, date found, status, risk and the
instant of its last change, as `GET /v1/ledger` shows them, so the village can recompute the
digest from its own copy (docs/specs/submission.md). No personal data.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

from domain.submissions import Period
from projections.ledger.quarters import local_date, parse_stamp
from projections.ledger.view import LedgerQuery, RowScope, ledger_rows
from projections.sealed import KeyedDb

MAX_SUBMISSION_ROWS: Final = 100_000


def submission_rows(
    db: KeyedDb, scope: RowScope, period: Period, initial_due: date
) -> list[dict[str, Any]]:
    last = period.last_day(initial_due)
    first = period.first_day()
    found: list[dict[str, Any]] = []
    for line in ledger_rows(db, scope, LedgerQuery(found_to=last), limit=MAX_SUBMISSION_ROWS):
        row = line.row
        closed = row["closed_at"]
        if first is not None and closed is not None and local_date(parse_stamp(closed)) < first:
            continue
        found.append(
            {
                "id": row["case_id"],
                "version": row["version"],
                "found_on": row["found_on"],
                "status": row["status"],
                "risk": row["risk"],
                "updated_at": row["updated_at"],
            }
        )
    return found
