"""The signature of an investigation report (一案一倒查报告): made with the service's signing key
(`keys/service-signing.key`, the one that signs checkpoints), checked offline with its public
key alone.

Byte-exact format: `docs/specs/report.md`. In short, for each of the three forms:

- html, pdf: the file is the rendered content followed by ONE trailer line,
  `<!-- casetrail-report-signature v1 key_id=<16 hex> sig=<base64> -->` (html) or
  `%casetrail-report-signature v1 key_id=<16 hex> sig=<base64>` (pdf, a PDF comment after
  `%%EOF`), preceded by a newline and followed by one. The signature covers
  `casetrail-report/v1 <form>\\n` + every byte of the content before the trailer: a change of
  any byte of the content (or of the trailer) fails verification.
- json: the file is the canonical JSON (keys sorted, no spaces, UTF-8, no ASCII escaping) of
  `{"format": "casetrail-report/v1", "report": R, "signature": {"algorithm": "Ed25519",
  "key_id": ..., "value": <base64>}}` and one newline; the signature covers
  `casetrail-report/v1 json\\n` + the canonical JSON of R. A file that is not exactly that
  canonical form is refused, so that here too any changed byte fails.

Proven by tests/reports/test_signing.py (round trip, every one-byte change refused, another
key refused), tests/specs/test_report_vectors.py (the vectors both ways; the stand-alone
verifier `docs/specs/examples/verify_report.py` agrees) and tests/reports/test_cli.py
(`casetrail verify-report`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from projections.evidence.checkpoints import key_id

REPORT_FORMAT: Final = "casetrail-report/v1"
FORMS: Final = ("html", "pdf", "json")
Form = Literal["html", "pdf", "json"]

_MARK: Final = b"casetrail-report-signature v1"
_TRAILER: Final = {
    "html": (b"\n<!-- " + _MARK + b" key_id=", b" -->\n"),
    "pdf": (b"\n%" + _MARK + b" key_id=", b"\n"),
}
# key_id: 16 lowercase hex digits; sig: the 64-byte Ed25519 signature, standard base64 (88
# characters with its padding). Anchored at the end of the file: nothing may follow.
_TRAILER_PATTERN: Final = {
    form: re.compile(
        re.escape(head) + rb"([0-9a-f]{16}) sig=([A-Za-z0-9+/]{86}==)" + re.escape(tail) + rb"\Z"
    )
    for form, (head, tail) in _TRAILER.items()
}


class ReportFormatError(ValueError):
    """The file is not a signed report of the expected form (the message says what to do)."""


def signed_message(form: Form, content: bytes) -> bytes:
    """What the signature covers: the context line, then the content's bytes."""
    return f"{REPORT_FORMAT} {form}\n".encode("ascii") + content


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 without ASCII escaping (as the bundle's)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign_content(form: Literal["html", "pdf"], content: bytes, key: Ed25519PrivateKey) -> bytes:
    """The rendered html or pdf, with its signature trailer appended."""
    signature = base64.b64encode(key.sign(signed_message(form, content)))
    head, tail = _TRAILER[form]
    kid = key_id(key.public_key()).encode("ascii")
    return content + head + kid + b" sig=" + signature + tail


def sign_json(report: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The report document as a signed, canonical JSON file."""
    signature = key.sign(signed_message("json", canonical_json(report)))
    envelope = {
        "format": REPORT_FORMAT,
        "report": report,
        "signature": {
            "algorithm": "Ed25519",
            "key_id": key_id(key.public_key()),
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }
    return canonical_json(envelope) + b"\n"


def detect_form(data: bytes) -> Form:
    """Which form a file is, from its first bytes."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"{"):
        return "json"
    if data.lstrip()[:15].lower().startswith(b"<!doctype html"):
        return "html"
    raise ReportFormatError(
        "not a casetrail report: expected an HTML, PDF or JSON file written by "
        "`casetrail investigate` or GET /v1/investigations/{id}/report"
    )


@dataclass(frozen=True)
class ReportCheck:
    """The outcome; `reason` is the spec's code of the first problem found
    (`docs/specs/report.md`, "Verifying")."""

    form: Form
    key_id: str
    intact: bool
    problem: str | None = None
    reason: str | None = None

    def summary(self) -> str:
        if self.intact:
            return (
                f"intact: the {self.form} report is signed by the service key {self.key_id}; "
                "not a byte was changed"
            )
        return f"TAMPERED: {self.problem}"


def verify_report(data: bytes, public_key: Ed25519PublicKey) -> ReportCheck:
    """Check a signed report file with the service's public key alone.

    Raises `ReportFormatError` only when the file is no report at all (neither HTML, PDF nor
    JSON); a report that was changed (its signature or trailer broken, its JSON no longer
    canonical) or signed by another key is `intact=False`, with the reason."""
    form = detect_form(data)
    expected = key_id(public_key)
    try:
        content, kid, signature = _parts(form, data)
    except _Altered as exc:
        return ReportCheck(form, "", False, str(exc), exc.reason)
    if kid != expected:
        return ReportCheck(
            form,
            kid,
            False,
            f"the report is signed by key {kid}, not by the given public key ({expected})",
            "key-mismatch",
        )
    try:
        public_key.verify(signature, signed_message(form, content))
    except InvalidSignature:
        return ReportCheck(
            form,
            kid,
            False,
            "the signature does not match the report's content: it was changed",
            "signature-mismatch",
        )
    return ReportCheck(form, kid, True)


class _Altered(ValueError):
    """The file is a report of its form, but not as it was signed; `reason`: the spec's code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _parts(form: Form, data: bytes) -> tuple[bytes, str, bytes]:
    """(signed content, key id, signature) of a file of `form`."""
    if form == "json":
        return _json_parts(data)
    found = _TRAILER_PATTERN[form].search(data)
    if found is None:
        raise _Altered(
            "trailer-missing",
            f"the {form} file carries no report signature at its end: it was changed, or not "
            "written by casetrail"
        )
    return data[: found.start()], found[1].decode("ascii"), base64.b64decode(found[2])


def _json_parts(data: bytes) -> tuple[bytes, str, bytes]:
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Altered(
            "json-malformed", "the JSON report is not valid JSON: it was changed"
        ) from None
    if not isinstance(envelope, dict) or envelope.get("format") != REPORT_FORMAT:
        raise _Altered("json-envelope", f"not a JSON report (expected format {REPORT_FORMAT!r})")
    signature = envelope.get("signature")
    report = envelope.get("report")
    if set(envelope) != {"format", "report", "signature"} or not isinstance(report, dict):
        raise _Altered(
            "json-envelope", "the JSON report has other members than format, report, signature"
        )
    if not isinstance(signature, dict) or signature.get("algorithm") != "Ed25519":
        raise _Altered(
            "json-envelope", "the JSON report's signature is not an Ed25519 signature object"
        )
    kid, value = signature.get("key_id"), signature.get("value")
    if not isinstance(kid, str) or not isinstance(value, str):
        raise _Altered("json-envelope", "the JSON report's signature lacks its key_id or value")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Altered(
            "json-envelope", "the JSON report's signature value is not base64"
        ) from None
    if canonical_json(envelope) + b"\n" != data:
        # Same meaning, other bytes: refused, so that every byte of the file is vouched for.
        raise _Altered(
            "json-not-canonical",
            "the JSON report is not in its canonical form (sorted keys, no spaces, one final "
            "newline): it was changed"
        )
    return canonical_json(report), kid, raw
