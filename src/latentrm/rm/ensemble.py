"""Ensembles of reward heads: K heads on the same layer, scored as their mean, with their spread.

    latentrm rm train --pairs examples/pairs.jsonl --ensemble 5 --ensemble-mode bootstrap

- `seed` mode trains K heads that differ only in their seed (init and batch order);
- `bootstrap` mode trains each head on a resample (with replacement) of the training
  pairs, so the spread also reflects which pairs the head happened to see.

`EnsembleHead` is a `RewardHead` registered as head type `ensemble` (see
`heads.HEADS`), so `head_from_config` and `LatentRewardModel.load` need nothing new:
its config lists the members' configs. `forward` returns the mean `[n]`,
`forward_all` the per-head scores `[K, n]`. `LatentRewardModel.score_with_std` gives
`(mean, std)` for the RL stage's `ensemble` shaper (`score - k * std`), and the audit
lists where the heads disagree most.

Layer ensembles (heads on different layers) are not offered: a `LatentRewardModel`
reads one layer, and mixing layers would change its feature contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from latentrm.errors import LatentrmError
from latentrm.rm.heads import RewardHead, head_from_config
from latentrm.rm.train import TrainConfig, TrainResult, train_head

EnsembleMode = Literal["seed", "bootstrap"]
ENSEMBLE_MODES: tuple[str, ...] = ("seed", "bootstrap")


class EnsembleHead(RewardHead):
    """K member heads; each standardises its own input, so this wrapper's standardiser stays off."""

    head_type = "ensemble"

    def __init__(self, hidden_size: int, normalize: bool = True, mode: str = "seed",
                 members: Sequence[dict[str, Any] | RewardHead] | None = None) -> None:
        super().__init__(hidden_size, normalize=False)
        if not members:
            raise LatentrmError("an ensemble head needs member heads; train one with `latentrm rm train --ensemble K`")
        if mode not in ENSEMBLE_MODES:
            raise LatentrmError(f"ensemble mode '{mode}' is not one of {', '.join(ENSEMBLE_MODES)}")
        built = [m if isinstance(m, RewardHead) else head_from_config(dict(m)) for m in members]
        for index, member in enumerate(built):
            if member.hidden_size != hidden_size:
                raise LatentrmError(f"ensemble member {index} has hidden size {member.hidden_size}, "
                                    f"expected {hidden_size}; all heads must read the same layer")
            if isinstance(member, EnsembleHead):
                raise LatentrmError("ensemble members cannot themselves be ensembles")
        self.normalize = normalize
        self.mode = mode
        self.members = nn.ModuleList(built)

    def config(self) -> dict[str, Any]:
        return {"type": self.head_type, "hidden_size": self.hidden_size, "normalize": self.normalize,
                "mode": self.mode, "members": [m.config() for m in self.members]}

    def forward_all(self, features: torch.Tensor) -> torch.Tensor:  # [n, hidden] -> [K, n]
        return torch.stack([member(features) for member in self.members])

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [n, hidden] -> [n]
        return self.forward_all(features).mean(0)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward(features)

    def direction(self) -> torch.Tensor:
        """Mean of the members' raw-feature-space directions `[hidden]`.

        Members standardise with their own statistics, so each direction is mapped
        back (divided by its member's std) before averaging; this wrapper's own
        standardiser is the identity, so the result is also its "standardised" direction.
        """
        return torch.stack([m.direction() / m.standardize.std for m in self.members]).mean(0)


def member_scores(head: RewardHead, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Per-head scores `[K, n]` for features `[n, hidden]`; a single head gives `[1, n]`."""
    head.eval()
    forward_all = getattr(head, "forward_all", None)
    out = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            chunk = torch.as_tensor(features[start : start + batch_size], dtype=torch.float32)  # [b, hidden]
            out.append((forward_all(chunk) if forward_all else head(chunk)[None]).numpy())  # [K, b]
    if not out:
        return np.zeros((len(head.members) if isinstance(head, EnsembleHead) else 1, 0), dtype=np.float32)
    return np.concatenate(out, axis=1)


def mean_std(per_head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1) across heads of `[K, n]` scores; std is 0 for K = 1."""
    if per_head.shape[0] < 2:
        return per_head.mean(0), np.zeros(per_head.shape[1], dtype=per_head.dtype)
    return per_head.mean(0), per_head.std(0, ddof=1)


def train_ensemble(
    train_chosen: np.ndarray,
    train_rejected: np.ndarray,
    val_chosen: np.ndarray | None,
    val_rejected: np.ndarray | None,
    config: TrainConfig,
    k: int,
    mode: str = "seed",
) -> TrainResult:
    """Train `k` heads (seeds `config.seed + i`; resampled pairs in `bootstrap` mode) into one `EnsembleHead`.

    Without a validation set, every member holds out its own 10% (as `train_head` does).
    """
    if k < 2:
        raise LatentrmError(f"--ensemble {k}: an ensemble needs at least 2 heads")
    if mode not in ENSEMBLE_MODES:
        raise LatentrmError(f"--ensemble-mode '{mode}' is not one of {', '.join(ENSEMBLE_MODES)}")
    if len(train_chosen) != len(train_rejected):
        raise LatentrmError(f"chosen ({len(train_chosen)}) and rejected ({len(train_rejected)}) pair counts differ")
    members, history, best_epochs, epochs_run = [], [], [], 0
    for index in range(k):
        member_config = replace(config, seed=config.seed + index)
        chosen, rejected = train_chosen, train_rejected
        if mode == "bootstrap":
            rows = np.random.default_rng(config.seed * 10_007 + index).integers(0, len(train_chosen),
                                                                                 len(train_chosen))
            chosen, rejected = train_chosen[rows], train_rejected[rows]
        result = train_head(chosen, rejected, val_chosen, val_rejected, member_config)
        members.append(result.head)
        history += [{**row, "member": index} for row in result.history]
        best_epochs.append(result.best_epoch)
        epochs_run += result.epochs_run
    head = EnsembleHead(train_chosen.shape[1], normalize=config.normalize, mode=mode, members=members).eval()
    return TrainResult(head=head, best_epoch=int(np.median(best_epochs)), epochs_run=epochs_run, history=history)
