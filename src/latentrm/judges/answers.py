"""Short answers, normalised so that a reference and a response can be compared (used by `reference.py`).

A reference is read as one of three types, in this order:

- a **date**: "July 20, 1969", "20 July 1969", "20th of July 1969", "1969-07-20", "July 1969", or a bare
  year ("1989"); it matches a date in the response that states every part it states (a more precise
  date is fine, a less precise one is not);
- a **number**: digits with thousands separators ("1,140,000"), decimals with a scale word ("1.14
  million", "65k", "2 bn"), number words ("seven", "two million", "twenty-one"); a unit or percent sign
  after it is ignored, except that a stated number whose unit measures something else than the
  reference's ("2997 kg" against "8,849 metres") is no answer to it at all. Two numbers agree at the precision of the less precise one ("about 65,000" ~
  65,132), but a response must state at least two significant figures, or as many as the reference,
  so "about 1 million" is not 1.14 million, and a more precise one must be within 1% ("7.9 billion"
  is not "8 billion");
- **text**: accents folded ("Brasília" ~ "Brasilia"), lower case, possessive 's and punctuation
  dropped, "&" -> "and", the articles a / an / the dropped; it matches as a whole-word phrase.

Aliases are the user's: list every acceptable answer in `references` ("Leonardo da Vinci",
"da Vinci", "Leonardo").
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

# --------------------------------------------------------------------------- text

_ARTICLES = {"a", "an", "the"}
_APOSTROPHE = re.compile(r"['’]s\b|['’]")
_NON_WORD = re.compile(r"[^\w\s]|_")


def fold(text: str) -> str:
    """Accents removed: "García Márquez" -> "Garcia Marquez"."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normal_tokens(text: str) -> list[str]:
    """Lower-cased, accent-folded word tokens without punctuation, possessive 's or articles."""
    text = _APOSTROPHE.sub("", fold(text).lower().replace("&", " and "))
    return [t for t in _NON_WORD.sub(" ", text).split() if t not in _ARTICLES]


def find_phrase(phrase: list[str], tokens: list[str]) -> list[int]:
    """Start positions where `phrase` occurs in `tokens` as whole tokens."""
    n = len(phrase)
    return [i for i in range(len(tokens) - n + 1) if n and tokens[i : i + n] == phrase]


# --------------------------------------------------------------------------- numbers

_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                     "thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_SCALE_SUFFIX = {"k": 1e3, "mn": 1e6, "bn": 1e9}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, "hundred", *_SCALES], key=len, reverse=True))
_NUMBER = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\d,]*\.\d)"
    r"(?:\s*(thousand|million|billion|trillion)\b|(k|bn|mn)\b)?"
    # a unit glued to the number ("1.811cm"), but not a bare "m" (metres or millions?)
    r"(?:(?!\w)|(?=(?:cm|mm|km|kg|g|ft|lbs?|mph|kph|kmh|°[cf])\b))", re.IGNORECASE)
_WORDS_NUMBER = re.compile(rf"\b(?:{_NUMBER_WORD})(?:(?:[\s-]+(?:and[\s-]+)?)(?:{_NUMBER_WORD}))*\b", re.IGNORECASE)


@dataclass(frozen=True)
class Number:
    value: float
    figures: int  # significant figures as written ("65,000" -> 2, "1.14 million" -> 3)
    span: str
    year_like: bool = False  # a bare 1000-2099 with no separator or scale: read as a year, not a count
    dimension: str | None = None  # what its unit measures ("length", "mass", "money", ...), when one is written


# What a unit word measures. Only to tell "2997 kg" from an answer in metres: two units of one dimension
# (feet against metres) still compare as numbers, as before.
_DIMENSIONS = {dimension: set(words.split()) for dimension, words in {
    "length": "m metre metres meter meters km kilometre kilometres kilometer kilometers cm centimetres centimeters "
              "mm millimetres millimeters ft foot feet mile miles mi inch inches yard yards",
    "mass": "kg kilogram kilograms kilogramme g gram grams grammes lb lbs pound pounds ton tons tonne tonnes ounce "
            "ounces oz",
    "time": "s sec second seconds min minute minutes h hr hrs hour hours day days week weeks month months year "
            "years",
    "money": "dollar dollars euro euros usd eur gbp",
    "percent": "% percent",
    "area": "km2 km² square",
    "speed": "mph kph km/h",
    "temperature": "°c °f degrees celsius fahrenheit kelvin",
}.items()}
_CURRENCY_BEFORE = re.compile(r"[$€£¥]\s*$")


def dimension(before: str, after: str) -> str | None:
    """What the unit written around a number measures: "$" before it, or the word right after it."""
    if _CURRENCY_BEFORE.search(before):
        return "money"
    word = re.match(r"\s*(%|[°\w/²]+)", after)
    if not word:
        return None
    token = word.group(1).lower()
    return next((name for name, words in _DIMENSIONS.items() if token in words), None)


def _figures(integer: str, decimals: str) -> int:
    digits = (integer + decimals).lstrip("0")
    if not decimals:
        digits = digits.rstrip("0")
    return max(1, len(digits))


def _words_value(text: str) -> float:
    total, current = 0.0, 0.0
    for word in re.split(r"[\s-]+", text.lower()):
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0.0
    return total + current


def numbers(text: str, *, words: bool = True) -> list[Number]:
    """Every number stated in `text`, in order; `words=False` leaves out number words ("one of the ...")."""
    found: list[tuple[int, Number]] = []
    for match in _NUMBER.finditer(text):
        integer, decimals = match.group(1).replace(",", ""), match.group(2) or ""
        scale_word = (match.group(3) or match.group(4) or "").lower()
        scale = _SCALES.get(scale_word) or _SCALE_SUFFIX.get(scale_word, 1.0)
        value = float(f"{integer}.{decimals}" if decimals else integer) * scale
        unit = dimension(text[: match.start()], text[match.end() :])
        year_like = bool(re.fullmatch(r"1\d{3}|20\d{2}", match.group(1))) and not decimals and scale == 1.0 and (
            unit in (None, "time"))  # "1270 kilometres" is a length, not a year
        found.append((match.start(), Number(value, _figures(integer, decimals), match.group(0).strip(), year_like,
                                            unit)))
    taken = [(start, start + len(number.span)) for start, number in found]
    if words:
        for match in _WORDS_NUMBER.finditer(text):
            if match.group(0).lower() in (*_SCALES, "hundred") or any(
                    s <= match.start() < e or match.start() <= s < match.end() for s, e in taken):
                continue  # a lone scale word, or the "million" of "1.14 million"
            value = _words_value(match.group(0))
            digits = str(int(value)).rstrip("0") or "0"
            found.append((match.start(), Number(value, len(digits), match.group(0), False,
                                                dimension(text[: match.start()], text[match.end() :]))))
    return [number for _, number in sorted(found, key=lambda pair: pair[0])]


def round_figures(value: float, figures: int) -> float:
    """`value` rounded half-up to `figures` significant figures."""
    if value == 0:
        return 0.0
    exponent = math.floor(math.log10(abs(value))) - figures + 1
    return math.floor(value / 10**exponent + 0.5) * 10**exponent


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def numbers_agree(reference: Number, stated: Number) -> bool:
    """Equal at the reference's precision (and within 1%: "7.9 billion" is not "8 billion"), or at the
    response's when it states at least two figures ("about 65,000" ~ 65,132)."""
    if _close(round_figures(stated.value, reference.figures), round_figures(reference.value, reference.figures)) \
            and abs(stated.value - reference.value) <= 0.01 * abs(reference.value):
        return True
    return stated.figures >= 2 and _close(round_figures(reference.value, stated.figures), stated.value)


# --------------------------------------------------------------------------- dates

_MONTHS = {name: i + 1 for i, name in enumerate(
    "january february march april may june july august september october november december".split())}
_MONTHS.update({name[:3]: number for name, number in list(_MONTHS.items())} | {"sept": 9})
_MONTH = r"(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(1\d{3}|20\d{2})"
_DATE_PATTERNS = (
    ("ymd", re.compile(rf"\b{_YEAR}-(\d{{1,2}})-(\d{{1,2}})\b")),
    ("mdy", re.compile(rf"\b({_MONTH})\.?\s+{_DAY}\b(?:,?\s+{_YEAR}\b)?", re.IGNORECASE)),
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?({_MONTH})\b\.?(?:,?\s+{_YEAR}\b)?", re.IGNORECASE)),
    ("my", re.compile(rf"\b({_MONTH})\.?,?\s+(?:of\s+)?{_YEAR}\b", re.IGNORECASE)),
)
_BARE_YEAR = re.compile(rf"(?<![\d,.])\b{_YEAR}(?:s\b|\b(?![,.]\d))")  # "1989", or a decade "1490s"


@dataclass(frozen=True)
class Date:
    year: int | None
    month: int | None
    day: int | None
    span: str

    def parts(self) -> dict[str, int]:
        return {k: v for k, v in (("year", self.year), ("month", self.month), ("day", self.day)) if v is not None}


def dates(text: str) -> list[Date]:
    """Dates and bare years stated in `text`, in order; a year inside a full date is not listed twice."""
    found: list[tuple[int, int, Date]] = []
    for shape, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            groups = match.groups()
            year: int | None
            day: int | None
            if shape == "ymd":
                year, month, day = int(groups[0]), int(groups[1]), int(groups[2])
            elif shape == "mdy":
                month, day, year = _MONTHS[groups[0].lower()], int(groups[1]), int(groups[2]) if groups[2] else None
            elif shape == "dmy":
                day, month, year = int(groups[0]), _MONTHS[groups[1].lower()], int(groups[2]) if groups[2] else None
            else:
                month, day, year = _MONTHS[groups[0].lower()], None, int(groups[1])
            if groups[0] == "may" and shape in ("mdy", "my"):
                continue  # "may" in lower case is the verb
            if day is not None and not 1 <= day <= 31 or month is not None and not 1 <= month <= 12:
                continue
            found.append((match.start(), match.end(), Date(year, month, day, match.group(0).strip())))
    found.sort(key=lambda entry: (entry[0], -entry[1]))
    kept: list[tuple[int, int, Date]] = []
    for start, end, date in found:  # drop a shorter match inside a longer one ("July 1969" in "July 20, 1969")
        if not any(s <= start and end <= e for s, e, _ in kept):
            kept.append((start, end, date))
    for match in _BARE_YEAR.finditer(text):
        if not any(s <= match.start() < e for s, e, _ in kept):
            kept.append((match.start(), match.end(), Date(int(match.group(1)), None, None, match.group(0))))
    return [date for _, _, date in sorted(kept, key=lambda entry: entry[0])]


def dates_agree(reference: Date, stated: Date) -> bool:
    """The response's date states every part the reference states, and each part is equal."""
    asked, given = reference.parts(), stated.parts()
    return all(given.get(part) == value for part, value in asked.items())


# --------------------------------------------------------------------------- a reference, typed

AnswerType = Literal["date", "number", "text"]


@dataclass(frozen=True)
class Reference:
    text: str
    type: AnswerType
    tokens: tuple[str, ...]  # normalised text tokens (every type has them: "8,849 metres" -> 8849 metres)
    number: Number | None = None
    date: Date | None = None

    @property
    def proper(self) -> bool:
        """A name, symbol or formula ("Canberra", "Au", "H2O"): the answer is a capitalised word."""
        first = re.sub(r"^(?:the|a|an)\s+", "", self.text.strip(), flags=re.IGNORECASE)
        return bool(first) and first[0].isupper()


def _covers(span: str, text: str, spare_words: int) -> bool:
    rest = text.replace(span, " ", 1)
    return len(re.findall(r"[A-Za-z]+", rest)) <= spare_words


def read_reference(text: str) -> Reference:
    """Type a reference: a date (or bare year), a number (plus at most two unit words), else text."""
    tokens = tuple(normal_tokens(text))
    found_dates = dates(text)
    if len(found_dates) == 1 and _covers(found_dates[0].span, text, 0):
        return Reference(text, "date", tokens, date=found_dates[0])
    found_numbers = [n for n in numbers(text) if not n.year_like]
    if len(found_numbers) == 1 and _covers(found_numbers[0].span, text, 2):
        return Reference(text, "number", tokens, number=found_numbers[0])
    return Reference(text, "text", tokens)
