"""Access records as the files a compliance auditor hands over: JSON, CSV and .xlsx with Chinese
headers (the accounting of disclosures for one minor, the access reports).

The spreadsheet writers are the ledger's (`projections.ledger.exports`: `ledger_xlsx`,
`ledger_csv`), so every text cell goes through the same `neutralise()`: a value a spreadsheet
would take for a formula (a client's user agent such as `=HYPERLINK(...)`) gets a `'` in front
and is written as a string cell. A record holds no case content (`AccessRecord`): who, role,
unit, street, when, purpose, rule, channel, the names of the fields disclosed, the case's opaque
id, the reader's client (address, user agent). Times are shown in China's local time (UTC+8)
in the spreadsheets, as instants with their offset in JSON.

Proven by tests/integration/test_disclosures.py (headers, a `=HYPERLINK(...)` sent as a
reader's User-Agent neutralised in CSV and .xlsx).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from domain.compliance.records import AccessRecord, RecordKind
from gateway.reports.html import CHINA
from projections.investigation.labels import CHANNEL_LABELS, PURPOSE_LABELS, ROLE_LABELS
from projections.ledger.exports import ledger_csv, ledger_xlsx
from projections.ledger.view import Column

# The names of the disclosed fields, in Chinese (`domain.access.FIELDS`); a field without a
# label here is shown by its code.
FIELD_LABELS: Final = {
    "id": "档案编号",
    "street": "街道",
    "village": "村(社区)",
    "reporting_unit": "上报单位",
    "status": "状态",
    "risk": "风险等级",
    "found_on": "发现日期",
    "method": "发现方式",
    "found_by": "发现人",
    "reported_at": "上报时间",
    "updated_at": "更新时间",
    "version": "版本",
    "categories": "问题类别",
    "issues.growth_environment": "成长环境问题",
    "issues.social_abnormality": "社交情况异常问题",
    "issues.mental_health": "心理健康问题",
    "issues.unlawful_harm": "遭受不法侵害问题",
    "assignments": "交办任务",
    "escalations": "上报升级",
    "closure": "结案",
    "minor.name": "姓名",
    "minor.gender": "性别",
    "minor.date_of_birth": "出生日期",
    "minor.id_number": "身份证号",
    "minor.school": "学校",
    "minor.grade_class": "年级班级",
    "guardians": "监护人",
    "description": "情况描述",
    "consultations": "会商记录",
    "interventions": "干预措施",
    "interventions.own_unit": "本单位干预措施",
    "letters": "监护责任书",
    "follow_ups": "跟踪回访",
    "access_log": "查阅记录",
    "corrections": "信息更正",
    "transfers": "转移记录",
}
KIND_LABELS: Final = {
    RecordKind.READ: "已披露",
    RecordKind.REFUSED_READ: "查阅被拒绝",
    RecordKind.REFUSED_COMMAND: "操作被拒绝",
}

# The accounting of disclosures (披露记录): one line per disclosure.
DISCLOSURE_COLUMNS: Final = (
    Column("at", "披露时间", (), 18),
    Column("user", "查阅人", (), 18),
    Column("role", "角色", (), 14),
    Column("unit", "所在单位", (), 22),
    Column("street", "街道", (), 16),
    Column("purpose", "使用目的", (), 12),
    Column("fields", "披露内容", (), 40),
    Column("channel", "渠道", (), 10),
    Column("rule", "授权依据", (), 24),
    Column("break_glass", "紧急查阅", (), 8),
    Column("case_id", "档案编号", (), 38),
    Column("client_address", "客户端地址", (), 16),
    Column("client_user_agent", "客户端标识", (), 30),
)
# The access report (查阅记录报表): every access, granted or refused.
ACCESS_COLUMNS: Final = (
    Column("position", "存储位置", (), 10),
    Column("at", "时间", (), 18),
    Column("result", "结果", (), 10),
    Column("user", "人员", (), 18),
    Column("role", "角色", (), 14),
    Column("unit", "所在单位", (), 22),
    Column("street", "街道", (), 16),
    Column("purpose", "使用目的", (), 12),
    Column("fields", "披露内容", (), 40),
    Column("channel", "渠道", (), 10),
    Column("rule", "规则", (), 24),
    Column("command", "被拒操作", (), 16),
    Column("break_glass", "紧急查阅", (), 8),
    Column("case_id", "档案编号", (), 38),
    Column("client_address", "客户端地址", (), 16),
    Column("client_user_agent", "客户端标识", (), 30),
)
DISCLOSURE_SHEET: Final = "披露记录"
ACCESS_SHEET: Final = "查阅记录"


def local(moment: datetime) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def fields_label(fields: Sequence[str]) -> str:
    return "、".join(FIELD_LABELS.get(f, f) for f in fields)


def record_json(record: AccessRecord) -> dict[str, Any]:
    """One record as the JSON answers hold it: codes with their Chinese labels."""
    return {
        "position": record.position,
        "at": record.at.isoformat(),
        "kind": str(record.kind),
        "granted": record.granted,
        "user": record.user,
        "role": record.role,
        "role_label": ROLE_LABELS.get(record.role, record.role),
        "unit": record.unit,
        "street": record.street,
        "purpose": record.purpose,
        "purpose_label": PURPOSE_LABELS.get(record.purpose, record.purpose),
        "fields": list(record.fields),
        "channel": record.channel,
        "channel_label": CHANNEL_LABELS.get(record.channel, record.channel),
        "rule": record.rule,
        "command": record.command,
        "break_glass": record.break_glass,
        "case_id": str(record.case_id) if record.case_id is not None else None,
        "case_version": record.case_version,
        "request_id": record.request_id,
        "client": {"address": record.client_address, "user_agent": record.client_user_agent},
    }


def _cells(record: AccessRecord) -> dict[str, Any]:
    return {
        "position": record.position,
        "at": local(record.at),
        "result": KIND_LABELS[record.kind],
        "user": record.user,
        "role": ROLE_LABELS.get(record.role, record.role),
        "unit": record.unit,
        "street": record.street,
        "purpose": PURPOSE_LABELS.get(record.purpose, record.purpose),
        "fields": fields_label(record.fields),
        "channel": CHANNEL_LABELS.get(record.channel, record.channel),
        "rule": record.rule,
        "command": record.command,
        "break_glass": "是" if record.break_glass else "否",
        "case_id": str(record.case_id) if record.case_id is not None else "",
        # The reader's client as the service saw it: the user agent is whatever the client
        # sent (bounded, no control characters), so it is the likeliest formula of all.
        "client_address": record.client_address,
        "client_user_agent": record.client_user_agent,
    }


def lines_of(records: Sequence[AccessRecord], columns: Sequence[Column]) -> list[list[Any]]:
    found = []
    for record in records:
        cells = _cells(record)
        found.append([cells[c.key] for c in columns])
    return found


def records_csv(records: Sequence[AccessRecord], columns: Sequence[Column]) -> bytes:
    """UTF-8 with a byte order mark, Chinese headers, every text cell neutralised."""
    return ledger_csv(columns, lines_of(records, columns))


def records_xlsx(
    records: Sequence[AccessRecord],
    columns: Sequence[Column],
    *,
    title: str,
    subtitle: str,
    sheet_name: str,
) -> bytes:
    """A titled sheet, Chinese headers, every text cell a neutralised string cell."""
    return ledger_xlsx(
        title=title,
        subtitle=subtitle,
        columns=columns,
        lines=lines_of(records, columns),
        sheet_name=sheet_name,
    )
