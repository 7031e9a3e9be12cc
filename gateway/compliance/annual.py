"""The annual compliance audit of minors' personal information (未成年人网络保护条例 第三十七条):
the document (counts only), and its signed html, pdf or json file.

What one calendar year (Beijing time) shows, each section from where it is kept:
1. collection: the categories of personal data a file holds (`domain.access.FIELDS` by
   sensitivity), how many files were opened in the year and held at its end, and the new
   files by issue category (the ledger read model: counts, never a value);
2. accesses: granted reads by role and unit (how many, of how many distinct files), and
   refused ones (the access-log read model, complete to the store's end:
   `gateway.compliance.source`);
3. disclosures and exports: disclosures by channel, full-identity exports, evidence bundles;
4. refusals: refused reads by rule, refused commands by command and rule, refused
   authentications by reason (their events, with the throttle's suppressed counts);
5. break-glass: uses, and their reviews by outcome (reviewed in time or not, pending);
6. findings and their outcomes: the compliance rules' findings whose evidence ended in the
   year, by rule and status, and their follow-ups (`CaseTrail.findings`);
7. keys and integrity: units' key rotations, checkpoints signed in the year and the keys that
   signed them, and the store verified now against every signed checkpoint (as
   `casetrail verify`).

No name, ID number, description or other case content; unit codes and roles, no person. The
page is self-contained Chinese HTML (the investigation report's machinery:
`gateway.reports.html.render_page`, its styles and Content-Security-Policy), signed like the
report (`docs/specs/report.md`). Proven by tests/reports/test_annual_report.py (sections, counts
of a scenario, no planted value; headless Chromium: screenshot, no overflow, nothing fetched;
the PDF's text has every section).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.domain import DomainEvent

from domain.access import FIELDS, IDENTITY_FIELDS, Actor, BreakGlassReviewed, Sensitivity
from domain.application import CaseTrail
from domain.compliance.findings import FINDING_STATUS_LABELS, FindingFilter
from domain.compliance.records import AccessRecord, RecordKind
from domain.refusals import AuthenticationRefused
from domain.taxonomy import CATEGORY_LABELS, Category
from domain.topics import topics_of
from domain.units import Unit
from gateway.compliance.sheets import FIELD_LABELS
from gateway.compliance.source import find_records, is_disclosure
from gateway.evidence.maintainer import Evidence
from gateway.evidence.verification import verify_store
from gateway.reports.html import CHINA, render_page
from gateway.reports.pdf import html_to_pdf
from gateway.reports.signing import sign_content, sign_json
from projections.compliance.access_log import AccessQuery
from projections.evidence.checkpoints import CheckpointStore
from projections.investigation.labels import CHANNEL_LABELS, PURPOSE_LABELS, ROLE_LABELS
from projections.ledger.quarters import stamp
from projections.readmodels import ReadModels

SECTIONS: Final = (
    ("collection", "一、个人信息收集情况"),
    ("accesses", "二、访问情况（按角色与单位）"),
    ("disclosures", "三、披露与导出"),
    ("refusals", "四、拒绝记录"),
    ("break_glass", "五、紧急查阅及复核"),
    ("findings", "六、合规发现及处理结果"),
    ("keys", "七、密钥轮换与完整性校验"),
)
SENSITIVITY_LABELS: Final = {
    Sensitivity.IDENTITY: "身份信息",
    Sensitivity.SENSITIVE: "敏感个人信息",
    Sensitivity.OPERATIONAL: "一般工作信息",
}
REFUSAL_REASON_LABELS: Final = {
    "missing": "未提供令牌",
    "malformed": "令牌格式错误",
    "expired": "令牌已过期",
    "untrusted_signature": "签名不可信",
    "invalid_claims": "令牌声明无效",
    "unknown_role": "角色未知",
}
REVIEW_LABELS: Final = {"justified": "理由成立", "unjustified": "理由不成立"}
_PAGE: Final = 5000
# The unit's events (made by `@event`, so unknown to mypy as attributes).
_UNIT_REGISTERED: Final[type[DomainEvent]] = Unit.UnitRegistered  # type: ignore[attr-defined]
_UNIT_KEY_ROTATED: Final[type[DomainEvent]] = Unit.UnitKeyRotated  # type: ignore[attr-defined]


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The calendar year in Beijing time, as [start, end) instants."""
    return datetime(year, 1, 1, tzinfo=CHINA), datetime(year + 1, 1, 1, tzinfo=CHINA)


def _records(
    readmodels: ReadModels, application: CaseTrail, start: datetime, end: datetime
) -> Iterator[AccessRecord]:
    """Every access record of the period, a page at a time (bounded memory)."""
    after = 0
    while True:
        page = find_records(
            readmodels,
            application,
            AccessQuery(since=start, until=end, after_position=after, limit=_PAGE),
        )
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1].position


def _in(moment: datetime, start: datetime, end: datetime) -> bool:
    return start <= moment < end


def _counted(counter: Counter[str], labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        {"code": code, "label": (labels or {}).get(code, code), "count": count}
        for code, count in sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    ]


def _collection(readmodels: ReadModels, start: datetime, end: datetime) -> dict[str, Any]:
    categories = [
        {
            "code": str(sensitivity),
            "label": label,
            "fields": [FIELD_LABELS.get(f, f) for f, s in FIELDS.items() if s is sensitivity],
        }
        for sensitivity, label in SENSITIVITY_LABELS.items()
    ]
    first, last = stamp(start.astimezone(UTC)), stamp(end.astimezone(UTC))
    with readmodels.ledger.reading() as db:
        new = db.execute(
            "SELECT COUNT(*) AS n FROM {ledger_cases} WHERE reported_at >= ? AND reported_at < ?",
            [first, last],
        )[0]["n"]
        held = db.execute("SELECT COUNT(*) AS n FROM {ledger_cases} WHERE reported_at < ?", [last])[
            0
        ]["n"]
        by_category = db.execute(
            "SELECT i.category AS category, COUNT(DISTINCT i.case_id) AS n FROM {ledger_issues} i "
            "JOIN {ledger_cases} c ON c.case_id = i.case_id "
            "WHERE c.reported_at >= ? AND c.reported_at < ? GROUP BY i.category",
            [first, last],
        )
    order = [str(c) for c in Category]
    counts = {str(r["category"]): int(r["n"]) for r in by_category}
    labels = {str(c): label for c, label in CATEGORY_LABELS.items()}
    return {
        "data_categories": categories,
        "files_new": int(new),
        "files_held": int(held),
        "by_category": [
            {"code": code, "label": labels.get(code, code), "count": counts[code]}
            for code in sorted(counts, key=lambda c: order.index(c) if c in order else len(order))
        ],
    }


def _events(application: CaseTrail, *classes: type) -> Iterator[Any]:
    decode = application.mapper.to_domain_event
    for notification in application.notifications(topics=topics_of(*classes)):
        yield decode(notification)


def _reviews(application: CaseTrail) -> dict[UUID, str]:
    """The outcome of every reviewed break-glass access, by its access event's id."""
    return {
        e.originator_id: e.outcome
        for e in _events(application, BreakGlassReviewed)
        if isinstance(e, BreakGlassReviewed)
    }


def _authentications(application: CaseTrail, start: datetime, end: datetime) -> dict[str, Any]:
    stored: Counter[str] = Counter()
    suppressed = 0
    for event in _events(application, AuthenticationRefused):
        if isinstance(event, AuthenticationRefused) and _in(event.timestamp, start, end):
            stored[event.reason] += 1 + event.suppressed
            suppressed += event.suppressed
    return {
        "total": sum(stored.values()),
        "suppressed": suppressed,
        "by_reason": _counted(stored, REFUSAL_REASON_LABELS),
    }


def _keys(
    application: CaseTrail, evidence: Evidence, start: datetime, end: datetime
) -> dict[str, Any]:
    rotations: Counter[str] = Counter()
    units: dict[UUID, str] = {}
    for event in _events(application, _UNIT_REGISTERED, _UNIT_KEY_ROTATED):
        if isinstance(event, _UNIT_REGISTERED):
            units[event.originator_id] = str(getattr(event, "unit_id", ""))
        elif isinstance(event, _UNIT_KEY_ROTATED) and _in(event.timestamp, start, end):
            rotations[units.get(event.originator_id, str(event.originator_id))] += 1
    store = CheckpointStore(application.recorder)
    checkpoints = [
        c
        for c in (store.all() if store.exists() else [])
        if _in(datetime.fromisoformat(c.time.replace("Z", "+00:00")), start, end)
    ]
    report = verify_store(application.recorder, evidence.public_key)
    latest = max(report.matched, key=lambda c: (c.size, c.seq), default=None)
    return {
        "unit_key_rotations": _counted(rotations),
        "checkpoints_signed": len(checkpoints),
        "signing_keys": sorted({c.key_id for c in checkpoints}),
        "verification": {
            "intact": report.intact,
            "status": "intact" if report.intact else "tampered",
            "events": report.events,
            "checkpoints_matched": len(report.matched),
            "latest_checkpoint": (
                {"seq": latest.seq, "size": latest.size, "time": latest.time}
                if latest is not None
                else None
            ),
            "summary": report.summary(),
            "checked_at": datetime.now(UTC).isoformat(),
        },
    }


def annual_document(
    application: CaseTrail,
    readmodels: ReadModels,
    evidence: Evidence,
    *,
    year: int,
    actor: Actor,
) -> dict[str, Any]:
    """The annual report's document: the sections above, counts only."""
    start, end = year_bounds(year)
    by_unit: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"reads": 0, "refused": 0, "files": set()}
    )
    channels: Counter[str] = Counter()
    purposes: Counter[str] = Counter()
    refused_reads: Counter[str] = Counter()
    refused_commands: Counter[str] = Counter()
    identity_exports = 0
    disclosed_files: set[UUID] = set()
    break_glass: list[AccessRecord] = []
    for record in _records(readmodels, application, start, end):
        key = (record.role, record.street, record.unit)
        if record.kind is RecordKind.READ:
            by_unit[key]["reads"] += 1
            if record.case_id is not None:
                by_unit[key]["files"].add(record.case_id)
            if is_disclosure(record):
                channels[record.channel] += 1
                purposes[record.purpose] += 1
                if record.case_id is not None:
                    disclosed_files.add(record.case_id)
                if record.channel == "export" and set(record.fields) & IDENTITY_FIELDS:
                    identity_exports += 1
            if record.break_glass:
                break_glass.append(record)
        elif record.kind is RecordKind.REFUSED_READ:
            by_unit[key]["refused"] += 1
            refused_reads[record.rule.partition(":")[0]] += 1
        else:
            by_unit[key]["refused"] += 1
            refused_commands[f"{record.command}:{record.rule.partition(':')[0]}"] += 1
    reviews = _reviews(application)
    outcomes: Counter[str] = Counter(reviews.get(r.event_id, "pending") for r in break_glass)
    accessed = [
        {
            "role": role,
            "role_label": ROLE_LABELS.get(role, role),
            "street": street,
            "unit": unit,
            "reads": values["reads"],
            "files": len(values["files"]),
            "refused": values["refused"],
        }
        for (role, street, unit), values in sorted(by_unit.items())
    ]
    return {
        "kind": "casetrail-annual-report/v1",
        "year": year,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "generated_at": datetime.now(UTC).isoformat(),
        "generated_by": {"user": actor.user, "role": str(actor.role), "unit": actor.unit},
        "collection": _collection(readmodels, start, end),
        "accesses": {
            "reads": sum(a["reads"] for a in accessed),
            "by_role_and_unit": accessed,
        },
        "disclosures": {
            "total": sum(channels.values()),
            "files": len(disclosed_files),
            "by_channel": _counted(channels, dict(CHANNEL_LABELS)),
            "by_purpose": _counted(purposes, dict(PURPOSE_LABELS)),
            "identity_exports": identity_exports,
        },
        "refusals": {
            "reads": sum(refused_reads.values()),
            "reads_by_rule": _counted(refused_reads),
            "commands": sum(refused_commands.values()),
            "commands_by_rule": _counted(refused_commands),
            "authentications": _authentications(application, start, end),
        },
        "break_glass": {
            "uses": len(break_glass),
            "reviewed": len(break_glass) - outcomes.get("pending", 0),
            "pending": outcomes.get("pending", 0),
            "by_outcome": _counted(outcomes, {**REVIEW_LABELS, "pending": "待复核"}),
        },
        "findings": findings_section(application, start, end),
        "keys": _keys(application, evidence, start, end),
    }


def findings_section(application: CaseTrail, start: datetime, end: datetime) -> dict[str, Any]:
    """The compliance rules' findings whose evidence ended in the period (`FindingFilter`), by
    rule, by status (open, justified, violation, superseded) and their follow-ups."""
    found = application.findings(FindingFilter(since=start, until=end))
    follow_ups = [f.follow_up for f in found if f.follow_up is not None]
    return {
        "available": True,
        "total": len(found),
        "by_rule": _counted(Counter(f.rule for f in found)),
        "by_status": _counted(
            Counter(str(f.status) for f in found),
            {str(k): v for k, v in FINDING_STATUS_LABELS.items()},
        ),
        "follow_ups": len(follow_ups),
        "follow_ups_completed": sum(1 for f in follow_ups if f.get("completed")),
    }


def render_annual(
    document: dict[str, Any], form: str, key: Ed25519PrivateKey, *, chromium: str
) -> bytes:
    """The signed file of `form` (html, pdf, json), as `gateway.reports.render.produce` does
    for the investigation report (`PdfUnavailable` when a pdf cannot be printed)."""
    if form == "json":
        return sign_json(document, key)
    html = annual_html(document)
    if form == "html":
        return sign_content("html", html.encode("utf-8"), key)
    return sign_content("pdf", html_to_pdf(html, chromium), key)


def annual_html(document: dict[str, Any]) -> str:
    """The annual report as one self-contained Chinese HTML page (unsigned)."""
    return render_page("annual.html.j2", doc=document, sections=dict(SECTIONS))
