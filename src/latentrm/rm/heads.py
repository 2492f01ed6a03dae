"""Reward heads: small modules mapping one hidden state `[n, hidden]` to a scalar `[n]`.

- `linear`: d -> 1.
- `projection_sum` (the seed method): a trainable W in R^{d x d}; reward =
  `scale * sum(W x)`. It is the same function class as `linear` (sum(Wx) = (1^T W) x),
  but its over-parameterisation and small scale make optimisation on frozen
  4096-d backbones reliable where a direct d -> 1 head reportedly is not.
- `mlp`: d -> hidden -> 1 with GELU and dropout.
- `bilinear`: for a two-part read-out `[h_prompt, h_completion]` (pooling `prompt+X`):
  `r = <G h_prompt, F h_completion> / sqrt(rank) + u . h_completion + b`. The product term can express
  "a hedge is good exactly when the name is unknown" (the sign of the completion direction that pays flips
  with the prompt state), which a linear read-out of either state alone cannot.

Every head standardises its input with a per-dimension mean and std fitted on
the training features (buffers saved with the head). LLM residual streams carry
a few dimensions hundreds of times larger than the rest; without this the BT
optimisation is dominated by them. This is a departure from the seed method,
which feeds raw states; pass `normalize=False` to match it exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from latentrm.errors import LatentrmError
from latentrm.registry import Registry

HeadType = Literal["linear", "projection_sum", "mlp", "bilinear"]


class _Standardize(nn.Module):
    mean: torch.Tensor  # [hidden], a buffer
    std: torch.Tensor  # [hidden], a buffer

    def __init__(self, hidden_size: int, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(hidden_size))
        self.register_buffer("std", torch.ones(hidden_size))

    def fit(self, features: torch.Tensor) -> None:  # [n, hidden]
        if self.enabled:
            self.mean.copy_(features.mean(0))
            self.std.copy_(features.std(0).clamp(min=1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std if self.enabled else features


class RewardHead(nn.Module):
    """Base class: standardise, then a type-specific scorer. `forward([n, hidden]) -> [n]`."""

    head_type: str = ""

    def __init__(self, hidden_size: int, normalize: bool = True) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.normalize = normalize
        self.standardize = _Standardize(hidden_size, normalize)

    def config(self) -> dict[str, Any]:
        return {"type": self.head_type, "hidden_size": self.hidden_size, "normalize": self.normalize}

    def score(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(self.standardize(features))

    def direction(self) -> torch.Tensor:
        """The reward direction in (standardised) feature space, for linear-family heads: [hidden]."""
        raise LatentrmError(f"head type '{self.head_type}' has no single reward direction")


class LinearHead(RewardHead):
    head_type = "linear"

    def __init__(self, hidden_size: int, normalize: bool = True) -> None:
        super().__init__(hidden_size, normalize)
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features).squeeze(-1)

    def direction(self) -> torch.Tensor:
        return self.linear.weight.detach()[0]


class ProjectionSumHead(RewardHead):
    head_type = "projection_sum"

    def __init__(self, hidden_size: int, normalize: bool = True, scale: float = 0.01) -> None:
        super().__init__(hidden_size, normalize)
        self.scale = scale
        self.projection = nn.Linear(hidden_size, hidden_size, bias=False)  # W: [hidden, hidden]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "scale": self.scale}

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * self.projection(features).sum(-1)

    def direction(self) -> torch.Tensor:
        return self.scale * self.projection.weight.detach().sum(0)


class MLPHead(RewardHead):
    head_type = "mlp"

    def __init__(self, hidden_size: int, normalize: bool = True, mlp_hidden: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__(hidden_size, normalize)
        self.mlp_hidden = mlp_hidden
        self.dropout = dropout
        self.net = nn.Sequential(nn.Linear(hidden_size, mlp_hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_hidden, 1))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "mlp_hidden": self.mlp_hidden, "dropout": self.dropout}

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


class BilinearHead(RewardHead):
    head_type = "bilinear"

    def __init__(self, hidden_size: int, normalize: bool = True, rank: int = 32) -> None:
        super().__init__(hidden_size, normalize)
        if hidden_size % 2:
            raise LatentrmError(f"a bilinear head reads [h_prompt, h_completion] halves; input size {hidden_size} "
                                "is odd: use a pooling such as prompt+mean")
        half = hidden_size // 2
        self.rank = rank
        self.prompt_map = nn.Linear(half, rank, bias=False)  # G: [rank, half]
        self.completion_map = nn.Linear(half, rank, bias=False)  # F: [rank, half]
        self.linear = nn.Linear(half, 1)  # u, b: the completion's class-independent part
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rank": self.rank}

    def score(self, features: torch.Tensor) -> torch.Tensor:
        prompt, completion = features.chunk(2, dim=-1)  # [n, half] each
        product = (self.prompt_map(prompt) * self.completion_map(completion)).sum(-1) / self.rank ** 0.5
        return product + self.linear(completion).squeeze(-1)


HEADS: Registry[Callable[..., RewardHead]] = Registry("head", hint="--head")
HEADS.add("linear", LinearHead)
HEADS.add("projection_sum", ProjectionSumHead)
HEADS.add("mlp", MLPHead)
HEADS.add("bilinear", BilinearHead)
HEADS.lazy("ensemble", "latentrm.rm.ensemble:EnsembleHead")  # K member heads (`rm train --ensemble K`)


def make_head(head_type: str, hidden_size: int, **kwargs: Any) -> RewardHead:
    """Build a head by name; unknown keyword arguments for that head are an error."""
    if head_type not in HEADS:
        raise LatentrmError(f"head '{head_type}' is not one of {', '.join(HEADS.names())}")
    factory = HEADS.get(head_type)
    try:
        return factory(hidden_size, **kwargs)
    except TypeError as exc:
        raise LatentrmError(f"head '{head_type}' does not take these options: {exc}") from exc


def head_from_config(config: dict[str, Any]) -> RewardHead:
    options = {k: v for k, v in config.items() if k not in ("type", "hidden_size")}
    return make_head(str(config["type"]), int(config["hidden_size"]), **options)
