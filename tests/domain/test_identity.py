"""Resident ID numbers (ISO 7064 MOD 11-2), ages, masks and phone numbers."""

from __future__ import annotations

import random
from datetime import date

import pytest

from domain.identity import (
    InvalidIdNumber,
    age_on,
    id_check_character,
    is_valid_phone,
    make_id_number,
    mask_id_number,
    mask_name,
    parse_id_number,
)

# GB 11643 / ISO 7064 MOD 11-2, written out rather than taken from the code under test.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_TABLE = "10X98765432"


def check_by_hand(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS, strict=True))
    return CHECK_TABLE[total % 11]


def with_check(first17: str) -> str:
    return first17 + check_by_hand(first17)


def test_by_hand_computation_agrees_with_a_worked_sum() -> None:
    # 9*7 + 9*9 + 0*10 + 1*5 + 0*8 + 1*4 + 2*2 + 0*1 + 1*6 + 5*3 + 0*7 + 8*9 + 1*10 + 5*5
    # + 1*8 + 2*4 + 3*2 = 307; 307 mod 11 = 10; "10X98765432"[10] = "2".
    assert check_by_hand("99010120150815123") == "2"


@pytest.mark.parametrize(
    ("first17", "expected"),
    [
        ("11010519491231002", "X"),  # the example of the standard itself
        ("99010120150815123", "2"),  # the worked sum above
        # One prefix for each of the eleven check characters:
        ("99010120120315000", "1"),
        ("99010120120315001", "X"),
        ("99010120120315002", "8"),
        ("99010120120315003", "6"),
        ("99010120120315004", "4"),
        ("99010120120315005", "2"),
        ("99010120120315006", "0"),
        ("99010120120315007", "9"),
        ("99010120120315008", "7"),
        ("99010120120315009", "5"),
        ("99010120120315018", "3"),
    ],
)
def test_check_character_on_known_vectors(first17: str, expected: str) -> None:
    assert check_by_hand(first17) == expected
    assert id_check_character(first17) == expected


def test_check_character_agrees_with_the_hand_computation_on_many_numbers() -> None:
    rng = random.Random(11)
    for _ in range(500):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        assert id_check_character(first17) == check_by_hand(first17), first17


def test_make_id_number_appends_the_check_character() -> None:
    made = make_id_number("990101", date(2012, 3, 15), 7)
    assert made == "990101201203150079"
    assert made[-1] == check_by_hand(made[:17])


def test_parse_returns_date_of_birth_and_gender() -> None:
    born, is_male = parse_id_number("11010519491231002X")
    assert born == date(1949, 12, 31)
    assert is_male is False  # 17th digit 2 is even


def test_parse_accepts_lower_case_x_and_surrounding_spaces() -> None:
    assert parse_id_number("  11010519491231002x ") == (date(1949, 12, 31), False)


@pytest.mark.parametrize(
    ("seventeenth", "male"),
    [
        *[(odd, True) for odd in "13579"],
        *[(even, False) for even in "02468"],
    ],
)
def test_gender_digit(seventeenth: str, male: bool) -> None:
    number = with_check("9901012012031500" + seventeenth)
    assert parse_id_number(number) == (date(2012, 3, 15), male)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "11010519491231002",  # 17 characters
        "11010519491231002X1",  # 19 characters
        "1101051949123100X2",  # X not in last place
        "11010A19491231002X",  # a letter among the digits
        "11010519491231002Y",  # a letter other than X at the end
        "110105 19491231002X",  # a space inside
        "110105-19491231-002X",
    ],
)
def test_parse_rejects_malformed_shapes(text: str) -> None:
    with pytest.raises(InvalidIdNumber, match="18 characters"):
        parse_id_number(text)


@pytest.mark.parametrize("wrong", ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
def test_parse_rejects_a_wrong_check_character(wrong: str) -> None:
    with pytest.raises(InvalidIdNumber, match="check character"):
        parse_id_number("11010519491231002" + wrong)


@pytest.mark.parametrize(
    "birth",
    [
        "20121315",  # month 13
        "20120015",  # month 0
        "20120332",  # day 32
        "20120400",  # day 0
        "20130229",  # 29 February of a common year
        "20120431",  # 31 April
    ],
)
def test_parse_rejects_an_impossible_date_even_with_a_valid_check_character(birth: str) -> None:
    with pytest.raises(InvalidIdNumber, match="date of birth"):
        parse_id_number(with_check("990101" + birth + "101"))


def test_parse_accepts_29_february_of_a_leap_year() -> None:
    assert parse_id_number(with_check("99010120120229101")) == (date(2012, 2, 29), True)


def test_parse_rejects_non_ascii_digits_even_when_the_checksum_would_match() -> None:
    # int() reads these digits, so only the shape check can stop them; the check character
    # stays ASCII so that the checksum itself would agree.
    first17 = "99010120120315101"
    check = check_by_hand(first17)
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in first17) + check
    arabic_indic = "".join(chr(0x0660 + int(ch)) for ch in first17) + check
    for text in (full_width, arabic_indic):
        with pytest.raises(InvalidIdNumber, match="18 characters"):
            parse_id_number(text)


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(2010, 6, 15), date(2028, 6, 14), 17),  # the day before the 18th birthday
        (date(2010, 6, 15), date(2028, 6, 15), 18),  # on the birthday
        (date(2010, 6, 15), date(2028, 6, 16), 18),
        (date(2010, 6, 15), date(2028, 1, 1), 17),
        (date(2010, 6, 15), date(2028, 12, 31), 18),
        (date(2010, 6, 15), date(2010, 6, 15), 0),
        (date(2010, 12, 31), date(2011, 12, 30), 0),
        (date(2010, 12, 31), date(2011, 12, 31), 1),
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # leap-day birthday, common year
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
    ],
)
def test_age_on(born: date, day: date, age: int) -> None:
    assert age_on(born, day) == age


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三明", "张*明"),
        ("李娜", "李*"),
        ("王", "*"),
        ("欧阳娜娜", "欧**娜"),
        ("司马相如君", "司***君"),
        ("", "*"),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_name_hides_all_but_the_first_and_last_character() -> None:
    name = "欧阳娜娜"
    masked = mask_name(name)
    assert len(masked) == len(name)
    assert "阳" not in masked
    assert masked.count("娜") == 1


def test_mask_id_number_keeps_first_six_and_last_four() -> None:
    number = "11010519491231002X"
    masked = mask_id_number(number)
    assert masked == "110105********002X"
    assert len(masked) == len(number)
    assert "19491231" not in masked


def test_mask_id_number_of_another_number() -> None:
    number = with_check("99010120120315101")
    masked = mask_id_number(number)
    assert masked[:6] == "990101"
    assert masked[-4:] == number[-4:]
    assert masked[6:14] == "*" * 8


@pytest.mark.parametrize(
    ("phone", "valid"),
    [
        ("13900000000", True),
        ("19912345678", True),
        ("0571-88001234", True),
        ("057188001234", True),
        ("010-1234567", True),
        ("12912345678", False),  # mobile numbers start 13-19
        ("1390000000", False),  # 10 digits
        ("139000000000", False),  # 12 digits
        ("+8613900000000", False),
        ("0571-880012", False),
        ("1390000000a", False),
        ("", False),
        ("１３９００００００００", False),  # full-width digits
        ("139００００００００", False),  # ASCII prefix, full-width rest
    ],
)
def test_is_valid_phone(phone: str, valid: bool) -> None:
    assert is_valid_phone(phone) is valid
