"""The files people hand over: the ledger (台账) as .xlsx, CSV or JSON.

The .xlsx has a sheet `台账` laid out as a paper ledger (title, a line saying whose ledger and
as of when, Chinese column headers, one numbered line per file) and, when a report is given,
a sheet `季度汇总` with the quarterly counts (统计维度 | 项目 | 数量). CSV is UTF-8 with a byte
order mark, so that spreadsheet programs read the Chinese headers correctly.

No text becomes a formula (OWASP's CSV-injection rule): every text cell of the .xlsx and the
CSV (the title lines, headers and the summary sheet included) goes through `neutralise()`, which
puts a `'` before text whose first character, after any leading white space, is `=`, `+`, `-`,
`@` or a full-width ＝ ＋ － ＠, or which starts with a tab, carriage return or line feed; .xlsx
text cells are written as string cells (`data_type 's'`), never as formulas, whatever they hold.
Numbers (line numbers, ages, counts) stay numeric cells. JSON is left as typed: it is data for
programs, no program evaluates a JSON string as a formula, and changing the values would corrupt
them for every consumer; a program that pastes it into a spreadsheet applies `neutralise()`
itself. Proven by `tests/projections/test_export_injection.py`.

This module only formats; who may export what, and recording it, is the caller's business
(`gateway.http.routes.ledger`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from projections.ledger.reports import QuarterlyReport
from projections.ledger.view import Column

if TYPE_CHECKING:
    from openpyxl import Workbook

LEDGER_SHEET: Final = "台账"
SUMMARY_SHEET: Final = "季度汇总"
NUMBER_HEADER: Final = "序号"
SUMMARY_HEADERS: Final = ("统计维度", "项目", "数量")
FIRST_DATA_ROW: Final = 4  # title, subtitle, headers, then the files


class ExportFormat(StrEnum):
    XLSX = "xlsx"
    CSV = "csv"
    JSON = "json"


MEDIA_TYPES: Final = {
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json",
}

# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"), with the full-width
# forms Chinese input methods type, which some spreadsheet programs accept as the ASCII ones.
_FORMULA_STARTS: Final = frozenset("=+-@＝＋－＠")
# Control characters that start a formula or a new line in some spreadsheet programs; checked
# before leading white space is skipped, since they are white space themselves.
_CONTROL_STARTS: Final = frozenset("\t\r\n")
_NEUTRALISER: Final = "'"


def neutralise(value: Any) -> Any:
    """`value` as a spreadsheet cell may safely hold it: text that a spreadsheet would take for a
    formula gets a `'` in front; numbers, None and other text are returned unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if value[0] in _CONTROL_STARTS:
        return _NEUTRALISER + value
    # Leading spaces (ASCII, full-width, no-break) are skipped by some programs before they
    # look for `=`: " =1+1" can still be a formula.
    stripped = value.lstrip()
    if stripped and (stripped[0] in _FORMULA_STARTS or stripped[0] in _CONTROL_STARTS):
        return _NEUTRALISER + value
    return value


def _put(sheet: Any, row: int, column: int, value: Any) -> Any:
    """Write one cell: text neutralised and typed as a string (never a formula), numbers as
    numbers. Returns the cell."""
    safe = neutralise(value)
    cell = sheet.cell(row=row, column=column, value=safe)
    if isinstance(safe, str):
        cell.data_type = "s"
    return cell


_GRID_COLOUR: Final = "808080"
_HEADER_COLOUR: Final = "DDEBF7"


def ledger_xlsx(
    *,
    title: str,
    subtitle: str,
    columns: Sequence[Column],
    lines: Sequence[Sequence[Any]],
    report: QuarterlyReport | None = None,
    sheet_name: str = LEDGER_SHEET,
) -> bytes:
    """The ledger laid out as described above; `sheet_name` names its sheet (other lists of
    lines, e.g. the compliance reports of gateway/compliance/sheets.py, name theirs)."""
    # Imported here: openpyxl takes a noticeable part of a second to import, and every
    # `casetrail` command would pay it otherwise.
    from openpyxl import Workbook  # noqa: PLC0415
    from openpyxl.styles import Alignment, Font  # noqa: PLC0415
    from openpyxl.utils import get_column_letter  # noqa: PLC0415

    box, header_fill = _styles()
    workbook = Workbook()
    default = workbook.active
    if default is not None:
        workbook.remove(default)
    sheet = workbook.create_sheet(sheet_name)
    width = len(columns) + 1
    last = get_column_letter(width)

    _put(sheet, 1, 1, title)
    sheet["A1"].font = Font(bold=True, size=16)
    sheet["A1"].alignment = Alignment(horizontal="center", vertical="center")
    sheet.merge_cells(f"A1:{last}1")
    sheet.row_dimensions[1].height = 30
    _put(sheet, 2, 1, subtitle)
    sheet["A2"].alignment = Alignment(horizontal="left", vertical="center")
    sheet.merge_cells(f"A2:{last}2")

    headers = [NUMBER_HEADER, *(c.header for c in columns)]
    for index, header in enumerate(headers, start=1):
        cell = _put(sheet, 3, index, header)
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.border = box
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for number, line in enumerate(lines, start=1):
        row = FIRST_DATA_ROW + number - 1
        for index, value in enumerate([number, *line], start=1):
            cell = _put(sheet, row, index, value)
            cell.border = box
            cell.alignment = Alignment(vertical="top", wrap_text=True)
    sheet.column_dimensions["A"].width = 6
    for index, column in enumerate(columns, start=2):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.freeze_panes = f"B{FIRST_DATA_ROW}"
    sheet.auto_filter.ref = f"A3:{last}{max(3, FIRST_DATA_ROW + len(lines) - 1)}"
    sheet.print_title_rows = "3:3"
    sheet.page_setup.orientation = "landscape"

    if report is not None:
        _summary_sheet(workbook, report)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def summary_lines(report: QuarterlyReport) -> list[tuple[str, str, int]]:
    """The quarterly counts as (统计维度, 项目, 数量) lines, in the summary sheet's order."""
    lines: list[tuple[str, str, int]] = [
        ("合计", "档案总数", report.files),
        ("合计", "本季度新增", report.new_in_quarter),
        ("合计", "本季度结案", report.closed_in_quarter),
    ]
    lines += [("按问题类别", c.label, c.count) for c in report.by_category]
    category_labels = {c.code: c.label for c in report.by_category}
    lines += [
        ("按具体问题", f"{category_labels[c.category or '']}/{c.label}", c.count)
        for c in report.by_subtype
    ]
    lines += [("按村(社区)", c.label, c.count) for c in report.by_village]
    lines += [("按风险等级", c.label, c.count) for c in report.by_risk]
    lines += [("按状态", c.label, c.count) for c in report.by_status]
    lines += [("交办任务", c.label, c.count) for c in report.assignments]
    # Issue 17: interventions by protection function, overdue counts, coverage (screening's).
    lines += [("按保护职能干预", c.label, c.count) for c in report.interventions]
    lines += [("逾期事项", c.label, c.count) for c in report.overdue]
    lines += [("覆盖情况", c.label, c.count) for c in report.coverage]
    return lines


def quarterly_xlsx(report: QuarterlyReport) -> bytes:
    """The quarterly report alone (季度报表), as the office hands it on: the summary sheet's
    Chinese layout (title, period, 统计维度/项目/数量), issue 17."""
    from openpyxl import Workbook  # noqa: PLC0415

    workbook = Workbook()
    default = workbook.active
    if default is not None:
        workbook.remove(default)
    _summary_sheet(workbook, report)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _styles() -> tuple[Any, Any]:
    from openpyxl.styles import Border, PatternFill, Side  # noqa: PLC0415

    thin = Side(style="thin", color=_GRID_COLOUR)
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    return box, PatternFill("solid", start_color=_HEADER_COLOUR, end_color=_HEADER_COLOUR)


def _summary_sheet(workbook: Workbook, report: QuarterlyReport) -> None:
    from openpyxl.styles import Font  # noqa: PLC0415

    box, header_fill = _styles()
    sheet = workbook.create_sheet(SUMMARY_SHEET)
    place = report.street + (f" {report.village}" if report.village else "")
    _put(sheet, 1, 1, f"{place} {report.quarter.label}未成年学生苗头性问题统计")
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.merge_cells("A1:C1")
    _put(
        sheet,
        2,
        1,
        f"统计期间：{report.quarter.start.isoformat()} 至 {report.quarter.end.isoformat()}　"
        f"截至：{report.as_of.isoformat()}",
    )
    sheet.merge_cells("A2:C2")
    for index, header in enumerate(SUMMARY_HEADERS, start=1):
        cell = _put(sheet, 3, index, header)
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.border = box
    for row, line in enumerate(summary_lines(report), start=FIRST_DATA_ROW):
        for index, value in enumerate(line, start=1):
            _put(sheet, row, index, value).border = box
    for letter, width in zip("ABC", (14, 36, 8), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = f"A{FIRST_DATA_ROW}"


def ledger_csv(columns: Sequence[Column], lines: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    # Text quoted, numbers bare (OWASP: quote every text field as well as neutralising it).
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([neutralise(h) for h in (NUMBER_HEADER, *(c.header for c in columns))])
    for number, line in enumerate(lines, start=1):
        writer.writerow([number, *(neutralise(v) for v in line)])
    return buffer.getvalue().encode("utf-8-sig")


def ledger_json(
    columns: Sequence[Column], lines: Sequence[Sequence[Any]], meta: dict[str, Any]
) -> bytes:
    document = {
        **meta,
        "columns": [{"key": c.key, "header": c.header} for c in columns],
        "rows": [dict(zip((c.key for c in columns), line, strict=True)) for line in lines],
    }
    return json.dumps(document, ensure_ascii=False, indent=1).encode()
