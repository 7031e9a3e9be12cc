"""The ledger (台账): one row per case file, kept up to date from the case events.

Tables (see `LedgerView.create_statements`; every column, and why it is held as it is, in
`docs/projections.md`, "What each column holds"):
- `ledger_cases`: the row of each file. Nothing that identifies the minor or reveals a
  sensitive subtype is in clear: what is only displayed (village, school, masked name and ID
  number, gender, age, the issues) is in `sealed`, AES-256-GCM bound to the case id
  (`projections.sealed`); what is filtered on is a keyed token (`village_index`,
  `school_index`, and the blind indexes `name_index`, `id_index`). No description, guardian,
  phone or date of birth (the age is computed on the date found). Operational values (street,
  units, risk, status, dates, counts) stay in clear: queries filter and sort on them.
- `ledger_issues`: the (category, subtype) pairs of each file, for filtering; subtypes of the
  mental-health and unlawful-harm categories as tokens, the others as codes.
- `ledger_assignments`: each assignment of a unit under a protection function, for the
  assigned-units column and the units' worklists (`projections.ledger.worklists`), with the
  duty cycle's instants (received, signed for, declined, result) and the result's
  recommendation; never a reason, an outcome's text or a person (layout 5: receipts from
  `NoticeReceived` facts).
- `ledger_erased` (issue 19): a tombstone per erased file (`projections.tombstones`): that it
  existed and was erased, when, under which rule; its other rows are deleted.
- `ledger_counts` (issue 23): how many files each street holds, in all and per village token,
  reporting unit token, risk and status (`COUNTED`), changed in the transaction that changes
  the rows it counts (reports, transfers, corrections, status and risk changes, erasures) and
  refilled by a rebuild, so that a page's total is one row read, not a walk over the street.
  Equal to `COUNT(*)` over `ledger_cases`: `tests/projections/test_ledger_counts.py`.

Proven by `tests/projections/test_readmodel_privacy.py` (planted values searched for in the
bytes of the database) and `tests/projections/test_ledger_api.py` (filters and rows over HTTP).

Reading: `LedgerQuery` + `ledger_page()` in a `KeyedDb` (the read models' reading transaction,
which carries their keys); rows come back opened, as `LedgerRow`, whose `as_dict()` is the JSON
form and whose `cells()` are the export's columns (`COLUMNS`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final, Protocol
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.access import CaseScope, HeldAssignment
from domain.case import DUTY_STATE_LABELS, Case, DutyState, duty_state
from domain.identity import age_on, mask_id_number, mask_name
from domain.notices import NoticeReceived
from domain.retention import DataKeyDestroyed, KeyScope
from domain.taxonomy import (
    CASE_STATUS_LABELS,
    CATEGORY_LABELS,
    DISCOVERY_METHOD_LABELS,
    FINDER_ROLE_LABELS,
    GENDER_LABELS,
    PROTECTION_FUNCTION_LABELS,
    RISK_LABELS,
    SUBTYPES,
    CaseStatus,
    Category,
    DiscoveryMethod,
    FinderRole,
    Gender,
    ProtectionFunction,
    RiskLevel,
    is_known_subtype,
    subtype_label,
)
from domain.tombstones import ERASURE_TOPICS, erasure_split
from projections.blind_index import BlindIndex
from projections.follower import Batch, Db, Dialect, Row, View
from projections.ledger.quarters import (
    LOCAL_TZ,
    local_date,
    parse_stamp,
    quarterly_update_due,
    stamp,
)
from projections.sealed import KeyedDb, ReadModelKeys
from projections.tombstones import bury, delete_rows, erased_among, erases, scoped, tombstone_ddl

# Every event of the case aggregate; access events are other streams and never reach the ledger.
CASE_EVENTS: Final = (
    "ClueReported",
    "Reclassified",
    "RiskAssessed",
    "ConsultationHeld",
    "UnitAssigned",
    "AssignmentAcknowledged",
    "AssignmentDeclined",
    "AssignmentResultReported",
    "AssignmentEnded",
    "InterventionRecorded",
    "GuardianshipLetterSigned",
    "FollowUpRecorded",
    "Escalated",
    "Closed",
    "Reopened",
    # Issue 17: corrections (the masks and blind indexes follow the corrected values) and
    # transfers (the row moves to the receiving street; both streets' transfers listed).
    "DetailsCorrected",
    "Transferred",
)
CASE_TOPICS: Final = tuple(get_topic(getattr(Case, name)) for name in CASE_EVENTS)
ERASED_TABLE: Final = "ledger_erased"
COUNTS_TABLE: Final = "ledger_counts"
# The columns of `ledger_cases` whose values a street's files are counted by (besides in all,
# dimension ""): one filter of a page on any of them (or a reporter's own unit) is answered
# from `ledger_counts`. Held as stored: village and unit as their keyed tokens.
COUNTED: Final = ("village_index", "reporting_unit_index", "risk", "status")
# The ledger also follows the unit clients' receipts (their own streams, naming the case).
LEDGER_TOPICS: Final = (*CASE_TOPICS, get_topic(NoticeReceived))


def _case_of(event: Any) -> str:
    """The case an event is about: its stream, or, for a receipt, the case it names."""
    if isinstance(event, NoticeReceived):
        return str(event.case_id)
    return str(event.originator_id)


# Stored columns of `ledger_cases`.
_CASE_COLUMNS: Final = (
    "case_id",
    "street",
    "village_index",
    "reporting_unit_index",
    "school_index",
    "name_index",
    "id_index",
    "sealed",
    "risk",
    "status",
    "found_on",
    "found_by_role",
    "method",
    "reported_at",
    "updated_at",
    "version",
    "awaiting_since",
    "last_consultation_on",
    "follow_up_count",
    "last_follow_up_on",
    "intervention_count",
    "letter_count",
    "escalation",
    "update_due_on",
    "next_assignment_due",
    "closed_at",
    "closing_reason",
)
# Values of a row held in its `sealed` column: displayed, never filtered on in the database.
# The reporting and finding units are sealed too: a village's own committee reports its clues,
# so its unit code is the village's.
SEALED_VALUES: Final = (
    "village",
    "reporting_unit",
    "found_by_unit",
    "school",
    "name_masked",
    "id_masked",
    "gender",
    "age",
    "issues",
)
_SEALED_IN: Final = "ledger_cases"
# The units' duty cycle (issue 14), instants and a code only (no reason, outcome or person):
# `received_at` the unit client's receipt, `declined_at`, `result_at` and the result's
# `recommendation` (close | continue). `acknowledged_at` is the instant a person signed for the
# task (签收), as in the case's state.
_DUTY_CYCLE_COLUMNS: Final = ("received_at", "declined_at", "result_at", "recommendation")
# Stored columns of `ledger_assignments`: the unit as a token (filters) and sealed (shown), for
# the same reason as the reporting unit's.
_STORED_ASSIGNMENT_COLUMNS: Final = (
    "assignment_id",
    "case_id",
    "unit_index",
    "unit_sealed",
    "function",
    "due_on",
    "assigned_at",
    "acknowledged_at",
    "ended_at",
    "outcome",
    *_DUTY_CYCLE_COLUMNS,
)
_ASSIGNMENTS_IN: Final = "ledger_assignments"
_ASSIGNMENT_COLUMNS: Final = (
    "assignment_id",
    "case_id",
    "unit",
    "function",
    "due_on",
    "assigned_at",
    "acknowledged_at",
    "ended_at",
    "outcome",
    *_DUTY_CYCLE_COLUMNS,
)


def _in_chunks(values: Sequence[str], size: int = 400) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _was_erased(db: Db, case_id: str, case_ids: list[str], found: dict[str, set[str]]) -> bool:
    """Whether the file has a tombstone (the batch's files looked up once, into `found`)."""
    if "" not in found:
        found[""] = erased_among(db, ERASED_TABLE, case_ids)
    return case_id in found[""]


class LedgerView(View):
    name = "ledger"
    tables = (
        "ledger_cases",
        "ledger_issues",
        "ledger_assignments",
        "ledger_transfers",
        ERASED_TABLE,
        COUNTS_TABLE,
    )
    # Issue 19: an erased file's rows go, its tombstone stays (`projections.tombstones`).
    topics = (*LEDGER_TOPICS, *ERASURE_TOPICS)

    def __init__(self, blind_index: BlindIndex, keys: ReadModelKeys) -> None:
        self.blind_index = blind_index
        self.keys = keys

    def create_statements(self, dialect: Dialect) -> list[str]:
        text, number = "TEXT", "BIGINT"
        columns = {
            "case_id": f"{text} PRIMARY KEY",
            "version": f"{number} NOT NULL",
            "follow_up_count": f"{number} NOT NULL",
            "intervention_count": f"{number} NOT NULL",
            "letter_count": f"{number} NOT NULL",
        }
        nullable = {
            "awaiting_since",
            "last_consultation_on",
            "last_follow_up_on",
            "escalation",
            "update_due_on",
            "next_assignment_due",
            "closed_at",
            "closing_reason",
        }
        definitions = ", ".join(
            f"{c} {columns.get(c, text if c in nullable else text + ' NOT NULL')}"
            for c in _CASE_COLUMNS
        )
        return [
            f"CREATE TABLE IF NOT EXISTS {{ledger_cases}} ({definitions})",
            # Pages are read newest first within a street, optionally narrowed by village, risk
            # or status: each index walks a page in the page's own order (ORDER BY found_on
            # DESC, case_id) and counts a street's rows without touching the table, so that a
            # page costs the same at 1k and at 1M cases (bench/README.md, "scale").
            "CREATE INDEX IF NOT EXISTS ledger_cases_street_order ON {ledger_cases} "
            "(street, found_on DESC, case_id)",
            "CREATE INDEX IF NOT EXISTS ledger_cases_village ON {ledger_cases} "
            "(street, village_index, found_on DESC, case_id)",
            "CREATE INDEX IF NOT EXISTS ledger_cases_risk ON {ledger_cases} "
            "(street, risk, found_on DESC, case_id)",
            "CREATE INDEX IF NOT EXISTS ledger_cases_status ON {ledger_cases} "
            "(street, status, found_on DESC, case_id)",
            # The earlier (street, village, found_on) index, which ledger_cases_village
            # replaces: kept, it would cost every ledger write on stores made before.
            "DROP INDEX IF EXISTS {ledger_cases_place}",  # schema-qualified on PostgreSQL
            "CREATE INDEX IF NOT EXISTS ledger_cases_unit ON {ledger_cases} (reporting_unit_index)",
            "CREATE INDEX IF NOT EXISTS ledger_cases_id_index ON {ledger_cases} (id_index)",
            "CREATE INDEX IF NOT EXISTS ledger_cases_name_index ON {ledger_cases} (name_index)",
            "CREATE INDEX IF NOT EXISTS ledger_cases_school_index ON {ledger_cases} (school_index)",
            "CREATE TABLE IF NOT EXISTS {ledger_issues} (case_id TEXT NOT NULL, "
            "category TEXT NOT NULL, subtype TEXT NOT NULL, "
            "PRIMARY KEY (case_id, category, subtype))",
            "CREATE INDEX IF NOT EXISTS ledger_issues_kind ON {ledger_issues} (category, subtype)",
            "CREATE TABLE IF NOT EXISTS {ledger_assignments} (assignment_id TEXT PRIMARY KEY, "
            "case_id TEXT NOT NULL, unit_index TEXT NOT NULL, unit_sealed TEXT NOT NULL, "
            "function TEXT NOT NULL, "
            "due_on TEXT NOT NULL, assigned_at TEXT NOT NULL, acknowledged_at TEXT, "
            "ended_at TEXT, outcome TEXT, received_at TEXT, declined_at TEXT, result_at TEXT, "
            "recommendation TEXT)",
            "CREATE INDEX IF NOT EXISTS ledger_assignments_case ON {ledger_assignments} (case_id)",
            "CREATE INDEX IF NOT EXISTS ledger_assignments_unit ON {ledger_assignments} "
            "(unit_index, ended_at)",
            # Issue 17: each transfer between streets, for both streets' ledgers (out and in):
            # the case id, the instant and the two streets, nothing of the minor.
            "CREATE TABLE IF NOT EXISTS {ledger_transfers} (case_id TEXT NOT NULL, "
            "moved_at TEXT NOT NULL, from_street TEXT NOT NULL, to_street TEXT NOT NULL, "
            "PRIMARY KEY (case_id, moved_at))",
            "CREATE INDEX IF NOT EXISTS ledger_transfers_from ON {ledger_transfers} "
            "(from_street, moved_at)",
            "CREATE INDEX IF NOT EXISTS ledger_transfers_to ON {ledger_transfers} "
            "(to_street, moved_at)",
            tombstone_ddl(ERASED_TABLE),
            # Issue 23: a page's total kept per street and per value of one counted column
            # (dimension "" = all the street's files, value ""), so that it costs one row.
            "CREATE TABLE IF NOT EXISTS {ledger_counts} (street TEXT NOT NULL, "
            f"dimension TEXT NOT NULL, value TEXT NOT NULL, n {number} NOT NULL, "
            "PRIMARY KEY (street, dimension, value))",
        ]

    # --- applying events ------------------------------------------------------------------------

    def apply(self, db: Db, batch: Batch) -> None:
        events, erasures = erasure_split(batch.events)
        if events:
            self._apply(db, events)
        if erasures:
            self._erase(db, erasures)

    def erases(self, batch: Batch) -> bool:
        return erases(batch.events)

    def _erase(self, db: Db, facts: Sequence[DataKeyDestroyed]) -> None:
        """Issue 19: an erased file's rows (its masks, blind indexes, issues, assignments and
        transfers) are deleted; its tombstone says it existed and was erased, when and why."""
        gone = scoped(facts, KeyScope.CASE)
        counts: Counter[CountKey] = Counter()
        for chunk in _in_chunks(sorted(set(gone))):
            for row in db.execute(
                f"SELECT {', '.join(('street', *COUNTED))} FROM {{ledger_cases}} "
                f"WHERE case_id IN ({db.placeholders(len(chunk))})",
                chunk,
            ):
                counts.subtract(count_keys(row))
        _add_counts(db, counts)
        for table in ("ledger_issues", "ledger_assignments", "ledger_transfers", "ledger_cases"):
            delete_rows(db, table, "case_id", gone)
        bury(db, ERASED_TABLE, [f for f in facts if f.scope == KeyScope.CASE])

    def _apply(self, db: Db, events: Sequence[Any]) -> None:
        case_ids = sorted({_case_of(e) for e in events})
        cases, assignments, counts = self._loaded(db, case_ids)
        reclassified: set[str] = set()
        transfers: list[tuple[str, str, str, str]] = []
        erased: dict[str, set[str]] = {}  # looked up only if a file is missing
        for event in events:
            if isinstance(event, NoticeReceived):
                # The first receipt of an assignment's notice (a machine's, not a person's).
                receipt_of = assignments.get(event.assignment_id or "")
                if receipt_of is not None:
                    record_receipt(receipt_of, stamp(event.timestamp))
                continue
            case_id = str(event.originator_id)
            kind = type(event).__name__
            if kind == "ClueReported":
                cases[case_id] = self._reported(case_id, event)
                reclassified.add(case_id)
                continue
            current = cases.get(case_id)
            if current is None:
                if _was_erased(db, case_id, case_ids, erased):
                    continue  # stored just before its key went: the file is erased
                raise LookupError(
                    f"event {kind} of case {case_id} (version {event.originator_version}) "
                    "arrived before the case was reported: the view is inconsistent; rebuild it"
                )
            if kind == "Reclassified":
                reclassified.add(case_id)
            data = vars(event)
            at = stamp(data["timestamp"])
            if kind == "DetailsCorrected":
                self._corrected(current, data["changes"])
            elif kind == "Transferred":
                _transferred(current, assignments, data, at)
                if data["from_street"] != data["to_street"]:
                    transfers.append((case_id, at, data["from_street"], data["to_street"]))
            _fold(current, assignments, kind, data, at)
            current["version"] = event.originator_version
            current["updated_at"] = at
        earliest: dict[str, str] = {}
        for a in assignments.values():
            if a["ended_at"] is None and a["due_on"] < earliest.get(a["case_id"], "9999"):
                earliest[a["case_id"]] = a["due_on"]
        for case_id, row in cases.items():
            row["next_assignment_due"] = earliest.get(case_id)
        touched = set(case_ids)
        stored = [self._stored(row) for cid, row in cases.items() if cid in touched]
        db.insert("ledger_cases", _CASE_COLUMNS, stored, key=("case_id",))
        for values in stored:
            counts.update(count_keys(dict(zip(_CASE_COLUMNS, values, strict=True))))
        _add_counts(db, counts)
        db.insert(
            "ledger_assignments",
            _STORED_ASSIGNMENT_COLUMNS,
            [stored_assignment(self.keys, a) for a in assignments.values()],
            key=("assignment_id",),
        )
        db.insert(
            "ledger_transfers",
            ("case_id", "moved_at", "from_street", "to_street"),
            transfers,
            key=("case_id", "moved_at"),
        )
        changed = sorted(reclassified)
        for chunk in _in_chunks(changed):
            db.execute(
                f"DELETE FROM {{ledger_issues}} WHERE case_id IN ({db.placeholders(len(chunk))})",
                chunk,
            )
        db.insert(
            "ledger_issues",
            ("case_id", "category", "subtype"),
            [
                (case_id, category, self.keys.subtype(category, subtype))
                for case_id in changed
                for category, subtype in dict.fromkeys(
                    tuple(pair) for pair in json.loads(cases[case_id]["issues"])
                )
            ],
        )

    def _loaded(
        self, db: Db, case_ids: Sequence[str]
    ) -> tuple[dict[str, Row], dict[str, Row], Counter[CountKey]]:
        """The files' rows and assignments as stored (opened), and, subtracted, the counts
        their rows are in before the batch (their rows' counts move with them)."""
        cases: dict[str, Row] = {}
        assignments: dict[str, Row] = {}
        counts: Counter[CountKey] = Counter()
        for chunk in _in_chunks(case_ids):
            marks = db.placeholders(len(chunk))
            for row in db.execute(
                f"SELECT * FROM {{ledger_cases}} WHERE case_id IN ({marks})", chunk
            ):
                counts.subtract(count_keys(row))
                cases[row["case_id"]] = plain_row(self.keys, row)
            for row in db.execute(
                f"SELECT * FROM {{ledger_assignments}} WHERE case_id IN ({marks})", chunk
            ):
                assignments[row["assignment_id"]] = plain_assignment(self.keys, row)
        return cases, assignments, counts

    def _stored(self, row: Row) -> list[Any]:
        """The row as `ledger_cases` holds it: displayed values sealed, filtered ones hashed."""
        stored = {
            **row,
            "village_index": self.keys.token("village", row["village"]),
            "reporting_unit_index": self.keys.token("unit", row["reporting_unit"]),
            "school_index": self.keys.token("school", row["school"]),
            "sealed": self.keys.seal(
                _SEALED_IN, row["case_id"], {k: row[k] for k in SEALED_VALUES}
            ),
        }
        return [stored[c] for c in _CASE_COLUMNS]

    def _corrected(self, row: Row, changes: list[dict[str, Any]]) -> None:
        """A correction (issue 17): the displayed masks, the tokens and the blind indexes of
        the corrected values replace the earlier ones, so that a lookup by the earlier ID
        number or name no longer finds the file and one by the corrected values does."""
        for change in changes:
            field, new = change["field"], change["new"]
            if field == "minor.name":
                row["name_masked"] = mask_name(new)
                row["name_index"] = self.blind_index.name(new)
            elif field == "minor.id_number":
                row["id_masked"] = mask_id_number(new)
                row["id_index"] = self.blind_index.id_number(new)
            elif field == "minor.gender":
                row["gender"] = new
            elif field == "minor.date_of_birth":
                row["age"] = age_on(date.fromisoformat(new), date.fromisoformat(row["found_on"]))
            elif field == "minor.school":
                row["school"] = new
            elif field == "village":
                row["village"] = new

    def _reported(self, case_id: str, event: Any) -> Row:
        data = vars(event)
        minor, found_by = data["minor"], data["found_by"]
        reported_at = stamp(event.timestamp)
        found_on = date.fromisoformat(data["found_on"])
        return {
            "case_id": case_id,
            "street": data["street"],
            "village": minor["village"],
            "reporting_unit": data["reported_by"]["unit"],
            "school": minor["school"],
            "name_masked": mask_name(minor["name"]),
            "name_index": self.blind_index.name(minor["name"]),
            "id_masked": mask_id_number(minor["id_number"]),
            "id_index": self.blind_index.id_number(minor["id_number"]),
            "gender": minor["gender"],
            "age": age_on(date.fromisoformat(minor["date_of_birth"]), found_on),
            "issues": _issues_json(data["issues"]),
            "risk": data["risk"],
            "status": CaseStatus.AWAITING_CONSULTATION.value,
            "found_on": data["found_on"],
            "found_by_role": found_by["role"],
            "found_by_unit": found_by["unit"],
            "method": data["method"],
            "reported_at": reported_at,
            "updated_at": reported_at,
            "version": event.originator_version,
            "awaiting_since": reported_at,
            "last_consultation_on": None,
            "follow_up_count": 0,
            "last_follow_up_on": None,
            "intervention_count": 0,
            "letter_count": 0,
            "escalation": None,
            "update_due_on": quarterly_update_due(local_date(event.timestamp)).isoformat(),
            "next_assignment_due": None,
            "closed_at": None,
            "closing_reason": None,
        }


# (street, dimension, value): one row of `ledger_counts`.
CountKey = tuple[str, str, str]


def count_keys(row: Row) -> list[CountKey]:
    """The counts a stored `ledger_cases` row is one of: its street's, and one per `COUNTED`."""
    street = str(row["street"])
    return [(street, "", ""), *((street, d, str(row[d])) for d in COUNTED)]


def _add_counts(db: Db, changes: Counter[CountKey]) -> None:
    """Add a batch's changes to `ledger_counts`; a count back to 0 is deleted, so that the
    table holds the same rows whichever batches built it (a rebuild compares equal)."""
    moved = [(*key, n) for key, n in sorted(changes.items()) if n != 0]
    if not moved:
        return
    db.executemany(
        "INSERT INTO {ledger_counts} AS k (street, dimension, value, n) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (street, dimension, value) DO UPDATE SET n = k.n + excluded.n",
        moved,
    )
    db.executemany(
        "DELETE FROM {ledger_counts} WHERE street = ? AND dimension = ? AND value = ? AND n = 0",
        [key for *key, _ in moved],
    )


def _transferred(row: Row, assignments: dict[str, Row], data: dict[str, Any], at: str) -> None:
    """A transfer (issue 17): the row moves to the receiving street and village; leaving a
    street ends its units' open assignments (outcome `transferred`), as the aggregate does."""
    if data["from_street"] != data["to_street"]:
        for assignment in assignments.values():
            if assignment["case_id"] == row["case_id"] and assignment["ended_at"] is None:
                assignment["ended_at"], assignment["outcome"] = at, "transferred"
    row["street"] = data["to_street"]
    row["village"] = data["to_village"]


def transfers_of(db: Db, street: str, *, limit: int = 500) -> list[Row]:
    """The transfers out of and into `street`, newest first: case id, instant, both streets
    and the direction (`out` | `in`) as that street sees it."""
    rows = db.execute(
        "SELECT case_id, moved_at, from_street, to_street FROM {ledger_transfers} "
        "WHERE from_street = ? OR to_street = ? ORDER BY moved_at DESC, case_id LIMIT ?",
        [street, street, limit],
    )
    return [{**r, "direction": "out" if r["from_street"] == street else "in"} for r in rows]


def _issues_json(issues: list[dict[str, str]]) -> str:
    return json.dumps([[i["category"], i["subtype"]] for i in issues], ensure_ascii=False)


def _fold(row: Row, assignments: dict[str, Row], kind: str, data: dict[str, Any], at: str) -> None:
    """One event (recorded at `at`) into the case's row and its assignments, as the aggregate
    changes its state."""
    if kind == "Reclassified":
        row["issues"] = _issues_json(data["issues"])
        row["risk"] = data["risk"]
    elif kind == "RiskAssessed":
        row["risk"] = data["level"]
    elif kind == "ConsultationHeld":
        row["last_consultation_on"] = max(row["last_consultation_on"] or "", data["held_on"])
        _intervening(row)
    elif kind == "UnitAssigned":
        assignments[data["assignment_id"]] = {
            "assignment_id": data["assignment_id"],
            "case_id": row["case_id"],
            "unit": data["unit"],
            "function": data["function"],
            "due_on": data["due_on"],
            "assigned_at": at,
            "acknowledged_at": None,
            "ended_at": None,
            "outcome": None,
            **dict.fromkeys(_DUTY_CYCLE_COLUMNS),
        }
        _intervening(row)
    elif kind in _DUTY_CYCLE_EVENTS:
        _fold_duty_cycle(assignments[data["assignment_id"]], kind, data, at)
    elif kind == "AssignmentEnded":
        assignment = assignments[data["assignment_id"]]
        assignment["ended_at"], assignment["outcome"] = at, data["outcome"]
    elif kind == "InterventionRecorded":
        row["intervention_count"] += 1
    elif kind == "GuardianshipLetterSigned":
        row["letter_count"] += 1
    elif kind == "FollowUpRecorded":
        row["follow_up_count"] += 1
        row["last_follow_up_on"] = max(row["last_follow_up_on"] or "", data["visited_on"])
        due = quarterly_update_due(date.fromisoformat(data["visited_on"])).isoformat()
        row["update_due_on"] = max(row["update_due_on"] or "", due)
    elif kind == "Escalated":
        row["escalation"] = data["to_level"]
    elif kind == "Closed":
        for assignment in assignments.values():
            if assignment["case_id"] == row["case_id"] and assignment["ended_at"] is None:
                assignment["ended_at"], assignment["outcome"] = at, "case_closed"
        row["status"] = CaseStatus.CLOSED.value
        row["closed_at"], row["closing_reason"] = at, data["reason"]
        row["awaiting_since"] = None
        row["update_due_on"] = None
    elif kind == "Reopened":
        row["status"] = CaseStatus.AWAITING_CONSULTATION.value
        row["awaiting_since"] = at
        row["closed_at"] = row["closing_reason"] = None
        row["update_due_on"] = quarterly_update_due(local_date(data["timestamp"])).isoformat()


_DUTY_CYCLE_EVENTS: Final = (
    "AssignmentAcknowledged",
    "AssignmentDeclined",
    "AssignmentResultReported",
)


def _fold_duty_cycle(assignment: Row, kind: str, data: dict[str, Any], at: str) -> None:
    """A unit's step on its assignment, as `domain.case` records it."""
    if kind == "AssignmentAcknowledged":
        # Version 1 (upcast: `receipt` True) was the unit client's receipt, not a person's.
        if data.get("receipt", False):
            record_receipt(assignment, at)
        else:
            assignment["acknowledged_at"] = at
    elif kind == "AssignmentDeclined":
        assignment["declined_at"] = at
        assignment["ended_at"], assignment["outcome"] = at, "declined"
    elif kind == "AssignmentResultReported":
        assignment["result_at"], assignment["recommendation"] = at, data["recommendation"]
        assignment["ended_at"], assignment["outcome"] = at, "result_reported"


def record_receipt(assignment: Row, at: str) -> None:
    """The unit's client confirmed receipt of the assignment's notice: the first time counts.
    Said by a `NoticeReceived` fact of an assignment notice (domain.notices, its own stream),
    and, in stores written before those facts, by a version 1 acknowledgement (upcast,
    `receipt` True)."""
    if assignment.get("received_at") is None:
        assignment["received_at"] = at


def _intervening(row: Row) -> None:
    row["status"] = CaseStatus.INTERVENING.value
    row["awaiting_since"] = None


# --- reading -------------------------------------------------------------------------------------


class RowScope(Protocol):
    """Which files an actor may list (`domain.access.LedgerScope` is one)."""

    @property
    def street(self) -> str: ...

    @property
    def reporting_unit(self) -> str | None: ...

    @property
    def assigned_unit(self) -> str | None: ...


@dataclass(frozen=True)
class LedgerQuery:
    """Filters of a ledger page; None means any."""

    street: str | None = None
    village: str | None = None
    school: str | None = None
    category: str | None = None
    subtype: str | None = None
    risk: str | None = None
    status: str | None = None
    found_from: date | None = None
    found_to: date | None = None
    id_index: str | None = None
    name_index: str | None = None


def scope_clause(
    keys: ReadModelKeys, scope: RowScope, alias: str = "c", *, ended_since: str | None = None
) -> tuple[str, list[Any]]:
    """The WHERE conditions that keep an actor's rows: their street, and their unit's files
    (reporters) or the files their unit holds an open assignment on (unit members); with
    `ended_since` (a stamp), also those whose assignment ended since then (the grace period).
    A pre-filter: each row's fields are still decided by the access rules."""
    clauses, params = [f"{alias}.street = ?"], [scope.street]
    if scope.reporting_unit is not None:
        clauses.append(f"{alias}.reporting_unit_index = ?")
        params.append(keys.token("unit", scope.reporting_unit))
    if scope.assigned_unit is not None:
        held = (
            "s.ended_at IS NULL"
            if ended_since is None
            else "(s.ended_at IS NULL OR s.ended_at >= ?)"
        )
        clauses.append(
            f"EXISTS (SELECT 1 FROM {{ledger_assignments}} s WHERE s.case_id = {alias}.case_id "
            f"AND s.unit_index = ? AND {held})"
        )
        params.append(keys.token("unit", scope.assigned_unit))
        if ended_since is not None:
            params.append(ended_since)
    return " AND ".join(clauses), params


def _assignment_row_id(row: Row) -> str:
    # Bound to the file and the assignment: a unit copied to another assignment does not open.
    return f"{row['case_id']}/{row['assignment_id']}"


def stored_assignment(keys: ReadModelKeys, row: Row) -> list[Any]:
    """An assignment as `ledger_assignments` holds it: the unit hashed and sealed."""
    stored = {
        **row,
        "unit_index": keys.token("unit", row["unit"]),
        "unit_sealed": keys.seal(_ASSIGNMENTS_IN, _assignment_row_id(row), {"unit": row["unit"]}),
    }
    return [stored[c] for c in _STORED_ASSIGNMENT_COLUMNS]


def plain_assignment(keys: ReadModelKeys, stored: Row) -> Row:
    """A `ledger_assignments` row with its unit opened (the columns of `_ASSIGNMENT_COLUMNS`)."""
    row = {k: v for k, v in stored.items() if k not in ("unit_index", "unit_sealed")}
    row.update(keys.open(_ASSIGNMENTS_IN, _assignment_row_id(stored), stored["unit_sealed"]))
    return row


def plain_row(keys: ReadModelKeys, stored: Row) -> Row:
    """A `ledger_cases` row with its sealed values opened (`SEALED_VALUES`), as the ledger's
    readers and its fold use it."""
    row = {k: v for k, v in stored.items() if k != "sealed"}
    row.update(keys.open(_SEALED_IN, stored["case_id"], stored["sealed"]))
    return row


def _where(
    keys: ReadModelKeys, scope: RowScope, query: LedgerQuery, ended_since: str | None
) -> tuple[str, list[Any]]:
    clause, params = scope_clause(keys, scope, ended_since=ended_since)
    clauses = [clause]
    for column in ("street", "risk", "status", "id_index", "name_index"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"c.{column} = ?")
            params.append(value)
    # Held as keyed tokens: the query's value is hashed the same way.
    for column in ("village", "school"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"c.{column}_index = ?")
            params.append(keys.token(column, value))
    if query.category is not None or query.subtype is not None:
        issue = ["i.case_id = c.case_id"]
        if query.subtype is None:
            issue.append("i.category = ?")
            params.append(query.category)
        else:
            # A subtype code may stand under several categories (虐待), each stored its own
            # way: one (category, stored subtype) pair per category that knows the code.
            categories = [query.category] if query.category is not None else list(SUBTYPES)
            pairs = [str(c) for c in categories if is_known_subtype(str(c), query.subtype)]
            if not pairs:
                pairs = [query.category or ""]
            issue.append(
                "(" + " OR ".join("(i.category = ? AND i.subtype = ?)" for _ in pairs) + ")"
            )
            for category in pairs:
                params += [category, keys.subtype(category, query.subtype)]
        clauses.append(f"EXISTS (SELECT 1 FROM {{ledger_issues}} i WHERE {' AND '.join(issue)})")
    if query.found_from is not None:
        clauses.append("c.found_on >= ?")
        params.append(query.found_from.isoformat())
    if query.found_to is not None:
        clauses.append("c.found_on <= ?")
        params.append(query.found_to.isoformat())
    return " AND ".join(clauses), params


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    unit: str
    function: str
    due_on: str
    assigned_at: str
    acknowledged_at: str | None
    ended_at: str | None
    outcome: str | None
    received_at: str | None = None
    declined_at: str | None = None
    result_at: str | None = None
    recommendation: str | None = None

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    def state(self, today: date) -> DutyState:
        """Where the unit stands with it (`duty_state`): published, received, signed_for,
        result_due, overdue, declined, result_reported, ended."""
        return duty_state(
            ended_at=self.ended_at,
            outcome=self.outcome,
            due_on=self.due_on,
            signed_for_at=self.acknowledged_at,
            received_at=self.received_at,
            today=today,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.assignment_id,
            "unit": self.unit,
            "function": self.function,
            "function_label": PROTECTION_FUNCTION_LABELS[ProtectionFunction(self.function)],
            "due_on": self.due_on,
            "assigned_at": self.assigned_at,
            "acknowledged_at": self.acknowledged_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "received_at": self.received_at,
            "signed_for_at": self.acknowledged_at,
            "declined_at": self.declined_at,
            "result_at": self.result_at,
            "recommendation": self.recommendation,
            "state": str(self.state(local_date(datetime.now(LOCAL_TZ)))),
        }


@dataclass(frozen=True)
class Deadline:
    kind: str  # consultation | assignment | quarterly_update
    due_on: date
    overdue: bool


KIND_LABELS: Final = MappingProxyType(
    {"consultation": "会商", "assignment": "交办任务", "quarterly_update": "季度更新"}
)


@dataclass(frozen=True)
class LedgerRow:
    row: Row
    assignments: tuple[Assignment, ...] = field(default_factory=tuple)

    # Parsed once per row (a page asks for them several times per row).
    @cached_property
    def case_id(self) -> UUID:
        return UUID(self.row["case_id"])

    @cached_property
    def issues(self) -> list[tuple[str, str]]:
        return [(c, s) for c, s in json.loads(self.row["issues"])]

    def deadlines(self, now: datetime, consultation_deadline: timedelta) -> list[Deadline]:
        today = local_date(now)
        found: list[Deadline] = []
        if self.row["awaiting_since"] is not None:
            due = parse_stamp(self.row["awaiting_since"]) + consultation_deadline
            found.append(Deadline("consultation", local_date(due), now > due))
        for assignment in self.assignments:
            if assignment.is_open:
                due_on = date.fromisoformat(assignment.due_on)
                found.append(Deadline("assignment", due_on, due_on < today))
        if self.row["update_due_on"] is not None:
            due_on = date.fromisoformat(self.row["update_due_on"])
            found.append(Deadline("quarterly_update", due_on, due_on < today))
        return sorted(found, key=lambda d: (d.due_on, d.kind))

    def case_scope(self) -> CaseScope:
        """What the access rules need to know of the file, as the ledger holds it."""
        return CaseScope(
            case_id=self.case_id,
            street=self.row["street"],
            reporting_unit=self.row["reporting_unit"],
            assignments=tuple(
                HeldAssignment(
                    unit=a.unit,
                    function=ProtectionFunction(a.function),
                    ended_at=parse_stamp(a.ended_at) if a.ended_at else None,
                )
                for a in self.assignments
            ),
        )

    def as_dict(
        self, fields: frozenset[str], *, now: datetime, consultation_deadline: timedelta
    ) -> dict[str, Any]:
        """The JSON form, holding only what `fields` (of `domain.access.FIELDS`) allow: codes
        with their Chinese labels; name and ID number masked."""
        r = self.row
        values: dict[str, Any] = {"id": r["case_id"]}
        simple = ("street", "village", "reporting_unit", "found_on", "method", "reported_at")
        for key in simple:
            if key in fields:
                values[key] = r[key]
        for key, column in (
            ("minor.school", "school"),
            ("minor.name", "name_masked"),
            ("minor.id_number", "id_masked"),
        ):
            if key in fields:
                values[key.removeprefix("minor.")] = r[column]
        if "minor.gender" in fields:
            values["gender"] = r["gender"]
            values["gender_label"] = GENDER_LABELS[Gender(r["gender"])]
        if "minor.date_of_birth" in fields:
            values["age"] = r["age"]
        if "found_by" in fields:
            values["found_by"] = {"role": r["found_by_role"], "unit": r["found_by_unit"]}
        if {"found_by", "method"} <= fields:
            values["source_label"] = source_label(r)
        if "categories" in fields:
            values["categories"] = [
                {"code": c, "label": CATEGORY_LABELS[Category(c)]} for c in self.categories
            ]
        shown = self.shown_issues(fields)
        if shown:
            values["issues"] = [
                {
                    "category": c,
                    "category_label": CATEGORY_LABELS[Category(c)],
                    "subtype": s,
                    "subtype_label": subtype_label(c, s),
                }
                for c, s in shown
            ]
        if "risk" in fields:
            values["risk"] = r["risk"]
            values["risk_label"] = RISK_LABELS[RiskLevel(r["risk"])]
        if "status" in fields:
            values["status"] = r["status"]
            values["status_label"] = CASE_STATUS_LABELS[CaseStatus(r["status"])]
        if "assignments" in fields:
            values["assignments"] = [a.as_dict() for a in self.assignments]
        if "follow_ups" in fields:
            values["follow_ups"] = {
                "count": r["follow_up_count"],
                "last_on": r["last_follow_up_on"],
            }
        if "interventions" in fields:
            values["interventions"] = {"count": r["intervention_count"]}
        if "letters" in fields:
            values["letters"] = {"count": r["letter_count"]}
        if "escalations" in fields:
            values["escalation"] = r["escalation"]
        if "closure" in fields:
            values["closure"] = (
                {"at": r["closed_at"], "reason": r["closing_reason"]} if r["closed_at"] else None
            )
        if "updated_at" in fields:
            values["updated_at"] = r["updated_at"]
        if "version" in fields:
            values["version"] = r["version"]
        if fields >= DEADLINE_FIELDS:
            deadlines = self.deadlines(now, consultation_deadline)
            values["next_due"] = (
                {"on": deadlines[0].due_on.isoformat(), "kind": deadlines[0].kind}
                if deadlines
                else None
            )
            values["overdue"] = [d.kind for d in deadlines if d.overdue]
        return values

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.issues))

    def shown_issues(self, fields: frozenset[str]) -> list[tuple[str, str]]:
        """The (category, subtype) pairs whose category's detail `fields` allow."""
        return [(c, s) for c, s in self.issues if f"issues.{c}" in fields]


# Deadlines say what is due next for the file: they need its status and its assignments.
DEADLINE_FIELDS: Final = frozenset({"assignments", "status"})

# What the JSON form discloses of each field, when it is shown as less than the value.
_MASKED: Final = MappingProxyType(
    {
        "minor.name": "minor.name:masked",
        "minor.id_number": "minor.id_number:masked",
        "minor.date_of_birth": "minor.date_of_birth:age",
    }
)
_ROW_FIELDS: Final = frozenset(
    {
        "id",
        "street",
        "village",
        "reporting_unit",
        "found_on",
        "method",
        "reported_at",
        "minor.school",
        "minor.name",
        "minor.id_number",
        "minor.gender",
        "minor.date_of_birth",
        "found_by",
        "categories",
        "risk",
        "status",
        "assignments",
        "follow_ups",
        "interventions",
        "letters",
        "escalations",
        "closure",
        "updated_at",
        "version",
    }
)


def row_disclosure(row: LedgerRow, fields: frozenset[str]) -> frozenset[str]:
    """What the JSON form of `row` under `fields` discloses, as an access event records it:
    masked values as `<field>:masked` (`:age` for the age), not as the field itself."""
    shown = (fields & _ROW_FIELDS) | {f"issues.{c}" for c, _ in row.shown_issues(fields)}
    return frozenset(_MASKED.get(f, f) for f in shown)


def source_label(row: Row) -> str:
    role = FINDER_ROLE_LABELS.get(FinderRole(row["found_by_role"]), row["found_by_role"])
    method = DISCOVERY_METHOD_LABELS.get(DiscoveryMethod(row["method"]), row["method"])
    return f"{role}·{method}"


def _load_assignments(db: KeyedDb, case_ids: Sequence[str]) -> dict[str, list[Assignment]]:
    found: dict[str, list[Assignment]] = {}
    for chunk in _in_chunks(case_ids):
        rows = db.execute(
            f"SELECT * FROM {{ledger_assignments}} WHERE case_id IN "
            f"({db.placeholders(len(chunk))}) ORDER BY assigned_at, assignment_id",
            chunk,
        )
        for a in (plain_assignment(db.keys, r) for r in rows):
            found.setdefault(a["case_id"], []).append(
                Assignment(**{k: a[k] for k in _ASSIGNMENT_COLUMNS if k != "case_id"})
            )
    return found


def counted_filter(keys: ReadModelKeys, scope: RowScope, query: LedgerQuery) -> CountKey | None:
    """The `ledger_counts` row that holds the total of (scope, query), or None when the
    combination is not kept: two or more counted filters at once, a school, issue, date or
    identity filter, a unit member's scope (their files are those their unit holds an open
    or recent assignment on: a join over the assignments), or another street than the
    scope's. Those keep `COUNT(*)`, narrowed by their own indexes."""
    if scope.assigned_unit is not None:
        return None
    if query.street not in (None, scope.street):
        return None
    others = (query.school, query.category, query.subtype, query.found_from, query.found_to)
    if any(v is not None for v in (*others, query.id_index, query.name_index)):
        return None
    filters: list[tuple[str, str]] = []
    if scope.reporting_unit is not None:
        filters.append(("reporting_unit_index", keys.token("unit", scope.reporting_unit)))
    if query.village is not None:
        filters.append(("village_index", keys.token("village", query.village)))
    for column in ("risk", "status"):
        value = getattr(query, column)
        if value is not None:
            filters.append((column, value))
    if len(filters) > 1:
        return None
    dimension, value = filters[0] if filters else ("", "")
    return (scope.street, dimension, value)


def kept_total(db: KeyedDb, scope: RowScope, query: LedgerQuery) -> int | None:
    """The page's total from `ledger_counts` (one row read), or None when it is not kept."""
    key = counted_filter(db.keys, scope, query)
    if key is None:
        return None
    found = db.execute(
        "SELECT n FROM {ledger_counts} WHERE street = ? AND dimension = ? AND value = ?", key
    )
    return int(found[0]["n"]) if found else 0


def ledger_page(
    db: KeyedDb,
    scope: RowScope,
    query: LedgerQuery,
    *,
    limit: int,
    offset: int = 0,
    ended_since: str | None = None,
) -> tuple[int, list[LedgerRow]]:
    """(rows matching in total, this page of rows), newest found first, opened."""
    where, params = _where(db.keys, scope, query, ended_since)
    if query.id_index is not None or query.name_index is not None:
        # A lookup: one minor's files, few, found through the blind index and put in ledger
        # order here. With the ORDER BY in the query SQLite (which keeps no statistics here)
        # walks the street's whole ledger in that order instead, filtering: a lookup then grew
        # with the store (x5 from 10k to 100k events, bench/scale.py, issue 23).
        found = db.execute(f"SELECT c.* FROM {{ledger_cases}} c WHERE {where}", params)
        found.sort(key=lambda r: str(r["case_id"]))
        found.sort(key=lambda r: str(r["found_on"]), reverse=True)
        count, rows = {"n": len(found)}, found[offset : offset + limit]
    else:
        kept = kept_total(db, scope, query)
        if kept is not None:
            count = {"n": kept}
        else:
            (count,) = db.execute(
                f"SELECT COUNT(*) AS n FROM {{ledger_cases}} c WHERE {where}", params
            )
        rows = db.execute(
            f"SELECT c.* FROM {{ledger_cases}} c WHERE {where} "
            "ORDER BY c.found_on DESC, c.case_id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
    held = _load_assignments(db, [r["case_id"] for r in rows])
    return int(count["n"]), [
        LedgerRow(plain_row(db.keys, r), tuple(held.get(r["case_id"], ()))) for r in rows
    ]


def ledger_rows(
    db: KeyedDb, scope: RowScope, query: LedgerQuery, *, limit: int, ended_since: str | None = None
) -> list[LedgerRow]:
    """Every matching row (up to `limit`), in ledger order: for exports."""
    return ledger_page(db, scope, query, limit=limit, ended_since=ended_since)[1]


# --- the columns of a ledger as people hand it over ----------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    # The fields of `domain.access.FIELDS` the column shows: a cell stays empty for a reader
    # not granted all of them on that file. `detail`: the column shows each category's
    # subtypes under that category's own field (`issues.<category>`).
    fields: tuple[str, ...]
    width: int = 12
    detail: bool = False


COLUMNS: Final = (
    Column("id", "档案编号", ("id",), 38),
    Column("found_on", "发现日期", ("found_on",), 12),
    Column("village", "村(社区)", ("village",), 18),
    Column("school", "学校", ("minor.school",), 18),
    Column("name", "姓名", ("minor.name",), 10),
    Column("id_number", "身份证号", ("minor.id_number",), 21),
    Column("gender", "性别", ("minor.gender",), 6),
    Column("age", "年龄", ("minor.date_of_birth",), 6),
    Column("categories", "问题类别", ("categories",), 18),
    Column("subtypes", "具体问题", (), 28, detail=True),
    Column("risk", "风险等级", ("risk",), 8),
    Column("source", "线索来源", ("found_by", "method"), 16),
    Column("assignments", "责任单位及保护职能", ("assignments",), 36),
    Column("status", "状态", ("status",), 8),
    Column("follow_ups", "随访次数", ("follow_ups",), 8),
    Column("updated_at", "最近更新", ("updated_at",), 17),
    Column("next_due", "下次截止", tuple(sorted(DEADLINE_FIELDS)), 12),
    Column("overdue", "逾期事项", tuple(sorted(DEADLINE_FIELDS)), 14),
)
HEADERS: Final = tuple(c.header for c in COLUMNS)


def _allows(column: Column, fields: frozenset[str]) -> bool:
    if column.detail:
        return any(f.startswith("issues.") for f in fields)
    return set(column.fields) <= fields


def export_columns(fields: frozenset[str]) -> tuple[Column, ...]:
    """The columns a reader granted `fields` (on some file of the export) gets."""
    return tuple(c for c in COLUMNS if _allows(c, fields))


def export_disclosure(
    row: LedgerRow, columns: Sequence[Column], fields: frozenset[str], *, identity: bool
) -> frozenset[str]:
    """What an export line discloses, as its access event records it: the fields of the
    non-empty cells; name, ID number and age as masks unless `identity` (full values)."""
    found: set[str] = set()
    for column in columns:
        if column.detail:
            found.update(f"issues.{c}" for c, _ in row.shown_issues(fields))
        elif _allows(column, fields):
            found.update(column.fields)
    if not identity:
        found = {_MASKED.get(f, f) for f in found}
    elif "minor.date_of_birth" in found:
        found = (found - {"minor.date_of_birth"}) | {"minor.date_of_birth:age"}
    return frozenset(found)


def _local_minute(text: str) -> str:
    return parse_stamp(text).astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def cells(
    row: LedgerRow,
    columns: Sequence[Column],
    fields: frozenset[str],
    *,
    now: datetime,
    consultation_deadline: timedelta,
    identity: tuple[str, str] | None = None,
) -> list[Any]:
    """One export line in Chinese: the row's values under `columns`, empty where `fields` (the
    reader's grant on this file) do not reach. `identity` is the full (name, ID number)
    fetched through the audited read path, when the export includes it."""
    r = row.row
    deadlines = row.deadlines(now, consultation_deadline)
    values: dict[str, Any] = {
        "id": r["case_id"],
        "found_on": r["found_on"],
        "village": r["village"],
        "school": r["school"],
        "name": identity[0] if identity else r["name_masked"],
        "id_number": identity[1] if identity else r["id_masked"],
        "gender": GENDER_LABELS[Gender(r["gender"])],
        "age": r["age"],
        "categories": "、".join(CATEGORY_LABELS[Category(c)] for c in row.categories),
        "subtypes": "、".join(subtype_label(c, s) for c, s in row.shown_issues(fields)),
        "risk": RISK_LABELS[RiskLevel(r["risk"])],
        "source": source_label(r),
        "assignments": "；".join(
            f"{a.unit}({PROTECTION_FUNCTION_LABELS[ProtectionFunction(a.function)]}"
            f"，{DUTY_STATE_LABELS[a.state(local_date(now))]})"
            for a in row.assignments
        ),
        "status": CASE_STATUS_LABELS[CaseStatus(r["status"])],
        "follow_ups": r["follow_up_count"],
        "updated_at": _local_minute(r["updated_at"]),
        "next_due": deadlines[0].due_on.isoformat() if deadlines else "",
        "overdue": "、".join(KIND_LABELS[d.kind] for d in deadlines if d.overdue),
    }
    return [values[c.key] if _allows(c, fields) else "" for c in columns]
