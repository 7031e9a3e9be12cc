"""A small world for the retention tests: an encrypted store (data keys), files of synthetic
minors reported and closed at instants in the past (the domain's clock, `domain.clock.using`),
and the people who act on them. Names come from Faker zh_CN; ID numbers use an area code no
province has (tests/domain/builders.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from uuid import UUID

from domain import clock
from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import Role
from gateway.store.eventstore import new_key_text, store_environment
from tests.domain.builders import COORDINATOR, REPORTER, STREET, report_body

AUDITOR: Final = Actor("auditor-1", Role.COMPLIANCE_AUDITOR, "county-compliance", STREET)
OTHER_COORDINATOR: Final = Actor(
    "coordinator-2", Role.COORDINATOR, "xiaoxi-governance-office", "xiaoxi-street"
)
OPERATOR: Final = {"user": "cli:test", "role": "operator", "unit": "", "street": ""}


def open_store(url: str, key: str | None = None) -> tuple[CaseTrail, str]:
    """The application on an encrypted store at `url` (a new event key unless given)."""
    key = key or new_key_text()
    env = store_environment(url, [key])
    env["CASETRAIL_DATA_KEY_CACHE_SECONDS"] = "0"  # each test sees a destroyed key at once
    return CaseTrail(env=env), key


@contextmanager
def at(day: date) -> Iterator[None]:
    """The domain's clock at noon (Beijing) of `day`, advancing a second per reading."""
    moment = [datetime.combine(day, time(4), tzinfo=UTC)]

    def tick() -> datetime:
        moment[0] += timedelta(seconds=1)
        return moment[0]

    with clock.using(tick):
        yield


def closed_file(
    app: CaseTrail,
    *,
    born: date,
    found_on: date,
    closed_on: date,
    body: dict[str, Any] | None = None,
) -> UUID:
    """A file of a minor born on `born`, reported on `found_on` and closed on `closed_on`."""
    body = body or report_body(born=born, found_on=found_on)
    with at(found_on):
        case_id = app.report_clue(cmd.ReportClue.model_validate(body), REPORTER)
    with at(closed_on):
        app.change_case(
            case_id,
            COORDINATOR,
            "close",
            lambda c: c.close(
                cmd.CloseCase(reason="resolved", note="问题已化解。"), by=COORDINATOR.as_record()
            ),
        )
    return case_id


def open_file(app: CaseTrail, body: dict[str, Any]) -> UUID:
    """A file reported (and left open) on the body's `found_on`."""
    with at(date.fromisoformat(body["found_on"])):
        return app.report_clue(cmd.ReportClue.model_validate(body), REPORTER)


def same_minor(app: CaseTrail, case_id: UUID, *, found_on: date) -> dict[str, Any]:
    """A report body naming the minor of `case_id` again (another file of the same minor)."""
    case: object = app.repository.get(case_id)
    assert isinstance(case, Case)
    body = report_body(found_on=found_on, born=date.fromisoformat(case.minor["date_of_birth"]))
    body["minor"] = dict(case.minor)
    return body


def row_of(rows: list[dict[str, Any]], stream_id: UUID) -> dict[str, Any]:
    found = [r for r in rows if r["stream_id"] == str(stream_id)]
    assert len(found) == 1, f"{stream_id} listed {len(found)} times"
    return found[0]
