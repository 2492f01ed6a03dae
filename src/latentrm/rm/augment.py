"""Close the loop from the audit to training: content-free edits of the training completions.

    latentrm rm train --pairs P --head mlp --layer 15 --pooling mean --from-audit runs/quick/audit
    latentrm rm train ... --edits pad,sign_off,repeat --edit-loss invariance --edit-weight 1

The audit's counterfactual probe finds edits that change nothing a reader cares about yet raise the
score (padding, a sign-off, a repeated sentence, bullets). A policy trained against that head will
find them too. Here each edit is applied to every distinct train-split completion, and the head is
trained with one extra term on (original, edited) feature pairs:

- `pairs`: a Bradley-Terry term preferring the original, `-log sigmoid(r(x) - r(edit(x)))`, the same
  as adding "unedited > edited" pairs to the data;
- `invariance`: the penalty `(r(x) - r(edit(x)))^2`, which asks for no change at all.

The loss is `BT(pairs) + edit_weight * mean(term)` (rm/train.py). `hedge_prefix` is the one edit
that changes content: it is applied to real-person completions only, where "I'm not sure, but..."
before a correct answer should not pay.

The phrasings below are deliberately disjoint from the audit's own (`audit/text.py`: its filler, "I
hope this helps!", repeating the *first* sentence), so an audit after retraining measures whether
the head learned "padding does not pay", not "this one string does not pay".
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from latentrm.errors import LatentrmError

PADDING = (
    "In other words, this is the key idea to take away from the answer above.",
    "Overall, these are the main points worth keeping in mind on this topic.",
    "To sum up, the details above cover what matters most here.",
    "All in all, that is a short overview of the subject.",
)
SIGN_OFFS = (
    "Let me know if you have any other questions!",
    "Feel free to ask if anything is unclear.",
    "Hope that answers your question!",
    "Happy to help with anything else!",
)
HEDGES = (
    "I might be wrong about some of this, but here goes.",
    "I'm not completely certain, but this is my understanding.",
    "Take this with a grain of salt:",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _pad(text: str, rng: random.Random) -> str:
    return f"{text.rstrip()} {rng.choice(PADDING)}"


def _sign_off(text: str, rng: random.Random) -> str:
    return f"{text.rstrip()} {rng.choice(SIGN_OFFS)}"


def _repeat(text: str, rng: random.Random) -> str:
    parts = _sentences(text)
    return f"{text.rstrip()} {rng.choice(parts)}" if parts else f"{text} {text}"


def _bullets(text: str, rng: random.Random) -> str:
    marker = rng.choice(("-", "*", "•"))
    return "\n".join(f"{marker} {s}" for s in _sentences(text)) or f"{marker} {text}"


def _hedge_prefix(text: str, rng: random.Random) -> str:
    return f"{rng.choice(HEDGES)} {text.lstrip()}"


TRAIN_EDITS: dict[str, Callable[[str, random.Random], str]] = {
    "pad": _pad, "hope": _sign_off, "repeat": _repeat, "bullets": _bullets, "hedge_prefix": _hedge_prefix,
}
CONTENT_FREE = ("pad", "hope", "repeat", "bullets")  # the audit's NEUTRAL_EDITS, by the same names
EDIT_LOSSES = ("pairs", "invariance")


def parse_edits(text: str, option: str = "--edits") -> tuple[str, ...]:
    """`pad,hope` -> ("pad", "hope"); `all` -> every content-free edit; unknown names fail in one line."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return CONTENT_FREE
    unknown = [name for name in names if name not in TRAIN_EDITS]
    if unknown:
        raise LatentrmError(f"{option} {text!r}: unknown edit(s) {', '.join(unknown)}; use {', '.join(TRAIN_EDITS)} "
                            "or all")
    return tuple(dict.fromkeys(names))


def edits_from_audit(path: str | Path) -> tuple[str, ...]:
    """The edits an audit flagged as paying (its counterfactual probe), from `<audit>/report.json`."""
    report_path = Path(path)
    if report_path.is_dir():
        report_path = report_path / "report.json"
    if not report_path.exists():
        raise LatentrmError(f"--from-audit {path}: no report.json there; run `latentrm rm audit` first")
    try:
        report = json.loads(report_path.read_text())
        probe = next(p for p in report["probes"] if p["name"] == "counterfactual")
        effects = probe["numbers"]["effects"]
    except (ValueError, KeyError, StopIteration, TypeError):
        raise LatentrmError(f"--from-audit {report_path}: not an audit report with a counterfactual probe; "
                            "run `latentrm rm audit` with the counterfactual probe") from None
    flagged = [edit for edit, groups in effects.items()
               if edit in TRAIN_EDITS and any(isinstance(g, dict) and g.get("flag") for g in groups.values())]
    if not flagged:
        raise LatentrmError(f"--from-audit {report_path}: the audit flagged no edit, so there is nothing to train "
                            "away; name edits with --edits instead")
    return tuple(flagged)


def edit_pairs(frame: pd.DataFrame, edits: tuple[str, ...], seed: int = 0,
               real: Callable[[str], bool] | None = None) -> pd.DataFrame:
    """(prompt, original, edited, edit, subset) for every distinct train-split completion and edit.

    `hedge_prefix` is applied to real-person rows only (`real(subset)`, by default a subset named
    like `real`). Each edited text draws its phrasing from its own seeded generator, so the rows do
    not depend on the order of the file.
    """
    real = real or (lambda subset: "real" in str(subset).lower())
    train = frame[frame["split"] == "train"] if "split" in frame.columns else frame
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for record in train.itertuples(index=False):
        for completion in (record.chosen, record.rejected):
            if (record.prompt, completion) in seen:
                continue
            seen.add((record.prompt, completion))
            for name in edits:
                if name == "hedge_prefix" and not real(record.subset):
                    continue
                rng = random.Random(f"{seed}|{name}|{record.prompt}|{completion}")
                edited = TRAIN_EDITS[name](completion, rng)
                if edited != completion:
                    rows.append({"prompt": record.prompt, "original": completion, "edited": edited, "edit": name,
                                 "subset": record.subset})
    return pd.DataFrame(rows, columns=["prompt", "original", "edited", "edit", "subset"])
