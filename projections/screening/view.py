"""The `screening` read model: the roster (底数), campaigns, visits and guardianship letters, for
coverage figures (`projections.screening.coverage`).

Tables:
- `screening_entries`: one row per minor on a street's roster. No name, ID number, school or
  grid in clear: what is displayed (name, village, grid, school, grade, gender, markers) is in
  `sealed`, AES-256-GCM bound to the entry id (`projections.sealed`); the village and grid are
  filtered and grouped on as keyed tokens (`village_index`, `grid_index`), the ID number as its
  blind index (`id_index`, to meet the minor's case files). In clear: the street, whether the
  minor is a key student (重点学生) and needs a guardianship letter (the plan's left-behind and
  unsupervised minors), the day listed and the day of the first roster-level letter.
- `screening_campaigns`: each campaign's street, name, villages and period.
- `screening_visits`: one row per visit: campaign, entry, day, method, result, whether it
  opened or linked a case file (the file's id, an opaque UUID).
- `screening_case_letters`: per case file of the street, the blind index of its minor and the
  day of its first guardianship letter (`Case.GuardianshipLetterSigned`): letter coverage
  counts a letter signed on a file as signed for the minor on the roster. A corrected ID number
  (`Case.DetailsCorrected`) gives the file its new minor's blind index, a transfer
  (`Case.Transferred`) its new street (issue 17; proven by tests/projections/test_coverage.py).
- `screening_erased` (issue 19): a tombstone per erased roster entry or case file
  (`projections.tombstones`); the entry's row and visits, or the file's letter row, are gone.

Proven by `tests/projections/test_coverage.py` (figures against an independent count, and a
byte search of the database for planted names and ID numbers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from eventsourcing.utils import get_topic

from domain.case import Case
from domain.retention import KeyScope
from domain.roster import RosterEntry, is_key_student, needs_letter
from domain.screening import Campaign
from domain.tombstones import ERASURE_TOPICS, erasure_split
from projections.blind_index import BlindIndex
from projections.follower import Batch, Db, Dialect, View
from projections.ledger.quarters import local_date
from projections.sealed import ReadModelKeys
from projections.tombstones import bury, delete_rows, erased_among, erases, scoped, tombstone_ddl

ENTRY_TABLE: Final = "screening_entries"
ERASED_TABLE: Final = "screening_erased"

SCREENING_TOPICS: Final = tuple(
    get_topic(cls)
    for cls in (
        RosterEntry.Listed,  # type: ignore[attr-defined]
        RosterEntry.DetailsUpdated,  # type: ignore[attr-defined]
        RosterEntry.GuardianshipLetterSigned,  # type: ignore[attr-defined]
        RosterEntry.Visited,  # type: ignore[attr-defined]
        Campaign.Opened,  # type: ignore[attr-defined]
        Case.ClueReported,  # type: ignore[attr-defined]
        Case.GuardianshipLetterSigned,  # type: ignore[attr-defined]
        Case.DetailsCorrected,  # type: ignore[attr-defined]
        Case.Transferred,  # type: ignore[attr-defined]
    )
)


def sealed_minor(minor: dict[str, Any]) -> dict[str, Any]:
    """What a coverage list may show of a minor (never the ID number, date of birth or
    guardian)."""
    return {
        "name": minor["name"],
        "gender": minor["gender"],
        "village": minor["village"],
        "grid": minor.get("grid", ""),
        "school": minor["school"],
        "grade_class": minor.get("grade_class", ""),
        "markers": list(minor.get("markers", [])),
    }


class ScreeningView(View):
    name = "screening"
    tables = (
        ENTRY_TABLE,
        "screening_campaigns",
        "screening_visits",
        "screening_case_letters",
        ERASED_TABLE,
    )
    # Issue 19: an erased roster entry or case file leaves its rows (and blind indexes).
    topics = (*SCREENING_TOPICS, *ERASURE_TOPICS)

    def __init__(self, blind_index: BlindIndex, keys: ReadModelKeys) -> None:
        self.blind_index = blind_index
        self.keys = keys

    def create_statements(self, dialect: Dialect) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS {screening_entries} (entry_id TEXT PRIMARY KEY, "
            "street TEXT NOT NULL, village_index TEXT NOT NULL, grid_index TEXT NOT NULL, "
            "id_index TEXT NOT NULL, key_student INTEGER NOT NULL, "
            "needs_letter INTEGER NOT NULL, listed_on TEXT NOT NULL, letter_on TEXT, "
            "sealed TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS screening_entries_place ON {screening_entries} "
            "(street, village_index, grid_index)",
            "CREATE INDEX IF NOT EXISTS screening_entries_id ON {screening_entries} (id_index)",
            "CREATE TABLE IF NOT EXISTS {screening_campaigns} (campaign_id TEXT PRIMARY KEY, "
            "street TEXT NOT NULL, name TEXT NOT NULL, villages TEXT NOT NULL, "
            "starts_on TEXT NOT NULL, ends_on TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {screening_visits} (visit_id TEXT PRIMARY KEY, "
            "campaign_id TEXT NOT NULL, entry_id TEXT NOT NULL, street TEXT NOT NULL, "
            "visited_on TEXT NOT NULL, method TEXT NOT NULL, result TEXT NOT NULL, "
            "case_id TEXT, linked INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS screening_visits_campaign ON {screening_visits} "
            "(campaign_id, entry_id)",
            "CREATE INDEX IF NOT EXISTS screening_visits_street ON {screening_visits} "
            "(street, visited_on)",
            "CREATE TABLE IF NOT EXISTS {screening_case_letters} (case_id TEXT PRIMARY KEY, "
            "street TEXT NOT NULL, id_index TEXT NOT NULL, letter_on TEXT)",
            "CREATE INDEX IF NOT EXISTS screening_case_letters_id ON {screening_case_letters} "
            "(id_index)",
            tombstone_ddl(ERASED_TABLE),
        ]

    def _entry_row(self, entry_id: str, street: str, id_index: str, minor: dict[str, Any]) -> Any:
        markers = list(minor.get("markers", []))
        return {
            "entry_id": entry_id,
            "street": street,
            "village_index": self.keys.token("village", minor["village"]),
            "grid_index": self.keys.token("grid", f"{minor['village']}\x00{minor.get('grid', '')}"),
            "id_index": id_index,
            "key_student": int(is_key_student(markers)),
            "needs_letter": int(needs_letter(markers)),
            "sealed": self.keys.seal(ENTRY_TABLE, entry_id, sealed_minor(minor)),
        }

    def apply(self, db: Db, batch: Batch) -> None:
        events, erasures = erasure_split(batch.events)
        self._apply(db, events)
        if erasures:
            minors = scoped(erasures, KeyScope.MINOR)
            delete_rows(db, "screening_visits", "entry_id", minors)
            delete_rows(db, ENTRY_TABLE, "entry_id", minors)
            delete_rows(db, "screening_case_letters", "case_id", scoped(erasures, KeyScope.CASE))
            bury(
                db,
                ERASED_TABLE,
                [f for f in erasures if f.scope in (KeyScope.MINOR, KeyScope.CASE)],
            )

    def erases(self, batch: Batch) -> bool:
        return erases(batch.events)

    def _apply(self, db: Db, events: Sequence[Any]) -> None:
        for event in events:
            kind = type(event).__qualname__
            data = vars(event)
            stream = str(event.originator_id)
            day = local_date(data["timestamp"]).isoformat()
            if kind == "RosterEntry.Listed":
                row = self._entry_row(stream, data["street"], data["id_index"], data["minor"])
                row.update(listed_on=day, letter_on=None)
                db.insert(ENTRY_TABLE, list(row), [list(row.values())], key=("entry_id",))
            elif kind == "RosterEntry.DetailsUpdated":
                found = db.execute(
                    "SELECT street, id_index FROM {screening_entries} WHERE entry_id = ?",
                    (stream,),
                )
                if not found:
                    if erased_among(db, ERASED_TABLE, [stream]):
                        continue  # stored just before its key went: the entry is erased
                    raise LookupError(
                        f"roster entry {stream} updated before it was listed: rebuild the view"
                    )
                street, id_index = found[0]["street"], found[0]["id_index"]
                row = self._entry_row(stream, street, id_index, data["minor"])
                db.execute(
                    "UPDATE {screening_entries} SET village_index = ?, grid_index = ?, "
                    "key_student = ?, needs_letter = ?, sealed = ? WHERE entry_id = ?",
                    (
                        row["village_index"],
                        row["grid_index"],
                        row["key_student"],
                        row["needs_letter"],
                        row["sealed"],
                        stream,
                    ),
                )
            elif kind == "RosterEntry.GuardianshipLetterSigned":
                db.execute(
                    "UPDATE {screening_entries} SET letter_on = ? WHERE entry_id = ? "
                    "AND (letter_on IS NULL OR letter_on > ?)",
                    (data["signed_on"], stream, data["signed_on"]),
                )
            elif kind == "RosterEntry.Visited":
                street = data["by"].get("street", "")
                db.insert(
                    "screening_visits",
                    (
                        "visit_id",
                        "campaign_id",
                        "entry_id",
                        "street",
                        "visited_on",
                        "method",
                        "result",
                        "case_id",
                        "linked",
                    ),
                    [
                        (
                            f"{stream}:{event.originator_version}",
                            data["campaign_id"],
                            stream,
                            street,
                            data["visited_on"],
                            data["method"],
                            data["result"],
                            data["case_id"],
                            int(data["linked"]),
                        )
                    ],
                    key=("visit_id",),
                )
            elif kind == "Campaign.Opened":
                db.insert(
                    "screening_campaigns",
                    ("campaign_id", "street", "name", "villages", "starts_on", "ends_on"),
                    [
                        (
                            stream,
                            data["street"],
                            data["name"],
                            json.dumps(data["villages"]),
                            data["starts_on"],
                            data["ends_on"],
                        )
                    ],
                    key=("campaign_id",),
                )
            elif kind == "Case.ClueReported":
                db.insert(
                    "screening_case_letters",
                    ("case_id", "street", "id_index", "letter_on"),
                    [
                        (
                            stream,
                            data["street"],
                            self.blind_index.id_number(data["minor"]["id_number"]),
                            None,
                        )
                    ],
                    key=("case_id",),
                )
            elif kind == "Case.DetailsCorrected":
                # The letter is the corrected minor's: the file meets their roster entry now.
                for change in data["changes"]:
                    if change["field"] == "minor.id_number" and change.get("new"):
                        db.execute(
                            "UPDATE {screening_case_letters} SET id_index = ? WHERE case_id = ?",
                            (self.blind_index.id_number(change["new"]), stream),
                        )
            elif kind == "Case.Transferred":
                # The file (and its letter) counts in the receiving street from now on.
                db.execute(
                    "UPDATE {screening_case_letters} SET street = ? WHERE case_id = ?",
                    (data["to_street"], stream),
                )
            elif kind == "Case.GuardianshipLetterSigned":
                db.execute(
                    "UPDATE {screening_case_letters} SET letter_on = ? WHERE case_id = ? "
                    "AND (letter_on IS NULL OR letter_on > ?)",
                    (data["signed_on"], stream, data["signed_on"]),
                )
