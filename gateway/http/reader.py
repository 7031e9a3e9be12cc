"""The one reader: every disclosure the HTTP API makes is decided and recorded here.

Case reads, access logs, break-glass reads, evidence bundles, ledger pages, lookups, exports,
worklists, reports and the compliance lists ask an `AuditedReader` (built per request by
`gateway.http.dependencies`) and get back only what may be disclosed, its access events already
stored. In `gateway`, this is the only module that calls the domain's access decision
(`domain.access.decide`, `ledger_scope`, `ROLE_PURPOSES`) or stores access events; the case
decision itself is `CaseTrail.authorise_read` (decide, record, then hand back).

Refusals are one vocabulary and one answer, whatever the channel:
- the case read's rules: `purpose_not_allowed_for_role:<role>:<purpose>` (403
  purpose-not-allowed), `no_such_case`, `out_of_scope`, `break_glass_without_reason`, and
  narrowed grants (`<rule>:without_access_log`, `<rule>:no_case_content`) (404 "no such case is
  visible to you", no sooner than the refusal floor);
- for what a role never gets, `<channel>_not_for_role:<role>`: `evidence_bundle_not_for_role`
  (a case is named: 404 as above), `investigation_workbench_not_for_role` (timeline, knowledge
  matrix, deadline analysis: investigators under an order only; 404 as above),
  `ledger_not_for_role`, `identity_export_not_for_role`,
  `report_not_for_role` (no case is named, nothing to hide: 403 not-permitted).
Every refusal is stored as `AccessDenied` before the answer (a store failure answers 503 instead);
one that names no case carries `domain.application.NO_CASE` as its case id. `refusal_answer` is
the answer of each rule, used by the app's handler of `AccessRefused`. Only the compliance lists
(break-glass accesses awaiting review, refused authentications: access records, no case content)
refuse other roles and purposes with a plain 403 not-permitted, not stored, as before.
A ledger row the rules refuse is left out of its page, not refused.

The compliance reports (issue 15: the accounting of disclosures, access reports, the FHIR
AuditEvent export, the annual audit) are the compliance auditors' (`compliance_report_scope`,
refusal `compliance_report_not_for_role`, channel `compliance`); what each answer shows is
recorded first as reads of the covered files' access logs (`record_compliance_report`; proven by
tests/integration/test_disclosures.py).

Every access event, granted or refused, also records how the reader knew what it knew
(issue 13): the version of the case decided on (a case read's loaded case; a ledger row's version
as the ledger holds it; the live case for a full-identity export; None when no case is named),
the channel (`domain.access.Channel`: `api` for a case read, its access log and break-glass;
`bundle`, `ledger`, `lookup`, `export`, `worklist`, `report`), and the client as the service saw
it (`gateway.http.client`). Proven by tests/integration/test_knowledge_records.py.

Proven by tests/integration/test_one_reader.py (every channel: the refusal stored, its answer
equal to the case read's), with tests/integration/test_need_to_know.py (the rules table),
tests/integration/test_audited_reads.py (the record before the answer) and
tests/projections/test_ledger_api.py, tests/evidence/test_bundles.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NoReturn
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain import errors
from domain.access import (
    COUNTY_ORDER_RULE,
    IDENTITY_FIELDS,
    NO_CASE,
    ROLE_PURPOSES,
    Actor,
    BreakGlassAccessed,
    CaseScope,
    Channel,
    Client,
    Decision,
    LedgerScope,
    ReadContext,
    decide,
    disclose,
    ledger_scope,
)
from domain.application import CaseTrail, PendingRead
from domain.case import Case
from domain.investigations import Investigation
from domain.refusals import AuthenticationRefused
from domain.retention import DataErased
from domain.taxonomy import Purpose, Role
from gateway.logs import get_logger
from gateway.reports.service import authorise_report
from projections.investigation import (
    DEADLINE_FIELDS,
    KNOWLEDGE_FIELDS,
    TIMELINE_FIELDS,
    CaseHistory,
    gather,
)
from projections.investigation import deadlines as investigation_deadlines
from projections.investigation import knowledge as investigation_knowledge
from projections.investigation import timeline as investigation_timeline
from projections.ledger.view import (
    COLUMNS,
    LedgerRow,
    export_columns,
    export_disclosure,
    row_disclosure,
)

log = get_logger("casetrail.api")

# Who may have a case's evidence bundle: an investigator under an order in force, the case's
# street's coordinator (the rules that grant them the case are the case read's).
BUNDLE_ROLES: Final = frozenset({Role.INVESTIGATOR, Role.COORDINATOR})
# A full-identity export shows both (the ledger masks them).
_EXPORT_IDENTITY: Final = frozenset({"minor.name", "minor.id_number"})
# What a compliance report discloses of each case file it covers: its access log.
_ACCESS_LOG: Final = frozenset({"access_log"})

PURPOSE_NOT_ALLOWED: Final = "purpose_not_allowed_for_role"
BUNDLE_NOT_FOR_ROLE: Final = "evidence_bundle_not_for_role"
LEDGER_NOT_FOR_ROLE: Final = "ledger_not_for_role"
IDENTITY_EXPORT_NOT_FOR_ROLE: Final = "identity_export_not_for_role"
REPORT_NOT_FOR_ROLE: Final = "report_not_for_role"
# The investigation workbench (timeline, knowledge, deadlines): under an order only.
WORKBENCH_NOT_FOR_ROLE: Final = "investigation_workbench_not_for_role"
WORKBENCH_RULES: Final = frozenset({"investigation_order", COUNTY_ORDER_RULE})


# --- the answer of a refusal -----------------------------------------------------------------


@dataclass(frozen=True)
class RefusalAnswer:
    """What a refused read is answered (a problem+json): the same for every channel that
    refuses by the same rule. `padded`: not sooner than the refusal floor."""

    status: int
    code: str
    title: str
    detail: str
    field: str | None = None
    field_message: str | None = None
    padded: bool = False

    def errors(self) -> list[dict[str, str]]:
        if self.field is None:
            return []
        return [{"field": self.field, "message": self.field_message or self.detail}]


_NOT_FOR_ROLE_TITLE: Final = "Your role may not read this"
_NOT_FOR_ROLE: Final = {
    LEDGER_NOT_FOR_ROLE: RefusalAnswer(
        403,
        "not-permitted",
        _NOT_FOR_ROLE_TITLE,
        "your role has no ledgers, worklists or reports; a case's history is read through its "
        "own audited endpoints; the refusal was recorded",
    ),
    IDENTITY_EXPORT_NOT_FOR_ROLE: RefusalAnswer(
        403,
        "not-permitted",
        _NOT_FOR_ROLE_TITLE,
        "your role may not export names and ID numbers; export without identity=true (masked), "
        "or ask the street's coordinator; the refusal was recorded",
        field="identity",
        field_message="not allowed for your role; leave it out for a masked export",
    ),
    REPORT_NOT_FOR_ROLE: RefusalAnswer(
        403,
        "not-permitted",
        _NOT_FOR_ROLE_TITLE,
        "quarterly reports cover a whole street: coordinators and supervisors receive them; "
        "the refusal was recorded",
    ),
}
# A unit's inbox (gateway/http/routes/inbox.py): unit members only; no case is named.
INBOX_NOT_FOR_ROLE: Final = "inbox_not_for_role"
_NOT_FOR_ROLE[INBOX_NOT_FOR_ROLE] = RefusalAnswer(
    403,
    "not-permitted",
    _NOT_FOR_ROLE_TITLE,
    "the inbox lists a unit's own assignments: members of an assigned unit read it; the "
    "worklists list assignments for the street; the refusal was recorded",
)
# The street's worklist of notices nobody could take: coordinators and supervisors only.
STREET_WORKLIST_NOT_FOR_ROLE: Final = "street_worklist_not_for_role"
_NOT_FOR_ROLE[STREET_WORKLIST_NOT_FOR_ROLE] = RefusalAnswer(
    403,
    "not-permitted",
    _NOT_FOR_ROLE_TITLE,
    "this worklist covers a whole street: its coordinators and supervisors read it; the "
    "refusal was recorded",
)
# The compliance reports (issue 15: the accounting of disclosures, access reports, the FHIR
# AuditEvent export, the annual audit report): compliance auditors only; no case is named.
COMPLIANCE_REPORT_NOT_FOR_ROLE: Final = "compliance_report_not_for_role"
_NOT_FOR_ROLE[COMPLIANCE_REPORT_NOT_FOR_ROLE] = RefusalAnswer(
    403,
    "not-permitted",
    _NOT_FOR_ROLE_TITLE,
    "accountings of disclosures, access reports and the annual audit are the compliance "
    "auditors' (purpose compliance_review); the refusal was recorded",
)
_PURPOSE_NOT_ALLOWED: Final = RefusalAnswer(
    403,
    "purpose-not-allowed",
    "This purpose of use is not allowed for your role",
    "declare a purpose your role may use; the refusal was recorded",
    field="X-Purpose-Of-Use",
    field_message="not allowed for your role",
)
# A missing case and one not yours are answered alike, after the same time.
_NO_SUCH_CASE: Final = RefusalAnswer(
    404,
    "case-not-found",
    "No such case is visible to you",
    "no case with this id is visible to you; the attempt was recorded",
    padded=True,
)


def refusal_answer(rule: str) -> RefusalAnswer:
    """The answer to a read refused by `rule` (its `AccessDenied` is stored already). Any rule
    not named here refuses as a case that is not visible: the answer that reveals least."""
    if rule.startswith(f"{PURPOSE_NOT_ALLOWED}:"):
        return _PURPOSE_NOT_ALLOWED
    return _NOT_FOR_ROLE.get(rule.partition(":")[0], _NO_SUCH_CASE)


# --- what a grant hands back -------------------------------------------------------------------


@dataclass(frozen=True)
class BundleGrant:
    """A case's evidence bundle may be built; the access events are stored. `with_audit`:
    the reader was granted the case's access log too (an investigator). The bundle's own
    access events are those about the case stored after position `since` with `request_id`:
    every bundle holds them (`gateway.evidence.documents.build_bundle`)."""

    case_id: UUID
    with_audit: bool
    request_id: str = ""
    since: int = 0


@dataclass(frozen=True)
class ExportLine:
    """One file of an export: the fields granted, and its full name and ID number when a
    full-identity export was granted on the file's live state."""

    row: LedgerRow
    fields: frozenset[str]
    identity: tuple[str, str] | None = None


@dataclass(frozen=True)
class ExportGrant:
    columns: Sequence[Any]
    lines: list[ExportLine]


# What a web page's reader records as channel `web` (issue 18); the rest are downloads.
PAGE_CHANNELS: Final = frozenset(
    {
        Channel.API,
        Channel.LEDGER,
        Channel.LOOKUP,
        Channel.WORKLIST,
        Channel.INBOX,
        Channel.TIMELINE,
        Channel.KNOWLEDGE,
        Channel.DEADLINES,
    }
)


# --- the reader ---------------------------------------------------------------------------------


@dataclass
class AuditedReader:
    """One request's reader: who asks, for what purpose, from which client. The only way an
    endpoint gets case content or ledger rows; each disclosure and each refusal is recorded
    before it returns, with its channel and the client."""

    application: CaseTrail
    actor: Actor
    purpose: Purpose
    request_id: str
    client: Client
    # A web page's reader (issue 18, gateway.web): what it shows on a page is recorded with
    # channel `web`; the rule still names the view (`ledger:...`). Downloads keep theirs.
    web: bool = False

    def _via(self, channel: Channel) -> Channel:
        """The channel recorded: `web` for a page's read, else the view's own."""
        return Channel.WEB if self.web and channel in PAGE_CHANNELS else channel

    # --- one case ---

    def case(self, case_id: UUID, *, break_glass_reason: str | None = None) -> dict[str, Any]:
        """The fields of the case this reader may see (break-glass: with a written reason)."""
        return self.application.read_case(
            case_id,
            self.actor,
            self.purpose,
            self.request_id,
            break_glass_reason=break_glass_reason,
            channel=self._via(Channel.API),
            client=self.client,
        )

    def begin_case(self, case_id: UUID) -> PendingRead:
        """`case` without waiting for the access event's commit: `PendingRead.answer()` once
        it is durable (the HTTP route awaits it, `gateway.http.durability.durable`)."""
        return self.application.begin_read(
            case_id,
            self.actor,
            self.purpose,
            self.request_id,
            channel=self._via(Channel.API),
            client=self.client,
        )

    def case_as_of(self, case_id: UUID, as_of: datetime) -> dict[str, Any]:
        """The case as it stood at `as_of`, for an investigator under an order in force now
        (`CaseTrail.read_case_as_of`: decided and recorded there, refused like a case read)."""
        return self.application.read_case_as_of(
            case_id,
            as_of,
            self.actor,
            self.purpose,
            self.request_id,
            channel=self._via(Channel.API),
            client=self.client,
        )

    def access_log(
        self, case_id: UUID, *, after: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of the case's access log, for readers granted `access_log` (no case content):
        the reads stored after position `after`, at most `limit`."""
        return self.application.read_access_log(
            case_id,
            self.actor,
            self.purpose,
            self.request_id,
            after=after,
            limit=limit,
            channel=self._via(Channel.API),
            client=self.client,
        )

    def bundle(self, case_id: UUID) -> BundleGrant:
        """Whether the case's evidence bundle may be built: the case read's decision, granted
        only to `BUNDLE_ROLES`; stored (the content read, and for an investigator the access
        log read, in one write) before anything is built."""

        def bundle_only(decision: Decision) -> Decision:
            if decision.granted and (self.actor.role not in BUNDLE_ROLES or decision.break_glass):
                return Decision(False, f"{BUNDLE_NOT_FOR_ROLE}:{self.actor.role}")
            return decision

        # The store's end before this read's access events: they are found after it.
        since = self.application.recorder.max_notification_id() or 0
        with_audit = self.actor.role is Role.INVESTIGATOR
        self.application.authorise_read(
            case_id,
            self.actor,
            self.purpose,
            self.request_id,
            also_need="access_log" if with_audit else None,
            narrow=bundle_only,
            channel=self._via(Channel.BUNDLE),
            client=self.client,
        )
        return BundleGrant(case_id, with_audit, self.request_id, since)

    def guardian_copy(self, case_id: UUID) -> tuple[dict[str, Any], frozenset[str]]:
        """A guardian's copy of the minor's data (issue 19, purpose `guardian_request`): the
        fields `domain.access.decide` grants for it (`GUARDIAN_COPY_FIELDS`, while an access
        request about the file is open) and the file's access log, both recorded in one write
        before anything is built. The accounting of disclosures is built by the caller from
        the records (`gateway.compliance.source`), as the compliance accounting is. Returns
        the answer and the names of the fields disclosed (the access log's among them)."""
        case, decision = self.application.authorise_read(
            case_id,
            self.actor,
            self.purpose,
            self.request_id,
            also_need="access_log",
            channel=self._via(Channel.API),
            client=self.client,
        )
        return (
            disclose(case, decision.fields, reader_unit=self.actor.unit),
            decision.fields | {"access_log"},
        )

    # --- ledgers, lookups, exports, worklists, reports ---

    def ledger_scope(self, *, channel: Channel) -> LedgerScope:
        """Which files this reader's ledgers, lookups, worklists list; refused (and recorded,
        with `channel`: `ledger`, `lookup`, `worklist`) for a purpose the role may not
        declare, and for roles without ledgers."""
        if self.purpose not in ROLE_PURPOSES[self.actor.role]:
            self._refuse(f"{PURPOSE_NOT_ALLOWED}:{self.actor.role}:{self.purpose}", channel)
        scope = ledger_scope(self.actor)
        if scope is None:
            log.info("ledger_refused", role=str(self.actor.role))
            self._refuse(f"{LEDGER_NOT_FOR_ROLE}:{self.actor.role}", channel)
        return scope

    def export_scope(self, *, identity: bool) -> LedgerScope:
        """The ledger's scope, for an export; with `identity`, only for roles that may export
        names and ID numbers (else refused and recorded)."""
        scope = self.ledger_scope(channel=Channel.EXPORT)
        if identity and not scope.identity_export:
            self._refuse(f"{IDENTITY_EXPORT_NOT_FOR_ROLE}:{self.actor.role}", Channel.EXPORT)
        return scope

    def report_scope(self) -> LedgerScope:
        """The ledger's scope, for a street's report: whole streets only (else refused and
        recorded)."""
        scope = self.ledger_scope(channel=Channel.REPORT)
        if scope.reporting_unit is not None or scope.assigned_unit is not None:
            self._refuse(f"{REPORT_NOT_FOR_ROLE}:{self.actor.role}", Channel.REPORT)
        return scope

    def street_worklist_scope(self) -> LedgerScope:
        """The ledger's scope, for a worklist of the whole street (notices nobody could take):
        coordinators and supervisors only (else refused and recorded, channel `worklist`)."""
        scope = self.ledger_scope(channel=Channel.WORKLIST)
        if scope.reporting_unit is not None or scope.assigned_unit is not None:
            self._refuse(f"{STREET_WORKLIST_NOT_FOR_ROLE}:{self.actor.role}", Channel.WORKLIST)
        return scope

    def inbox_scope(self) -> LedgerScope:
        """The ledger's scope, for a unit's inbox: a unit member's own unit only (else refused
        and recorded). The inbox shows assignment metadata, no case content: nothing to record
        for a grant."""
        scope = self.ledger_scope(channel=Channel.INBOX)
        if scope.assigned_unit is None:
            self._refuse(f"{INBOX_NOT_FOR_ROLE}:{self.actor.role}", Channel.INBOX)
        return scope

    def ledger_rows(
        self,
        rows: Sequence[LedgerRow],
        *,
        channel: Channel,
        now: datetime,
    ) -> list[tuple[LedgerRow, Decision]]:
        """The rows (already pre-filtered by `ledger_scope`) this reader may see, each with the
        case read's decision on what the ledger holds of the file; rows refused are left out.
        A row whose answer shows identity fields in clear (`row_disclosure`) is recorded as one
        `CaseAccessed` (rule `<channel>:<rule>`: `ledger`, `lookup`; the case version the row
        is of) before this returns."""
        granted = self._granted(rows, now)
        self._record(
            [
                (
                    row.case_id,
                    row_disclosure(row, d.fields),
                    f"{channel}:{d.rule}",
                    _row_version(row),
                )
                for row, d in granted
            ],
            channel,
        )
        return granted

    def export_rows(
        self, rows: Sequence[LedgerRow], *, identity: bool, now: datetime
    ) -> ExportGrant:
        """What an export may hold of the rows: each file's granted fields and, with `identity`
        (granted by `export_scope`), its full name and ID number from the event store when the
        access rules grant both on the file's live state. Every file exported with identity
        fields is recorded (rule `export:<rule>`, the case version exported: the live case's
        when identity came from it, else the ledger row's) before this returns."""
        granted = self._granted(rows, now)
        identities = self._identities([r for r, _ in granted], now) if identity else {}
        every_field = frozenset().union(*(d.fields for _, d in granted)) if granted else frozenset()
        columns = export_columns(every_field) if granted else COLUMNS
        lines: list[ExportLine] = []
        disclosures: list[tuple[UUID, frozenset[str], str, int | None]] = []
        for row, decision in granted:
            full = identities.get(row.case_id)
            granting = full[1] if full else decision
            lines.append(ExportLine(row, granting.fields, full[0] if full else None))
            disclosures.append(
                (
                    row.case_id,
                    export_disclosure(row, columns, granting.fields, identity=bool(full)),
                    f"export:{granting.rule}",
                    full[2] if full else _row_version(row),
                )
            )
        self._record(disclosures, Channel.EXPORT)
        return ExportGrant(columns, lines)

    # --- the compliance lists (not case content: access records and refused requests) ---

    def pending_break_glass_reviews(self) -> list[BreakGlassAccessed]:
        self._require_compliance_review()
        return self.application.pending_break_glass_reviews()

    def authentication_refusals(
        self, *, case_id: UUID | None, limit: int
    ) -> list[AuthenticationRefused]:
        self._require_compliance_review()
        return self.application.authentication_refusals(case_id=case_id, limit=limit)

    # --- inside ---

    def _require_compliance_review(self) -> None:
        if self.actor.role is not Role.COMPLIANCE_AUDITOR:
            raise errors.NotPermitted("only compliance auditors review accesses and refusals")
        if self.purpose is not Purpose.COMPLIANCE_REVIEW:
            raise errors.NotPermitted("declare X-Purpose-Of-Use: compliance_review")

    def _refuse(self, rule: str, channel: Channel) -> NoReturn:
        self.application.record_refusal(
            rule,
            actor=self.actor,
            purpose=self.purpose,
            request_id=self.request_id,
            channel=self._via(channel),
            client=self.client,
        )

    def _context(self, scope: CaseScope, now: datetime) -> ReadContext:
        return ReadContext(scope=scope, now=now, grace=self.application.assignment_grace)

    def _granted(
        self, rows: Sequence[LedgerRow], now: datetime
    ) -> list[tuple[LedgerRow, Decision]]:
        found = []
        for row in rows:
            decision = decide(self.actor, self._context(row.case_scope(), now), self.purpose)
            # A ledger is never an emergency's way in: break-glass opens one case, with a reason.
            if decision.granted and not decision.break_glass:
                found.append((row, decision))
        return found

    def _identities(
        self, rows: Sequence[LedgerRow], now: datetime
    ) -> dict[UUID, tuple[tuple[str, str], Decision, int]]:
        """Full name and ID number of each file, from the event store, for the files the access
        rules grant both on the case's live state (the ledger may lag behind it), with the
        version of that state."""
        found: dict[UUID, tuple[tuple[str, str], Decision, int]] = {}
        for row in rows:
            try:
                case: object = self.application.repository.get(row.case_id)
            except (AggregateNotFoundError, DataErased):  # erased since (issue 19): skipped
                continue
            if not isinstance(case, Case):
                continue
            decision = decide(self.actor, self._context(CaseScope.of(case), now), self.purpose)
            if decision.granted and decision.fields >= _EXPORT_IDENTITY:
                found[row.case_id] = (
                    (case.minor["name"], case.minor["id_number"]),
                    decision,
                    case.version,
                )
        return found

    def _record(
        self,
        disclosures: Sequence[tuple[UUID, frozenset[str], str, int | None]],
        channel: Channel,
    ) -> None:
        """One access event per file whose answer shows identity fields in clear, with the rule
        that granted it and the case version shown; all stored in one transaction before
        anything is returned (a failure answers 503 and records none of them)."""
        self.application.record_disclosures(
            [d for d in disclosures if d[1] & IDENTITY_FIELDS],
            actor=self.actor,
            purpose=self.purpose,
            request_id=self.request_id,
            channel=self._via(channel),
            client=self.client,
        )

    # --- the investigation workbench: timeline, knowledge matrix, deadline analysis ---
    # (issue 13; the analyses are projections/investigation, pure functions over the events)
    # Granted only by an investigation order in force naming the reader and the case (rule
    # `investigation_order`): the street under review and compliance auditors (the access log,
    # never the file's content) are refused `investigation_workbench_not_for_role:<role>`,
    # answered as a case not visible. Each read records the fields its answer discloses
    # (`TIMELINE_FIELDS`, ...), and the access log in the same write when the answer names who
    # read; the analysis is built after the record, from the store as it then stands.

    def timeline(self, case_id: UUID, *, as_of: datetime | None) -> dict[str, Any]:
        """The case's timeline (`projections.investigation.timeline`), as of an instant."""
        history = self._workbench(case_id, Channel.TIMELINE, TIMELINE_FIELDS, with_log=True)
        return investigation_timeline(history, as_of=as_of)

    def knowledge(self, case_id: UUID, *, as_of: datetime | None) -> dict[str, Any]:
        """Who knew what of the case, and when (`projections.investigation.knowledge`)."""
        history = self._workbench(case_id, Channel.KNOWLEDGE, KNOWLEDGE_FIELDS, with_log=True)
        return investigation_knowledge(history, as_of=as_of)

    def deadlines(
        self,
        case_id: UUID,
        *,
        now: datetime,
        consultation_due: timedelta,
        sign_for_due: timedelta | None,
    ) -> dict[str, Any]:
        """Each duty on the case met or missed (`projections.investigation.deadlines`)."""
        history = self._workbench(case_id, Channel.DEADLINES, DEADLINE_FIELDS, with_log=False)
        return investigation_deadlines(
            history, now=now, consultation_due=consultation_due, sign_for_due=sign_for_due
        )

    def _workbench(
        self, case_id: UUID, channel: Channel, fields: frozenset[str], *, with_log: bool
    ) -> CaseHistory:
        def order_only(decision: Decision) -> Decision:
            if not decision.granted:
                return decision
            if decision.rule not in WORKBENCH_RULES:
                return Decision(False, f"{WORKBENCH_NOT_FOR_ROLE}:{self.actor.role}")
            return Decision(True, decision.rule, (decision.fields & fields) | {"access_log"})

        self.application.authorise_read(
            case_id,
            self.actor,
            self.purpose,
            self.request_id,
            also_need="access_log" if with_log else None,
            narrow=order_only,
            channel=self._via(channel),
            client=self.client,
        )
        return gather(self.application, case_id)

    # --- investigation reports (gateway/reports) ---

    def investigation_report(self, investigation_id: UUID) -> Investigation:
        """The investigation, once this reader (an investigator it names) was granted every
        case file of it, content and access log, by the case read's rules, each recorded
        before the report is built (`gateway.reports.service.authorise_report`); a refusal
        is stored and answered as a case read's (404, padded)."""
        return authorise_report(
            self.application,
            self.actor,
            self.purpose,
            self.request_id,
            investigation_id,
            client=self.client,
        )

    # --- compliance reports (issue 15: gateway/http/routes/disclosures.py) ---
    # The accounting of disclosures for one minor, the access reports, the FHIR AuditEvent
    # export and the annual audit report show access records (who, when, why, which fields, of
    # which opaque case id), never case content. A compliance auditor declaring
    # `compliance_review` only: anyone else is refused before any read model is read, the
    # refusal stored (`compliance_report_not_for_role:<role>`, 403 not-permitted; a purpose the
    # role may not declare, 403 purpose-not-allowed), channel `compliance`. What an answer
    # shows is recorded before it is returned: one `CaseAccessed` per case file whose access
    # records it shows (fields `access_log`, the case's access log; rule
    # `<report>:compliance_review`), all in one write, or one naming no case (`NO_CASE`) when
    # it shows none (an accounting that found no file, an annual report of counts).

    def compliance_report_scope(self) -> None:
        """Refuse (and record) anyone but a compliance auditor declaring compliance_review."""
        if self.purpose not in ROLE_PURPOSES[self.actor.role]:
            self._refuse(
                f"{PURPOSE_NOT_ALLOWED}:{self.actor.role}:{self.purpose}", Channel.COMPLIANCE
            )
        if self.actor.role is not Role.COMPLIANCE_AUDITOR:
            self._refuse(f"{COMPLIANCE_REPORT_NOT_FOR_ROLE}:{self.actor.role}", Channel.COMPLIANCE)

    def record_compliance_report(self, report: str, case_ids: Iterable[UUID | None]) -> None:
        """Store what a compliance report discloses, before it is returned (see above)."""
        self.compliance_report_scope()
        covered = list(dict.fromkeys(c for c in case_ids if c is not None)) or [NO_CASE]
        self.application.record_disclosures(
            [(c, _ACCESS_LOG, f"{report}:{Purpose.COMPLIANCE_REVIEW}", None) for c in covered],
            actor=self.actor,
            purpose=self.purpose,
            request_id=self.request_id,
            channel=self._via(Channel.COMPLIANCE),
            client=self.client,
        )


def _row_version(row: LedgerRow) -> int | None:
    """The version of the case a ledger row holds (the ledger follows the store, and may lag
    behind the live case: what was shown is the row's)."""
    version = row.row["version"]
    return int(version) if version is not None else None
