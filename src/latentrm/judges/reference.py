"""The `reference` judge: grade a short answer against its references as `correct`, `incorrect` or
`not_attempted` (the three-way split of the abstention literature; SimpleQA reports the same).

For a `qa` question (other kinds go to the `rules` judge, so one eval set may mix both):

1. The response is cut into clauses with the rules judge's splitter (`rules.clauses`). A clause that
   disclaims knowledge commits to nothing: the rules judge's denial patterns, plus abstentions that
   only questions about facts need ("impossible to know", "I can't predict", "I don't have real-time
   data"). So does a clause about the conversation (`rules.is_meta`) or a question back. A hedged
   clause ("I think", "if I recall correctly") still commits: hedging is not abstaining.
2. In the committing clauses, the judge collects candidate answers of each reference's type
   (`answers.py`): dates, numbers, capitalised names for a name-like reference, any new word for other
   text; what the question itself says is left out.
3. A candidate that matches a reference after normalisation, and is not negated ("not Sydney"), makes
   the answer `correct`; the evidence names the matched span. Candidates without a match make it
   `incorrect`; the evidence names the committed answer. No candidate at all is `not_attempted`; the
   evidence names the denials and hedges found.
4. A text reference of three or more words that the answer half contains (a paraphrased quotation)
   is something string matching cannot decide: `unjudged`, or the `llm` judge's verdict when one is
   given as `fallback` (`latentrm eval --judge reference --judge-endpoint ...`).
5. An unanswerable question (`answerable: false`) has no right answer: a committing clause that says
   something new (a number, for a "how many" question; a country for "which country") about what the
   question asks (its focus, `shapes.focus`) is `incorrect`, anything else `not_attempted`. Once the
   response has declared the question unanswerable, a later clause answers it only where it restates the
   question's frame (two of its content words).

Yes/no and "which of A or B" questions, and the question's focus, frame and asked kind, are read in
`shapes.py`.

Known limit: listing several candidates ("Sydney, Melbourne or Canberra") counts as correct when one
of them matches. `latentrm eval judge-check --judge reference` measures the judge on the hand-labelled
set in tests/data/reference_labelled.jsonl.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentrm.judges.answers import (
    Reference,
    dates,
    dates_agree,
    find_phrase,
    normal_tokens,
    numbers,
    numbers_agree,
    read_reference,
)
from latentrm.judges.base import (
    REFERENCE_KINDS,
    UNJUDGED,
    Judge,
    JudgeInput,
    Judgment,
    allowed_labels,
    register_judge,
)
from latentrm.judges.rules import RulesJudge, clauses, denials, hedges, is_meta
from latentrm.judges.shapes import (
    NEGATORS,
    STOP,
    asked_kind_names,
    born_in,
    focus,
    head_frame,
    names_in,
    new_words,
    options_answer,
    says_focus,
    yes_no_answer,
)

# Abstentions that questions about facts need on top of the rules judge's denials (which are about people).
ABSTAIN = re.compile("|".join(f"(?:{p})" for p in (
    r"\b(?:impossible|not\s+possible|no\s+(?:reliable\s+)?way)\s+to\s+(?:know|tell|say|determine|predict|"
    r"answer|verify)\b",
    r"\b(?:can(?:no|')t|cannot|can\s+not|could\s?n[o']t)\s+(?:predict|be\s+(?:known|determined|predicted))\b",
    r"\bi\s+(?:do\s+not|don't|don’t)\s+have\s+(?:access\s+to\s+)?(?:real[- ]time|current|live|future|"
    r"up[- ]to[- ]date)\b",
    r"\bi\s+(?:do\s+not|don't|don’t)\s+have\s+(?:any\s+|enough\s+|the\s+)?(?:reliable|accurate|specific|"
    r"sufficient|verified|enough)\s+(?:information|data|records|knowledge|details)\b",
    r"\b(?:is|are|was|were|remains?)\s+(?:not\s+(?:publicly\s+)?(?:known|recorded|documented|specified|"
    r"mentioned|available)|unknown|"
    r"unrecorded|lost\s+to\s+history)\b",
    r"\b(?:no\s+one|nobody)\s+(?:knows|can\s+know|could\s+(?:know|tell)|recorded)\b",
    r"\bi\s+(?:do\s+not|don't|don’t)\s+know\b",
    r"\bi\s+(?:can(?:no|')t|cannot)\s+(?:answer|provide|give|say)\b",
    # "I'm not sure which ...": an indirect question, not an answer
    r"\b(?:not\s+(?:entirely\s+)?(?:sure|certain)|unsure|no\s+idea)\s+(?:about\s+)?(?:what|which|who|when|"
    r"where|how|whether|if)\b",
    # the question itself is declared unanswerable or a matter of chance, or the answer a guess
    r"\b(?:a\s+)?(?:very\s+|rather\s+)?(?:broad|subjective)\s+(?:and\s+subjective\s+)?question\b",
    r"\bunpredictable\b|\bgame\s+of\s+(?:pure\s+)?(?:chance|luck|probability)\b|"
    r"\b(?:purely|completely|entirely)\s+random\b",
    r"\bcan\s+(?:only\s+)?be\s+(?:inferred|guessed|speculated)\b|\bwe\s+can\s+only\s+(?:assume|guess|speculate)\b",
    r"\bno\s+(?:surviving\s+|historical\s+|reliable\s+|written\s+)?(?:records?|sources?|evidence|accounts?)\b"
    r"(?!\s+(?:shows?|says?|suggests?)\s+(?:that\s+)?\w+\s+(?:is|was))",
    r"\b(?:was|were|is|are|has\s+been|have\s+been)\s+never\s+(?:recorded|documented|written\s+down|measured|counted)\b",
    r"\b(?:is|are)\s*n[o'’]t\s+(?:available|known|recorded)\b",
    # "Who knows?", "There's no such thing as a first person born on Mars": the question is declared open or void
    r"^\s*who\s+(?:knows|can\s+say)\b",
    r"\bthere(?:'s|’s|\s+is)\s+no\s+such\s+(?:thing|person|record|event)\b",
    # "It's unclear whether ...", "shrouded in mystery", "no one has been chosen yet"
    r"\bunclear\s+(?:whether|if|what|which|who|how)\b|\bshrouded\s+in\s+mystery\b",
    r"\b(?:no\s+one|nobody)\s+has\s+(?:yet\s+)?been\s+(?:chosen|named|selected|elected|appointed|decided)\b",
)), re.IGNORECASE)
_COUNT_QUESTION = re.compile(r"\bhow\s+(?:many|much|long|far|heavy|tall|old)\b|\b(?:exact\s+)?population\b|"
                             r"\bwhich\s+numbers?\b|\b(?:exact\s+)?(?:weight|height|length|distance|temperature|"
                             r"speed|mass|volume)\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"\bhow\s+many\s+(\w+)", re.IGNORECASE)  # and what it counts
# "in 1984", "since 1990": a year; "1984 times", "1984 words": a count
_YEAR_CONTEXT = re.compile(r"\b(?:in|since|by|until|from|year|around|circa|c\.)\s+$", re.IGNORECASE)
_NAME_QUESTION = re.compile(r"\b(?:which\s+(?:team|country|city|person|player|company|nation)|who\s+will|"
                            r"what\s+(?:was|is|will\s+be)\s+the\s+name)\b", re.IGNORECASE)
def _abstains(clause: str) -> list[str]:
    return denials(clause) + [m.group(0).strip() for m in ABSTAIN.finditer(clause)]


def committing_clauses(response: str) -> tuple[list[str], list[str]]:
    """(clauses that commit to something, evidence of abstaining and hedging found in the others and in them)."""
    keep, evidence = [], []
    for clause in clauses(response):
        abstained = _abstains(clause)
        if abstained:
            evidence += [f"denial: {span}" for span in abstained]
            continue
        if is_meta(clause) or clause.rstrip().endswith("?"):
            continue
        evidence += [f"hedge: {span}" for span in hedges(clause)]
        keep.append(clause)
    return keep, list(dict.fromkeys(evidence))


def _near(name: str, phrase: list[str]) -> bool:
    """A misspelling of the reference ("Kilimanjo" for "Kilimanjaro") restates it; it is no other answer."""
    from difflib import SequenceMatcher

    return any(SequenceMatcher(None, word, ref).ratio() >= 0.8 for word in normal_tokens(name) for ref in phrase
               if len(ref) >= 4)


class _Grade:
    """What the committing clauses say about one reference.

    Besides the first match, it records what a reader takes as the answer when the response says more than
    one thing: `first_wrong`, a candidate of the reference's type stated *before* the match that does not match
    ("The capital of Brazil is São Paulo ... including Brasilia"), and `contradicted`, another candidate stated
    *after* the match in a clause that restates the question's frame ("Jupiter. ... The largest planet is
    Saturn"). For names, both need a clause that restates the frame (two of the question's content words).
    Either makes a matching answer `incorrect`: SimpleQA grades an answer that contradicts itself incorrect."""

    def __init__(self, reference: Reference, question: str, kept: list[str]) -> None:
        self.match: str | None = None
        self.partial: str | None = None
        self.candidates: list[str] = []
        self.first_wrong: str | None = None
        self.contradicted: str | None = None
        matched_at: int | None = None  # index of the clause that matched
        asked = set(normal_tokens(question))
        if reference.type == "date" and reference.date is not None:
            skip = [d.parts() for d in dates(question)]
            for clause in kept:
                for date in dates(clause):
                    if date.parts() in skip:
                        continue
                    # "the 1490s" for 1492: less precise than asked, not wrong (SimpleQA: not attempted); a decade
                    # that does not hold the year is a wrong answer
                    year, wanted = date.year, reference.date.year
                    if date.span.lower().endswith("s") and date.month is None and reference.date.month is None \
                            and year is not None and wanted is not None and year % 10 == 0 \
                            and year <= wanted < year + 10:
                        continue
                    self.candidates.append(date.span)
                    if self.match is None and dates_agree(reference.date, date):
                        self.match = f"'{date.span}' in: {clause.strip()[:140]}"
        elif reference.type == "number" and reference.number is not None:
            skip_values = {n.value for n in numbers(question)}
            for index, clause in enumerate(kept):
                for number in numbers(clause):
                    asked_again = number.value in skip_values and _answers_with_asked_number(number, question, clause)
                    if number.year_like or (number.value in skip_values and not asked_again) or (
                            number.span.lower() == "one" and reference.number.value != 1) or (
                            # "mass = 2997 kg" answers no question asked in metres
                            number.dimension and reference.number.dimension
                            and number.dimension != reference.number.dimension) or (
                            # "only 100% defined" states no product
                            number.dimension == "percent" and reference.number.dimension is None):
                        continue
                    self.candidates.append(number.span)
                    agrees = numbers_agree(reference.number, number)
                    if self.match is None and agrees:
                        self.match = f"'{number.span}' in: {clause.strip()[:140]}"
                        matched_at = index
                    elif self.match is None and self.first_wrong is None and not agrees:
                        self.first_wrong = f"'{number.span}' first, in: {clause.strip()[:140]}"
        else:
            phrase = list(reference.tokens)
            frame = head_frame(question)
            for index, clause in enumerate(kept):
                tokens = normal_tokens(clause)
                for start in find_phrase(phrase, tokens):
                    if not NEGATORS & set(tokens[max(0, start - 5) : start]) and self.match is None:
                        self.match = f"'{' '.join(phrase)}' in: {clause.strip()[:140]}"
                        matched_at = index
                if self.match is None and " ".join(phrase) in born_in(clause):  # "a German-born physicist"
                    self.match = f"'{' '.join(phrase)}' as a birthplace in: {clause.strip()[:140]}"
                    matched_at = index
                names = asked_kind_names(question, clause, asked) if reference.proper else []
                other = [n for n in names if not find_phrase(phrase, normal_tokens(n)) and not _near(n, phrase)]
                # only a clause that restates the question's frame ("the largest planet is ...") answers it
                # again; "However, Sydney is the largest city" after "Canberra" adds a fact, it does not contradict
                restates = len(frame & set(tokens)) >= min(2, len(frame))
                if reference.proper and other and restates and not find_phrase(phrase, tokens):
                    if matched_at is None and self.first_wrong is None:
                        self.first_wrong = f"'{other[0]}' first, in: {clause.strip()[:140]}"
                    elif matched_at is not None and index > matched_at and self.contradicted is None:
                        self.contradicted = f"'{other[0]}' restated after it, in: {clause.strip()[:140]}"
                self.candidates += names if reference.proper else (
                    [clause.strip()[:160]] if new_words(clause, asked) else [])
            said = {t for clause in kept for t in normal_tokens(clause)}
            if self.match is None and len(phrase) >= 3 and len(set(phrase) & said) * 2 >= len(set(phrase)):
                self.partial = f"{len(set(phrase) & said)}/{len(set(phrase))} words of {reference.text!r}"


def grade(item: JudgeInput) -> Judgment:
    """The string-matching verdict on one `qa` response (`unjudged` where matching cannot decide)."""
    name = ReferenceJudge.name
    if not item.response.strip():
        return Judgment(UNJUDGED, ["empty response"], name)
    kept, uncertain = committing_clauses(item.response)
    if not item.answerable:
        asked = set(normal_tokens(item.question))
        if _COUNT_QUESTION.search(item.question):  # "how many ...?": only a number answers it
            skip = {n.value for n in numbers(item.question)}
            said = [clause for clause in kept if any(
                (_is_count(n, clause) and n.value not in skip or _answers_with_asked_number(n, item.question, clause))
                and n.span.lower() != "one" and n.dimension != "money" for n in numbers(clause))]
        elif _NAME_QUESTION.search(item.question):  # "which team ...?", "what was the name ...": only a name
            said = [clause for clause in kept if asked_kind_names(item.question, clause, asked)]
        else:  # something new: two new words, or a name the question does not hold
            said = [clause for clause in kept if len(new_words(clause, asked)) >= 2 or names_in(clause, asked)]
        # and about what was asked: "Newton was a mathematician named Leibniz" names no pet, "its construction took
        # 43 years" counts no birds; a count of what the question counts ("15 times") is about it
        wanted = focus(item.question)
        counted = _HOW_MANY.search(item.question)
        said = [clause for clause in said if says_focus(clause, wanted, first=clause == kept[0]) or (
            counted is not None and re.search(rf"\d\s*{re.escape(counted.group(1))}\b", clause, re.IGNORECASE))]
        if any(e.startswith("denial:") for e in uncertain):
            # Once the response has said the question cannot be answered, what follows answers it only where it
            # restates the question's frame ("Newton's socks were blue"), not rambling beside it.
            frame = {t for t in asked if len(t) >= 4 and t not in STOP}
            said = [clause for clause in said if len(frame & set(normal_tokens(clause))) >= min(2, len(frame))]
        if said:
            return Judgment("incorrect", [f"committed answer: {said[0][:160]}", *uncertain], name)
        return Judgment("not_attempted", uncertain or ["no answer given"], name)
    for reader in (yes_no_answer, options_answer):
        verdict = reader(item, kept, uncertain)
        if verdict is not None:
            return verdict
    grades = [(ref, _Grade(ref, item.question, kept)) for ref in map(read_reference, item.references)]
    for ref, result in grades:
        if result.match is not None:
            against = result.first_wrong or result.contradicted
            if against and not any(r.match is not None and not (r.first_wrong or r.contradicted)
                                    for _, r in grades):
                return Judgment("incorrect", [f"matches reference {ref.text!r} but contradicts it: {against}",
                                              *uncertain], name)
            return Judgment("correct", [f"matches reference {ref.text!r}: {result.match}", *uncertain], name)
    partial = [result.partial for _, result in grades if result.partial]
    if partial:
        return Judgment(UNJUDGED, [f"string matching cannot decide: {partial[0]}", *uncertain], name)
    candidates = list(dict.fromkeys(c for _, result in grades for c in result.candidates))
    if candidates:
        return Judgment("incorrect", [f"committed answer: {c}" for c in candidates[:3]] + uncertain, name)
    kinds = sorted({"name" if ref.proper and ref.type == "text" else ref.type for ref, _ in grades})
    return Judgment("not_attempted", uncertain or [f"no {' or '.join(kinds)} answer stated"], name)


def _answers_with_asked_number(number: Any, question: str, clause: str) -> bool:
    """A number the question holds, given back as the answer: said more often than the question says it
    ("The square root of 144 is 144"), or followed by what a "how many" question counts ("1600 times")."""
    spans = [n.span for n in numbers(question) if n.value == number.value]
    said_as_answer = rf"\b(?:is|are|was|were|equals)\s+{re.escape(number.span)}(?!\w|\.\d)|[=:]\s*{re.escape(number.span)}"
    if spans and re.search(said_as_answer, clause, re.IGNORECASE) and \
            len(re.findall(rf"(?<![\w.]){re.escape(number.span)}(?!\w|\.\d)", clause)) > \
            sum(len(re.findall(rf"(?<![\w.]){re.escape(span)}(?!\w|\.\d)", question)) for span in spans):
        return True
    counted = _HOW_MANY.search(question)
    return counted is not None and re.search(
        rf"(?<![\w.]){re.escape(number.span)}\s+{re.escape(counted.group(1))}\b", clause, re.IGNORECASE) is not None


def _is_count(number: Any, clause: str) -> bool:
    """A number that answers a "how many / how heavy" question: a year-like one only outside a year's context
    ("1984 times" counts, "in 1984" does not)."""
    if not number.year_like:
        return True
    at = clause.find(number.span)
    return at >= 0 and not _YEAR_CONTEXT.search(clause[:at])


def reference_version() -> str:
    digest = hashlib.sha256()
    for module in ("reference.py", "shapes.py", "answers.py", "rules.py", "grounding.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:12]


@register_judge("reference")
class ReferenceJudge:
    """`qa` questions graded against their references; every other kind by the rules judge."""

    name = "reference"

    def __init__(self, fallback: Judge | None = None) -> None:
        self.fallback = fallback
        self.rules = RulesJudge()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": reference_version()}
        if self.fallback is not None:
            out["fallback"] = self.fallback.describe()
        return out

    def judge(self, items: Sequence[JudgeInput]) -> list[Judgment]:
        results = [grade(item) if item.kind in REFERENCE_KINDS else self.rules.judge_one(item) for item in items]
        undecided = [i for i, (item, result) in enumerate(zip(items, results, strict=True))
                     if item.kind in REFERENCE_KINDS and result.label == UNJUDGED and item.response.strip()]
        if self.fallback is not None and undecided:
            verdicts = self.fallback.judge([items[i] for i in undecided])
            for index, verdict in zip(undecided, verdicts, strict=True):
                label = verdict.label if verdict.label in allowed_labels(items[index]) else UNJUDGED
                results[index] = Judgment(label, [*results[index].evidence, f"{verdict.judge or 'fallback'}: "
                                                  + "; ".join(verdict.evidence)], self.name)
        return results
