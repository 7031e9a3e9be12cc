"""The report's signature (gateway/reports/signing.py, docs/specs/report.md): a signed file of
each form verifies with the service's public key; every one-byte change of it is refused, and
so is a file signed by another key."""

from __future__ import annotations

import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.reports.html import render_html
from gateway.reports.signing import (
    ReportFormatError,
    canonical_json,
    sign_content,
    sign_json,
    verify_report,
)
from tests.reports.fixtures import fixture_document

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
# A stand-in for a printed PDF: the signature treats its bytes as opaque.
FAKE_PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def _signed(form: str) -> bytes:
    if form == "html":
        return sign_content("html", render_html(fixture_document()).encode("utf-8"), KEY)
    if form == "pdf":
        return sign_content("pdf", FAKE_PDF, KEY)
    return sign_json(fixture_document(), KEY)


def _positions(data: bytes) -> list[int]:
    """Every byte of a short file; of a long one the first and last 300 (the trailer) and 300
    drawn at random."""
    if len(data) <= 2000:
        return list(range(len(data)))
    rng = random.Random(13)
    return sorted(
        {*range(300), *range(len(data) - 300, len(data)), *rng.sample(range(len(data)), 300)}
    )


@pytest.mark.parametrize("form", ["html", "pdf", "json"])
def test_a_signed_report_verifies(form: str) -> None:
    check = verify_report(_signed(form), KEY.public_key())
    assert check.intact, check.problem
    assert check.form == form
    assert check.summary().startswith("intact:")


@pytest.mark.parametrize("form", ["html", "pdf", "json"])
def test_every_one_byte_change_is_refused(form: str) -> None:
    data = _signed(form)
    for position in _positions(data):
        changed = bytearray(data)
        changed[position] ^= 0x01
        try:
            check = verify_report(bytes(changed), KEY.public_key())
        except ReportFormatError:
            continue  # no longer a report of any form: refused too
        assert not check.intact, f"a change at byte {position} of the {form} went unnoticed"


@pytest.mark.parametrize("form", ["html", "pdf", "json"])
def test_another_key_is_refused(form: str) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    check = verify_report(_signed(form), other)
    assert not check.intact
    assert "not by the given public key" in (check.problem or "")


def test_a_removed_byte_and_an_appended_byte_are_refused() -> None:
    data = _signed("html")
    assert not verify_report(data[:100] + data[101:], KEY.public_key()).intact
    assert not verify_report(data + b"\n", KEY.public_key()).intact


def test_json_with_the_same_meaning_but_other_bytes_is_refused() -> None:
    data = _signed("json")
    spaced = data.replace(b'","', b'", "', 1)
    assert spaced != data
    check = verify_report(spaced, KEY.public_key())
    assert not check.intact
    assert "canonical" in (check.problem or "")


def test_the_json_report_is_the_document() -> None:
    envelope = json.loads(_signed("json"))
    assert envelope["report"] == fixture_document()
    assert canonical_json(envelope) + b"\n" == _signed("json")


def test_something_else_is_not_a_report() -> None:
    with pytest.raises(ReportFormatError):
        verify_report(b"\x89PNG\r\n", KEY.public_key())
