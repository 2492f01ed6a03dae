"""The report's figures, drawn with matplotlib's Agg canvas and returned as base64 PNG strings.

- `sweep_plot`: val (solid) and test (dashed) accuracy by layer, one colour per head type,
  the chosen (layer, head) ringed;
- `rl_plot`: the periodic eval's headline rates, and reward, entropy and completion length
  over training steps (only the series the run logged);
- `eval_plot`: headline rates before and after RL with Wilson 95% intervals.

`encode_png` turns PNG bytes read from disk into the same base64 text. No pyplot: each
figure is a `Figure` on its own `FigureCanvasAgg`, so there is no global state to leak.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from latentrm.eval.metrics import headline_labels

TRAIN_SERIES = (("reward", ("reward",)), ("entropy", ("entropy",)),
                ("completion length (tokens)", ("completion_length", "completions/mean_length")))
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def encode_png(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _render(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return encode_png(buffer.getvalue())


def _style(ax: Any, title: str, xlabel: str, ylabel: str = "") -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def sweep_plot(sweep: dict[str, Any]) -> str | None:
    rows = [r for r in sweep.get("layers") or []
            if isinstance(r.get("val_accuracy"), int | float) and isinstance(r.get("layer"), int | float)]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.add_subplot()
    poolings = list(dict.fromkeys(str(r.get("pooling", "last")) for r in rows))

    def line_name(row: dict[str, Any]) -> str:  # the read-out joins the head name only when several were swept
        return str(row["head"]) + (f" ({row.get('pooling', 'last')})" if len(poolings) > 1 else "")

    lines = list(dict.fromkeys(line_name(r) for r in rows))
    for colour, name in zip(COLOURS * len(lines), lines):
        mine = sorted((r for r in rows if line_name(r) == name), key=lambda r: r["layer"])
        layers = [r["layer"] for r in mine]
        ax.plot(layers, [r["val_accuracy"] for r in mine], "-o", color=colour, label=f"{name} val", ms=4)
        test = [(r["layer"], r["test_accuracy"]) for r in mine if isinstance(r.get("test_accuracy"), int | float)]
        if test:
            ax.plot(*zip(*test), "--s", color=colour, label=f"{name} test", ms=3, alpha=0.8)
    from latentrm.report.views import sweep_chosen

    best = [r for r in rows if sweep_chosen(r, sweep)]
    if best:
        ax.plot(best[0]["layer"], best[0]["val_accuracy"], "o", ms=14, mfc="none", mec="black", mew=1.5,
                label=f"chosen on {sweep.get('chosen_on', 'val')}")
    _style(ax, "Pairwise accuracy by layer", "layer", "accuracy")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _render(fig)


def _series(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> tuple[list[float], list[float]]:
    """(steps, values) of the first of `keys` that any row logged as a number."""
    for key in keys:
        points = [(float(r["step"]), float(r[key])) for r in rows
                  if isinstance(r.get(key), int | float) and isinstance(r.get("step"), int | float)]
        if points:
            return [s for s, _ in points], [v for _, v in points]
    return [], []


def rl_plot(rl: dict[str, Any], headline: Sequence[str] | None = None) -> str | None:
    """The periodic eval's `headline` rates (the run's recipe's; the flagship's when None), and the train
    series."""
    panels: list[tuple[str, list[tuple[str, list[float], list[float]]]]] = []
    from latentrm.data.recipes import default_judging

    keys = headline if headline is not None else default_judging().headline
    rates = [(key, *_series(rl["eval"], (f"eval/{key}",))) for key in keys]
    rates = [r for r in rates if r[1]]
    if rates:
        panels.append(("eval rates (periodic eval)", rates))
    for title, keys in TRAIN_SERIES:
        steps, values = _series(rl["train"], keys)
        if steps:
            panels.append((title, [(title, steps, values)]))
    if not panels:
        return None
    columns = 2 if len(panels) > 1 else 1
    n_rows = (len(panels) + columns - 1) // columns
    fig = Figure(figsize=(10, 3.2 * n_rows))
    for index, (title, lines) in enumerate(panels):
        ax = fig.add_subplot(n_rows, columns, index + 1)
        for colour, (label, steps, values) in zip(COLOURS, lines):
            ax.plot(steps, values, "-o" if len(steps) < 30 else "-", color=colour, label=label, ms=3)
        if len(lines) > 1:
            ax.set_ylim(-0.03, 1.03)
            ax.legend(fontsize=8, frameon=False)
        _style(ax, title, "step")
    fig.tight_layout()
    return _render(fig)


def eval_plot(sets: dict[str, dict[str, Any]]) -> str | None:
    """Grouped bars of the headline rates, (model,) base and policy, for the sets that have any."""
    panels = []
    for name, sides in sets.items():
        bars = {side: (sides[side]["metrics"].get("headline") or {}) for side in ("model", "base", "policy")
                if side in sides}
        labels = [label for label in headline_labels(*bars.values()) if any((h.get(label) or {}).get("n") for h in bars.values())]
        if labels:
            panels.append((name, labels, bars))
    if not panels:
        return None
    fig = Figure(figsize=(8, 3.4 * len(panels)))
    for index, (name, labels, bars) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, index + 1)
        width = 0.8 / len(bars)
        colours = ("#d0d5db", "#9aa5b1", "#1f77b4") if "model" in bars else ("#9aa5b1", "#1f77b4")
        for offset, (colour, (side, headline)) in enumerate(zip(colours, bars.items())):
            entries = [headline.get(label) or {} for label in labels]
            rates = [e.get("rate") or 0.0 for e in entries]
            errors = [[r - e.get("lo", r) for r, e in zip(rates, entries)],
                      [e.get("hi", r) - r for r, e in zip(rates, entries)]]
            xs = [i + (offset - (len(bars) - 1) / 2) * width for i in range(len(labels))]
            ax.bar(xs, rates, width, yerr=errors, capsize=3, color=colour, label=side)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8, frameon=False)
        _style(ax, f"{name}: headline rates (Wilson 95% intervals)", "", "rate")
    fig.tight_layout()
    return _render(fig)
