#!/usr/bin/env python3
"""A minimal offline checker of casetrail's signed investigation reports, written from
docs/specs/report.md alone: the Python standard library and the `cryptography` package,
nothing of the project.

    python verify_report.py FILE --public-key service-signing.pub [--json]

FILE is a report in any of its forms (html, pdf, json). Exit 0 and `intact: ...` when every
byte is as the service signed it; 1 and `TAMPERED: <reason>: <what>` when not (the reason codes
of the spec, section 4); 2 when the file is no report or the key cannot be read. With `--json`
one JSON object instead: {"intact", "form", "reason"}. `tests/specs/test_report_vectors.py`
runs it on the committed vectors and checks it imports nothing else.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "casetrail-report/v1"
_SIG = rb"key_id=([0-9a-f]{16}) sig=([A-Za-z0-9+/]{86}==)"
TRAILERS = {
    "html": re.compile(rb"\n<!-- casetrail-report-signature v1 " + _SIG + rb" -->\n\Z"),
    "pdf": re.compile(rb"\n%casetrail-report-signature v1 " + _SIG + rb"\n\Z"),
}


class Refused(Exception):
    def __init__(self, reason: str, what: str) -> None:
        super().__init__(what)
        self.reason = reason


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def form_of(data: bytes) -> str | None:
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"{"):
        return "json"
    if data.lstrip()[:14].lower() == b"<!doctype html":
        return "html"
    return None


def parts(form: str, data: bytes) -> tuple[bytes, str, bytes]:
    """(content, key id, signature), or Refused."""
    if form != "json":
        found = TRAILERS[form].search(data)
        if found is None:
            raise Refused("trailer-missing", "no signature trailer ends the file")
        return data[: found.start()], found[1].decode(), base64.b64decode(found[2])
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused("json-malformed", "the file is not UTF-8 JSON") from None
    signature = envelope.get("signature") if isinstance(envelope, dict) else None
    if (
        not isinstance(envelope, dict)
        or set(envelope) != {"format", "report", "signature"}
        or envelope["format"] != FORMAT
        or not isinstance(envelope["report"], dict)
        or not isinstance(signature, dict)
        or signature.get("algorithm") != "Ed25519"
        or not isinstance(signature.get("key_id"), str)
        or not isinstance(signature.get("value"), str)
    ):
        raise Refused("json-envelope", "not the report's JSON envelope")
    try:
        raw = base64.b64decode(signature["value"], validate=True)
    except (binascii.Error, ValueError):
        raise Refused("json-envelope", "the signature value is not base64") from None
    if canonical(envelope) + b"\n" != data:
        raise Refused("json-not-canonical", "the file is not the canonical JSON of its content")
    return canonical(envelope["report"]), signature["key_id"], raw


def check(data: bytes, key: Ed25519PublicKey) -> str:
    """The form of an intact report, or Refused. ValueError when it is no report."""
    form = form_of(data)
    if form is None:
        raise ValueError("not a casetrail report (neither html, pdf nor json)")
    content, kid, signature = parts(form, data)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    expected = hashlib.sha256(raw).digest()[:8].hex()
    if kid != expected:
        raise Refused("key-mismatch", f"signed by key {kid}, not by the given key {expected}")
    message = f"{FORMAT} {form}\n".encode("ascii") + content
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise Refused("signature-mismatch", "the signature does not match the content") from None
    return form


def main() -> int:
    parser = argparse.ArgumentParser(description="Check a casetrail report offline.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--public-key", type=Path, required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        key = serialization.load_pem_public_key(args.public_key.read_bytes())
        data = args.file.read_bytes()
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: cannot read the file or the key: {type(exc).__name__}" + "\n")
        return 2
    if not isinstance(key, Ed25519PublicKey):
        sys.stderr.write("error: the public key is not an Ed25519 key" + "\n")
        return 2
    try:
        form = check(data, key)
    except Refused as exc:
        if args.json:
            refused = {"intact": False, "form": form_of(data), "reason": exc.reason}
            sys.stdout.write(json.dumps(refused) + "\n")
        else:
            sys.stdout.write(f"TAMPERED: {exc.reason}: {exc}" + "\n")
        return 1
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}" + "\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps({"intact": True, "form": form, "reason": None}) + "\n")
    else:
        sys.stdout.write(f"intact: the {form} report is signed by the given key" + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
