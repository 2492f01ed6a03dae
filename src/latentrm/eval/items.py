"""`EvalItem`: one eval question, the unit every eval set (`sets.py`, `heldout.py`) produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class EvalItem:
    """One eval question. `reference` is grounding text for the judge; the policy never sees it."""

    item_id: str
    kind: str
    question: str
    reference: str | None = None
    entity: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
