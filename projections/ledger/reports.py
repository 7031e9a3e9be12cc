"""Quarterly reports (季度报表) for a street, as of any date, re-issuable exactly.

The `reports` view keeps the history of what a report counts, one row per event that changed a
file's status, risk or issues (`report_history`), stamped with the event's own recorded time.
A report as of a date counts each file as it stood at the end of that day (local time), so a
past quarter's report comes out the same however the files changed since: events are never
altered, and later ones carry later times.

Counted: files by category, subtype, village, risk and status; files new in the quarter
(reported, i.e. recorded, between the quarter's first day and the as-of date) and closed in it.
A file with issues in two categories counts once under each category, once in every total.
The units' duty cycle (issue 14, `report_duty`: one row per assignment event, its instant, the
assignment's id and due date, no text): assignments made, signed for (签收), declined and with
their result reported (办结反馈) in the quarter, and those open and past their due date at the
end of the as-of day (`QuarterlyReport.assignments`).

Nothing that identifies a child or reveals a sensitive subtype is in clear (`projections.sealed`):
the village is a keyed token (`village_index`, for the village filter and the count by village)
beside its sealed value (`village_sealed`, opened once per village for the report's labels);
`issues` holds the subtypes of the mental-health and unlawful-harm categories as keyed tokens,
counted by token and named through the taxonomy. Proven by
`tests/projections/test_readmodel_privacy.py`; the counts by `tests/projections/test_ledger_api.py`.

An erased file (issue 19) leaves every table (a rebuild could not count it: its events are
unreadable), and `report_erased` keeps its tombstone (`projections.tombstones`): a past
quarter's report issued again after an erasure counts one file fewer, and the signed report
issued before it stays what it was. Proven by tests/retention/test_tombstones.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Final

from domain.retention import KeyScope
from domain.taxonomy import (
    CASE_STATUS_LABELS,
    CATEGORY_LABELS,
    PROTECTION_FUNCTION_LABELS,
    RISK_LABELS,
    SUBTYPES,
    CaseStatus,
)
from domain.tombstones import ERASURE_TOPICS, erasure_split
from projections.follower import Batch, Db, Dialect, Row, View
from projections.ledger.quarters import Quarter, end_of_day_stamp, stamp, start_of_day
from projections.ledger.view import CASE_TOPICS
from projections.sealed import KeyedDb, ReadModelKeys
from projections.tombstones import bury, delete_rows, erased_among, erases, scoped, tombstone_ddl

_STATE: Final = ("status", "risk", "issues")
# A history row is written when any of these changes: the counted state, or the place (a
# transfer or a corrected village, issue 17).
_KEPT: Final = (*_STATE, "street", "village_index")
_CASE_COLUMNS: Final = (
    "case_id",
    "street",
    "village_index",
    "village_sealed",
    "status",
    "risk",
    "issues",
)
_HISTORY_COLUMNS: Final = (
    "case_id",
    "version",
    "at",
    "event",
    "street",
    "village_index",
    "village_sealed",
    "status",
    "risk",
    "issues",
)
# The sealed village is the same value in both tables: one label for its associated data.
_VILLAGE: Final = "report_village"
ERASED_TABLE: Final = "report_erased"


class ReportsView(View):
    name = "reports"
    tables = (
        "report_cases",
        "report_history",
        "report_duty",
        "report_interventions",
        ERASED_TABLE,
    )
    # Issue 19: an erased file leaves the counts (a rebuild could not count it either).
    topics = (*CASE_TOPICS, *ERASURE_TOPICS)

    def __init__(self, keys: ReadModelKeys) -> None:
        self.keys = keys

    def create_statements(self, dialect: Dialect) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS {report_cases} (case_id TEXT PRIMARY KEY, "
            "street TEXT NOT NULL, village_index TEXT NOT NULL, village_sealed TEXT NOT NULL, "
            "status TEXT NOT NULL, risk TEXT NOT NULL, issues TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {report_history} (case_id TEXT NOT NULL, "
            "version BIGINT NOT NULL, at TEXT NOT NULL, event TEXT NOT NULL, "
            "street TEXT NOT NULL, village_index TEXT NOT NULL, village_sealed TEXT NOT NULL, "
            "status TEXT NOT NULL, risk TEXT NOT NULL, issues TEXT NOT NULL, "
            "PRIMARY KEY (case_id, version))",
            "CREATE INDEX IF NOT EXISTS report_history_street_at ON {report_history} (street, at)",
            "CREATE TABLE IF NOT EXISTS {report_duty} (case_id TEXT NOT NULL, "
            "version BIGINT NOT NULL, at TEXT NOT NULL, event TEXT NOT NULL, "
            "street TEXT NOT NULL, village_index TEXT NOT NULL, assignment_id TEXT NOT NULL, "
            "due_on TEXT NOT NULL, PRIMARY KEY (case_id, version))",
            "CREATE INDEX IF NOT EXISTS report_duty_street_at ON {report_duty} (street, at)",
            "CREATE INDEX IF NOT EXISTS report_duty_assignment ON {report_duty} (assignment_id)",
            # Issue 17: each intervention's instant and protection function (六大保护), no text.
            "CREATE TABLE IF NOT EXISTS {report_interventions} (case_id TEXT NOT NULL, "
            "version BIGINT NOT NULL, at TEXT NOT NULL, street TEXT NOT NULL, "
            "village_index TEXT NOT NULL, function TEXT NOT NULL, PRIMARY KEY (case_id, version))",
            "CREATE INDEX IF NOT EXISTS report_interventions_street_at ON {report_interventions} "
            "(street, at)",
            tombstone_ddl(ERASED_TABLE),
        ]

    def apply(self, db: Db, batch: Batch) -> None:
        events, erasures = erasure_split(batch.events)
        if events:
            self._apply(db, events)
        gone = [f for f in erasures if f.scope == KeyScope.CASE]
        if gone:
            for table in self.tables[:-1]:
                delete_rows(db, table, "case_id", scoped(gone, KeyScope.CASE))
            bury(db, ERASED_TABLE, gone)

    def erases(self, batch: Batch) -> bool:
        return erases(batch.events)

    def _apply(self, db: Db, events: Sequence[Any]) -> None:
        case_ids = sorted({str(e.originator_id) for e in events})
        current: dict[str, Row] = {}
        for i in range(0, len(case_ids), 400):
            chunk = case_ids[i : i + 400]
            for row in db.execute(
                f"SELECT * FROM {{report_cases}} WHERE case_id IN ({db.placeholders(len(chunk))})",
                chunk,
            ):
                current[row["case_id"]] = row
        history: list[list[Any]] = []
        duty: list[list[Any]] = []
        interventions: list[list[Any]] = []
        erased: set[str] | None = None  # looked up only if a file is missing
        for event in events:
            case_id, kind, data = str(event.originator_id), type(event).__name__, vars(event)
            if kind != "ClueReported" and case_id not in current:
                if erased is None:
                    erased = erased_among(db, ERASED_TABLE, case_ids)
                if case_id in erased:
                    continue  # stored just before its key went: the file is erased
            if kind == "ClueReported":
                village = data["minor"]["village"]
                state: Row = {
                    "case_id": case_id,
                    "street": data["street"],
                    "village_index": self.keys.token("village", village),
                    "village_sealed": self.keys.seal(_VILLAGE, case_id, {"village": village}),
                    "status": CaseStatus.AWAITING_CONSULTATION.value,
                    "risk": data["risk"],
                    "issues": self._issues(data["issues"]),
                }
                before: tuple[Any, ...] | None = None
            else:
                state = current[case_id]
                before = tuple(state[k] for k in _KEPT)
                self._fold(state, kind, data)
            current[case_id] = state
            step = _duty_step(kind, data)
            if step is not None:
                duty.append(
                    [case_id, event.originator_version, stamp(data["timestamp"]), step[0],
                     state["street"], state["village_index"], step[1], step[2]]
                )  # fmt: skip
            if kind == "InterventionRecorded":
                interventions.append(
                    [case_id, event.originator_version, stamp(data["timestamp"]),
                     state["street"], state["village_index"], data["function"]]
                )  # fmt: skip
            if before is None or before != tuple(state[k] for k in _KEPT):
                row = {**state, "version": event.originator_version, "event": kind}
                row["at"] = stamp(data["timestamp"])
                history.append([row[c] for c in _HISTORY_COLUMNS])
        db.insert(
            "report_cases",
            _CASE_COLUMNS,
            [[current[c][k] for k in _CASE_COLUMNS] for c in case_ids if c in current],
            key=("case_id",),
        )
        db.insert("report_history", _HISTORY_COLUMNS, history)
        db.insert("report_duty", _DUTY_COLUMNS, duty)
        db.insert(
            "report_interventions",
            ("case_id", "version", "at", "street", "village_index", "function"),
            interventions,
        )

    def _issues(self, issues: list[dict[str, str]]) -> str:
        return self.keys.issues([(i["category"], i["subtype"]) for i in issues])

    def _fold(self, state: Row, kind: str, data: dict[str, Any]) -> None:
        # The same transitions as the Case aggregate's, for the three values a report counts.
        if kind == "Reclassified":
            state["issues"], state["risk"] = self._issues(data["issues"]), data["risk"]
        elif kind == "RiskAssessed":
            state["risk"] = data["level"]
        elif kind in ("ConsultationHeld", "UnitAssigned"):
            state["status"] = CaseStatus.INTERVENING.value
        elif kind == "Closed":
            state["status"] = CaseStatus.CLOSED.value
        elif kind == "Reopened":
            state["status"] = CaseStatus.AWAITING_CONSULTATION.value
        elif kind == "Transferred":
            # Issue 17: the file counts in the receiving street and village from then on.
            state["street"] = data["to_street"]
            self._move(state, data["to_village"])
        elif kind == "DetailsCorrected":
            for change in data["changes"]:
                if change["field"] == "village":
                    self._move(state, change["new"])

    def _move(self, state: Row, village: str) -> None:
        state["village_index"] = self.keys.token("village", village)
        state["village_sealed"] = self.keys.seal(_VILLAGE, state["case_id"], {"village": village})


# The duty cycle's events, as `report_duty` names them; `case_closed` ends every open one.
_DUTY_EVENTS: Final = {
    "UnitAssigned": "assigned",
    "AssignmentDeclined": "declined",
    "AssignmentResultReported": "result_reported",
    "AssignmentEnded": "ended",
}
_DUTY_COLUMNS: Final = (
    "case_id",
    "version",
    "at",
    "event",
    "street",
    "village_index",
    "assignment_id",
    "due_on",
)


def _duty_step(kind: str, data: dict[str, Any]) -> tuple[str, str, str] | None:
    """(event, assignment id, due date) of a duty-cycle event for `report_duty`, else None."""
    if kind == "Closed":
        return ("case_closed", "", "")
    if kind == "AssignmentAcknowledged":
        # Version 1 (upcast, `receipt` True) was the unit client's receipt: not signed for.
        if data.get("receipt", False):
            return None
        return ("signed_for", data["assignment_id"], "")
    if kind in _DUTY_EVENTS:
        return (_DUTY_EVENTS[kind], data["assignment_id"], data.get("due_on", ""))
    return None


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    code: str
    label: str
    count: int
    category: str | None = None  # for subtypes: (category, subtype) identifies one

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"code": self.code, "label": self.label, "count": self.count}
        if self.category is not None:
            found["category"] = self.category
        return found


@dataclass(frozen=True)
class QuarterlyReport:
    street: str
    village: str | None
    quarter: Quarter
    as_of: date
    cutoff: str
    files: int
    new_in_quarter: int
    closed_in_quarter: int
    by_category: tuple[Count, ...]
    by_subtype: tuple[Count, ...]
    by_village: tuple[Count, ...]
    by_risk: tuple[Count, ...]
    by_status: tuple[Count, ...]
    assignments: tuple[Count, ...] = ()
    # Issue 17: interventions recorded in the quarter by protection function (六大保护), and
    # the overdue counts at the end of the as-of day (assignments past due; ledger submissions
    # missed, filled in by the caller from the submissions, `domain.submissions`).
    interventions: tuple[Count, ...] = ()
    overdue: tuple[Count, ...] = ()
    # COVERAGE (issue 17, the `screening` part): visit coverage (`visit_coverage(db, street,
    # period)`) and guardianship-letter coverage (`letter_coverage(...)`) of
    # projections/screening/ are wired here at merge: one Count per figure, e.g.
    # Count("visited", "已走访", n). Empty until then.
    coverage: tuple[Count, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "street": self.street,
            "village": self.village,
            "quarter": self.quarter.code,
            "quarter_label": self.quarter.label,
            "period": {
                "start": self.quarter.start.isoformat(),
                "end": self.quarter.end.isoformat(),
            },
            "as_of": self.as_of.isoformat(),
            "counted_until": self.cutoff,
            "files": self.files,
            "new_in_quarter": self.new_in_quarter,
            "closed_in_quarter": self.closed_in_quarter,
            "by_category": [c.as_dict() for c in self.by_category],
            "by_subtype": [c.as_dict() for c in self.by_subtype],
            "by_village": [c.as_dict() for c in self.by_village],
            "by_risk": [c.as_dict() for c in self.by_risk],
            "by_status": [c.as_dict() for c in self.by_status],
            "assignments": [c.as_dict() for c in self.assignments],
            "interventions_by_function": [c.as_dict() for c in self.interventions],
            "overdue": [c.as_dict() for c in self.overdue],
            "coverage": [c.as_dict() for c in self.coverage],
        }


def quarterly_report(
    db: KeyedDb, street: str, as_of: date, *, village: str | None = None, cutoff: str | None = None
) -> QuarterlyReport:
    """The report of the quarter holding `as_of`, counting what was recorded before the end of
    that day (or before `cutoff`, a stamp, when given: for re-issuing at an exact instant)."""
    until = cutoff or end_of_day_stamp(as_of)
    quarter = Quarter.of(as_of)
    since = stamp(start_of_day(quarter.start))
    place, params = "street = ?", [street]
    if village is not None:
        place += " AND village_index = ?"
        params.append(db.keys.token("village", village))
    # Each file's latest row before `until`, wherever it was then, kept if it was here: a file
    # transferred out (issue 17) counts in the receiving street only, from its transfer on.
    outer = place.replace("street", "h.street").replace("village_index", "h.village_index")
    latest = db.execute(
        "SELECT h.* FROM {report_history} h JOIN ("
        "SELECT case_id, MAX(version) AS v FROM {report_history} WHERE case_id IN ("
        f"SELECT case_id FROM {{report_history}} WHERE {place} AND at < ?) AND at < ? "
        f"GROUP BY case_id) last ON h.case_id = last.case_id AND h.version = last.v WHERE {outer}",
        [*params, until, until, *params],
    )
    (new,) = db.execute(
        f"SELECT COUNT(*) AS n FROM {{report_history}} WHERE {place} "
        "AND event = 'ClueReported' AND at >= ? AND at < ?",
        [*params, since, until],
    )
    (closed,) = db.execute(
        f"SELECT COUNT(DISTINCT case_id) AS n FROM {{report_history}} WHERE {place} "
        "AND event = 'Closed' AND at >= ? AND at < ?",
        [*params, since, until],
    )
    categories: Counter[str] = Counter()
    subtypes: Counter[tuple[str, str]] = Counter()
    villages: Counter[str] = Counter()
    village_names: dict[str, str] = {}
    risks: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for row in latest:
        issues = db.keys.issue_pairs(row["issues"])
        categories.update({c for c, _ in issues})
        subtypes.update(issues)
        token = row["village_index"]
        if token not in village_names:
            sealed = db.keys.open(_VILLAGE, row["case_id"], row["village_sealed"])
            village_names[token] = str(sealed["village"])
        villages[village_names[token]] += 1
        risks[row["risk"]] += 1
        statuses[row["status"]] += 1
    duty = _duty_counts(db, street, village, since=since, until=until, as_of=as_of)
    return QuarterlyReport(
        street=street,
        village=village,
        quarter=quarter,
        as_of=as_of,
        cutoff=until,
        files=len(latest),
        new_in_quarter=int(new["n"]),
        closed_in_quarter=int(closed["n"]),
        by_category=tuple(
            Count(str(c), label, categories[str(c)]) for c, label in CATEGORY_LABELS.items()
        ),
        by_subtype=tuple(
            Count(code, label, subtypes[(str(c), code)], category=str(c))
            for c, codes in SUBTYPES.items()
            for code, label in codes.items()
        ),
        by_village=tuple(Count(v, v, n) for v, n in sorted(villages.items())),
        by_risk=tuple(Count(str(r), label, risks[str(r)]) for r, label in RISK_LABELS.items()),
        by_status=tuple(
            Count(str(s), label, statuses[str(s)]) for s, label in CASE_STATUS_LABELS.items()
        ),
        assignments=duty,
        interventions=_intervention_counts(db, street, village, since=since, until=until),
        overdue=(Count("assignments", OVERDUE_LABELS["assignments"], duty[-1].count),),
    )


def with_missed_submissions(report: QuarterlyReport, due_dates: list[str]) -> QuarterlyReport:
    """The report with the count of the street's ledger submissions missed (issue 17,
    `domain.submissions.LedgerSubmissionMissed`) whose due date lies in the quarter up to the
    as-of date, among its overdue counts. `due_dates`: the facts' `due_on` (YYYY-MM-DD)."""
    first, last = report.quarter.start.isoformat(), report.as_of.isoformat()
    missed = sum(1 for d in due_dates if first <= d <= last)
    kept = tuple(c for c in report.overdue if c.code != "submissions")
    counted = Count("submissions", OVERDUE_LABELS["submissions"], missed)
    return replace(report, overdue=(*kept, counted))


OVERDUE_LABELS: Final = {
    "assignments": "逾期未办结交办任务",
    "submissions": "逾期未报送台账",
}


def _intervention_counts(
    db: KeyedDb, street: str, village: str | None, *, since: str, until: str
) -> tuple[Count, ...]:
    """Interventions recorded in [since, until) by protection function, every function listed
    (0 when none), in the plan's order (issue 17)."""
    place, params = "street = ?", [street]
    if village is not None:
        place += " AND village_index = ?"
        params.append(db.keys.token("village", village))
    counted = {
        str(row["function"]): int(row["n"])
        for row in db.execute(
            f"SELECT function, COUNT(*) AS n FROM {{report_interventions}} WHERE {place} "
            "AND at >= ? AND at < ? GROUP BY function",
            [*params, since, until],
        )
    }
    return tuple(
        Count(str(f), label, counted.get(str(f), 0))
        for f, label in PROTECTION_FUNCTION_LABELS.items()
    )


DUTY_COUNT_LABELS: Final = {
    "assigned": "本季度交办",
    "signed_for": "本季度签收",
    "declined": "本季度退回",
    "result_reported": "本季度办结反馈",
    "overdue": "逾期未办结",
}


def _duty_counts(
    db: KeyedDb, street: str, village: str | None, *, since: str, until: str, as_of: date
) -> tuple[Count, ...]:
    """The duty cycle's counts: events in [since, until), and assignments made before `until`,
    not ended before it (by a decline, a result, an end or the file's closure) and due before
    `as_of` (overdue at the end of that day)."""
    place, params = "a.street = ?", [street]
    if village is not None:
        place += " AND a.village_index = ?"
        params.append(db.keys.token("village", village))
    counted = {
        str(row["event"]): int(row["n"])
        for row in db.execute(
            f"SELECT a.event, COUNT(*) AS n FROM {{report_duty}} a WHERE {place} "
            "AND a.at >= ? AND a.at < ? GROUP BY a.event",
            [*params, since, until],
        )
    }
    (overdue,) = db.execute(
        f"SELECT COUNT(*) AS n FROM {{report_duty}} a WHERE {place} AND a.event = 'assigned' "
        "AND a.at < ? AND a.due_on < ? "
        "AND NOT EXISTS (SELECT 1 FROM {report_duty} e WHERE e.assignment_id = a.assignment_id "
        "AND e.event IN ('declined', 'result_reported', 'ended') AND e.at < ?) "
        "AND NOT EXISTS (SELECT 1 FROM {report_duty} e WHERE e.case_id = a.case_id "
        "AND e.event = 'case_closed' AND e.at >= a.at AND e.at < ?)",
        [*params, until, as_of.isoformat(), until, until],
    )
    counted["overdue"] = int(overdue["n"])
    return tuple(
        Count(code, label, counted.get(code, 0)) for code, label in DUTY_COUNT_LABELS.items()
    )
