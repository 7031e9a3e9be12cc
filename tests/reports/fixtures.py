"""A report document of the shape `gateway.reports.document` builds, from the scenario of issue
13 (a clue found by a grid worker, a late consultation, the school and the police assigned,
the police sign for it, the school never does, a refused read, a break-glass read, closure, an
incident), with synthetic ids only, and long unit names and user ids that must wrap."""

from __future__ import annotations

from typing import Any

CASE_ID = "5b0c7f6e-2a8d-4f51-9a43-1d0f0b2e7a10"
INVESTIGATION_ID = "9e1a2b3c-4d5e-4f60-8a71-b2c3d4e5f607"
# Long enough to overflow a narrow cell unless it wraps.
LONG_UNIT = "chengguan-street-comprehensive-governance-and-minor-protection-workstation-office"
LONG_USER = "user-unit_member-" + "x" * 60


def _t(day: int, hour: int, minute: int = 0) -> str:
    return f"2026-09-{day:02d}T{hour:02d}:{minute:02d}:00+00:00"


def fixture_document(*, note: str = "学校未签收交办任务，未开展家访。") -> dict[str, Any]:
    timeline = [
        (_t(1, 1), 11, "ClueReported", "上报线索", "change", "user-grid-17", "dongshan-village"),
        (_t(1, 1, 1), 12, "CaseAccessed", "查阅", "access", "user-grid-17", "dongshan-village"),
        (_t(3, 2), 20, "ConsultationHeld", "问题会商（逾期）", "change", "user-coord-1", LONG_UNIT),
        (_t(3, 3), 21, "UnitAssigned", "交办学校", "change", "user-coord-1", LONG_UNIT),
        (_t(3, 3, 5), 22, "UnitAssigned", "交办派出所", "change", "user-coord-1", LONG_UNIT),
        (_t(3, 3, 6), 23, "NoticePublished", "通知已发出", "notice", "", "chengguan-police"),
        (_t(3, 4), 24, "NoticeReceived", "客户端已接收", "notice", "", "chengguan-police"),
        (_t(3, 9), 25, "AssignmentAcknowledged", "签收", "notice", "user-police-3", "police"),
        (_t(4, 2), 26, "AccessDenied", "拒绝查阅", "refusal", "user-health-9", "health-centre"),
        (_t(5, 6), 27, "BreakGlassAccessed", "紧急查阅", "access", LONG_USER, "health-centre"),
        (_t(20, 2), 40, "AssignmentNotSignedFor", "逾期未签收", "deadline", "", "no1-middle"),
        (_t(28, 8), 51, "Closed", "结案", "change", "user-coord-1", LONG_UNIT),
    ]
    knowers = [
        ("user-grid-17", "dongshan-village", "reporter", "reported", _t(1, 1), 11),
        ("user-coord-1", LONG_UNIT, "coordinator", "consultation", _t(3, 2), 20),
        ("user-police-3", "chengguan-police", "unit_member", "signed_for", _t(3, 9), 25),
        (LONG_USER, "health-centre", "unit_member", "read", _t(5, 6), 27),
    ]
    facts = [
        ("clue_exists", "线索存在", knowers),
        ("identity", "未成年人身份", knowers[:2] + knowers[3:]),
        ("category:mental_health/self_harm", "心理健康：自伤倾向", knowers[:2]),
        ("risk:high", "风险等级：高", knowers[1:3]),
        ("assignment:school", "交办：学校", knowers[1:2]),
    ]
    return {
        "document": "casetrail-investigation-report/v1",
        "investigation": {
            "id": INVESTIGATION_ID,
            "kind": "suicide",
            "incident_on": "2026-10-02",
            "opened_at": "2026-10-03T01:00:00+00:00",
            "opened_by": "user-county-lead-1",
            "investigators": ["user-inv-1", "user-inv-2"],
            "orders": [
                {
                    "id": "0b7d8e52-9a4f-5c1e-8d36-2f4a6c9e1b73",
                    "case_id": CASE_ID,
                    "investigator": "user-inv-1",
                    "covers": "minor",
                    "issued_at": "2026-10-03T01:05:00+00:00",
                    "expires_at": "2026-12-31T16:00:00+00:00",
                    "revoked": False,
                }
            ],
        },
        "cases": [
            {
                "case_id": CASE_ID,
                "unreadable": None,
                "timeline": [
                    {
                        "at": at,
                        "position": position,
                        "kind": kind,
                        "label_zh": label,
                        "lane": lane,
                        "user": user,
                        "unit": unit,
                        "detail_zh": "",
                    }
                    for at, position, kind, label, lane, user, unit in timeline
                ],
                "knowledge": {
                    "case_id": CASE_ID,
                    "as_of": "2026-10-02T00:00:00+00:00",
                    "facts": [
                        {
                            "fact": fact,
                            "label_zh": label,
                            "known_by": [
                                {
                                    "user": u,
                                    "unit": unit,
                                    "role": role,
                                    "first_at": at,
                                    "how": how,
                                    "position": pos,
                                }
                                for u, unit, role, how, at, pos in who
                            ],
                        }
                        for fact, label, who in facts
                    ],
                },
                "deadlines": [
                    {
                        "deadline": "consultation",
                        "label_zh": "问题会商",
                        "due_at": _t(2, 1),
                        "done_at": _t(3, 2),
                        "status": "missed",
                        "unit": LONG_UNIT,
                        "user": "user-coord-1",
                    },
                    {
                        "deadline": "signed_for:police",
                        "label_zh": "签收（派出所）",
                        "due_at": _t(4, 3),
                        "done_at": _t(3, 9),
                        "status": "met",
                        "unit": "chengguan-police",
                        "user": "user-police-3",
                    },
                    {
                        "deadline": "signed_for:school",
                        "label_zh": "签收（学校）",
                        "due_at": _t(4, 3),
                        "done_at": None,
                        "status": "missed",
                        "unit": "no1-middle-school",
                        "user": "",
                    },
                ],
            }
        ],
        "findings": [
            {
                "duty": "签收并落实交办任务",
                "unit": "no1-middle-school",
                "person": LONG_USER,
                "determination": "not_fulfilled",
                "evidence": [21, 40],
                "note": note,
                "by": "user-inv-1",
                "at": "2026-10-10T02:00:00+00:00",
            },
            {
                "duty": "问题会商",
                "unit": LONG_UNIT,
                "person": "user-coord-1",
                "determination": "late",
                "evidence": [11, 20],
                "note": "会商晚于时限 25 小时。",
                "by": "user-inv-1",
                "at": "2026-10-10T02:05:00+00:00",
            },
        ],
        "rectifications": [
            {
                "item_id": "3f2b9c1d-0e4a-4b5c-8d6e-7f8091a2b3c4",
                "item": "建立交办任务签收督办机制",
                "owner": "no1-middle-school",
                "due_on": "2026-11-30",
                "completed_on": None,
                "status": "open",
            }
        ],
        "integrity": {
            "status": "intact",
            "statement_zh": (
                "完整性校验通过：1 份档案的全部 12 个事件均包含在签名检查点 #3（大小 60）中。"
            ),
            "checked_at": "2026-10-10T03:00:00+00:00",
            "checkpoint": {
                "seq": 3,
                "size": 60,
                "root": "ab" * 32,
                "time": "2026-10-10T02:59:00Z",
                "key_id": "0123456789abcdef",
            },
            "cases": [{"case_id": CASE_ID, "events": 12, "included": 12, "problems": []}],
        },
        "generated_at": "2026-10-10T03:00:00+00:00",
        "generated_by": {"user": "user-inv-1", "role": "investigator", "unit": "county-inspection"},
    }


SECTION_HEADINGS = (
    "一、调查概况",
    "二、案件时间线",
    "三、知情矩阵",
    "四、时限分析",
    "五、调查认定",
    "六、整改事项",
    "七、完整性声明",
)
