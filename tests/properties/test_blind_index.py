"""The blind index (`projections.blind_index`) is stable under the normalisation its module
defines (issue 22, Properties).

- ID numbers (`domain.identity.normalise_id_number`): surrounding whitespace (ASCII, tab,
  ideographic space U+3000, no-break space) and the case of the check character `x`/`X` give
  the same index. A number typed with full-width digits (１２３…) is not folded: it is refused by
  the check every lookup makes first (`parse_id_number`, a 422 naming the field), so it is
  never looked up under another value and silently missed.
- Names (`domain.identity.normalise_name`): NFC or NFD composition, surrounding spaces and
  any run of inner spaces (ideographic, no-break, en space) give the same index; a name with
  an invisible character is refused (`check_name`) before it is stored or looked up.
- Different values give different indexes, and a name never shares an index with an ID number
  of the same text (the kind is in the message).
"""

from __future__ import annotations

import os
import unicodedata
from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.identity import (
    InvalidIdNumber,
    InvalidName,
    check_name,
    make_id_number,
    normalise_name,
    parse_id_number,
)
from projections.blind_index import BlindIndex
from tests.properties.conftest import bounded

INDEX = BlindIndex(os.urandom(32))
OTHER_KEY = BlindIndex(os.urandom(32))

# Synthetic numbers only: area 99 is no province's.
id_numbers = st.builds(
    make_id_number,
    st.just("990101"),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31)),
    st.integers(min_value=0, max_value=999),
)
outer_spaces = st.text(alphabet=" \t\u3000\u00a0\n", max_size=3)
# Names as written: Han characters, a few Latin letters with accents, the middle dot of
# transliterated names, single spaces between parts.
name_parts = st.text(
    alphabet=st.sampled_from(
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗明华丽芳伟强敏静AnnaÉloïseJoséÅ·"
    ),
    min_size=1,
    max_size=6,
)
names = st.lists(name_parts, min_size=1, max_size=3).map(" ".join)
# Spaces a name may hold (tab and newline are control characters: `check_name` refuses them).
name_spaces = st.text(alphabet=" \u3000\u00a0\u2002", max_size=3)
inner_spaces = st.text(alphabet=" \u3000\u00a0\u2002", min_size=1, max_size=3)
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


@given(number=id_numbers, before=outer_spaces, after=outer_spaces, lower=st.booleans())
@bounded()
def test_an_id_number_as_typed_finds_the_same_index(
    number: str, before: str, after: str, lower: bool
) -> None:
    typed = before + (number.lower() if lower else number) + after
    # Every lookup checks the number first (gateway/http/routes/ledger.py): it passes.
    assert parse_id_number(typed) == parse_id_number(number)
    assert INDEX.id_number(typed) == INDEX.id_number(number)


@given(number=id_numbers)
@bounded()
def test_a_full_width_id_number_is_refused_never_looked_up_otherwise(number: str) -> None:
    typed = number.translate(FULL_WIDTH)
    with pytest.raises(InvalidIdNumber):
        parse_id_number(typed)


@given(first=id_numbers, second=id_numbers)
@bounded()
def test_different_id_numbers_have_different_indexes(first: str, second: str) -> None:
    assume(first != second)
    assert INDEX.id_number(first) != INDEX.id_number(second)
    # Another key, other values: the index says nothing without its key.
    assert OTHER_KEY.id_number(first) != INDEX.id_number(first)


@given(name=names, before=name_spaces, after=name_spaces, gap=inner_spaces, form=st.data())
@bounded()
def test_a_name_as_typed_finds_the_same_index(
    name: str, before: str, after: str, gap: str, form: st.DataObject
) -> None:
    composition = form.draw(st.sampled_from(["NFC", "NFD"]), label="composition")
    typed = before + unicodedata.normalize(composition, name).replace(" ", gap) + after  # type: ignore[arg-type]
    assert check_name(typed) == typed
    assert normalise_name(typed) == normalise_name(name)
    assert INDEX.name(typed) == INDEX.name(name)


@given(first=names, second=names)
@bounded()
def test_different_names_have_different_indexes(first: str, second: str) -> None:
    assume(normalise_name(first) != normalise_name(second))
    assert INDEX.name(first) != INDEX.name(second)
    # A name and an ID number of the same text never share an index.
    assert INDEX.name(first) != INDEX.id_number(first)


@given(
    name=names,
    at=st.integers(min_value=0),
    invisible=st.sampled_from("\u200b\u200d\ufeff\u202e\u2066"),
)
@bounded()
def test_a_name_with_an_invisible_character_is_refused(name: str, at: int, invisible: str) -> None:
    position = at % (len(name) + 1)
    with pytest.raises(InvalidName):
        check_name(name[:position] + invisible + name[position:])
