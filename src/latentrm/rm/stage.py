"""The `rm` stage: features -> Bradley-Terry head -> metrics -> `rm/` folder.

    latentrm rm train --pairs examples/pairs.jsonl --run-dir runs/quick --layer 15
    latentrm rm eval  --rm runs/quick/rm --pairs other_pairs.parquet

Every function takes a frozen config and returns the folder it wrote. Features
come from the content-addressed cache (`<run-dir>/cache` unless `cache_dir` is
set), so re-training with another head, seed or margin costs no forward pass.
The sweep over layers, read-outs and heads is `rm/sweep.py`. The stage contract
is `latentrm.stages`: a run whose config and pairs hash match the folder's
`manifest.json` is skipped (pass `force=True` to redo it).
Nothing here prints: the CLI (`rm/cli.py`) prints `rich_metrics_table`, which
the report can reuse.

Splits: rows keep their `split` column (assigned by entity at data-build time);
files without one get a hashed split by `entity_id` (else by prompt). The head
trains on `train`, early-stops on `val`, and metrics are reported for every split.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text
from latentrm.models import Backbone, load_backbone
from latentrm.pairs import assign_splits, frame_hash, load_pairs
from latentrm.rm.metrics import pair_metrics, score_quantiles
from latentrm.rm.train import TrainConfig, score_array, train_head
from latentrm.stages import Timer, begin, forget, is_done, stage_key, write_manifest

MIN_QUANTILE_ROWS = 20


@dataclass(frozen=True)
class RMStageConfig:
    pairs: str = field(metadata={"help": "pairs file (.parquet or .jsonl)"})
    run_dir: str = field(default="runs/quick", metadata={"help": "run directory"})
    model: str = field(default="embedded", metadata={"help": "backbone: embedded | HF id | local folder"})
    layer: int | None = field(default=None, metadata={"help": "layer to read; default: half the depth"})
    pooling: str = field(default="last", metadata={"help": "read-out: last | mean | prompt | lastK | a+b "
                                                                "(features.pooling_parts)"})
    concat_layers: tuple[int, ...] = field(default=(), metadata={"help": "read these layers side by side "
                                                                         "(overrides layer)"})
    max_length: int = field(default=2048, metadata={"help": "max tokens per scored text"})
    batch_size: int = field(default=16, metadata={"help": "texts per forward batch"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16"})
    device: str | None = field(default=None, metadata={"help": "cpu | cuda; default: cuda if available"})
    cache_dir: str | None = field(default=None, metadata={"help": "feature cache; default <run-dir>/cache"})
    train: TrainConfig = field(default_factory=TrainConfig)
    out_name: str = field(default="rm", metadata={"help": "stage folder name inside the run directory"})
    ensemble: int = field(default=1, metadata={"help": "number of heads; > 1 trains an ensemble (rm/ensemble.py)"})
    ensemble_mode: str = field(default="seed", metadata={"help": "ensemble members differ by: seed | bootstrap | "
                                                                  "layers"})
    ensemble_layers: tuple[int, ...] = field(default=(), metadata={"help": "layers of a `layers` ensemble"})
    edits: tuple[str, ...] = field(default=(), metadata={"help": "content-free edits of the training completions "
                                                                 "to train away (rm/augment.py)"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cache_dir(config: RMStageConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else Path(config.run_dir) / "cache"


def default_layer(num_layers: int) -> int:
    return max(1, num_layers // 2)


def pair_features(backbone: Backbone | Callable[[], Backbone], frame: pd.DataFrame, layers: list[int],
                  config: RMStageConfig) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """`{layer: (chosen [n, hidden], rejected [n, hidden])}` through the cache, in one extraction pass."""
    from latentrm.features import extract_features

    prompts = list(frame["prompt"])
    completions = list(frame["chosen"]) + list(frame["rejected"])
    features = extract_features(backbone, prompts + prompts, completions, layers, config.pooling,  # type: ignore[arg-type]
                                cache_dir=_cache_dir(config), batch_size=config.batch_size,
                                max_length=config.max_length, progress=True)
    n = len(frame)
    return {layer: (array[:n], array[n:]) for layer, array in features.items()}


def stacked_pair_features(backbone: Backbone | Callable[[], Backbone], frame: pd.DataFrame, layers: list[int],
                          config: RMStageConfig) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rejected) features `[n, parts * len(layers) * hidden]`: one layer as is, several side by side."""
    from latentrm.features import pooling_parts, stack_readout

    parts = len(pooling_parts(config.pooling))
    by_layer = pair_features(backbone, frame, layers, config)
    return (stack_readout({k: c for k, (c, _) in by_layer.items()}, layers, parts),
            stack_readout({k: r for k, (_, r) in by_layer.items()}, layers, parts))


def edit_features(backbone: Backbone | Callable[[], Backbone], frame: pd.DataFrame, layers: list[int],
                  config: RMStageConfig) -> tuple[tuple[np.ndarray, np.ndarray] | None, pd.DataFrame]:
    """(original, edited) features `[m, parts * len(layers) * hidden]` of the train completions' edits."""
    from latentrm.features import extract_features, pooling_parts, stack_readout
    from latentrm.rm.augment import edit_pairs

    table = edit_pairs(frame, config.edits, seed=config.train.seed)
    if table.empty:
        return None, table
    prompts = list(table["prompt"])
    features = extract_features(backbone, prompts + prompts, list(table["original"]) + list(table["edited"]),  # type: ignore[arg-type]
                                layers, config.pooling, cache_dir=_cache_dir(config), batch_size=config.batch_size,
                                max_length=config.max_length, progress=True)
    parts, m = len(pooling_parts(config.pooling)), len(table)
    stacked = stack_readout(features, layers, parts)
    return (stacked[:m], stacked[m:]), table


def split_frame(frame: pd.DataFrame) -> pd.DataFrame:
    frame = assign_splits(frame)
    if not (frame["split"] == "train").any():
        raise LatentrmError("the pairs file has no 'train' rows; give some rows split=train or drop the split column")
    return frame


def _metrics_by_split(frame: pd.DataFrame, chosen: np.ndarray, rejected: np.ndarray) -> dict[str, Any]:
    out = {}
    for split in ("train", "val", "test"):
        mask = (frame["split"] == split).to_numpy()
        if mask.any():
            out[split] = pair_metrics(chosen[mask], rejected[mask], frame["subset"][mask].tolist())
    return out


def _quantile_rows(frame: pd.DataFrame) -> np.ndarray:
    """Held-out rows when every subset has enough of them there; else all rows."""
    held = (frame["split"] != "train").to_numpy()
    counts = frame[held].groupby("subset").size()
    if held.any() and set(counts.index) == set(frame["subset"]) and counts.min() >= MIN_QUANTILE_ROWS:
        return held
    return np.ones(len(frame), dtype=bool)


TIE_TOLERANCE = 1e-6


def _check_not_tied(chosen: np.ndarray, rejected: np.ndarray, config: RMStageConfig, layer: int) -> None:
    """Refuse a head that scores its own training pairs (nearly) alike: it would be saved and served as if fine.

    The usual cause is features that do not vary between texts, e.g. layer 0 (the token embeddings) read at
    the last token, which is the same end-of-turn token for every text.
    """
    gaps = np.abs(chosen - rejected)  # [n_train]
    scores = np.concatenate([chosen, rejected])
    if gaps.size and (gaps.max() < TIE_TOLERANCE or scores.std() < TIE_TOLERANCE):
        hint = (" (layer 0 is the embedding output: at the last token it is the same for every text)"
                if layer == 0 and config.pooling == "last" else "")
        raise LatentrmError(
            f"the trained head gives tied scores on all {gaps.size} training pairs (largest chosen-rejected gap "
            f"{gaps.max():.2g}, score std {scores.std():.2g}): layer {layer} with pooling '{config.pooling}' "
            f"carries no signal{hint}; pick another --layer or --pooling mean; nothing was saved")


def _no_log(message: str) -> None:
    return None


def summary(metrics: dict[str, Any], layer: int, head: str) -> dict[str, Any]:
    """The manifest's summary: test (else val) accuracy overall and by subset."""
    split = "test" if "test" in metrics else "val" if "val" in metrics else "train"
    chosen = metrics[split]
    return {"layer": layer, "head": head, "split": split, "accuracy": chosen["overall"]["accuracy"],
            "by_subset": {name: m["accuracy"] for name, m in chosen["by_subset"].items()}}


def run(config: RMStageConfig, *, force: bool = False, backbone: Backbone | None = None,
        log: Callable[[str], None] = _no_log) -> Path:
    """Train one head and save `<run-dir>/<out_name>/` (head, rm.json, metrics.json, manifest.json last)."""
    from latentrm.rm.model import LatentRewardModel

    if config.edits and (config.ensemble > 1 or config.ensemble_mode == "layers"):
        raise LatentrmError("--edits / --from-audit train one head; drop --ensemble or train the ensemble without "
                            "edits")
    frame = split_frame(load_pairs(config.pairs))
    out = Path(config.run_dir) / config.out_name
    data_hash = frame_hash(frame)
    backbone = backbone or load_backbone(config.model, dtype=config.dtype, device=config.device)
    layer = config.layer if config.layer is not None else default_layer(backbone.num_layers)
    from latentrm.features import pooling_parts, resolve_layers

    layer = resolve_layers([layer], backbone.num_layers)[0]
    layers = [layer]
    if config.ensemble_mode == "layers":  # one head per layer; rm.json records the deepest as `layer`
        if len(config.ensemble_layers) < 2:
            raise LatentrmError("--ensemble-mode layers needs --ensemble-layers with at least 2 layers, e.g. 10,15,20")
        layers = resolve_layers(list(config.ensemble_layers), backbone.num_layers)
        layer = max(layers)
        config = replace(config, ensemble_layers=tuple(layers))
        if len(pooling_parts(config.pooling)) > 1:
            raise LatentrmError("--ensemble-mode layers reads one state per layer; use a one-part --pooling")
    elif config.concat_layers:  # one head over several layers side by side; rm.json lists them
        layers = resolve_layers(list(config.concat_layers), backbone.num_layers)
        layer = max(layers)
        config = replace(config, concat_layers=tuple(layers))
    config = replace(config, layer=layer)
    key = stage_key(config, {"pairs": data_hash}, extra={"backbone": backbone.revision})
    if not force and is_done(out, key):
        log(f"{out} is up to date (same config and pairs); pass --force to retrain")
        return out
    forget(out)
    timer = Timer()

    from latentrm.rm.ensemble import train_ensemble

    chosen_f, rejected_f = stacked_pair_features(backbone, frame, layers, config)  # [n, L * hidden]
    train_mask = (frame["split"] == "train").to_numpy()
    val_mask = (frame["split"] == "val").to_numpy()
    edits, edit_table = edit_features(backbone, frame, layers, config) if config.edits else (None, None)
    if config.ensemble > 1 or config.ensemble_mode == "layers":  # K heads scored as their mean; rm/ensemble.py
        k = config.ensemble if config.ensemble > 1 else len(layers)
        result = train_ensemble(chosen_f[train_mask], rejected_f[train_mask],
                                chosen_f[val_mask] if val_mask.any() else None,
                                rejected_f[val_mask] if val_mask.any() else None, config.train,
                                k, config.ensemble_mode, layers=layers if config.ensemble_mode == "layers" else None)
    else:
        result = train_head(chosen_f[train_mask], rejected_f[train_mask],
                            chosen_f[val_mask] if val_mask.any() else None,
                            rejected_f[val_mask] if val_mask.any() else None, config.train, edits=edits)
    chosen_s, rejected_s = score_array(result.head, chosen_f), score_array(result.head, rejected_f)
    _check_not_tied(chosen_s[train_mask], rejected_s[train_mask], config, layer)  # before anything is saved
    metrics = _metrics_by_split(frame, chosen_s, rejected_s)
    rows = _quantile_rows(frame)
    subsets = frame["subset"].to_numpy()
    rm = LatentRewardModel.from_head(
        backbone, result.head, layer, config.pooling, config.max_length,
        batch_size=config.batch_size, **({"layers": layers} if config.concat_layers else {}),
        training={"key": key, "data_hash": data_hash, "pairs_file": str(config.pairs),
                  "n_train": int(train_mask.sum()), "n_val": int(val_mask.sum()),
                  "config": config.train.to_dict(), "best_epoch": result.best_epoch,
                  "epochs_run": result.epochs_run,
                  **({"edits": list(config.edits), "edit_pairs": {str(k): int(v) for k, v in
                                                                  edit_table["edit"].value_counts().items()}}
                     if edit_table is not None else {})},
        metrics=metrics,
        chosen_quantiles=score_quantiles(chosen_s[rows], subsets[rows].tolist()),
        rejected_quantiles=score_quantiles(rejected_s[rows], subsets[rows].tolist()),
    )
    out.mkdir(parents=True, exist_ok=True)
    begin(out, "rm", key, config)
    atomic_write_text(out / "history.json", json.dumps(result.history))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    rm.save(out)
    write_manifest(out, "rm", key, config, inputs={"pairs": data_hash, "backbone": backbone.revision},
                   outputs=["rm.json", "head.safetensors", "config.json", "history.json", "metrics.json"],
                   summary=summary(metrics, layer, config.train.head), seconds=timer.seconds())
    return out


def evaluate(rm_dir: str | Path, pairs: str | Path, run_dir: str | Path | None = None,
             split: str | None = None) -> dict[str, Any]:
    """Score a pairs file with a saved reward model; return per-subset metrics."""
    from latentrm.rm.model import LatentRewardModel

    frame = load_pairs(pairs)
    if split is not None:
        if "split" not in frame.columns or not (frame["split"] == split).any():
            raise LatentrmError(f"{pairs}: no rows with split '{split}'; drop --split or pick another")
        frame = frame[frame["split"] == split].reset_index(drop=True)
    rm = LatentRewardModel.load(rm_dir)
    config = RMStageConfig(pairs=str(pairs), run_dir=str(run_dir or Path(rm_dir).parent), model=rm.backbone.spec,
                           layer=rm.layer, pooling=rm.pooling, max_length=rm.max_length)
    chosen_f, rejected_f = stacked_pair_features(rm.backbone, frame, rm.layers, config)
    chosen_s, rejected_s = rm.score_features(chosen_f), rm.score_features(rejected_f)
    return pair_metrics(chosen_s.tolist(), rejected_s.tolist(), frame["subset"].tolist())
