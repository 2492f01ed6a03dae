"""`latentrm rm sweep`: which read-out? One head per (layers, pooling, head type), chosen on val or by k-fold.

    latentrm rm sweep --pairs P --layers 9,15,21,15+21 --pooling last,mean,prompt+mean --head mlp,linear,bilinear --cv 5

- **Candidates** are every (layers, pooling, head) combination. `layers` is one layer or several joined by `+`
  (their states side by side); `pooling` is a read-out spec (`features.pooling_parts`); the `bilinear` head
  needs a two-part read-out that starts with `prompt` (it reads "do I know this name" from the prompt state),
  so it is paired only with those, and asking for it with none is an error.
- **One extraction pass**: every layer and base read-out the candidates need comes from one truncated forward
  (`extract_features` with the union of the parts), through the feature cache.
- **Choice.** By default each candidate trains on `train` with early stopping on `val`, and the best val
  accuracy wins. With `cv=K`, the choice is made by entity-grouped K-fold cross-validation over train + val
  (each fold stops early on a random tenth of its own training rows, so no fold peeks at its held-out rows),
  which is far less noisy than a small val split when there are many candidates. Test is
  reported for every candidate but never used to choose; `sweep.json` records the chosen candidate's val-test
  gap (and CV-test gap).
- **On-policy choice** (`select="onpolicy"`, `onpolicy=judged.jsonl` from `rm onpolicy`): every candidate also
  scores the start policy's own judged samples, and the candidate with the highest minimum over classes of
  the within-prompt AUROC of wanted over unwanted samples (the pooled one beside it) on one half of the
  prompts wins (`rm/onpolicy_select.py`); the other half is
  reported beside it, with the pair metric, and so is the candidate the pair metric would have chosen. Given
  `onpolicy` without `select="onpolicy"`, the columns are reported and the pair metric chooses.
- **Learning curve** (`curve`): the chosen candidate retrained on growing, entity-grouped shares of train, its
  test accuracy at each, so a user can see whether more samples would help.

Ties are broken toward the earlier candidate in (layers, pooling, head) order, so the choice is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text, config_hash, stable_id
from latentrm.models import Backbone, load_backbone
from latentrm.pairs import frame_hash, load_pairs
from latentrm.rm.stage import RMStageConfig, pair_features, split_frame
from latentrm.rm.train import score_array, train_head
from latentrm.stages import Timer, forget, is_done, stage_key, write_manifest

LayerSpec = tuple[int, ...]
SELECTS = ("pairs", "onpolicy")  # what chooses the candidate: pair accuracy (val or cv), or on-policy AUROC


def _no_log(message: str) -> None:
    return None


def layer_label(layers: Sequence[int]) -> str:
    return "+".join(str(layer) for layer in layers)


def parse_layer_specs(text: str, option: str = "--layers") -> list[LayerSpec]:
    """`"9,15,15+21"` -> `[(9,), (15,), (15, 21)]`; a malformed item is a one-line error."""
    specs: list[LayerSpec] = []
    for item in (part for part in text.replace(" ", "").split(",") if part):
        try:
            specs.append(tuple(int(layer) for layer in item.split("+")))
        except ValueError:
            raise LatentrmError(f"{option} '{text}': '{item}' is not a layer or layers joined by '+' "
                                "(e.g. 9,15,21 or 15+21)") from None
    if not specs:
        raise LatentrmError(f"{option} is empty; give layers such as 9,15,21")
    return specs


def candidates(layer_specs: Sequence[LayerSpec], poolings: Sequence[str], heads: Sequence[str]
               ) -> list[tuple[LayerSpec, str, str]]:
    """Every (layers, pooling, head) to try; `bilinear` only on `prompt+X` read-outs."""
    from latentrm.features import pooling_parts

    def fits(pooling: str, head: str) -> bool:
        parts = pooling_parts(pooling)
        return head != "bilinear" or (len(parts) == 2 and parts[0] == "prompt")

    if "bilinear" in heads and not any(fits(p, "bilinear") for p in poolings):
        raise LatentrmError("the bilinear head reads a prompt state and a completion state: add a pooling such as "
                            "prompt+mean or prompt+last to --pooling")
    return [(spec, pooling, head) for spec in layer_specs for pooling in poolings for head in heads
            if fits(pooling, head)]


def entity_folds(frame: pd.DataFrame, k: int) -> np.ndarray:
    """A fold index `[n]` in 0..k-1 per row, the same for every row of one entity (stable across runs)."""
    column = "entity_id" if "entity_id" in frame.columns else "prompt"
    groups = [str(value) for value in frame[column]]
    names = sorted(set(groups), key=lambda g: stable_id("fold", g))  # a seeded shuffle, then round robin
    if len(names) < k:
        raise LatentrmError(f"--cv {k} needs at least {k} entities in train + val, found {len(names)}; lower --cv")
    fold_of = {name: index % k for index, name in enumerate(names)}
    return np.array([fold_of[g] for g in groups])


def _accuracy(gaps: np.ndarray, mask: np.ndarray, subsets: np.ndarray) -> dict[str, Any]:
    return {"accuracy": float((gaps[mask] > 0).mean()), "n": int(mask.sum()),
            "by_subset": {str(s): float((gaps[mask & (subsets == s)] > 0).mean()) for s in sorted(set(subsets[mask]))}}


def _features_for(by_layer: dict[int, tuple[np.ndarray, np.ndarray]], spec: LayerSpec,
                  parts: int) -> tuple[np.ndarray, np.ndarray]:
    from latentrm.features import stack_readout

    return (stack_readout({layer: by_layer[layer][0] for layer in spec}, spec, parts),
            stack_readout({layer: by_layer[layer][1] for layer in spec}, spec, parts))


@dataclass(frozen=True)
class SweepConfig:
    """The `rm_sweep` stage: one head per (layers, read-out, head type) on the same pairs, one chosen.

    `rm` holds what every candidate shares (pairs, backbone, run folder, training options); `heads` and
    `poolings` default to its head and read-out. `cv` 0 chooses on val, K >= 2 by entity-grouped K-fold
    cross-validation; `select` onpolicy chooses by AUROC on the start policy's judged samples (`onpolicy`).
    """

    rm: RMStageConfig
    layers: tuple[LayerSpec, ...]
    heads: tuple[str, ...] = ()
    poolings: tuple[str, ...] = ()
    cv: int = 0
    curve: tuple[float, ...] = ()
    select: str = "pairs"
    onpolicy: str | None = None

    def validate(self) -> SweepConfig:
        """One-line errors for every option, before any model loads; returns the config with defaults filled."""
        from typing import get_args

        from latentrm.features import pooling_parts
        from latentrm.rm.heads import HeadType

        heads = self.heads or (self.rm.train.head,)
        poolings = self.poolings or (self.rm.pooling,)
        bad = [h for h in heads if h not in get_args(HeadType)]
        if bad:
            raise LatentrmError(f"heads: unknown head(s) {', '.join(bad)}; use {', '.join(get_args(HeadType))}")
        try:
            for pooling in poolings:
                pooling_parts(pooling)
        except LatentrmError as exc:
            raise LatentrmError(f"poolings: {exc}") from None
        if not self.layers or any(not spec for spec in self.layers):
            raise LatentrmError("layers: a sweep needs layers, such as 9,15,21")
        if isinstance(self.cv, bool) or not isinstance(self.cv, int) or self.cv == 1 or self.cv < 0:
            raise LatentrmError(f"cv {self.cv!r}: use 0 (choose on val) or K >= 2 folds")
        if not all(isinstance(x, int | float) and 0 < x <= 1 for x in self.curve):
            raise LatentrmError(f"curve {list(self.curve)!r}: give shares of train in (0, 1]")
        if self.select not in SELECTS:
            raise LatentrmError(f"select {self.select!r}: use pairs (val or cv accuracy) or onpolicy (AUROC on "
                                "the start policy's judged samples)")
        if self.select == "onpolicy" and self.onpolicy is None:
            raise LatentrmError("select onpolicy needs the judged samples (--onpolicy judged.jsonl, written by "
                                "`latentrm rm onpolicy`)")
        candidates(self.layers, poolings, heads)  # a head that fits no read-out
        return replace(self, heads=tuple(heads), poolings=tuple(poolings), curve=tuple(float(x) for x in self.curve))


def run(config: SweepConfig, *, backbone: Backbone | None = None, force: bool = False,
        log: Callable[[str], None] = _no_log) -> Path:
    """Train and score every candidate; write `<run-dir>/rm_sweep/sweep.json` (and the manifest, last)."""
    from latentrm.features import pooling_parts, resolve_layers
    from latentrm.rm import onpolicy_select

    sweep = config.validate()
    rm, heads, poolings, cv, curve, select = (sweep.rm, list(sweep.heads), list(sweep.poolings), sweep.cv,
                                              sweep.curve, sweep.select)
    judged = onpolicy_select.load_judged(sweep.onpolicy) if sweep.onpolicy is not None else None
    frame = split_frame(load_pairs(rm.pairs))
    out = Path(rm.run_dir) / "rm_sweep"
    backbone = backbone or load_backbone(rm.model, dtype=rm.dtype, device=rm.device)
    specs = [tuple(resolve_layers(list(s), backbone.num_layers)) for s in sweep.layers]
    todo = candidates(specs, poolings, heads)
    judged_key = None if judged is None else [select, config_hash(
        [[r["prompt_id"], r["prompt"], r["completion"], r["class"], r["side"]] for r in judged])]
    options = {k: v for k, v in asdict(replace(sweep, layers=tuple(specs))).items() if k not in ("rm", "onpolicy")}
    inputs = {"pairs": frame_hash(frame)}
    key = stage_key(rm, inputs, extra={"backbone": backbone.revision, "sweep": options, "judged": judged_key})
    if not force and is_done(out, key):
        log(f"{out} is up to date (same config, layers, read-outs, heads and pairs); pass --force to redo it")
        return out
    forget(out)
    timer = Timer()
    all_parts = list(dict.fromkeys(part for p in poolings for part in pooling_parts(p)))
    all_layers = sorted({layer for spec in specs for layer in spec})
    pair_features(backbone, frame, all_layers, replace(rm, pooling="+".join(all_parts)))  # the one forward
    by_pooling = {p: pair_features(backbone, frame, all_layers, replace(rm, pooling=p)) for p in poolings}
    split = frame["split"].to_numpy()
    train_mask, val_mask, test_mask = split == "train", split == "val", split == "test"
    if not val_mask.any():
        raise LatentrmError("a sweep needs rows with split=val to choose on (test rows only report)")
    subsets = frame["subset"].to_numpy()
    pool_mask = train_mask | val_mask
    folds = entity_folds(frame[pool_mask], cv) if cv else None
    on_features: dict[str, dict[int, np.ndarray]] = {}
    if judged is not None:
        from latentrm.features import extract_features
        from latentrm.rm.stage import _cache_dir

        half_of = onpolicy_select.halves(judged)
        for pooling in poolings:  # the judged samples' states, through the same feature cache
            on_features[pooling] = extract_features(
                backbone, [r["prompt"] for r in judged], [r["completion"] for r in judged], all_layers, pooling,  # type: ignore[arg-type]
                cache_dir=_cache_dir(rm), batch_size=rm.batch_size, max_length=rm.max_length)
    rows: list[dict[str, Any]] = []
    for spec, pooling, head in todo:
        chosen_f, rejected_f = _features_for(by_pooling[pooling], spec, len(pooling_parts(pooling)))
        train = replace(rm.train, head=head)
        result = train_head(chosen_f[train_mask], rejected_f[train_mask], chosen_f[val_mask], rejected_f[val_mask],
                            train)
        gaps = score_array(result.head, chosen_f) - score_array(result.head, rejected_f)  # [n]
        row: dict[str, Any] = {"layer": spec[0] if len(spec) == 1 else layer_label(spec), "layers": list(spec), "pooling": pooling, "head": head,
                               "best_epoch": result.best_epoch}
        for name, mask in (("val", val_mask), ("test", test_mask)):
            if mask.any():
                metrics = _accuracy(gaps, mask, subsets)
                row[f"{name}_accuracy"], row[f"n_{name}"] = metrics["accuracy"], metrics["n"]
                row[f"{name}_by_subset"] = metrics["by_subset"]
        if folds is not None:
            row["cv_accuracy"] = _cross_validate(chosen_f[pool_mask], rejected_f[pool_mask], folds, train)
        if judged is not None:
            from latentrm.features import stack_readout

            features = stack_readout({layer: on_features[pooling][layer] for layer in spec}, spec,
                                     len(pooling_parts(pooling)))
            report = onpolicy_select.candidate_report(score_array(result.head, features), judged, half_of)
            row["onpolicy_select_auroc"], row["onpolicy_report_auroc"] = (report["select"]["min"],
                                                                          report["report"]["min"])
            row["onpolicy_select_pooled"] = report["select"]["pooled_mean"]
            row["onpolicy_by_class"] = {half: report[half]["by_class"] for half in onpolicy_select.HALVES}
        rows.append(row)
    chosen_on = f"{cv}-fold cv" if cv else "val"
    score_key = "cv_accuracy" if cv else "val_accuracy"
    pair_best = max(rows, key=lambda r: r[score_key])  # max keeps the first of a tie
    best = pair_best
    onpolicy_report: dict[str, Any] = {}
    if judged is not None:
        onpolicy_report = {"onpolicy": {"file": str(sweep.onpolicy), "samples": len(judged),
                                        "counts": onpolicy_select.counts(judged, half_of),
                                        "pair_choice": {k: pair_best[k] for k in ("layers", "pooling", "head",
                                                                                   "onpolicy_report_auroc")}}}
        ranked = [r for r in rows if r["onpolicy_select_auroc"] is not None]
        if select == "onpolicy" and ranked:
            best = max(ranked, key=lambda r: (r["onpolicy_select_auroc"], r[score_key]))
            chosen_on = "on-policy within-prompt AUROC, weakest class (select half)"
        elif select == "onpolicy":
            chosen_on += (f" (no class has {onpolicy_select.MIN_SIDE}+ wanted and unwanted samples from "
                          f"{onpolicy_select.MIN_PROMPTS}+ prompts with both on the select half)")
            log(f"--select onpolicy: {chosen_on}; the pair metric chose")
    choice = {"best_layer": best["layers"][0] if len(best["layers"]) == 1 else best["layer"],
              "best_layers": best["layers"], "best_pooling": best["pooling"], "best_head": best["head"]}
    gaps_report = {"val_test_gap": best["val_accuracy"] - best["test_accuracy"]} if "test_accuracy" in best else {}
    if cv and "test_accuracy" in best:
        gaps_report["cv_test_gap"] = best["cv_accuracy"] - best["test_accuracy"]
    learning = _learning_curve(frame, by_pooling[best["pooling"]], best, rm, curve) if curve else []
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps({"layers": rows, **choice, "chosen_on": chosen_on, **gaps_report,
                                                      **onpolicy_report,
                                                      "learning_curve": learning, "config": rm.to_dict()},
                                                     indent=1, default=str))
    write_manifest(out, "rm_sweep", key, sweep, inputs=inputs, outputs=["sweep.json"],
                   summary={**choice, "chosen_on": chosen_on, "val_accuracy": best["val_accuracy"],
                            "test_accuracy": best.get("test_accuracy"), "cv_accuracy": best.get("cv_accuracy"),
                            "onpolicy_report_auroc": best.get("onpolicy_report_auroc")},
                   seconds=timer.seconds())
    return out


def _cross_validate(chosen: np.ndarray, rejected: np.ndarray, folds: np.ndarray, train: Any) -> float:
    """Pooled held-out accuracy over the folds (every train + val pair is held out exactly once)."""
    correct = 0
    for fold in range(int(folds.max()) + 1):
        held = folds == fold
        if held.all() or not held.any():
            continue
        # no validation set given: train_head stops on a tenth of the fold's own training rows
        result = train_head(chosen[~held], rejected[~held], None, None, train)
        correct += int((score_array(result.head, chosen[held]) > score_array(result.head, rejected[held])).sum())
    return correct / len(folds)


def _learning_curve(frame: pd.DataFrame, by_layer: dict[int, tuple[np.ndarray, np.ndarray]], best: dict[str, Any],
                    config: RMStageConfig, shares: Sequence[float]) -> list[dict[str, Any]]:
    """Test accuracy of the chosen candidate trained on growing entity-grouped shares of train."""
    from latentrm.features import pooling_parts

    chosen_f, rejected_f = _features_for(by_layer, tuple(best["layers"]), len(pooling_parts(best["pooling"])))
    split = frame["split"].to_numpy()
    train_mask, val_mask, test_mask = split == "train", split == "val", split == "test"
    if not test_mask.any():
        return []
    column = "entity_id" if "entity_id" in frame.columns else "prompt"
    entities = sorted({str(e) for e in frame.loc[train_mask, column]}, key=lambda e: stable_id("curve", e))
    subsets = frame["subset"].to_numpy()
    points = []
    for share in sorted(shares):
        keep = set(entities[: max(2, round(share * len(entities)))])  # nested: each share contains the smaller
        mask = train_mask & frame[column].astype(str).isin(keep).to_numpy()
        result = train_head(chosen_f[mask], rejected_f[mask], chosen_f[val_mask], rejected_f[val_mask],
                            replace(config.train, head=best["head"]))
        gaps = score_array(result.head, chosen_f) - score_array(result.head, rejected_f)
        metrics = _accuracy(gaps, test_mask, subsets)
        points.append({"share": float(share), "n_train": int(mask.sum()), "test_accuracy": metrics["accuracy"],
                       "test_by_subset": metrics["by_subset"]})
    return points


def table(result: dict[str, Any]) -> Any:
    """`sweep.json` as a `rich.table.Table`: cv (if any), val and test accuracy per layers x read-out x head."""
    from rich.table import Table

    rows = result["layers"]
    best = next(r for r in rows if r["layers"] == result["best_layers"] and r["head"] == result["best_head"]
                and r.get("pooling") == result.get("best_pooling"))
    table = Table(title=f"read-out sweep (* = chosen by {result.get('chosen_on', 'val')})")
    table.add_column("layer", justify="right")
    table.add_column("pooling", no_wrap=True)
    table.add_column("head", no_wrap=True)
    if "cv_accuracy" in rows[0]:
        table.add_column("cv acc", justify="right")
    splits = [split for split in ("val", "test") if f"{split}_accuracy" in rows[0]]
    subset_names = sorted({name for r in rows for split in splits for name in r[f"{split}_by_subset"]})
    for split in splits:
        table.add_column(f"{split} acc (n={rows[0][f'n_{split}']})", justify="right")
        for name in subset_names:
            table.add_column(f"{split} {name}", justify="right")
    on_policy = "onpolicy_select_auroc" in rows[0]
    if on_policy:
        table.add_column("on-policy AUROC select", justify="right")
        table.add_column("report", justify="right")
    for row in rows:
        cells = [f"{row['cv_accuracy']:.3f}"] if "cv_accuracy" in row else []
        for split in splits:
            cells.append(f"{row[f'{split}_accuracy']:.3f}")
            by_subset = row[f"{split}_by_subset"]
            cells += [f"{by_subset[n]:.3f}" if n in by_subset else "-" for n in subset_names]
        if on_policy:
            cells += ["-" if row[k] is None else f"{row[k]:.3f}" for k in ("onpolicy_select_auroc",
                                                                           "onpolicy_report_auroc")]
        table.add_row(str(row["layer"]) + (" *" if row is best else ""), row.get("pooling", "last"), row["head"],
                      *cells)
    return table


def learning_curve_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"learning curve ({result['best_head']}, layer {layer_label(result['best_layers'])}, "
                        f"{result['best_pooling']})")
    for name in ("share of train", "pairs", "test acc", "by subset"):
        table.add_column(name, justify="right")
    for point in result.get("learning_curve", []):
        table.add_row(f"{point['share']:.0%}", str(point["n_train"]), f"{point['test_accuracy']:.3f}",
                      ", ".join(f"{k} {v:.3f}" for k, v in point["test_by_subset"].items()))
    return table
