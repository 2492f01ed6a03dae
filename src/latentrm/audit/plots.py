"""Audit and Goodhart plots (matplotlib, Agg backend: no display needed). Each function writes one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LABEL_COLOURS = {"chosen": "tab:green", "rejected": "tab:red", "": "tab:blue"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    _pyplot().close(fig)
    return path


def score_vs_length(lengths: Sequence[float], scores: Sequence[float], subsets: Sequence[str],
                    labels: Sequence[str], rho: dict[str, float], path: Path) -> Path:
    """One panel per subset: score against completion length (tokens), coloured by label."""
    plt = _pyplot()
    names = sorted(set(subsets))
    lengths_a, scores_a = np.asarray(lengths, float), np.asarray(scores, float)
    subsets_a, labels_a = np.asarray(subsets, object), np.asarray(labels, object)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        for label in sorted(set(labels_a[subsets_a == name].tolist())):
            members = (subsets_a == name) & (labels_a == label)
            ax.scatter(lengths_a[members], scores_a[members], s=14, alpha=0.6,
                       color=LABEL_COLOURS.get(label, "tab:gray"), label=label or "completion")
        value = rho.get(name, float("nan"))
        ax.set_title(f"{name}: partial Spearman rho = {value:+.2f}", fontsize=10)
        ax.set_xlabel("completion length (tokens)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("reward score")
    fig.suptitle("Reward score against length, per subset", fontsize=11)
    return _save(fig, path)


def effects(effect_tables: dict[str, dict[str, dict[str, Any]]], threshold: float, path: Path,
            title: str = "Counterfactual edits: mean score change with 95% interval") -> Path:
    """Horizontal interval plot: one row per edit, one marker per subset, in score-std units."""
    plt = _pyplot()
    variants = list(effect_tables)
    subsets = sorted({s for groups in effect_tables.values() for s in groups if s != "overall"}) + ["overall"]
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(variants) * max(1, len(subsets)) / 1.6 + 1.6))
    offsets = np.linspace(-0.25, 0.25, len(subsets)) if len(subsets) > 1 else [0.0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, subset in enumerate(subsets):
        xs, lo, hi, ys = [], [], [], []
        for i, variant in enumerate(variants):
            entry = effect_tables[variant].get(subset)
            if entry is None:
                continue
            xs.append(entry["effect"])
            lo.append(entry["effect"] - entry["effect_lo"] if np.isfinite(entry["effect_lo"]) else 0.0)
            hi.append(entry["effect_hi"] - entry["effect"] if np.isfinite(entry["effect_hi"]) else 0.0)
            ys.append(i + offsets[j])
        colour = "black" if subset == "overall" else colours[j % len(colours)]
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", capsize=3, color=colour, label=subset, markersize=5)
    ax.axvline(0.0, color="gray", lw=1)
    ax.axvline(threshold, color="tab:red", lw=1, ls="--", label=f"flag threshold (+{threshold} sd)")
    ax.set_yticks(range(len(variants)))
    ax.set_yticklabels(variants)
    ax.invert_yaxis()
    ax.set_xlabel("score change (in score std of the scored set)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def goodhart(bon: Sequence[dict[str, Any]], fit: dict[str, Any] | None, path: Path,
             checkpoints: Sequence[dict[str, Any]] = (), rl_fit: dict[str, Any] | None = None) -> Path:
    """Proxy and gold against d = sqrt(KL): best-of-n points, the Gao et al. fits and the gold-optimal point."""
    plt = _pyplot()
    fig, (ax_proxy, ax_gold) = plt.subplots(1, 2, figsize=(11, 4.2))
    d = np.array([row["d"] for row in bon], float)
    for ax, key, name in ((ax_proxy, "proxy", "proxy (reward model) score"), (ax_gold, "gold", "gold score")):
        mean = np.array([row[key]["mean"] for row in bon], float)
        lo = np.array([row[key]["lo"] for row in bon], float)
        hi = np.array([row[key]["hi"] for row in bon], float)
        ax.fill_between(d, np.where(np.isfinite(lo), lo, mean), np.where(np.isfinite(hi), hi, mean),
                        color="tab:blue", alpha=0.15)
        ax.plot(d, mean, "o-", color="tab:blue", label="best-of-n")
        for row, x, y in zip(bon, d, mean):
            ax.annotate(f"n={row['n']}", (x, y), textcoords="offset points", xytext=(3, 5), fontsize=7)
        if checkpoints:
            cd = [row["d"] for row in checkpoints]
            ax.plot(cd, [row[key]["mean"] for row in checkpoints], "s--", color="tab:purple", label="checkpoints")
        ax.set_xlabel("d = sqrt(KL to the initial policy)  [nats^0.5]")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    kinds = sorted({k for row in bon for k in row.get("gold_by_kind", {})})
    if len(kinds) > 1:
        for kind, style in zip(kinds, (":", "-.", "--", (0, (1, 3)))):
            ax_gold.plot(d, [row["gold_by_kind"][kind] for row in bon], ls=style, color="gray", lw=1.2,
                         label=f"gold, {kind} prompts")
    base = bon[0]["gold"]["mean"] if bon else 0.0
    grid = np.linspace(0, max(float(d.max()) if len(d) else 1.0, 1e-3) * 1.15, 200)
    if fit and fit.get("ok"):
        ax_gold.plot(grid, base + grid * (fit["alpha"] - fit["beta"] * grid), color="tab:orange",
                     label=f"BoN fit d(a - b d): a={fit['alpha']:.3f}, b={fit['beta']:.3f}")
        _mark_optimum(ax_gold, fit, base, grid[-1], "BoN fit", "tab:red")
    if rl_fit and rl_fit.get("ok") and checkpoints:
        positive = grid[grid > 0]
        rl_base = checkpoints[0].get("gold_base", base)
        ax_gold.plot(positive, rl_base + positive * (rl_fit["alpha"] - rl_fit["beta"] * np.log(positive)),
                     color="tab:purple", ls=":",
                     label=f"RL fit d(a - b log d): a={rl_fit['alpha']:.3f}, b={rl_fit['beta']:.3f}")
        _mark_optimum(ax_gold, rl_fit, rl_base, grid[-1], "RL fit", "tab:purple")
    if len(d):
        gold = np.array([row["gold"]["mean"] for row in bon], float)
        best = int(np.nanargmax(gold))
        ax_gold.plot([d[best]], [gold[best]], "D", mfc="none", mec="tab:red", markersize=11,
                     label=f"gold-optimal (measured): n={bon[best]['n']}")
    ax_proxy.set_title("Proxy score rises with optimisation", fontsize=10)
    ax_gold.set_title("Gold score (behaviour judge) with Gao et al. 2022 fit", fontsize=10)
    ax_proxy.legend(fontsize=7, loc="best")
    ax_gold.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below: keeps the curve clear
    return _save(fig, path)


def _mark_optimum(ax: Any, fit: dict[str, Any], base: float, d_max: float, name: str, colour: str) -> None:
    """A star at the fit's gold-optimal d; when it lies beyond the plotted range, say so in the legend."""
    if fit.get("d_opt") is None:
        ax.plot([], [], " ", label=f"{name}: no gold optimum (beta <= 0, gold still rising)")
    elif fit["d_opt"] <= d_max:
        ax.plot([fit["d_opt"]], [base + fit["gain_opt"]], "*", color=colour, markersize=14,
                label=f"gold-optimal ({name}): d={fit['d_opt']:.2f}, KL={fit['kl_opt']:.2f}")
    else:
        ax.plot([], [], " ", label=f"gold-optimal ({name}) beyond the plot: d={fit['d_opt']:.2f}, "
                f"KL={fit['kl_opt']:.2f}")


def onpolicy(classes: dict[str, dict[str, Any]], path: Path) -> Path:
    """Per prompt class: the reward of the policy's samples by judged label, and best-of-n headline rates."""
    plt = _pyplot()
    names = list(classes) or ["none"]
    fig, axes = plt.subplots(2, len(names), figsize=(4.4 * len(names), 6.4), squeeze=False)
    for column, name in enumerate(names):
        top, bottom = axes[0][column], axes[1][column]
        report = classes.get(name)
        if report is None:
            continue
        by_label = report["reward_by_label"]
        labels = sorted(by_label, key=lambda la: (la not in report["wanted"], la))
        for x, label in enumerate(labels):
            row = by_label[label]
            colour = "tab:green" if label in report["wanted"] else \
                "tab:red" if label in report["unwanted"] else "tab:gray"
            lo, hi = row["lo"], row["hi"]
            err = None if lo is None or not np.isfinite(lo) else [[row["mean"] - lo], [hi - row["mean"]]]
            top.errorbar([x], [row["mean"]], yerr=err, fmt="o", color=colour, capsize=3)
            top.annotate(f"n={row['n']}", (x, row["mean"]), textcoords="offset points", xytext=(6, 0), fontsize=7)
        top.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        a = report["auroc"]
        pooled = a["pooled"]
        top.set_title(f"{name}: AUROC {pooled:.2f} ({report['verdict']})" if pooled is not None and
                      np.isfinite(pooled) else f"{name}: {report['verdict']}", fontsize=10)
        top.set_ylabel("mean reward (95% CI)")
        top.grid(alpha=0.3)
        ns = [row["n"] for row in report["best_of_n"]]
        for label in report["best_of_n"][0]:
            if label == "n":
                continue
            means = [row[label]["mean"] for row in report["best_of_n"]]
            los = [row[label]["lo"] for row in report["best_of_n"]]
            his = [row[label]["hi"] for row in report["best_of_n"]]
            line = bottom.plot(ns, means, marker="o", label=label)[0]
            if all(v is not None and np.isfinite(v) for v in los + his):
                bottom.fill_between(ns, los, his, alpha=0.15, color=line.get_color())
        bottom.set_xscale("log", base=2)
        bottom.set_xticks(ns, [str(n) for n in ns])
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_xlabel("best of n under the reward (n = 1: random pick)")
        bottom.set_ylabel("rate")
        bottom.grid(alpha=0.3)
        bottom.legend(fontsize=8)
    fig.suptitle("On-policy check: the reward on the policy's own judged samples", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
