"""The compliance rules over every access (issue 15): pure, deterministic, incremental.

Input: the store's events in log order, as facts: access records (`records.record_of`: reads,
refused reads, refused commands), case-lifecycle facts (`CaseFact`: reported, assigned,
assignment ended, closed, reopened, and who acted on which file) and break-glass reviews.
`RuleEngine.feed(position, event)` folds one event and returns the findings it completes
(`Raised`); `RuleEngine.due(now)` the findings that the passing of time alone completes by
`now` (an unreviewed break-glass access, an export or curiosity window that has closed),
without changing the state. The engine's state is a dict of JSON values by key (`rows()`,
`from_rows()`): the evaluator stores the keys each batch changed with its position, so
incremental evaluation resumes where it stopped, and a re-run from position 0 is the same
fold. A finding's id derives from its rule and evidence (`findings.finding_id`), so the same
finding found twice is stored once.

Time is the log's own: each fact moves the engine's clock to its timestamp (never back), and
windows that closed before it are settled first. So the same events give the same findings
whatever the batch boundaries (tests/domain/test_compliance_rules.py: a hypothesis property,
re-run with threshold X over a random history == incremental evaluation with X from the start;
and for each rule a scenario that triggers it and a near miss that does not).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import DomainEvent

from domain.access import IDENTITY_FIELDS, BreakGlassReviewed
from domain.case import Case
from domain.compliance.config import RULE_IDS, RulesConfig
from domain.compliance.findings import Finding, finding_id
from domain.compliance.records import RECORD_TOPICS, AccessRecord, RecordKind, record_of
from domain.topics import topics_of


@dataclass(frozen=True)
class Rule:
    id: str
    zh: str
    en: str


RULES: Final = {
    r.id: r
    for r in (
        Rule(
            "repeated_refusals",
            "同一人在时间窗内多次被拒绝查阅或操作",
            "one person refused (reads or commands) count times within the window",
        ),
        Rule(
            "break_glass_unreviewed",
            "紧急访问在规定时限内未经合规复核",
            "a break-glass access not reviewed by a compliance auditor within the hours",
        ),
        Rule(
            "read_after_closure",
            "结案后由倒查人员和合规审计员以外的人员查阅档案",
            "a closed file read by anyone but investigators and compliance auditors",
        ),
        Rule(
            "bulk_browsing",
            "同一人在短时间内打开大量不同档案",
            "one person opening many distinct files within a short window",
        ),
        Rule(
            "after_hours",
            "非工作时间查阅档案(北京时间,可配置工作日和时段)",
            "a file read outside working hours (Asia/Shanghai; days and hours configurable)",
        ),
        Rule(
            "identity_export",
            "导出含完整身份信息的台账",
            "an export disclosing identity fields (every full-identity export)",
        ),
        Rule(
            "purpose_not_borne_out",
            "声明的使用目的与实际不符(如以“介入”为目的,但所在单位当时无未结的分派任务)",
            "a declared purpose not borne out (e.g. intervention without an open assignment "
            "of the reader's unit at the time)",
        ),
        Rule(
            "curiosity_browsing",
            "同一人反复查阅同一档案,期间本人无任何处置记录",
            "repeated reads of one file with no recorded action on it by that person",
        ),
    )
}
if tuple(RULES) != RULE_IDS:  # one list of rules: the configuration's and the descriptions'
    raise ImportError("domain.compliance.rules.RULES and config.RULE_IDS differ")


# --- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFact:
    """What the rules need of a case event: never its content."""

    position: int
    at: datetime
    case_id: UUID
    kind: str  # reported, assigned, assignment_ended, transferred, closed, reopened, action
    user: str
    street: str = ""
    unit: str = ""
    assignment_id: str = ""


@dataclass(frozen=True)
class ReviewFact:
    position: int
    at: datetime
    access_id: UUID


_ENDING: Final = ("AssignmentEnded", "AssignmentDeclined", "AssignmentResultReported")


def case_fact_of(position: int, event: DomainEvent) -> CaseFact | None:
    """The case fact of a stored case event, None for any other event."""
    name = type(event).__qualname__
    if not name.startswith("Case."):
        return None
    kind = name.removeprefix("Case.")
    by: dict[str, Any] = getattr(event, "by", None) or getattr(event, "reported_by", None) or {}
    common: dict[str, Any] = {
        "position": position,
        "at": event.timestamp,
        "case_id": event.originator_id,
        "user": str(by.get("user", "")),
    }
    if kind == "ClueReported":
        return CaseFact(kind="reported", street=str(getattr(event, "street", "")), **common)
    if kind == "UnitAssigned":
        return CaseFact(
            kind="assigned",
            unit=str(getattr(event, "unit", "")),
            assignment_id=str(getattr(event, "assignment_id", "")),
            **common,
        )
    if kind in _ENDING:
        return CaseFact(
            kind="assignment_ended",
            assignment_id=str(getattr(event, "assignment_id", "")),
            **common,
        )
    if kind == "Transferred":
        # The file moves to `to_street`; a transfer to another street ends the sending
        # street's open assignments inside the event (domain/case.py: no AssignmentEnded).
        return CaseFact(
            kind="transferred",
            street=str(getattr(event, "to_street", "")),
            **common,
        )
    if kind == "Closed":
        return CaseFact(kind="closed", **common)
    if kind == "Reopened":
        return CaseFact(kind="reopened", **common)
    return CaseFact(kind="action", **common)


# The case events' topics (every class nested in Case that is an event).
CASE_TOPICS: Final = topics_of(
    *(cls for cls in vars(Case).values() if isinstance(cls, type) and issubclass(cls, DomainEvent))
)
# Every topic the rules read.
RULE_TOPICS: Final = tuple(
    dict.fromkeys((*RECORD_TOPICS, *CASE_TOPICS, *topics_of(BreakGlassReviewed)))
)


# --- findings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raised:
    """A finding a rule completed: what `Finding` will be raised with."""

    rule: str
    evidence: tuple[int, ...]
    person: str
    role: str
    unit: str
    street: str
    case_ids: tuple[str, ...]
    window_start: float
    window_end: float
    detail: dict[str, Any]

    @property
    def id(self) -> UUID:
        return finding_id(self.rule, self.evidence)

    def finding(self) -> Finding:
        return Finding(
            rule=self.rule,
            evidence=list(self.evidence),
            person=self.person,
            role=self.role,
            unit=self.unit,
            street=self.street,
            case_ids=list(self.case_ids),
            window_start=datetime.fromtimestamp(self.window_start, UTC).isoformat(),
            window_end=datetime.fromtimestamp(self.window_end, UTC).isoformat(),
            detail=self.detail,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "rule": self.rule,
                "evidence": list(self.evidence),
                "person": self.person,
                "role": self.role,
                "unit": self.unit,
                "street": self.street,
                "case_ids": list(self.case_ids),
                "window_start": self.window_start,
                "window_end": self.window_end,
                "detail": self.detail,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Raised:
        data = json.loads(text)
        return cls(
            rule=data["rule"],
            evidence=tuple(data["evidence"]),
            person=data["person"],
            role=data["role"],
            unit=data["unit"],
            street=data["street"],
            case_ids=tuple(data["case_ids"]),
            window_start=data["window_start"],
            window_end=data["window_end"],
            detail=data["detail"],
        )


# --- the engine -------------------------------------------------------------------------------

# A curiosity window cites at most this many reads (its first), and counts them all: a file
# read thousands of times a day by one person keeps its state, and its finding, bounded.
CURIOSITY_EVIDENCE_MAX: Final = 100

# Who: [user, role, unit, street], as the finding names them.
Who = list[str]


def _who(record: AccessRecord) -> Who:
    return [record.user, record.role, record.unit, record.street]


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


class RuleEngine:
    """The rules' state and fold. Keys (JSON values):

    - `clock`: the latest instant seen (epoch seconds);
    - `case|<id>`: street, closed, open assignments {id: unit}, who was flagged reading it
      since its closure, and who was flagged for a purpose not borne out on which local day;
    - `rr|<user>`: refusals in the window; `bb|<user>`: {case: [position, at]} in the window;
      `ah|<user>`: the local day last flagged after hours;
    - `ie|<request>|<user>`, `cb|<user>|<case>`, `bg|<access>`: open windows, settled when
      the clock passes their end (kept in a heap, rebuilt on load).
    """

    def __init__(self, config: RulesConfig, rules: Iterable[str] | None = None) -> None:
        self.config = config
        self.rules = frozenset(config.enabled if rules is None else rules) & set(config.enabled)
        self.state: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self._clock = 0.0
        self._heap: list[tuple[float, str]] = []
        self._zone, self._days, self._start, self._end = config.working_hours()
        self._start_s = self._start.hour * 3600 + self._start.minute * 60 + self._start.second
        self._end_s = self._end.hour * 3600 + self._end.minute * 60 + self._end.second
        self._offsets: dict[int, float] = {}
        c = config
        self._rr_count, self._rr_window = (
            c.repeated_refusals.count,
            c.repeated_refusals.window_minutes * 60.0,
        )
        self._bg_after = c.break_glass_unreviewed.hours * 3600.0
        self._rac_exempt = frozenset(c.read_after_closure.exempt_roles)
        self._bb_count, self._bb_window = (
            c.bulk_browsing.distinct_cases,
            c.bulk_browsing.window_minutes * 60.0,
        )
        self._bb_exempt = frozenset(c.bulk_browsing.exempt_channels)
        self._ie_settle = float(c.identity_export.settle_seconds)
        self._pnb_purposes = frozenset(c.purpose_not_borne_out.purposes)
        self._pnb_roles = frozenset(c.purpose_not_borne_out.roles)
        self._cb_reads, self._cb_window = (
            c.curiosity_browsing.reads,
            c.curiosity_browsing.window_hours * 3600.0,
        )
        self._cb_exempt = frozenset(c.curiosity_browsing.exempt_roles)

    # --- state as rows ---

    @classmethod
    def from_rows(
        cls,
        config: RulesConfig,
        rows: Iterable[tuple[str, str]],
        rules: Iterable[str] | None = None,
    ) -> RuleEngine:
        engine = cls(config, rules)
        for key, value in rows:
            engine.state[key] = json.loads(value)
        engine._clock = float(engine.state.get("clock", 0.0))
        for key, entry in engine.state.items():
            expiry = engine._expiry(key, entry)
            if expiry is not None:
                engine._heap.append((expiry, key))
        heapq.heapify(engine._heap)
        return engine

    def take_changes(self) -> tuple[list[tuple[str, str]], list[str]]:
        """(key, JSON) of every key changed since the last call, and the keys removed."""
        self.state["clock"] = self._clock
        upserts = [(k, json.dumps(self.state[k])) for k in sorted(self.dirty) if k in self.state]
        removed = [k for k in sorted(self.dirty) if k not in self.state]
        self.dirty.clear()
        return upserts, removed

    def rows(self) -> Iterator[tuple[str, str]]:
        self.state["clock"] = self._clock
        for key in sorted(self.state):
            yield key, json.dumps(self.state[key])

    def _set(self, key: str, value: Any) -> None:
        self.state[key] = value
        self.dirty.add(key)

    def _drop(self, key: str) -> None:
        if self.state.pop(key, None) is not None:
            self.dirty.add(key)

    @property
    def clock(self) -> float:
        return self._clock

    # --- the fold ---

    def forget_case(self, case_id: UUID | str) -> None:
        """An erased file (issue 19): its state goes (street, units, open windows of reads on
        it), as a re-run from 0 would have none, its events being unreadable then."""
        self._drop(f"case|{case_id}")

    def feed(self, position: int, event: Any) -> list[Raised]:
        """Fold one stored event (any: those the rules do not read change nothing)."""
        record = record_of(position, event)
        if record is not None:
            return self.feed_record(record)
        if isinstance(event, BreakGlassReviewed):
            return self.feed_review(ReviewFact(position, event.timestamp, event.originator_id))
        fact = case_fact_of(position, event)
        if fact is not None:
            return self.feed_case(fact)
        return []

    def _advance(self, at: float) -> list[Raised]:
        raised: list[Raised] = []
        if at > self._clock:
            self._clock = at
            self.dirty.add("clock")
        clock = self._clock
        while self._heap and self._heap[0][0] < clock:
            expiry, key = heapq.heappop(self._heap)
            entry = self.state.get(key)
            if entry is None or self._expiry(key, entry) != expiry:
                continue  # stale: the window was settled or moved
            raised += self._settle(key, entry)
            self._drop(key)
        return raised

    def due(self, now: datetime) -> list[Raised]:
        """The findings the windows closed by `now` complete; the state is not changed (the
        next fact past them settles them, raising the same findings)."""
        limit = now.timestamp()
        raised: list[Raised] = []
        for expiry, key in sorted(self._heap):
            if expiry >= limit:
                break
            entry = self.state.get(key)
            if entry is not None and self._expiry(key, entry) == expiry:
                raised += self._settle(key, entry)
        return list({r.id: r for r in raised}.values())

    def _expiry(self, key: str, entry: Any) -> float | None:
        kind = key.split("|", 1)[0]
        if kind == "bg":
            return float(entry["at"]) + self._bg_after
        if kind == "ie":
            return float(entry["last"]) + self._ie_settle
        if kind == "cb":
            return float(entry["first"]) + self._cb_window
        return None

    def _settle(self, key: str, entry: Any) -> list[Raised]:
        kind = key.split("|", 1)[0]
        user, role, unit, street = entry["who"]
        if kind == "bg" and "break_glass_unreviewed" in self.rules:
            return [
                Raised(
                    "break_glass_unreviewed",
                    (entry["pos"],),
                    user,
                    role,
                    unit,
                    street,
                    _distinct([entry["case"]]),
                    entry["at"],
                    entry["at"] + self._bg_after,
                    {"hours": self.config.break_glass_unreviewed.hours},
                )
            ]
        if kind == "ie" and "identity_export" in self.rules:
            return [
                Raised(
                    "identity_export",
                    tuple(entry["pos"]),
                    user,
                    role,
                    unit,
                    street,
                    _distinct(entry["cases"]),
                    entry["first"],
                    entry["last"],
                    {"files": len(set(entry["cases"]))},
                )
            ]
        if kind == "cb" and "curiosity_browsing" in self.rules and entry["n"] >= self._cb_reads:
            case = key.rsplit("|", 1)[1]
            return [
                Raised(
                    "curiosity_browsing",
                    tuple(entry["pos"]),
                    user,
                    role,
                    unit,
                    street,
                    (case,),
                    entry["first"],
                    entry["last"],
                    {
                        "reads": entry["n"],
                        "threshold": self._cb_reads,
                        "window_hours": self.config.curiosity_browsing.window_hours,
                    },
                )
            ]
        return []

    def feed_review(self, review: ReviewFact) -> list[Raised]:
        raised = self._advance(review.at.timestamp())
        self._drop(f"bg|{review.access_id}")
        return raised

    def feed_case(self, fact: CaseFact) -> list[Raised]:
        raised = self._advance(fact.at.timestamp())
        key = f"case|{fact.case_id}"
        case: dict[str, Any] | None = self.state.get(key)
        if fact.kind == "reported" or case is None:
            case = {"street": fact.street, "closed": False, "units": {}, "rac": [], "pnb": {}}
        if fact.kind == "assigned":
            case["units"][fact.assignment_id] = fact.unit
        elif fact.kind == "assignment_ended":
            case["units"].pop(fact.assignment_id, None)
        elif fact.kind == "transferred":
            if fact.street != case["street"]:
                case["units"] = {}  # the transfer ended every open assignment (domain/case.py)
            case["street"] = fact.street
        elif fact.kind in ("closed", "reopened"):
            case["closed"] = fact.kind == "closed"
            case["rac"] = []
        self._set(key, case)
        if fact.user:
            # Any recorded action on the file by that person bears their reads out.
            self._drop(f"cb|{fact.user}|{fact.case_id}")
        return raised

    def feed_record(self, record: AccessRecord) -> list[Raised]:
        at = record.at.timestamp()
        raised = self._advance(at)
        rules = self.rules
        if record.kind is not RecordKind.READ:
            if "repeated_refusals" in rules:
                raised += self._refused(record, at)
            return raised
        case_id = str(record.case_id) if record.case_id is not None else ""
        if record.break_glass and "break_glass_unreviewed" in rules:
            glass = {"pos": record.position, "at": at, "who": _who(record), "case": case_id}
            key = f"bg|{record.event_id}"
            self._set(key, glass)
            heapq.heappush(self._heap, (at + self._bg_after, key))
        if "after_hours" in rules:
            raised += self._after_hours(record, at)
        exported = record.channel == "export" and IDENTITY_FIELDS.intersection(record.fields)
        if exported and "identity_export" in rules:
            self._export(record, at, case_id)
        if not case_id:
            return raised
        case: dict[str, Any] | None = self.state.get(f"case|{case_id}")
        if case is not None:
            if "read_after_closure" in rules:
                raised += self._after_closure(record, at, case_id, case)
            if "purpose_not_borne_out" in rules:
                raised += self._purpose(record, at, case_id, case)
        if "bulk_browsing" in rules and not self._sanctioned_list_read(record):
            raised += self._bulk(record, at, case_id)
        if "curiosity_browsing" in rules and record.role not in self._cb_exempt:
            key = f"cb|{record.user}|{case_id}"
            entry: dict[str, Any] | None = self.state.get(key)
            if entry is None:
                entry = {"pos": [], "n": 0, "first": at, "last": at, "who": _who(record)}
                heapq.heappush(self._heap, (at + self._cb_window, key))
            entry["n"] += 1
            if len(entry["pos"]) < CURIOSITY_EVIDENCE_MAX:
                entry["pos"].append(record.position)
            entry["last"] = at
            self._set(key, entry)
        return raised

    def _refused(self, record: AccessRecord, at: float) -> list[Raised]:
        key = f"rr|{record.user}"
        kept = [r for r in self.state.get(key, []) if r[1] >= at - self._rr_window]
        kept.append([record.position, at, str(record.case_id or "")])
        if len(kept) < self._rr_count:
            self._set(key, kept)
            return []
        self._drop(key)
        return [
            Raised(
                "repeated_refusals",
                tuple(r[0] for r in kept),
                record.user,
                record.role,
                record.unit,
                record.street,
                _distinct(r[2] for r in kept),
                kept[0][1],
                at,
                {
                    "refusals": len(kept),
                    "threshold": self._rr_count,
                    "window_minutes": self.config.repeated_refusals.window_minutes,
                },
            )
        ]

    def _after_hours(self, record: AccessRecord, at: float) -> list[Raised]:
        # The zone's offset, looked up once per UTC hour (zone offsets change on the hour).
        hour = int(at // 3600)
        offset = self._offsets.get(hour)
        if offset is None:
            found = record.at.astimezone(self._zone).utcoffset()
            offset = found.total_seconds() if found is not None else 0.0
            self._offsets[hour] = offset
        local_seconds = at + offset
        weekday = int(local_seconds // 86400 + 3) % 7 + 1  # 1970-01-01 was a Thursday (4)
        in_day = local_seconds % 86400
        if weekday in self._days and self._start_s <= in_day < self._end_s:
            return []
        local = record.at.astimezone(self._zone)
        key, day = f"ah|{record.user}", local.date().isoformat()
        if self.state.get(key) == day:
            return []  # one finding per person and local day: its first read
        self._set(key, day)
        return [
            Raised(
                "after_hours",
                (record.position,),
                record.user,
                record.role,
                record.unit,
                record.street,
                _distinct([str(record.case_id or "")]),
                at,
                at,
                {"local_time": local.strftime("%Y-%m-%d %H:%M"), "weekday": local.isoweekday()},
            )
        ]

    def _export(self, record: AccessRecord, at: float, case_id: str) -> None:
        key = f"ie|{record.request_id}|{record.user}"
        entry = self.state.get(key)
        if entry is None:
            entry = {"pos": [], "cases": [], "first": at, "last": at, "who": _who(record)}
        entry["pos"].append(record.position)
        entry["cases"].append(case_id)
        entry["last"] = max(entry["last"], at)
        self._set(key, entry)
        heapq.heappush(self._heap, (entry["last"] + self._ie_settle, key))

    def _after_closure(
        self, record: AccessRecord, at: float, case_id: str, case: dict[str, Any]
    ) -> list[Raised]:
        if not case["closed"] or record.role in self._rac_exempt or record.user in case["rac"]:
            return []
        case["rac"].append(record.user)  # one finding per person and closure
        self._set(f"case|{case_id}", case)
        return [
            Raised(
                "read_after_closure",
                (record.position,),
                record.user,
                record.role,
                record.unit,
                record.street,
                (case_id,),
                at,
                at,
                {"channel": record.channel},
            )
        ]

    def _purpose(
        self, record: AccessRecord, at: float, case_id: str, case: dict[str, Any]
    ) -> list[Raised]:
        if record.purpose not in self._pnb_purposes or record.role not in self._pnb_roles:
            return []
        held = record.street == case["street"] and record.unit in case["units"].values()
        if held:
            return []
        day = record.at.astimezone(self._zone).date().isoformat()
        if case["pnb"].get(record.user) == day:
            return []  # one finding per person, file and local day
        case["pnb"][record.user] = day
        self._set(f"case|{case_id}", case)
        return [
            Raised(
                "purpose_not_borne_out",
                (record.position,),
                record.user,
                record.role,
                record.unit,
                record.street,
                (case_id,),
                at,
                at,
                {"purpose": record.purpose, "rule": record.rule},
            )
        ]

    def _sanctioned_list_read(self, record: AccessRecord) -> bool:
        """A compliance report's, worklist's or export's read (configured channels), or a read
        of only the file's access log: no browsing of files."""
        return record.channel in self._bb_exempt or set(record.fields) == {"access_log"}

    def _bulk(self, record: AccessRecord, at: float, case_id: str) -> list[Raised]:
        key = f"bb|{record.user}"
        opened: dict[str, list[float]] = self.state.get(key) or {}
        # Files in the order of their latest read (JSON keeps it): those read before the
        # window are at the front.
        cutoff = at - self._bb_window
        while opened:
            oldest = next(iter(opened))
            if opened[oldest][1] >= cutoff:
                break
            del opened[oldest]
        opened.pop(case_id, None)  # re-inserted last: the latest read of each file counts
        opened[case_id] = [record.position, at]
        if len(opened) < self._bb_count:
            self._set(key, opened)
            return []
        self._drop(key)
        return [
            Raised(
                "bulk_browsing",
                tuple(sorted(int(v[0]) for v in opened.values())),
                record.user,
                record.role,
                record.unit,
                record.street,
                tuple(opened),
                min(v[1] for v in opened.values()),
                at,
                {
                    "files": len(opened),
                    "threshold": self._bb_count,
                    "window_minutes": self.config.bulk_browsing.window_minutes,
                },
            )
        ]
