"""The investigation report's document: one plain dict, the single source of its three forms
(html, pdf, json: `gateway.reports.render`).

Shape (`REPORT_DOCUMENT` names its version; `docs/specs/report.md` describes every member):

    {"document": "casetrail-investigation-report/v1",
     "investigation": {id, kind, incident_on, opened_at, opened_by, investigators,
                       orders: [{id, case_id, investigator, covers, issued_at, expires_at,
                                 revoked}]},
     "cases": [{case_id, unreadable: str|None,
                timeline: [{at, position, kind, label_zh, lane, user, unit, detail_zh}],
                knowledge: {case_id, as_of, facts: [{fact, label_zh, known_by: [{user, unit,
                            role, first_at, how, position}]}]},
                deadlines: [{deadline, label_zh, due_at, done_at, status, unit, user}]}],
     "findings": [{duty, unit, person, determination, evidence, note, by, at}],
     "rectifications": [{item_id, item, owner, due_on, completed_on, status}],
     "integrity": {status: intact|tampered|unavailable, statement_zh, checked_at,
                   checkpoint: {seq, size, root, time, key_id}|None,
                   cases: [{case_id, events, included, problems}]},
     "generated_at", "generated_by": {user, role, unit}}

What it leaves out on purpose: the minor's name and ID number (the report is about who knew
what and when; the investigation holds the identity), and the free text of case events (the
timeline names what happened, the case read shows what was written).

The integrity statement needs no decryption: every stored event of each case's stream (the
stored records as `gather` read them for the analyses, so the stream is read once; read again
here, without decrypting, only for a case whose history could not be gathered) is
looked up in the Merkle log and its leaf recomputed from the stored bytes; the root of the
latest signed checkpoint is then recomputed from those leaves and the stored nodes beside them
(`_root_with`: the inclusion proofs of all of them at once, each node read once, in one query,
the nodes named beforehand by index arithmetic, `_nodes_beside`) and must equal the signed
root. When it does not, each event's own inclusion proof (as
`gateway.evidence.documents.checked_inclusion_proof` checks one) names the events that differ.
A missing version, an event not in the log or one whose bytes changed makes the statement say
the case was TAMPERED (篡改), naming the store positions. The analyses of a case whose events
no longer decrypt are replaced by a note instead of failing the report.

Cost (issue 13's benchmark, `bench/report.py`: at most 1.5 times decrypting and decoding the
case's events): the timeline's rows are built straight from the gathered steps
(`timeline_rows`, equal to the rows of the workbench's full entries), and the document is
built with the cyclic garbage collector paused (`gateway.reports.collector`).

Proven by tests/reports/test_document.py (the shape, from a real store; a tampered case event
makes the statement say so, on SQLite and PostgreSQL), tests/reports/test_integrity_root.py and
tests/reports/test_timeline_rows.py.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Protocol
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.application import CaseTrail
from domain.investigations import Investigation
from domain.quarters import local_date
from gateway.evidence.documents import EvidenceUnavailable
from gateway.evidence.maintainer import Evidence, TreeInconsistent
from gateway.reports import collector
from gateway.store.eventstore import EventIntegrityError, KeyMismatchError
from projections import investigation as analyses
from projections.evidence.checkpoints import Checkpoint, key_id
from projections.evidence.log import encode_leaf, fetch_reader
from projections.evidence.merkle import (
    NodeReader,
    inclusion_proof,
    leaf_hash,
    node_hash,
    split_point,
    verify_inclusion,
)
from projections.investigation.history import CASE_TOPICS
from projections.investigation.labels import KIND_LABELS
from projections.investigation.timeline import ACTOR_FIELD, RISK_LABEL, STATUS_LABEL

REPORT_DOCUMENT: Final = "casetrail-investigation-report/v1"
# Only the case file's own topics are read: an event of a case stream stored under any other
# topic leaves a gap in its versions, which the statement reports as tampering.
_CASE_TOPICS: Final = tuple(sorted(CASE_TOPICS))
_SCAN_BATCH: Final = 1000


class Analysis(Protocol):
    """What the report shows of one case, from the analyses of issue 13 (`GET
    /v1/cases/{id}/timeline`, `/knowledge`, `/deadlines`). Each returns the report's shape."""

    def timeline(self, case_id: UUID) -> list[dict[str, Any]]: ...

    def knowledge(self, case_id: UUID) -> dict[str, Any]: ...

    def deadlines(self, case_id: UUID) -> list[dict[str, Any]]: ...


# --- the document ----------------------------------------------------------------------------


def build_document(
    application: CaseTrail,
    evidence: Evidence,
    investigation: Investigation,
    *,
    generated_by: dict[str, str],
    consultation_due: timedelta = timedelta(hours=24),
    analysis: Analysis | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """The report document of `investigation`. The caller has recorded the access already
    (`gateway.http.reader.AuditedReader.investigation_report`, or the CLI). `analysis`:
    issue 13's (`CaseAnalysis`) unless another is given. Built with the cyclic garbage
    collector paused (`gateway.reports.collector`)."""
    with collector.paused():
        return _build_document(
            application,
            evidence,
            investigation,
            generated_by=generated_by,
            consultation_due=consultation_due,
            analysis=analysis,
            now=now,
        )


def _build_document(
    application: CaseTrail,
    evidence: Evidence,
    investigation: Investigation,
    *,
    generated_by: dict[str, str],
    consultation_due: timedelta,
    analysis: Analysis | None,
    now: Callable[[], datetime],
) -> dict[str, Any]:
    case_ids = [UUID(c) for c in investigation.case_ids]
    analysis = analysis or CaseAnalysis(application, now=now(), consultation_due=consultation_due)
    cases = [_case_section(analysis, case_id) for case_id in case_ids]
    # The case streams as the analyses gathered them (read once); a case whose history could
    # not be gathered (an event no longer decrypts) is read again, without decrypting.
    stored = getattr(analysis, "stored", None)
    scan = CaseStreams.scan(application, case_ids, known=stored)
    integrity = integrity_statement(evidence, scan)
    for case in cases:
        if case["unreadable"]:
            case["knowledge"]["as_of"] = integrity.get("checked_at")
    # A rectification's day is the street office's (UTC+8): a UTC date is a day behind there
    # from 00:00 to 08:00.
    today = local_date(now())
    return {
        "document": REPORT_DOCUMENT,
        "investigation": _investigation_section(investigation),
        "cases": cases,
        "findings": [_finding(f) for f in investigation.findings],
        "rectifications": [_rectification(r, today) for r in investigation.rectifications.values()],
        "integrity": integrity,
        "generated_at": now().isoformat(),
        "generated_by": {k: str(generated_by.get(k, "")) for k in ("user", "role", "unit")},
    }


def _user(record: Any) -> str:
    return str(record.get("user", "")) if isinstance(record, dict) else str(record or "")


def _investigation_section(investigation: Investigation) -> dict[str, Any]:
    return {
        "id": str(investigation.id),
        "kind": investigation.kind,
        "incident_on": investigation.incident_on,
        "opened_at": investigation.created_on.isoformat(),
        "opened_by": _user(investigation.opened_by),
        "investigators": list(investigation.investigators),
        "orders": [
            {
                "id": order["id"],
                "case_id": order["case_id"],
                "investigator": order["investigator"],
                "covers": order["covers"],
                "issued_at": order["issued_at"],
                "expires_at": order["expires_at"],
                "revoked": order.get("revoked") is not None,
            }
            for order in investigation.orders.values()
        ],
    }


def _finding(finding: dict[str, Any]) -> dict[str, Any]:
    return {
        "duty": finding["duty"],
        "unit": finding["unit"],
        "person": finding["person"],
        "determination": finding["determination"],
        "evidence": [int(p) for p in finding["evidence"]],
        "note": finding["note"],
        "by": _user(finding["by"]),
        "at": finding["at"],
    }


def _rectification(item: dict[str, Any], today: date) -> dict[str, Any]:
    completed = item.get("completed")
    if completed is not None:
        status = "done"
    elif date.fromisoformat(item["due_on"]) < today:
        status = "overdue"
    else:
        status = "open"
    return {
        "item_id": item["id"],
        "item": item["item"],
        "owner": item["owner"],
        "due_on": item["due_on"],
        "completed_on": completed["on"] if completed else None,
        "status": status,
    }


UNREADABLE_ZH: Final = (
    "此档案的事件已无法解密和校验（见完整性声明）：时间线、知情矩阵和时限分析无法给出。"
)


def _case_section(analysis: Analysis, case_id: UUID) -> dict[str, Any]:
    section: dict[str, Any] = {"case_id": str(case_id), "unreadable": None}
    try:
        section["timeline"] = analysis.timeline(case_id)
        section["knowledge"] = analysis.knowledge(case_id)
        section["deadlines"] = analysis.deadlines(case_id)
    except (EventIntegrityError, KeyMismatchError):
        # A stored event of the case no longer decrypts: it was altered (the integrity
        # statement names it). The report still states what can be stated.
        section.update(
            unreadable=UNREADABLE_ZH,
            timeline=[],
            knowledge={"case_id": str(case_id), "as_of": None, "facts": []},
            deadlines=[],
        )
    return section


# --- the case streams, as stored -------------------------------------------------------------


@dataclass
class CaseStreams:
    """Every stored record of each case's own stream, with its store position, in log order:
    read once, without decrypting, for the integrity statement."""

    case_ids: list[UUID]
    records: dict[UUID, list[Notification]]

    @classmethod
    def scan(
        cls,
        application: CaseTrail,
        case_ids: Sequence[UUID],
        known: Callable[[UUID], list[Notification] | None] | None = None,
    ) -> CaseStreams:
        """`known`: the records of a case already read (by `gather`), or None for a case to
        read here; the store is scanned only for those."""
        records: dict[UUID, list[Notification]] = {}
        for case_id in case_ids:
            found = known(case_id) if known is not None else None
            if found is not None:
                records[case_id] = found
        wanted = {c for c in case_ids if c not in records}
        if not wanted:
            return cls(list(case_ids), records)
        records.update({c: [] for c in wanted})
        start = 0
        while True:
            page = application.recorder.select_notifications(
                start=start, limit=_SCAN_BATCH, inclusive_of_start=False, topics=_CASE_TOPICS
            )
            for notification in page:
                if notification.originator_id in wanted:
                    records[UUID(str(notification.originator_id))].append(notification)
            if len(page) < _SCAN_BATCH:
                break
            start = page[-1].id
        return cls(list(case_ids), records)


# --- the integrity statement -----------------------------------------------------------------


def integrity_statement(evidence: Evidence, scan: CaseStreams) -> dict[str, Any]:
    """Whether every stored event of each case is in the Merkle log as it was appended, and
    included in the latest signed checkpoint: checked from the stored bytes, no key needed."""
    checked_at = datetime.now(UTC).isoformat()
    try:
        checkpoint = evidence.checkpoint_now()
    except TreeInconsistent:
        return {
            "status": "tampered",
            "statement_zh": (
                "完整性校验未通过：存储的默克尔树已不再延续上一个签名检查点，历史记录被改写。"
                "本报告所依据的事件不可信，请运行 casetrail verify 核查。"
            ),
            "checkpoint": None,
            "checked_at": checked_at,
            "cases": [
                {"case_id": str(c), "events": len(scan.records[c]), "included": 0, "problems": []}
                for c in scan.case_ids
            ],
        }
    except EvidenceUnavailable:
        return _unavailable(scan, checked_at)
    cases = [_case_integrity(evidence, checkpoint, c, scan.records[c]) for c in scan.case_ids]
    tampered = any(item["tampered"] for item in cases)
    uncovered = any(item["included"] < item["events"] for item in cases)
    for item in cases:
        del item["tampered"]
    size, seq = checkpoint.size, checkpoint.seq
    if tampered:
        status = "tampered"
        statement = (
            f"完整性校验未通过：下列档案中有事件已被篡改、删除或不在签名检查点 #{seq}"
            f"（大小 {size}）所覆盖的默克尔树中。本报告中这些档案的内容不可信。"
        )
    elif uncovered:
        status = "unavailable"
        statement = (
            f"部分事件尚未纳入签名检查点 #{seq}（大小 {size}）；已纳入的事件均与签名根哈希一致。"
        )
    else:
        events = sum(item["events"] for item in cases)
        status = "intact"
        statement = (
            f"完整性校验通过：{len(cases)} 份档案的全部 {events} 个事件均包含在签名检查点 #{seq}"
            f"（大小 {size}）中，每个事件的包含证明均已按签名根哈希核验，未发现篡改。"
        )
    return {
        "status": status,
        "statement_zh": statement,
        "checkpoint": {
            "seq": seq,
            "size": size,
            "root": checkpoint.root.hex(),
            "time": checkpoint.time,
            "key_id": key_id(evidence.public_key),
        },
        "checked_at": checked_at,
        "cases": cases,
    }


def _unavailable(scan: CaseStreams, checked_at: str) -> dict[str, Any]:
    return {
        "status": "unavailable",
        "statement_zh": "尚无签名检查点，无法作出完整性声明；请稍后重新生成报告。",
        "checkpoint": None,
        "checked_at": checked_at,
        "cases": [
            {"case_id": str(c), "events": len(scan.records[c]), "included": 0, "problems": []}
            for c in scan.case_ids
        ],
    }


def _case_integrity(
    evidence: Evidence, checkpoint: Checkpoint, case_id: UUID, records: list[Notification]
) -> dict[str, Any]:
    problems: list[str] = []
    tampered = False
    versions = [n.originator_version for n in records]
    expected = list(range(1, len(versions) + 1))
    if versions != expected:
        tampered = True
        missing = sorted(set(range(1, max(versions, default=0) + 1)) - set(versions))
        problems.append(
            "事件版本不连续（缺少第 " + "、".join(str(v) for v in missing[:10]) + " 版）"
            if missing
            else "事件版本重复或顺序错乱"
        )
    if not records:
        tampered = True
        problems.append("存储中没有此档案的任何事件")
    indexes = evidence.merkle.leaf_indexes([n.id for n in records])
    covered: list[tuple[Notification, int]] = []
    for notification in records:
        index = indexes.get(notification.id)
        if index is None:
            tampered = True
            problems.append(f"位置 {notification.id} 的事件不在默克尔树中")
        elif index < checkpoint.size:  # later ones are not covered yet: not a fault
            covered.append((notification, index))
    size = checkpoint.size
    leaves = {index: _leaf_hash(n) for n, index in covered}
    # Fast path: the root of the signed tree recomputed with these events' own leaf hashes in
    # place and the stored nodes beside them (each node fetched once, in one query). Equal to
    # the signed root: every one of them is in the signed tree as stored (the inclusion
    # proofs of all of them at once).
    if leaves and _stored_root_with(evidence, size, leaves) == checkpoint.root:
        included = len(covered)
    else:
        included = 0
        # Which ones: each event's own audit path, all fetched in one query.
        paths = evidence.merkle.compute(
            lambda read: [(read(0, i), inclusion_proof(i, size, read)) for _, i in covered]
        )
        for (notification, index), (stored_leaf, path) in zip(covered, paths, strict=True):
            leaf = leaves[index]
            if stored_leaf != leaf or not verify_inclusion(
                leaf, index, size, path, checkpoint.root
            ):
                tampered = True
                problems.append(f"位置 {notification.id} 的事件与签名检查点不符（已被篡改）")
                continue
            included += 1
    return {
        "case_id": str(case_id),
        "events": len(records),
        "included": included,
        "problems": problems,
        "tampered": tampered,
    }


# --- issue 13's analyses (projections.investigation), in the report's shape -----------------

_LANES: Final = {
    "case_accessed": "access",
    "break_glass_accessed": "access",
    "access_denied": "refusal",
    "due_date_reminder": "notice",
    "notice_published": "notice",
    "notice_received": "notice",
    "notice_undeliverable": "notice",
    "assignment_received": "notice",
    "assignment_signed_for": "notice",
    "consultation_overdue": "deadline",
    "assignment_not_signed_for": "deadline",
    "assignment_overdue": "deadline",
    "quarterly_update_missed": "deadline",
    "deadline_escalated": "deadline",
    "investigation_order_issued": "order",
    "investigation_order_renewed": "order",
    "investigation_order_revoked": "order",
}


class CaseAnalysis:
    """`projections.investigation`'s timeline, knowledge matrix and deadline analysis of each
    case, from one gathered history per case (the same functions the workbench's routes
    answer with), mapped to the report's rows."""

    def __init__(
        self,
        application: CaseTrail,
        *,
        now: datetime,
        consultation_due: timedelta,
    ) -> None:
        self.application = application
        self.now = now
        self.consultation_due = consultation_due
        self._histories: dict[UUID, analyses.CaseHistory] = {}

    def _history(self, case_id: UUID) -> analyses.CaseHistory:
        if case_id not in self._histories:
            self._histories[case_id] = analyses.gather(self.application, case_id)
        return self._histories[case_id]

    def stored(self, case_id: UUID) -> list[Notification] | None:
        """The case stream's stored records as its history gathered them, or None when it was
        not gathered (it failed: the integrity statement reads them itself)."""
        history = self._histories.get(case_id)
        return None if history is None else list(history.stored)

    def timeline(self, case_id: UUID) -> list[dict[str, Any]]:
        return timeline_rows(self._history(case_id))

    def knowledge(self, case_id: UUID) -> dict[str, Any]:
        found = analyses.knowledge(self._history(case_id))
        return {"case_id": str(case_id), "as_of": found["as_of"], "facts": found["facts"]}

    def deadlines(self, case_id: UUID) -> list[dict[str, Any]]:
        found = analyses.deadlines(
            self._history(case_id), now=self.now, consultation_due=self.consultation_due
        )
        return [
            {
                "deadline": check["duty"],
                "label_zh": check["label_zh"],
                "due_at": check["due_at"],
                "done_at": check["done_at"],
                "status": check["status"],
                "status_zh": check["status_label_zh"],
                "unit": check["unit"] or "",
                "user": check["person"] or "",
            }
            for check in found["checks"]
        ]


def timeline_rows(history: analyses.CaseHistory) -> list[dict[str, Any]]:
    """The report's timeline rows of a gathered history: `timeline_row` of each entry of
    `projections.investigation.timeline(history)`, built from the steps directly. The full
    entry (its details, the actor's post, the state answers) is most of the cost of a row and
    the report shows none of it beyond these eight values: a case of 10,000 events spent about
    a fifth of its report here (bench/README.md, "report"). Proven equal, row for row, by
    tests/reports/test_timeline_rows.py."""
    rows: list[dict[str, Any]] = []
    add = rows.append
    changes_of = _changes
    # Per kind of step: where its actor is named, its label and its lane (a few kinds).
    kinds: dict[str, tuple[str | None, str, str]] = {}
    for position, at, kind, event, before, after in history.steps:
        known = kinds.get(kind)
        if known is None:
            known = kinds[kind] = (
                ACTOR_FIELD.get(kind, "by"),
                KIND_LABELS.get(kind, kind),
                _LANES.get(kind, "change"),
            )
        field, label, lane = known
        if field is None:
            # A unit acting: the workbench's entry names no user (None, shown as "None" as
            # `timeline_row` of that entry does).
            user, unit = "None", str(getattr(event, "unit", None))
        else:
            record = getattr(event, field, None)
            if isinstance(record, dict) and record:
                user, unit = str(record.get("user", "")), str(record.get("unit", ""))
            else:
                user = unit = ""
        add(
            {
                "at": at.isoformat(),
                "position": position,
                "kind": kind,
                "label_zh": label,
                "lane": lane,
                "user": user,
                "unit": unit,
                # A step outside the case stream has the same state before and after.
                "detail_zh": "" if before is after else changes_of(before, after),
            }
        )
    return rows


def _changes(before: analyses.FileState | None, after: analyses.FileState | None) -> str:
    """`timeline_row`'s detail: the status and risk labels that changed at a step."""
    if after is None:
        return ""
    changes = []
    for what, labels, old, new in (
        ("状态", STATUS_LABEL, None if before is None else before.status, after.status),
        ("风险", RISK_LABEL, None if before is None else before.risk, after.risk),
    ):
        old_label = None if old is None else labels.get(old, old)
        new_label = labels.get(new, new)
        if old_label != new_label:
            changes.append(f"{what}：{old_label or '—'} → {new_label}")
    return "；".join(changes)


def timeline_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The report's row of one workbench timeline entry (`projections.investigation.timeline`):
    the definition `timeline_rows` computes faster."""
    actor = entry.get("actor") or {}
    state = entry.get("state") or {}
    before, after = state.get("before") or {}, state.get("after") or {}
    changes = [
        f"{what}：{before.get(label) or '—'} → {after.get(label)}"
        for what, label in (("状态", "status_label_zh"), ("风险", "risk_label_zh"))
        if after and before.get(label) != after.get(label)
    ]
    kind = str(entry["kind"])
    return {
        "at": entry["at"],
        "position": entry.get("position"),
        "kind": kind,
        "label_zh": entry["label_zh"],
        "lane": _LANES.get(kind, "change"),
        "user": str(actor.get("user", "")),
        "unit": str(actor.get("unit", "")),
        "detail_zh": "；".join(changes),
    }


def _leaf_hash(notification: Notification) -> bytes:
    """`StoredRecord.of(notification).leaf_hash()`, without the record (one per case event)."""
    stream = notification.originator_id
    return leaf_hash(
        encode_leaf(
            notification.id,
            stream if isinstance(stream, UUID) else UUID(str(stream)),
            notification.originator_version,
            notification.topic,
            bytes(notification.state),
        )
    )


def _stored_root_with(evidence: Evidence, size: int, leaves: dict[int, bytes]) -> bytes:
    """`_root_with` over the stored tree: the nodes it reads (`_nodes_beside`) fetched first,
    in one query, by index arithmetic (`MerkleLog.compute` would find them by running the
    whole computation once more, hashing and all)."""
    wanted = _nodes_beside(size, sorted(leaves))
    with evidence.merkle.tables.reading() as db:
        read = fetch_reader(db, wanted)
    return _root_with(size, leaves, read)


def _root_with(size: int, leaves: dict[int, bytes], read: NodeReader) -> bytes:
    """MTH(D[0:size]) (RFC 9162) with the given leaf hashes at their indexes and, for every
    perfect subtree holding none of them, its stored node."""
    indexes = sorted(leaves)

    def walk(start: int, width: int, lo: int, hi: int) -> bytes:
        # indexes[lo:hi] are the given leaves inside [start, start + width).
        if lo == hi and width & (width - 1) == 0:
            level = width.bit_length() - 1
            return read(level, start >> level)
        if width == 1:
            return leaves[indexes[lo]]
        if hi - lo == width:  # every leaf of the range given (a case's run of events)
            return _range_hash([leaves[i] for i in indexes[lo:hi]])
        k = split_point(width)
        mid = bisect_left(indexes, start + k, lo, hi)
        return node_hash(walk(start, k, lo, mid), walk(start + k, width - k, mid, hi))

    return walk(0, size, 0, len(indexes))


def _nodes_beside(size: int, indexes: list[int]) -> list[tuple[int, int]]:
    """The stored nodes `_root_with(size, leaves, read)` reads for leaves at the (sorted)
    `indexes`: (level, index) of each perfect subtree holding none of them."""
    wanted: list[tuple[int, int]] = []

    def visit(start: int, width: int, lo: int, hi: int) -> None:
        if lo == hi and width & (width - 1) == 0:
            level = width.bit_length() - 1
            wanted.append((level, start >> level))
            return
        if width == 1 or hi - lo == width:
            return
        k = split_point(width)
        mid = bisect_left(indexes, start + k, lo, hi)
        visit(start, k, lo, mid)
        visit(start + k, width - k, mid, hi)

    if size:
        visit(0, size, 0, len(indexes))
    return wanted


def _range_hash(hashes: list[bytes]) -> bytes:
    """MTH of consecutive leaves from their leaf hashes (RFC 9162): a perfect range level by
    level, in loops rather than one call per node."""
    width = len(hashes)
    if width == 1:
        return hashes[0]
    if width & (width - 1):
        k = split_point(width)
        return node_hash(_range_hash(hashes[:k]), _range_hash(hashes[k:]))
    level = hashes
    sha256 = hashlib.sha256
    while len(level) > 1:
        # node_hash, inline: half as many calls again per level.
        level = [
            sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)
        ]
    return level[0]
