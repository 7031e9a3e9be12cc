"""Commands: what a caller asks the model to do, validated before anything is written.

Every model forbids unknown fields and bounds every text, so a bad request fails as a whole with
the path of the field at fault (e.g. `minor.id_number`, `guardians.0.phone`). Rules that need the
state of a case (closed, assignment held...) live in the aggregate, not here.
"""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

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
    # Unicode category Cc: C0 (below 0x20), DEL (0x7f) and C1 (0x80-0x9f), such as 0x9b (CSI).
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value):
        raise ValueError("must not contain control characters")
    return value


_CLEAN = AfterValidator(_no_control_chars)
_TRIM = {"strip_whitespace": True}

Name = Annotated[str, StringConstraints(**_TRIM, min_length=1, max_length=32), _CLEAN]
ShortText = Annotated[str, StringConstraints(**_TRIM, min_length=1, max_length=64), _CLEAN]
OptionalShortText = Annotated[str, StringConstraints(**_TRIM, max_length=32), _CLEAN]
Note = Annotated[str, StringConstraints(**_TRIM, min_length=1, max_length=MAX_NOTE), _CLEAN]
Description = Annotated[
    str, StringConstraints(**_TRIM, min_length=1, max_length=MAX_DESCRIPTION), _CLEAN
]
Code = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$"
    ),
]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Minor(Command):
    name: Name
    gender: Gender
    date_of_birth: date
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True)]
    school: ShortText
    grade_class: OptionalShortText = ""
    village: Code = Field(
        description="code of the village/community (村社区) where the minor lives"
    )

    @field_validator("date_of_birth")
    @classmethod
    def _is_minor_on_report_date(cls, value: date) -> date:
        today = date.today()
        if value > today:
            raise ValueError("date of birth is in the future")
        age = identity.age_on(value, today)
        if age >= identity.ADULT_AGE:
            raise ValueError(
                f"the person is not a minor on the report date (aged {age}); "
                "casetrail files concern minors only"
            )
        return value

    @field_validator("id_number")
    @classmethod
    def _id_number_is_valid(cls, value: str, info: ValidationInfo) -> str:
        try:
            born, is_male = identity.parse_id_number(value)
        except identity.InvalidIdNumber as exc:
            raise ValueError(f"resident ID number {exc}") from None
        # Fields declared earlier are in info.data only when they were valid themselves.
        if "date_of_birth" in info.data and born != info.data["date_of_birth"]:
            raise ValueError(
                "the date in the resident ID number (characters 7-14) disagrees with "
                "date_of_birth; correct one of them"
            )
        if "gender" in info.data and is_male != (info.data["gender"] is Gender.MALE):
            raise ValueError(
                "the resident ID number's 17th digit (odd: male, even: female) disagrees "
                "with gender; correct one of them"
            )
        return value


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

    @field_validator("subtype")
    @classmethod
    def _subtype_belongs_to_category(cls, value: str, info: ValidationInfo) -> str:
        category = info.data.get("category")
        if category is not None and not is_known_subtype(category, value):
            raise ValueError(
                f"'{value}' is not a subtype of category '{category}'; "
                "GET /v1/taxonomy lists the codes"
            )
        return value

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

    @field_validator("found_on")
    @classmethod
    def _found_in_the_past_after_birth(cls, value: date, info: ValidationInfo) -> date:
        _not_in_future(value)
        minor = info.data.get("minor")
        if minor is not None and value < minor.date_of_birth:
            raise ValueError("the clue cannot be found before the minor's date of birth")
        return value


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


class EndAssignment(Command):
    outcome: Annotated[str, Field(pattern=r"^(completed|withdrawn|transferred)$")]


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


class IssueInvestigationOrder(Command):
    """An order for a reverse investigation (一案一倒查): one case, one investigator."""

    case_id: UUID
    investigator: Code = Field(description="the investigator's user id, as in their token")
    reason: Note
    expires_at: AwareDatetime


class RevokeInvestigationOrder(Command):
    reason: Note


class ReviewBreakGlass(Command):
    outcome: Annotated[str, Field(pattern=r"^(justified|unjustified)$")]
    note: Note


BREAK_GLASS_REASON_MIN: Final = 10


def plain(command: BaseModel) -> dict[str, Any]:
    """The command as JSON-ready values, for an event's payload."""
    return command.model_dump(mode="json")
