"""Pure rules about people's identifiers: resident ID numbers, phone numbers, ages.

A resident ID number (居民身份证号码, GB 11643) has 18 characters: a 6-digit area code, the date of
birth as YYYYMMDD, a 3-digit sequence whose last digit is odd for men and even for women, and a
check character computed with ISO 7064 MOD 11-2 ('X' stands for 10).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

_ID_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK_CHARS: Final = "10X98765432"
_ID_SHAPE: Final = re.compile(r"^\d{17}[\dX]$", re.ASCII)

# Mainland mobile numbers, or landlines with an area code (0xx or 0xxx), optional hyphen.
_PHONE_SHAPE: Final = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$", re.ASCII)

ADULT_AGE: Final = 18


class InvalidIdNumber(ValueError):
    """The text is not a well-formed resident ID number; the message says which part is wrong."""


def id_check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def parse_id_number(id_number: str) -> tuple[date, bool]:
    """Check an ID number and return (date of birth, is_male) read from it."""
    text = id_number.strip().upper()
    if not _ID_SHAPE.match(text):
        raise InvalidIdNumber("must be 17 digits followed by a digit or X (18 characters)")
    if id_check_character(text[:17]) != text[17]:
        raise InvalidIdNumber("check character does not match (ISO 7064 MOD 11-2); re-type it")
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        raise InvalidIdNumber("characters 7-14 are not a valid date of birth") from None
    return born, int(text[16]) % 2 == 1


def normalise_id_number(id_number: str) -> str:
    return id_number.strip().upper()


def make_id_number(area: str, born: date, sequence: int) -> str:
    """Build a valid ID number (used to generate synthetic people; never a real one)."""
    first17 = f"{area}{born:%Y%m%d}{sequence:03d}"
    return first17 + id_check_character(first17)


def is_valid_phone(phone: str) -> bool:
    return bool(_PHONE_SHAPE.match(phone))


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def mask_name(name: str) -> str:
    """张*明: keep the first and last character; one character names become '*'."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_id_number(id_number: str) -> str:
    """First 6 and last 4 characters, the date of birth hidden."""
    return id_number[:6] + "*" * 8 + id_number[-4:]
