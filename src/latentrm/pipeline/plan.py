"""From a `PipelineConfig` to each stage's own config, wired to the run directory and the earlier outputs.

    runs/<name>/
      run.json                      resolved config, command, versions, one summary per stage
      data/                         pairs.parquet, generations.parquet, build.json, manifest.json
      cache/                        the feature cache (content-addressed)
      features/                     features.json, manifest.json
      rm_sweep/                     sweep.json (layers x read-out x head, chosen on val or by cv), manifest.json
      rm/                           the reward model (rm.json, head.safetensors), manifest.json
      audit/                        report.json and plots, manifest.json
      onpolicy/base/, onpolicy/policy/   the reward on the start / trained policy's own judged samples
      eval/base/<set>/              the start policy: responses.jsonl, metrics.json, manifest.json
      rl/                           GRPO: metrics.jsonl, eval/, policy/, summary.json, manifest.json
      eval/policy/<set>/            the trained policy, same files
      report.html

Only configs are built here; `run.py` calls the stages.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.pipeline.config import SECTIONS, WIRED, PipelineConfig, build_config
from latentrm.stages import from_mapping

DEFAULT_LAYERS = (9, 15, 21)
DEFAULT_HEADS = ("mlp", "linear")
DEFAULT_SETS = ("heldout", "false_premise")


def _where(config: PipelineConfig, section: str) -> str:
    return f"preset {config.preset}: {section}"


def data_config(config: PipelineConfig) -> Any:
    from latentrm.data.build import BuildConfig

    values = {"model": config.model, **config.data, "out": str(config.run_dir / "data")}
    if values.get("backend") == "auto":  # vLLM when installed (GPU machines), else transformers
        import importlib.util

        values["backend"] = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    return from_mapping(BuildConfig, values, _where(config, "data"))


def pairs_path(config: PipelineConfig) -> Path:
    return config.run_dir / "data" / "pairs.parquet"


SWEEP_FIELDS = ("heads", "poolings", "layers", "cv", "curve", "select")


def features_config(config: PipelineConfig, pairs: str | Path) -> Any:
    """The features stage extracts every layer and base read-out the sweep will try, in one forward."""
    from latentrm.features import pooling_parts
    from latentrm.rm.extract import FeaturesConfig

    values = {"layers": DEFAULT_LAYERS, **config.features, "pairs": str(pairs), "run_dir": str(config.run_dir),
              "model": config.model}
    sweep = _sweep_values(config, values)
    values["layers"] = tuple(sorted({layer for spec in sweep["layers"] for layer in spec}))
    values["pooling"] = "+".join(dict.fromkeys(part for p in sweep["poolings"] for part in pooling_parts(p)))
    return from_mapping(FeaturesConfig, values, _where(config, "features"))


def _sweep_values(config: PipelineConfig, features: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `sweep` section read from YAML: heads, poolings (default: features.pooling), layers (default:
    features.layers; `15+21` reads both side by side), cv folds (0: choose on val), learning-curve shares and
    what chooses. Each value is checked by `SweepConfig.validate` (`sweep_config`)."""
    from latentrm.rm.sweep import parse_layer_specs

    where = _where(config, "sweep")
    unknown = sorted(set(config.sweep) - set(SWEEP_FIELDS))
    if unknown:
        raise LatentrmError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(SWEEP_FIELDS)}")
    features = features if features is not None else {"layers": DEFAULT_LAYERS, **config.features}
    curve = config.sweep.get("curve", [0.25, 0.5, 1.0])
    if not isinstance(curve, list):
        raise LatentrmError(f"{where}.curve: {curve!r} must be a list of shares of train in (0, 1]")
    try:
        layers = parse_layer_specs(",".join(str(x) for x in config.sweep.get("layers") or features["layers"]),
                                   "layers")
    except LatentrmError as exc:
        raise LatentrmError(f"{where}: {exc}") from None
    return {"heads": tuple(str(h) for h in config.sweep.get("heads") or DEFAULT_HEADS),
            "poolings": tuple(str(p) for p in config.sweep.get("poolings") or [features.get("pooling", "last")]),
            "layers": tuple(layers), "cv": config.sweep.get("cv", 0), "curve": tuple(curve),
            "select": config.sweep.get("select", "pairs")}


def sweep_config(config: PipelineConfig, pairs: str | Path, features: dict[str, Any] | None = None) -> Any:
    """The `rm_sweep` stage config, validated: the sweep section over the rm section's training options; with
    `select: onpolicy` it chooses on the start policy's judged samples (`onpolicy/select/judged.jsonl`)."""
    from latentrm.audit.onpolicy import JUDGED
    from latentrm.rm.sweep import SweepConfig

    values = _sweep_values(config, features)
    rm = rm_config(config, pairs, layers=values["layers"][0], head=values["heads"][0], pooling=values["poolings"][0])
    judged = str(config.run_dir / "onpolicy" / "select" / JUDGED) if values["select"] == "onpolicy" else None
    try:
        return SweepConfig(rm, onpolicy=judged, **values).validate()
    except LatentrmError as exc:
        raise LatentrmError(f"{_where(config, 'sweep')}.{exc}") from None


def select_samples_config(config: PipelineConfig, pairs: str | Path) -> Any:
    """What `sweep.select: onpolicy` chooses on: the start policy's judged samples (`onpolicy/select/`), drawn
    like the on-policy check's, with the next seed, from the `select` part of the held-out people: the check
    draws from the `check` part, so the head is never reported on the people it was chosen on."""
    values = {key: value for key, value in config.onpolicy.items() if key != "enabled"}  # chosen on even when off
    base = onpolicy_config(replace(config, onpolicy=values), "select", start_policy(config), pairs)
    assert base is not None  # enabled by construction
    return replace(base, seed=base.seed + 1, people="select")


def sweep_heads(config: PipelineConfig) -> list[str]:
    return list(_sweep_values(config)["heads"])


def rm_config(config: PipelineConfig, pairs: str | Path, *, layers: tuple[int, ...] | list[int], head: str,
              pooling: str | None = None) -> Any:
    """The `rm` stage config; the sweep reads the same features (layers, read-out and head come from its choice)."""
    from latentrm.rm.stage import RMStageConfig
    from latentrm.rm.train import TrainConfig

    train = from_mapping(TrainConfig, {**config.rm, "head": head}, _where(config, "rm"))
    features = features_config(config, pairs)
    layers = tuple(layers)
    return RMStageConfig(pairs=str(pairs), run_dir=str(config.run_dir), model=config.model, layer=max(layers),
                         concat_layers=layers if len(layers) > 1 else (),
                         pooling=pooling or _sweep_values(config)["poolings"][0], max_length=features.max_length,
                         batch_size=features.batch_size, dtype=features.dtype, device=features.device, train=train)


def audit_config(config: PipelineConfig) -> Any:
    from latentrm.audit.stage import AuditConfig
    from latentrm.data.recipes import DEFAULT_RECIPE

    values = {**config.audit, "rm": str(config.run_dir / "rm"), "run_dir": str(config.run_dir)}
    recipe = data_config(config).recipe
    if recipe != DEFAULT_RECIPE:  # the steering notes of the recipe that built the pairs (a file's path, too)
        values.setdefault("recipe", recipe)
    return from_mapping(AuditConfig, values, _where(config, "audit"))


def onpolicy_config(config: PipelineConfig, which: str, policy: str, pairs: str | Path,
                    rm: str | Path | None = None) -> Any | None:
    """The on-policy check of the start (`base`) or trained (`policy`) policy against `rm` (default: the rm
    stage's; the trained policy is checked against `final_rm`, the head it was trained against); None when the
    section disables it."""
    from latentrm.audit.onpolicy import OnPolicyConfig, check_config

    values = dict(config.onpolicy)
    enabled = values.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise LatentrmError(f"{_where(config, 'onpolicy')}.enabled: {enabled!r} must be true or false")
    if "prompts" in values and isinstance(values["prompts"], list):
        values["prompts"] = tuple(values["prompts"])
    values = {"seed": 0, "people": "check", "recipe": data_config(config).recipe, **values,
              "rm": str(rm or config.run_dir / "rm"),
              "run_dir": str(config.run_dir / "onpolicy"), "name": which, "policy": policy, "pairs": str(pairs)}
    checked = from_mapping(OnPolicyConfig, values, _where(config, "onpolicy"))
    try:
        check_config(checked)
    except LatentrmError as exc:
        raise LatentrmError(f"{_where(config, 'onpolicy')}: {exc}") from None
    return checked if enabled else None


WARM_STARTS = ("none", "sft", "kto", "dpo", "ipo")


def warm_start_config(config: PipelineConfig, pairs: str | Path) -> Any | None:
    """The warm start RL begins from (`warm_start.method`: none | sft | kto | dpo | ipo), trained on the pairs'
    train split from `model` into `warm_start/baseline-<method>/policy`; None for `none` (the default)."""
    from latentrm.rl.baselines import BaselineConfig

    values = dict(config.warm_start)
    method = values.pop("method", "none")
    if method not in WARM_STARTS:
        raise LatentrmError(f"{_where(config, 'warm_start')}.method: {method!r}; use one of {', '.join(WARM_STARTS)}")
    if method == "none":
        return None
    if config.threads and "threads" not in values:
        values["threads"] = config.threads
    values = {**values, "method": method, "pairs": str(pairs), "policy": config.model,
              "run_dir": str(config.run_dir / "warm_start")}
    checked = from_mapping(BaselineConfig, values, _where(config, "warm_start"))
    try:
        return checked.validate()
    except LatentrmError as exc:
        raise LatentrmError(f"{_where(config, 'warm_start')}: {exc}") from None


def start_policy(config: PipelineConfig) -> str:
    """The policy RL starts from: the warm start's when there is one, else `model`."""
    warm = warm_start_config(config, "pairs.parquet")
    return config.model if warm is None else str(Path(warm.run_dir) / f"baseline-{warm.method}" / "policy")


def rounds(config: PipelineConfig) -> int:
    """`rl.rounds`: 1 (default) trains once; R > 1 adds R - 1 rounds of the iterated update (`rounds` stage)."""
    value = config.rl.get("rounds", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LatentrmError(f"{_where(config, 'rl')}.rounds: {value!r} must be a whole number >= 1 (1: no "
                            "iterated update)")
    return value


def round_dir(config: PipelineConfig, k: int) -> Path:
    """Round k's folder (k >= 2): its data, merged pairs, reward model and RL run."""
    return config.run_dir / "rounds" / str(k)


def final_policy(config: PipelineConfig) -> str:
    """The policy the last round of RL wrote: what eval_policy and onpolicy_policy read."""
    last = rounds(config)
    return str((config.run_dir if last == 1 else round_dir(config, last)) / "rl" / "policy")


def final_rm(config: PipelineConfig) -> str:
    """The reward model the last round of RL trained against: what onpolicy_policy scores the policy with."""
    last = rounds(config)
    return str((config.run_dir if last == 1 else round_dir(config, last)) / "rm")


def rl_config(config: PipelineConfig, pairs: str | Path, *, rm: str | Path | None = None,
              run_dir: str | Path | None = None, policy: str | None = None) -> Any:
    """RL against `rm` (default: the rm stage's) from `policy` (default: the start policy) into `run_dir`."""
    from latentrm.rl.grpo_config import build_config

    values = dict(config.rl)
    preset = values.pop("preset", None)
    rounds(config)
    values.pop("rounds", None)
    values.setdefault("recipe", data_config(config).recipe)  # the run's recipe names the live judge's rates
    if config.threads and "threads" not in values:
        values["threads"] = config.threads
    try:
        return build_config(preset, sets=values, pairs=str(pairs), rm=str(rm or config.run_dir / "rm"),
                            run_dir=str(run_dir or config.run_dir), policy=policy or start_policy(config))
    except LatentrmError as exc:
        raise LatentrmError(f"{_where(config, 'rl')}: {exc}") from None


def eval_configs(config: PipelineConfig, which: str, policy: str, pairs: str | Path) -> list[Any]:
    """One `EvalConfig` per eval set, writing `eval/<which>/<set>/` (`which`: base | policy)."""
    from latentrm.data.recipes import load_recipe
    from latentrm.eval.runner import EvalConfig

    values = dict(config.eval)
    # the run's recipe judges its evals, and its eval_sets are the default sets
    values.setdefault("recipe", data_config(config).recipe)
    sets = values.pop("sets", None) or list(load_recipe(values["recipe"]).judging.eval_sets or DEFAULT_SETS)
    if not isinstance(sets, list | tuple) or not all(isinstance(s, str) for s in sets):
        raise LatentrmError(f"{_where(config, 'eval')}: sets must be a list of set names or .jsonl paths")
    base = from_mapping(EvalConfig, values, _where(config, "eval"))
    out = []
    for name in sets:
        from latentrm.eval.sets import set_name

        out.append(replace(base, model=policy, eval_set=name, exclude_pairs=str(pairs),
                           folder=str(config.run_dir / "eval" / which / set_name(name))))
    return out


def resolve(preset: str = "quick", *, sets: list[str] | None = None, name: str | None = None,
            model: str | None = None, runs_root: str | None = None) -> PipelineConfig:
    """The preset with its overrides, every section checked against its stage config before anything runs."""
    config = build_config(preset, sets=sets, name=name, model=model, runs_root=runs_root)
    for section in SECTIONS:
        wired = sorted(set(getattr(config, section)) & set(WIRED.get(section, ())))
        if wired:
            raise LatentrmError(f"{_where(config, section)}.{wired[0]} is set by the pipeline itself; remove it")
    data_config(config)
    features_config(config, "pairs.parquet")
    sweep_config(config, "pairs.parquet")
    rm_config(config, "pairs.parquet", layers=(1,), head="mlp")
    audit_config(config)
    warm_start_config(config, "pairs.parquet")
    onpolicy_config(config, "base", config.model, "pairs.parquet")
    rl_config(config, "pairs.parquet")
    evals = eval_configs(config, "base", config.model, "pairs.parquet")
    _check_values(config, evals)
    return config


def _check_values(config: PipelineConfig, evals: list[Any]) -> None:
    """Values each stage would refuse only when it runs (minutes in): eval sets, token caps, and the layers
    against the backbone's depth (read from its config.json, no weights loaded)."""
    from latentrm.eval.sets import SETS

    for item in evals:
        name = item.eval_set
        if name not in SETS and not str(name).lower().endswith((".jsonl", ".json", ".ndjson")):
            raise LatentrmError(f"{_where(config, 'eval')}.sets: unknown set {name!r}; use {', '.join(SETS)} or a "
                                ".jsonl file")
        if name not in SETS and not Path(name).is_file():
            raise LatentrmError(f"{_where(config, 'eval')}.sets: {name}: no such file")
        if item.max_new_tokens < 1 or item.batch_size < 1 or item.samples < 1:
            raise LatentrmError(f"{_where(config, 'eval')}: max_new_tokens, batch_size and samples must be >= 1 "
                                f"(got {item.max_new_tokens}, {item.batch_size}, {item.samples})")
    depth = _depth(config.model)
    if depth is None:
        return
    layers = features_config(config, "pairs.parquet").layers
    bad = [layer for layer in layers if not -(depth + 1) <= int(layer) <= depth]
    if bad:
        raise LatentrmError(f"{_where(config, 'features')}.layers: {bad[0]} does not exist; {config.model} has "
                            f"{depth} layers (use 1..{depth})")


def _depth(model: str) -> int | None:
    """The backbone's layer count from its config.json, or None when it cannot be read without loading it."""
    import json

    from latentrm.models import EMBEDDED, resolve_model

    if model == EMBEDDED:
        return 30  # SmolLM2-135M: materialising the GGUF to read this would take a minute
    try:
        path = resolve_model(model).path / "config.json"
        config = json.loads(path.read_text())
    except (LatentrmError, OSError, ValueError):
        return None  # the stage that loads it names the problem
    text = config.get("text_config") or config
    return int(text["num_hidden_layers"]) if "num_hidden_layers" in text else None
