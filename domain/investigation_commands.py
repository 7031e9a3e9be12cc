"""Commands of investigations (`domain.investigations`): validated before anything is written.

As every command (`domain.commands`): unknown fields forbidden, every text and list bounded,
every date in the service's window, no message quoting a submitted value. The minor's ID number
travels only in a body (`OpenInvestigation.minor`), never in a URL. Proven over HTTP, nothing
stored on a refusal, in `tests/integration/test_investigations.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from domain import identity
from domain.commands import (
    EARLIEST_DATE,
    LATEST_DATE,
    Code,
    Command,
    Day,
    Name,
    Note,
    PastDay,
    ShortText,
)

# A store position: from 1, and at most 2^53 (what a JSON number holds exactly).
MAX_POSITION: Final = 2**53
MAX_INVESTIGATORS: Final = 20
MAX_EVIDENCE: Final = 200

Kind = Literal["suicide", "attempted_suicide", "harm"]
Determination = Literal["fulfilled", "late", "not_fulfilled"]
Position = Annotated[int, Field(ge=1, le=MAX_POSITION)]


def _expiry_in_window(value: Any) -> Any:
    # Before any arithmetic: an instant near year 1 or 9999 overflows once moved to UTC.
    if not EARLIEST_DATE <= value.date() <= LATEST_DATE:
        raise ValueError(
            f"expires_at must lie between {EARLIEST_DATE} and {LATEST_DATE}; "
            "an order runs at most 90 days"
        )
    return value


# The expiry of an order: the bounds of a street's order (`commands.IssueInvestigationOrder`);
# the precise rule (in the future, at most 90 days ahead) is `domain.orders.check_expiry`.
ExpiresAt = Annotated[
    AwareDatetime,
    Field(
        json_schema_extra={
            "formatMinimum": f"{EARLIEST_DATE}T00:00:00Z",
            "formatMaximum": f"{LATEST_DATE}T23:59:59Z",
        }
    ),
    AfterValidator(_expiry_in_window),
]


class MinorOfInvestigation(Command):
    """The minor, by resident ID number (in the body only); the name is optional."""

    id_number: Annotated[
        str, StringConstraints(strip_whitespace=True, to_upper=True, max_length=32)
    ]
    name: Name | None = None

    @field_validator("id_number")
    @classmethod
    def _id_number_is_valid(cls, value: str) -> str:
        try:
            identity.parse_id_number(value)
        except identity.InvalidIdNumber as exc:
            raise ValueError(f"resident ID number {exc}") from None
        return value


class OpenInvestigation(Command):
    """一案一倒查: an incident, the minor, the investigators and the orders' reason and expiry."""

    kind: Kind
    incident_on: PastDay
    minor: MinorOfInvestigation
    investigators: Annotated[
        list[Code], Field(min_length=1, max_length=MAX_INVESTIGATORS, description="user ids")
    ]
    reason: Note
    expires_at: ExpiresAt


class IssueCountyOrder(Command):
    """An order of the county for one investigator: one linked case (`case_id`), or every file
    of the minor (`minor: true`, also linking the minor's files found since the opening)."""

    investigator: Code = Field(description="the investigator's user id, as in their token")
    case_id: UUID | None = None
    # Validated even when left out, so that an order covering nothing is refused by name.
    minor: bool = Field(default=False, validate_default=True)
    reason: Note
    expires_at: ExpiresAt

    @field_validator("minor")
    @classmethod
    def _one_cover(cls, value: bool, info: ValidationInfo) -> bool:
        if "case_id" not in info.data:
            return value  # case_id itself was refused: named there
        if (info.data["case_id"] is not None) != value:
            return value
        raise ValueError("give either case_id (one file) or minor: true (every file of the minor)")


class RevokeCountyOrder(Command):
    reason: Note


class RecordFinding(Command):
    duty: ShortText
    unit: Code
    person: ShortText
    determination: Determination
    evidence: Annotated[
        list[Position],
        Field(max_length=MAX_EVIDENCE, description="store positions of the events relied on"),
    ]
    note: Note


class AddRectification(Command):
    item: Note
    owner: ShortText
    due_on: Day


class CompleteRectification(Command):
    completed_on: PastDay
    note: Note
