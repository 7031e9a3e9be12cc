"""The investigation report as one self-contained Chinese HTML page.

Self-contained means the page loads nothing: no URL of any scheme but `data:` appears in an
attribute, the styles are inline, the timeline is an inline SVG drawn here (no script, no
font, no image fetched), and a Content-Security-Policy meta tag (`default-src 'none';
style-src 'unsafe-inline'; img-src data:`) makes a browser refuse anything else should a
value ever slip through. Every value comes from the report document (`gateway.reports.document`)
through jinja2 with autoescaping on (the timeline table's rows, built in one pass by
`timeline_table`, through the same escape, markupsafe's), so no text of a case can become
markup.

Long identifiers (user ids, unit codes, hashes) wrap inside their cells (`overflow-wrap:
anywhere`, fixed table layout), so nothing overflows the page on screen or in the PDF.

Proven by tests/reports/test_html.py (escaping, nothing external, every section) and
tests/reports/test_browser.py (headless Chromium: screenshot, chart, matrix, sections, no
element whose text overflows; the PDF's text has the same headings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import jinja2
from markupsafe import Markup, escape

# China has one time zone and no daylight saving: local times are UTC+8.
CHINA: Final = timezone(timedelta(hours=8), "CST")

CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

SECTIONS: Final = (
    ("investigation", "一、调查概况"),
    ("timeline", "二、案件时间线"),
    ("knowledge", "三、知情矩阵"),
    ("deadlines", "四、时限分析"),
    ("findings", "五、调查认定"),
    ("rectifications", "六、整改事项"),
    ("integrity", "七、完整性声明"),
)

KIND_ZH: Final = {"suicide": "自杀", "attempted_suicide": "自杀未遂", "harm": "伤害"}
HOW_ZH: Final = {
    "reported": "上报",
    "consultation": "会商",
    "notice_published": "通知已发出",
    "notice_received": "客户端已接收",
    "signed_for": "签收",
    "read": "查阅",
    "ledger": "台账",
    "lookup": "查询",
    "export": "导出",
    "bundle": "证据包",
    "report": "报告",
}
DETERMINATION_ZH: Final = {
    "fulfilled": "已履职",
    "late": "迟延履职",
    "not_fulfilled": "未履职",
}
STATUS_ZH: Final = {
    "met": "按时",
    "missed": "逾期",
    "open": "未到期",
    "late": "逾期完成",
    "ended": "任务已结束",
}
LANES: Final = (
    ("change", "档案变更", "#1f5fa8"),
    ("notice", "通知与签收", "#2e7d32"),
    ("access", "查阅", "#6a4c93"),
    ("refusal", "拒绝", "#c62828"),
    ("deadline", "时限", "#e65100"),
    ("order", "调查令", "#546e7a"),
)

_TEMPLATES: Final = Path(__file__).with_name("templates")

# The chart's geometry, in SVG user units (the SVG scales to the page's width).
_WIDTH: Final = 760
_LEFT: Final = 92
_RIGHT: Final = 16
_LANE: Final = 30
_TOP: Final = 12
_AXIS: Final = 34
_TICKS: Final = 5


def local_time(value: Any) -> str:
    """An ISO instant as China's local time to the minute; a date stays a date; blank stays."""
    if not value:
        return "—"
    text = str(value)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return text
    if instant.tzinfo is None:
        return text if len(text) <= 10 else instant.strftime("%Y-%m-%d %H:%M")
    return instant.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    """An inline SVG timeline: one lane per kind of entry, time along x."""

    width: int
    height: int
    lanes: list[tuple[float, str, str]]
    ticks: list[tuple[float, str]]
    marks: list[Mark]
    axis_y: float


def timeline_chart(entries: list[dict[str, Any]]) -> Chart:
    """The chart of one case's timeline entries (`at`, `lane`, `label_zh`)."""
    lanes = [(code, label, colour) for code, label, colour in LANES]
    lane_of = {code: i for i, (code, _, _) in enumerate(lanes)}
    height = _TOP + _LANE * len(lanes) + _AXIS
    axis_y = float(_TOP + _LANE * len(lanes))
    times: list[datetime | None] = []
    for entry in entries:
        try:
            times.append(datetime.fromisoformat(str(entry.get("at"))))
        except ValueError:
            times.append(None)
    known = [t for t in times if t is not None and t.tzinfo is not None]
    start = min(known) if known else datetime.now(CHINA)
    end = max(known) if known else start
    span = max((end - start).total_seconds(), 1.0)
    plot = _WIDTH - _LEFT - _RIGHT

    def x_of(instant: datetime) -> float:
        return round(_LEFT + plot * (instant - start).total_seconds() / span, 1)

    # One mark per lane and unit of width: a case of thousands of reads stays a small page;
    # the mark's title says how many entries it stands for.
    placed: dict[tuple[int, float], tuple[Mark, int]] = {}
    for entry, instant in zip(entries, times, strict=True):
        if instant is None or instant.tzinfo is None:
            continue
        lane = lane_of.get(str(entry.get("lane")), 0)
        x = x_of(instant)
        spot = (lane, float(round(x)))
        if spot in placed:
            first, count = placed[spot]
            placed[spot] = (first, count + 1)
            continue
        mark = Mark(
            x=x,
            y=float(_TOP + _LANE * lane + _LANE / 2),
            colour=lanes[lane][2],
            title=f"{local_time(entry.get('at'))} {entry.get('label_zh') or entry.get('kind')}",
        )
        placed[spot] = (mark, 1)
    marks = [
        mark if count == 1 else Mark(mark.x, mark.y, mark.colour, f"{mark.title} 等 {count} 条")
        for mark, count in placed.values()
    ]
    ticks = [
        (
            round(_LEFT + plot * i / (_TICKS - 1), 1),
            (start + (end - start) * i / (_TICKS - 1)).astimezone(CHINA).strftime("%m-%d %H:%M"),
        )
        for i in range(_TICKS)
    ]
    return Chart(
        width=_WIDTH,
        height=height,
        lanes=[
            (float(_TOP + _LANE * i + _LANE / 2), label, colour)
            for i, (_, label, colour) in enumerate(lanes)
        ],
        ticks=ticks,
        marks=marks,
        axis_y=axis_y,
    )


def timeline_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline's table: every entry, except that a granted read by someone who read the
    case before through the same way is folded into that first row ("其后又查阅 N 次"): the
    first instant each person knew is what the table must show; the JSON form keeps them all."""
    rows: list[dict[str, Any]] = []
    first: dict[tuple[str, str, str], dict[str, Any]] = {}
    for entry in entries:
        if entry.get("lane") == "access":
            key = (str(entry.get("user")), str(entry.get("unit")), str(entry.get("label_zh")))
            seen = first.get(key)
            if seen is not None:
                seen["repeats"] += 1
                seen["last_at"] = entry.get("at")
                continue
            row = {**entry, "repeats": 0, "last_at": None}
            first[key] = row
            rows.append(row)
        else:
            rows.append({**entry, "repeats": 0, "last_at": None})
    return rows


def _cell_time(value: Any) -> str:
    """`local_time`, without `strftime` for an instant (one per row of a long timeline)."""
    if not value:
        return "—"
    text = str(value)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return text
    if instant.tzinfo is None:
        return local_time(text)
    t = instant.astimezone(CHINA)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}"


class _Cells:
    """A table's cell texts, each escaped once: the same few people, units, labels and details
    recur on thousands of rows, and so does each minute (a row shows its instant to the
    minute)."""

    def __init__(self) -> None:
        self.escaped: dict[str, str] = {}
        self.minutes: dict[str, str] = {}

    def text(self, value: Any) -> str:
        if type(value) is not str:  # a number, or markup (kept as it is: not a key)
            return str(escape(value))
        found = self.escaped.get(value)
        if found is None:
            found = self.escaped[value] = str(escape(value))
        return found

    def time(self, value: Any) -> str:
        """`escape(_cell_time(value))`. An instant in UTC as stored (`...+00:00`, whole
        seconds or microseconds) shows the same local minute as any other of its UTC
        minute: looked up by that minute."""
        if isinstance(value, str) and len(value) in (25, 32) and value.endswith("+00:00"):
            minute = value[:16]
            found = self.minutes.get(minute)
            if found is None:
                found = self.minutes[minute] = str(escape(_cell_time(value)))
            return found
        return str(escape(_cell_time(value)))


def timeline_table(rows: list[dict[str, Any]]) -> Markup:
    """The timeline table's body rows (`timeline_rows`), escaped as the template escapes its
    values: built here in one pass rather than by the template's loop, which cost about as
    much as the analyses for a case of 10,000 events (bench/README.md, "report"); each
    distinct value escaped once (`_Cells`)."""
    if not rows:
        return Markup('      <tr><td colspan="6" class="none">无记录。</td></tr>\n')
    parts: list[str] = []
    add = parts.append
    cells = _Cells()
    text, time = cells.text, cells.time
    for entry in rows:
        position = entry.get("position")
        # A store position is a number: nothing in it to escape.
        if type(position) is int:
            place = str(position)
        else:
            place = text("—" if position is None else position)
        label = text(entry.get("label_zh"))
        detail = entry.get("detail_zh") or ""
        repeats = entry.get("repeats")
        note = text(detail)
        if repeats:
            # Every value in it is escaped (`label` already is).
            note += (
                f"{'；' if detail else ''}其后又{label} {text(repeats)} 次，"
                f"末次 {time(entry.get('last_at'))}"
            )
        add(
            f"      <tr><td>{time(entry.get('at'))}</td>"
            f"<td>{place}</td>"
            f"<td>{label}</td>"
            f'<td><span class="id">{text(entry.get("user") or "—")}</span></td>'
            f'<td><span class="id">{text(entry.get("unit") or "—")}</span></td>'
            f"<td>{note}</td></tr>\n"
        )
    # Every value of every row was escaped as it was placed.
    return Markup("".join(parts))  # noqa: S704


@dataclass(frozen=True)
class Matrix:
    """The knowledge matrix of one case: facts down, knowers across, first instant and how
    in each cell (None: the knower did not know that fact)."""

    knowers: list[dict[str, str]]
    rows: list[tuple[dict[str, Any], list[dict[str, Any] | None]]]


def knowledge_matrix(knowledge: dict[str, Any]) -> Matrix:
    knowers: dict[tuple[str, str], dict[str, str]] = {}
    facts = knowledge.get("facts") or []
    for fact in facts:
        for known in fact.get("known_by") or []:
            key = (str(known.get("user", "")), str(known.get("unit", "")))
            knowers.setdefault(
                key, {"user": key[0], "unit": key[1], "role": str(known.get("role", ""))}
            )
    order = sorted(knowers)
    rows = []
    for fact in facts:
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        for known in fact.get("known_by") or []:
            key = (str(known.get("user", "")), str(known.get("unit", "")))
            if key not in cells or str(known.get("first_at")) < str(cells[key].get("first_at")):
                cells[key] = known
        rows.append((fact, [cells.get(k) for k in order]))
    return Matrix(knowers=[knowers[k] for k in order], rows=rows)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["local_time"] = local_time
    return environment


_ENVIRONMENT: Final = _environment()


def render_html(document: dict[str, Any]) -> str:
    """The report document as one self-contained HTML page (unsigned: `signing.sign_content`)."""
    cases = [
        {
            **case,
            "chart": timeline_chart(case.get("timeline") or []),
            "rows_html": timeline_table(timeline_rows(case.get("timeline") or [])),
            "matrix": knowledge_matrix(case.get("knowledge") or {}),
        }
        for case in document.get("cases") or []
    ]
    return _ENVIRONMENT.get_template("report.html.j2").render(
        doc=document,
        cases=cases,
        sections=dict(SECTIONS),
        csp=CSP,
        kind_zh=KIND_ZH,
        how_zh=HOW_ZH,
        determination_zh=DETERMINATION_ZH,
        status_zh=STATUS_ZH,
    )


def render_page(template: str, **values: Any) -> str:
    """Another page of the templates folder rendered with the same environment (autoescaping,
    `local_time`) and the same Content-Security-Policy (`csp`): e.g. the annual compliance
    report (`gateway.compliance.annual`)."""
    return _ENVIRONMENT.get_template(template).render(csp=CSP, **values)
