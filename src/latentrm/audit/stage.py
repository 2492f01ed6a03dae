"""The audit stage: run every probe on a saved reward model and write `<run-dir>/audit/`.

    latentrm rm audit --rm runs/quick/rm                     # pairs file recorded in rm.json
    latentrm rm audit --rm runs/quick/rm --completions gens.jsonl --probes surface,examples
    latentrm rm audit --rm runs/quick/rm --probes all,backbone  # and the backbone probe (audit/probe.json)

What it does: scores the pairs' chosen and rejected completions (held-out rows by
default: split val+test, else all rows; or a generations file with prompt, completion
and optional subset), runs the probes in `context.PROBES` on that scored set, prints one
summary line per probe and the surface-correlation table, and writes
`audit/report.json`, `audit/score_vs_length.png`, `audit/counterfactual.png` and
`audit/steering.png` plus the resolved `config.json`. The report is written last.

Where it departs from the issue text: see the thresholds in `probes.Thresholds`
(correlation flags also need p < 0.05; "pays" means an interval above 0 and at least
0.2 score std).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latentrm.audit.context import (
    AuditContext,
    CachedScorer,
    ProbeResult,
    ScoredSet,
    Scorer,
    Thresholds,
    run_probes,
    score_set,
    scored_set_from_pairs,
)
from latentrm.audit.stats import json_safe
from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text
from latentrm.stages import Timer, begin, forget, input_hashes, is_done, stage_key, write_manifest


@dataclass(frozen=True)
class AuditConfig:
    rm: str = field(metadata={"help": "reward-model folder (rm.json + head.safetensors)"})
    pairs: str | None = field(default=None, metadata={"help": "pairs file; default: the one in rm.json"})
    completions: str | None = field(default=None, metadata={"help": "generations file: prompt, completion, subset?"})
    run_dir: str | None = field(default=None, metadata={"help": "run directory; default: the rm folder's parent"})
    split: str = field(default="heldout", metadata={"help": "heldout (val+test, else all) | all | train | val | test"})
    max_pairs: int = field(default=300, metadata={"help": "pairs scored (sampled per subset)"})
    max_edits: int = field(default=60, metadata={"help": "completions per subset for edits and prompts per subset"})
    probes: tuple[str, ...] = field(default=(), metadata={"help": "probe names; default all"})
    steering_texts: tuple[str, ...] = field(default=(), metadata={"help": "steering notes; default: the recipe's"})
    recipe: str | None = field(default=None, metadata={"help": "recipe whose steering notes to use"})
    seed: int = 0
    batch_size: int | None = None


def select_pairs(frame: Any, split: str, max_pairs: int, seed: int = 0) -> tuple[Any, str]:
    """Rows of the pairs frame to audit, and a description of the choice."""
    if split not in ("heldout", "all", "train", "val", "test"):
        raise LatentrmError(f"--split '{split}' is not one of heldout, all, train, val, test")
    has_split = "split" in frame.columns
    chosen_split = split
    if split == "heldout":
        held = frame[frame["split"].isin(["val", "test"])] if has_split else frame.iloc[:0]
        frame, chosen_split = (held, "val+test") if len(held) else (frame, "all (no held-out rows)")
    elif split != "all":
        if not has_split or not (frame["split"] == split).any():
            raise LatentrmError(f"the pairs file has no rows with split '{split}'; use --split all")
        frame = frame[frame["split"] == split]
    if len(frame) > max_pairs:  # keep subsets in proportion
        share = max_pairs / len(frame)
        parts = [group.sample(n=max(1, int(round(len(group) * share))), random_state=seed)
                 for _, group in frame.groupby("subset", sort=True)]
        import pandas as pd

        frame = pd.concat(parts).sort_index()
    return frame.reset_index(drop=True), chosen_split


def load_completions(path: str | Path) -> Any:
    from latentrm.io import read_table

    frame = read_table(path)
    missing = [c for c in ("prompt", "completion") if c not in frame.columns]
    if missing:
        raise LatentrmError(f"{path}: missing column(s) {', '.join(missing)}; a generations file needs "
                            "prompt and completion (and optionally subset)")
    for index, value in enumerate(frame["completion"]):
        if not isinstance(value, str) or not value.strip():
            raise LatentrmError(f"{path}: row {index + 1} has an empty 'completion'; fill it in or remove it")
    if "subset" not in frame.columns:
        frame = frame.assign(subset="all")
    return frame


def audit_scorer(scorer: Scorer, scored: ScoredSet | None = None, *, pairs: Any = None, tokenizer: Any = None,
                 probes: tuple[str, ...] | list[str] = (), steering: list[str] | None = None,
                 steering_source: str = "given", rm: Any = None, per_head: Any = None, max_edits: int = 60,
                 seed: int = 0, thresholds: Thresholds | None = None) -> tuple[list[ProbeResult], AuditContext]:
    """Run probes on any scorer `fn(prompts, completions) -> list[float]` over a pairs frame or a scored set."""
    cached = scorer if isinstance(scorer, CachedScorer) else CachedScorer(scorer)
    if scored is None:
        if pairs is None:
            raise LatentrmError("audit_scorer needs either a pairs frame or a scored set")
        scored = scored_set_from_pairs(cached, pairs)
    if steering is None:
        from latentrm.audit.text import steering_texts

        steering, steering_source = steering_texts()
    ctx = AuditContext(scorer=cached, scored=scored, tokenizer=tokenizer, steering=list(steering),
                       steering_source=steering_source, per_head=per_head, rm=rm, max_edits=max_edits, seed=seed,
                       thresholds=thresholds or Thresholds())
    return run_probes(ctx, list(probes) or None), ctx


def write_plots(ctx: AuditContext, results: list[ProbeResult], folder: Path) -> list[str]:
    from latentrm.audit import plots
    from latentrm.audit.text import surface_features

    written = []
    by_name = {r.name: r for r in results}
    scored = ctx.scored
    if "surface" in by_name and len(scored.scores):
        lengths = surface_features(scored.completions, ctx.tokenizer)["length"]
        rho = {s: row["length"]["partial_rho"] for s, row in by_name["surface"].numbers["by_subset"].items()}
        written.append(plots.score_vs_length(lengths, scored.scores.tolist(), scored.subsets.tolist(), scored.labels.tolist(),
                                             rho, folder / "score_vs_length.png").name)
    threshold = ctx.thresholds.effect
    if "counterfactual" in by_name:
        written.append(plots.effects(by_name["counterfactual"].numbers["effects"], threshold,
                                     folder / "counterfactual.png").name)
    if by_name.get("steering_leakage") and by_name["steering_leakage"].verdict != "skip":
        written.append(plots.effects(by_name["steering_leakage"].numbers["effects"], threshold,
                                     folder / "steering.png",
                                     title="Steering-note leakage: score change beyond max(0, an ordinary hedge's), 95% interval").name)
    if by_name.get("backbone") and by_name["backbone"].verdict != "skip":
        from latentrm.audit.backbone_probe import write_outputs

        write_outputs(by_name["backbone"].numbers, folder)  # probe.json (what the report's probe table reads)
        written.append("probe.png")
    return written


def _no_log(message: str) -> None:
    return None


def run(config: AuditConfig, *, force: bool = False, log: Callable[[str], None] = _no_log) -> Path:
    """Load the reward model, score, probe, plot and write `<run-dir>/audit/report.json` (`manifest.json` last).

    Skipped when the folder's manifest has the same key: the config, the reward model's own key and the
    content hash of the pairs or completions file.
    """
    from latentrm.audit.ensemble import rm_per_head
    from latentrm.audit.text import steering_texts
    from latentrm.pairs import assign_splits, load_pairs
    from latentrm.rm.model import LatentRewardModel

    meta = LatentRewardModel.read_meta(config.rm)
    folder = Path(config.run_dir or Path(config.rm).parent) / "audit"
    if config.completions:
        frame, source = load_completions(config.completions), f"completions {config.completions}"
    else:
        pairs_path = config.pairs or meta.get("training", {}).get("pairs_file")
        if not pairs_path or not Path(pairs_path).exists():
            raise LatentrmError(f"no pairs file to audit on (rm.json names {pairs_path!r}); pass --pairs or "
                                "--completions")
        # the same split assignment `rm train` used, so "heldout" means rows the head never saw
        frame, chosen_split = select_pairs(assign_splits(load_pairs(pairs_path)), config.split, config.max_pairs,
                                           config.seed)
        source = f"pairs {pairs_path} ({chosen_split}, {len(frame)} pairs)"
    inputs = input_hashes({"rm": config.rm, **({"completions": config.completions} if config.completions
                                                else {"pairs": pairs_path})})
    key = stage_key(config, inputs)
    if not force and is_done(folder, key):
        log(f"{folder} is up to date (same reward model, data and probes); pass --force to redo it")
        return folder
    forget(folder)
    timer = Timer()
    rm = LatentRewardModel.load(config.rm)
    scorer = CachedScorer(lambda p, c: rm.score(p, c, batch_size=config.batch_size))
    if config.completions:
        scored = score_set(scorer, list(frame["prompt"]), list(frame["completion"]), [str(s) for s in frame["subset"]])
    else:
        scored = scored_set_from_pairs(scorer, frame)
    recipe = config.recipe
    if recipe is None and "recipe" in frame.columns and frame["recipe"].notna().any():
        recipe = str(frame["recipe"].dropna().iloc[0])  # the recipe that built these pairs
        from latentrm.data.recipes import list_recipe_names

        if recipe not in list_recipe_names():
            raise LatentrmError(f"{config.pairs or 'the pairs'}: built by recipe {recipe!r}, which is no shipped "
                                "recipe; pass its file with --recipe path/to/recipe.yaml")
    steering, steering_source = (list(config.steering_texts), "given") if config.steering_texts else \
        steering_texts(recipe)
    results, ctx = audit_scorer(scorer, scored, tokenizer=rm.backbone.tokenizer, probes=config.probes,
                                steering=steering, steering_source=steering_source, rm=rm,
                                per_head=rm_per_head(rm), max_edits=config.max_edits, seed=config.seed)
    log(f"audited {config.rm} on {source}; {len(scorer.memo)} texts scored")
    folder.mkdir(parents=True, exist_ok=True)
    written = write_plots(ctx, results, folder)
    probe_files = ["probe.json"] if "probe.png" in written else []
    if not probe_files:  # an earlier audit's backbone probe must not pass for this one's
        for stale in ("probe.json", "probe.png"):
            (folder / stale).unlink(missing_ok=True)
    begin(folder, "audit", key, config)
    report = {"rm": str(config.rm), "source": source, "created_at": _dt.datetime.now(_dt.UTC).isoformat(
        timespec="seconds"), "thresholds": asdict(ctx.thresholds), "n_scored": int(len(scored.scores)),
        "verdicts": {r.name: r.verdict for r in results}, "probes": [r.to_dict() for r in results], "plots": written}
    atomic_write_text(folder / "report.json", json.dumps(json_safe(report), indent=1))
    write_manifest(folder, "audit", key, config, inputs=inputs, outputs=["report.json", "config.json", *written, *probe_files],
                   summary={"verdicts": report["verdicts"]}, seconds=timer.seconds())
    return folder
