"""Choose a read-out by what RL will see: on-policy AUROC on a start policy's judged samples.

    latentrm rm onpolicy --rm runs/quick/rm --policy embedded --name onpolicy     # writes judged.jsonl
    latentrm rm sweep --pairs P --layers 9,15,21 --pooling last,mean --head mlp,linear \
        --select onpolicy --onpolicy runs/quick/onpolicy/judged.jsonl

Pair accuracy measures steered completions; RL samples the start policy's own. `judged.jsonl` (written by
`rm onpolicy`) holds those samples with the judge's label and its side for the prompt's class (wanted:
a hedge or refusal about a made-up person, a right answer about a real one; unwanted: a confabulation, a
wrong answer or a false denial). Each sweep candidate, trained on the pairs as always, scores every
sample; its on-policy score is the mean over classes of the AUROC of the reward for wanted against
unwanted samples.

The prompts are split in two halves by a stable hash of their id: the candidates are ranked on the
`select` half and the chosen one is reported on the `report` half too, so the number beside the choice is
not the one it was chosen on. A class counts on a half only when it has at least `MIN_SIDE` samples on
each side there; a half with no such class leaves the choice to the pair metric (and says so).
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


def class_aurocs(scores: np.ndarray, rows: Sequence[dict[str, Any]], mask: np.ndarray) -> dict[str, float]:
    """AUROC of wanted over unwanted per class among the `mask` rows; classes thinner than MIN_SIDE are left out."""
    classes = np.array([str(row["class"]) for row in rows])
    wanted = np.array([row["side"] == "wanted" for row in rows])
    out = {}
    for name in sorted(set(classes[mask])):
        keep = mask & (classes == name)
        pos, neg = scores[keep & wanted], scores[keep & ~wanted]
        if min(len(pos), len(neg)) >= MIN_SIDE:
            out[name] = auc(pos, neg)
    return out


def candidate_report(scores: np.ndarray, rows: Sequence[dict[str, Any]], half_of: np.ndarray) -> dict[str, Any]:
    """`{select: {mean, by_class}, report: {...}}` for one candidate's scores of the judged samples."""
    out = {}
    for index, name in enumerate(HALVES):
        by_class = class_aurocs(scores, rows, half_of == index)
        out[name] = {"mean": float(np.mean(list(by_class.values()))) if by_class else None, "by_class": by_class}
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
