"""The taxonomy against the source plan: expected labels are written out from DOMAIN.md."""

from __future__ import annotations

import pytest

from domain.taxonomy import (
    CATEGORY_LABELS,
    PROTECTION_FUNCTION_LABELS,
    SUBTYPES,
    Category,
    ProtectionFunction,
    RiskLevel,
    is_known_subtype,
    risk_floor,
    subtype_label,
)

# From DOMAIN.md, "The four categories and their subtypes (四大类问题)", in the plan's order.
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "growth_environment": (
        "成长环境",
        [
            "家庭争吵",
            "家庭离异",
            "重组",
            "家暴",
            "虐待",
            "亲子关系疏离",
            "管教方式不当",
            "家庭经济困难",
            "单亲",
            "孤儿",
            "事实无人抚养儿童",
            "留守儿童",
            "残疾儿童",
            "长期无人监护",
        ],
    ),
    "mental_health": (
        "心理健康",
        [
            "思想极端",
            "敏感脆弱",
            "自卑怯弱",
            "精神消极",
            "焦虑",
            "失眠",
            "抑郁",
            "沉迷网络",
            "自伤自残",
            "患精神疾病",
        ],
    ),
    "unlawful_harm": (
        "遭受不法侵害",
        ["疑是性侵", "怀孕", "流产", "欺凌", "虐待", "殴打", "被人麻醉"],
    ),
    "social_abnormality": (
        "社交情况异常",
        [
            "内向孤僻",
            "不合群",
            "行为偏激",
            "遭受欺凌",
            "同伴排挤",
            "孤立",
            "遭受教师歧视",
            "体罚",
            "变相体罚",
            "与社会不良人员交往密切",
            "不良交友",
        ],
    ),
}

# The five subtypes whose files are never below `high`, named by (category, Chinese label).
HIGH_FLOOR_LABELS = {
    ("mental_health", "自伤自残"),
    ("unlawful_harm", "疑是性侵"),
    ("unlawful_harm", "怀孕"),
    ("unlawful_harm", "被人麻醉"),
    ("growth_environment", "长期无人监护"),
}


def _code_of(category: str, label: str) -> str:
    codes = [code for code, text in SUBTYPES[Category(category)].items() if text == label]
    assert len(codes) == 1, f"{category}/{label} should have exactly one code, found {codes}"
    return codes[0]


ALL_PAIRS = [(str(c), code) for c in SUBTYPES for code in SUBTYPES[c]]


def test_there_are_exactly_the_four_categories_with_their_chinese_labels() -> None:
    assert {str(c) for c in Category} == set(EXPECTED)
    assert {str(c): label for c, label in CATEGORY_LABELS.items()} == {
        code: label for code, (label, _) in EXPECTED.items()
    }
    assert set(SUBTYPES) == set(Category)


@pytest.mark.parametrize(
    ("category", "count"),
    [
        ("growth_environment", 14),
        ("mental_health", 10),
        ("unlawful_harm", 7),
        ("social_abnormality", 11),
    ],
)
def test_subtype_count_per_category(category: str, count: int) -> None:
    assert len(SUBTYPES[Category(category)]) == count


@pytest.mark.parametrize("category", list(EXPECTED))
def test_every_subtype_label_of_the_plan_is_in_its_category_in_order(category: str) -> None:
    _, labels = EXPECTED[category]
    assert list(SUBTYPES[Category(category)].values()) == labels


@pytest.mark.parametrize("category", list(EXPECTED))
def test_subtype_codes_are_known_and_labelled(category: str) -> None:
    for code, label in SUBTYPES[Category(category)].items():
        assert is_known_subtype(category, code)
        assert subtype_label(category, code) == label


def test_maltreatment_stands_under_two_categories_distinguished_by_the_pair() -> None:
    found = {
        (str(c), code)
        for c, subtypes in SUBTYPES.items()
        for code, label in subtypes.items()
        if label == "虐待"
    }
    assert {category for category, _ in found} == {"growth_environment", "unlawful_harm"}
    assert len(found) == 2
    for category, code in found:
        assert is_known_subtype(category, code)
        assert subtype_label(category, code) == "虐待"
    # The same code under a category that does not list it is not a subtype.
    codes = {code for _, code in found}
    for code in codes:
        assert not is_known_subtype("mental_health", code)
        assert not is_known_subtype("social_abnormality", code)


@pytest.mark.parametrize(
    ("category", "subtype"),
    [
        ("mental_health", "left_behind"),  # a growth-environment subtype
        ("growth_environment", "self_harm"),  # a mental-health subtype
        ("unlawful_harm", "no_such_subtype"),
        ("no_such_category", "anxiety"),
        ("", ""),
    ],
)
def test_unknown_pairs_are_not_subtypes(category: str, subtype: str) -> None:
    assert not is_known_subtype(category, subtype)


def test_six_protection_functions_with_their_labels() -> None:
    expected = {
        "family": "家庭保护",
        "school": "学校保护",
        "society": "社会保护",
        "online": "网络保护",
        "government": "政府保护",
        "judicial": "司法保护",
    }
    assert {str(f) for f in ProtectionFunction} == set(expected)
    assert {str(f): label for f, label in PROTECTION_FUNCTION_LABELS.items()} == expected


@pytest.mark.parametrize(("category", "subtype"), ALL_PAIRS)
def test_risk_floor_of_each_single_subtype(category: str, subtype: str) -> None:
    label = subtype_label(category, subtype)
    expected = RiskLevel.HIGH if (category, label) in HIGH_FLOOR_LABELS else RiskLevel.LOW
    assert risk_floor([(category, subtype)]) is expected


def test_exactly_five_subtypes_carry_the_high_floor() -> None:
    high = {(c, s) for c, s in ALL_PAIRS if risk_floor([(c, s)]) is RiskLevel.HIGH}
    assert high == {(c, _code_of(c, label)) for c, label in HIGH_FLOOR_LABELS}


def test_risk_floor_of_several_issues_is_high_when_any_one_is() -> None:
    self_harm = ("mental_health", _code_of("mental_health", "自伤自残"))
    anxiety = ("mental_health", _code_of("mental_health", "焦虑"))
    bullying = ("unlawful_harm", _code_of("unlawful_harm", "欺凌"))
    assert risk_floor([anxiety, bullying]) is RiskLevel.LOW
    assert risk_floor([anxiety, self_harm, bullying]) is RiskLevel.HIGH
    assert risk_floor([]) is RiskLevel.LOW


def test_maltreatment_floor_depends_on_neither_category() -> None:
    for category in ("growth_environment", "unlawful_harm"):
        assert risk_floor([(category, _code_of(category, "虐待"))]) is RiskLevel.LOW


def test_risk_levels_are_ordered() -> None:
    ranks = [RiskLevel(level).rank for level in ("low", "medium", "high", "urgent")]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == 4
