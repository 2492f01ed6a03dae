"""The RL algorithms a run can use, each TRL's own trainer: the one place a new one plugs in.

    ALGORITHMS.get("rloo")      # -> Algorithm(config_class="RLOOConfig", trainer_class="RLOOTrainer", ...)

Both take the same reward callable, dataset and callbacks (rl/session.py), so shapers, the class mix, live
metrics, checkpoints and resume work for either. What differs is how the group's rewards become advantages:

- `grpo` (default): `(r - mean) / std` within each prompt's group (TRL `scale_rewards`: group | batch | none),
  with TRL's loss type (`dapo` in TRL 1.x);
- `rloo`: REINFORCE leave-one-out, `r_i - mean(r_j, j != i)` within the group (`normalize_advantages` follows
  `scale_rewards != "none"`); it ignores `loss_type`.

Adding one: a TRL trainer that takes `reward_funcs=[callable]` and a `num_generations` group, registered here
with the config fields it does not share with GRPO left out (`drop`) and any it needs (`extra`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from latentrm.registry import Registry


@dataclass(frozen=True)
class Algorithm:
    name: str
    config_class: str  # in `trl`
    trainer_class: str  # in `trl`
    drop: tuple[str, ...] = ()  # GRPOConfig arguments this trainer's config does not take
    extra: Callable[[Any], dict[str, Any]] = field(default=lambda config: {})  # from our RLConfig

    def classes(self) -> tuple[Any, Any]:
        import trl

        return getattr(trl, self.config_class), getattr(trl, self.trainer_class)


ALGORITHMS: Registry[Algorithm] = Registry("RL algorithm", hint="--set algorithm")
ALGORITHMS.add("grpo", Algorithm("grpo", "GRPOConfig", "GRPOTrainer"))
ALGORITHMS.add("rloo", Algorithm("rloo", "RLOOConfig", "RLOOTrainer", drop=("scale_rewards", "loss_type"),
                                 extra=lambda config: {"normalize_advantages": config.scale_rewards != "none"}))
