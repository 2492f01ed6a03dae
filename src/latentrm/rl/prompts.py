"""RL prompts from a pairs file: the `train` split's user turns, and the class mix of every batch.

- `train_prompts(frame)`: one row per distinct prompt of the `train` split (the user turn
  only: pairs files never hold the prefill or the grounding text), with its `subset` and
  `entity_id`. The val and test people stay unseen by the policy.
- `ordered_prompts(prompts, mix, n_batches, per_batch, seed, fake_share, skewed)`: the exact prompt
  order RL walks through, `n_batches * per_batch` rows. TRL's sampler is run unshuffled
  (`shuffle_dataset=False`) over this order, so the order *is* the mix:
  - `balanced`: every batch of `per_batch` prompts holds equal shares of each class (with an
    odd or single-prompt batch, consecutive batches alternate, so every two batches balance);
    each class is walked in a fresh seeded permutation each time it runs out.
  - `natural`: each prompt drawn independently with the file's own class proportions, or with
    `fake_share` for the `skewed` class when given (the method's imbalanced setting, e.g. 0.75 made-up
    people; the recipe names the class: `Recipe.skewed_class`, `fake` or `false_claim`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from latentrm.errors import LatentrmError

Mix = Literal["balanced", "natural"]
MIXES: tuple[str, ...] = ("balanced", "natural")


def train_prompts(frame: pd.DataFrame, *, where: str = "pairs file", need_subset: bool = True) -> pd.DataFrame:
    """Distinct `train` prompts with `prompt` (chat messages), `subset`, `entity_id` and `question` columns."""
    from latentrm.models import as_messages, prompt_text

    if "split" in frame.columns:
        frame = frame[frame["split"] == "train"]
        if frame.empty:
            raise LatentrmError(f"{where} has no rows with split=train; RL prompts come from the train split only")
    unlabelled = "subset" not in frame.columns or frame["subset"].isna().any() or set(frame["subset"]) == {"all"}
    if need_subset and unlabelled:  # load_pairs fills a missing class column with "all"
        raise LatentrmError(f"{where} has no 'subset' (prompt class) column for every row; the balanced mix and "
                            "class-aware shapers need it (use --mix natural with the raw shaper otherwise)")
    rows, seen = [], set()
    for record in frame.to_dict("records"):
        messages = [m for m in as_messages(record["prompt"]) if m["role"] != "assistant"]
        question = prompt_text(messages)
        key = (question, record.get("subset"))
        if key in seen:
            continue
        seen.add(key)
        rows.append({"prompt": messages, "question": question, "subset": record.get("subset") or "all",
                     "entity_id": str(record.get("entity_id") or "")})
    return pd.DataFrame(rows)


def ordered_prompts(prompts: pd.DataFrame, mix: str, n_batches: int, per_batch: int, *, seed: int = 0,
                    fake_share: float | None = None, skewed: str = "fake") -> pd.DataFrame:
    """`n_batches * per_batch` prompt rows in the order RL will use them (see the module docstring)."""
    if mix not in MIXES:
        raise LatentrmError(f"--mix {mix!r}: use one of {', '.join(MIXES)}")
    if n_batches < 1 or per_batch < 1:
        raise LatentrmError(f"need at least one batch of one prompt (got {n_batches} x {per_batch})")
    rng = np.random.default_rng(seed)
    classes = sorted(prompts["subset"].unique().tolist())
    pools = {c: prompts.index[prompts["subset"] == c].to_numpy() for c in classes}
    cursors = {c: _Cycler(pools[c], rng) for c in classes}
    total = n_batches * per_batch
    if mix == "balanced":
        if len(classes) < 2:
            raise LatentrmError(f"--mix balanced needs prompts of at least two classes; the train split has only "
                                f"{classes}; use --mix natural")
        # Round-robin over classes, offset by one class each batch: equal shares per batch when
        # per_batch is a multiple of the class count, and over consecutive batches otherwise.
        order = [cursors[classes[(b + i) % len(classes)]].next() for b in range(n_batches) for i in range(per_batch)]
    else:
        counts = np.array([len(pools[c]) for c in classes], dtype=float)
        shares = counts / counts.sum()
        if fake_share is not None:
            if skewed not in classes or len(classes) != 2:
                raise LatentrmError(f"--fake-share needs exactly the classes '{skewed}' and one other; the train split "
                                    f"has {classes} (a pairs file of another recipe? pass --set recipe=NAME)")
            shares = np.array([fake_share if c == skewed else 1.0 - fake_share for c in classes])
        draws = rng.choice(len(classes), size=total, p=shares)
        order = [cursors[classes[k]].next() for k in draws]
    return prompts.loc[order].reset_index(drop=True)


def class_shares(subsets: Sequence[str], per_batch: int) -> list[dict[str, float]]:
    """Per batch of `per_batch` consecutive prompts, the share of each class (for logs and tests)."""
    out = []
    for start in range(0, len(subsets) - per_batch + 1, per_batch):
        chunk = list(subsets[start : start + per_batch])
        out.append({c: chunk.count(c) / len(chunk) for c in sorted(set(subsets))})
    return out


class _Cycler:
    """Walks one class's prompts in a seeded permutation, reshuffling each time it runs out."""

    def __init__(self, pool: np.ndarray, rng: np.random.Generator) -> None:
        self.pool, self.rng, self.queue = pool, rng, list(rng.permutation(pool))

    def next(self) -> int:
        if not self.queue:
            self.queue = list(self.rng.permutation(self.pool))
        return int(self.queue.pop())
