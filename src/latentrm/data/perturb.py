"""Confidently wrong grounding: a real person's grounding text with its checkable facts changed.

The `right_vs_wrong` contrast of the knowledge_awareness recipe pairs a grounded answer (chosen) with an
answer the policy gives from a *perturbed* copy of the same grounding (rejected): the same confident register,
the same person, wrong facts. `wrong_grounding` makes that copy, deterministically for a seeded `rng`:

- every year (1000-2099) in the text moves by one shift of 7-40 years (one shift, so a lifespan stays a
  plausible lifespan; never into the future);
- the person's occupation and field ("physicist", "physics", also inside "Nobel Prize in Physics") become
  another selected real person's (a chemist's, say), whose field differs;
- the person's institution and nationality become other people's.

Only what the entity's facts name and the text contains is changed, in one pass (a replacement is never
replaced again). When nothing changes, the answer is None: a "wrong" text equal to the right one would label a
correct answer as rejected.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

_YEAR = r"\b(?:1[0-9]{3}|20[0-9]{2})\b"
LATEST_YEAR = 2025


def _cased(old: str, new: str) -> str:
    """`new` with `old`'s leading capital ("Physics" -> "Chemistry")."""
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _phrase(text: str) -> str:
    return rf"(?<!\w){re.escape(text)}(?!\w)"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - {"and", "of", "the"}


def _value(facts: Mapping[str, str], fact: str) -> str:
    """A fact's value; a nationality is cut to its leading capitalised words (wiki descriptions give
    "English theoretical" for "English theoretical physicist")."""
    value = (facts.get(fact) or "").strip()
    if fact == "nationality":
        words = value.split()
        value = " ".join(words[: next((i for i, w in enumerate(words) if not w[:1].isupper()), len(words))])
    return value


def _year_shift(years: list[int], rng: random.Random) -> int:
    shift = rng.choice([-1, 1]) * rng.randint(7, 40)
    if years and max(years) + shift > LATEST_YEAR:
        shift = -abs(shift)
    return shift


def wrong_grounding(grounding: str, facts: Mapping[str, str], others: Sequence[Mapping[str, str]],
                    rng: random.Random) -> str | None:
    """A copy of `grounding` with its years shifted and its field / occupation, institution and nationality swapped.

    `facts` are the person's template fields (`occupation`, `field`, `institution`, `nationality`); `others` are other real
    people's, the source of the swapped values. None when nothing in the text could be changed.
    """
    text = grounding
    replacements: dict[str, str] = {}  # lower-cased old phrase -> new phrase
    years = [int(y) for y in re.findall(_YEAR, text)]
    shift = _year_shift(years, rng)  # drawn even without years, so the swaps below do not depend on them
    own_field = (facts.get("field") or "").strip()
    own_occupation = (facts.get("occupation") or "").strip()
    own_words = _words(own_field) | _words(own_occupation)  # no "physicist and chemist" for a physicist
    fields = sorted({(o["occupation"].strip(), o["field"].strip()) for o in others
                     if (o.get("field") or "").strip() and (o.get("occupation") or "").strip()
                     and not (_words(o["field"]) | _words(o["occupation"])) & own_words})
    if fields and (own_field or own_occupation):
        occupation, field = rng.choice(fields)
        for old, new in ((own_occupation, occupation), (own_field, field)):
            if old and re.search(_phrase(old), text, re.IGNORECASE):
                replacements[old.lower()] = new
    for fact in ("institution", "nationality"):
        own = _value(facts, fact)
        values = sorted({v for v in (_value(o, fact) for o in others) if v and v.lower() != own.lower()})
        if own and values and own.lower() not in replacements and re.search(_phrase(own), text, re.IGNORECASE):
            replacements[own.lower()] = rng.choice(values)
    phrases = sorted(replacements, key=len, reverse=True)  # "physicist and chemist" before "chemist"
    pattern = "|".join([_phrase(p) for p in phrases] + [_YEAR])

    def swap(match: re.Match[str]) -> str:
        found = match.group(0)
        if found.isdigit():
            return str(int(found) + shift)
        return _cased(found, replacements[found.lower()])

    wrong = re.sub(pattern, swap, text, flags=re.IGNORECASE)
    for new in sorted(set(replacements.values())):  # "a Austrian" -> "an Austrian", before a swapped phrase
        wrong = re.sub(rf"\b([Aa])n?(\s+)({_phrase(new)})", _article, wrong, flags=re.IGNORECASE)
    return None if wrong == grounding else wrong


def _article(match: re.Match[str]) -> str:
    article = "an" if match.group(3)[:1].lower() in "aeiou" else "a"
    return _cased(match.group(1), article) + match.group(2) + match.group(3)
