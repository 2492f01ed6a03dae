"""Choose a read-out by what RL will see: on-policy AUROC on a start policy's judged samples.

    latentrm rm onpolicy --rm runs/quick/rm --policy embedded --name onpolicy     # writes judged.jsonl
    latentrm rm sweep --pairs P --layers 9,15,21 --pooling last,mean --head mlp,linear \
        --select onpolicy --onpolicy runs/quick/onpolicy/judged.jsonl

Pair accuracy measures steered completions; RL samples the start policy's own. `judged.jsonl` (written by
`rm onpolicy`) holds those samples with the judge's label and its side for the prompt's class (wanted:
a hedge or refusal about a made-up person, a right answer about a real one; unwanted: a confabulation, a
wrong answer or a false denial). Each sweep candidate, trained on the pairs as always, scores every
sample; its on-policy score is the *minimum* over classes of the mean *within-prompt* AUROC of the reward
for wanted against unwanted samples: GRPO normalises rewards within a prompt's group, so only the ranking
inside a prompt moves the policy, and offsets between prompts can raise a pooled AUROC without helping RL.
The pooled AUROC is reported beside it. A class must be the weakest link it is: a head that ranks made-up
people perfectly and real ones at chance is no better than chance for RL.

The prompts are split in two halves by a stable hash of their id: the candidates are ranked on the
`select` half and the chosen one is reported on the `report` half too, so the number beside the choice is
not the one it was chosen on. A class counts on a half only when it has at least `MIN_SIDE` samples on
each side there and at least `MIN_PROMPTS` prompts with both sides (the `rm onpolicy` rule); a half with
no such class leaves the choice to the pair metric (and says so).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.errors import LatentrmError
from latentrm.io import stable_id
from latentrm.rm.metrics import auc

MIN_SIDE = 5
MIN_PROMPTS = 3  # prompts with both sides, as `rm onpolicy` asks before a verdict
HALVES = ("select", "report")


def load_judged(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a `judged.jsonl` that sit on a side of their class; a bad file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise LatentrmError(f"--onpolicy {path}: no such file; write it with `latentrm rm onpolicy --rm R "
                            "--policy P` (it is <run-dir>/<name>/judged.jsonl)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise LatentrmError(f"{path}:{number}: not a JSON line; rewrite the file with `latentrm rm onpolicy "
                                "--force`") from None
        missing = [k for k in ("prompt_id", "prompt", "completion", "class", "side") if k not in row]
        if missing:
            raise LatentrmError(f"{path}:{number}: missing {', '.join(missing)}; a judged.jsonl row has prompt_id, "
                                "prompt, completion, class, label and side")
        if row["side"] in ("wanted", "unwanted"):
            rows.append(row)
    if not rows:
        raise LatentrmError(f"{path}: no sample sits on a side of its class (wanted or unwanted); nothing to "
                            "choose on")
    return rows


def halves(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """`[n]` 0 (select) or 1 (report) per row, by a stable hash of the prompt id: one prompt, one half."""
    return np.array([int(stable_id("onpolicy-half", str(row["prompt_id"])), 16) % 2 for row in rows])


def within_prompt_auroc(scores: np.ndarray, prompt_ids: Sequence[str], wanted: np.ndarray) -> tuple[float, int]:
    """Mean over prompts with both sides of the AUROC among that prompt's samples, and how many prompts had both."""
    values = []
    ids = np.asarray([str(p) for p in prompt_ids])
    for prompt in dict.fromkeys(ids.tolist()):
        keep = ids == prompt
        pos, neg = scores[keep & wanted], scores[keep & ~wanted]
        if len(pos) and len(neg):
            values.append(auc(pos, neg))
    return (float(np.mean(values)) if values else float("nan")), len(values)


def class_aurocs(scores: np.ndarray, rows: Sequence[dict[str, Any]], mask: np.ndarray) -> dict[str, dict[str, float]]:
    """Per class among the `mask` rows: `{within, pooled, prompts}`; classes under MIN_SIDE samples on a side or
    MIN_PROMPTS prompts with both sides are left out."""
    classes = np.array([str(row["class"]) for row in rows])
    wanted = np.array([row["side"] == "wanted" for row in rows])
    prompt_ids = np.array([str(row["prompt_id"]) for row in rows])
    out = {}
    for name in sorted(set(classes[mask])):
        keep = mask & (classes == name)
        pos, neg = scores[keep & wanted], scores[keep & ~wanted]
        if min(len(pos), len(neg)) < MIN_SIDE:
            continue
        within, prompts = within_prompt_auroc(scores[keep], prompt_ids[keep], wanted[keep])
        if prompts >= MIN_PROMPTS:
            out[name] = {"within": within, "pooled": auc(pos, neg), "prompts": prompts}
    return out


def candidate_report(scores: np.ndarray, rows: Sequence[dict[str, Any]], half_of: np.ndarray) -> dict[str, Any]:
    """`{select: {min, pooled_mean, by_class}, report: {...}}` for one candidate's scores of the judged samples;
    `min` (the choosing number) is the smallest within-prompt AUROC over the classes that count."""
    out = {}
    for index, name in enumerate(HALVES):
        by_class = class_aurocs(scores, rows, half_of == index)
        out[name] = {"min": min(c["within"] for c in by_class.values()) if by_class else None,
                     "pooled_mean": float(np.mean([c["pooled"] for c in by_class.values()])) if by_class else None,
                     "by_class": by_class}
    return out


def counts(rows: Sequence[dict[str, Any]], half_of: np.ndarray) -> dict[str, dict[str, dict[str, int]]]:
    """Wanted / unwanted sample counts per half and class, for sweep.json."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for index, name in enumerate(HALVES):
        table: dict[str, dict[str, int]] = {}
        for row, half in zip(rows, half_of):
            if half == index:
                entry = table.setdefault(str(row["class"]), {"wanted": 0, "unwanted": 0})
                entry[str(row["side"])] += 1
        out[name] = table
    return out
