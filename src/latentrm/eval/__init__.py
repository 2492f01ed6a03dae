"""Behaviour evaluation: eval sets, judges (rules + grounding, LLM), rates with Wilson intervals.

- the judges (rules + grounding, LLM) live one level down, in `latentrm.judges`, so audit uses them too;
- `sets.py` / `heldout.py` / `false_premise.py`: eval sets;
- `metrics.py`: Wilson intervals, label rates, diversity;
- `runner.py`: the stage (`run(EvalConfig) -> Path`), resumable;
- `check.py`: judge agreement on the hand-labelled set;
- `cli.py`: `latentrm eval`.
"""

from __future__ import annotations

from latentrm.eval.metrics import compute_metrics, wilson_interval
from latentrm.judges import JUDGES, Judge, JudgeInput, Judgment, get_judge, register_judge

__all__ = ["JUDGES", "Judge", "JudgeInput", "Judgment", "compute_metrics", "get_judge", "register_judge",
           "wilson_interval"]
