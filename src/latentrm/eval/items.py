"""`EvalItem`: one eval question, the unit every eval set (`sets.py`, `heldout.py`) produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class EvalItem:
    """One eval question. `reference` is grounding text for the judge, `references` the acceptable short
    answers of a `qa` question (`answerable=False`: it has none); the policy never sees them."""

    item_id: str
    kind: str
    question: str
    reference: str | None = None
    entity: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    answerable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
