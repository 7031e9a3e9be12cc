"""Commands: what a caller asks the model to do, validated before anything is written.

Every model forbids unknown fields and bounds every text, so a bad request fails as a whole with
the path of the field at fault (e.g. `minor.id_number`, `guardians.0.phone`). Rules that need the
state of a case (closed, assignment held...) live in the aggregate, not here.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Final, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from domain import identity
from domain.taxonomy import (
    Category,
    ClosingReason,
    DiscoveryMethod,
    FinderRole,
    Gender,
    GuardianRelation,
    LetterReason,
    ProtectionFunction,
    RiskLevel,
    UnitType,
    is_known_subtype,
)

MAX_DESCRIPTION: Final = 2000
MAX_NOTE: Final = 1000


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Code = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$"
    ),
]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NOTE)]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DESCRIPTION)
]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @model_validator(mode="after")
    def _texts_are_clean(self) -> Self:
        for name, value in self:
            if isinstance(value, str):
                try:
                    _no_control_chars(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self


class Minor(Command):
    name: Name
    gender: Gender
    date_of_birth: date
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True)]
    school: ShortText
    grade_class: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] = ""
    village: Code = Field(description="code of the village/community (村社区) where the minor lives")

    @field_validator("id_number")
    @classmethod
    def _id_number_is_valid(cls, value: str) -> str:
        try:
            identity.parse_id_number(value)
        except identity.InvalidIdNumber as exc:
            raise ValueError(f"resident ID number {exc}") from None
        return value

    @model_validator(mode="after")
    def _id_agrees_with_person(self) -> Self:
        born, is_male = identity.parse_id_number(self.id_number)
        if born != self.date_of_birth:
            raise ValueError(
                "date_of_birth disagrees with the date in the resident ID number "
                f"(characters 7-14 say {born.isoformat()}); correct one of them"
            )
        if is_male != (self.gender is Gender.MALE):
            raise ValueError(
                "gender disagrees with the resident ID number (17th digit: odd is male, "
                "even is female); correct one of them"
            )
        today = date.today()
        if self.date_of_birth > today:
            raise ValueError("date_of_birth is in the future")
        if identity.age_on(self.date_of_birth, today) >= identity.ADULT_AGE:
            raise ValueError(
                "date_of_birth: the person is not a minor on the report date "
                f"(aged {identity.age_on(self.date_of_birth, today)}); casetrail files "
                "concern minors only"
            )
        return self


class Guardian(Command):
    name: Name
    relation: GuardianRelation
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)]
    works_away: bool = False

    @field_validator("phone")
    @classmethod
    def _phone_is_valid(cls, value: str) -> str:
        if not identity.is_valid_phone(value):
            raise ValueError(
                "phone must be a mainland mobile number (11 digits starting 13-19) "
                "or a landline with area code such as 0571-88001234"
            )
        return value


class Issue(Command):
    """One early-warning issue, identified by (category, subtype)."""

    category: Category
    subtype: Code

    @model_validator(mode="after")
    def _subtype_belongs_to_category(self) -> Self:
        if not is_known_subtype(self.category, self.subtype):
            raise ValueError(
                f"subtype '{self.subtype}' is not a subtype of category '{self.category}'; "
                "see GET /v1/taxonomy for the codes"
            )
        return self

    def key(self) -> tuple[str, str]:
        return (str(self.category), self.subtype)


Issues = Annotated[list[Issue], Field(min_length=1, max_length=20)]


def _issues_are_distinct(issues: list[Issue]) -> list[Issue]:
    keys = [i.key() for i in issues]
    if len(set(keys)) != len(keys):
        raise ValueError("the same (category, subtype) is listed twice")
    return issues


class Finder(Command):
    role: FinderRole
    unit: Code


def _not_in_future(value: date) -> date:
    if value > date.today():
        raise ValueError("must not be in the future")
    return value


class ReportClue(Command):
    """A new clue: one clue, one file (一线索一档案)."""

    minor: Minor
    guardians: Annotated[list[Guardian], Field(max_length=6)] = []
    issues: Issues
    description: Description
    found_by: Finder
    method: DiscoveryMethod
    found_on: date
    risk: RiskLevel

    _distinct = field_validator("issues")(_issues_are_distinct)
    _found_past = field_validator("found_on")(_not_in_future)

    @model_validator(mode="after")
    def _found_after_birth(self) -> Self:
        if self.found_on < self.minor.date_of_birth:
            raise ValueError("found_on is before the minor's date of birth")
        return self


class Reclassify(Command):
    issues: Issues
    reason: Note
    risk: RiskLevel | None = None

    _distinct = field_validator("issues")(_issues_are_distinct)


class AssessRisk(Command):
    level: RiskLevel
    reason: Note


class HoldConsultation(Command):
    held_on: date
    participants: Annotated[list[Code], Field(min_length=1, max_length=30)]
    decision: Note

    _held_past = field_validator("held_on")(_not_in_future)


class AssignUnit(Command):
    unit: Code
    function: ProtectionFunction
    task: Note
    due_on: date

    @field_validator("due_on")
    @classmethod
    def _due_not_past(cls, value: date) -> date:
        if value < date.today():
            raise ValueError("due date is in the past; choose today or later")
        return value


# Kinds of measure named by the plan.
MEASURES: Final = (
    "guidance_education",
    "family_difficulties",
    "home_visit",
    "psychological_support",
    "referral_police",
    "referral_court",
    "other",
)


class RecordIntervention(Command):
    assignment_id: UUID | None = None
    function: ProtectionFunction
    measure: Annotated[str, Field(json_schema_extra={"enum": list(MEASURES)})]
    notes: Note
    done_on: date

    _done_past = field_validator("done_on")(_not_in_future)

    @field_validator("measure")
    @classmethod
    def _known_measure(cls, value: str) -> str:
        if value not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}")
        return value


class SignGuardianshipLetter(Command):
    guardian_index: Annotated[int, Field(ge=0, le=5)]
    reason: LetterReason
    signed_on: date

    _signed_past = field_validator("signed_on")(_not_in_future)


class RecordFollowUp(Command):
    """The quarterly update (每季度更新一次) or any follow-up visit."""

    visited_on: date
    notes: Note

    _visited_past = field_validator("visited_on")(_not_in_future)


class Escalate(Command):
    to: UnitType | None = None
    to_level: Annotated[str, Field(pattern=r"^(street|county)$")] = "county"
    reason: Note


class CloseCase(Command):
    reason: ClosingReason
    note: Note


class ReopenCase(Command):
    reason: Note


def plain(command: BaseModel) -> dict[str, Any]:
    """The command as JSON-ready values, for an event's payload."""
    return command.model_dump(mode="json")
