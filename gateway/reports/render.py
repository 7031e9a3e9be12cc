"""The report document in the form asked for, signed: what the route and the CLI hand out.

`produce` renders (html: `gateway.reports.html`; pdf: that page printed by Chromium,
`gateway.reports.pdf`; json: the document itself) and signs with the service's signing key
(`gateway.reports.signing`, byte-exact in `docs/specs/report.md`). Proven by
tests/reports/test_browser.py and tests/reports/test_cli.py.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.reports import collector
from gateway.reports.html import render_html
from gateway.reports.pdf import html_to_pdf
from gateway.reports.signing import Form, sign_content, sign_json

MEDIA_TYPES: Final = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "json": "application/json",
}


def produce(
    document: dict[str, Any], form: Form, key: Ed25519PrivateKey, *, chromium: str
) -> bytes:
    """The signed file of `form` (`PdfUnavailable` when a pdf cannot be printed). Rendered
    with the cyclic garbage collector paused (`gateway.reports.collector`), as the document
    was built; printed without."""
    with collector.paused():
        if form == "json":
            return sign_json(document, key)
        html = render_html(document)
    # Chromium's printing (seconds) runs with the collector back on: nothing of it is ours.
    if form == "html":
        return sign_content("html", html.encode("utf-8"), key)
    return sign_content("pdf", html_to_pdf(html, chromium), key)


def sha256_hex(data: bytes) -> str:
    """The digest an issued report is recorded with (`Investigation.ReportIssued`)."""
    return hashlib.sha256(data).hexdigest()
