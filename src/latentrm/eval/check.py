"""Judge agreement: how often each judge matches hand labels (`latentrm eval judge-check`).

The labelled set is JSONL with `question`, `kind`, `response`, `label` (gold) and
optional `reference`, `entity`, `source`. The committed one is
tests/data/judge_labelled.jsonl: responses from the embedded model plus
hand-written variants, each labelled by reading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.eval.metrics import confusion_matrix, label_group
from latentrm.judges import KINDS, JudgeInput, get_judge, labels_for


def load_labelled(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a hand-labelled judge set."""
    from latentrm.io import read_jsonl_objects

    rows = []
    for number, row in read_jsonl_objects(path, what="labelled set", needs="question, kind, response, label"):
        for key in ("question", "kind", "response", "label"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise LatentrmError(f"{path}:{number}: '{key}' is missing or empty")
        if row["kind"] not in KINDS:
            raise LatentrmError(f"{path}:{number}: kind {row['kind']!r} is not one of {', '.join(KINDS)}")
        if row["label"] not in labels_for(row["kind"]):
            raise LatentrmError(f"{path}:{number}: label '{row['label']}' is not allowed for kind "
                                f"'{row['kind']}' (use one of {', '.join(labels_for(row['kind']))})")
        rows.append(row)
    if not rows:
        raise LatentrmError(f"{path}: has no labelled rows")
    return rows


def judge_check(path: str | Path, judges: Sequence[str] = ("rules",), **llm_options: Any) -> dict[str, Any]:
    """Accuracy (with Wilson interval), per-group accuracy, confusion matrix and errors for each judge."""
    rows = load_labelled(path)
    inputs = [JudgeInput(r["question"], r["kind"], r["response"], r.get("reference"), r.get("entity"))
              for r in rows]
    gold = [r["label"] for r in rows]
    report: dict[str, Any] = {"file": str(path), "n": len(rows), "judges": {}}
    for name in judges:
        if name == "llm":
            if llm_options.get("judge_endpoint"):
                from latentrm.eval.runner import check_endpoint

                check_endpoint(llm_options["judge_endpoint"], option="--judge-endpoint")
            options = {k: v for k, v in {"model": llm_options.get("judge_model") or "embedded",
                                         "endpoint": llm_options.get("judge_endpoint"),
                                         "model_name": llm_options.get("judge_model_name")}.items() if v}
            judge = get_judge(name, **options)
        else:
            judge = get_judge(name)
        judgments = judge.judge(inputs)
        predicted = [j.label for j in judgments]
        result = confusion_matrix(gold, predicted)
        result["describe"] = judge.describe()
        by_group: dict[str, dict[str, Any]] = {}
        for group in dict.fromkeys(label_group(r["kind"]) for r in rows):
            idx = [i for i, r in enumerate(rows) if label_group(r["kind"]) == group]
            correct = sum(1 for i in idx if gold[i] == predicted[i])
            by_group[group] = {"n": len(idx), "correct": correct, "accuracy": correct / len(idx)}
        result["by_group"] = by_group
        for column in ("source", "phase"):  # e.g. embedded vs hand-written; tuning set vs fresh
            values = [str(r.get(column, "")) for r in rows]
            if len(set(values)) > 1:
                result[f"by_{column}"] = {
                    value: {"n": values.count(value),
                            "correct": sum(1 for i, v in enumerate(values) if v == value and gold[i] == predicted[i])}
                    for value in dict.fromkeys(values)}
                for entry in result[f"by_{column}"].values():
                    entry["accuracy"] = entry["correct"] / entry["n"]
        result["errors"] = [
            {"id": rows[i].get("id", i), "gold": gold[i], "predicted": predicted[i],
             "evidence": judgments[i].evidence, "response": rows[i]["response"]}
            for i in range(len(rows)) if gold[i] != predicted[i]
        ]
        report["judges"][name] = result
    return report
