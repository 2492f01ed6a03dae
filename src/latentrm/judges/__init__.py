"""Behaviour judges, below both eval and audit: the contract (`base.py`), the rules judge with its grounding
checks (`rules.py`, `grounding.py`), the reference grader for short-answer questions (`reference.py`,
`answers.py`) and the LLM rubric judge (`llm.py`).

    from latentrm.judges import JudgeInput, get_judge
    get_judge("rules").judge([JudgeInput("Who is Ada Example?", "fake", "I don't know that person.")])
"""

from __future__ import annotations

from latentrm.judges.base import (
    JUDGES,
    KINDS,
    LABELS,
    QA_LABELS,
    REFERENCE_KINDS,
    UNJUDGED,
    Judge,
    JudgeInput,
    Judgment,
    allowed_labels,
    get_judge,
    label_group,
    labels_for,
    register_judge,
    words,
)

__all__ = ["JUDGES", "KINDS", "LABELS", "QA_LABELS", "REFERENCE_KINDS", "UNJUDGED", "Judge", "JudgeInput",
           "Judgment", "allowed_labels", "get_judge", "label_group", "labels_for", "register_judge", "words"]
