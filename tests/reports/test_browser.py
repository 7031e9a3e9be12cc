"""The report in a real browser: Debian's headless Chromium, driven by playwright with the
system binary (never a downloaded browser). The page renders (a screenshot, a non-trivial
PNG), shows the chart, the matrix and every section, no text overflows its box at a desktop
and a phone width, it fetches nothing; and the PDF Chromium prints opens and has the same
section headings in its text."""

from __future__ import annotations

import io
import struct
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from gateway.reports.html import render_html, timeline_chart
from gateway.reports.pdf import PdfUnavailable, html_to_pdf
from tests.reports.conftest import chromium_path
from tests.reports.fixtures import SECTION_HEADINGS, fixture_document

pytestmark = pytest.mark.browser

# Elements whose text must stay inside their box; inline boxes have no scroll width.
OVERFLOWING = """() => [...document.querySelectorAll(
    'h1, h2, h3, p, li, td, th, dt, dd, figcaption, div, section, header, footer, table')]
  .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.tagName + ': ' + e.textContent.trim().slice(0, 60))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = chromium_path()
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            yield found
        finally:
            found.close()


def _open(browser: Browser, tmp_path: Path, html: str, width: int) -> tuple[Page, list[str]]:
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(path.as_uri())
    return page, requested


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("width", [1024, 480])
def test_the_report_renders_with_every_section_and_nothing_overflows(
    browser: Browser, tmp_path: Path, width: int
) -> None:
    page, requested = _open(browser, tmp_path, render_html(fixture_document()), width)
    try:
        shot = tmp_path / f"report-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        shot_width, shot_height = _png_size(data)
        assert shot_width == width and shot_height > 1500
        assert len(data) > 50_000  # text, tables and a chart, not a blank page

        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent.trim())")
        assert headings == list(SECTION_HEADINGS)
        assert page.locator("section#timeline figure svg").count() == 1
        box = page.locator("section#timeline figure svg").bounding_box()
        assert box is not None and box["height"] > 100
        timeline = fixture_document()["cases"][0]["timeline"]
        assert page.locator("svg circle").count() == len(timeline_chart(timeline).marks) >= 10
        matrix = page.locator("table.matrix")
        assert matrix.count() == 1
        facts = fixture_document()["cases"][0]["knowledge"]["facts"]
        assert matrix.locator("tbody tr").count() == len(facts)
        assert page.locator("section#deadlines tr.missed").count() == 2

        assert page.evaluate(OVERFLOWING) == []
        # Only the page itself was loaded: no font, image, style or script from anywhere.
        assert requested == [(tmp_path / "report.html").as_uri()]
    finally:
        page.close()


def test_the_overflow_check_finds_an_overflowing_cell(browser: Browser, tmp_path: Path) -> None:
    """The check above can fail: a cell whose long token may not wrap is found."""
    html = (
        '<!DOCTYPE html><table style="table-layout:fixed;width:200px"><tr>'
        '<td style="overflow:hidden;word-break:normal;overflow-wrap:normal">'
        + "x" * 200
        + "</td></tr></table>"
    )
    page, _ = _open(browser, tmp_path, html, 800)
    try:
        assert page.evaluate(OVERFLOWING) != []
    finally:
        page.close()


def test_the_pdf_opens_and_has_the_same_sections(chromium: str) -> None:
    data = html_to_pdf(render_html(fixture_document()), chromium)
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 2
    # CJK fonts map some glyphs to their compatibility forms (⼀ for 一): compare as NFKC.
    text = unicodedata.normalize("NFKC", "\n".join(p.extract_text() for p in reader.pages))
    for heading in SECTION_HEADINGS:
        assert heading in text, heading
    assert "一案一倒查调查报告" in text
    assert "完整性校验通过" in text


def test_a_missing_chromium_is_one_clear_error() -> None:
    with pytest.raises(PdfUnavailable, match="apt-get install chromium"):
        html_to_pdf("<!DOCTYPE html><p>x</p>", "/nonexistent/chromium")
