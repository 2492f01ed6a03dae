"""RL stage: reward shaping (`latentrm.rm.shaping`), and the GRPO / DPO training built on it."""

from __future__ import annotations

from latentrm.rm.shaping import SHAPERS, Shaper, available_shapers, get_shaper, register_shaper

__all__ = ["SHAPERS", "Shaper", "available_shapers", "get_shaper", "register_shaper"]
