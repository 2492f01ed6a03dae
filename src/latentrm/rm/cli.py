"""`latentrm rm` (train, sweep, eval, score; `audit` and `goodhart` are mounted by `audit/cli.py`) and
`latentrm features`.

Only typer is imported at module level, so `latentrm --help` stays fast. The stage functions
(`rm/stage.py`, `rm/extract.py`) write files and return; the tables are printed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from latentrm import validate
from latentrm.errors import LatentrmError

app = typer.Typer(help="Train, sweep, evaluate, score and audit latent reward models.", no_args_is_help=True)


def head_names() -> tuple[str, ...]:
    from typing import get_args

    from latentrm.rm.heads import HeadType  # "ensemble" is built by --ensemble K, not named

    return get_args(HeadType)


def ensemble_modes() -> tuple[str, ...]:
    from latentrm.rm.ensemble import ENSEMBLE_MODES

    return tuple(ENSEMBLE_MODES)


def shaper_names() -> list[str]:
    from latentrm.rm.shaping import available_shapers

    return available_shapers()


Model = Annotated[str, typer.Option(help="Backbone: 'embedded' (SmolLM2-135M), a HF id in the local cache, or a folder.")]
RunDir = Annotated[Path, typer.Option("--run-dir", help="Run directory; each stage writes a folder inside it.",
                                      callback=validate.writable_dir_option)]
Pairs = Annotated[Path, typer.Option("--pairs", help="Pairs file (.parquet or .jsonl): prompt, chosen, rejected, subset, split.")]
Pooling = Annotated[str, typer.Option(help="Read-out: last (end-of-turn token), mean (completion mean), lastK (mean of "
                                           "the last K tokens), prompt (end of the prompt), or parts joined by +.",
                                      callback=validate.pooling_option)]
Dtype = Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16 (auto: bf16 on GPU, fp32 on CPU).",
                                    callback=validate.choice_option(validate.dtypes))]
MaxLength = Annotated[int, typer.Option(help="Max tokens per scored text; longer prompts are cut from the left.", min=1)]
BatchSize = Annotated[int, typer.Option(help="Texts per forward batch.", min=1)]
OutFile = Annotated[Optional[Path], typer.Option(help="Write the metrics JSON here.",
                                                 callback=validate.writable_file_option)]


def _parse_layers(text: str, option: str = "--layers", *, allow_empty: bool = False) -> list[int]:
    try:
        layers = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise LatentrmError(f"{option} '{text}' must be comma-separated integers, e.g. 5,10,15") from None
    if not layers and not allow_empty:
        raise LatentrmError(f"{option} is empty; give comma-separated layers, e.g. 5,10,15")
    return layers


def features(
    pairs: Pairs,
    layers: Annotated[str, typer.Option(help="Comma-separated layers, e.g. 5,10,15 (negative counts from the end).")] = "15",
    run_dir: RunDir = Path("runs/quick"),
    model: Model = "embedded",
    pooling: Pooling = "last",
    dtype: Dtype = "auto",
    max_length: MaxLength = 2048,
    batch_size: BatchSize = 16,
) -> None:
    """Extract and cache hidden-state features for every chosen and rejected completion."""
    from latentrm.rm.extract import FeaturesConfig, run

    config = FeaturesConfig(pairs=str(pairs), run_dir=str(run_dir), model=model, layers=tuple(_parse_layers(layers)),
                            pooling=pooling, dtype=dtype, max_length=max_length, batch_size=batch_size)
    folder = run(config, log=print)
    info = json.loads((folder / "features.json").read_text())
    seconds = json.loads((folder / "manifest.json").read_text())["seconds"]
    for layer in info["layers"]:
        print(f"layer {layer}: {info['pairs']} pairs x 2 texts, hidden size {info['hidden_size'][str(layer)]}")
    print(f"features in {info['cache_dir']} ({seconds:.1f} s)")


def _train_config(head: str, epochs: int, lr: float | None, margin: float, seed: int, scale: float,
                  edit_loss: str = "pairs", edit_weight: float = 1.0) -> object:
    from latentrm.rm.train import TrainConfig

    return TrainConfig(head=head, epochs=epochs, lr=lr, margin=margin, seed=seed, scale=scale, edit_loss=edit_loss,
                       edit_weight=edit_weight)


def _edits(edits: str, from_audit: Path | None) -> tuple[str, ...]:
    from latentrm.rm.augment import edits_from_audit, parse_edits

    if edits and from_audit:
        raise LatentrmError("--edits and --from-audit both name the edits; pass one")
    return edits_from_audit(from_audit) if from_audit else parse_edits(edits) if edits else ()


@app.command("train")
def rm_train(
    pairs: Pairs,
    run_dir: RunDir = Path("runs/quick"),
    model: Model = "embedded",
    layer: Annotated[Optional[str], typer.Option(help="Layer to read (default: half the depth); 15+21 reads several "
                                                      "side by side.")] = None,
    head: Annotated[str, typer.Option(help="linear | projection_sum | mlp | bilinear",
                                      callback=validate.choice_option(head_names))] = "projection_sum",
    pooling: Pooling = "last",
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on val).", min=1)] = 200,
    lr: Annotated[Optional[float], typer.Option(help="AdamW learning rate (default: 1e-2 linear heads, 3e-3 mlp).",
                                                callback=validate.positive_float_option)] = None,
    margin: Annotated[float, typer.Option(help="BT margin (>= 0).", callback=validate.non_negative_float_option)] = 0.0,
    scale: Annotated[float, typer.Option(help="projection_sum output scale (not 0).",
                                         callback=validate.nonzero_float_option)] = 0.01,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    dtype: Dtype = "auto",
    max_length: MaxLength = 2048,
    batch_size: BatchSize = 16,
    force: Annotated[bool, typer.Option(help="Retrain even if an identical run exists.")] = False,
    ensemble: Annotated[int, typer.Option(help="Train K heads scored as their mean (std = their spread).", min=1)] = 1,
    ensemble_mode: Annotated[str, typer.Option(help="Ensemble members differ by: seed | bootstrap | layers.",
                                               callback=validate.choice_option(ensemble_modes))] = "seed",
    ensemble_layers: Annotated[str, typer.Option(help="Comma-separated layers for --ensemble-mode layers "
                                                 "(one head per layer; --ensemble K > L cycles them).")] = "",
    edits: Annotated[str, typer.Option(help="Content-free edits of the train completions to train away: "
                                            "pad, hope, repeat, bullets, hedge_prefix (real only), or all.")] = "",
    from_audit: Annotated[Optional[Path], typer.Option(help="An audit folder (or its report.json): train away the "
                                                            "edits its counterfactual probe flagged.")] = None,
    edit_loss: Annotated[str, typer.Option(help="pairs (original preferred, BT) | invariance (squared change).",
                                           callback=validate.choice_option(lambda: ("pairs", "invariance")))
                         ] = "pairs",
    edit_weight: Annotated[float, typer.Option(help="Weight of the edit term in the loss.",
                                               callback=validate.positive_float_option)] = 1.0,
    out_name: Annotated[str, typer.Option(help="Folder name inside the run directory.")] = "rm",
) -> None:
    """Train a Bradley-Terry head at one layer; print per-subset metrics; save <run-dir>/<out-name>."""
    from rich.console import Console

    from latentrm.rm.metrics import rich_metrics_table
    from latentrm.rm.stage import RMStageConfig, run

    if "," in pooling:
        raise LatentrmError(f"--pooling {pooling!r}: rm train reads one read-out; compare several with rm sweep")
    if not out_name.strip() or Path(out_name).name != out_name or out_name in (".", ".."):
        raise LatentrmError(f"--out-name {out_name!r}: give a plain folder name such as rm-edits")
    from latentrm.rm.sweep import parse_layer_specs

    specs = parse_layer_specs(layer, "--layer") if layer is not None else []
    if len(specs) > 1:
        raise LatentrmError(f"--layer {layer!r}: give one layer, or several joined by '+' (e.g. 15+21)")
    spec = specs[0] if specs else None
    config = RMStageConfig(pairs=str(pairs), run_dir=str(run_dir), model=model,
                           layer=spec[-1] if spec else None, concat_layers=spec if spec and len(spec) > 1 else (),
                           pooling=pooling, dtype=dtype, max_length=max_length, batch_size=batch_size,
                           train=_train_config(head, epochs, lr, margin, seed, scale,  # type: ignore[arg-type]
                                               edit_loss, edit_weight),
                           ensemble=ensemble, ensemble_mode=ensemble_mode,
                           ensemble_layers=tuple(_parse_layers(ensemble_layers, "--ensemble-layers", allow_empty=True)),
                           edits=_edits(edits, from_audit), out_name=out_name)
    out = run(config, force=force, log=print)
    meta = json.loads((out / "rm.json").read_text())
    console = Console()
    for split, split_metrics in meta["metrics"].items():
        console.print(rich_metrics_table(split_metrics, f"{split} pairs (layer {meta['layer']}, {head})"))
    print(f"reward model saved to {out}")


@app.command("sweep")
def rm_sweep(
    pairs: Pairs,
    layers: Annotated[str, typer.Option(help="Comma-separated candidate layers; 15+21 is one candidate reading "
                                             "both side by side.")] = "3,6,9,12,15,18,21,24,27,30",
    run_dir: RunDir = Path("runs/quick"),
    model: Model = "embedded",
    head: Annotated[str, typer.Option(help="Head type(s), comma-separated: linear, projection_sum, mlp, bilinear.")
                    ] = "projection_sum",
    pooling: Annotated[str, typer.Option(help="Read-out(s), comma-separated: last, mean, lastK, prompt+mean, ...",
                                         callback=validate.pooling_option)] = "last",
    cv: Annotated[int, typer.Option(help="Choose by entity-grouped K-fold cross-validation over train + val "
                                         "(0: choose on val).", min=0)] = 0,
    curve: Annotated[str, typer.Option(help="Learning curve of the choice: shares of train, e.g. 0.25,0.5,1 "
                                            "('' for none).")] = "0.25,0.5,1",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    dtype: Dtype = "auto",
    max_length: MaxLength = 2048,
    batch_size: BatchSize = 16,
    select: Annotated[str, typer.Option(help="What chooses: pairs (val or cv accuracy) | onpolicy (AUROC on the "
                                             "start policy's judged samples, --onpolicy).")] = "pairs",
    onpolicy: Annotated[Optional[Path], typer.Option(help="judged.jsonl from `latentrm rm onpolicy` (the start "
                                                          "policy's samples); its AUROC is shown beside.")] = None,
) -> None:
    """One head per layers x read-out x head type from one extraction pass; val (and cv) and test accuracy."""
    from rich.console import Console

    from latentrm.rm.stage import RMStageConfig
    from latentrm.rm.sweep import SweepConfig, learning_curve_table, parse_layer_specs, run, table

    heads = [name.strip() for name in head.split(",") if name.strip()]
    unknown = [name for name in heads if name not in head_names()]
    if not heads or unknown:
        raise LatentrmError(f"--head {head!r}: use one or more of {', '.join(head_names())}, comma-separated")
    if cv == 1:
        raise LatentrmError("--cv 1 is not cross-validation; use 0 (choose on val) or K >= 2 folds")
    shares = _parse_shares(curve)
    if select not in ("pairs", "onpolicy"):
        raise LatentrmError(f"--select {select!r}: use pairs or onpolicy")
    if select == "onpolicy" and onpolicy is None:
        raise LatentrmError("--select onpolicy needs --onpolicy judged.jsonl (written by `latentrm rm onpolicy`)")
    if onpolicy is not None:
        from latentrm.rm.onpolicy_select import load_judged

        load_judged(onpolicy)  # a missing or malformed file fails here, before the model loads
    poolings = pooling.split(",")
    rm = RMStageConfig(pairs=str(pairs), run_dir=str(run_dir), model=model, pooling=poolings[0], dtype=dtype,
                       max_length=max_length, batch_size=batch_size,
                       train=_train_config(heads[0], 200, None, 0.0, seed, 0.01))  # type: ignore[arg-type]
    config = SweepConfig(rm, tuple(parse_layer_specs(layers)), tuple(heads), tuple(poolings), cv, tuple(shares),
                         select, str(onpolicy) if onpolicy else None).validate()
    out = run(config, log=print)
    result = json.loads((out / "sweep.json").read_text())
    console = Console()
    console.print(table(result))
    if result.get("learning_curve"):
        console.print(learning_curve_table(result))
    gaps = ", ".join(f"{name.replace('_', ' ')} {result[name]:+.3f}" for name in ("val_test_gap", "cv_test_gap")
                     if name in result)
    print(f"chosen by {result['chosen_on']}: {result['best_head']} at layer {result['best_layer']}, "
          f"pooling {result['best_pooling']}" + (f" ({gaps})" if gaps else ""))
    if "onpolicy" in result:
        pair = result["onpolicy"]["pair_choice"]
        chosen = next(r for r in result["layers"] if r["layers"] == result["best_layers"]
                      and r["head"] == result["best_head"] and r["pooling"] == result["best_pooling"])
        shown = " vs ".join("-" if v is None else f"{v:.3f}" for v in (chosen["onpolicy_report_auroc"],
                                                                        pair["onpolicy_report_auroc"]))
        print(f"on-policy AUROC on the report half: the choice vs the pair metric's choice ({pair['head']} at "
              f"layer {'+'.join(map(str, pair['layers']))}, {pair['pooling']}): {shown}")
    print(f"sweep written to {out / 'sweep.json'}")


def _parse_shares(text: str) -> list[float]:
    try:
        shares = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise LatentrmError(f"--curve '{text}' must be comma-separated shares of train, e.g. 0.25,0.5,1") from None
    if any(not 0 < share <= 1 for share in shares):
        raise LatentrmError(f"--curve '{text}': every share must be in (0, 1], e.g. 0.25,0.5,1")
    return shares


@app.command("eval")
def rm_eval(
    rm: Annotated[Path, typer.Option("--rm", help="Reward-model folder (head.safetensors + rm.json).")],
    pairs: Pairs,
    split: Annotated[Optional[str], typer.Option(help="Only rows of this split (train/val/test).")] = None,
    out: OutFile = None,
) -> None:
    """Score a pairs file with a saved reward model and print per-subset metrics."""
    from rich.console import Console

    from latentrm.io import atomic_write_text
    from latentrm.rm.metrics import rich_metrics_table
    from latentrm.rm.stage import evaluate

    metrics = evaluate(rm, pairs, split=split)
    Console().print(rich_metrics_table(metrics, f"{pairs.name} scored by {rm}"))
    if out is not None:
        atomic_write_text(out, json.dumps(metrics, indent=1))
        print(f"metrics written to {out}")


@app.command("score")
def rm_score(
    rm: Annotated[Path, typer.Option("--rm", help="Reward-model folder.")],
    input: Annotated[Optional[Path], typer.Option("--input", help="JSONL/Parquet with prompt and completion columns.")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="A single prompt (with --completion).")] = None,
    completion: Annotated[Optional[str], typer.Option(help="A single completion (with --prompt).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output JSONL with a 'score' column (default: print).",
                                                callback=validate.writable_file_option)] = None,
    batch_size: BatchSize = 16,
    shaper: Annotated[Optional[str], typer.Option(help="Also write the shaped reward (rm.shaping, as RL "
                                                       "and the server compute it): calibrated, quantile_match, ...",
                                                  callback=validate.choice_option(shaper_names))] = None,
    shaper_param: Annotated[Optional[list[str]], typer.Option(help="name=number, repeatable.")] = None,
    subset_column: Annotated[str, typer.Option(help="Column holding each row's prompt class, for --shaper.")
                             ] = "subset",
) -> None:
    """Score (prompt, completion) pairs with a saved reward model (ensembles add a score_std column)."""

    from latentrm.io import atomic_write_text, read_table
    from latentrm.rm.model import LatentRewardModel

    if (input is None) == (prompt is None or completion is None):
        raise LatentrmError("pass either --input FILE, or both --prompt and --completion")
    if input is not None:
        frame = read_table(input)
        missing = [c for c in ("prompt", "completion") if c not in frame.columns]
        if missing:
            raise LatentrmError(f"{input}: missing column(s) {', '.join(missing)}; it needs prompt and completion")
        for index, value in enumerate(frame["completion"]):
            if not isinstance(value, str) or not value.strip():
                raise LatentrmError(f"{input}: row {index + 1} has an empty 'completion'; fill it in or remove it")
        prompts, completions = list(frame["prompt"]), list(frame["completion"])
    else:
        frame = None
        prompts, completions = [prompt], [completion]
    from latentrm.rm.ensemble import EnsembleHead

    shaped = None
    if shaper is not None:  # checked against rm.json before the backbone loads
        import numpy as np

        from latentrm.rm.shaping import get_shaper, needs_subsets, shape_scores

        the_shaper = get_shaper(shaper, LatentRewardModel.read_meta(rm), **validate.parse_shaper_params(shaper_param))
        if frame is not None and subset_column not in frame.columns and needs_subsets(shaper):
            raise LatentrmError(f"{input}: --shaper {shaper} needs each row's prompt class in a '{subset_column}' "
                                "column (or --subset-column NAME)")
    model = LatentRewardModel.load(rm)
    if shaper is not None:
        subsets = list(frame[subset_column]) if frame is not None and subset_column in frame.columns else None
        if isinstance(model.head, EnsembleHead):
            mean, spread = model.score_with_std(prompts, completions, batch_size=batch_size)
            raw, std = np.asarray(mean, dtype=np.float64), np.asarray(spread, dtype=np.float64)
        else:
            raw, std = np.asarray(model.score(prompts, completions, batch_size=batch_size), np.float64), None
        shaped = shape_scores(the_shaper, raw, subsets, std, prompts).tolist()
        scores, stds = raw.tolist(), (std.tolist() if std is not None else None)
    elif isinstance(model.head, EnsembleHead):  # mean over heads, plus their spread
        mean, std = model.score_with_std(prompts, completions, batch_size=batch_size)
        scores, stds = mean.tolist(), std.tolist()
    else:
        scores, stds = model.score(prompts, completions, batch_size=batch_size, progress=len(prompts) > 32), None
    if shaped is not None and (frame is None or out is None):
        for index, value in enumerate(scores):
            print(f"{value:.6f}\t{shaped[index]:.6f}")
        return
    if frame is not None and out is not None:
        frame = frame.assign(score=scores, **({"score_std": stds} if stds is not None else {}),
                             **({"reward": shaped} if shaped is not None else {}))
        atomic_write_text(out, frame.to_json(orient="records", lines=True, force_ascii=False))
        print(f"{len(scores)} scores written to {out}")
    else:
        for index, value in enumerate(scores):
            print(f"{value:.6f}" + (f"\t{stds[index]:.6f}" if stds is not None else ""))


