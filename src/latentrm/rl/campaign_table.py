"""`latentrm rl campaign table`: the tables and the plot of whichever campaign units have finished.

    latentrm rl campaign table --results results/rl-campaign      # writes table.md and hedge_share.png

Reads the tracked results folder only (`rl/campaign.py` writes it): the eval rates of every unit with Wilson
intervals, each RL arm's seeds pooled, the on-policy check per unit, best-of-n under the head, and a warning
when a unit was run against other inputs than the campaign's manifest names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.rl.campaign import parse_unit, previous_part, read_inputs


def finished_units(results: str | Path) -> dict[str, dict[str, Any]]:
    """The units whose manifest is there, by name (order: references, RL arms, baselines)."""
    results = Path(results)
    units = {}
    for path in sorted(results.glob("*/manifest.json")):
        if path.parent.name == "inputs":
            continue
        try:
            units[path.parent.name] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    order = {"reference": 0, "rl": 1, "baseline": 2}
    return dict(sorted(units.items(), key=lambda kv: (order.get(kv[1]["unit"]["kind"], 3), kv[0])))


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("rate") is None:
        return "-"
    return f"{entry['rate']:.2f} [{entry['lo']:.2f}, {entry['hi']:.2f}] ({entry['k']}/{entry['n']})"


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return {}


def table(results: str | Path) -> str:
    """Markdown: the eval rates of every finished unit, the arms pooled over seeds, and the on-policy check."""
    from latentrm.eval.metrics import headline_labels, rate

    results = Path(results)
    manifest = read_inputs(results)
    units = finished_units(results)
    stale = [name for name, u in units.items() if u.get("hashes") != manifest["hashes"]]
    # a chain part continues from weights its predecessor no longer has (the predecessor was redone)
    broken = [name for name, u in units.items() if u.get("from_hash") is not None
              and units.get(previous_part(u["unit"]) or "", {}).get("policy_hash") not in (None, u["from_hash"])]
    # the columns: the headline rates the units' evals report (their recipe's), in order
    columns = headline_labels(*(_read(results / name / "eval" / "heldout" / "metrics.json") for name in units))
    lines = ["| unit | " + " | ".join(columns) + " | agrees (false premise) | steps | s/step |",
             "| --- |" + " --- |" * (len(columns) + 3)]
    pooled: dict[str, dict[str, list[int]]] = {}
    for name, u in units.items():
        held = _read(results / name / "eval" / "heldout" / "metrics.json")
        premise = _read(results / name / "eval" / "false_premise" / "metrics.json")
        summary = _read(results / name / "summary.json")
        if name == "bo8":
            continue  # its rates are best-of-n estimates, in the on-policy table below
        head = held.get("headline", {})
        cells = [_cell(head.get(r)) for r in columns] + [_cell(premise.get("rates", {}).get("agrees"))]
        steps = summary.get("steps", summary.get("global_step", "-"))
        part = u["unit"].get("part")
        if part and isinstance(steps, int):  # a chain's part: the steps since the chain's start
            steps = f"{(part - 1) * manifest['settings']['steps'] + steps} (part {part})"
        per_step = summary.get("seconds_per_step")
        shown = f"{per_step:.1f}" if isinstance(per_step, int | float) else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {steps} | {shown} |")
        if u["unit"]["kind"] == "rl":
            arm = ("base-" if u["unit"]["start"] == "base" else "") + u["unit"]["arm"]
            arm += f" (part {part})" if part else ""  # a longer-trained policy is not another seed
            for label in (*columns, "agrees"):
                entry = head.get(label) if label != "agrees" else premise.get("rates", {}).get("agrees")
                if entry and entry.get("n"):
                    k_n = pooled.setdefault(arm, {}).setdefault(label, [0, 0])
                    k_n[0] += int(entry["k"])
                    k_n[1] += int(entry["n"])
    out = ["## Eval rates per unit", "",
           f"Held-out: {manifest['settings']['eval_n']} made-up + {manifest['settings']['eval_n']} real people of "
           f"the `eval` part (disjoint from training, selection and check); {manifest['settings']['eval_false_premise']}"
           " false premises; rules judge; Wilson 95% intervals, rate [lo, hi] (k/n).", "", *lines, ""]
    if pooled:
        out += ["## RL arms, seeds pooled", "", "| arm | " + " | ".join((*columns, "agrees")) + " |",
                "| --- |" + " --- |" * (len(columns) + 1)]
        for arm, labels in pooled.items():
            out.append(f"| {arm} | " + " | ".join(_cell(rate(*labels[label])) if label in labels else "-"
                                                   for label in (*columns, "agrees")) + " |")
        out.append("")
    out += ["## On-policy check (the `check` part; within-prompt AUROC decides, pooled beside)", "",
            "| unit | class | within-prompt AUROC [95%] (prompts) | pooled AUROC [95%] | verdict | wanted / unwanted |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in units:
        report = _read(results / name / ("best_of" if name == "bo8" else "onpolicy") / "onpolicy.json")
        for cls, c in (report.get("classes") or {}).items():
            a = c["auroc"]
            w = a["within_prompt"]

            def fmt(value: Any) -> str:
                return "-" if value is None or value != value else f"{value:.2f}"

            out.append(f"| {name} | {cls} | {fmt(w.get('mean'))} [{fmt(w.get('lo'))}, {fmt(w.get('hi'))}] "
                       f"({a['prompts_with_both']}) | {fmt(a.get('pooled'))} [{fmt(a.get('lo'))}, {fmt(a.get('hi'))}]"
                       f" | {c['verdict']} | {c['n_wanted']} / {c['n_unwanted']} |")
            alone = c.get("auroc_without_detector")
            if alone:  # answer vs denial: no contradiction detector in the measurement
                aw = alone["within_prompt"]
                out.append(f"| {name} | {cls}: answer vs denial | {fmt(aw.get('mean'))} [{fmt(aw.get('lo'))}, "
                           f"{fmt(aw.get('hi'))}] ({alone['prompts_with_both']}) | {fmt(alone.get('pooled'))} | | "
                           f"{c['n_wanted']} / {alone['n_unwanted']} |")
    bo = _read(results / "bo8" / "best_of" / "onpolicy.json")
    if bo:
        out += ["", "## Best-of-n under the head (the start policy, eval people)", "",
                "| class | n | " + " | ".join(("rate [95%]",)) + " |", "| --- | --- | --- |"]
        for cls, c in bo.get("classes", {}).items():
            for row in c.get("best_of_n", []):
                for label, entry in row.items():
                    if label == "n":
                        continue
                    out.append(f"| {cls}: {label} | {row['n']} | {entry['mean']:.2f} "
                               f"[{entry['lo']:.2f}, {entry['hi']:.2f}] |")
    if stale:
        out += ["", f"**Warning:** units {', '.join(stale)} were run against other inputs (hashes differ from "
                "inputs/manifest.json); do not compare them with the rest."]
    if broken:
        out += ["", f"**Warning:** chain parts {', '.join(broken)} continue from weights their previous part no "
                "longer has (it was redone); redo them with --force."]
    return "\n".join(out) + "\n"


def render(results: str | Path) -> Path:
    """Write `<results>/table.md` and `<results>/hedge_share.png` from the finished units."""
    from latentrm.io import atomic_write_text

    results = Path(results)
    atomic_write_text(results / "table.md", table(results))
    _plot_training(results)
    return results / "table.md"


def _plot_training(results: Path) -> Path | None:
    """The hedge share on made-up prompts and the live judge's first summary rate over steps, per RL unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentrm.data.recipes import default_judging
    from latentrm.rl.plots import read_metrics

    live = default_judging().summary[0]  # the recipe's lead rate, from the live judge
    units = {name: u for name, u in finished_units(results).items() if u["unit"]["kind"] == "rl"}
    running = [p.parent for p in results.glob("*/metrics.jsonl") if p.parent.name not in units]
    per_unit = read_inputs(results)["settings"]["steps"]
    series: dict[str, list[dict[str, Any]]] = {}
    for folder in [results / n for n in units] + running:
        rows = [r for r in read_metrics(folder / "metrics.jsonl") if r.get("kind") == "train"]
        try:
            part = parse_unit(folder.name).get("part", 1)
        except LatentrmError:
            part = 1
        # a chain's parts are one line: part k's steps follow part k-1's
        chain = folder.name.rsplit("-p", 1)[0] if part > 1 else folder.name
        shifted = [{**r, "step": r["step"] + (part - 1) * per_unit} for r in rows if isinstance(r.get("step"), int)]
        if shifted:
            series[chain] = sorted(series.get(chain, []) + shifted, key=lambda r: r["step"])
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rows in series.items():
        for ax, key in zip(axes, ("artifacts/hedge_fake", f"train_judge/{live}"), strict=True):
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
            if points:
                steps, values = zip(*points, strict=True)
                # one step holds one made-up prompt's 8 samples: the raw line is noise, the mean over 8 steps reads
                window = [sum(values[max(0, i - 7):i + 1]) / len(values[max(0, i - 7):i + 1])
                          for i in range(len(values))]
                line = ax.plot(steps, window, label=f"{name} (mean of 8 steps)")[0]
                ax.plot(steps, values, color=line.get_color(), alpha=0.2, linewidth=0.8)
    for ax, title in zip(axes, ("hedge share, made-up prompts (train samples)",
                                f"{live}, live judge (train samples)"), strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("GRPO step")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = results / "hedge_share.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
