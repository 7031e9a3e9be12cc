"""The report's HTML printed to PDF by headless Chromium (Debian's `chromium`).

The binary is `CASETRAIL_CHROMIUM` (default `chromium`, looked up on PATH). It runs with a
profile of its own in a temporary directory, no sandbox (a service user in a container has no
user namespaces), and only ever opens the report's own file: the page itself loads nothing
(its Content-Security-Policy allows no fetch, `gateway.reports.html`). A missing binary, a
crash or a hang (`TIMEOUT_SECONDS`) is a `PdfUnavailable` whose message says what to install
or set; never a partial file.

Proven by tests/reports/test_browser.py (the PDF opens, its text has every section heading).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

TIMEOUT_SECONDS: Final = 90


class PdfUnavailable(RuntimeError):
    """No PDF could be printed; the message says why and what to do."""


def find_chromium(configured: str) -> str:
    """The path of the Chromium binary named by the setting (a path, or a name on PATH)."""
    found = shutil.which(configured)
    if found is None:
        raise PdfUnavailable(
            "no Chromium to print the PDF with: install it (Debian: apt-get install chromium) "
            "or set CASETRAIL_CHROMIUM to its path; html and json reports need none"
        )
    return found


def html_to_pdf(html: str, chromium: str) -> bytes:
    """Print the page to an A4 PDF (backgrounds on, no header or footer)."""
    binary = find_chromium(chromium)
    with tempfile.TemporaryDirectory(prefix="casetrail-report-") as tmp:
        folder = Path(tmp)
        page = folder / "report.html"
        page.write_text(html, encoding="utf-8")
        out = folder / "report.pdf"
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            f"--user-data-dir={folder / 'profile'}",
            "--no-pdf-header-footer",
            "--print-to-pdf-no-header",
            f"--print-to-pdf={out}",
            page.as_uri(),
        ]
        try:
            done = subprocess.run(  # noqa: S603 (a fixed argument list, no shell)
                command,
                capture_output=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise PdfUnavailable(
                f"Chromium did not print the PDF within {TIMEOUT_SECONDS} s; try again, or ask "
                "for the html form"
            ) from None
        except OSError as exc:
            raise PdfUnavailable(
                f"Chromium could not be started ({type(exc).__name__}); check CASETRAIL_CHROMIUM"
            ) from None
        if done.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise PdfUnavailable(
                f"Chromium failed to print the PDF (exit {done.returncode}); check that "
                "CASETRAIL_CHROMIUM is a working Chromium, or ask for the html form"
            )
        data = out.read_bytes()
    if not data.startswith(b"%PDF-"):
        raise PdfUnavailable("Chromium wrote something that is not a PDF; ask for the html form")
    return data
