"""Coverage figures of screening (走访排查) and of guardianship letters (监护责任书), from the
`screening` read model.

- `campaign_coverage(db, campaign)`: per village and grid of a campaign, the minors on the
  roster, those visited in the campaign, the key students (重点学生) and those of them visited,
  those not yet visited, and the letters: minors needing one (left-behind, unsupervised) and
  those with one signed (on the roster or on a case file of the same minor). Counts only.
- `not_visited(db, campaign, villages)`: the minors of a campaign not yet visited, with their
  names: a disclosure, which the caller records before answering (`CaseTrail.record_disclosures`,
  one access event per minor listed, channel `worklist`).
- `visit_coverage(db, street, period)` and `letter_coverage(db, street, period)`: the
  quarterly report's figures for a street and a period (a `Quarter`, or any object with `start`
  and `end` dates): minors on the roster by the period's end, visited within it (any campaign),
  key students visited; minors needing a letter and those with one signed by the period's end.

Proven by `tests/projections/test_coverage.py`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Final, Protocol
from uuid import UUID

from domain.roster import KEY_MARKER_LABELS, KeyMarker
from projections.ledger.reports import Count
from projections.screening.view import ENTRY_TABLE
from projections.sealed import KeyedDb


class Period(Protocol):
    @property
    def start(self) -> date: ...

    @property
    def end(self) -> date: ...


@dataclass(frozen=True)
class Span:
    """A period given by its first and last day (both included)."""

    start: date
    end: date


@dataclass(frozen=True)
class CampaignInfo:
    campaign_id: str
    street: str
    name: str
    villages: tuple[str, ...]
    starts_on: str
    ends_on: str

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["villages"] = list(self.villages)
        return found


@dataclass
class Figures:
    """One line of coverage: a village, a grid of it, or the whole (village and grid None)."""

    village: str | None = None
    grid: str | None = None
    minors: int = 0
    visited: int = 0
    key_students: int = 0
    key_visited: int = 0
    needs_letter: int = 0
    letters: int = 0

    @property
    def not_visited(self) -> int:
        return self.minors - self.visited

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "not_visited": self.not_visited}


def campaign_info(db: KeyedDb, campaign_id: UUID | str, street: str) -> CampaignInfo | None:
    found = db.execute(
        "SELECT * FROM {screening_campaigns} WHERE campaign_id = ? AND street = ?",
        (str(campaign_id), street),
    )
    if not found:
        return None
    row = found[0]
    return CampaignInfo(
        campaign_id=row["campaign_id"],
        street=row["street"],
        name=row["name"],
        villages=tuple(json.loads(row["villages"])),
        starts_on=row["starts_on"],
        ends_on=row["ends_on"],
    )


def _entries(db: KeyedDb, street: str, villages: Iterable[str] = ()) -> list[dict[str, Any]]:
    wanted = [db.keys.token("village", v) for v in villages]
    if wanted:
        marks = db.placeholders(len(wanted))
        return db.execute(
            f"SELECT * FROM {{{ENTRY_TABLE}}} WHERE street = ? AND village_index IN ({marks})",
            (street, *wanted),
        )
    return db.execute(f"SELECT * FROM {{{ENTRY_TABLE}}} WHERE street = ?", (street,))


def _lettered(db: KeyedDb, street: str, by_day: str | None) -> set[str]:
    """Blind indexes of minors with a letter signed on a case file of the street (by the day)."""
    rows = db.execute(
        "SELECT id_index, letter_on FROM {screening_case_letters} "
        "WHERE street = ? AND letter_on IS NOT NULL",
        (street,),
    )
    return {r["id_index"] for r in rows if by_day is None or r["letter_on"] <= by_day}


def _place(db: KeyedDb, row: dict[str, Any]) -> tuple[str, str]:
    opened = db.keys.open(ENTRY_TABLE, row["entry_id"], row["sealed"])
    return str(opened["village"]), str(opened.get("grid", ""))


def _figures(
    db: KeyedDb,
    entries: list[dict[str, Any]],
    visited: set[str],
    lettered: set[str],
    letter_by: str | None,
) -> list[Figures]:
    """The total, then each village, then each grid of it, sorted by village and grid."""
    places: dict[tuple[str, str], tuple[str, str]] = {}
    total = Figures()
    villages: dict[str, Figures] = {}
    grids: dict[tuple[str, str], Figures] = defaultdict(Figures)
    for row in entries:
        key = (row["village_index"], row["grid_index"])
        if key not in places:
            places[key] = _place(db, row)
        village, grid = places[key]
        village_line = villages.setdefault(village, Figures(village=village))
        grid_line = grids[(village, grid)]
        grid_line.village, grid_line.grid = village, grid
        seen = row["entry_id"] in visited
        key_student = bool(row["key_student"])
        letter = bool(row["needs_letter"]) and (
            (row["letter_on"] is not None and (letter_by is None or row["letter_on"] <= letter_by))
            or row["id_index"] in lettered
        )
        for line in (total, village_line, grid_line):
            line.minors += 1
            line.visited += seen
            line.key_students += key_student
            line.key_visited += key_student and seen
            line.needs_letter += bool(row["needs_letter"])
            line.letters += letter
    ordered: list[Figures] = [total]
    for village in sorted(villages):
        ordered.append(villages[village])
        ordered.extend(grids[k] for k in sorted(grids) if k[0] == village)
    return ordered


def _visited_in_campaign(db: KeyedDb, campaign_id: str) -> set[str]:
    rows = db.execute(
        "SELECT DISTINCT entry_id FROM {screening_visits} WHERE campaign_id = ?", (campaign_id,)
    )
    return {r["entry_id"] for r in rows}


def campaign_coverage(db: KeyedDb, campaign: CampaignInfo) -> dict[str, Any]:
    """Coverage of a campaign: the total line, then each village and its grids."""
    entries = _entries(db, campaign.street, campaign.villages)
    visited = _visited_in_campaign(db, campaign.campaign_id)
    lines = _figures(db, entries, visited, _lettered(db, campaign.street, None), None)
    return {
        "campaign": campaign.as_dict(),
        "total": lines[0].as_dict(),
        "lines": [line.as_dict() for line in lines[1:]],
    }


@dataclass(frozen=True)
class NotVisited:
    entry_id: UUID
    name: str
    gender: str
    village: str
    grid: str
    school: str
    grade_class: str
    markers: list[str]

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["entry_id"] = str(self.entry_id)
        found["marker_labels"] = [KEY_MARKER_LABELS[KeyMarker(m)] for m in self.markers]
        return found


# The fields a not-visited list discloses of each minor (recorded with its access event).
NOT_VISITED_FIELDS = frozenset(
    {
        "roster.name",
        "roster.gender",
        "roster.village",
        "roster.grid",
        "roster.school",
        "roster.grade_class",
        "roster.markers",
    }
)


def not_visited(db: KeyedDb, campaign: CampaignInfo, villages: Iterable[str]) -> list[NotVisited]:
    """The minors of `villages` (within the campaign's) not visited in the campaign, by village,
    grid and name. The caller records the disclosure before answering."""
    wanted = [v for v in villages if not campaign.villages or v in campaign.villages]
    entries = _entries(db, campaign.street, wanted) if wanted else []
    visited = _visited_in_campaign(db, campaign.campaign_id)
    found = []
    for row in entries:
        if row["entry_id"] in visited:
            continue
        opened = db.keys.open(ENTRY_TABLE, row["entry_id"], row["sealed"])
        found.append(
            NotVisited(
                entry_id=UUID(row["entry_id"]),
                name=opened["name"],
                gender=opened["gender"],
                village=opened["village"],
                grid=opened.get("grid", ""),
                school=opened["school"],
                grade_class=opened.get("grade_class", ""),
                markers=list(opened.get("markers", [])),
            )
        )
    return sorted(found, key=lambda n: (n.village, n.grid, n.name, str(n.entry_id)))


def roster_villages(db: KeyedDb, street: str) -> list[str]:
    """The villages with minors on the street's roster (their codes)."""
    rows = db.execute(
        f"SELECT village_index, MIN(entry_id) AS entry_id FROM {{{ENTRY_TABLE}}} "
        "WHERE street = ? GROUP BY village_index",
        (street,),
    )
    found = []
    for row in rows:
        sealed = db.execute(
            f"SELECT sealed FROM {{{ENTRY_TABLE}}} WHERE entry_id = ?", (row["entry_id"],)
        )
        opened = db.keys.open(ENTRY_TABLE, row["entry_id"], sealed[0]["sealed"])
        found.append(str(opened["village"]))
    return sorted(found)


def entry_by_id_index(db: KeyedDb, street: str, id_index: str) -> UUID | None:
    rows = db.execute(
        f"SELECT entry_id FROM {{{ENTRY_TABLE}}} WHERE street = ? AND id_index = ?",
        (street, id_index),
    )
    return UUID(rows[0]["entry_id"]) if rows else None


# --- the quarterly report's figures ---------------------------------------------------------------


def _period_entries(db: KeyedDb, street: str, period: Period) -> list[dict[str, Any]]:
    return [r for r in _entries(db, street) if r["listed_on"] <= period.end.isoformat()]


def visit_coverage(db: KeyedDb, street: str, period: Period) -> dict[str, Any]:
    """走访覆盖: minors on the street's roster by the period's end; of them, those visited within
    the period (by any campaign), key students and key students visited; the total line, then
    each village and grid. Rates are per cent with one decimal (None without minors)."""
    entries = _period_entries(db, street, period)
    rows = db.execute(
        "SELECT DISTINCT entry_id FROM {screening_visits} "
        "WHERE street = ? AND visited_on >= ? AND visited_on <= ?",
        (street, period.start.isoformat(), period.end.isoformat()),
    )
    visited = {r["entry_id"] for r in rows}
    lines = _figures(db, entries, visited, set(), period.end.isoformat())
    return {
        "street": street,
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        **_visit_line(lines[0]),
        "villages": [{"village": f.village, "grid": f.grid, **_visit_line(f)} for f in lines[1:]],
    }


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _visit_line(line: Figures) -> dict[str, Any]:
    return {
        "minors": line.minors,
        "visited": line.visited,
        "not_visited": line.not_visited,
        "visit_rate": _rate(line.visited, line.minors),
        "key_students": line.key_students,
        "key_visited": line.key_visited,
        "key_visit_rate": _rate(line.key_visited, line.key_students),
    }


def letter_coverage(db: KeyedDb, street: str, period: Period) -> dict[str, Any]:
    """监护责任书覆盖 (全面签订): the minors on the street's roster by the period's end who need a
    letter (left-behind, de facto unsupported, orphans), and those with one signed by the
    period's end, on the roster or on a case file of the same minor (blind index)."""
    end = period.end.isoformat()
    entries = _period_entries(db, street, period)
    lines = _figures(db, entries, set(), _lettered(db, street, end), end)
    return {
        "street": street,
        "period": {"start": period.start.isoformat(), "end": end},
        **_letter_line(lines[0]),
        "villages": [{"village": f.village, "grid": f.grid, **_letter_line(f)} for f in lines[1:]],
    }


def _letter_line(line: Figures) -> dict[str, Any]:
    return {
        "needs_letter": line.needs_letter,
        "letters": line.letters,
        "missing": line.needs_letter - line.letters,
        "letter_rate": _rate(line.letters, line.needs_letter),
    }


def open_files(db: KeyedDb, id_index: str) -> list[UUID]:
    """The open case files of the ledger (a view in the same database) whose minor has this
    blind index, newest first: a clue found on a visit links to the first."""
    rows = db.execute(
        "SELECT case_id FROM {ledger_cases} WHERE id_index = ? AND status <> ? "
        "ORDER BY reported_at DESC",
        (id_index, "closed"),
    )
    return [UUID(r["case_id"]) for r in rows]


COVERAGE_LABELS: Final = {
    "roster_minors": "名册在册未成年人",
    "visited": "已走访",
    "key_students": "重点学生",
    "key_visited": "重点学生已走访",
    "needs_letter": "应签监护责任书",
    "letters": "已签监护责任书",
}


def coverage_counts(
    db: KeyedDb, street: str, period: Period, *, village: str | None = None
) -> tuple[Count, ...]:
    """The quarterly report's coverage lines (issue 17): visit and guardianship-letter coverage
    of the street's roster in the period (`visit_coverage`, `letter_coverage`), or of one
    village's; counts only (`projections.ledger.reports.Count`)."""
    visits, letters = visit_coverage(db, street, period), letter_coverage(db, street, period)
    if village is not None:
        visits = next(
            (v for v in visits["villages"] if v["village"] == village and v["grid"] is None),
            {k: 0 for k in ("minors", "visited", "key_students", "key_visited")},
        )
        letters = next(
            (v for v in letters["villages"] if v["village"] == village and v["grid"] is None),
            {k: 0 for k in ("needs_letter", "letters")},
        )
    figures = {
        "roster_minors": visits["minors"],
        "visited": visits["visited"],
        "key_students": visits["key_students"],
        "key_visited": visits["key_visited"],
        "needs_letter": letters["needs_letter"],
        "letters": letters["letters"],
    }
    return tuple(Count(code, COVERAGE_LABELS[code], int(n)) for code, n in figures.items())
