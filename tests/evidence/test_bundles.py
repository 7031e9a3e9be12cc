"""The per-case evidence bundle over HTTP: an audited read for investigators under an order and
coordinators of the street, checked offline by the real `casetrail verify-bundle`, holding
nothing of any other case; refused (and recorded) for everyone else."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain.access import AccessDenied, CaseAccessed
from domain.application import CaseTrail
from domain.taxonomy import Role
from gateway import keyring
from gateway.evidence import documents
from gateway.evidence.maintainer import Evidence
from gateway.evidence.verification import verify_bundle
from gateway.settings import Settings
from projections.evidence.checkpoints import Checkpoint
from tests.conftest import TokenFactory
from tests.evidence.helpers import cli, first_line
from tests.integration.planted import Planted, planted_case

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
INSPECTION = "county-inspection"


def _application(client: TestClient) -> CaseTrail:
    app: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return app


def _two_cases(client: TestClient, auth: TokenFactory) -> tuple[str, str, Planted, Planted]:
    reporter = auth(Role.REPORTER, VILLAGE)
    reader = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    ours, theirs = planted_case(), planted_case()
    case_a = client.post("/v1/cases", json=ours.body, headers=reporter).json()["id"]
    case_b = client.post("/v1/cases", json=theirs.body, headers=reporter).json()["id"]
    for case_id in (case_a, case_b):
        assert client.get(f"/v1/cases/{case_id}", headers=reader).status_code == 200
    return case_a, case_b, ours, theirs


def _order(client: TestClient, auth: TokenFactory, case_id: str) -> None:
    response = client.post(
        "/v1/investigation-orders",
        json={
            "case_id": case_id,
            "investigator": f"user-{Role.INVESTIGATOR}-{INSPECTION}",
            "reason": "学生遭侵害后的一案一倒查。",
            "expires_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        },
        headers=auth(Role.COORDINATOR, OFFICE),
    )
    assert response.status_code == 201, response.text


def _bundle(client: TestClient, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/evidence/cases/{case_id}/bundle", headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _stored_states(application: CaseTrail, stream: str) -> list[str]:
    return [
        base64.b64encode(e.state).decode() for e in application.recorder.select_events(UUID(stream))
    ]


def test_an_investigators_bundle_verifies_offline_and_holds_only_this_case(
    settings: Settings, client: TestClient, auth: TokenFactory, tmp_path: Path
) -> None:
    case_a, case_b, ours, theirs = _two_cases(client, auth)
    _order(client, auth, case_a)
    investigator = auth(Role.INVESTIGATOR, INSPECTION, purpose="investigation")
    bundle = _bundle(client, investigator, case_a)

    kinds = {r["kind"] for r in bundle["records"]}
    assert kinds == {"case", "access", "order"}
    assert {r["stream_id"] for r in bundle["records"] if r["kind"] == "case"} == {case_a}
    # Every access event and order in it is about this case (which case is in their content).
    content = {c["leaf_index"]: c["event"] for c in bundle["content"]}
    about = {content[r["leaf_index"]]["case_id"] for r in bundle["records"] if r["kind"] != "case"}
    assert about == {case_a}
    # The investigator's own reads are in it: stored before the bundle was built.
    rules = [c["event"].get("rule") for c in bundle["content"]]
    assert rules.count("investigation_order") == 2
    # Nothing of the other case: not its stream, its stored bytes, nor its planted content.
    text = json.dumps(bundle, ensure_ascii=False)
    assert case_b not in text
    for state in _stored_states(_application(client), case_b):
        assert state not in text
    for what, needle in theirs.needles().items():
        assert needle.decode() not in text, what
    assert ours.name in text  # the control: the same search finds this case's data

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    public = settings.keys_dir / keyring.SERVICE_PUB
    checked = cli(settings, "verify-bundle", str(path), "--public-key", str(public))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert first_line(checked).startswith(f"intact: {len(bundle['records'])} stored events")

    altered = copy.deepcopy(bundle)
    flipped = bytearray(base64.b64decode(altered["records"][0]["state"]))
    flipped[-1] ^= 0x01
    altered["records"][0]["state"] = base64.b64encode(bytes(flipped)).decode()
    path.write_text(json.dumps(altered, ensure_ascii=False), encoding="utf-8")
    refused = cli(settings, "verify-bundle", str(path), "--public-key", str(public))
    assert refused.returncode == 1
    assert first_line(refused).startswith("TAMPERED:")
    assert "is not in checkpoint #" in refused.stdout


def test_every_change_to_a_bundle_is_caught(
    settings: Settings, client: TestClient, auth: TokenFactory
) -> None:
    case_a, _, _, _ = _two_cases(client, auth)
    bundle = _bundle(client, auth(Role.COORDINATOR, OFFICE, purpose="consultation"), case_a)
    key = keyring.load_public_key(settings.keys_dir / keyring.SERVICE_PUB, "key")
    assert verify_bundle(bundle, key).intact

    def changed(change: Any) -> list[str]:
        copied = copy.deepcopy(bundle)
        change(copied)
        return verify_bundle(copied, key).problems

    edits = {
        "content edited": lambda b: b["content"][0]["event"].update({"description": "改写"}),
        "record dropped": lambda b: b["records"].pop(),
        "record moved": lambda b: b["records"][0].update({"position": 999}),
        "proof edited": lambda b: b["records"][0]["inclusion_proof"].reverse(),
        "checkpoint edited": lambda b: b["checkpoint"].update({"size": 1}),
        "case id swapped": lambda b: b.update({"case_id": "00000000-0000-4000-8000-000000000001"}),
    }
    caught = {name: changed(edit) for name, edit in edits.items()}
    assert all(caught.values()), [name for name, problems in caught.items() if not problems]
    other_key = keyring.load_public_key(settings.keys_dir / keyring.TOKEN_PUB, "another key")
    assert not verify_bundle(bundle, other_key).intact


def test_a_coordinators_bundle_holds_the_cases_own_events_and_its_own_access_only(
    settings: Settings, client: TestClient, auth: TokenFactory
) -> None:
    case_a, _, ours, _ = _two_cases(client, auth)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    # An earlier read by the same coordinator: an access event of another request.
    assert client.get(f"/v1/cases/{case_a}", headers=coordinator).status_code == 200
    bundle = _bundle(client, coordinator, case_a)
    case_records = [r for r in bundle["records"] if r["kind"] == "case"]
    assert [r["version"] for r in case_records] == [1]
    content = {c["leaf_index"]: c["event"] for c in bundle["content"]}
    assert content[case_records[0]["leaf_index"]]["minor"]["name"] == ours.name
    events = _application(client).access_events(UUID(case_a))
    granted = [e for e in events if isinstance(e, CaseAccessed)]
    assert granted[-1].actor["role"] == "coordinator"
    assert granted[-1].rule == "coordinator_same_street"
    # The bundle holds its own access event (the docs' promise), and no other access event:
    # not the reporter's reads, not the coordinator's earlier case read.
    access = [r for r in bundle["records"] if r["kind"] == "access"]
    assert [r["stream_id"] for r in access] == [str(granted[-1].originator_id)]
    own = content[access[0]["leaf_index"]]
    assert own["rule"] == "coordinator_same_street"
    assert own["request_id"] == granted[-1].request_id != granted[-2].request_id
    key = keyring.load_public_key(settings.keys_dir / keyring.SERVICE_PUB, "key")
    assert verify_bundle(bundle, key).intact

    proof_only = client.get(
        f"/v1/evidence/cases/{case_a}/bundle?content=false", headers=coordinator
    ).json()
    assert "content" not in proof_only
    assert ours.name not in json.dumps(proof_only, ensure_ascii=False)


def test_a_bundle_is_refused_to_others_and_the_refusal_recorded(
    client: TestClient, auth: TokenFactory
) -> None:
    case_a, _, _, _ = _two_cases(client, auth)
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    no_order = auth(Role.INVESTIGATOR, INSPECTION, purpose="investigation")
    for headers in (reporter, no_order):
        response = client.get(f"/v1/evidence/cases/{case_a}/bundle", headers=headers)
        assert response.status_code == 404
        assert response.json()["type"] == "urn:casetrail:problem:case-not-found"
    denied = [
        e.rule
        for e in _application(client).access_events(UUID(case_a))
        if isinstance(e, AccessDenied)
    ]
    assert denied == ["evidence_bundle_not_for_role:reporter", "out_of_scope"]
    no_token = client.get(f"/v1/evidence/cases/{case_a}/bundle")
    assert no_token.status_code == 401


def _stale_checkpoints(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, stale_calls: int
) -> list[int]:
    """The tree lags behind the store (as when the settled horizon holds it back): the first
    `stale_calls` checkpoints end before this request's access event. Returns the calls' log."""
    evidence: Evidence = client.app.state.evidence  # type: ignore[attr-defined]
    before = evidence.checkpoint_now()
    real = evidence.checkpoint_now
    calls: list[int] = []

    def lagging() -> Checkpoint:
        calls.append(1)
        return before if len(calls) <= stale_calls else real()

    monkeypatch.setattr(evidence, "checkpoint_now", lagging)
    return calls


def test_a_bundle_waits_for_the_tree_to_reach_its_own_access_event(
    client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_a, _, _, _ = _two_cases(client, auth)
    calls = _stale_checkpoints(client, monkeypatch, stale_calls=2)
    bundle = _bundle(client, auth(Role.COORDINATOR, OFFICE, purpose="consultation"), case_a)
    assert len(calls) == 3
    assert [r["kind"] for r in bundle["records"]] == ["case", "access"]


def test_no_bundle_is_handed_out_without_its_own_access_event(
    client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_a, _, _, _ = _two_cases(client, auth)
    monkeypatch.setattr(documents, "OWN_ACCESS_TRIES", 3)
    calls = _stale_checkpoints(client, monkeypatch, stale_calls=1000)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    response = client.get(f"/v1/evidence/cases/{case_a}/bundle", headers=coordinator)
    assert response.status_code == 404
    assert response.json()["type"] == "urn:casetrail:problem:evidence-unavailable"
    assert "own access event" in response.json()["detail"]
    assert len(calls) == 3
