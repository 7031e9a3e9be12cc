"""The signed report against its spec (`docs/specs/report.md`) and vectors
(`docs/specs/vectors/report.json`), both ways: the project's signing code writes each positive
file byte for byte from the vectors' inputs and accepts it; it refuses each negative file for
exactly its documented reason; the stand-alone verifier (`docs/specs/examples/verify_report.py`,
standard library and `cryptography` only) agrees on every vector; and the generator, run again,
writes the committed file byte for byte."""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.reports.signing import (
    ReportFormatError,
    sign_content,
    sign_json,
    signed_message,
    verify_report,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs/specs/vectors/report.json"
GENERATOR = ROOT / "docs/specs/vectors/gen_report.py"
VERIFIER = ROOT / "docs/specs/examples/verify_report.py"
DATA: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))


def _key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(DATA["keys"]["service"]["seed"]))


def _public() -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(DATA["keys"]["service"]["public_key_pem"].encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


def _run(file: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path, key = tmp_path / "report.bin", tmp_path / "service.pub"
    path.write_bytes(file)
    key.write_text(DATA["keys"]["service"]["public_key_pem"], encoding="ascii")
    return subprocess.run(
        [sys.executable, "-I", str(VERIFIER), str(path), "--public-key", str(key), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # -I and another directory: nothing of the project can be imported
        check=False,
    )


def test_the_generator_gives_the_committed_file_byte_for_byte() -> None:
    spec = importlib.util.spec_from_file_location("gen_report", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == VECTORS.read_text(encoding="utf-8")


@pytest.mark.parametrize("vector", DATA["positive"], ids=lambda v: v["form"])
def test_the_code_writes_each_positive_file_and_accepts_it(vector: dict[str, Any]) -> None:
    content = base64.b64decode(vector["content_b64"])
    form = vector["form"]
    message = base64.b64decode(vector["signed_message_b64"])
    assert message == signed_message(form, content)
    assert message.startswith(f"casetrail-report/v1 {form}\n".encode())
    assert base64.b64decode(vector["signature"]) == _key().sign(message)
    file = base64.b64decode(vector["file_b64"])
    made = sign_json(vector["report"], _key()) if form == "json" else sign_content(
        form, content, _key()
    )
    assert made == file
    check = verify_report(file, _public())
    assert check.intact and check.form == form
    assert check.key_id == DATA["keys"]["service"]["key_id"]


@pytest.mark.parametrize("vector", DATA["negative"], ids=lambda v: v["name"])
def test_the_code_refuses_each_negative_file_for_its_reason(vector: dict[str, Any]) -> None:
    file = base64.b64decode(vector["file_b64"])
    if vector["reason"] == "not-a-report":
        with pytest.raises(ReportFormatError):
            verify_report(file, _public())
        return
    check = verify_report(file, _public())
    assert not check.intact
    assert check.reason == vector["reason"]


def test_the_example_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(VERIFIER.read_text(encoding="utf-8"))
    imported = {
        (node.module or "" if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__", "cryptography"} <= set(sys.stdlib_module_names), imported


@pytest.mark.parametrize(
    "vector",
    [*DATA["positive"], *DATA["negative"]],
    ids=lambda v: v.get("name", v.get("form")),
)
def test_the_example_agrees_on_every_vector(vector: dict[str, Any], tmp_path: Path) -> None:
    result = _run(base64.b64decode(vector["file_b64"]), tmp_path)
    reason = vector.get("reason")
    if reason is None:
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout) == {"intact": True, "form": vector["form"], "reason": None}
    elif reason == "not-a-report":
        assert result.returncode == 2
        assert result.stderr.startswith("error: not a casetrail report")
    else:
        assert result.returncode == 1, result.stdout + result.stderr
        assert json.loads(result.stdout)["reason"] == reason
