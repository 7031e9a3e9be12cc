"""The vocabulary of the plan: categories and subtypes, protection functions, units, roles.

Codes are English identifiers; the Chinese labels are what users see (exports, reports) and are
quoted exactly from the source plan (see ../shared/DOMAIN.md). A subtype is identified by the pair
(category, subtype): 虐待 (maltreatment) stands under two categories.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Category(StrEnum):
    """The four categories of early-warning issues (四大类问题)."""

    GROWTH_ENVIRONMENT = "growth_environment"
    MENTAL_HEALTH = "mental_health"
    UNLAWFUL_HARM = "unlawful_harm"
    SOCIAL_ABNORMALITY = "social_abnormality"


CATEGORY_LABELS: Final = MappingProxyType(
    {
        Category.GROWTH_ENVIRONMENT: "成长环境",
        Category.MENTAL_HEALTH: "心理健康",
        Category.UNLAWFUL_HARM: "遭受不法侵害",
        Category.SOCIAL_ABNORMALITY: "社交情况异常",
    }
)

# (category, subtype code) -> Chinese label, in the plan's order.
SUBTYPES: Final[MappingProxyType[Category, MappingProxyType[str, str]]] = MappingProxyType(
    {
        Category.GROWTH_ENVIRONMENT: MappingProxyType(
            {
                "family_quarrels": "家庭争吵",
                "parents_divorced": "家庭离异",
                "reconstituted_family": "重组",
                "domestic_violence": "家暴",
                "maltreatment": "虐待",
                "estranged_from_parents": "亲子关系疏离",
                "improper_discipline": "管教方式不当",
                "financial_hardship": "家庭经济困难",
                "single_parent": "单亲",
                "orphan": "孤儿",
                "de_facto_unsupported": "事实无人抚养儿童",
                "left_behind": "留守儿童",
                "disabled": "残疾儿童",
                "long_without_guardianship": "长期无人监护",
            }
        ),
        Category.MENTAL_HEALTH: MappingProxyType(
            {
                "extreme_thinking": "思想极端",
                "sensitive_fragile": "敏感脆弱",
                "low_self_esteem": "自卑怯弱",
                "negative_state_of_mind": "精神消极",
                "anxiety": "焦虑",
                "insomnia": "失眠",
                "depression": "抑郁",
                "internet_addiction": "沉迷网络",
                "self_harm": "自伤自残",
                "mental_illness": "患精神疾病",
            }
        ),
        Category.UNLAWFUL_HARM: MappingProxyType(
            {
                "suspected_sexual_assault": "疑是性侵",
                "pregnancy": "怀孕",
                "abortion_or_miscarriage": "流产",
                "bullying": "欺凌",
                "maltreatment": "虐待",
                "beating": "殴打",
                "drugged": "被人麻醉",
            }
        ),
        Category.SOCIAL_ABNORMALITY: MappingProxyType(
            {
                "withdrawn": "内向孤僻",
                "does_not_fit_in": "不合群",
                "extreme_behaviour": "行为偏激",
                "bullied": "遭受欺凌",
                "excluded_by_peers": "同伴排挤",
                "isolated": "孤立",
                "teacher_discrimination": "遭受教师歧视",
                "corporal_punishment": "体罚",
                "disguised_corporal_punishment": "变相体罚",
                "undesirable_associates": "与社会不良人员交往密切",
                "bad_company": "不良交友",
            }
        ),
    }
)


def is_known_subtype(category: str, subtype: str) -> bool:
    try:
        return subtype in SUBTYPES[Category(category)]
    except ValueError:
        return False


def subtype_label(category: str, subtype: str) -> str:
    return SUBTYPES[Category(category)][subtype]


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _RISK_ORDER.index(self)


_RISK_ORDER: Final = (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.URGENT)

RISK_LABELS: Final = MappingProxyType(
    {RiskLevel.LOW: "低", RiskLevel.MEDIUM: "中", RiskLevel.HIGH: "高", RiskLevel.URGENT: "紧急"}
)

# Subtypes whose files are never assessed below `high`, whatever else is known.
HIGH_RISK_FLOOR: Final = frozenset(
    {
        (Category.MENTAL_HEALTH, "self_harm"),
        (Category.UNLAWFUL_HARM, "suspected_sexual_assault"),
        (Category.UNLAWFUL_HARM, "pregnancy"),
        (Category.UNLAWFUL_HARM, "drugged"),
        (Category.GROWTH_ENVIRONMENT, "long_without_guardianship"),
    }
)


def risk_floor(issues: list[tuple[str, str]]) -> RiskLevel:
    """The lowest risk level a file with these (category, subtype) issues may carry."""
    if any((Category(c), s) in HIGH_RISK_FLOOR for c, s in issues):
        return RiskLevel.HIGH
    return RiskLevel.LOW


class ProtectionFunction(StrEnum):
    """The six protection functions (六大保护) under which an intervention is filed."""

    FAMILY = "family"
    SCHOOL = "school"
    SOCIETY = "society"
    ONLINE = "online"
    GOVERNMENT = "government"
    JUDICIAL = "judicial"


PROTECTION_FUNCTION_LABELS: Final = MappingProxyType(
    {
        ProtectionFunction.FAMILY: "家庭保护",
        ProtectionFunction.SCHOOL: "学校保护",
        ProtectionFunction.SOCIETY: "社会保护",
        ProtectionFunction.ONLINE: "网络保护",
        ProtectionFunction.GOVERNMENT: "政府保护",
        ProtectionFunction.JUDICIAL: "司法保护",
    }
)


class UnitType(StrEnum):
    """The lead office and the member units (成员单位) of the street."""

    GOVERNANCE_OFFICE = "governance_office"
    POLICE_STATION = "police_station"
    TRIBUNAL = "tribunal"
    SOCIAL_AFFAIRS_OFFICE = "social_affairs_office"
    HEALTH_CENTRE = "health_centre"
    SCHOOL_DISTRICT_OFFICE = "school_district_office"
    SCHOOL = "school"
    VILLAGE = "village"
    STREET_SUPERVISION = "street_supervision"  # the street's leader in charge: high/urgent alerts
    COUNTY_OFFICE = "county_office"  # the county's coordination body: escalations to the county


UNIT_TYPE_LABELS: Final = MappingProxyType(
    {
        UnitType.GOVERNANCE_OFFICE: "街道综治办",
        UnitType.POLICE_STATION: "公安派出所",
        UnitType.TRIBUNAL: "人民法庭",
        UnitType.SOCIAL_AFFAIRS_OFFICE: "社会事务办",
        UnitType.HEALTH_CENTRE: "社区卫生服务中心",
        UnitType.SCHOOL_DISTRICT_OFFICE: "学区办",
        UnitType.SCHOOL: "学校",
        UnitType.VILLAGE: "村社区",
        UnitType.STREET_SUPERVISION: "街道分管领导",
        UnitType.COUNTY_OFFICE: "县级未成年人保护工作协调机制",
    }
)


class FinderRole(StrEnum):
    """Who found a clue (一中心一张网十联户 and the others the plan names)."""

    CHILD_WELFARE_SUPERVISOR = "child_welfare_supervisor"
    CHILD_DIRECTOR = "child_director"
    GRID_WORKER = "grid_worker"
    HOUSEHOLD_GROUP_LEADER = "household_group_leader"
    WOMENS_FEDERATION_DIRECTOR = "womens_federation_director"
    VILLAGE_DOCTOR = "village_doctor"
    STATIONED_CADRE = "stationed_cadre"
    TEACHER = "teacher"
    PARENT = "parent"
    VOLUNTEER = "volunteer"


FINDER_ROLE_LABELS: Final = MappingProxyType(
    {
        FinderRole.CHILD_WELFARE_SUPERVISOR: "儿童督导员",
        FinderRole.CHILD_DIRECTOR: "儿童主任",
        FinderRole.GRID_WORKER: "网格员",
        FinderRole.HOUSEHOLD_GROUP_LEADER: "联户长",
        FinderRole.WOMENS_FEDERATION_DIRECTOR: "妇联主任",
        FinderRole.VILLAGE_DOCTOR: "村医",
        FinderRole.STATIONED_CADRE: "驻村干部",
        FinderRole.TEACHER: "教师",
        FinderRole.PARENT: "家长",
        FinderRole.VOLUNTEER: "志愿者",
    }
)


class DiscoveryMethod(StrEnum):
    HOME_VISIT = "home_visit"
    GRID_PATROL = "grid_patrol"
    SCHOOL = "school"
    TIP_OFF = "tip_off"


DISCOVERY_METHOD_LABELS: Final = MappingProxyType(
    {
        DiscoveryMethod.HOME_VISIT: "走访",
        DiscoveryMethod.GRID_PATROL: "网格",
        DiscoveryMethod.SCHOOL: "学校",
        DiscoveryMethod.TIP_OFF: "举报",
    }
)


class Role(StrEnum):
    """Roles of the people who use casetrail; what each may see is decided in domain.access."""

    REPORTER = "reporter"
    COORDINATOR = "coordinator"
    SUPERVISOR = "supervisor"
    UNIT_MEMBER = "unit_member"
    INVESTIGATOR = "investigator"
    COMPLIANCE_AUDITOR = "compliance_auditor"
    ADMIN = "admin"
    # The county's lead of reverse investigations (一案一倒查): opens investigations and issues
    # county orders the street under review can neither see nor revoke; reads no case content.
    COUNTY_LEAD = "county_lead"


class Purpose(StrEnum):
    """Declared purpose of use of every read (X-Purpose-Of-Use)."""

    INTERVENTION = "intervention"
    CONSULTATION = "consultation"
    FOLLOW_UP = "follow_up"
    INVESTIGATION = "investigation"
    COMPLIANCE_REVIEW = "compliance_review"
    EMERGENCY = "emergency"
    # A guardian's request to see the minor's data (个人信息保护法 第四十五条; issue 19):
    # declared by its endpoint only (POST /v1/guardian-requests/{id}/answer).
    GUARDIAN_REQUEST = "guardian_request"


class CaseStatus(StrEnum):
    AWAITING_CONSULTATION = "awaiting_consultation"
    INTERVENING = "intervening"
    CLOSED = "closed"


CASE_STATUS_LABELS: Final = MappingProxyType(
    {
        CaseStatus.AWAITING_CONSULTATION: "待会商",
        CaseStatus.INTERVENING: "干预中",
        CaseStatus.CLOSED: "已结案",
    }
)


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"


GENDER_LABELS: Final = MappingProxyType({Gender.MALE: "男", Gender.FEMALE: "女"})


class GuardianRelation(StrEnum):
    FATHER = "father"
    MOTHER = "mother"
    GRANDPARENT = "grandparent"
    SIBLING = "sibling"
    OTHER_RELATIVE = "other_relative"
    APPOINTED = "appointed"


class LetterReason(StrEnum):
    """Why a guardianship responsibility letter (监护责任书) is signed."""

    PARENTS_WORKING_AWAY = "parents_working_away"
    UNSUPERVISED = "unsupervised"


class ClosingReason(StrEnum):
    RESOLVED = "resolved"
    NO_LONGER_MINOR = "no_longer_minor"
    MOVED_AWAY = "moved_away"
    UNFOUNDED = "unfounded"
    TRANSFERRED = "transferred"
