"""Judge agreement: how often each judge matches hand labels (`latentrm eval judge-check`).

The labelled set is JSONL with `question`, `kind`, `response`, `label` (gold) and
optional `reference`, `entity`, `source`, `phase` / `part`; a `qa` row has `references` or
`"answerable": false`, as in an eval file. Two are committed, each labelled by reading every
response: tests/data/judge_labelled.jsonl (people and false premises, for `rules` and `llm`)
and tests/data/reference_labelled.jsonl (short-answer questions, for `reference`), both
responses from the embedded model plus hand-written ones. Accuracy is reported overall, per
gold label, per group and per source / phase / part (the held-out rows apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.eval.metrics import confusion_matrix, label_group
from latentrm.judges import KINDS, Judge, JudgeInput, allowed_labels, get_judge


def load_labelled(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a hand-labelled judge set."""
    from latentrm.eval.sets import short_answers
    from latentrm.io import read_jsonl_objects

    rows = []
    path = Path(path)
    for number, row in read_jsonl_objects(path, what="labelled set", needs="question, kind, response, label"):
        for key in ("question", "kind", "response", "label"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise LatentrmError(f"{path}:{number}: '{key}' is missing or empty")
        if row["kind"] not in KINDS:
            raise LatentrmError(f"{path}:{number}: kind {row['kind']!r} is not one of {', '.join(KINDS)}")
        references, answerable = short_answers(row, row["kind"], path, number)
        allowed = allowed_labels(JudgeInput(row["question"], row["kind"], row["response"], answerable=answerable))
        if row["label"] not in allowed:
            raise LatentrmError(f"{path}:{number}: label '{row['label']}' is not allowed for kind "
                                f"'{row['kind']}' (use one of {', '.join(allowed)})")
        rows.append({**row, "references": list(references), "answerable": answerable})
    if not rows:
        raise LatentrmError(f"{path}: has no labelled rows")
    return rows


def _build(name: str, llm_options: dict[str, Any]) -> Judge:
    """A judge by name; a judge model or endpoint configures `llm`, and becomes `reference`'s fallback."""
    wants_llm = name == "llm" or (name == "reference" and (llm_options.get("judge_model")
                                                           or llm_options.get("judge_endpoint")))
    if not wants_llm:
        return get_judge(name)
    if llm_options.get("judge_endpoint"):
        from latentrm.eval.runner import check_endpoint

        check_endpoint(llm_options["judge_endpoint"], option="--judge-endpoint")
    options = {k: v for k, v in {"model": llm_options.get("judge_model") or "embedded",
                                 "endpoint": llm_options.get("judge_endpoint"),
                                 "model_name": llm_options.get("judge_model_name")}.items() if v}
    llm = get_judge("llm", **options)
    return llm if name == "llm" else get_judge("reference", fallback=llm)


def _accuracy_by(keys: Sequence[str], gold: Sequence[str], predicted: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{key: {n, correct, accuracy}} over the rows grouped by `keys` (first-seen order)."""
    out = {}
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        correct = sum(1 for i in idx if gold[i] == predicted[i])
        out[key] = {"n": len(idx), "correct": correct, "accuracy": correct / len(idx)}
    return out


def judge_check(path: str | Path, judges: Sequence[str] = ("rules",), **llm_options: Any) -> dict[str, Any]:
    """Accuracy (with Wilson interval), accuracy per gold label, group, source, phase and part, the
    confusion matrix and the errors, for each judge."""
    rows = load_labelled(path)
    inputs = [JudgeInput(r["question"], r["kind"], r["response"], r.get("reference"), r.get("entity"),
                         tuple(r["references"]), r["answerable"]) for r in rows]
    gold = [r["label"] for r in rows]
    report: dict[str, Any] = {"file": str(path), "n": len(rows), "judges": {}}
    for name in judges:
        judge = _build(name, llm_options)
        judgments = judge.judge(inputs)
        predicted = [j.label for j in judgments]
        result = confusion_matrix(gold, predicted)
        result["describe"] = judge.describe()
        result["file"] = str(path)
        result["by_group"] = _accuracy_by([label_group(r["kind"]) for r in rows], gold, predicted)
        result["by_label"] = _accuracy_by(gold, gold, predicted)  # the share of each gold label found
        for column in ("source", "phase", "part"):  # embedded vs hand-written; tuning vs fresh; dev vs heldout
            values = [str(r.get(column, "")) for r in rows]
            if len(set(values)) > 1:
                result[f"by_{column}"] = _accuracy_by(values, gold, predicted)
        parts = [str(r.get("part", "")) for r in rows]
        if len(set(parts)) > 1:  # each gold label's accuracy within each part (the held-out part apart)
            result["by_part_label"] = {
                part: _accuracy_by([gold[i] for i in range(len(rows)) if parts[i] == part],
                                   [gold[i] for i in range(len(rows)) if parts[i] == part],
                                   [predicted[i] for i in range(len(rows)) if parts[i] == part])
                for part in dict.fromkeys(parts)}
        result["errors"] = [
            {"id": rows[i].get("id", i), "gold": gold[i], "predicted": predicted[i],
             "evidence": judgments[i].evidence, "response": rows[i]["response"]}
            for i in range(len(rows)) if gold[i] != predicted[i]
        ]
        report["judges"][name] = result
    return report
