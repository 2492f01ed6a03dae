"""From a `PipelineConfig` to each stage's own config, wired to the run directory and the earlier outputs.

    runs/<name>/
      run.json                      resolved config, command, versions, one summary per stage
      data/                         pairs.parquet, generations.parquet, build.json, manifest.json
      cache/                        the feature cache (content-addressed)
      features/                     features.json, manifest.json
      rm_sweep/                     sweep.json (layer x head, chosen on val), manifest.json
      rm/                           the reward model (rm.json, head.safetensors), manifest.json
      audit/                        report.json and plots, manifest.json
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


def features_config(config: PipelineConfig, pairs: str | Path) -> Any:
    from latentrm.rm.extract import FeaturesConfig

    values = {"layers": DEFAULT_LAYERS, **config.features, "pairs": str(pairs), "run_dir": str(config.run_dir),
              "model": config.model}
    return from_mapping(FeaturesConfig, values, _where(config, "features"))


def sweep_heads(config: PipelineConfig) -> list[str]:
    from typing import get_args

    from latentrm.rm.heads import HeadType

    unknown = sorted(set(config.sweep) - {"heads"})
    if unknown:
        raise LatentrmError(f"{_where(config, 'sweep')}: unknown field(s) {', '.join(unknown)}; known: heads")
    heads = list(config.sweep.get("heads") or DEFAULT_HEADS)
    bad = [h for h in heads if h not in get_args(HeadType)]
    if bad:
        raise LatentrmError(f"{_where(config, 'sweep')}: unknown head(s) {', '.join(bad)}; use "
                            f"{', '.join(get_args(HeadType))}")
    return heads


def rm_config(config: PipelineConfig, pairs: str | Path, *, layer: int, head: str) -> Any:
    """The `rm` stage config; the sweep reads the same features (`layer` and `head` come from its choice)."""
    from latentrm.rm.stage import RMStageConfig
    from latentrm.rm.train import TrainConfig

    train = from_mapping(TrainConfig, {**config.rm, "head": head}, _where(config, "rm"))
    features = features_config(config, pairs)
    return RMStageConfig(pairs=str(pairs), run_dir=str(config.run_dir), model=config.model, layer=layer,
                         pooling=features.pooling, max_length=features.max_length, batch_size=features.batch_size,
                         dtype=features.dtype, device=features.device, train=train)


def audit_config(config: PipelineConfig) -> Any:
    from latentrm.audit.stage import AuditConfig

    values = {**config.audit, "rm": str(config.run_dir / "rm"), "run_dir": str(config.run_dir)}
    return from_mapping(AuditConfig, values, _where(config, "audit"))


def rl_config(config: PipelineConfig, pairs: str | Path) -> Any:
    from latentrm.rl.grpo_config import build_config

    values = dict(config.rl)
    preset = values.pop("preset", None)
    if config.threads and "threads" not in values:
        values["threads"] = config.threads
    try:
        return build_config(preset, sets=values, pairs=str(pairs), rm=str(config.run_dir / "rm"),
                            run_dir=str(config.run_dir), policy=config.model)
    except LatentrmError as exc:
        raise LatentrmError(f"{_where(config, 'rl')}: {exc}") from None


def eval_configs(config: PipelineConfig, which: str, policy: str, pairs: str | Path) -> list[Any]:
    """One `EvalConfig` per eval set, writing `eval/<which>/<set>/` (`which`: base | policy)."""
    from latentrm.eval.runner import EvalConfig

    values = dict(config.eval)
    sets = values.pop("sets", None) or list(DEFAULT_SETS)
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
    sweep_heads(config)
    rm_config(config, "pairs.parquet", layer=1, head="mlp")
    audit_config(config)
    rl_config(config, "pairs.parquet")
    eval_configs(config, "base", config.model, "pairs.parquet")
    return config
