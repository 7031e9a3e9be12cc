"""Findings end to end (issue 15): accesses -> the evaluator -> Finding events -> the API.

On a real SQLite file and a real PostgreSQL schema, the real app over TestClient:

- refused reads and reads of several files raise the findings the configured thresholds say,
  each stored once however often the evaluator runs;
- a compliance auditor lists them (filters, counts) with no case content in the answer (the
  planted case's values are absent), and that read is recorded before the answer; anyone else
  is refused (403) and the refusal recorded;
- review (auditor only, else 403 and `CommandRefused`), follow-up, completion;
- `rerun` after a threshold changed stores what the new threshold raises and marks the open
  findings it no longer raises superseded: the open findings are then exactly those an
  evaluation with the new threshold from the start raises;
- a process SIGKILLed right after storing findings (before the view records them) loses none
  and doubles none;
- `casetrail compliance rules|evaluate|findings` answer with ids, codes and counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from domain.access import NO_CASE, CaseAccessed, CommandRefused
from domain.application import CaseTrail
from domain.clock import local_today
from domain.compliance.config import BulkBrowsing, RepeatedRefusals
from domain.compliance.findings import FindingStatus
from domain.compliance.rules import RuleEngine
from domain.taxonomy import Role
from gateway import keyring
from gateway.auth import issue_token
from gateway.cli.main import DEFAULT_STREET, cli
from gateway.compliance.evaluator import ComplianceEvaluator
from gateway.http.app import create_app
from gateway.settings import Settings
from projections.compliance.evaluator import DIGEST_KEY, RulesView, state_mark
from tests.integration.planted import Planted, planted_case
from tests.people import ensure_registered

RULES_TOML = """
enabled = ["repeated_refusals", "bulk_browsing"]
[repeated_refusals]
count = 3
[bulk_browsing]
distinct_cases = 3
"""
LATER = datetime.now(UTC) + timedelta(days=3)


class World:
    def __init__(self, client: TestClient, home: Path, store_url: str = "") -> None:
        self.client = client
        self.home = home
        self.store_url = store_url
        self.key = keyring.load_private_key(home / "keys" / keyring.TOKEN_KEY, "token key")
        self.application: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
        self.planted: list[Planted] = []
        self.cases: list[str] = []

    def headers(self, role: Role, unit: str, user: str, purpose: str | None = None) -> Any:
        # Only registered users get in (issue 16): registered in this test's store first.
        ensure_registered(self.application, user, role, unit, DEFAULT_STREET)
        token = issue_token(self.key, user=user, role=role, unit=unit, street=DEFAULT_STREET)
        found = {"Authorization": f"Bearer {token}"}
        if purpose:
            found["X-Purpose-Of-Use"] = purpose
        return found

    def auditor(self) -> Any:
        return self.headers(Role.COMPLIANCE_AUDITOR, "audit", "auditor-1", "compliance_review")


@pytest.fixture
def world(store_url: str, tmp_path: Path) -> Iterator[World]:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_TOML, encoding="utf-8")
    settings = Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": store_url,
            "CASETRAIL_COMPLIANCE_RULES": str(rules),
        }
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        built = World(client, home, store_url)
        reporter = built.headers(Role.REPORTER, "v-own", "reporter-1")
        for _ in range(4):
            planted = planted_case()
            response = client.post("/v1/cases", json=planted.body, headers=reporter)
            assert response.status_code == 201, response.text
            built.planted.append(planted)
            built.cases.append(str(response.json()["id"]))
        yield built


def accesses(world: World) -> None:
    """An outsider refused three times (repeated_refusals); a coordinator reading three files
    (bulk_browsing); the reporter reading two (below the threshold)."""
    outsider = world.headers(Role.UNIT_MEMBER, "pcs-9", "outsider-1", "intervention")
    for case_id in world.cases[:3]:
        assert world.client.get(f"/v1/cases/{case_id}", headers=outsider).status_code == 404
    coordinator = world.headers(Role.COORDINATOR, "office", "coord-1", "follow_up")
    for case_id in world.cases[:3]:
        assert world.client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code == 200
    reporter = world.headers(Role.REPORTER, "v-own", "reporter-1", "follow_up")
    for case_id in world.cases[:2]:
        assert world.client.get(f"/v1/cases/{case_id}", headers=reporter).status_code == 200


def test_findings_raised_once_listed_without_case_content_and_reviewed(world: World) -> None:
    accesses(world)
    evaluator = ComplianceEvaluator(world.application)
    stored = evaluator.step(LATER)
    assert sorted(f.rule for f in stored) == ["bulk_browsing", "repeated_refusals"]
    assert evaluator.step(LATER) == [] and ComplianceEvaluator(world.application).step(LATER) == []

    before = len(world.application.access_events(NO_CASE))
    answer = world.client.get("/v1/compliance/findings", headers=world.auditor())
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert {(i["rule"], i["person"], i["status"]) for i in items} == {
        ("repeated_refusals", "outsider-1", "open"),
        ("bulk_browsing", "coord-1", "open"),
    }
    for planted in world.planted:
        for needle in planted.needles().values():
            assert needle not in answer.content
    recorded = world.application.access_events(NO_CASE)[before:]
    assert [(type(e), e.fields, e.actor["user"]) for e in recorded] == [  # type: ignore[union-attr]
        (CaseAccessed, ["compliance_findings"], "auditor-1")
    ]

    only = world.client.get(
        "/v1/compliance/findings", params={"rule": "bulk_browsing"}, headers=world.auditor()
    ).json()["items"]
    assert [i["person"] for i in only] == ["coord-1"]
    assert len(only[0]["evidence"]) == 3 and len(only[0]["case_ids"]) == 3
    bad = world.client.get(
        "/v1/compliance/findings", params={"rule": "nope"}, headers=world.auditor()
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "rule"
    counts = world.client.get("/v1/compliance/findings/counts", headers=world.auditor()).json()
    assert sorted((c["rule"], c["unit"], c["open"]) for c in counts["counts"]) == [
        ("bulk_browsing", "office", 1),
        ("repeated_refusals", "pcs-9", 1),
    ]

    # Anyone else: refused, and the refusal recorded.
    coordinator = world.headers(Role.COORDINATOR, "office", "coord-1", "follow_up")
    refused = world.client.get("/v1/compliance/findings", headers=coordinator)
    assert refused.status_code == 403
    assert world.application.access_events(NO_CASE)[-1].rule.startswith(
        "compliance_findings_not_for_role"
    )

    finding = only[0]["id"]
    review = {"outcome": "violation", "reason": "批量浏览无工作需要。"}
    path = f"/v1/compliance/findings/{finding}/review"
    assert world.client.post(path, json=review, headers=coordinator).status_code == 403
    (command,) = world.application.command_refusals()
    assert isinstance(command, CommandRefused) and command.command == "review_finding"
    assert world.client.post(path, json=review, headers=world.auditor()).status_code == 200
    assert world.client.post(path, json=review, headers=world.auditor()).status_code == 409
    due = (local_today() + timedelta(days=14)).isoformat()
    opened = world.client.post(
        f"{path.removesuffix('/review')}/follow-up",
        json={"owner": "office", "due_on": due},
        headers=world.auditor(),
    )
    assert opened.status_code == 201, opened.text
    done = world.client.post(
        f"{path.removesuffix('/review')}/follow-up/completion",
        json={"completed_on": local_today().isoformat(), "note": "已约谈。"},
        headers=world.auditor(),
    )
    assert done.status_code == 200, done.text
    assert done.json()["follow_up"]["completed"]["note"] == "已约谈。"


def test_a_rerun_with_a_new_threshold_equals_evaluation_with_it_from_the_start(
    world: World,
) -> None:
    accesses(world)
    ComplianceEvaluator(world.application).step(LATER)
    # The reporter's two reads become a finding at distinct_cases = 2; the outsider's three
    # refusals are no longer one at count = 4.
    stricter = replace(
        ComplianceEvaluator(world.application).config,
        bulk_browsing=BulkBrowsing(distinct_cases=2),
        repeated_refusals=RepeatedRefusals(count=4),
    )
    result = ComplianceEvaluator(world.application, stricter).rerun(
        None, {"user": "auditor-1", "role": "compliance_auditor"}, LATER
    )
    assert result.superseded == 2  # the first two: the coordinator's reads are now two findings
    engine = RuleEngine(stricter)
    expected = {
        r.id
        for n in world.application.notifications()
        for r in engine.feed(n.id, world.application.mapper.to_domain_event(n))
    } | {r.id for r in engine.due(LATER)}
    open_now = {f.id for f in world.application.findings() if f.status is FindingStatus.OPEN}
    assert open_now == expected
    superseded = [f for f in world.application.findings() if f.status is FindingStatus.SUPERSEDED]
    assert sorted(f.rule for f in superseded) == ["bulk_browsing", "repeated_refusals"]


def test_a_changed_rules_file_stops_evaluation_until_a_rerun_then_the_relay_takes_it_up(
    world: World,
) -> None:
    """The relay's evaluator (built once, following the rules file) never folds with two sets
    of thresholds: after the file changed it evaluates nothing until `compliance rerun`, then
    evaluates with the new file."""
    relay = ComplianceEvaluator(world.application)
    accesses(world)
    relay.step(LATER)
    rules = Path(world.application.env["COMPLIANCE_RULES"])
    rules.write_text(RULES_TOML.replace("distinct_cases = 3", "distinct_cases = 2"), "utf-8")

    def reads(user: str) -> None:
        headers = world.headers(Role.COORDINATOR, "office", user, "follow_up")
        for case_id in world.cases[2:4]:
            assert world.client.get(f"/v1/cases/{case_id}", headers=headers).status_code == 200

    def bulk_of(user: str) -> list[str]:
        return [f.person for f in world.application.findings() if f.person == user]

    reads("coord-2")
    position = relay.follower.position()
    assert relay.step(LATER) == [] and relay.follower.position() == position  # nothing folded
    ComplianceEvaluator(world.application).rerun(
        None, {"user": "auditor-1", "role": "compliance_auditor"}, LATER
    )
    assert bulk_of("coord-2") == ["coord-2"]  # the re-run, with distinct_cases = 2
    reads("coord-3")
    relay.step(LATER)
    assert relay.config.digest() == ComplianceEvaluator(world.application).config.digest()
    assert bulk_of("coord-3") == ["coord-3"]  # the relay, with the new threshold


def test_state_folded_by_an_older_version_is_rebuilt_before_it_is_folded_further(
    world: World,
) -> None:
    """State with no mark of how it was folded (written before the fold's version and the
    configuration's digest were stored) is folded no further until a re-run rebuilt it."""
    evaluator = ComplianceEvaluator(world.application)
    accesses(world)
    evaluator.step(LATER)
    with evaluator.follower.recorder._writing() as db:  # as an older version left it
        db.execute("DELETE FROM {compliance_rules_state} WHERE key = ?", [DIGEST_KEY])
    later = ComplianceEvaluator(world.application)
    reporter = world.headers(Role.REPORTER, "v-own", "reporter-1", "follow_up")
    assert world.client.get(f"/v1/cases/{world.cases[3]}", headers=reporter).status_code == 200
    position = later.follower.position()
    assert later.step(LATER) == [] and later.follower.position() == position
    later.rerun(None, {"user": "auditor-1", "role": "compliance_auditor"}, LATER)
    with later.follower.recorder.reading() as db:
        assert RulesView.stored_mark(db) == state_mark(later.config)
    assert later.follower.position() > position


# --- a crash between storing findings and recording them loses none, doubles none --------------

CRASHER = """
import os, signal, sys
from datetime import datetime
from domain.application import CaseTrail
from gateway.compliance.evaluator import ComplianceEvaluator
from projections.compliance.evaluator import DIGEST_KEY, RulesView, state_mark
from gateway.settings import Settings

settings = Settings.from_env()
application = CaseTrail(env=settings.application_env())
evaluator = ComplianceEvaluator(application)
stored = application.record_findings
def record_then_die(found):
    result = stored(found)
    os.kill(os.getpid(), signal.SIGKILL)
    return result
application.record_findings = record_then_die
evaluator.step(datetime.fromisoformat(sys.argv[1]))
"""


def test_a_sigkilled_evaluator_loses_and_doubles_nothing(store_url: str, tmp_path: Path) -> None:
    """Killed right after storing findings, before the view records them stored."""
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_TOML, encoding="utf-8")
    env = {
        "CASETRAIL_HOME": str(home),
        "CASETRAIL_DATABASE_URL": store_url,
        "CASETRAIL_COMPLIANCE_RULES": str(rules),
    }
    settings = Settings.from_env(env)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        world = World(client, home)
        reporter = world.headers(Role.REPORTER, "v-own", "reporter-1")
        for _ in range(3):
            body = planted_case().body
            world.cases.append(client.post("/v1/cases", json=body, headers=reporter).json()["id"])
        accesses(world)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHER, LATER.isoformat()],
        env={**os.environ, **env},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    application = CaseTrail(env=settings.application_env())
    try:
        assert len(application.findings()) == 2  # stored before the kill
        ComplianceEvaluator(application).step(LATER)
        ComplianceEvaluator(application).step(LATER)
        found = application.findings()
        assert sorted(f.rule for f in found) == ["bulk_browsing", "repeated_refusals"]
        raised = [
            n for n in application.notifications() if n.topic.endswith("Finding.FindingRaised")
        ]
        assert len(raised) == 2
        evaluator = ComplianceEvaluator(application)
        evaluator.follower.catch_up()
        with evaluator.follower.recorder.reading() as db:
            assert evaluator.view.owed(db) == []
    finally:
        application.close()


def test_the_cli_evaluates_and_lists(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    accesses(world)
    monkeypatch.setenv("CASETRAIL_HOME", str(world.home))
    monkeypatch.setenv("CASETRAIL_DATABASE_URL", world.store_url)
    monkeypatch.setenv("CASETRAIL_COMPLIANCE_RULES", str(tmp_path / "rules.toml"))
    runner = CliRunner()
    rules = runner.invoke(cli, ["compliance", "rules", "--json"])
    assert rules.exit_code == 0, rules.output
    listed = json.loads(rules.output)["rules"]
    assert [r["id"] for r in listed if r["enabled"]] == ["repeated_refusals", "bulk_browsing"]
    evaluated = runner.invoke(cli, ["compliance", "evaluate", "--now", LATER.isoformat(), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output.splitlines()[-1])["stored"] == 2
    found = runner.invoke(cli, ["compliance", "findings", "--rule", "bulk_browsing", "--json"])
    assert found.exit_code == 0, found.output
    (item,) = json.loads(found.output.splitlines()[-1])["items"]
    assert item["person"] == "coord-1"
    bad = runner.invoke(cli, ["compliance", "evaluate", "--now", "yesterday"])
    assert bad.exit_code == 2 and "--now" in bad.output
