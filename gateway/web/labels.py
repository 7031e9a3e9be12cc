"""Chinese labels of the roles, purposes and statuses the pages show (presentation only; the
taxonomy's own labels live in `domain.taxonomy`)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from domain.taxonomy import Purpose, Role

ROLE_LABELS: Final = MappingProxyType(
    {
        Role.REPORTER: "线索报告人（村居儿童主任、网格员）",
        Role.COORDINATOR: "街道协调办",
        Role.SUPERVISOR: "街道分管领导",
        Role.UNIT_MEMBER: "成员单位",
        Role.INVESTIGATOR: "倒查人员",
        Role.COMPLIANCE_AUDITOR: "合规审查员",
        Role.ADMIN: "系统管理员",
        Role.COUNTY_LEAD: "县级倒查负责人",
    }
)

PURPOSE_LABELS: Final = MappingProxyType(
    {
        Purpose.INTERVENTION: "干预处置",
        Purpose.CONSULTATION: "会商研判",
        Purpose.FOLLOW_UP: "跟踪回访",
        Purpose.INVESTIGATION: "一案一倒查",
        Purpose.COMPLIANCE_REVIEW: "合规审查",
        Purpose.EMERGENCY: "紧急查阅（破窗）",
        Purpose.GUARDIAN_REQUEST: "监护人申请查阅",
    }
)

# The plan's kinds of measure (`domain.commands.MEASURES`): an intervention's and a unit's
# result (办结反馈), one wording on every page.
MEASURE_LABELS: Final = MappingProxyType(
    {
        "guidance_education": "教育引导",
        "family_difficulties": "帮助解决家庭困难",
        "home_visit": "入户走访",
        "psychological_support": "心理疏导",
        "referral_police": "移送公安机关",
        "referral_court": "移送人民法院",
        "other": "其他措施",
    }
)
# How an assignment ended (the inbox's and the case page's words).
ASSIGNMENT_OUTCOME_LABELS: Final = MappingProxyType(
    {
        "completed": "已完成",
        "withdrawn": "已撤回",
        "transferred": "已转移",
        "declined": "已退回",
        "result_reported": "已办结反馈",
        "case_closed": "因结案结束",
    }
)
RECOMMENDATION_LABELS: Final = MappingProxyType({"close": "建议结案", "continue": "建议继续跟进"})
