"""A new finding is announced to the compliance office, sealed, with no personal data (issue 15).

Over a real nats-server (the wheel's), the API, the relay and a `casetrail unit listen` client
as processes: a unit member refused five times within the hour (rule `repeated_refusals` at its
default threshold); the evaluator stores the finding; the relay seals a
`finding_raised` notice to the `compliance_audit` unit, whose client opens it. Its body names
the rule, the finding and counts only: not the person, not their unit, not the files, and no
value of the planted case. A second evaluation stores and announces nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from domain.application import CaseTrail
from domain.taxonomy import Role
from gateway.compliance.evaluator import ComplianceEvaluator
from tests.integration.planted import planted_case
from tests.messaging.stack import Stack, build_stack, wait_for

OFFICE = "chengguan-governance-office"
AUDIT = "county-compliance-audit"
OUTSIDER = "chengguan-police-station"
VILLAGE = "dongshan-village"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        tmp_path_factory.mktemp("finding-notice"),
        [
            (OFFICE, "城关街道综治办", "governance_office"),
            (AUDIT, "县合规审查组", "compliance_audit"),
            (OUTSIDER, "城关派出所", "police_station"),
        ],
    )
    try:
        built.start_api()
        built.start_relay()
        built.listeners[AUDIT] = built.start_listener(AUDIT)
        built.wait_api()
        yield built
    finally:
        built.close()


def test_a_new_finding_reaches_the_compliance_office_without_personal_data(stack: Stack) -> None:
    planted = planted_case(VILLAGE)
    answer = httpx.post(
        f"{stack.api_url}/v1/cases",
        json=planted.body,
        headers=stack.headers(Role.REPORTER, VILLAGE),
    )
    assert answer.status_code == 201, answer.text
    case_id = str(answer.json()["id"])
    outsider = stack.headers(Role.UNIT_MEMBER, OUTSIDER, purpose="intervention")
    for _ in range(5):
        refused = httpx.get(f"{stack.api_url}/v1/cases/{case_id}", headers=outsider)
        assert refused.status_code == 404

    # The evaluation the relay runs every minute (here: in this process, on the same store).
    application = CaseTrail(env=stack.settings.application_env())
    try:
        stored = ComplianceEvaluator(application).step(datetime.now(UTC))
    finally:
        application.close()
    assert [f.rule for f in stored] == ["repeated_refusals"]

    listener = stack.listeners[AUDIT]

    def findings() -> list[dict[str, object]]:
        return [e for e in listener.entries() if e["kind"] == "finding_raised"]

    wait_for(lambda: bool(findings()), 30, "the finding_raised notice")
    (notice,) = findings()
    body = notice["body"]
    assert isinstance(body, dict)
    assert set(body) == {"finding_id", "rule", "evidence", "files", "raised_at"}
    assert (body["rule"], body["evidence"], body["files"]) == ("repeated_refusals", 5, 1)
    text = json.dumps(notice, ensure_ascii=False)
    for secret in (OUTSIDER, f"user-{Role.UNIT_MEMBER}-{OUTSIDER}", case_id):
        assert secret not in text
    for needle in planted.needles().values():
        assert needle.decode() not in text

    application = CaseTrail(env=stack.settings.application_env())
    try:
        assert ComplianceEvaluator(application).step(datetime.now(UTC)) == []
    finally:
        application.close()
    # The relay would have announced a copy by now (it publishes within a second).
    answered = httpx.get(
        f"{stack.api_url}/v1/compliance/findings",
        headers=stack.headers(Role.COMPLIANCE_AUDITOR, AUDIT, purpose="compliance_review"),
    )
    assert [i["id"] for i in answered.json()["items"]] == [body["finding_id"]]
    assert len(findings()) == 1
