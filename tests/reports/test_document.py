"""The report document from a real store (gateway/reports/document.py): the investigation,
its case with issue 13's analyses, findings, rectifications and an integrity statement that
checks every stored event of the case against the latest signed checkpoint; an event of the
case altered in the database (as tests/evidence/test_tampering.py does) makes the statement say
so, and the rendered HTML with it. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from domain.application import CaseTrail
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.reports.document import (
    REPORT_DOCUMENT,
    UNREADABLE_ZH,
    CaseStreams,
    build_document,
)
from gateway.reports.html import render_html
from gateway.settings import Settings
from tests.evidence.helpers import Tamper
from tests.reports.scenario import INVESTIGATOR, investigated_case

BY = {"user": INVESTIGATOR, "role": "investigator", "unit": "county-inspection"}


@pytest.fixture
def stack(settings: Settings) -> Iterator[tuple[CaseTrail, Evidence]]:
    application = open_application(settings)
    key = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    evidence = Evidence(application, key, EvidenceSettings())
    try:
        yield application, evidence
    finally:
        evidence.close()
        application.close()


def test_the_document_of_an_untouched_store(stack: tuple[CaseTrail, Evidence]) -> None:
    application, evidence = stack
    scenario = investigated_case(application)
    investigation = application.investigation(scenario.investigation_id)
    document = build_document(
        application, evidence, investigation, generated_by=BY, consultation_due=timedelta(hours=24)
    )
    assert document["document"] == REPORT_DOCUMENT
    assert document["investigation"]["id"] == str(scenario.investigation_id)
    assert document["investigation"]["kind"] == "suicide"
    assert document["investigation"]["investigators"] == [INVESTIGATOR]
    (case,) = document["cases"]
    assert case["case_id"] == str(scenario.case_id)
    assert case["unreadable"] is None
    kinds = [entry["kind"] for entry in case["timeline"]]
    assert kinds[0] == "clue_reported"
    assert kinds.count("case_accessed") == 2
    assert {entry["lane"] for entry in case["timeline"]} >= {"change", "access"}
    assert case["knowledge"]["facts"], "the reporter knew of the clue"
    assert any(row["deadline"] == "consultation" for row in case["deadlines"])
    assert [f["determination"] for f in document["findings"]] == ["not_fulfilled"]
    assert [r["status"] for r in document["rectifications"]] == ["open"]
    assert document["generated_by"] == {k: BY[k] for k in ("user", "role", "unit")}
    # The minor's identity is not in the report.
    assert investigation.minor["id_number"] not in str(document)
    assert investigation.minor["name"] not in str(document)

    integrity = document["integrity"]
    assert integrity["status"] == "intact", integrity
    assert integrity["checkpoint"]["size"] >= 4
    assert len(integrity["checkpoint"]["root"]) == 64
    (item,) = integrity["cases"]
    assert item["events"] == item["included"] >= 1
    assert item["problems"] == []
    assert "完整性校验通过" in integrity["statement_zh"]


def test_a_tampered_case_event_makes_the_statement_say_so(
    stack: tuple[CaseTrail, Evidence], settings: Settings
) -> None:
    application, evidence = stack
    scenario = investigated_case(application)
    evidence.checkpoint_now()  # what the units hold before the tampering
    position = CaseStreams.scan(application, [scenario.case_id]).records[scenario.case_id][0].id

    store = Tamper(settings)
    store.drop_triggers()
    store.modify(position)

    investigation = application.investigation(scenario.investigation_id)
    document = build_document(application, evidence, investigation, generated_by=BY)
    integrity = document["integrity"]
    assert integrity["status"] == "tampered"
    assert "完整性校验未通过" in integrity["statement_zh"]
    (item,) = integrity["cases"]
    assert item["included"] == item["events"] - 1
    assert item["problems"] == [f"位置 {position} 的事件与签名检查点不符（已被篡改）"]
    # Its events no longer decrypt: the analyses give way to a note, the report still stands.
    (case,) = document["cases"]
    assert case["unreadable"] == UNREADABLE_ZH
    html = render_html(document)
    assert "完整性校验未通过" in html
    assert f"位置 {position} 的事件与签名检查点不符（已被篡改）" in html
    assert 'class="integrity tampered"' in html
