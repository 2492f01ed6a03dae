"""Ensembles of reward heads: K heads on the same layer, scored as their mean, with their spread.

    latentrm rm train --pairs examples/pairs.jsonl --ensemble 5 --ensemble-mode bootstrap

- `seed` mode trains K heads that differ only in their seed (init and batch order);
- `bootstrap` mode trains each head on a resample (with replacement) of the training
  pairs, so the spread also reflects which pairs the head happened to see;
- `layers` mode trains one head per layer (member i reads `layers[i % L]`, so K = 2L
  gives two seeds per layer): the spread then says how much the reward depends on
  where in the network it is read.

`EnsembleHead` is a `RewardHead` registered as head type `ensemble` (see
`heads.HEADS`), so `head_from_config` and `LatentRewardModel.load` need nothing new:
its config lists the members' configs. `forward` returns the mean `[n]`,
`forward_all` the per-head scores `[K, n]`. `LatentRewardModel.score_with_std` gives
`(mean, std)` for the RL stage's `ensemble` shaper (`score - k * std`), and the audit
lists where the heads disagree most.

A layer ensemble's input is the pooled states of its `layers` concatenated in that
order, `[n, L * hidden]` (`stack_layers`); `feature_layers(head, layer)` tells a scorer
which layers to extract (`[layer]` for every other head), so a `LatentRewardModel`
holding a layer ensemble extracts all of them in one truncated forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from latentrm.errors import LatentrmError
from latentrm.rm.heads import RewardHead, head_from_config
from latentrm.rm.train import TrainConfig, TrainResult, train_head

EnsembleMode = Literal["seed", "bootstrap", "layers"]
ENSEMBLE_MODES: tuple[str, ...] = ("seed", "bootstrap", "layers")


class EnsembleHead(RewardHead):
    """K member heads; each standardises its own input, so this wrapper's standardiser stays off.

    `layers` (layers mode only): the layers whose states are concatenated in the input,
    `[n, len(layers) * hidden]`; `member_layers[i]` is the layer member i reads.
    """

    head_type = "ensemble"

    def __init__(self, hidden_size: int, normalize: bool = True, mode: str = "seed",
                 members: Sequence[dict[str, Any] | RewardHead] | None = None,
                 layers: Sequence[int] | None = None, member_layers: Sequence[int] | None = None) -> None:
        super().__init__(hidden_size, normalize=False)
        if not members:
            raise LatentrmError("an ensemble head needs member heads; train one with `latentrm rm train --ensemble K`")
        if mode not in ENSEMBLE_MODES:
            raise LatentrmError(f"ensemble mode '{mode}' is not one of {', '.join(ENSEMBLE_MODES)}")
        built = [m if isinstance(m, RewardHead) else head_from_config(dict(m)) for m in members]
        for index, member in enumerate(built):
            if member.hidden_size != hidden_size:
                raise LatentrmError(f"ensemble member {index} has hidden size {member.hidden_size}, "
                                    f"expected {hidden_size}; all heads must read states of one width")
            if isinstance(member, EnsembleHead):
                raise LatentrmError("ensemble members cannot themselves be ensembles")
        self.layers: list[int] | None = None
        self.member_layers: list[int] | None = None
        if mode == "layers":
            if not layers or member_layers is None or len(member_layers) != len(built):
                raise LatentrmError("a layers-mode ensemble needs its layers and one layer per member")
            missing = sorted(set(member_layers) - set(layers))
            if missing:
                raise LatentrmError(f"ensemble members read layer(s) {missing} that are not among {list(layers)}")
            self.layers, self.member_layers = [int(x) for x in layers], [int(x) for x in member_layers]
        self.normalize = normalize
        self.mode = mode
        self.members = nn.ModuleList(built)

    def _heads(self) -> list[RewardHead]:
        """The members, typed: `nn.ModuleList` iterates as plain `nn.Module`."""
        return [cast(RewardHead, m) for m in self.members]

    def config(self) -> dict[str, Any]:
        out = {"type": self.head_type, "hidden_size": self.hidden_size, "normalize": self.normalize,
               "mode": self.mode, "members": [m.config() for m in self._heads()]}
        if self.layers is not None:
            out.update(layers=self.layers, member_layers=self.member_layers)
        return out

    def _member_inputs(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each member's input `[n, hidden]` from the ensemble's input `[n, hidden]` or `[n, L * hidden]`."""
        if self.layers is None:
            return [features] * len(self.members)
        width = len(self.layers) * self.hidden_size
        if features.shape[-1] != width:
            raise LatentrmError(f"a layer ensemble over layers {self.layers} needs {width} features per row "
                                f"(the states of those layers, concatenated), got {features.shape[-1]}")
        chunks = features.split(self.hidden_size, dim=-1)  # L x [n, hidden]
        assert self.member_layers is not None
        return [chunks[self.layers.index(layer)] for layer in self.member_layers]

    def forward_all(self, features: torch.Tensor) -> torch.Tensor:  # [n, hidden] or [n, L*hidden] -> [K, n]
        return torch.stack([member(x) for member, x in zip(self.members, self._member_inputs(features))])

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # -> [n]
        return self.forward_all(features).mean(0)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward(features)

    def direction(self) -> torch.Tensor:
        """Mean of the members' raw-feature-space directions `[hidden]`.

        Members standardise with their own statistics, so each direction is mapped
        back (divided by its member's std) before averaging; this wrapper's own
        standardiser is the identity, so the result is also its "standardised" direction.
        In layers mode the members' directions live in different layers' residual
        streams; their mean is what a linear lens of the whole ensemble reads (the
        lens is linear, so it equals the mean of the per-layer lenses).
        """
        return torch.stack([m.direction() / m.standardize.std for m in self._heads()]).mean(0)


def feature_layers(head: RewardHead, layer: int) -> list[int]:
    """The layers whose pooled states `head` reads, in input order: a layer ensemble's, else `[layer]`."""
    return list(getattr(head, "layers", None) or [int(layer)])


def stack_layers(features: Mapping[int, np.ndarray], layers: Sequence[int]) -> np.ndarray:
    """Per-layer features `{layer: [n, hidden]}` -> `[n, len(layers) * hidden]`, in `layers` order."""
    from latentrm.features import stack_readout

    return stack_readout(features, layers)  # one part per layer


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
    layers: Sequence[int] | None = None,
) -> TrainResult:
    """Train `k` heads (seeds `config.seed + i`) into one `EnsembleHead`.

    `bootstrap`: each head sees a resample of the pairs. `layers`: the features are
    `[n, L * hidden]` (`stack_layers(.., layers)`) and member i trains on layer
    `layers[i % L]`'s slice. Without a validation set, every member holds out its own
    10% (as `train_head` does).
    """
    if k < 2:
        raise LatentrmError(f"--ensemble {k}: an ensemble needs at least 2 heads")
    if mode not in ENSEMBLE_MODES:
        raise LatentrmError(f"--ensemble-mode '{mode}' is not one of {', '.join(ENSEMBLE_MODES)}")
    if len(train_chosen) != len(train_rejected):
        raise LatentrmError(f"chosen ({len(train_chosen)}) and rejected ({len(train_rejected)}) pair counts differ")
    width = train_chosen.shape[1]
    layer_list = [int(x) for x in layers or ()]
    if mode == "layers":
        if len(set(layer_list)) < 2 or len(set(layer_list)) != len(layer_list):
            raise LatentrmError(f"--ensemble-mode layers needs at least 2 distinct layers, got {layer_list}")
        if width % len(layer_list):
            raise LatentrmError(f"{width} features per row cannot be {len(layer_list)} layers' states concatenated")
    elif layer_list:
        raise LatentrmError(f"layers {layer_list} were given for a '{mode}' ensemble; use --ensemble-mode layers")
    hidden = width // len(layer_list) if layer_list else width

    def columns(array: np.ndarray | None, index: int) -> np.ndarray | None:
        if array is None or not layer_list:
            return array
        slot = index % len(layer_list)  # member `index` reads layer_list[slot]
        return array[:, slot * hidden : (slot + 1) * hidden]

    members, history, best_epochs, epochs_run = [], [], [], 0
    for index in range(k):
        member_config = replace(config, seed=config.seed + index)
        chosen, rejected = columns(train_chosen, index), columns(train_rejected, index)
        assert chosen is not None and rejected is not None
        if mode == "bootstrap":
            rows = np.random.default_rng(config.seed * 10_007 + index).integers(0, len(train_chosen),
                                                                                 len(train_chosen))
            chosen, rejected = chosen[rows], rejected[rows]
        result = train_head(chosen, rejected, columns(val_chosen, index), columns(val_rejected, index), member_config)
        members.append(result.head)
        history += [{**row, "member": index} for row in result.history]
        best_epochs.append(result.best_epoch)
        epochs_run += result.epochs_run
    member_layers = [layer_list[i % len(layer_list)] for i in range(k)] if layer_list else None
    head = EnsembleHead(hidden, normalize=config.normalize, mode=mode, members=members,
                        layers=layer_list or None, member_layers=member_layers).eval()
    return TrainResult(head=head, best_epoch=int(np.median(best_epochs)), epochs_run=epochs_run, history=history)
