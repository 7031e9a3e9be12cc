"""Campaigns and visits (走访排查) over HTTP, on SQLite and PostgreSQL: a visit with nothing
found, a clue that opens a case file, a second clue about the same minor that links that file
instead of opening another, a clue about a minor whose open file another unit reported (linked,
named only to those who may see it), and the list of minors not yet visited: names only to the
village's reporters and the street's coordinator, each listed minor's disclosure recorded
before the answer, a refusal recorded too."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient

from domain.access import AccessDenied, CaseAccessed, CommandRefused
from domain.application import CaseTrail
from domain.case import Case
from domain.clock import local_today
from domain.roster import roster_entry_id
from domain.taxonomy import Role
from projections.readmodels import ReadModels
from tests.conftest import TokenFactory
from tests.integration.screening_roster import Kid, csv_bytes, kids

VILLAGE = "dongshan-village"
OTHER_VILLAGE = "xishan-village"
OFFICE = "chengguan-governance-office"
SCHOOL_UNIT = "chengguan-central-school"
TODAY = local_today()
STREET = "chengguan-street"


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def synced(client: TestClient) -> ReadModels:
    readmodels: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()
    return readmodels


def reports_about(client: TestClient, kid: Kid) -> list[Case]:
    app = application_of(client)
    found = []
    for n in app.notifications(topics=(get_topic(Case.ClueReported),)):  # type: ignore[attr-defined]
        case: object = app.repository.get(UUID(str(n.originator_id)))
        if isinstance(case, Case) and case.minor["id_number"] == kid.id_number:
            found.append(case)
    return found


def listed(client: TestClient, auth: TokenFactory) -> tuple[list[Kid], list[Kid]]:
    home, other = kids(8, VILLAGE, seed=21), kids(5, OTHER_VILLAGE, seed=22)
    coordinator = auth(Role.COORDINATOR, OFFICE)
    for village, group in ((VILLAGE, home), (OTHER_VILLAGE, other)):
        answer = client.post(
            "/v1/roster/imports",
            files={"file": ("r.csv", csv_bytes([k.cells() for k in group]))},
            data={"village": village},
            headers=coordinator,
        )
        assert answer.status_code == 200, answer.text
    return home, other


def campaign(client: TestClient, auth: TokenFactory, villages: list[str]) -> str:
    answer = client.post(
        "/v1/screening/campaigns",
        json={
            "name": "暑期走访排查",
            "villages": villages,
            "starts_on": (TODAY - timedelta(days=30)).isoformat(),
            "ends_on": (TODAY + timedelta(days=30)).isoformat(),
        },
        headers=auth(Role.COORDINATOR, OFFICE),
    )
    assert answer.status_code == 201, answer.text
    campaign_id: str = answer.json()["id"]
    return campaign_id


def clue(**extra: Any) -> dict[str, Any]:
    return {
        "issues": [{"category": "growth_environment", "subtype": "left_behind"}],
        "description": "父母外出务工，由祖父母照看；近期情绪低落。",
        "risk": "medium",
        "found_by": "child_director",
        **extra,
    }


def visit(
    client: TestClient, headers: dict[str, str], campaign_id: str, kid: Kid, **body: Any
) -> Any:
    return client.post(
        f"/v1/screening/campaigns/{campaign_id}/visits",
        json={
            "id_number": kid.id_number,
            "visited_on": TODAY.isoformat(),
            "method": "home_visit",
            "result": "no_issue",
            **body,
        },
        headers=headers,
    )


def test_a_clue_opens_one_file_and_a_second_clue_links_it(
    client: TestClient, auth: TokenFactory
) -> None:
    home, _ = listed(client, auth)
    campaign_id = campaign(client, auth, [VILLAGE])
    reporter = auth(Role.REPORTER, VILLAGE)

    nothing = visit(client, reporter, campaign_id, home[0])
    assert nothing.status_code == 201, nothing.text
    assert "case" not in nothing.json()

    opened = visit(client, reporter, campaign_id, home[1], result="clue", clue=clue())
    assert opened.status_code == 201, opened.text
    assert opened.json()["case"]["outcome"] == "opened"
    case_id = opened.json()["case"]["id"]

    # At once (the read models not followed yet) and after they caught up: linked, not doubled.
    again = visit(client, reporter, campaign_id, home[1], result="clue", clue=clue())
    assert again.json()["case"] == {
        "outcome": "linked",
        "id": case_id,
        "message": "该未成年人已有在办档案：线索已关联到已有档案，未重复立档",
    }
    synced(client)
    third = visit(
        client,
        auth(Role.COORDINATOR, OFFICE),
        campaign_id,
        home[1],
        result="clue",
        clue=clue(),
        method="phone",
    )
    assert third.json()["case"]["id"] == case_id
    assert [str(c.id) for c in reports_about(client, home[1])] == [case_id]


def test_a_clue_about_a_minor_with_a_file_of_another_unit_links_it_unnamed(
    client: TestClient, auth: TokenFactory
) -> None:
    home, _ = listed(client, auth)
    kid = home[2]
    school = auth(Role.REPORTER, SCHOOL_UNIT)
    # The read models stop following: the file below is in the store, not yet in the ledger.
    readmodels = synced(client)
    readmodels.stop()
    reported = client.post(
        "/v1/cases",
        json={
            "minor": {
                "name": kid.name,
                "gender": "male" if kid.gender == "男" else "female",
                "date_of_birth": kid.born.isoformat(),
                "id_number": kid.id_number,
                "school": kid.school,
                "village": VILLAGE,
            },
            "issues": [{"category": "mental_health", "subtype": "anxiety"}],
            "description": "课堂上多次哭泣。",
            "found_by": {"role": "teacher", "unit": SCHOOL_UNIT},
            "method": "school",
            "found_on": TODAY.isoformat(),
            "risk": "medium",
        },
        headers=school,
    )
    assert reported.status_code == 201, reported.text
    campaign_id = campaign(client, auth, [])
    assert readmodels.follower("ledger").lag() > 0

    village_reporter = visit(
        client, auth(Role.REPORTER, VILLAGE), campaign_id, kid, result="clue", clue=clue()
    )
    assert village_reporter.status_code == 201, village_reporter.text
    told = village_reporter.json()["case"]
    assert told["outcome"] == "linked" and "id" not in told
    assert "不在你的查阅范围内" in told["message"]

    coordinator = visit(
        client, auth(Role.COORDINATOR, OFFICE), campaign_id, kid, result="clue", clue=clue()
    )
    assert coordinator.json()["case"]["id"] == reported.json()["id"]
    assert len(reports_about(client, kid)) == 1


def test_visits_are_refused_outside_the_roster_rules(
    client: TestClient, auth: TokenFactory
) -> None:
    home, other = listed(client, auth)
    campaign_id = campaign(client, auth, [VILLAGE])
    # Every user registered before the mark: the requests below store only refusals.
    other_reporter = auth(Role.REPORTER, OTHER_VILLAGE)
    member = auth(Role.UNIT_MEMBER, "chengguan-police-station")
    auth(Role.REPORTER, VILLAGE)
    # Another village's reporter, a unit member: refused, nothing stored.
    position = application_of(client).recorder.max_notification_id()
    assert visit(client, other_reporter, campaign_id, home[0]).status_code == 403
    assert visit(client, member, campaign_id, home[0]).status_code == 403
    # A village the campaign does not cover; a day outside its period; a minor not listed.
    outside = visit(client, auth(Role.COORDINATOR, OFFICE), campaign_id, other[0])
    assert outside.status_code == 422 and outside.json()["errors"][0]["field"] == "entry_id"
    late = visit(
        client,
        auth(Role.REPORTER, VILLAGE),
        campaign_id,
        home[0],
        visited_on=(TODAY - timedelta(days=40)).isoformat(),
    )
    assert late.status_code == 422 and late.json()["errors"][0]["field"] == "visited_on"
    stranger = kids(1, VILLAGE, seed=99)[0]
    missing = visit(client, auth(Role.REPORTER, VILLAGE), campaign_id, stranger)
    assert missing.status_code == 404
    assert stranger.id_number not in missing.text
    # Nothing of the visits stored: only the refusals (two by rule, the hidden minor as
    # not_visible, issue 17), as CommandRefused (issue 15).
    assert refusals_since(application_of(client), position) == ["record_visit"] * 3


def refusals_since(application: CaseTrail, position: int | None) -> list[str]:
    """The commands of the events stored after `position`, each required to be a refusal."""
    stored = application.recorder.select_notifications(start=(position or 0) + 1, limit=100)
    events = [application.mapper.to_domain_event(n) for n in stored]
    assert all(isinstance(e, CommandRefused) for e in events), events
    return [e.command for e in events if isinstance(e, CommandRefused)]


def test_the_names_not_yet_visited_are_a_recorded_disclosure(
    client: TestClient, auth: TokenFactory
) -> None:
    home, other = listed(client, auth)
    campaign_id = campaign(client, auth, [])
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    for kid in home[:3]:
        assert visit(client, reporter, campaign_id, kid).status_code == 201
    synced(client)
    app = application_of(client)
    before = app.recorder.max_notification_id() or 0

    answer = client.get(f"/v1/screening/campaigns/{campaign_id}/not-visited", headers=reporter)
    assert answer.status_code == 200, answer.text
    names = sorted(m["name"] for m in answer.json()["minors"])
    assert names == sorted(k.name for k in home[3:])
    assert all(k.id_number not in answer.text for k in home)
    disclosed = [
        app.mapper.to_domain_event(n)
        for n in app.notifications(before + 1, topics=(get_topic(CaseAccessed),))
    ]
    assert len(disclosed) == len(home) - 3
    assert {e.channel for e in disclosed} == {"worklist"}  # type: ignore[attr-defined]
    assert {e.rule for e in disclosed} == {"roster_village_reporter"}  # type: ignore[attr-defined]
    listed_ids = {m["entry_id"] for m in answer.json()["minors"]}
    assert {str(e.case_id) for e in disclosed} == listed_ids  # type: ignore[attr-defined]

    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    everyone = client.get(f"/v1/screening/campaigns/{campaign_id}/not-visited", headers=coordinator)
    assert everyone.json()["count"] == len(home) - 3 + len(other)

    for refused in (
        auth(Role.UNIT_MEMBER, "chengguan-police-station", purpose="intervention"),
        auth(Role.SUPERVISOR, "chengguan-street-supervision", purpose="consultation"),
    ):
        mark = app.recorder.max_notification_id() or 0
        answer = client.get(f"/v1/screening/campaigns/{campaign_id}/not-visited", headers=refused)
        assert answer.status_code == 403, answer.text
        stored = [
            app.mapper.to_domain_event(n)
            for n in app.notifications(mark + 1, topics=(get_topic(AccessDenied),))
        ]
        assert len(stored) == 1
        assert all(k.name not in answer.text for k in home)

    counts = client.get(
        f"/v1/screening/campaigns/{campaign_id}/coverage",
        headers=auth(Role.SUPERVISOR, "chengguan-street-supervision"),
    )
    assert counts.status_code == 200, counts.text
    assert counts.json()["total"]["visited"] == 3
    assert all(k.name not in counts.text for k in home + other)


def test_a_minors_visits_are_read_back_and_the_read_recorded(
    client: TestClient, auth: TokenFactory
) -> None:
    home, _ = listed(client, auth)
    campaign_id = campaign(client, auth, [VILLAGE])
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    first = visit(client, reporter, campaign_id, home[4], notes="家中无人，电话联系监护人。")
    visit(client, reporter, campaign_id, home[4], result="clue", clue=clue(), method="phone")
    entry_id = first.json()["entry_id"]
    app = application_of(client)
    mark = app.recorder.max_notification_id() or 0

    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    answer = client.get(f"/v1/roster/entries/{entry_id}", headers=coordinator)
    assert answer.status_code == 200, answer.text
    visits = answer.json()["visits"]
    assert [(v["method"], v["result"], v["linked"]) for v in visits] == [
        ("home_visit", "no_issue", False),
        ("phone", "clue", False),
    ]
    assert visits[1]["case_id"] == str(reports_about(client, home[4])[0].id)
    assert answer.json()["minor"]["id_number"] == home[4].id_number
    read = [
        app.mapper.to_domain_event(n)
        for n in app.notifications(mark + 1, topics=(get_topic(CaseAccessed),))
    ]
    assert [str(e.case_id) for e in read] == [entry_id]  # type: ignore[attr-defined]

    mark = app.recorder.max_notification_id() or 0
    member = auth(Role.UNIT_MEMBER, "chengguan-police-station", purpose="intervention")
    refused = client.get(f"/v1/roster/entries/{entry_id}", headers=member)
    assert refused.status_code == 404
    assert home[4].name not in refused.text
    assert len(list(app.notifications(mark + 1, topics=(get_topic(AccessDenied),)))) == 1


def test_a_household_visit_counts_its_other_minors_in_one_write(
    client: TestClient, auth: TokenFactory
) -> None:
    home, other = listed(client, auth)
    campaign_id = campaign(client, auth, [VILLAGE])
    index = synced(client).blind_index

    def entry(kid: Kid) -> str:
        return str(roster_entry_id(STREET, index.id_number(kid.id_number)))

    reporter = auth(Role.REPORTER, VILLAGE)
    app = application_of(client)
    position = app.recorder.max_notification_id()
    # A household member the reporter may not visit (another village): nothing is stored.
    refused = visit(client, reporter, campaign_id, home[5], household=[entry(other[0])])
    assert refused.status_code == 403
    assert refusals_since(app, position) == ["record_visit"]  # only the refusal (issue 15)
    position = app.recorder.max_notification_id()

    answer = visit(
        client, reporter, campaign_id, home[5], household=[entry(home[6]), entry(home[7])]
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["household"] == [entry(home[6]), entry(home[7])]
    synced(client)
    figures = client.get(
        f"/v1/screening/campaigns/{campaign_id}/coverage", headers=auth(Role.COORDINATOR, OFFICE)
    ).json()
    assert figures["total"]["visited"] == 3
