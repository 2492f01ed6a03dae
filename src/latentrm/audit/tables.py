"""The audit's console tables, built from its report files: the CLI prints them, the report can reuse them.

`audit_tables(report)` reads `audit/report.json`; `goodhart_tables(report)` reads `goodhart/goodhart.json`.
Each returns rich renderables (tables and styled lines), so nothing here prints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

VERDICT_STYLE = {"pass": "green", "flag": "bold red", "skip": "yellow", "info": "cyan"}


def _probe(report: dict[str, Any], name: str, *, ran: bool = False) -> dict[str, Any] | None:
    return next((p for p in report["probes"] if p["name"] == name and not (ran and p["verdict"] == "skip")), None)


def _rho(value: Any) -> str:
    return "-" if value is None or not math.isfinite(float(value)) else f"{float(value):+.2f}"


def audit_tables(report: dict[str, Any]) -> list[Any]:
    """The surface-correlation table, the edit-effect tables and one verdict line per probe."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    surface = _probe(report, "surface")
    if surface is not None and surface["numbers"].get("by_subset"):
        numbers = surface["numbers"]
        table = Table(title=f"Spearman rho of score with surface features ({numbers['correlation']}; * = flagged)")
        table.add_column("subset")
        features = list(next(iter(numbers["by_subset"].values())))
        for feature in features:
            table.add_column(feature, justify="right")
        for subset, row in numbers["by_subset"].items():
            table.add_row(subset, *[_rho(row[f]["partial_rho"]) + ("*" if row[f]["flag"] else "") for f in features])
        out.append(table)
    for name, title in (("counterfactual", "Counterfactual edits"), ("steering_leakage", "Steering-note leakage")):
        result = _probe(report, name, ran=True)
        if result is None:
            continue
        effects = result["numbers"]["effects"]
        groups = list(next(iter(effects.values())))
        table = Table(title=f"{title}: mean score change in score std, [95% interval] (* = flagged)")
        table.add_column("edit")
        for group in groups:
            table.add_column(group, justify="right")
        for variant, row in effects.items():
            table.add_row(variant, *[f"{row[g]['effect']:+.2f} [{row[g]['effect_lo']:+.2f}, {row[g]['effect_hi']:+.2f}]"
                                     f"{'*' if row[g].get('flag') else ''}" for g in groups])
        out.append(table)
    for probe in report["probes"]:
        line = Text(f"{probe['verdict'].upper():>4}", style=VERDICT_STYLE.get(probe["verdict"], ""))
        line.append(f" {probe['name']:<17} {probe['summary']}")
        out.append(line)
    return out


def goodhart_tables(report: dict[str, Any]) -> list[Any]:
    """The best-of-n (and checkpoint) table and the fit lines."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"best-of-n on {report['n_prompts']} prompts ({report['source']})")
    kinds = sorted(report["kinds"])
    for column in ("n", "KL", "d", "proxy", "gold", "gold 95% CI", *[f"gold {k}" for k in kinds]):
        table.add_column(column, justify="right")
    for row in report["best_of_n"]:
        gold = row["gold"]
        table.add_row(str(row["n"]), f"{row['kl']:.3f}", f"{row['d']:.3f}", f"{row['proxy']['mean']:.3f}",
                      f"{gold['mean']:.3f}", f"[{gold['lo']:.2f}, {gold['hi']:.2f}]",
                      *[f"{row['gold_by_kind'][k]:.3f}" for k in kinds])
    for row in report["checkpoints"]:
        table.add_row(Path(row["checkpoint"]).name, f"{row['kl']:.3f}", f"{row['d']:.3f}",
                      f"{row['proxy']['mean']:.3f}", f"{row['gold']['mean']:.3f}",
                      f"[{row['gold']['lo']:.2f}, {row['gold']['hi']:.2f}]", *["" for _ in kinds])
    out: list[Any] = [table]
    fit = report["fit_bon"]
    if fit.get("ok"):
        where = (f"gold-optimal d = {fit['d_opt']:.2f} (KL {fit['kl_opt']:.2f})" if fit["d_opt"] is not None
                 else "no interior optimum (beta <= 0: gold does not turn down within the fit)")
        out.append(Text(f"BoN fit gold - gold(n=1) = d(alpha - beta d): alpha = {fit['alpha']:.3f}, "
                        f"beta = {fit['beta']:.3f}, R^2 = {fit['r2']:.2f}; {where}"))
    else:
        out.append(Text(f"BoN fit skipped: {fit.get('reason')} (raise --n-max)"))
    measured = report["gold_optimal_measured"]
    out.append(Text(f"measured gold-optimal: n = {measured['n']} (gold {measured['gold']:.3f})"))
    return out


def _num(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None or not math.isfinite(float(value)) else format(float(value), fmt)


def onpolicy_tables(report: dict[str, Any]) -> list[Any]:
    """Per class: label shares and reward by label; the AUROC line; best-of-n headline rates."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    labels = Table(title=f"On-policy check: {report['policy']}, {report['samples_per_prompt']} samples per prompt")
    for column in ("class", "label", "share", "95% CI", "mean reward", "n"):
        labels.add_column(column, justify="left" if column in ("class", "label") else "right")
    for name, c in report["classes"].items():
        for label, share in c["shares"].items():
            reward = c["reward_by_label"][label]
            side = "+" if label in c["wanted"] else "-" if label in c["unwanted"] else " "
            labels.add_row(name, f"{side} {label}", _num(share["rate"]), f"[{_num(share['lo'])}, {_num(share['hi'])}]",
                           _num(reward["mean"], "+.3f"), str(c["counts"][label]))
    out.append(labels)
    bon = Table(title="Best-of-n under the reward (n = 1 is the random pick), mean over prompts [95% CI]")
    bon.add_column("class")
    bon.add_column("rate")
    ns = sorted({row["n"] for c in report["classes"].values() for row in c["best_of_n"]})
    for n in ns:
        bon.add_column(f"n={n}", justify="right")
    for name, c in report["classes"].items():
        rows = {row["n"]: row for row in c["best_of_n"]}
        for label in [k for k in c["best_of_n"][0] if k != "n"]:
            bon.add_row(name, label, *[f"{_num(rows[n][label]['mean'])} [{_num(rows[n][label]['lo'])}, "
                                       f"{_num(rows[n][label]['hi'])}]" if n in rows else "" for n in ns])
    out.append(bon)
    for name, c in report["classes"].items():
        a = c["auroc"]
        style = {"prefers": "green", "inverted": "bold red", "undecided": "yellow"}.get(c["verdict"], "cyan")
        line = Text(f"{c['verdict'].upper():>11}", style=style)
        line.append(f" {name:<14} AUROC {_num(a['pooled'])} [{_num(a['lo'])}, {_num(a['hi'])}], within-prompt "
                    f"{_num(a['within_prompt']['mean'])} over {a['prompts_with_both']} prompts; "
                    f"{c['n_wanted']} wanted vs {c['n_unwanted']} unwanted samples")
        out.append(line)
    out.append(Text(report["answer"]))
    return out
