"""Commands: what a caller asks the model to do, validated before anything is written.

Every model forbids unknown fields and bounds every text, so a bad request fails as a whole with
the path of the field at fault (e.g. `minor.id_number`, `guardians.0.phone`). Rules that need the
state of a case (closed, assignment held, a date before the clue was found...) live in the
aggregate, not here.

Text: every text is NFC-normalised and trimmed. Names and the short texts a ledger is filtered
by (school, class) refuse every invisible or reordering character (`identity.check_name`), so
that an exact lookup of what is seen finds what was stored; notes and descriptions refuse
control characters (newline and tab allowed) and bidirectional controls, and keep other format
characters (a zero-width joiner inside an emoji), since nothing looks them up.

Dates: every date lies between `EARLIEST_DATE` and `LATEST_DATE` (also in the schema); what
happened (found, held, done, signed, visited) is not in the future; a due date is neither past
nor more than `DUE_HORIZON` ahead; a date of birth is a minor's. Comparisons with the file's own
dates are the aggregate's (`domain.case`). Proven in `tests/domain/test_dates.py`,
`tests/domain/test_names.py` and over HTTP in `tests/integration/test_dates.py`,
`tests/integration/test_names.py` and `tests/integration/test_bounds.py` (the schema).

No message quotes a submitted value or anything derived from it (an age, a subtype code).
"""

from __future__ import annotations

import unicodedata
from datetime import date, timedelta
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from domain import clock, identity
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

# No file of this service can concern anything before it (the plan dates from the 2020s); the
# upper bound keeps date arithmetic (the next quarter's end, a day after) far from date.max.
EARLIEST_DATE: Final = date(2000, 1, 1)
LATEST_DATE: Final = date(2099, 12, 31)
# Someone who was a minor on EARLIEST_DATE was born after this.
EARLIEST_BIRTH: Final = date(EARLIEST_DATE.year - identity.ADULT_AGE, 1, 1)
# A task is due within a year: the plan updates every file each quarter, so a deadline further
# out is a typing error, not a plan.
DUE_HORIZON: Final = timedelta(days=366)


def _nfc(value: object) -> object:
    # Runs before the str schema it wraps (declared after StringConstraints), so that the
    # length bounds count a decomposed form as the composed one.
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


def _no_control_chars(value: str) -> str:
    for ch in value:
        # Bidi controls make a note read other than it is stored (all are category Cf).
        if ch in identity.BIDI_CONTROLS:
            raise ValueError("must not contain bidirectional control characters")
        # Cc: C0 (below 0x20), DEL (0x7f) and C1 (0x80-0x9f), such as 0x9b (CSI); Cs: a lone
        # surrogate, which no encoding can store.
        category = unicodedata.category(ch)
        if (category == "Cc" and ch not in "\n\t") or category == "Cs":
            raise ValueError("must not contain control characters")
    return value


def _clean_name(value: str) -> str:
    identity.check_name(value)
    return identity.normalise_name(value)


_NFC = BeforeValidator(_nfc)
_CLEAN = AfterValidator(_no_control_chars)
_NAME = AfterValidator(_clean_name)
_TRIM = {"strip_whitespace": True}

Name = Annotated[str, StringConstraints(**_TRIM, min_length=1, max_length=32), _NFC, _NAME]
ShortText = Annotated[str, StringConstraints(**_TRIM, min_length=1, max_length=64), _NFC, _NAME]
OptionalShortText = Annotated[str, StringConstraints(**_TRIM, max_length=32), _NFC, _NAME]
Note = Annotated[str, StringConstraints(**_TRIM, min_length=1, max_length=MAX_NOTE), _NFC, _CLEAN]
Description = Annotated[
    str, StringConstraints(**_TRIM, min_length=1, max_length=MAX_DESCRIPTION), _NFC, _CLEAN
]


def _date_bounds(earliest: date = EARLIEST_DATE, latest: date = LATEST_DATE) -> Any:
    # JSON Schema's minimum/maximum are for numbers: dates show theirs as formatMinimum/Maximum.
    return Field(
        ge=earliest,
        le=latest,
        json_schema_extra={
            "formatMinimum": earliest.isoformat(),
            "formatMaximum": latest.isoformat(),
        },
    )


def _not_in_future(value: date) -> date:
    if value > clock.local_today():
        raise ValueError("must not be in the future")
    return value


Day = Annotated[date, _date_bounds()]
# A day on which something happened: not in the future.
PastDay = Annotated[date, _date_bounds(), AfterValidator(_not_in_future)]
Code = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$"
    ),
]


class Command(BaseModel):
    # defer_build: each schema is built on its first use, not at import: a process that never
    # validates a command (`casetrail token issue`, issue 23) does not pay for ~40 schemas.
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True
    )


class Minor(Command):
    name: Name
    gender: Gender
    date_of_birth: Annotated[date, _date_bounds(EARLIEST_BIRTH)]
    id_number: Annotated[
        str, StringConstraints(strip_whitespace=True, to_upper=True, max_length=32)
    ]
    school: ShortText
    grade_class: OptionalShortText = ""
    village: Code = Field(
        description="code of the village/community (村社区) where the minor lives"
    )

    @field_validator("date_of_birth")
    @classmethod
    def _is_minor_on_report_date(cls, value: date) -> date:
        today = clock.local_today()
        if value > today:
            raise ValueError("date of birth is in the future")
        if identity.age_on(value, today) >= identity.ADULT_AGE:
            # No age in the message: it is personal data derived from the input.
            raise ValueError(
                f"the person is not a minor (under {identity.ADULT_AGE}) on the report date; "
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
            # The category is one of ours; the submitted subtype is not quoted back.
            raise ValueError(
                f"subtype is not one of category '{category}'; GET /v1/taxonomy lists the codes"
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


class ReportClue(Command):
    """A new clue: one clue, one file (一线索一档案)."""

    minor: Minor
    guardians: Annotated[list[Guardian], Field(max_length=6)] = []
    issues: Issues
    description: Description
    found_by: Finder
    method: DiscoveryMethod
    found_on: PastDay
    risk: RiskLevel

    _distinct = field_validator("issues")(_issues_are_distinct)

    @field_validator("found_on")
    @classmethod
    def _found_after_birth(cls, value: date, info: ValidationInfo) -> date:
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
    held_on: PastDay
    participants: Annotated[list[Code], Field(min_length=1, max_length=30)]
    decision: Note


class AssignUnit(Command):
    unit: Code
    function: ProtectionFunction
    task: Note
    due_on: Day

    @field_validator("due_on")
    @classmethod
    def _due_within_horizon(cls, value: date) -> date:
        today = clock.local_today()
        if value < today:
            raise ValueError("due date is in the past; choose today or later")
        if value > today + DUE_HORIZON:
            raise ValueError(
                f"due date is more than {DUE_HORIZON.days} days ahead; choose a nearer one "
                "and renew the assignment if the work goes on"
            )
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


# --- the unit's duty cycle on an assignment (domain.case): declining, reporting its result ---

# What a unit may recommend when it reports its result (办结反馈).
RECOMMENDATIONS: Final = ("close", "continue")
MAX_RESULT_MEASURES: Final = len(MEASURES)


class DeclineAssignment(Command):
    """The assigned unit declines the task, saying why (e.g. outside its protection function)."""

    reason: Note


class ReportAssignmentResult(Command):
    """办结反馈: the measures the unit took (the plan's kinds of measure, each once), what came
    of them, and whether it recommends closing the file or continuing."""

    measures: Annotated[
        list[Annotated[str, Field(max_length=32, json_schema_extra={"enum": list(MEASURES)})]],
        Field(min_length=1, max_length=MAX_RESULT_MEASURES),
    ]
    outcome: Note
    recommendation: Annotated[str, Field(pattern=r"^(close|continue)$")]

    @field_validator("measures")
    @classmethod
    def _known_measures(cls, value: list[str]) -> list[str]:
        if any(m not in MEASURES for m in value):
            raise ValueError(f"each measure must be one of {', '.join(MEASURES)}")
        if len(set(value)) != len(value):
            raise ValueError("each measure may be listed once")
        return value


class RecordIntervention(Command):
    assignment_id: UUID | None = None
    function: ProtectionFunction
    measure: Annotated[str, Field(json_schema_extra={"enum": list(MEASURES)})]
    notes: Note
    done_on: PastDay

    @field_validator("measure")
    @classmethod
    def _known_measure(cls, value: str) -> str:
        if value not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}")
        return value


class SignGuardianshipLetter(Command):
    guardian_index: Annotated[int, Field(ge=0, le=5)]
    reason: LetterReason
    signed_on: PastDay


class RecordFollowUp(Command):
    """The quarterly update (每季度更新一次) or any follow-up visit."""

    visited_on: PastDay
    notes: Note


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
    expires_at: Annotated[
        AwareDatetime,
        Field(
            json_schema_extra={
                "formatMinimum": f"{EARLIEST_DATE}T00:00:00Z",
                "formatMaximum": f"{LATEST_DATE}T23:59:59Z",
            }
        ),
    ]

    @field_validator("expires_at")
    @classmethod
    def _expires_within_bounds(cls, value: Any) -> Any:
        # Before any arithmetic: an instant near year 1 or 9999 overflows once moved to UTC.
        # The precise rule (in the future, at most 90 days ahead) is `domain.orders`'s.
        if not EARLIEST_DATE <= value.date() <= LATEST_DATE:
            raise ValueError(
                f"expires_at must lie between {EARLIEST_DATE} and {LATEST_DATE}; "
                "an order runs at most 90 days"
            )
        return value


class RevokeInvestigationOrder(Command):
    reason: Note


class ReviewBreakGlass(Command):
    outcome: Annotated[str, Field(pattern=r"^(justified|unjustified)$")]
    note: Note


BREAK_GLASS_REASON_MIN: Final = 10


# --- corrections and transfers (issue 17) ---------------------------------------------------------


class MinorCorrection(Command):
    """The minor's details to correct: only those given change; the others stay as they are.
    The ID number's checksum is checked here; its agreement with the date of birth and the
    gender is checked by the aggregate against the file's values once corrected."""

    name: Name | None = None
    gender: Gender | None = None
    date_of_birth: Annotated[date, _date_bounds(EARLIEST_BIRTH)] | None = None
    id_number: (
        Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, max_length=32)]
        | None
    ) = None
    school: ShortText | None = None
    grade_class: OptionalShortText | None = None

    @field_validator("id_number")
    @classmethod
    def _id_number_is_valid(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            identity.parse_id_number(value)
        except identity.InvalidIdNumber as exc:
            raise ValueError(f"resident ID number {exc}") from None
        return value

    @field_validator("date_of_birth")
    @classmethod
    def _is_minor(cls, value: date | None) -> date | None:
        if value is None:
            return value
        today = clock.local_today()
        if value > today:
            raise ValueError("date of birth is in the future")
        if identity.age_on(value, today) >= identity.ADULT_AGE:
            raise ValueError(
                f"the person is not a minor (under {identity.ADULT_AGE}) today; "
                "casetrail files concern minors only"
            )
        return value


class CorrectDetails(Command):
    """动态更新: a correction of what the file says (a wrong ID number, a changed school or
    phone...), with the reason. Give only what changes; `guardians` replaces the whole list."""

    minor: MinorCorrection | None = None
    guardians: Annotated[list[Guardian], Field(max_length=6)] | None = None
    village: Code | None = Field(
        default=None, description="code of the village/community (村社区) the minor lives in"
    )
    description: Description | None = None
    reason: Note


class TransferCase(Command):
    """The minor moved: the file goes to another street (its coordinator is notified) and/or
    another village. A transfer to another street names the village there."""

    to_street: Code
    to_village: Code | None = None
    reason: Note


def plain(command: BaseModel) -> dict[str, Any]:
    """The command as JSON-ready values, for an event's payload."""
    return command.model_dump(mode="json")
