"""RL curves from `metrics.jsonl` files (matplotlib, Agg): behaviour rates, reward, entropy and length over steps.

Reads files only, so the report can call it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def eval_curves() -> tuple[str, ...]:
    """The periodic eval's curves: the recipe's headline rates, then false premises' first best-of-n rate."""
    from latentrm.data.recipes import default_judging

    judging = default_judging()
    premise = judging.classes.get("false_premise")
    return tuple(f"eval/{label}" for label in (*judging.headline, *(premise.best_of[:1] if premise else ())))


TRAIN_CURVES = (("reward", "shaped reward"), ("latent/raw_mean", "raw latent score"), ("entropy", "policy entropy"),
                ("completion_length", "completion length"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def curves(runs: dict[str, Path], out: Path) -> list[Path]:
    """`rates.png` (eval rates over steps) and `training.png` (reward, raw score, entropy, length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {name: read_metrics(path) for name, path in runs.items()}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    curves = eval_curves()
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.4), sharey=True)
    for ax, key in zip(axes, curves):
        for name, rows in data.items():
            points = [(r["step"], r[key]) for r in rows if r.get("kind") == "eval" and r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
        ax.set_title(key.split("/")[1])
        ax.set_xlabel("step")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("rate (held-out eval)")
    labelled = [ax for ax in axes if ax.get_legend_handles_labels()[0]]
    if labelled:  # a run without periodic evals has no curve to name
        labelled[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    written.append(out / "rates.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(TRAIN_CURVES), figsize=(4 * len(TRAIN_CURVES), 3.4))
    for ax, (key, title) in zip(axes, TRAIN_CURVES):
        for name, rows in data.items():
            points = [(r["step"], r[key]) for r in rows if r.get("kind") == "train" and r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), label=name, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    written.append(out / "training.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
