"""An erased file answered everywhere (issue 19): every read of it and every command on it is
recorded first (a read as `AccessDenied`, a command as `CommandRefused`, rule `erased`), then
answered 410 `erased` saying when and under which rule; never a 5xx. Another process's erasure
reaches a running service within `CASETRAIL_DATA_KEY_CACHE_SECONDS` (here 0: at once)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain.access import IN_PROCESS_CLIENT, Channel
from domain.application import ERASED_RULE, CaseTrail
from domain.clock import local_today
from domain.retention import DataErased
from domain.retention_holds import PlaceHold
from domain.taxonomy import Purpose, Role
from gateway.bootstrap import open_application
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.domain.builders import COORDINATOR
from tests.retention.retention_world import AUDITOR, OPERATOR, closed_file

TODAY = date(2026, 12, 2)
BORN = date(2005, 3, 1)


@pytest.fixture
def settings(home: Path, store_url: str) -> Settings:
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": store_url,
            "CASETRAIL_DATA_KEY_CACHE_SECONDS": "0",
            # The read models are not these tests' (their reaction to erasure is proven apart).
            "CASETRAIL_PROJECTIONS": "off",
        }
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[CaseTrail]:
    found = open_application(settings)
    try:
        yield found
    finally:
        found.close()


def erased_file(app: CaseTrail) -> UUID:
    case_id = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
    (done,) = app.apply_retention(TODAY, OPERATOR)
    assert done["outcome"] == "erased"
    return case_id


def refusals_of(app: CaseTrail, case_id: UUID) -> list[str]:
    return [e.rule for e in app.access_events(case_id) if e.rule == ERASED_RULE]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_reads_and_commands_of_an_erased_file_are_recorded_then_answered_410(
    app: CaseTrail,
) -> None:
    case_id = erased_file(app)
    reads: list[Callable[[], object]] = [
        lambda: app.read_case(case_id, COORDINATOR, Purpose.FOLLOW_UP, "r-1"),
        lambda: app.read_case(case_id, COORDINATOR, Purpose.FOLLOW_UP, "r-2", need="access_log"),
        lambda: app.authorise_reads(
            [case_id],
            AUDITOR,
            Purpose.COMPLIANCE_REVIEW,
            "r-3",
            channel=Channel.API,
            client=IN_PROCESS_CLIENT,
        ),
        lambda: app.read_case_as_of(
            case_id,
            datetime.now(UTC) - timedelta(days=1),
            COORDINATOR,
            Purpose.FOLLOW_UP,
            "r-4",
            channel=Channel.API,
            client=IN_PROCESS_CLIENT,
        ),
    ]
    for number, read in enumerate(reads, start=1):
        with pytest.raises(DataErased) as raised:
            read()
        assert raised.value.status == 410 and raised.value.code == "erased"
        assert "under the rule 'retention'" in raised.value.message
        assert f"erased on {local_today().year}" in raised.value.message
        assert len(refusals_of(app, case_id)) == number  # recorded before the answer

    with pytest.raises(DataErased):
        app.change_case(
            case_id,
            COORDINATOR,
            "record_follow_up",
            lambda c: c.record_follow_up(
                cmd.RecordFollowUp(visited_on=local_today(), notes="回访"),
                by=COORDINATOR.as_record(),
            ),
        )
    with pytest.raises(DataErased):
        app.place_hold(PlaceHold(case_id=case_id, reason="保全"), AUDITOR)
    refused = [(r.command, r.rule, r.case_id) for r in app.command_refusals(case_id=case_id)]
    assert ("record_follow_up", ERASED_RULE, case_id) in refused
    assert ("place_retention_hold", ERASED_RULE, case_id) in refused
    # The erasure is a fact anyone can look up: when, which rule; nothing of the file.
    fact = app.erasure_of(case_id)
    assert fact is not None and fact.rule == "retention" and fact.stream_id == case_id


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_over_http_an_erased_file_is_410_erased_never_a_5xx(
    client: TestClient, auth: TokenFactory, settings: Settings
) -> None:
    app = open_application(settings)
    try:
        case_id = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
        coordinator = auth(Role.COORDINATOR, "chengguan-governance-office", purpose="follow_up")
        assert client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code == 200
        # Erased by another process (the scheduled run, a `casetrail retention apply`).
        assert [o["outcome"] for o in app.apply_retention(TODAY, OPERATOR)] == ["erased"]

        answers = {
            "read": client.get(f"/v1/cases/{case_id}", headers=coordinator),
            "access log": client.get(f"/v1/cases/{case_id}/accesses", headers=coordinator),
            "bundle": client.get(f"/v1/evidence/cases/{case_id}/bundle", headers=coordinator),
            "command": client.post(
                f"/v1/cases/{case_id}/follow-ups",
                json={"visited_on": local_today().isoformat(), "notes": "回访"},
                headers=coordinator,
            ),
            "hold": client.post(
                "/v1/retention/holds",
                json={"case_id": str(case_id), "reason": "保全"},
                headers=auth(Role.COMPLIANCE_AUDITOR, "county-compliance"),
            ),
        }
        for what, answer in answers.items():
            assert answer.status_code == 410, (what, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "application/problem+json", what
            body = answer.json()
            assert body["type"] == "urn:casetrail:problem:erased", what
            assert "'retention'" in body["detail"] and "erased on" in body["detail"], what
        # The case page (issue 18): the same 410, as a page.
        page = client.get(f"/cases/{case_id}?purpose=follow_up", headers=coordinator)
        assert page.status_code == 410 and page.headers["content-type"].startswith("text/html")
        assert "档案已依保存期限删除" in page.text
        assert len(refusals_of(app, case_id)) == 4  # the read, the access log's, bundle, page
        refused = {(r.command, r.rule) for r in app.command_refusals(case_id=case_id)}
        assert ("record_follow_up", ERASED_RULE) in refused
    finally:
        app.close()
