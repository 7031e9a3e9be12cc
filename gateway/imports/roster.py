"""Importing a village's roster of minors (底数) from the `.xlsx` or CSV lists villages and the
school district office keep.

The layout (docs/screening.md): one header row, then one minor per row. Columns, by their
Chinese headers (full-width or ASCII parentheses, spaces ignored; order free; other columns
ignored): 姓名, 性别, 身份证号, 出生日期, 学校 (required); 村(社区), 网格, 年级, 监护人, 重点类型
(optional; 村(社区) defaults to the village imported, and must equal it when given; 重点类型
lists 留守, 单亲, 困境, 残疾, 事实无人抚养, 孤儿, separated by 、 , ; or spaces).

Every row is checked: the ID number's shape and check character (ISO 7064 MOD 11-2), its date,
the date of birth and gender agreeing with it, a minor's age, names without invisible
characters, the same ID number twice in the file, and, by the application, a minor already on
the roster of another village. A rejected row is reported by its row number in the sheet (the
header is row 1), its column and a reason that never quotes the value. Nothing is stored from a
file with a rejected row unless `store_valid`; a re-import of the same rows stores nothing
(`domain.roster`). Proven by `tests/integration/test_screening_import.py`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from pydantic import ValidationError

from domain import identity
from domain.access import Actor
from domain.application import CaseTrail
from domain.roster import KEY_MARKER_LABELS, MARKER_SPELLINGS, RosterMinor
from domain.taxonomy import Gender
from projections.blind_index import BlindIndex

MAX_ROWS: Final = 5000
# Every row read counts against this, blank ones too: a small .xlsx can hold millions of empty
# rows, each costing CPU to read (room for a header and as many blank rows as minors).
MAX_SHEET_ROWS: Final = 2 * MAX_ROWS

# Column header (normalised: NFKC, no spaces) -> field of RosterMinor.
COLUMNS: Final = {
    "姓名": "name",
    "性别": "gender",
    "身份证号": "id_number",
    "出生日期": "date_of_birth",
    "村(社区)": "village",
    "网格": "grid",
    "学校": "school",
    "年级": "grade_class",
    "监护人": "guardian",
    "重点类型": "markers",
}
# Other spellings seen in the lists villages keep.
_ALIASES: Final = {
    "身份证号码": "id_number",
    "公民身份号码": "id_number",
    "村社区": "village",
    "村(居)": "village",
    "年级班级": "grade_class",
    "年级(班级)": "grade_class",
    "班级": "grade_class",
    "监护人姓名": "guardian",
}
REQUIRED: Final = ("name", "gender", "id_number", "date_of_birth", "school")
HEADER_OF: Final = {f: h for h, f in COLUMNS.items()}

_MARKER_SPLIT: Final = re.compile(r"[、,，;；/\s]+")
_DATE_TEXT: Final = re.compile(r"^(\d{4})[-/.年]?(\d{1,2})[-/.月]?(\d{1,2})日?$")
_ID_SHAPE: Final = re.compile(r"^\d{17}[\dX]$", re.ASCII)
_GENDERS: Final = {
    "男": Gender.MALE,
    "女": Gender.FEMALE,
    "male": Gender.MALE,
    "female": Gender.FEMALE,
}

REQUIRED_EMPTY: Final = "必填，不能为空"
CONFLICT_REASON: Final = "该身份证号已在本街道其他村(社区)的名册中；核对村(社区)，或请该村先更正"


class ImportFileError(ValueError):
    """The file as a whole cannot be read as a roster (not a spreadsheet, no header row, a
    required column missing, too many rows); the message says what to fix."""


@dataclass(frozen=True)
class RowProblem:
    row: int
    column: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason}


@dataclass
class ParsedRoster:
    """The file's valid rows (row number, minor) and its rejected ones."""

    rows: list[tuple[int, RosterMinor]] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    total: int = 0

    @property
    def rejected_rows(self) -> int:
        return len({p.row for p in self.problems})


def _header_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sheet_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    """(row number in the sheet, cells) of the file: the first sheet of an .xlsx, or CSV
    (UTF-8, with or without BOM, or GB 18030 as Excel writes it in China)."""
    if data[:4] == b"PK\x03\x04":
        import openpyxl  # noqa: PLC0415  (only an .xlsx needs it)

        try:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:
            raise ImportFileError(
                "the file is not a readable .xlsx workbook; save it again from the spreadsheet "
                "program as .xlsx or CSV"
            ) from None
        try:
            # Streamed (read-only mode): the row limit stops a sheet that unpacks to millions.
            sheet = book.worksheets[0]
            for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, list(cells)
        except Exception:
            raise ImportFileError(
                "the workbook's first sheet cannot be read; save it again as .xlsx or CSV"
            ) from None
        finally:
            book.close()
        return
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ImportFileError("the CSV file is neither UTF-8 nor GB 18030 text; save it as UTF-8")
    try:
        rows_read = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        raise ImportFileError(
            "the file is not a CSV table (or a cell is malformed); save it again as CSV or .xlsx"
        ) from None
    for number, row in enumerate(rows_read, start=1):
        yield number, list(row)


def _columns(header: Sequence[Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, cell in enumerate(header):
        key = _header_key(_cell_text(cell))
        name = COLUMNS.get(key) or _ALIASES.get(key)
        if name is not None and name not in found:
            found[name] = index
    missing = [HEADER_OF[f] for f in REQUIRED if f not in found]
    if missing:
        raise ImportFileError(
            f"the header row lacks the column(s) {'、'.join(missing)}; the first row names the "
            f"columns: {'、'.join(COLUMNS)} (see docs/screening.md)"
        )
    return found


def _parse_date(text: str) -> date | None:
    match = _DATE_TEXT.match(text)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _check_id(text: str) -> tuple[str | None, date | None, bool | None]:
    """(reason or None, date of birth in it, is male) of an ID number as typed."""
    number = identity.normalise_id_number(text)
    if not number:
        return REQUIRED_EMPTY, None, None
    if not _ID_SHAPE.match(number):
        return "身份证号应为18位：17位数字加1位数字或X（以文本格式保存）", None, None
    if identity.id_check_character(number[:17]) != number[17]:
        return "身份证号校验位不符（GB 11643, ISO 7064 MOD 11-2），请核对后重新录入", None, None
    try:
        born, male = identity.parse_id_number(number)
    except identity.InvalidIdNumber:
        return "身份证号第7-14位不是有效的出生日期", None, None
    return None, born, male


def _row_minor(
    number: int, cells: list[Any], columns: dict[str, int], village: str
) -> tuple[dict[str, Any], list[RowProblem]]:
    def cell(name: str) -> Any:
        index = columns.get(name)
        return cells[index] if index is not None and index < len(cells) else None

    problems: list[RowProblem] = []

    def reject(name: str, reason: str) -> None:
        problems.append(RowProblem(number, HEADER_OF[name], reason))

    values: dict[str, Any] = {}
    for name in ("name", "school", "grade_class", "grid", "guardian"):
        values[name] = _cell_text(cell(name))
    for name in ("name", "school"):
        if not values[name]:
            reject(name, REQUIRED_EMPTY)
    raw_id = cell("id_number")
    if isinstance(raw_id, int | float):
        reject(
            "id_number",
            "身份证号保存成了数字，末几位会丢失；把该列设为文本格式后重新录入",
        )
        id_born = male = None
    else:
        reason, id_born, male = _check_id(_cell_text(raw_id))
        if reason is not None:
            reject("id_number", reason)
    values["id_number"] = identity.normalise_id_number(_cell_text(raw_id))
    born_cell = cell("date_of_birth")
    born = (
        born_cell.date()
        if isinstance(born_cell, datetime)
        else born_cell
        if isinstance(born_cell, date)
        else _parse_date(_cell_text(born_cell))
    )
    if born is None:
        reject(
            "date_of_birth",
            REQUIRED_EMPTY if not _cell_text(born_cell) else "出生日期应写成 2012-03-15",
        )
    elif id_born is not None and born != id_born:
        reject("date_of_birth", "出生日期与身份证号第7-14位不一致，请核对")
    values["date_of_birth"] = born.isoformat() if born else None
    gender = _GENDERS.get(_cell_text(cell("gender")).lower())
    if gender is None:
        reject("gender", "性别应填 男 或 女")
    elif male is not None and male != (gender is Gender.MALE):
        reject("gender", "性别与身份证号第17位（单数男、双数女）不一致，请核对")
    values["gender"] = str(gender) if gender else None
    given_village = _cell_text(cell("village"))
    if given_village and given_village != village:
        reject("village", "村(社区)与本次导入的村(社区)不一致；每个村(社区)单独导入")
    values["village"] = village
    markers = []
    for word in _MARKER_SPLIT.split(_cell_text(cell("markers"))):
        if not word:
            continue
        marker = MARKER_SPELLINGS.get(word)
        if marker is None:
            reject(
                "markers",
                f"重点类型无法识别；可填：{'、'.join(KEY_MARKER_LABELS.values())}",
            )
            break
        markers.append(marker)
    values["markers"] = markers
    return values, problems


def _validation_problems(number: int, exc: ValidationError) -> list[RowProblem]:
    """The rules of `RosterMinor` not checked above, each as a reason that quotes no value."""
    found: list[RowProblem] = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "name"
        column = HEADER_OF.get(name, name)
        kind = error["type"]
        if kind == "string_too_long":
            reason = f"超出长度上限（{error.get('ctx', {}).get('max_length', '')}个字符）"
        elif kind in ("missing", "string_too_short"):
            reason = REQUIRED_EMPTY
        elif kind == "string_pattern_mismatch":
            reason = "应为代码：小写字母、数字、-、_ 或 .（如 dongshan-village）"
        elif "not a minor" in str(error.get("msg", "")):
            reason = "不是未成年人（未满18周岁）；名册只收未成年人"
        elif "invisible" in str(error.get("msg", "")) or "control" in str(error.get("msg", "")):
            reason = "含不可见字符或控制字符；按书写的样子重新录入"
        elif "future" in str(error.get("msg", "")):
            reason = "日期在今天之后"
        else:
            reason = "内容不合要求；见 docs/screening.md 的列说明"
        found.append(RowProblem(number, column, reason))
    return found


def _bounded(rows: Iterator[tuple[int, list[Any]]]) -> Iterator[tuple[int, list[Any]]]:
    """The rows, stopping with `ImportFileError` past `MAX_SHEET_ROWS` rows read, blank or not
    (proven by tests/integration/test_screening_import.py)."""
    for read, row in enumerate(rows, start=1):
        if read > MAX_SHEET_ROWS:
            raise ImportFileError(
                f"the file holds more than {MAX_SHEET_ROWS} rows (blank rows count too); delete "
                "the empty rows below the table, or import it village by village"
            )
        yield row


def parse_roster(data: bytes, village: str) -> ParsedRoster:
    """Read and check every row of a roster file for `village`; `ImportFileError` when the
    file as a whole cannot be read."""
    rows = _bounded(iter(_sheet_rows(data)))
    header: list[Any] | None = None
    for _, cells in rows:
        if any(_cell_text(c) for c in cells):
            header = cells
            break
    if header is None:
        raise ImportFileError("the file holds no header row and no minor; nothing to import")
    columns = _columns(header)
    parsed = ParsedRoster()
    first_row_of: dict[str, int] = {}
    for number, cells in rows:
        if not any(_cell_text(c) for c in cells):
            continue
        parsed.total += 1
        if parsed.total > MAX_ROWS:
            raise ImportFileError(
                f"the file holds more than {MAX_ROWS} minors; import it village by village"
            )
        values, problems = _row_minor(number, cells, columns, village)
        if not problems:
            try:
                minor = RosterMinor.model_validate(values)
            except ValidationError as exc:
                problems = _validation_problems(number, exc)
        if not problems:
            earlier = first_row_of.setdefault(minor.id_number, number)
            if earlier != number:
                problems = [
                    RowProblem(number, HEADER_OF["id_number"], f"与第{earlier}行的身份证号重复")
                ]
        if problems:
            parsed.problems.extend(problems)
        else:
            parsed.rows.append((number, minor))
    return parsed


def import_roster(
    application: CaseTrail,
    blind_index: BlindIndex,
    data: bytes,
    *,
    village: str,
    actor: Actor,
    store_valid: bool,
    channel: str,
) -> dict[str, Any]:
    """Check a roster file and list its minors (all or nothing unless `store_valid`); the
    report: counts, every rejected row with its reason, and whether anything was stored."""
    parsed = parse_roster(data, village)
    source = {
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "channel": channel,
    }
    indexed = [(row, minor, blind_index.id_number(minor.id_number)) for row, minor in parsed.rows]
    outcome = application.import_roster(
        indexed,
        village=village,
        actor=actor,
        source=source,
        rejected_rows=parsed.rejected_rows,
        store_valid=store_valid,
    )
    conflicts = [
        RowProblem(row, HEADER_OF.get(name, name), CONFLICT_REASON)
        for row, name, _ in outcome.conflicts
    ]
    rejected = sorted([*parsed.problems, *conflicts], key=lambda p: (p.row, p.column))
    stored_rows = len(parsed.rows) - len(conflicts) if outcome.stored else 0
    return {
        "village": village,
        "rows": parsed.total,
        "valid": len(parsed.rows) - len(conflicts),
        "rejected_rows": len({p.row for p in rejected}),
        "rejected": [p.as_dict() for p in rejected],
        "stored": outcome.stored,
        "stored_rows": stored_rows,
        "listed": outcome.listed if outcome.stored else 0,
        "updated": outcome.updated if outcome.stored else 0,
        "unchanged": outcome.unchanged,
        "file_sha256": source["file_sha256"],
        "message": _summary(parsed.total, rejected, outcome.stored),
    }


def _summary(total: int, rejected: list[RowProblem], stored: bool) -> str:
    bad = len({p.row for p in rejected})
    if not bad:
        return f"共{total}行，全部有效，已保存"
    if stored:
        return f"共{total}行，{bad}行有误未保存，其余有效行已保存"
    return (
        f"共{total}行，{bad}行有误；未保存任何内容。改正后重新导入，"
        "或选择只保存有效行（--store-valid / store_valid=true）"
    )
