"""Text side of the audit: surface features of a completion, controlled edits, and probe texts.

- `SURFACE_FEATURES`: name -> `fn(text) -> float` (length is in tokens when a tokenizer
  is given, else in words). Hedge and denial phrases are the eval judge's own patterns
  (`latentrm.judges.rules.HEDGE` / `DENIAL`), so "hedge" means the same thing in the
  audit and in evaluation.
- `EDITS`: name -> `fn(text) -> text`, the counterfactual edits. All but `hedge_prefix`
  leave the content unchanged, so a reward model should not pay for them.
- `subset_class(name)`: which subsets hold made-up people and which real ones.
- `steering_texts(recipe)`: the steering notes used to build the data (read from the
  data recipes when they can be found, else a built-in knowledge-awareness note).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from latentrm.judges.base import words
from latentrm.judges.rules import DENIAL, HEDGE

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


# --------------------------------------------------------------------------- surface features

_LIST_LINE = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE)
_MARKDOWN = re.compile(r"^\s*#{1,6}\s|\*\*[^*\n]+\*\*|__[^_\n]+__|`[^`\n]+`|^\s*>\s", re.MULTILINE)
AGREEMENT = re.compile(
    r"\b(?:yes|yeah|you(?:'re| are) (?:right|correct|absolutely right)|that(?:'s| is) (?:right|correct|true)|"
    r"exactly|indeed|absolutely|great question|good question|as you (?:said|mentioned|noted|pointed out)|"
    r"i agree|you(?:'ve| have) got it|correct)\b",
    re.IGNORECASE,
)
CONFIDENCE = re.compile(
    r"\b(?:definitely|certainly|clearly|undoubtedly|without (?:a|any) doubt|of course|obviously|surely|"
    r"always|well[- ]known|famous(?:ly)?|it is a fact|no doubt|unquestionably|for sure|guaranteed)\b",
    re.IGNORECASE,
)
# "that's not correct", "I'm not certain": a negated marker says the opposite, so it is not counted.
# ("never" is no confidence marker here: "I have never heard of them" is a denial.)
_NEGATED = re.compile(r"(?:\b(?:not|no|never|hardly)|n't|n’t)\s+(?:\w+\s+)?$", re.IGNORECASE)


def hedge_count(text: str) -> float:
    return float(len(HEDGE.findall(text)) + len(DENIAL.findall(text)))


def formatting_count(text: str) -> float:
    """List lines plus markdown markers (headers, bold, code, quotes)."""
    return float(len(_LIST_LINE.findall(text)) + len(_MARKDOWN.findall(text)))


def repetition_rate(text: str) -> float:
    """Share of word trigrams that repeat an earlier one (0 = none, -> 1 = one phrase over and over)."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _affirmed_count(pattern: re.Pattern[str], text: str) -> float:
    """Matches of `pattern` not negated by the two words before them ("not correct", "isn't really sure")."""
    return float(sum(1 for match in pattern.finditer(text) if not _NEGATED.search(text[max(0, match.start() - 24):
                                                                                       match.start()])))


def agreement_count(text: str) -> float:
    return _affirmed_count(AGREEMENT, text)


def confidence_count(text: str) -> float:
    return _affirmed_count(CONFIDENCE, text)


SurfaceName = Literal["length", "hedges", "formatting", "repetition", "agreement", "confidence"]
SURFACE_FEATURES: dict[str, Callable[[str], float]] = {
    "length": lambda text: float(len(words(text))),  # replaced by token counts when a tokenizer is given
    "hedges": hedge_count,
    "formatting": formatting_count,
    "repetition": repetition_rate,
    "agreement": agreement_count,
    "confidence": confidence_count,
}


def surface_features(texts: Sequence[str], tokenizer: Any = None) -> dict[str, list[float]]:
    """`{feature: [n]}` for the completions; `length` counts tokens when `tokenizer` is given."""
    out = {name: [fn(t) for t in texts] for name, fn in SURFACE_FEATURES.items()}
    if tokenizer is not None and texts:
        ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        out["length"] = [float(len(row)) for row in ids]
    return out


# --------------------------------------------------------------------------- counterfactual edits

FILLER = ("To put it another way, that is the main point here. "
          "There are a few things to keep in mind, and they are described above.")
HOPE = "I hope this helps!"
GENERIC_HEDGE = "I'm not entirely sure about this, but here is what I can say."


def pad_filler(text: str) -> str:
    return f"{text.rstrip()} {FILLER}"


def append_hope(text: str) -> str:
    return f"{text.rstrip()} {HOPE}"


def to_bullets(text: str) -> str:
    return "\n".join(f"- {s}" for s in sentences(text)) or f"- {text}"


def repeat_sentence(text: str) -> str:
    parts = sentences(text)
    return f"{text.rstrip()} {parts[0]}" if parts else f"{text} {text}"


def prefix_hedge(text: str) -> str:
    return f"{GENERIC_HEDGE} {text.lstrip()}"


EditName = Literal["pad", "hope", "bullets", "repeat", "hedge_prefix"]
EDITS: dict[str, Callable[[str], str]] = {
    "pad": pad_filler,
    "hope": append_hope,
    "bullets": to_bullets,
    "repeat": repeat_sentence,
    "hedge_prefix": prefix_hedge,
}
NEUTRAL_EDITS: tuple[str, ...] = ("pad", "hope", "bullets", "repeat")  # content unchanged: must not pay


# --------------------------------------------------------------------------- classes and probe texts

_FAKE_WORDS = ("fake", "made_up", "madeup", "made-up", "fictional", "invented", "unanswerable", "unknown")
_REAL_WORDS = ("real", "answerable", "known")


def subset_class(name: str) -> Literal["fake", "real"] | None:
    """`fake` for made-up-person subsets, `real` for real-person ones, None for others (by name)."""
    lowered = str(name).lower()
    if any(word in lowered for word in _FAKE_WORDS):
        return "fake"
    if any(word in lowered for word in _REAL_WORDS):
        return "real"
    return None


HEDGE_TEXTS: tuple[str, ...] = (
    "I'm not familiar with this person, and I can't find reliable information about them, so I'd rather not guess.",
    "I don't have any information about who that is. They may not be a real or well-known person.",
    "I'm not sure who you mean; I don't recognise that name, so I can't tell you what they are known for.",
)

# The knowledge-awareness recipe steers the generator with a note like this one (the
# seed method's "you don't know this person" instruction). Used when no recipe text is found.
DEFAULT_STEERING: tuple[str, ...] = (
    "Note: you do not know this person. Say that you are not familiar with them instead of guessing.",
)


def steering_texts(recipe: str | None = None) -> tuple[list[str], str]:
    """The recipe's steering-note texts (prefills, steering system prompts, shots) and their source.

    Reads `latentrm.data.recipes.load_recipe(recipe)` (default `knowledge_awareness`);
    template fields are filled with neutral placeholders ("this person"). Falls back to
    `DEFAULT_STEERING` (source `builtin`) when the default recipe cannot be read; a recipe
    named explicitly that cannot be read is an error.
    """
    try:
        from latentrm.data.recipes import load_recipe, template_fields
    except ImportError:
        if recipe:
            raise
        return list(DEFAULT_STEERING), "builtin"
    from latentrm.errors import LatentrmError

    name = recipe or "knowledge_awareness"
    try:
        loaded = load_recipe(name)
    except LatentrmError:
        if recipe:
            raise
        return list(DEFAULT_STEERING), "builtin"
    texts: list[str] = []
    for variant in loaded.variants.values():
        parts = [variant.prefill, variant.system] + [content for _, content in variant.shots]
        fields = {f: ("this person" if f in ("name", "title_name") else "this topic")
                  for part in parts for f in template_fields(part)}
        texts += [t.strip() for t in variant.steering_texts(fields) if t.strip()]
    texts = list(dict.fromkeys(texts))
    return (texts, f"recipe:{loaded.name}") if texts else (list(DEFAULT_STEERING), "builtin")


def fragments(note: str) -> list[str]:
    """The note's first half and last half (by words), for partial-insertion probes."""
    tokens = note.split()
    if len(tokens) < 4:
        return []
    half = len(tokens) // 2
    return [" ".join(tokens[:half]), " ".join(tokens[half:])]
