"""Pure rules about people's identifiers: resident ID numbers, phone numbers, ages, names.

A resident ID number (居民身份证号码, GB 11643) has 18 characters: a 6-digit area code, the date of
birth as YYYYMMDD, a 3-digit sequence whose last digit is odd for men and even for women, and a
check character computed with ISO 7064 MOD 11-2 ('X' stands for 10).

A name has one form (`normalise_name`: NFC, spaces trimmed and collapsed) for storing, the blind
index and lookups, and holds no invisible or reordering character (`check_name`), so that an
exact lookup of the name as it looks finds the file (`tests/domain/test_names.py`,
`tests/integration/test_names.py`).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Final

_ID_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK_CHARS: Final = "10X98765432"
_ID_SHAPE: Final = re.compile(r"^\d{17}[\dX]$", re.ASCII)

# Mainland mobile numbers, or landlines with an area code (0xx or 0xxx), optional hyphen.
_PHONE_SHAPE: Final = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$", re.ASCII)

ADULT_AGE: Final = 18

# Bidirectional controls: embeddings and overrides (U+202A-U+202E), isolates (U+2066-U+2069),
# marks (U+200E, U+200F, U+061C). Each can make stored text read other than it is.
BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Invisible characters outside category Cf that still make two names that look alike differ:
# the combining grapheme joiner, variation selectors, Hangul fillers.
_INVISIBLE_OTHER: Final = frozenset(
    "\u034f\u115f\u1160\u3164\uffa0" + "".join(chr(c) for c in range(0xFE00, 0xFE10))
)
# Cc control, Cf format (zero-width characters, BOM, bidi controls, soft hyphen...), Cs lone
# surrogates, Zl/Zp line and paragraph separators.
_NAME_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SPACES: Final = re.compile(r"\s+")


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


class InvalidName(ValueError):
    """A name holds characters that cannot be seen or that reorder text; the message names the
    kind of character, never the name."""


def normalise_name(name: str) -> str:
    """The one form a name is stored, indexed and looked up in: NFC, no surrounding whitespace,
    each run of inner whitespace (ideographic or no-break spaces too) as one space. Two inputs
    that look the same and differ only in composition or spacing then give the same form."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", name).strip())


def check_name(name: str) -> str:
    """Refuse a name holding invisible or reordering characters: they would make a file that an
    exact lookup of the visible name misses (and a ledger that reads other than it is)."""
    for ch in name:
        if ch in BIDI_CONTROLS:
            raise InvalidName("must not contain bidirectional control characters")
        if unicodedata.category(ch) in _NAME_REFUSED_CATEGORIES or ch in _INVISIBLE_OTHER:
            raise InvalidName(
                "must not contain control, zero-width or other invisible characters "
                "(such as U+200B or a byte order mark); type the name as it is written"
            )
    return name


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
