"""Behaviour evaluation: eval sets, judges (rules + grounding, LLM), rates with Wilson intervals.

- `judges.py`: the judge registry (`rules`, `llm`) and the rules judge;
- `llm_judge.py`: rubric judge on a local chat model or an OpenAI-compatible endpoint;
- `grounding.py`: fact checks of a response against a grounding text;
- `sets.py` / `heldout.py` / `false_premise.py`: eval sets;
- `metrics.py`: Wilson intervals, label rates, diversity;
- `runner.py`: the stage (`run(EvalConfig) -> Path`), resumable;
- `check.py`: judge agreement on the hand-labelled set;
- `cli.py`: `latentrm eval`.
"""

from __future__ import annotations

from latentrm.eval.judges import JUDGES, Judge, JudgeInput, Judgment, get_judge, register_judge
from latentrm.eval.metrics import compute_metrics, wilson_interval

__all__ = ["JUDGES", "Judge", "JudgeInput", "Judgment", "compute_metrics", "get_judge", "register_judge",
           "wilson_interval"]
