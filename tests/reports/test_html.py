"""The HTML report (gateway/reports/html.py) as text: self-contained (no URL but data:, no
script, the CSP meta tag), every section, values escaped, misses marked."""

from __future__ import annotations

import html as markup
import re

from gateway.reports.html import (
    CSP,
    local_time,
    render_html,
    timeline_chart,
    timeline_rows,
    timeline_table,
)
from tests.reports.fixtures import SECTION_HEADINGS, fixture_document


def test_the_page_loads_nothing_from_outside() -> None:
    html = render_html(fixture_document())
    assert not re.search(r"https?://", html, re.IGNORECASE)
    # No element has an attribute that fetches (values in text are escaped: no `<` before).
    assert not re.search(r"<[^>]*\b(src|href|action|srcset|poster|data)\s*=", html, re.I)
    assert "<script" not in html.lower()
    assert "@import" not in html and "url(" not in html
    found = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    assert found is not None
    assert markup.unescape(found[1]) == CSP
    assert CSP == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def test_every_section_and_the_chart_and_matrix_are_there() -> None:
    html = render_html(fixture_document())
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h2>" in html
    marks = timeline_chart(fixture_document()["cases"][0]["timeline"]).marks
    assert len(marks) >= 10  # entries at the same spot of a lane share a mark
    assert html.count("<circle ") == len(marks)
    assert '<table class="matrix">' in html
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="zh-CN">' in html


def test_values_are_escaped() -> None:
    html = render_html(fixture_document(note='<script>alert(1)</script><img src="x">'))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"<[^>]*\bsrc\s*=", html)


def test_misses_are_marked() -> None:
    html = render_html(fixture_document())
    # Two deadlines missed in the fixture, one met.
    assert html.count("逾期 ✗") == 2
    assert html.count('<tr class="missed">') >= 2
    assert "按时" in html


def test_repeated_reads_fold_into_the_first_row_but_the_chart_keeps_them() -> None:
    entry = {"lane": "access", "user": "u1", "unit": "x", "label_zh": "查阅", "detail_zh": ""}
    entries = [{**entry, "at": f"2026-09-01T0{h}:00:00+00:00", "position": None} for h in range(5)]
    rows = timeline_rows(entries)
    assert len(rows) == 1
    assert rows[0]["repeats"] == 4
    assert rows[0]["last_at"] == "2026-09-01T04:00:00+00:00"
    assert len(timeline_chart(entries).marks) == 5
    assert "其后又查阅 4 次" in render_html(
        {**fixture_document(), "cases": [{**fixture_document()["cases"][0], "timeline": entries}]}
    )


def test_each_row_shows_its_own_local_minute() -> None:
    """The table looks a UTC instant's local minute up by its UTC minute
    (`html._Cells.time`): instants across minutes, hours and the local date line, with and
    without microseconds, in another offset or none, each show what `local_time` says."""
    instants = [
        "2026-03-01T15:59:59.999999+00:00",
        "2026-03-01T15:59:00+00:00",
        "2026-03-01T16:00:00.000001+00:00",  # 00:00 the next day in China
        "2026-03-01T16:00:59+00:00",
        "2026-03-01T16:01:00+00:00",
        "2026-03-01T16:00:30+05:30",
        "2026-03-01T16:00:30.5+00:00",
        "2026-03-01T16:00:30",
        "2026-03-01",
    ]
    entries = [
        {"at": at, "position": n, "label_zh": "变更", "lane": "change", "user": "u", "unit": "v"}
        for n, at in enumerate(instants)
    ]
    table = str(timeline_table(timeline_rows(entries)))
    shown = re.findall(r"<tr><td>([^<]*)</td><td>(\d+)</td>", table)
    assert shown == [(local_time(at), str(n)) for n, at in enumerate(instants)]
    assert shown[2][0] == "2026-03-02 00:00" and shown[3][0] == "2026-03-02 00:00"
    assert shown[4][0] == "2026-03-02 00:01"
