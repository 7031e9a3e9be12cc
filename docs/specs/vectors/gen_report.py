"""Writes docs/specs/vectors/report.json: known answers for docs/specs/report.md (the signed
message, the signature, the file of each form) with a fixed key, and negative files with the
reason each must be refused for. Run from the repository root:

    .venv/bin/python docs/specs/vectors/gen_report.py

Ed25519 signatures are deterministic, so the files are fixed bytes. They come from the project's
code (`gateway.reports.signing`), and the generator refuses to write a negative vector whose
documented reason the code does not give; `tests/specs/test_report_vectors.py` checks the
committed file against the code both ways and that this script reproduces it byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from gateway.reports.signing import (  # noqa: E402
    ReportFormatError,
    canonical_json,
    sign_content,
    sign_json,
    signed_message,
    verify_report,
)
from projections.evidence.checkpoints import key_id  # noqa: E402

OUT = Path(__file__).with_name("report.json")
SEED = hashlib.sha256(b"casetrail report vectors: service key").digest()
OTHER_SEED = hashlib.sha256(b"casetrail report vectors: another key").digest()

HTML = (
    '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>一案一倒查调查报告'
    "</title></head><body><h1>一案一倒查调查报告</h1><p>完整性校验通过。</p></body></html>\n"
).encode()
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<</Type/Catalog>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
REPORT: dict[str, Any] = {
    "document": "casetrail-investigation-report/v1",
    "investigation": {"id": "9e1a2b3c-4d5e-4f60-8a71-b2c3d4e5f607", "kind": "suicide"},
    "integrity": {"status": "intact", "statement_zh": "完整性校验通过。"},
    "generated_at": "2026-10-10T03:00:00+00:00",
}


def _key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def _public(seed: bytes) -> dict[str, str]:
    public = _key(seed).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "seed": seed.hex(),
        "public_raw": raw.hex(),
        "public_key_pem": pem.decode(),
        "key_id": key_id(public),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _positive(form: str, content: bytes, file: bytes) -> dict[str, Any]:
    message = signed_message(form, content)  # type: ignore[arg-type]
    signature = _key(SEED).sign(message)
    return {
        "form": form,
        "content_b64": _b64(content),
        "signed_message_b64": _b64(message),
        "signature": _b64(signature),
        "file_b64": _b64(file),
        "file_sha256": hashlib.sha256(file).hexdigest(),
    }


def _reason(file: bytes) -> str:
    public = _key(SEED).public_key()
    try:
        check = verify_report(file, public)
    except ReportFormatError:
        return "not-a-report"
    if check.intact or check.reason is None:
        raise SystemExit("a negative vector verifies: the code and the spec disagree")
    return check.reason


def render() -> str:
    key = _key(SEED)
    html = sign_content("html", HTML, key)
    pdf = sign_content("pdf", PDF, key)
    js = sign_json(REPORT, key)
    flipped = bytearray(html)
    flipped[20] ^= 0x01
    spaced = js.replace(b'":', b'": ', 1)
    negatives = [
        ("html-content-changed", bytes(flipped), "signature-mismatch"),
        ("html-byte-appended", html + b" ", "trailer-missing"),
        ("html-trailer-removed", HTML, "trailer-missing"),
        ("pdf-signed-by-another-key", sign_content("pdf", PDF, _key(OTHER_SEED)), "key-mismatch"),
        ("pdf-content-truncated", pdf[:10] + pdf[11:], "signature-mismatch"),
        ("json-not-canonical", spaced, "json-not-canonical"),
        ("json-malformed", js[:-3] + b"\n", "json-malformed"),
        (
            "json-member-added",
            canonical_json({**json.loads(js), "note": "x"}) + b"\n",
            "json-envelope",
        ),
        (
            "json-report-changed",
            js.replace("完整性校验通过".encode(), "完整性校验未通过".encode()),
            "signature-mismatch",
        ),
        ("not-a-report", b"\x89PNG\r\n\x1a\n", "not-a-report"),
    ]
    for name, file, reason in negatives:
        found = _reason(file)
        if found != reason:
            raise SystemExit(f"{name}: the code gives {found}, the spec says {reason}")
    data = {
        "format": "casetrail-report/v1",
        "spec": "docs/specs/report.md",
        "keys": {"service": _public(SEED), "other": _public(OTHER_SEED)},
        "positive": [
            _positive("html", HTML, html),
            _positive("pdf", PDF, pdf),
            {**_positive("json", canonical_json(REPORT), js), "report": REPORT},
        ],
        "negative": [
            {"name": name, "file_b64": _b64(file), "reason": reason}
            for name, file, reason in negatives
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")  # noqa: T201
