"""Names (and the short texts a ledger is filtered by) have one form, NFC and trimmed, and hold
no invisible or reordering character; free text refuses control and bidi characters. Messages
never quote the name."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from pydantic import ValidationError

from domain import commands as cmd
from domain import identity
from domain.clock import local_today
from tests.domain.builders import report_body

# Each character a name must not hold, by what it is.
FORBIDDEN = {
    "right-to-left override U+202E": "\u202e",
    "left-to-right embedding U+202A": "\u202a",
    "pop directional formatting U+202C": "\u202c",
    "left-to-right isolate U+2066": "\u2066",
    "pop directional isolate U+2069": "\u2069",
    "right-to-left mark U+200F": "\u200f",
    "arabic letter mark U+061C": "\u061c",
    "zero-width space U+200B": "\u200b",
    "zero-width non-joiner U+200C": "\u200c",
    "zero-width joiner U+200D": "\u200d",
    "word joiner U+2060": "\u2060",
    "byte order mark U+FEFF": "\ufeff",
    "soft hyphen U+00AD": "\u00ad",
    "variation selector U+FE0F": "\ufe0f",
    "hangul filler U+3164": "\u3164",
    "line separator U+2028": "\u2028",
    "escape U+001B": "\x1b",
    "CSI U+009B": "\x9b",
    "tab": "\t",
}
# Where the character goes: leading (a BOM), inside, trailing.
PLACES = {
    "leading": lambda ch: ch + "王小明",
    "inside": lambda ch: "王小" + ch + "明",
    "trailing": lambda ch: "王小明" + ch,
}
NAMED_FIELDS = [
    ("minor", "name"),
    ("guardians", 0, "name"),
    ("minor", "school"),
    ("minor", "grade_class"),
]


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("kind", list(FORBIDDEN))
def test_check_name_refuses_invisible_and_bidi_characters(kind: str, place: str) -> None:
    name = PLACES[place](FORBIDDEN[kind])
    with pytest.raises(identity.InvalidName) as caught:
        identity.check_name(name)
    assert "王" not in str(caught.value)


@pytest.mark.parametrize("path", NAMED_FIELDS, ids=[".".join(map(str, p)) for p in NAMED_FIELDS])
@pytest.mark.parametrize("kind", list(FORBIDDEN))
def test_a_report_with_such_a_name_is_refused_naming_the_field(
    kind: str, path: tuple[str | int, ...]
) -> None:
    value = "王小" + FORBIDDEN[kind] + "明"
    body = _with(report_body(), path, value)
    with pytest.raises(ValidationError) as caught:
        cmd.ReportClue.model_validate(body)
    errors = caught.value.errors()
    assert [tuple(e["loc"]) for e in errors] == [path]
    assert "王小" not in errors[0]["msg"]


DECOMPOSED = [
    "阮文e\u0301",  # é as e + combining acute
    "Nguye\u0302\u0303n",  # ễ as e + circumflex + tilde
    "李A\u030a",  # Å as A + ring above
]


@pytest.mark.parametrize("name", DECOMPOSED)
@pytest.mark.parametrize("path", NAMED_FIELDS[:2], ids=["minor", "guardian"])
def test_a_decomposed_name_is_stored_composed_and_trimmed(
    name: str, path: tuple[str | int, ...]
) -> None:
    body = _with(report_body(), path, "  " + name + "\u3000")
    clue = cmd.ReportClue.model_validate(body)
    stored = clue.minor.name if path[0] == "minor" else clue.guardians[0].name
    assert stored == unicodedata.normalize("NFC", name)
    assert stored != name  # it was changed: the test proves something


def test_inner_spaces_collapse_to_one() -> None:
    assert identity.normalise_name(" 阿依 \u3000古丽 ") == "阿依 古丽"


def test_a_decomposed_name_is_measured_composed() -> None:
    # 32 composed characters, 64 code points decomposed: within the bound.
    name = "e\u0301" * 32
    body = _with(report_body(), ("minor", "name"), name)
    assert cmd.ReportClue.model_validate(body).minor.name == "\u00e9" * 32


BIDI = ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u200e", "\u200f", "\u061c"]


@pytest.mark.parametrize("ch", BIDI)
@pytest.mark.parametrize("field", ["description", "notes", "reason"])
def test_free_text_refuses_bidi_controls(ch: str, field: str) -> None:
    text = "家访发现" + ch + "情绪低落"
    if field == "description":
        body = {**report_body(), "description": text}
        model: Any = cmd.ReportClue
    elif field == "notes":
        body = {"visited_on": local_today().isoformat(), "notes": text}
        model = cmd.RecordFollowUp
    else:
        body = {"reason": text}
        model = cmd.ReopenCase
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    assert [tuple(e["loc"]) for e in caught.value.errors()] == [(field,)]
    assert "家访" not in caught.value.errors()[0]["msg"]


@pytest.mark.parametrize("ch", ["\x00", "\x07", "\x1b", "\x7f", "\x9b", "\r"])
def test_free_text_refuses_control_characters(ch: str) -> None:
    with pytest.raises(ValidationError):
        cmd.ReopenCase.model_validate({"reason": "再次" + ch + "发现"})


def test_free_text_keeps_newlines_tabs_and_emoji_joiners() -> None:
    text = "第一行\n\t第二行 👨\u200d👩\u200d👧"
    assert cmd.ReopenCase.model_validate({"reason": text}).reason == text


def test_the_subtype_message_does_not_quote_the_subtype() -> None:
    body = report_body()
    body["issues"] = [{"category": "mental_health", "subtype": "secret-subtype-xyz"}]
    with pytest.raises(ValidationError) as caught:
        cmd.ReportClue.model_validate(body)
    assert "secret-subtype-xyz" not in str(caught.value.errors()[0]["msg"])
