"""Pairwise reward-model metrics, per subset and overall.

For each group: number of pairs, mean chosen score, mean rejected score, margin
(their difference), pairwise accuracy (chosen > rejected), and calibration of the
Bradley-Terry probability `sigmoid(r_c - r_r)`:

- ECE: pairs are binned by the model's confidence `sigmoid(|gap|)` in [0.5, 1];
  in each bin the mean confidence is compared with the empirical win rate (the
  share of pairs where the higher-scored side is the chosen one). Using |gap| is
  the symmetric view of the BT model: it treats (c, r) and (r, c) alike.
- Brier score of `sigmoid(gap)` against the label "chosen wins" (always 1).

Also: score quantiles per subset (chosen and rejected), which the calibrated
RL reward reads from rm.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

QUANTILE_LEVELS: list[float] = [round(i / 100, 2) for i in range(101)]


def auc(positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray) -> float:
    """P(a positive scores above a negative), ties count half (the Mann-Whitney U / n1 n2)."""
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]  # [n_pos, n_neg]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, clipped so that large scores give no overflow warning."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def expected_calibration_error(gaps: np.ndarray, bins: int = 10) -> float:
    if len(gaps) == 0:
        return float("nan")
    confidence = sigmoid(np.abs(gaps))  # in [0.5, 1]
    correct = (gaps > 0).astype(float)
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)


def group_metrics(chosen: np.ndarray, rejected: np.ndarray) -> dict[str, float]:
    gaps = chosen - rejected
    return {
        "n": int(len(gaps)),
        "chosen": float(chosen.mean()) if len(gaps) else float("nan"),
        "rejected": float(rejected.mean()) if len(gaps) else float("nan"),
        "margin": float(gaps.mean()) if len(gaps) else float("nan"),
        "accuracy": float((gaps > 0).mean()) if len(gaps) else float("nan"),
        "ece": expected_calibration_error(gaps),
        "brier": float(((sigmoid(gaps) - 1.0) ** 2).mean()) if len(gaps) else float("nan"),
    }


def pair_metrics(chosen: Sequence[float], rejected: Sequence[float], subsets: Sequence[str]) -> dict[str, Any]:
    """`{"overall": {...}, "by_subset": {subset: {...}}}` for one split."""
    chosen_arr = np.asarray(chosen, dtype=float)
    rejected_arr = np.asarray(rejected, dtype=float)
    subset_arr = np.asarray(subsets, dtype=object)
    by_subset = {
        str(name): group_metrics(chosen_arr[subset_arr == name], rejected_arr[subset_arr == name])
        for name in sorted(set(subset_arr.tolist()))
    }
    return {"overall": group_metrics(chosen_arr, rejected_arr), "by_subset": by_subset}


def score_quantiles(scores: Sequence[float], subsets: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """`{subset | "all": {"levels": [...], "values": [...]}}` over 101 evenly spaced levels."""
    scores_arr = np.asarray(scores, dtype=float)
    subset_arr = np.asarray(subsets, dtype=object)
    out = {"all": {"levels": QUANTILE_LEVELS, "values": np.quantile(scores_arr, QUANTILE_LEVELS).tolist()}}
    for name in sorted(set(subset_arr.tolist())):
        values = scores_arr[subset_arr == name]
        out[str(name)] = {"levels": QUANTILE_LEVELS, "values": np.quantile(values, QUANTILE_LEVELS).tolist()}
    return out


def metrics_table(metrics: dict[str, Any], title: str = "") -> str:
    """The `| subset | chosen | rejected | margin | accuracy |` table the method's authors report (Markdown)."""
    lines = [f"**{title}**", ""] if title else []
    lines += ["| subset | n | chosen | rejected | margin | accuracy | ECE | Brier |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = list(metrics["by_subset"].items()) + [("overall", metrics["overall"])]
    for name, m in rows:
        lines.append(f"| {name} | {m['n']} | {m['chosen']:.3f} | {m['rejected']:.3f} | {m['margin']:.3f} | "
                     f"{m['accuracy']:.3f} | {m['ece']:.3f} | {m['brier']:.3f} |")
    return "\n".join(lines)


def rich_metrics_table(metrics: dict[str, Any], title: str) -> Any:
    """The per-subset table as a `rich.table.Table` (the CLI prints it; stages never print)."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("subset", "n", "chosen", "rejected", "margin", "accuracy", "ECE", "Brier"):
        table.add_column(column, justify="left" if column == "subset" else "right")
    rows = list(metrics["by_subset"].items()) + [("overall", metrics["overall"])]
    for name, m in rows:
        table.add_row(name, str(m["n"]), f"{m['chosen']:.3f}", f"{m['rejected']:.3f}", f"{m['margin']:.3f}",
                      f"{m['accuracy']:.3f}", f"{m['ece']:.3f}", f"{m['brier']:.3f}")
    return table
