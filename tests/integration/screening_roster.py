"""Synthetic rosters of minors for the screening tests: Faker zh_CN names, valid synthetic ID
numbers (`domain.identity.make_id_number`, never a real person's), written as CSV or .xlsx in
the documented layout (docs/screening.md)."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, replace
from datetime import date, timedelta

import openpyxl
from faker import Faker

from domain.clock import local_today
from domain.identity import make_id_number

HEADERS = (
    "姓名",
    "性别",
    "身份证号",
    "出生日期",
    "村(社区)",
    "网格",
    "学校",
    "年级",
    "监护人",
    "重点类型",
)
MARKER_WORDS = ("留守", "单亲", "困境", "残疾", "事实无人抚养", "孤儿")
STREET = "chengguan-street"


@dataclass(frozen=True)
class Kid:
    name: str
    gender: str  # 男 / 女
    id_number: str
    born: date
    village: str
    grid: str
    school: str
    grade: str
    guardian: str
    markers: tuple[str, ...]

    def cells(self) -> list[str]:
        return [
            self.name,
            self.gender,
            self.id_number,
            self.born.isoformat(),
            self.village,
            self.grid,
            self.school,
            self.grade,
            self.guardian,
            "、".join(self.markers),
        ]


def kids(count: int, village: str, *, seed: int, grids: int = 4, area: str = "330102") -> list[Kid]:
    """`count` distinct synthetic minors of `village` (unique ID numbers)."""
    faker = Faker("zh_CN")
    faker.seed_instance(seed)
    rng = random.Random(seed)
    today = local_today()
    found: list[Kid] = []
    used: set[str] = set()
    while len(found) < count:
        born = today - timedelta(days=rng.randint(6 * 366, 16 * 365))
        sequence = rng.randint(100, 999)
        number = make_id_number(area, born, sequence)
        if number in used:
            continue
        used.add(number)
        male = sequence % 2 == 1
        markers: tuple[str, ...] = ()
        if rng.random() < 0.35:
            drawn = rng.sample(MARKER_WORDS, rng.randint(1, 2))
            markers = tuple(sorted(drawn, key=MARKER_WORDS.index))
        found.append(
            Kid(
                name=faker.name_male() if male else faker.name_female(),
                gender="男" if male else "女",
                id_number=number,
                born=born,
                village=village,
                grid=f"第{rng.randint(1, grids)}网格",
                school=rng.choice(("城关镇中心小学", "城关镇第一中学", "东山村小学")),
                grade=f"{rng.randint(1, 6)}年级",
                guardian=faker.name(),
                markers=markers,
            )
        )
    return found


def csv_bytes(rows: list[list[str]], headers: tuple[str, ...] = HEADERS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def xlsx_bytes(rows: list[list[str]], headers: tuple[str, ...] = HEADERS) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(list(headers))
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def with_bad_checksum(kid: Kid) -> Kid:
    last = kid.id_number[-1]
    wrong = "0" if last != "0" else "1"
    return replace(kid, id_number=kid.id_number[:-1] + wrong)


def with_other_birthday(kid: Kid) -> Kid:
    return replace(kid, born=kid.born - timedelta(days=3))
