"""The minimal offline verifier of docs/specs/examples/verify_bundle.py, written from the spec
alone: it imports nothing of the project (stdlib and `cryptography` only), accepts the spec's
positive vectors and refuses each negative one for exactly its documented reasons (as the
project's verifier does: tests/specs/test_bundle_vectors.py), and agrees with the service on
the bundles it really issues, which hold their own access event."""

from __future__ import annotations

import ast
import base64
import copy
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from domain.taxonomy import Role
from gateway import keyring
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT / "docs/specs/examples/verify_bundle.py"
DATA: dict[str, Any] = json.loads(
    (ROOT / "docs/specs/vectors/bundle.json").read_text(encoding="utf-8")
)
VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
INSPECTION = "county-inspection"


def _run(bundle: Any, public_key: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False, indent=1), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-I", str(VERIFIER), str(path), "--public-key", str(public_key), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # -I and another directory: nothing of the project can be imported
        check=False,
    )


@pytest.fixture
def vector_key(tmp_path: Path) -> Path:
    path = tmp_path / "service.pub"
    path.write_text(DATA["keys"]["service"]["public_key_pem"], encoding="ascii")
    return path


def test_it_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(VERIFIER.read_text(encoding="utf-8"))
    imported = {
        (node.module or "" if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__", "cryptography"} <= set(sys.stdlib_module_names), imported


@pytest.mark.parametrize("vector", DATA["positive"], ids=lambda v: v["name"])
def test_it_accepts_the_positive_vectors(
    vector: dict[str, Any], vector_key: Path, tmp_path: Path
) -> None:
    result = _run(vector["bundle"], vector_key, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"intact": True, "problems": []}
    plain = subprocess.run(
        [sys.executable, "-I", str(VERIFIER), str(tmp_path / "bundle.json"), "--public-key",
         str(vector_key)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert plain.returncode == 0
    assert plain.stdout.startswith(f"intact: {len(vector['bundle']['records'])} stored events")
    assert "note:" not in plain.stdout  # both vectors hold their own access event


@pytest.mark.parametrize("vector", DATA["negative"], ids=lambda v: v["name"])
def test_it_refuses_each_negative_vector_for_exactly_its_reasons(
    vector: dict[str, Any], vector_key: Path, tmp_path: Path
) -> None:
    result = _run(vector["bundle"], vector_key, tmp_path)
    if vector["reasons"] == ["not-a-bundle"]:
        assert result.returncode == 2
        assert "not an evidence bundle" in result.stderr
        return
    assert result.returncode == 1, result.stdout + result.stderr
    found = json.loads(result.stdout)
    assert not found["intact"]
    assert sorted({p["reason"] for p in found["problems"]}) == sorted(vector["reasons"])


def test_it_refuses_a_bundle_checked_with_another_key(tmp_path: Path) -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(DATA["keys"]["other"]["seed"]))
    path = tmp_path / "other.pub"
    path.write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = _run(DATA["positive"][0]["bundle"], path, tmp_path)
    assert result.returncode == 1
    reasons = {p["reason"] for p in json.loads(result.stdout)["problems"]}
    assert reasons == {"checkpoint-signature", "attestation-invalid"}


def test_a_member_named_twice_cannot_be_checked(vector_key: Path, tmp_path: Path) -> None:
    text = json.dumps(DATA["positive"][1]["bundle"])
    path = tmp_path / "twice.json"
    path.write_text(text[:-1] + ', "case_id": "' + DATA["positive"][1]["bundle"]["case_id"] + '"}')
    result = subprocess.run(
        [sys.executable, "-I", str(VERIFIER), str(path), "--public-key", str(vector_key)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "named twice" in result.stderr


# --- bundles the service issues --------------------------------------------------------------


def _issued(client: TestClient, auth: TokenFactory) -> tuple[str, dict[str, Any], dict[str, Any]]:
    reporter = auth(Role.REPORTER, VILLAGE)
    case_id = client.post("/v1/cases", json=planted_case().body, headers=reporter).json()["id"]
    order = client.post(
        "/v1/investigation-orders",
        json={
            "case_id": case_id,
            "investigator": f"user-{Role.INVESTIGATOR}-{INSPECTION}",
            "reason": "学生遭侵害后的一案一倒查。",
            "expires_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        },
        headers=auth(Role.COORDINATOR, OFFICE),
    )
    assert order.status_code == 201, order.text
    bundles = []
    for headers, query in (
        (auth(Role.COORDINATOR, OFFICE, purpose="consultation"), "?content=false"),
        (auth(Role.INVESTIGATOR, INSPECTION, purpose="investigation"), ""),
    ):
        response = client.get(f"/v1/evidence/cases/{case_id}/bundle{query}", headers=headers)
        assert response.status_code == 200, response.text
        bundles.append(response.json())
    return case_id, bundles[0], bundles[1]


def test_it_agrees_with_the_service_on_the_bundles_it_issues(
    settings: Settings, client: TestClient, auth: TokenFactory, tmp_path: Path
) -> None:
    case_id, coordinators, investigators = _issued(client, auth)
    public = settings.keys_dir / keyring.SERVICE_PUB
    for bundle in (coordinators, investigators):
        assert bundle["case_id"] == case_id
        # Every bundle holds its own access event: the coordinator's too.
        assert "access" in {r["kind"] for r in bundle["records"]}
        result = _run(bundle, public, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "content" not in coordinators
    assert {r["kind"] for r in investigators["records"]} == {"case", "access", "order"}

    altered = copy.deepcopy(coordinators)
    state = bytearray(base64.b64decode(altered["records"][0]["state"]))
    state[-1] ^= 0x01
    altered["records"][0]["state"] = base64.b64encode(bytes(state)).decode()
    result = _run(altered, public, tmp_path)
    assert result.returncode == 1
    reasons = {p["reason"] for p in json.loads(result.stdout)["problems"]}
    assert {"attestation-invalid", "record-not-included"} <= reasons
