"""A guardian's requests about a minor's personal information (issue 19): to see it (and have a
copy), to correct it, to delete it (个人信息保护法 第四十五条、第四十六条、第四十七条; for a minor,
the guardian exercises these rights, 第三十一条), each recorded with its handling and outcome.

- `GuardianRequest`, one aggregate per request: `GuardianRequestReceived` (the kind, the case
  file, who asked: the guardian's relation to the minor and how their identity was checked,
  never their name or number; the street; the day it came in and the day it is due), then one
  outcome, `GuardianRequestAnswered` (what was done, linked to what it did) or
  `GuardianRequestRefused` (the ground, a reason, and for a held erasure the holds' reasons).
  A request has one outcome: a second is refused (`GuardianRequestClosed`, 409).
- Its stream is encrypted under a data key of its own (`domain.retention.KeyScope.REQUEST`):
  a refusal's reason is a person's text. It outlives the case file it names: after a deletion,
  the request still shows that the file was erased, when, and on whose request.
- Due: `DEFAULT_DAYS` (15) calendar days after the local day it came in (PIPL 第五十条 asks for
  a timely answer and names no number; 15 days is the service's default, set by
  `CASETRAIL_GUARDIAN_REQUEST_DAYS`); `overdue` once that day has passed without an outcome.
- Handling (`GuardianRequests`): access is answered by the HTTP gateway, which reads the file
  through the one audited reader with purpose `guardian_request` (`domain.access` decides the
  fields the law allows, `GUARDIAN_COPY_FIELDS`) together with its accounting of disclosures,
  then records the outcome here (`answer_access`); a correction goes through the file's own
  correction (`Case.correct_details`, docs/corrections.md), the outcome naming the case
  version it made; a deletion is `CaseTrail.erase` (hold-checked), an `ErasureHeld` recorded as
  a refusal naming the holds.
- Who: `domain.permissions` (`receive_guardian_request`, `refuse_guardian_request`,
  `answer_guardian_access`, `answer_guardian_correction`, `answer_guardian_deletion`): the
  case's street's coordinator; the compliance auditor may receive, refuse and erase (never
  read the file). A refused command is recorded (`CommandRefused`).

Proven by tests/retention/test_guardian_requests.py.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from domain import commands as cmd
from domain import errors
from domain.access import Actor, CaseScope
from domain.case import Case
from domain.permissions import require_permission
from domain.quarters import local_date
from domain.retention import DataErased, ErasureHeld, KeyScope
from domain.taxonomy import GuardianRelation, Role

if TYPE_CHECKING:
    from domain.application import CaseTrail

# Calendar days to answer in (CASETRAIL_GUARDIAN_REQUEST_DAYS).
DEFAULT_DAYS: Final = 15
ENV_DAYS: Final = "GUARDIAN_REQUEST_DAYS"
# The rule an erasure on a guardian's request is recorded under (`DataKeyDestroyed.rule`).
ERASURE_RULE: Final = "guardian_request"


class RequestKind(StrEnum):
    ACCESS = "access"  # 查阅、复制 (第四十五条)
    CORRECTION = "correction"  # 更正、补充 (第四十六条)
    DELETION = "deletion"  # 删除 (第四十七条)


# The law each kind is exercised under (recorded with the request, and as an erasure's basis).
BASIS: Final = {
    RequestKind.ACCESS: "个人信息保护法 第四十五条（第三十一条：未成年人的监护人代为行使）",
    RequestKind.CORRECTION: "个人信息保护法 第四十六条（第三十一条：未成年人的监护人代为行使）",
    RequestKind.DELETION: "个人信息保护法 第四十七条（第三十一条：未成年人的监护人代为行使）",
}

KIND_LABELS: Final = {
    RequestKind.ACCESS: "查阅复制",
    RequestKind.CORRECTION: "更正补充",
    RequestKind.DELETION: "删除",
}


class IdentityCheck(StrEnum):
    """How the person who asked was established as the minor's guardian (the document's kind,
    never its number)."""

    ID_CARD_AND_HOUSEHOLD_REGISTER = "id_card_and_household_register"  # 身份证与户口簿
    ID_CARD_AND_BIRTH_CERTIFICATE = "id_card_and_birth_certificate"  # 身份证与出生医学证明
    GUARDIANSHIP_DOCUMENT = "guardianship_document"  # 指定监护的文书
    KNOWN_GUARDIAN_ON_FILE = "known_guardian_on_file"  # 档案所载监护人，经当面核对


class RefusalGround(StrEnum):
    """Why a request was not (or not wholly) granted."""

    HELD = "held"  # the file is under a hold (an investigation...): erasure refused for now
    IDENTITY_NOT_VERIFIED = "identity_not_verified"
    NOT_A_GUARDIAN = "not_a_guardian"
    # 第十八条、第三十五条: a state organ's duty the disclosure or erasure would impede, or a
    # law that requires keeping the information.
    EXCEPTION_BY_LAW = "exception_by_law"


class Outcome(StrEnum):
    DISCLOSED = "disclosed"
    CORRECTED = "corrected"
    ERASED = "erased"
    REFUSED = "refused"


class GuardianRequestClosed(errors.DomainError):
    """The request has its outcome already."""

    code = "guardian_request_closed"


class GuardianRequestNotFound(errors.DomainError):
    status = 404
    code = "guardian_request_not_found"


class AnswerIncomplete(errors.DomainError):
    status = 422
    code = "answer_incomplete"


class WrongKindOfRequest(errors.DomainError):
    status = 422
    code = "wrong_kind_of_request"


# --- commands -------------------------------------------------------------------------------


class ReceiveGuardianRequest(cmd.Command):
    """A guardian asked, in person or in writing, to see, correct or delete the data a file
    holds on their child. Nothing identifying the guardian is taken: their relation to the
    minor and the kind of documents their identity was checked against."""

    kind: RequestKind
    case_id: UUID
    relation: GuardianRelation
    identity_checked: IdentityCheck


class RefuseGuardianRequest(cmd.Command):
    ground: RefusalGround
    reason: cmd.Note


# --- the aggregate --------------------------------------------------------------------------


class GuardianRequest(Aggregate):
    """One guardian's request about one case file, and its single outcome."""

    @event("GuardianRequestReceived")
    def __init__(
        self,
        *,
        kind: str,
        case_id: UUID,
        street: str,
        requester: dict[str, str],
        basis: str,
        received_on: str,
        due_on: str,
        by: dict[str, str],
    ) -> None:
        self.kind = kind
        self.case_id = case_id
        self.street = street
        self.requester = requester
        self.basis = basis
        self.received_on = received_on
        self.due_on = due_on
        self.received_by = {k: by.get(k) for k in ("role", "unit", "street", "user")}
        self.outcome: dict[str, Any] | None = None

    def _require_open(self) -> None:
        if self.outcome is not None:
            raise GuardianRequestClosed(
                f"this request was {self.outcome['outcome']} already; a new request of the "
                "guardian is recorded as a new request"
            )

    def answer(self, outcome: Outcome, details: dict[str, Any], *, by: dict[str, str]) -> None:
        self._require_open()
        self._answered(outcome=str(outcome), details=details, by=by)

    @event("GuardianRequestAnswered")
    def _answered(
        self,
        outcome: str,
        details: dict[str, Any],
        by: dict[str, str],
        timestamp: datetime | None = None,
    ) -> None:
        self.outcome = {
            "outcome": outcome,
            "at": timestamp.isoformat() if timestamp else None,
            "details": details,
            "by": {k: by.get(k) for k in ("role", "unit", "street", "user")},
        }

    def refuse(
        self,
        ground: RefusalGround,
        reason: str,
        *,
        holds: list[dict[str, str]] | None = None,
        by: dict[str, str],
    ) -> None:
        self._require_open()
        self._refused(ground=str(ground), reason=reason, holds=holds or [], by=by)

    @event("GuardianRequestRefused")
    def _refused(
        self,
        ground: str,
        reason: str,
        holds: list[dict[str, str]],
        by: dict[str, str],
        timestamp: datetime | None = None,
    ) -> None:
        self.outcome = {
            "outcome": str(Outcome.REFUSED),
            "at": timestamp.isoformat() if timestamp else None,
            "ground": ground,
            "reason": reason,
            "holds": holds,
            "by": {k: by.get(k) for k in ("role", "unit", "street", "user")},
        }

    def overdue(self, today: date) -> bool:
        return self.outcome is None and today > date.fromisoformat(self.due_on)

    def as_dict(self, today: date | None = None) -> dict[str, Any]:
        today = today or local_date(datetime.now(UTC))
        return {
            "id": str(self.id),
            "kind": self.kind,
            "kind_label": KIND_LABELS.get(RequestKind(self.kind), self.kind),
            "case_id": str(self.case_id),
            "street": self.street,
            "requester": self.requester,
            "basis": self.basis,
            "received_on": self.received_on,
            "received_at": self.created_on.isoformat(),
            "received_by": self.received_by,
            "due_on": self.due_on,
            "status": "open" if self.outcome is None else "closed",
            "overdue": self.overdue(today),
            "outcome": self.outcome,
        }


# --- handling -------------------------------------------------------------------------------


def _by(actor: Actor) -> dict[str, str]:
    return actor.as_record()


class GuardianRequests:
    """The handling of guardians' requests over one `CaseTrail` (its store, its rules)."""

    def __init__(self, application: CaseTrail) -> None:
        self.application = application

    # A refused command is stored as the application's commands store theirs (`CommandRefused`).
    def record_command_refusal(
        self, actor: Actor, command: str, case_id: UUID | None, rule: str
    ) -> Any:
        return self.application.record_command_refusal(actor, command, case_id, rule)

    def _save(self, request: GuardianRequest) -> None:
        try:
            self.application.save(request)
        except IntegrityError:
            # Two people answered at once: the other's outcome was stored first.
            raise GuardianRequestClosed(
                "this request was answered meanwhile by someone else; read it again"
            ) from None

    @property
    def days(self) -> int:
        return int(self.application.env.get(ENV_DAYS) or DEFAULT_DAYS)

    def _case(self, case_id: UUID) -> Case:
        try:
            found: object = self.application.repository.get(case_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, Case):
            raise errors.CaseNotFound(f"no case {case_id} is visible to you")
        return found

    def _permitted(self, actor: Actor, action: str, case_id: UUID) -> Case:
        """The case, once `action` is permitted on it; a refusal is recorded first."""
        try:
            case = self._case(case_id)
            require_permission(actor, action, CaseScope.of(case))
        except errors.DomainError as refused:
            # `domain.application.NOT_VISIBLE_RULE` (not imported: that module imports this one).
            rule = "not_visible" if refused.status == 404 else refused.code
            if refused.status in (403, 404):
                self.record_command_refusal(actor, action, case_id, rule)
            raise
        return case

    def get(self, request_id: UUID) -> GuardianRequest:
        try:
            found: object = self.application.repository.get(request_id)
        except (AggregateNotFoundError, DataErased):
            found = None
        if not isinstance(found, GuardianRequest):
            raise GuardianRequestNotFound("no guardian's request with this id is visible to you")
        return found

    def visible(self, actor: Actor, request: GuardianRequest) -> bool:
        """Coordinators see the requests of their street: the file's street when the request
        came in, or the file's street now (a file transferred since); compliance auditors see
        every request."""
        if actor.role is Role.COMPLIANCE_AUDITOR:
            return True
        if actor.role is not Role.COORDINATOR:
            return False
        if actor.street == request.street:
            return True
        try:
            return self._case(request.case_id).street == actor.street
        except (errors.CaseNotFound, DataErased):
            return False

    def one(self, actor: Actor, request_id: UUID) -> GuardianRequest:
        request = self.get(request_id)
        if not self.visible(actor, request):
            raise GuardianRequestNotFound("no guardian's request with this id is visible to you")
        return request

    def all(self, actor: Actor) -> list[GuardianRequest]:
        """Every request the actor may see, oldest first (a scan of the received facts: such
        requests are few; an erased request is left out)."""
        found = []
        for notification in self.application.notifications(topics=(_RECEIVED_TOPIC,)):
            try:
                request = self.get(UUID(str(notification.originator_id)))
            except GuardianRequestNotFound:
                continue
            if self.visible(actor, request):
                found.append(request)
        return found

    def receive(
        self, command: ReceiveGuardianRequest, actor: Actor, *, now: datetime | None = None
    ) -> GuardianRequest:
        case = self._permitted(actor, "receive_guardian_request", command.case_id)
        today = local_date(now or datetime.now(UTC))
        kind = RequestKind(command.kind)
        request = GuardianRequest(
            kind=str(kind),
            case_id=command.case_id,
            street=case.street,
            requester={
                "relation": str(command.relation),
                "identity_checked": str(command.identity_checked),
            },
            basis=BASIS[kind],
            received_on=today.isoformat(),
            due_on=(today + timedelta(days=self.days)).isoformat(),
            by=_by(actor),
        )
        self._save(request)
        return request

    def _open(self, actor: Actor, request_id: UUID, kind: RequestKind | None) -> GuardianRequest:
        request = self.one(actor, request_id)
        if kind is not None and request.kind != kind:
            raise WrongKindOfRequest(
                f"this is a request of kind '{request.kind}': answer it as such",
                field="kind",
            )
        request._require_open()
        return request

    def refuse(
        self, request_id: UUID, command: RefuseGuardianRequest, actor: Actor
    ) -> GuardianRequest:
        request = self._open(actor, request_id, None)
        self._permitted(actor, "refuse_guardian_request", request.case_id)
        request.refuse(command.ground, command.reason, by=_by(actor))
        self._save(request)
        return request

    def may_answer_access(self, actor: Actor, request_id: UUID) -> GuardianRequest:
        """The open access request, once the actor may answer it (before anything is read)."""
        request = self._open(actor, request_id, RequestKind.ACCESS)
        self._permitted(actor, "answer_guardian_access", request.case_id)
        return request

    def answer_access(
        self,
        request_id: UUID,
        actor: Actor,
        *,
        fields: list[str],
        disclosures: int,
        read_request_id: str,
    ) -> GuardianRequest:
        """Record that the copy was handed over: which fields, how many disclosures the
        accounting listed, and the request id its access events carry (no content)."""
        request = self.may_answer_access(actor, request_id)
        request.answer(
            Outcome.DISCLOSED,
            {"fields": sorted(fields), "disclosures": disclosures, "request_id": read_request_id},
            by=_by(actor),
        )
        self._save(request)
        return request

    def answer_correction(
        self, request_id: UUID, correction: cmd.CorrectDetails, actor: Actor
    ) -> GuardianRequest:
        """The correction made through the file's own (its checks, its history, its lookups),
        then the outcome naming the version of the file it made and the fields it changed."""
        request = self._open(actor, request_id, RequestKind.CORRECTION)
        self._permitted(actor, "answer_guardian_correction", request.case_id)

        def correct(case: Case) -> tuple[int, list[str]]:
            case.correct_details(correction, by=_by(actor))
            changed = [c["field"] for c in case.corrections[-1]["changes"]]
            return case.version, changed

        version, changed = self.application.change_case(
            request.case_id, actor, "correct_details", correct
        )
        request.answer(
            Outcome.CORRECTED, {"case_version": version, "fields": changed}, by=_by(actor)
        )
        self._save(request)
        return request

    def answer_deletion(self, request_id: UUID, actor: Actor) -> GuardianRequest:
        """Erase the file (`CaseTrail.erase`, hold-checked); a hold is recorded as a refusal
        naming the holds' reasons. Erased already: answered with that erasure."""
        request = self._open(actor, request_id, RequestKind.DELETION)
        # Erased meanwhile (by retention): `erase` answers the first erasure.
        with suppress(DataErased):
            self._permitted(actor, "answer_guardian_deletion", request.case_id)
        try:
            fact = self.application.erase(
                request.case_id,
                scope=KeyScope.CASE,
                rule=ERASURE_RULE,
                basis=BASIS[RequestKind.DELETION],
                due_on=None,
                by=_by(actor),
            )
        except ErasureHeld as held:
            reasons = sorted({str(h["reason"]) for h in held.holds})
            request.refuse(
                RefusalGround.HELD,
                "存在保全事由，暂不删除：" + "、".join(reasons),
                holds=[{"reason": r} for r in reasons],
                by=_by(actor),
            )
        else:
            request.answer(
                Outcome.ERASED,
                {
                    "erased_at": fact.timestamp.isoformat(),
                    "rule": fact.rule,
                    "key_id": fact.key_id,
                },
                by=_by(actor),
            )
        self._save(request)
        return request


_RECEIVED_TOPIC: Final = get_topic(GuardianRequest.GuardianRequestReceived)  # type: ignore[attr-defined]


def open_access_request(application: CaseTrail, case_id: UUID) -> GuardianRequest | None:
    """The open access request of a guardian about this case, if any: what grants a read with
    purpose `guardian_request` (`domain.access.decide`). A scan of the received facts, made
    only for that purpose (such requests are few)."""
    for notification in application.notifications(topics=(_RECEIVED_TOPIC,)):
        try:
            received: object = application.mapper.to_domain_event(notification)
        except DataErased:
            continue
        if getattr(received, "case_id", None) != case_id:
            continue
        if getattr(received, "kind", None) != RequestKind.ACCESS:
            continue
        request = GuardianRequests(application).get(UUID(str(notification.originator_id)))
        if request.outcome is None:
            return request
    return None
