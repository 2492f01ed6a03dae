"""`latentrm run`: the whole method in one command, by chaining the stages' own `run()` functions.

data build -> warm start (SFT or KTO on the pairs, when `warm_start.method` names one) -> features ->
layer x read-out x head sweep (chosen by cv, val, or on-policy AUROC on the start policy's samples) ->
reward model -> audit -> eval and on-policy check of the start policy -> GRPO -> (rl.rounds > 1: the
iterated update, `stage_rounds`) -> eval and on-policy check of the trained policy -> report. Each stage skips itself when its manifest matches
(same config, same inputs), so a rerun after a crash or a change redoes only what changed; `from_stage`
forces a stage and every one after it. `run.json` is rewritten after each stage with its one-line summary,
so the report (and a person) can see how far a run got.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text
from latentrm.pipeline import plan
from latentrm.pipeline.config import PipelineConfig
from latentrm.stages import PIPELINE, recording

STAGE_NAMES = tuple(name for name, _ in PIPELINE)  # the order is the stage contract's (stages.py)


@dataclass
class Context:
    """What the stages hand each other while a pipeline runs."""

    config: PipelineConfig
    force_from: int
    log: Callable[[str], None]
    pairs: Path | None = None
    choice: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def force(self, stage: str) -> bool:
        return STAGE_NAMES.index(stage) >= self.force_from


def versions() -> dict[str, str]:
    """The versions a run depends on, for run.json and the report."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for package in ("latentrm", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def _manifest_summary(folder: Path) -> dict[str, Any]:
    from latentrm.stages import read_manifest

    manifest = read_manifest(folder) or {}
    return dict(manifest.get("summary") or {})


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.0f}%"


# --------------------------------------------------------------------------- the stages


def stage_data(ctx: Context) -> str:
    from latentrm.data.build import run

    ctx.pairs = run(plan.data_config(ctx.config), force=ctx.force("data"))
    summary = _manifest_summary(ctx.config.run_dir / "data")
    ctx.summaries["data"] = summary
    by_subset = ", ".join(f"{n} {k}" for k, n in sorted(summary.get("pairs_by_subset", {}).items()))
    return f"{summary.get('pairs')} pairs ({by_subset}) from {summary.get('completions')} completions"


def stage_features(ctx: Context) -> str:
    from latentrm.rm.extract import run

    folder = run(plan.features_config(ctx.config, _pairs(ctx)), force=ctx.force("features"), log=ctx.log)
    info = json.loads((folder / "features.json").read_text())
    return f"layers {', '.join(map(str, info['layers']))} for {info['texts']} texts, cached in {info['cache_dir']}"


def stage_sweep(ctx: Context) -> str:
    from latentrm.rm.sweep import run

    config = plan.sweep_config(ctx.config, _pairs(ctx))
    if config.select == "onpolicy":  # the start policy's own judged samples, before any head exists
        from latentrm.audit.onpolicy import judge_samples

        judged = judge_samples(plan.select_samples_config(ctx.config, _pairs(ctx)), force=ctx.force("sweep"))
        assert str(judged) == config.onpolicy, (judged, config.onpolicy)  # where the plan said they would be
    folder = run(config, force=ctx.force("sweep"), log=ctx.log)
    result = json.loads((folder / "sweep.json").read_text())
    ctx.choice = _choice(result)
    best = next(r for r in result["layers"] if r["layers"] == result["best_layers"]
                and r["head"] == result["best_head"] and r["pooling"] == result["best_pooling"])
    cv = f"cv {best['cv_accuracy']:.3f}, " if "cv_accuracy" in best else ""
    if best.get("onpolicy_report_auroc") is not None:
        cv = f"on-policy AUROC {best['onpolicy_report_auroc']:.3f} on the report half, " + cv
    return (f"chose {best['head']} at layer {best['layer']} ({best['pooling']}) by {result['chosen_on']} ({cv}"
            f"val {best['val_accuracy']:.3f}, test {best.get('test_accuracy', float('nan')):.3f}) of "
            f"{len(result['layers'])} candidates")


def _choice(sweep: dict[str, Any]) -> dict[str, Any]:
    return {"layers": tuple(sweep["best_layers"]), "head": sweep["best_head"], "pooling": sweep["best_pooling"]}


def stage_rm(ctx: Context) -> str:
    from latentrm.rm.stage import run

    if not ctx.choice:
        ctx.choice = _choice(json.loads((ctx.config.run_dir / "rm_sweep" / "sweep.json").read_text()))
    config = plan.rm_config(ctx.config, _pairs(ctx), layers=ctx.choice["layers"], head=ctx.choice["head"],
                            pooling=ctx.choice["pooling"])
    folder = run(config, force=ctx.force("rm"), log=ctx.log)
    metrics = json.loads((folder / "rm.json").read_text())["metrics"]
    split = "test" if "test" in metrics else "val"
    by_subset = ", ".join(f"{name} {m['accuracy']:.3f}" for name, m in metrics[split]["by_subset"].items())
    return f"{split} accuracy {metrics[split]['overall']['accuracy']:.3f} ({by_subset}) by entity"


def stage_audit(ctx: Context) -> str:
    from latentrm.audit.stage import run

    folder = run(plan.audit_config(ctx.config), force=ctx.force("audit"), log=ctx.log)
    verdicts = json.loads((folder / "report.json").read_text())["verdicts"]
    counts: dict[str, list[str]] = {}
    for probe, verdict in verdicts.items():
        counts.setdefault(verdict, []).append(probe)
    return "; ".join(f"{verdict} {len(names)} ({', '.join(names)})" for verdict, names in sorted(counts.items()))


def _eval(ctx: Context, which: str, policy: str) -> str:
    from latentrm.eval.metrics import headline_labels
    from latentrm.eval.runner import run

    lines = []
    for config in plan.eval_configs(ctx.config, which, policy, _pairs(ctx)):
        folder = run(config, force=ctx.force(f"eval_{which}"), replace_stale=True)  # the pipeline owns it
        metrics = json.loads((folder / "metrics.json").read_text())
        ctx.summaries.setdefault(f"eval_{which}", {})[metrics["set"]] = {
            label: entry["rate"] for label, entry in metrics["headline"].items()}
        rates, head = metrics["rates"], metrics["headline"]
        # the recipe's headline rates that this set has prompts for; a set without any (false premises under
        # knowledge awareness) reports agrees
        shown = [label for label in headline_labels(metrics) if (head.get(label) or {}).get("n")]
        if metrics["set"] == "false_premise" and "agrees" not in shown or not shown:
            agrees = rates.get("agrees", {}).get("rate")
            lines.append(f"{metrics['set']}: agrees {_percent(agrees)}")
        else:
            lines.append(f"{metrics['set']}: " + ", ".join(f"{label} {_percent(head[label]['rate'])}"
                                                          for label in shown))
    return "; ".join(lines)


def stage_warm_start(ctx: Context) -> str:
    from latentrm.rl.baselines import run

    config = plan.warm_start_config(ctx.config, _pairs(ctx))
    if config is None:
        return f"none (warm_start.method: none); RL starts from {ctx.config.model}"
    folder = run(config, force=ctx.force("warm_start"), log=ctx.log)
    history = json.loads((folder / "history.json").read_text())
    loss = f", loss {history[0]['loss']:.3g} -> {history[-1]['loss']:.3g}" if history else ""
    return f"{config.method}: {config.steps} steps at lr {config.learning_rate:g}{loss}; RL starts from {folder / 'policy'}"


def stage_eval_model(ctx: Context) -> str:
    """The untouched model on the same sets, when a warm start replaced it as the start policy: otherwise the
    warm start's cost (it hedges, and may answer fewer real people) is nowhere on the page."""
    if plan.warm_start_config(ctx.config, _pairs(ctx)) is None:
        return "no warm start: the start policy is the model itself (eval_base)"
    return _eval(ctx, "model", ctx.config.model)


def stage_eval_base(ctx: Context) -> str:
    return _eval(ctx, "base", plan.start_policy(ctx.config))  # the policy RL starts from (the warm start's)


def _onpolicy(ctx: Context, which: str, policy: str) -> str:
    from latentrm.audit.onpolicy import run

    rm = plan.final_rm(ctx.config) if which == "policy" else None  # the head the policy was trained against
    config = plan.onpolicy_config(ctx.config, which, policy, _pairs(ctx), rm=rm)
    if config is None:
        return "disabled (onpolicy.enabled: false)"
    report = json.loads((run(config, force=ctx.force(f"onpolicy_{which}")) / "onpolicy.json").read_text())
    ctx.summaries[f"onpolicy_{which}"] = {name: c["auroc"]["within_prompt"]["mean"]
                                          for name, c in report["classes"].items()}
    parts = []
    for name, c in report["classes"].items():
        a = c["auroc"]
        within = a["within_prompt"]["mean"]
        value = "-" if within is None or within != within else f"{within:.2f}"
        pooled = "-" if a["pooled"] is None or a["pooled"] != a["pooled"] else f"{a['pooled']:.2f}"
        parts.append(f"{name} within-prompt AUROC {value} over {a['prompts_with_both']} prompts (pooled {pooled}; "
                     f"{c['verdict']}, {c['n_wanted']}/{c['n_unwanted']} wanted/unwanted)")
    return f"{report['prompts']} prompts x {report['samples_per_prompt']}: " + "; ".join(parts)


def stage_onpolicy_base(ctx: Context) -> str:
    return _onpolicy(ctx, "base", plan.start_policy(ctx.config))


def stage_onpolicy_policy(ctx: Context) -> str:
    return _onpolicy(ctx, "policy", ctx.policy or plan.final_policy(ctx.config))


def stage_rl(ctx: Context) -> str:
    from latentrm.rl.grpo_trainer import run

    config = plan.rl_config(ctx.config, _pairs(ctx))
    folder = run(config, force=ctx.force("rl"), log=ctx.log, resume_unfinished=True)
    ctx.policy = str(folder / "policy")
    summary = json.loads((folder / "summary.json").read_text())
    scalars = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    shown = ", ".join(f"{k} {v:.3g}" for k, v in list(scalars.items())[:6])
    return f"{config.steps} GRPO steps ({config.shaper} reward, {config.mix} mix); {shown}"


def stage_rounds(ctx: Context) -> str:
    """The iterated update, rounds 2..R (`rl.rounds: R`): pairs from the last round's policy, merged with every
    earlier round's; reward model k on them (the sweep's read-out and head); RL from that policy against it.

    Round k lives in `rounds/<k>/` (data, pairs.parquet, rm, rl); each part skips itself when unchanged.
    """
    from latentrm.data.build import run as build
    from latentrm.pairs import load_pairs, merge_pairs, save_pairs
    from latentrm.rl.grpo_trainer import run as train_rl
    from latentrm.rm.stage import run as train_rm

    total = plan.rounds(ctx.config)
    if total == 1:
        return "1 round (rl.rounds: 1): no iterated update"
    if not ctx.choice:
        ctx.choice = _choice(json.loads((ctx.config.run_dir / "rm_sweep" / "sweep.json").read_text()))
    policy, sources, lines = str(ctx.config.run_dir / "rl" / "policy"), [_pairs(ctx)], []
    for k in range(2, total + 1):
        folder = plan.round_dir(ctx.config, k)
        ctx.log(f"round {k}/{total}: pairs from {policy}")
        sources.append(build(replace(plan.data_config(ctx.config), out=str(folder / "data"), policy=policy),
                             force=ctx.force("rounds")))
        merged = folder / "pairs.parquet"
        frame = merge_pairs([str(p) for p in sources])
        if not merged.exists() or not load_pairs(merged).equals(frame):  # the rm key reads the content anyway
            save_pairs(frame, merged)
        rm_config = replace(plan.rm_config(ctx.config, merged, layers=ctx.choice["layers"], head=ctx.choice["head"],
                                           pooling=ctx.choice["pooling"]), run_dir=str(folder),
                            cache_dir=str(ctx.config.run_dir / "cache"))  # earlier rounds' features stay cached
        rm_folder = train_rm(rm_config, force=ctx.force("rounds"), log=ctx.log)
        metrics = json.loads((rm_folder / "rm.json").read_text())["metrics"]
        split = "test" if "test" in metrics else "val"
        rl_folder = train_rl(plan.rl_config(ctx.config, merged, rm=rm_folder, run_dir=folder, policy=policy),
                             force=ctx.force("rounds"), log=ctx.log, resume_unfinished=True)
        policy = str(rl_folder / "policy")
        lines.append(f"round {k}: {len(frame)} pairs, rm {split} accuracy {metrics[split]['overall']['accuracy']:.3f}")
    ctx.policy = policy
    return "; ".join(lines) + f"; the last policy is {policy}"


def stage_eval_policy(ctx: Context) -> str:
    return _eval(ctx, "policy", ctx.policy or plan.final_policy(ctx.config))


def stage_report(ctx: Context) -> str:
    from latentrm.report import build_report

    return f"{build_report(ctx.config.run_dir)}"


STAGES: dict[str, Callable[[Context], str]] = {
    "data": stage_data, "features": stage_features, "sweep": stage_sweep, "rm": stage_rm, "audit": stage_audit,
    "warm_start": stage_warm_start, "eval_model": stage_eval_model, "eval_base": stage_eval_base, "onpolicy_base": stage_onpolicy_base, "rl": stage_rl,
    "rounds": stage_rounds, "eval_policy": stage_eval_policy, "onpolicy_policy": stage_onpolicy_policy, "report": stage_report,
}


def _pairs(ctx: Context) -> Path:
    if ctx.pairs is None:
        ctx.pairs = plan.pairs_path(ctx.config)
    if not ctx.pairs.exists():
        raise LatentrmError(f"{ctx.pairs}: no pairs file yet; run the data stage first (drop --from)")
    return ctx.pairs


# --------------------------------------------------------------------------- the run


def _write_run_json(ctx: Context, stages: dict[str, dict[str, Any]], command: str) -> None:
    from latentrm.models import (
        precision,  # the dtype every stage's model and trainer took, and the CPU's bf16
    )

    atomic_write_text(ctx.config.run_dir / "run.json", json.dumps({
        "name": ctx.config.name, "preset": ctx.config.preset, "command": command, "config": ctx.config.to_dict(),
        "versions": versions(), "precision": precision().as_dict(),
        "stages": {name: stages[name] for name in sorted(stages, key=_stage_order)}}, indent=1, default=str))


def _stage_order(name: str) -> int:
    return STAGE_NAMES.index(name) if name in STAGE_NAMES else len(STAGE_NAMES)


def run(config: PipelineConfig, *, from_stage: str | None = None, log: Callable[[str], None] = print, on_stage: Callable[[int, str, dict[str, Any]], None] | None = None,
        command: str | None = None) -> Path:
    """Run every stage in order into `config.run_dir`; returns the run folder.

    `on_stage(index, name, record)` is called before (record without "seconds") and after each stage, so
    the CLI can draw its progress display; `log` takes the stages' own one-line messages.
    """
    if from_stage is not None and from_stage not in STAGE_NAMES:
        raise LatentrmError(f"--from {from_stage!r}: use one of {', '.join(STAGE_NAMES)}")
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    command = command or " ".join(shlex.quote(a) for a in ["latentrm", *sys.argv[1:]])
    ctx = Context(config, STAGE_NAMES.index(from_stage) if from_stage else len(STAGE_NAMES), log)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    previous = config.run_dir / "run.json"
    records: dict[str, dict[str, Any]] = {}
    if previous.exists():
        try:
            records = dict(json.loads(previous.read_text()).get("stages") or {})
        except (OSError, json.JSONDecodeError):
            records = {}
    for index, name in enumerate(STAGE_NAMES):
        if on_stage:
            on_stage(index, name, {})
        started = time.perf_counter()
        with recording() as written:
            summary = STAGES[name](ctx)
        record: dict[str, Any] = {"summary": summary, "seconds": round(time.perf_counter() - started, 1)}
        if not written and dict(PIPELINE)[name] is not None:
            # the stage wrote no manifest: up to date, or switched off (no warm start, one round): skipped
            earlier = records.get(name) or {}
            record["skipped"] = True
            record["built_seconds"] = earlier.get("built_seconds", earlier.get("seconds"))  # when it last ran
        records[name] = record
        _write_run_json(ctx, records, command)
        if on_stage:
            on_stage(index, name, records[name])
    from latentrm.report import build_report

    build_report(config.run_dir)  # again (seconds), so the report shows the report stage in run.json too
    return config.run_dir
