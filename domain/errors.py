"""Named domain errors: each says which rule was broken and what to do instead.

The HTTP layer maps `status` onto the response; `field` names the input at fault when there is one.
"""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the model refused a command. Nothing was written."""

    status = 409
    code = "domain_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class CaseNotFound(DomainError):
    status = 404
    code = "case_not_found"


class CaseClosed(DomainError):
    code = "case_closed"


class CaseNotClosed(DomainError):
    code = "case_not_closed"


class UnknownAssignment(DomainError):
    status = 404
    code = "unknown_assignment"


class UnitOfAnotherStreet(DomainError):
    """A registered unit belongs to one street: only that street's files may be assigned to it."""

    status = 422
    code = "unit_of_another_street"


class UnitNotRegistered(DomainError):
    """An assignment goes only to a registered unit: an unregistered one would never be told."""

    status = 422
    code = "unit_not_registered"


class AssignmentNotHeld(DomainError):
    status = 403
    code = "assignment_not_held"


class AssignmentAlreadyAcknowledged(DomainError):
    code = "assignment_already_acknowledged"


class AssignmentEnded(DomainError):
    code = "assignment_ended"


class AssignmentNotSignedFor(DomainError):
    """A result (办结反馈) comes from a unit that signed for the task (签收) first."""

    code = "assignment_not_signed_for"


class DuplicateAssignment(DomainError):
    code = "duplicate_assignment"


class RiskBelowFloor(DomainError):
    status = 422
    code = "risk_below_floor"


class GuardianshipLetterNotApplicable(DomainError):
    status = 422
    code = "guardianship_letter_not_applicable"


class DateOutOfOrder(DomainError):
    status = 422
    code = "date_out_of_order"


class NotPermitted(DomainError):
    """The actor's role may not perform this command at all."""

    status = 403
    code = "not_permitted"


class OrderExpiryInvalid(DomainError):
    status = 422
    code = "order_expiry_invalid"


class OrderNotActive(DomainError):
    code = "order_not_active"


class UnknownAccessRecord(DomainError):
    status = 404
    code = "unknown_access_record"


class AlreadyReviewed(DomainError):
    code = "already_reviewed"


# --- investigations (domain/investigations.py) ---------------------------------------------------


class InvestigationNotFound(DomainError):
    """No investigation with this id is visible to the caller (missing and not-yours alike)."""

    status = 404
    code = "investigation_not_found"


class InvestigationInvalid(DomainError):
    status = 422
    code = "investigation_invalid"


class UnknownRectification(DomainError):
    status = 404
    code = "unknown_rectification"


class RectificationAlreadyCompleted(DomainError):
    code = "rectification_already_completed"


class EvidenceUnknown(DomainError):
    """A finding cites a store position that holds no event."""

    status = 422
    code = "evidence_unknown"


# --- corrections, transfers and ledger submissions (issue 17) ------------------------------------


class NothingToCorrect(DomainError):
    """A correction that changes no value: nothing to record."""

    status = 422
    code = "nothing_to_correct"


class CorrectionInconsistent(DomainError):
    """The corrected details disagree with each other (ID number, date of birth, gender)."""

    status = 422
    code = "correction_inconsistent"


class NothingToTransfer(DomainError):
    status = 422
    code = "nothing_to_transfer"


class StreetNotRegistered(DomainError):
    """A transfer names a street no registered unit belongs to: nobody there would see it."""

    status = 422
    code = "street_not_registered"


class SubmissionInvalid(DomainError):
    status = 422
    code = "submission_invalid"


class SubmissionNotFound(DomainError):
    status = 404
    code = "submission_not_found"


class SubmissionAlreadyReceived(DomainError):
    code = "submission_already_received"
