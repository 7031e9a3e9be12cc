"""Access records as FHIR R5 `AuditEvent` resources in a `Bundle` (issue 15): what a regulator's
or a partner's system imports without knowing casetrail.

One `AuditEvent` per access record (`domain.compliance.records.AccessRecord`), holding no case
content and nothing identifying of the child:
- `id`: the access event's id; `recorded` and `occurredDateTime`: when it was stored;
- `category`: DICOM 110110 "Patient Record"; `code`: what happened, casetrail's own
  `RecordKind` (`read`, `refused_read`, `refused_command`) in `CODE_SYSTEM`; `action`: `R` for
  a read, `E` for a command;
- `agent[0]`: the person (`who.identifier` = the user id in `USER_SYSTEM`, `role` = the
  casetrail role in `ROLE_SYSTEM`, `requestor` true, the client's address as `networkString`),
  with the purpose of use as its `authorization`; `agent[1]`: the person's unit as an
  Organization (`who.type` Organization, `who.identifier` = "<street>/<unit>" in `UNIT_SYSTEM`);
- `entity[0]`: the case as an opaque reference (`what.identifier` = the case's uuid in
  `CASE_SYSTEM`, no display), the fields disclosed and the channel as `detail` (names, never
  values), the refused command's name too; no entity when the access named no case;
- `authorization`: the purpose of use: casetrail's code (`PURPOSE_SYSTEM`) and, where one
  exists, the HL7 v3 PurposeOfUse code (`V3_PURPOSES`: emergency → ETREAT, consultation →
  COC, investigation → HLEGAL, compliance_review → HCOMPL, guardian_request → PATRQT); a
  break-glass read adds BTG
  (break the glass), coded as the emergency override it is;
- `outcome.code`: `0` (success) when granted, `4` (minor failure) when refused, with the
  deciding rule as `outcome.detail` (`RULE_SYSTEM`) either way;
- `source.observer`: the service itself (a Device identified as `casetrail`).

The bundle is a `searchset` with `total`, `self` and `next` links (keyset paging by store
position), each entry `search.mode` = `match`. Every bundle the tests produce is validated with
the `fhir.resources` R5 models (tests/integration/test_fhir_audit_events.py); the code systems are
described in docs/compliance-reports.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from domain.compliance.records import AccessRecord, RecordKind

MEDIA_TYPE: Final = "application/fhir+json"

_BASE: Final = "urn:casetrail:fhir"
CODE_SYSTEM: Final = f"{_BASE}:access-kind"
ROLE_SYSTEM: Final = f"{_BASE}:role"
PURPOSE_SYSTEM: Final = f"{_BASE}:purpose-of-use"
RULE_SYSTEM: Final = f"{_BASE}:access-rule"
CHANNEL_SYSTEM: Final = f"{_BASE}:channel"
USER_SYSTEM: Final = f"{_BASE}:user"
UNIT_SYSTEM: Final = f"{_BASE}:unit"
CASE_SYSTEM: Final = f"{_BASE}:case"
SERVICE_SYSTEM: Final = f"{_BASE}:service"

V3_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DICOM: Final = "http://dicom.nema.org/resources/ontology/DCM"
OUTCOME_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_ROLE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"

# casetrail purposes with an HL7 v3 PurposeOfUse equivalent; the others carry casetrail's code
# alone (intervention and follow-up of a child's early-warning issue have no v3 code).
V3_PURPOSES: Final = {
    "emergency": ("ETREAT", "Emergency Treatment"),
    "consultation": ("COC", "coordination of care"),
    "investigation": ("HLEGAL", "legal"),
    "compliance_review": ("HCOMPL", "health compliance"),
    "guardian_request": ("PATRQT", "patient requested"),
}
BREAK_THE_GLASS: Final = ("BTG", "break the glass")

KIND_DISPLAY: Final = {
    RecordKind.READ: "查阅（已披露）",
    RecordKind.REFUSED_READ: "查阅被拒绝",
    RecordKind.REFUSED_COMMAND: "操作被拒绝",
}
SUCCESS: Final = ("0", "Success")
REFUSED: Final = ("4", "Minor failure")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def _instant(moment: datetime) -> str:
    """An instant as FHIR wants it: with its offset (the store's timestamps are UTC)."""
    return moment.isoformat()


def purpose_of_use(record: AccessRecord) -> list[dict[str, Any]]:
    """The purpose of use as CodeableConcepts: casetrail's code with the v3 one where it
    exists; a break-glass read adds v3 BTG. Empty for a refused command (it declares none)."""
    concepts: list[dict[str, Any]] = []
    if record.purpose:
        codings = [_coding(PURPOSE_SYSTEM, record.purpose)]
        v3 = V3_PURPOSES.get(record.purpose)
        if v3 is not None:
            codings.append(_coding(V3_ACT_REASON, *v3))
        concepts.append({"coding": codings})
    if record.break_glass:
        concepts.append({"coding": [_coding(V3_ACT_REASON, *BREAK_THE_GLASS)]})
    return concepts


def audit_event(record: AccessRecord) -> dict[str, Any]:
    """The `AuditEvent` of one access record (JSON, as FHIR R5 defines it)."""
    authorization = purpose_of_use(record)
    person: dict[str, Any] = {
        "type": {"coding": [_coding(SECURITY_ROLE_TYPE, "humanuser", "human user")]},
        "role": [{"coding": [_coding(ROLE_SYSTEM, record.role or "unknown")]}],
        "who": {
            "type": "Practitioner",
            "identifier": {"system": USER_SYSTEM, "value": record.user or "unknown"},
        },
        "requestor": True,
    }
    if record.client_address:
        person["networkString"] = record.client_address
    if authorization:
        person["authorization"] = authorization
    unit: dict[str, Any] = {
        "type": {"coding": [_coding(SECURITY_ROLE_TYPE, "datacollector", "data collector")]},
        "who": {
            "type": "Organization",
            "identifier": {
                "system": UNIT_SYSTEM,
                "value": f"{record.street or '-'}/{record.unit or '-'}",
            },
        },
        "requestor": False,
    }
    granted = record.kind is RecordKind.READ
    outcome_code = SUCCESS if granted else REFUSED
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(record.event_id),
        "category": [{"coding": [_coding(DICOM, "110110", "Patient Record")]}],
        "code": {"coding": [_coding(CODE_SYSTEM, str(record.kind), KIND_DISPLAY[record.kind])]},
        "action": "E" if record.kind is RecordKind.REFUSED_COMMAND else "R",
        "severity": "informational" if granted else "warning",
        "occurredDateTime": _instant(record.at),
        "recorded": _instant(record.at),
        "outcome": {
            "code": _coding(OUTCOME_SYSTEM, *outcome_code),
            "detail": [{"coding": [_coding(RULE_SYSTEM, record.rule or "unknown")]}],
        },
        "agent": [person, unit],
        "source": {
            "observer": {
                "type": "Device",
                "identifier": {"system": SERVICE_SYSTEM, "value": "casetrail"},
            },
        },
    }
    if authorization:
        resource["authorization"] = authorization
    if record.case_id is not None:
        resource["entity"] = [_entity(record)]
    return resource


def _entity(record: AccessRecord) -> dict[str, Any]:
    details: list[dict[str, Any]] = [
        {"type": {"coding": [_coding(CHANNEL_SYSTEM, "channel")]}, "valueString": record.channel}
    ]
    if record.fields:
        details.append(
            {
                "type": {"coding": [_coding(f"{_BASE}:detail", "fields")]},
                "valueString": ",".join(record.fields),
            }
        )
    if record.command:
        details.append(
            {
                "type": {"coding": [_coding(f"{_BASE}:detail", "command")]},
                "valueString": record.command,
            }
        )
    if record.case_version is not None:
        details.append(
            {
                "type": {"coding": [_coding(f"{_BASE}:detail", "case_version")]},
                "valueInteger": record.case_version,
            }
        )
    return {
        "what": {"identifier": {"system": CASE_SYSTEM, "value": str(record.case_id)}},
        "role": {"coding": [_coding(OBJECT_ROLE, "4", "Domain Resource")]},
        "detail": details,
    }


def bundle(
    records: Sequence[AccessRecord],
    *,
    self_url: str,
    next_url: str | None,
    total: int | None = None,
) -> dict[str, Any]:
    """A `searchset` Bundle of the records' AuditEvents, in store order. `total`: how many
    match the search in all (left out when not counted)."""
    found: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": self_url}],
    }
    if records:  # FHIR JSON has no empty arrays: no match, no `entry`
        found["entry"] = [
            {
                "fullUrl": f"urn:uuid:{r.event_id}",
                "resource": audit_event(r),
                "search": {"mode": "match"},
            }
            for r in records
        ]
    if next_url is not None:
        found["link"].append({"relation": "next", "url": next_url})
    if total is not None:
        found["total"] = total
    return found
