"""Chinese labels (`label_zh`) for every code the investigation workbench answers with.

Codes stay English identifiers (stable, machine-read); the labels are what an investigator reads
beside them. The plan's own vocabulary (categories and subtypes, risk levels, protection
functions, unit types, case status) is quoted from `domain.taxonomy`, never copied; what the
taxonomy has no label for (event kinds, how a fact was learned, roles, channels, deadline
statuses) is labelled here. `tests/projections/test_investigation_labels.py` checks that every
code the analysis can emit has a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeVar

from domain.taxonomy import (
    CASE_STATUS_LABELS,
    CATEGORY_LABELS,
    PROTECTION_FUNCTION_LABELS,
    RISK_LABELS,
    UNIT_TYPE_LABELS,
    Category,
    subtype_label,
)

_Code = TypeVar("_Code", bound=StrEnum)

# Timeline entry kinds: one per stored event class the history gathers (snake_case of its name).
KIND_LABELS: Final = MappingProxyType(
    {
        # the case file's own events
        "clue_reported": "线索上报",
        "reclassified": "问题重新分类",
        "risk_assessed": "风险评估",
        "consultation_held": "问题会商",
        "unit_assigned": "交办成员单位",
        "assignment_received": "任务客户端自动接收",
        "assignment_signed_for": "任务签收",
        "assignment_declined": "任务退回",
        "assignment_result_reported": "办结反馈",
        "assignment_ended": "任务结束",
        "intervention_recorded": "干预措施",
        "guardianship_letter_signed": "签订监护责任书",
        "follow_up_recorded": "跟踪回访",
        "escalated": "上报升级",
        "closed": "结案",
        "reopened": "重新立案",
        "details_corrected": "信息更正",
        "transferred": "档案转移",
        # issue 19: the file's data key destroyed (crypto-shredding); its content is gone
        "data_key_destroyed": "档案已删除(密钥销毁)",
        # accesses
        "case_accessed": "查阅",
        "break_glass_accessed": "紧急查阅",
        "access_denied": "查阅被拒",
        "break_glass_reviewed": "紧急查阅复核",
        # notices to the units
        "due_date_reminder": "到期提醒",
        "notice_published": "通知已发送",
        "notice_received": "通知已接收",
        "notice_undeliverable": "通知无法送达",
        # deadline facts
        "consultation_overdue": "会商超期",
        "assignment_not_signed_for": "任务未签收",
        "assignment_overdue": "任务超期",
        "quarterly_update_missed": "季度更新缺失",
        "deadline_escalated": "超期升级至街道督导",
        # investigation orders
        "investigation_order_issued": "调查令签发",
        "investigation_order_renewed": "调查令续期",
        "investigation_order_revoked": "调查令撤销",
        # the user registry (issue 16): gathered to name posts, never a step of the timeline
        "user_registered": "用户登记",
        "post_changed": "岗位变更",
    }
)

# How a person or unit came to know a fact (knowledge matrix `how`).
HOW_LABELS: Final = MappingProxyType(
    {
        "reported": "本人录入",
        "consultation": "参加会商",
        "notice_published": "通知已发送至单位",
        "notice_received": "单位客户端已接收",
        "signed_for": "签收",
        "read": "查阅档案",
        "ledger": "台账",
        "lookup": "检索",
        "export": "导出",
        "bundle": "证据包",
    }
)

ROLE_LABELS: Final = MappingProxyType(
    {
        "reporter": "上报人",
        "coordinator": "综治协调员",
        "supervisor": "督导",
        "unit_member": "成员单位工作人员",
        "investigator": "调查人员",
        "compliance_auditor": "合规审计员",
        "admin": "系统管理员",
        "county_lead": "县级负责人",
    }
)

CHANNEL_LABELS: Final = MappingProxyType(
    {
        "api": "接口查阅",
        "ledger": "台账",
        "lookup": "检索",
        "export": "导出",
        "bundle": "证据包",
        "report": "报告",
        "worklist": "工作清单",
        "inbox": "单位待办",
        "timeline": "时间线",
        "knowledge": "知情矩阵",
        "deadlines": "时限分析",
        "compliance": "合规报告",
        "web": "网页",
        "unrecorded": "未记录",
    }
)

PURPOSE_LABELS: Final = MappingProxyType(
    {
        "intervention": "干预",
        "consultation": "会商",
        "follow_up": "跟踪回访",
        "investigation": "倒查调查",
        "compliance_review": "合规审查",
        "emergency": "紧急情况",
        "guardian_request": "监护人申请",
    }
)

# Deadline analysis: the duties checked, and how each stood.
DUTY_LABELS: Final = MappingProxyType(
    {
        "consultation": "问题会商",
        "sign_for": "任务签收",
        "assignment_due": "任务办结期限",
        "quarterly_update": "季度更新",
    }
)
STEP_LABELS: Final = MappingProxyType(
    {
        "found": "发现线索",
        "reported": "上报",
        "consultation": "首次会商",
        "assignment": "交办",
        "signed_for": "签收",
        "first_intervention": "首次干预",
    }
)
STATUS_LABELS: Final = MappingProxyType(
    {
        "met": "按时完成",
        "late": "逾期完成",
        "missed": "未完成(已超期)",
        "open": "未到期",
        "ended": "任务已结束(未办结)",
    }
)

ESCALATION_LEVEL_LABELS: Final = MappingProxyType({"street": "街道", "county": "县级"})

FACT_LABELS: Final = MappingProxyType(
    {"clue": "线索存在", "minor.identity": "未成年人身份", "description": "情况描述"}
)


def _by_code(mapping: Mapping[_Code, str]) -> dict[str, str]:
    return {str(code): label for code, label in mapping.items()}


_RISK: Final = _by_code(RISK_LABELS)
_STATUS: Final = _by_code(CASE_STATUS_LABELS)
_UNIT_TYPE: Final = _by_code(UNIT_TYPE_LABELS)
_FUNCTION: Final = _by_code(PROTECTION_FUNCTION_LABELS)


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def role_label(role: str) -> str:
    return ROLE_LABELS.get(role, role)


def risk_label(level: str) -> str:
    return _RISK.get(level, level)


def status_label(status: str) -> str:
    return _STATUS.get(status, status)


def unit_type_label(unit_type: str) -> str:
    return _UNIT_TYPE.get(unit_type, unit_type)


def issue_label(category: str, subtype: str) -> str:
    try:
        return f"{CATEGORY_LABELS[Category(category)]}/{subtype_label(category, subtype)}"
    except (KeyError, ValueError):
        return f"{category}/{subtype}"


def function_label(function: str) -> str:
    return _FUNCTION.get(function, function)


def fact_label(fact: str, detail: dict[str, str] | None = None) -> str:
    """The label of a knowledge-matrix fact code (`issue:<c>:<s>`, `risk:<level>`,
    `assignment:<id>`, `escalation:<n>` and the fixed ones); `detail` adds the assignment's
    unit and function or the escalation's level."""
    kind, _, rest = fact.partition(":")
    detail = detail or {}
    if kind == "issue":
        category, _, subtype = rest.partition(":")
        return f"问题类别:{issue_label(category, subtype)}"
    if kind == "risk":
        return f"风险等级:{risk_label(rest)}"
    if kind == "assignment":
        return f"交办任务:{detail.get('unit', '')}({function_label(detail.get('function', ''))})"
    if kind == "escalation":
        level = detail.get("to_level", "")
        return f"上报升级:{ESCALATION_LEVEL_LABELS.get(level, level)}"
    return FACT_LABELS.get(fact, fact)
