"""Text helpers of `data build`'s post-processing: openers, sentence trimming, echo detection."""

from __future__ import annotations

import re

from latentrm.data.entities import fold

__all__ = ["is_echo", "join_opener", "trim_to_sentence"]


def join_opener(opener: str, continuation: str) -> str:
    if not opener:
        return continuation
    if not continuation:
        return opener
    glue = "" if continuation[:1] in ",.;:!?'’)" or opener.endswith((" ", "\n")) else " "
    return opener + glue + continuation


def trim_to_sentence(text: str) -> str:
    """Cut a length-truncated completion back to its last full sentence (if that keeps >= 30% of it)."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    if ends and ends[-1] >= 0.3 * len(text):
        return text[: ends[-1]]
    return text


def is_echo(text: str, markers: tuple[str, ...], steering: list[str], ngram: int) -> bool:
    """True when a completion repeats a steering marker or any `ngram`-word run of the steering text."""
    lowered = text.lower()
    if any(marker.lower() in lowered for marker in markers):
        return True
    words = fold(text).split()
    grams = {" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}
    for source in steering:
        source_words = fold(source).split()
        if any(" ".join(source_words[i : i + ngram]) in grams for i in range(len(source_words) - ngram + 1)):
            return True
    return False
