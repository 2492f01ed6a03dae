"""Turn the loaded run files into the rows the template prints (cells are formatted strings).

Each function takes one section of `load.load_run`'s dict and returns plain lists and
dicts: the RM metric tables, the sweep table, audit verdicts, the before/after eval
tables, matched example responses, the compare table and short key/value lists.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from latentrm.eval.metrics import FALSE_PREMISE_LABELS, QA_LABELS, headline_labels, summary_labels
from latentrm.rl.compare import QA_COLUMNS

if TYPE_CHECKING:
    from latentrm.data.recipes import Judging

MAX_INLINE_JSON = 160  # a nested value shown in a key/value list when its JSON is at most this long
EXAMPLES_PER_KIND = 5
DIVERSITY_KEYS = ("mean_entropy", "distinct_2", "mean_length_tokens", "mean_length_words")
METRIC_COLUMNS = ("n", "chosen", "rejected", "margin", "accuracy", "ece", "brier")
# badge colour of a short-answer (reference judge) label in the examples
QA_TONES = {"correct": "good", "not_attempted": "mixed", "incorrect": "bad"}


def label_tone(label: str, judging: Judging | None = None) -> str:
    """Badge colour of a judge label in the examples, from the run's recipe's judging (the flagship's when none
    is given): its class's first wanted label is the behaviour (good), a further wanted one a partial (mixed),
    an unwanted one the failure (bad), any other label mixed; `skip` for no label."""
    from latentrm.data.recipes import default_judging

    if label in QA_TONES:
        return QA_TONES[label]
    for spec in (judging or default_judging()).classes.values():
        if label in spec.wanted:
            return "good" if label == spec.wanted[0] else "mixed"
        if label in spec.unwanted:
            return "bad"
    return "mixed" if label and label != "unjudged" else "skip"
# the short-answer (qa) rates shown in bold next to the headline ones
QA_HEADLINE = (*QA_LABELS, "precision", "unanswerable_not_attempted")


def number(value: Any) -> str:
    """A short, readable number: ints as they are, floats to 3 significant digits, None / NaN as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"


def key_values(record: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Scalar entries of `record`, plus small nested ones as compact JSON; large nested ones are left out."""
    items = []
    for key, value in (record or {}).items():
        if isinstance(value, dict | list):
            text = json.dumps(value, separators=(", ", ": "), default=str)
            if len(text) <= MAX_INLINE_JSON:
                items.append((str(key), text))
        else:
            items.append((str(key), number(value)))
    return items


def rate_cell(entry: dict[str, Any] | None) -> str:
    """`42.0% [30.1%, 55.2%] (21/50)`, or n/a."""
    if not entry or entry.get("rate") is None:
        return "n/a"
    return f"{entry['rate']:.1%} [{entry['lo']:.1%}, {entry['hi']:.1%}] ({entry['k']}/{entry['n']})"


def stage_rows(run: dict[str, Any] | None) -> list[dict[str, str]]:
    rows = []
    for name, stage in ((run or {}).get("stages") or {}).items():
        stage = stage if isinstance(stage, dict) else {"summary": stage}
        rows.append({"stage": str(name), "summary": str(stage.get("summary", "")),
                     # a skipped stage shows how long it took when it last ran (`built_seconds`)
                     "seconds": number(stage.get("built_seconds") if stage.get("skipped") and
                                       stage.get("built_seconds") is not None else stage.get("seconds")),
                     "skipped": "yes" if stage.get("skipped") else "no"})
    return rows


def rm_facts(rm: dict[str, Any]) -> list[tuple[str, str]]:
    """Head type, layer, pooling, backbone and training facts of a saved reward model."""
    head, backbone, training = rm.get("head") or {}, rm.get("backbone") or {}, rm.get("training") or {}
    facts = [("head", str(head.get("type", "n/a"))), ("layer", number(rm.get("layer"))),
             ("pooling", str(rm.get("pooling", "n/a"))), ("max length", number(rm.get("max_length")))]
    facts += [(f"backbone {key}", number(backbone.get(key)))
              for key in ("spec", "revision", "hidden_size", "num_layers", "dtype") if key in backbone]
    facts += [(key.replace("_", " "), number(training.get(key)))
              for key in ("pairs_file", "n_train", "n_val", "best_epoch", "epochs_run") if key in training]
    return facts + [(key.replace("_", " "), str(rm[key])) for key in ("created_at", "latentrm_version") if key in rm]


def rm_tables(rm: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per split: a row per subset, then overall; cells formatted to 3 decimals."""
    tables = []
    for split, metrics in (rm.get("metrics") or {}).items():
        groups = list((metrics.get("by_subset") or {}).items()) + [("overall", metrics.get("overall") or {})]
        rows = [{"subset": name, **{c: _fixed(m.get(c), c) for c in METRIC_COLUMNS}} for name, m in groups]
        tables.append({"split": split, "rows": rows})
    return tables


def _fixed(value: Any, column: str) -> str:
    if column == "n" or not isinstance(value, int | float):
        return number(value)
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def sweep_chosen(row: dict[str, Any], sweep: dict[str, Any]) -> bool:
    """Whether a sweep row is the chosen candidate (older sweep.json files have no pooling or layers lists)."""
    return ((row.get("layer"), row.get("head")) == (sweep.get("best_layer"), sweep.get("best_head"))
            and row.get("pooling", "last") == sweep.get("best_pooling", "last"))


def sweep_rows(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"layer": str(r.get("layer")), "pooling": str(r.get("pooling", "last")), "head": str(r.get("head")),
             "cv": _fixed(r.get("cv_accuracy"), "accuracy") if "cv_accuracy" in r else None,
             "val": _fixed(r.get("val_accuracy"), "accuracy"), "test": _fixed(r.get("test_accuracy"), "accuracy"),
             "n_val": number(r.get("n_val")), "n_test": number(r.get("n_test")),
             "onpolicy_select": _fixed(r.get("onpolicy_select_auroc"), "auroc") if "onpolicy_select_auroc" in r
             else None,
             "onpolicy_report": _fixed(r.get("onpolicy_report_auroc"), "auroc") if "onpolicy_report_auroc" in r
             else None,
             "chosen": sweep_chosen(r, sweep)} for r in sweep.get("layers") or []]


def learning_curve_rows(sweep: dict[str, Any]) -> list[dict[str, str]]:
    return [{"share": f"{p['share']:.0%}", "n_train": number(p.get("n_train")),
             "test": _fixed(p.get("test_accuracy"), "accuracy"),
             "by_subset": ", ".join(f"{k} {v:.3f}" for k, v in (p.get("test_by_subset") or {}).items())}
            for p in sweep.get("learning_curve") or [] if isinstance(p, dict) and "share" in p]


def audit_rows(audit: dict[str, Any]) -> list[dict[str, str]]:
    """One row per probe; verdicts from `verdicts` when the probe list lacks them."""
    verdicts = audit.get("verdicts") or {}
    probes = audit.get("probes") or [{"name": name} for name in verdicts]
    return [{"name": str(p.get("name")), "verdict": str(p.get("verdict") or verdicts.get(p.get("name"), "n/a")),
             "summary": str(p.get("summary", "")),
             "numbers": json.dumps(p.get("numbers"), indent=1, default=str) if p.get("numbers") else ""}
            for p in probes]


def _labels(*metrics: dict[str, Any]) -> list[str]:
    """Headline labels first, then every other label, leaving out labels no side has a prompt for."""
    order = headline_labels(*metrics)
    for m in metrics:
        order += [label for label in (m.get("rates") or {}) if label not in order]
    return [label for label in order if any((_entry(m, label) or {}).get("n") for m in metrics)]


def _entry(metrics: dict[str, Any], label: str) -> dict[str, Any] | None:
    return (metrics.get("rates") or {}).get(label) or (metrics.get("headline") or {}).get(label)


def _change(base: dict[str, Any] | None, policy: dict[str, Any] | None) -> str:
    if not base or not policy or base.get("rate") is None or policy.get("rate") is None:
        return "n/a"
    return f"{100 * (policy['rate'] - base['rate']):+.1f} pp"


def eval_tables(sets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per eval set: label | base | policy | change rows (F-score too, on a qa set), and diversity rows."""
    tables = []
    for name, sides in sets.items():
        base = (sides.get("base") or {}).get("metrics") or {}
        policy = (sides.get("policy") or {}).get("metrics") or {}
        model = (sides.get("model") or {}).get("metrics") or {}
        headline = set(headline_labels(base, policy, model)) | set(FALSE_PREMISE_LABELS) | set(QA_HEADLINE)
        rows = [{"label": label, "headline": label in headline, "model": rate_cell(_entry(model, label)),
                 "base": rate_cell(_entry(base, label)),
                 "policy": rate_cell(_entry(policy, label)), "change": _change(_entry(base, label),
                                                                               _entry(policy, label))}
                for label in _labels(base, policy, model)]
        if base.get("qa") or policy.get("qa"):
            scores = [(m.get("qa") or {}).get("f_score") for m in (base, policy)]
            rows.append({"label": "f_score", "headline": True, "model": "", "base": number(scores[0]),
                         "policy": number(scores[1]), "change": "n/a" if None in scores else
                         f"{scores[1] - scores[0]:+.3f}"})  # type: ignore[operator]
        diversity = [{"label": key, "model": number((model.get("diversity") or {}).get(key)),
                      "base": number((base.get("diversity") or {}).get(key)),
                      "policy": number((policy.get("diversity") or {}).get(key))} for key in DIVERSITY_KEYS]
        judge = policy.get("judge") or base.get("judge")
        tables.append({"name": name, "rows": rows, "diversity": diversity, "sides": sorted(sides),
                       "with_model": bool(model),
                       "judge": json.dumps(judge, default=str) if isinstance(judge, dict) else judge})
    return tables


def _key(row: dict[str, Any]) -> tuple[str, int]:
    return (str(row.get("item_id") or row.get("question")), int(row.get("sample") or 0))


def matched_pairs(sides: dict[str, Any], kind: str | None = None, judging: Judging | None = None
                  ) -> list[dict[str, Any]]:
    """Base and policy responses to the same item, label changes first, in file order otherwise."""
    policy = {_key(r): r for r in (sides.get("policy") or {}).get("responses", [])}
    pairs = []
    for row in (sides.get("base") or {}).get("responses", []):
        if (kind is None or row.get("kind") == kind) and _key(row) in policy:
            after = policy[_key(row)]
            pairs.append({"question": str(row.get("question", "")), "item_id": str(row.get("item_id", "")),
                          "kind": str(row.get("kind", "")), "changed": row.get("label") != after.get("label"),
                          "base": _side(row, judging), "policy": _side(after, judging)})
    return sorted(pairs, key=lambda p: not p["changed"])


def _side(row: dict[str, Any], judging: Judging | None) -> dict[str, str]:
    label = str(row.get("label") or "unjudged")
    return {"response": str(row.get("response") or ""), "label": label, "tone": label_tone(label, judging)}


def example_groups(sets: dict[str, dict[str, Any]], judging: Judging | None = None) -> list[dict[str, Any]]:
    """Five matched examples per kind from the main set (heldout first), plus one false-premise example; badges
    coloured by `judging` (the run's recipe's)."""
    main = [name for name in sets if name != "false_premise" and {"base", "policy"} <= set(sets[name])]
    main.sort(key=lambda name: name != "heldout")
    groups = []
    if main:
        sides = sets[main[0]]
        kinds = dict.fromkeys(str(r.get("kind")) for r in sides["base"]["responses"])
        for kind in kinds:
            pairs = matched_pairs(sides, kind, judging)[:EXAMPLES_PER_KIND]
            if pairs:
                groups.append({"set": main[0], "kind": kind, "title": f"{main[0]}: {kind} prompts", "pairs": pairs})
    premise = sets.get("false_premise") or {}
    if {"base", "policy"} <= set(premise):
        pairs = matched_pairs(premise, judging=judging)[:1]
        if pairs:
            groups.append({"set": "false_premise", "kind": pairs[0]["kind"], "title": "false_premise", "pairs": pairs})
    return groups


def split_rate_cell(entry: dict[str, Any] | None) -> tuple[str, str]:
    """(`42.0% (21/50)`, `[30.1%, 55.2%]`): a rate cell on two lines, for wide tables."""
    if not entry or entry.get("rate") is None:
        return ("n/a", "")
    return (f"{entry['rate']:.1%} ({entry['k']}/{entry['n']})", f"[{entry['lo']:.1%}, {entry['hi']:.1%}]")


def compare_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per policy of `rl compare`: held-out rates, false-premise agrees, precision and not-attempted
    on the qa set when the run had one, and diversity.

    `{"columns": [...], "rows": [[(main, detail), ...]]}`; detail is a rate's interval, else empty.
    """
    with_qa = any(((row.get("eval") or {}).get("qa") or {}).get("qa") for row in rows)
    rate_columns = headline_labels(*(((row.get("eval") or {}).get("heldout") or {}) for row in rows))
    columns = ["policy", "kind", *rate_columns, "agrees (false premise)",
               *([f"{c} (qa)" for c in QA_COLUMNS] if with_qa else []), "entropy", "distinct-2", "mean length"]
    table = []
    for row in rows:
        evals = row.get("eval") or {}
        held, premise = evals.get("heldout") or {}, evals.get("false_premise") or {}
        cells = [(str(row.get("name")), ""), (str(row.get("kind", "")), "")]
        cells += [split_rate_cell((held.get("headline") or {}).get(c)) for c in rate_columns]
        cells.append(split_rate_cell((premise.get("rates") or {}).get("agrees")))
        if with_qa:
            qa = (evals.get("qa") or {}).get("qa") or {}
            cells += [split_rate_cell(qa.get(c)) for c in QA_COLUMNS]
        cells += [(number((held.get("diversity") or {}).get(k)), "") for k in DIVERSITY_KEYS[:3]]
        table.append(cells)
    return {"columns": columns, "rows": table}


def eval_start_end(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The periodic eval's rates at the first and the last eval of an RL run."""
    start, end = summary.get("eval_start") or {}, summary.get("eval_end") or {}
    keys = [k for k in list(start) + [k for k in end if k not in start]
            if k.startswith("eval/") and not k.endswith(("_k", "_n"))]
    return [{"name": key.removeprefix("eval/"), "start": _with_counts(start, key), "end": _with_counts(end, key)}
            for key in keys]


def _with_counts(row: dict[str, Any], key: str) -> str:
    k, n = row.get(f"{key}_k"), row.get(f"{key}_n")
    return number(row.get(key)) + (f" ({k}/{n})" if k is not None and n is not None else "")


ONPOLICY_SIDES = {"base": "start policy", "policy": "trained policy", "check": "rm onpolicy"}


def _interval(mean: Any, lo: Any, hi: Any) -> str:
    if mean is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{mean:.2f}"
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def onpolicy_view(sides: dict[str, dict[str, Any]], judging: Judging | None = None) -> dict[str, Any]:
    """One row per (class, side): AUROC, verdict, wanted / unwanted counts, headline best-of-n; the answers."""
    rows: list[dict[str, str]] = []
    answers: list[tuple[str, str, str]] = []
    images: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    for side, report in sides.items():
        where = ONPOLICY_SIDES.get(side, side)
        answers.append((where, f"{report.get('policy')}, {report.get('prompts')} prompts x "
                               f"{report.get('samples_per_prompt')} samples", report.get("answer", "")))
        images.extend({"side": side, **image} for image in report.get("images", []))
        for name, c in (report.get("classes") or {}).items():
            a = c["auroc"]
            bon = c["best_of_n"]
            headline = [f"{label} {bon[0][label]['mean']:.2f} -> {bon[-1][label]['mean']:.2f} (n={bon[-1]['n']})"
                        for label in bon[0] if label != "n" and bon[0][label]["mean"] is not None]
            within = a["within_prompt"]
            rows.append({"class": name, "side": where, "auroc": _interval(a["pooled"], a["lo"], a["hi"]),
                         "within": "n/a" if within.get("mean") is None else
                         f"{within['mean']:.2f} ({a['prompts_with_both']} prompts)",
                         "verdict": c["verdict"], "counts": f"{c['n_wanted']} / {c['n_unwanted']}",
                         "shares": ", ".join(f"{label} {share['rate']:.0%}" for label, share in c["shares"].items()
                                             if share.get("rate") is not None),
                         "best_of_n": "; ".join(headline)})
        examples.extend({**e, "side": where, "tone": label_tone(e.get("label", ""), judging)}
                        for e in report.get("examples", []))
    return {"rows": rows, "answers": answers, "images": images, "examples": examples}


def probe_view(report: dict[str, Any]) -> dict[str, Any]:
    """The backbone probe: one row per layer (accuracy and AUROC as mean ± std over folds), the best marked."""
    baselines = [{"layer": f"{name} (baseline)", "best": False, "accuracy": _spread(row, "accuracy"),
                  "auroc": _spread(row, "auroc"), "majority": _fixed(row.get("majority"), "majority")}
                 for name, row in (report.get("baselines") or {}).items()]
    rows = baselines + [
        {"layer": str(row.get("layer")), "best": row.get("layer") == report.get("best_layer"),
         "accuracy": _spread(row, "accuracy"),
         "auroc": _spread(row, "auroc") + (f" ({row['margin_surface']:+.3f} over the name string, "
                                           f"{row['margin_embedding']:+.3f} over the embeddings)"
                                           if isinstance(row.get("margin_surface"), int | float) else ""),
         "majority": _fixed(row.get("majority"), "majority")} for row in report.get("layers") or []]
    facts = [(key.replace("_", " "), number(report.get(key)))
             for key in ("model", "template", "n_real", "n_fake", "folds", "grouped_by", "read_out", "classifier",
                         "seconds") if key in report]
    return {"rows": rows, "facts": facts, "folder": str(report.get("folder", "audit")),
            "best_layer": number(report.get("best_layer"))}


def _spread(row: dict[str, Any], metric: str) -> str:
    mean, std = row.get(metric), row.get(f"{metric}_std")
    if not isinstance(mean, int | float):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if isinstance(std, int | float) else f"{mean:.3f}"


def _pct(entry: dict[str, Any]) -> str:
    return f"{entry['rate']:.0%} [{entry['lo']:.0%}, {entry['hi']:.0%}]"


def verdict(loaded: dict[str, Any]) -> list[str]:
    """The report's first lines, built from the run's own numbers: what RL did to the held-out rates (moved
    beyond the intervals or not), what the warm start cost against the untouched model, the reward model's test
    accuracy and the audit's flags. Empty when the run has none of these yet."""
    lines = []
    evals = loaded.get("eval") or {}
    held = evals.get("heldout") or {}
    side = {name: ((held.get(name) or {}).get("metrics") or {}).get("headline") or {}
            for name in ("model", "base", "policy")}
    rl = loaded.get("rl") or {}
    summary = rl.get("summary") or {}
    shaper = (summary.get("shaper") or {}).get("name") if isinstance(summary.get("shaper"), dict) else None
    what = "RL" + (f" ({summary.get('steps')} GRPO steps, {shaper or 'n/a'} reward, {summary.get('mix', 'n/a')} mix)"
                   if summary else "")
    moves = []
    rated = [side[name] for name in ("base", "policy")]
    for label in headline_labels(*({"headline": h} for h in rated)):
        before, after = side["base"].get(label), side["policy"].get(label)
        if before and after and before.get("rate") is not None and after.get("rate") is not None:
            apart = after["lo"] > before["hi"] or after["hi"] < before["lo"]
            moves.append((label, before, after, apart))
    if moves:
        text = "; ".join(f"{label} {_pct(b)} -> {_pct(a)}" + (f" ({100 * (a['rate'] - b['rate']):+.0f} points)"
                                                               if apart else "") for label, b, a, apart in moves)
        if any(apart for *_, apart in moves):
            lines.append(f"{what} changed behaviour on held-out people: {text}. Rates whose Wilson intervals do "
                         "not overlap show the change in points; the others moved within the noise.")
        else:
            lines.append(f"{what} did not change behaviour on held-out people beyond the intervals: {text}.")
    premise = evals.get("false_premise") or {}
    agrees = [((premise.get(n) or {}).get("metrics") or {}).get("rates", {}).get("agrees") for n in ("base", "policy")]
    if all(a and a.get("rate") is not None for a in agrees):
        lines.append(f"False premises: agrees {_pct(agrees[0])} -> {_pct(agrees[1])}.")
    model = side["model"]
    if model and side["base"]:
        cost = [f"{label} {_pct(model[label])} (model) -> {_pct(side['base'][label])} (start policy)"
                for label in summary_labels(*(((held.get(n) or {}).get("metrics") or {}) for n in ("base", "policy")))
                if (model.get(label) or {}).get("rate") is not None
                and (side["base"].get(label) or {}).get("rate") is not None]
        if cost:
            lines.append("The warm start against the untouched model: " + "; ".join(cost) + ".")
    rm = loaded.get("rm") or {}
    test = ((rm.get("metrics") or {}).get("test") or {}).get("overall") or {}
    if isinstance(test.get("accuracy"), int | float):
        lines.append(f"The reward model's test accuracy on held-out pairs: {test['accuracy']:.3f}.")
    audit = loaded.get("audit")
    if audit:
        rows = audit_rows(audit)
        flagged = [r["name"] for r in rows if r["verdict"] in ("flag", "fail")]
        lines.append(f"The audit flags {len(flagged)} of {len(rows)} probes" +
                     (f" ({', '.join(flagged)})." if flagged else "."))
    return lines
