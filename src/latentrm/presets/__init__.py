"""The presets that ship inside the package: `run/` (`latentrm run --preset`), `rl/` (`latentrm rl train
--preset`) and `accelerate/` (launch configs). Read through `importlib.resources`, so a wheel install finds
them as a source checkout does."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def preset_dir(kind: str) -> Path:
    """The folder of one kind of preset (`run`, `rl`, `accelerate`) inside the installed package."""
    return Path(str(files("latentrm.presets").joinpath(kind)))
