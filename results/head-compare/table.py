"""The step-4 table from the on-policy reports next to this file: within-prompt AUROC per class per head, on the
`select` people (where the head is chosen: highest minimum over the classes) and on the `check` people (where
the chosen head is reported). `python results/head-compare/table.py > results/head-compare/table.md`"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
HEADS = {"a": "quick head (quick pairs)", "b": "+ pairs from the SFT start (right_vs_wrong)",
         "c": "+ SFT-start sycophancy pairs"}
CLASSES = ("fake", "real", "false_premise")


def cell(report: dict, name: str) -> tuple[str, float | None]:
    entry = report["classes"].get(name) or {}
    auroc = entry.get("auroc") or {}
    within = auroc.get("within_prompt") or {}
    if within.get("mean") is None:
        return f"{entry.get('verdict', '-')} ({within.get('n', 0)} prompts)", None
    return (f"{within['mean']:.2f} [{within['lo']:.2f}, {within['hi']:.2f}] ({within['n']}) {entry.get('verdict')}",
            within["mean"])


def table(part: str) -> tuple[list[str], dict[str, float]]:
    lines = [f"| head ({part} people) | " + " | ".join(CLASSES) + " | minimum |", "| --- |" + " --- |" * 4]
    minima = {}
    for head, label in HEADS.items():
        path = HERE / f"onpolicy-{part}-{head}.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        cells = [cell(report, name) for name in CLASSES]
        values = [v for _, v in cells]
        minimum = min((v for v in values if v is not None), default=None) if None not in values else None
        if minimum is not None:
            minima[head] = minimum
        lines.append(f"| ({head}) {label} | " + " | ".join(c for c, _ in cells)
                     + f" | {minimum:.2f} |" if minimum is not None else f"| ({head}) {label} | "
                     + " | ".join(c for c, _ in cells) + " | - |")
    return lines, minima


def main() -> None:
    select, minima = table("select")
    print("Within-prompt AUROC [prompt-bootstrap 95%] (prompts with both sides) and verdict, on the SFT start's "
          "own samples (8 per prompt).\n")
    print("\n".join(select))
    chosen = max(minima, key=minima.get) if minima else None
    print(f"\nChosen on `select` (highest minimum over the classes): {chosen or 'none (a class without a value)'}\n")
    check, _ = table("check")
    print("\n".join(check))


if __name__ == "__main__":
    main()
