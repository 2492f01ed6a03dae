"""latentrm: Bradley-Terry reward models as small heads on a frozen LLM's hidden states.

Heavy modules (torch, transformers) are imported lazily, so `import latentrm`
and `latentrm --help` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from latentrm._version import __version__
from latentrm.errors import LatentrmError

__all__ = ["LatentrmError", "LatentRewardModel", "load_backbone", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from latentrm.models import load_backbone
    from latentrm.rm.model import LatentRewardModel


def __getattr__(name: str) -> Any:
    if name == "LatentRewardModel":
        from latentrm.rm.model import LatentRewardModel

        return LatentRewardModel
    if name == "load_backbone":
        from latentrm.models import load_backbone

        return load_backbone
    raise AttributeError(name)
