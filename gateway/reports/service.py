"""Producing an investigation report: who may have it, the record of its disclosure, and the
record of the report issued. One path for the HTTP route (through the one reader,
`gateway.http.reader.AuditedReader.investigation_report`) and for `casetrail investigate`.

Who: an investigator the investigation names (`Investigation.names`), and then for each case
file of the investigation the case read's own rules (`CaseTrail.authorise_read`: an
investigation order in force), for the case's content and its access log together, since the
report shows both (the timeline and the knowledge matrix are made of accesses). Every grant is
stored as `CaseAccessed` before anything is built, all in one write (`CaseTrail.authorise_reads`);
a refusal is stored alone (no file recorded as disclosed), as `AccessDenied`, and raised as
`AccessRefused`, answered as a case read's refusal (404 "no such case is visible to you",
padded): `investigation_report_not_for:<role>` for someone the investigation does not name,
`no_such_investigation` for an unknown id, or the case read's rule. The report made is
recorded on the investigation as `ReportIssued` (its form and the SHA-256 of the signed
file), so a report shown later can be matched to the one issued.

Proven by tests/reports/test_route.py (the grant and refusals stored, the report issued
recorded) and tests/reports/test_cli.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import errors
from domain.access import Actor, Channel, Client
from domain.application import CaseTrail
from domain.investigations import Investigation
from domain.taxonomy import Purpose, Role
from gateway.evidence.maintainer import Evidence
from gateway.reports.document import build_document
from gateway.reports.render import produce, sha256_hex
from gateway.reports.signing import Form

NOT_FOR: Final = "investigation_report_not_for"
NO_SUCH_INVESTIGATION: Final = "no_such_investigation"
_ISSUE_ATTEMPTS: Final = 5


def authorise_report(
    application: CaseTrail,
    actor: Actor,
    purpose: Purpose,
    request_id: str,
    investigation_id: UUID,
    *,
    client: Client,
) -> Investigation:
    """The investigation, once every case file of it was granted to `actor` and recorded
    (channel `report`, with the client as the service saw it)."""
    try:
        investigation = application.investigation(investigation_id)
    except errors.InvestigationNotFound:
        application.record_refusal(
            NO_SUCH_INVESTIGATION,
            actor=actor,
            purpose=purpose,
            request_id=request_id,
            channel=Channel.REPORT,
            client=client,
        )
    if actor.role is not Role.INVESTIGATOR or not investigation.names(actor.user):
        application.record_refusal(
            f"{NOT_FOR}:{actor.role}",
            actor=actor,
            purpose=purpose,
            request_id=request_id,
            channel=Channel.REPORT,
            client=client,
        )
    # All the files granted and stored in one write, or only the refusal: a report refused
    # for one file records no disclosure of the others.
    application.authorise_reads(
        [UUID(c) for c in investigation.case_ids],
        actor,
        purpose,
        request_id,
        also_need="access_log",
        channel=Channel.REPORT,
        client=client,
    )
    return investigation


def make_report(
    application: CaseTrail,
    evidence: Evidence,
    investigation: Investigation,
    form: Form,
    *,
    actor: Actor,
    key: Ed25519PrivateKey,
    chromium: str,
    consultation_due: timedelta,
) -> bytes:
    """The signed report file (its access already recorded by `authorise_report`), recorded
    as issued on the investigation. `PdfUnavailable` when a pdf cannot be printed."""
    document = build_document(
        application,
        evidence,
        investigation,
        generated_by=actor.as_record(),
        consultation_due=consultation_due,
    )
    data = produce(document, form, key, chromium=chromium)
    application.record_report_issued(investigation.id, form, sha256_hex(data), actor)
    return data
