"""`ShapedReward`: the one reward composition, latent reward model + shaper, for RL, serving and scoring.

    rm = LatentRewardModel.load("runs/ka/rm")
    reward = ShapedReward(rm, get_shaper("calibrated", rm.meta))
    GRPOTrainer(..., reward_funcs=[reward])      # TRL 1.x: reward(prompts, completions, completion_ids, **columns)

What it does
- Scores each (prompt, completion) with the reward model (the ensemble mean and spread when
  the model is an ensemble), then applies the shaper with the prompt's class read from the
  dataset column `subset` (TRL hands every dataset column to reward functions as a keyword
  argument, one value per completion). Group-based shapers (`quantile_match`) get group ids
  from identical prompts: TRL's sampler puts the G completions of one prompt next to each
  other, and two groups of the same prompt in one batch are simply pooled.
- It is a plain callable, not an `nn.Module`: TRL treats any module passed as a reward
  function as a sequence classifier and would call it with token ids.
- When TRL passes `log_metric`, it logs per call: the raw score's mean, the shaped reward's
  mean, and the share of completions that carry the artifacts the audit found the head pays
  for (neutral padding, a sign-off such as "I hope this helps!", repeated sentences) plus the
  hedge share, each by class. These reuse the audit's text features (`audit/text.py`).

A completion cut at `max_completion_length` has no end-of-turn token of its own. It is scored
like any other: `render_for_scoring` closes the assistant turn, so the head reads the state
after an end-of-turn token that the policy never produced. That keeps the reward defined for
every completion; whether such completions also enter the loss is TRL's
`mask_truncated_completions` (see docs/rl.md, where both settings are measured).

Shared-backbone scoring (`--lora`): `scoring_context` is entered around every scoring call. The
RL trainer sets it to "the policy's adapters disabled, eval mode", so the reward reads the
frozen base weights and never the adapters the policy is training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from latentrm.errors import LatentrmError
from latentrm.rm.shaping import Shaper, shape_scores

SUBSET_COLUMN = "subset"


def has_std(rm: Any) -> bool:
    """Ensemble reward models give a per-head spread (`score_with_std`)."""
    head = getattr(rm, "meta", {}).get("head", {})
    return head.get("type") == "ensemble" and callable(getattr(rm, "score_with_std", None))


def artifact_flags(completions: Sequence[str]) -> dict[str, np.ndarray]:
    """Per completion, booleans `[n]` for the artifacts the audit found a head may pay for."""
    from latentrm.audit.text import FILLER, HOPE, hedge_count, repetition_rate

    lowered = [c.lower() for c in completions]
    filler = FILLER.split(". ")[0].lower()
    return {
        "padding": np.array([filler in c for c in lowered], dtype=bool),
        "sign_off": np.array([HOPE.lower().rstrip("!") in c or "hope this helps" in c for c in lowered], dtype=bool),
        "repetition": np.array([repetition_rate(c) > 0.2 for c in completions], dtype=bool),
        "hedge": np.array([hedge_count(c) > 0 for c in completions], dtype=bool),
    }


class ShapedReward:
    """A TRL reward function: `reward(prompts, completions, **columns) -> list[float]`."""

    def __init__(self, rm: Any, shaper: Shaper, *, subset_column: str = SUBSET_COLUMN,
                 batch_size: int | None = None,
                 scoring_context: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
                 judging: Any = None, kinds: dict[str, str] | None = None) -> None:
        if shaper.needs_std and not has_std(rm):
            raise LatentrmError(f"reward shaper '{shaper.name}' needs an ensemble reward model "
                                "(`latentrm rm train --ensemble K`); this one gives one score per item")
        self.rm = rm
        self.shaper = shaper
        self.subset_column = subset_column
        self.batch_size = batch_size
        self.scoring_context = scoring_context or contextlib.nullcontext
        self.__name__ = f"latent_{shaper.name}"  # TRL logs reward functions by __name__
        self.last: dict[str, Any] = {}
        self._judge: Any = None
        self.judging = judging  # a recipe's Judging: which live rates to log (knowledge_awareness's when None)
        self.kinds = kinds or {}  # a recipe's class -> the prompt kind its judge labels (a class names itself)

    def raw_scores(self, prompts: Sequence[Any], completions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw scores `[n]` and the ensemble spread `[n]` (None for a single head)."""
        with self.scoring_context():
            if has_std(self.rm):
                mean, std = self.rm.score_with_std(prompts, completions, batch_size=self.batch_size)
                return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
            return np.asarray(self.rm.score(prompts, completions, batch_size=self.batch_size), np.float64), None

    def shape(self, raw: np.ndarray, subsets: Sequence[str | None] | None, std: np.ndarray | None = None,
              prompts: Sequence[Any] | None = None) -> np.ndarray:
        return shape_scores(self.shaper, raw, subsets, std, prompts)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                 **columns: Any) -> list[float]:
        subsets = columns.get(self.subset_column)
        if subsets is not None and len(subsets) != len(completions):
            raise LatentrmError(f"column '{self.subset_column}' has {len(subsets)} values for "
                                f"{len(completions)} completions")
        raw, std = self.raw_scores(prompts, completions)
        rewards = self.shape(raw, subsets, std, prompts)
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for name, value in self.metrics(prompts, completions, subsets, raw, rewards).items():
                log_metric(name, value)
        self.last = {"raw": raw, "rewards": rewards, "subsets": subsets}
        return rewards.tolist()

    def metrics(self, prompts: Sequence[Any], completions: Sequence[Any], subsets: Sequence[str | None] | None,
                raw: np.ndarray, rewards: np.ndarray) -> dict[str, float]:
        """One scored batch: raw and shaped means, artifact and hedge shares, the rules judge's rates."""
        from latentrm.models import completion_text, prompt_text

        texts = [completion_text(c) for c in completions]
        flags = artifact_flags(texts)
        names = np.asarray(["all"] * len(texts) if subsets is None else [str(s) for s in subsets], dtype=object)
        out: dict[str, float] = {"latent/raw_mean": float(raw.mean()), "latent/shaped_mean": float(rewards.mean())}
        for name, flag in flags.items():
            out[f"artifacts/{name}"] = float(flag.mean())
        for subset in sorted(set(names.tolist())):
            rows = names == subset
            out[f"latent/raw_mean_{subset}"] = float(raw[rows].mean())
            out[f"artifacts/hedge_{subset}"] = float(flags["hedge"][rows].mean())
        out.update(self.judge_rates([prompt_text(p) for p in prompts], texts, names))
        return out

    def judge_rates(self, questions: Sequence[str], texts: Sequence[str], subsets: np.ndarray) -> dict[str, float]:
        """The rules judge's labels on the training completions: the recipe's headline rates, live, for free."""
        from latentrm.data.recipes import default_judging
        from latentrm.judges import JudgeInput, get_judge

        judging = self.judging or default_judging()
        rated = judging.headline_groups()
        kinds = np.asarray([self.kinds.get(str(s), str(s)) for s in subsets.tolist()], dtype=object)
        judged = {group for _, group in rated}
        rows = [i for i, k in enumerate(kinds.tolist()) if k in judged]
        if not rows or len(questions) != len(texts):
            return {}
        if self._judge is None:
            self._judge = get_judge("rules")
        labels = [j.label for j in self._judge.judge(
            [JudgeInput(questions[i], str(kinds[i]), texts[i]) for i in rows])]
        out = {}
        for label, kind in rated:
            of_kind = [lab for i, lab in zip(rows, labels) if kinds[i] == kind]
            if of_kind:
                out[f"train_judge/{label}"] = sum(lab == label for lab in of_kind) / len(of_kind)
        return out
