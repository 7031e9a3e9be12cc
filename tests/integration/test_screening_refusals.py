"""Every refusal of the screening, roster and submission routes is stored before the answer
(issue 17, promise 1), on SQLite and PostgreSQL: a submission by someone who is no village's
committee, counts asked by a unit member, and the hiding 404s of a submission, a campaign and a
roster entry each leave exactly one refusal record (`CommandRefused` or `AccessDenied`) and
nothing else."""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

from fastapi.testclient import TestClient
from httpx import Response

from domain.access import AccessDenied, CommandRefused
from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.integration.test_screening import OFFICE, TODAY, VILLAGE, application_of, campaign

POLICE = "chengguan-police-station"


def one_refusal(client: TestClient, request: Callable[[], Response], status: int) -> None:
    app = application_of(client)
    mark = app.recorder.max_notification_id() or 0
    answer = request()
    assert answer.status_code == status, answer.text
    stored = [
        app.mapper.to_domain_event(n)
        for n in app.recorder.select_notifications(start=mark + 1, limit=10)
    ]
    assert len(stored) == 1, stored
    assert isinstance(stored[0], CommandRefused | AccessDenied), stored


def submit_with(client: TestClient, headers: dict[str, str]) -> Callable[[], Response]:
    return lambda: client.post("/v1/submissions", json={"period": "initial"}, headers=headers)


def test_each_refusal_leaves_exactly_one_refusal_record(
    client: TestClient, auth: TokenFactory
) -> None:
    campaign_id = campaign(client, auth, [VILLAGE])
    # Every user registered first: the refused requests below store nothing else.
    member = auth(Role.UNIT_MEMBER, POLICE)
    coordinator = auth(Role.COORDINATOR, OFFICE)
    reporter = auth(Role.REPORTER, VILLAGE)
    for headers in (
        auth(Role.COORDINATOR, OFFICE, purpose="consultation"),
        auth(Role.SUPERVISOR, "chengguan-street-supervision", purpose="consultation"),
        auth(Role.UNIT_MEMBER, POLICE, purpose="intervention"),
    ):
        one_refusal(client, submit_with(client, headers), 403)
    one_refusal(
        client,
        lambda: client.get(f"/v1/screening/campaigns/{campaign_id}/coverage", headers=member),
        403,
    )
    one_refusal(
        client, lambda: client.get("/v1/screening/coverage?quarter=2026Q3", headers=member), 403
    )
    one_refusal(
        client,
        lambda: client.get(f"/v1/screening/campaigns/{uuid4()}/coverage", headers=coordinator),
        404,
    )
    one_refusal(client, lambda: client.get(f"/v1/submissions/{uuid4()}", headers=reporter), 404)
    one_refusal(
        client,
        lambda: client.post(
            f"/v1/screening/campaigns/{campaign_id}/visits",
            json={
                "entry_id": str(uuid4()),
                "visited_on": TODAY.isoformat(),
                "method": "home_visit",
                "result": "no_issue",
            },
            headers=reporter,
        ),
        404,
    )
