"""`RLConfig`: everything one GRPO run against a latent reward model depends on; presets as YAML.

A preset is a YAML file of `RLConfig` fields (`presets/rl/cpu-small.yaml`, `presets/rl/gpu.yaml`);
`--preset NAME` reads `presets/rl/NAME.yaml` (a path works too) and command-line options override
it. `to_grpo_config()` builds TRL's `GRPOConfig` from it, so TRL's own checks (group size,
batch divisibility) run before any model loads.

Batch shape: each optimizer step generates `num_generations` (G) completions for each of
`prompts_per_step` (P) prompts, one generation per step (`steps_per_generation=1`), so a step is
exactly one GRPO group set of P x G completions.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.presets import parse_set, preset_dir, read_preset
from latentrm.ranks import world_size

PRESET_DIR = preset_dir("rl")  # inside the package: a wheel install finds it too


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes the run folder."""
    return int(os.environ.get("RANK", "0") or 0) == 0


@dataclass(frozen=True)
class RLConfig:
    pairs: str = field(default="", metadata={"help": "pairs file: RL prompts come from its train split"})
    rm: str = field(default="", metadata={"help": "reward-model folder (rm.json + head.safetensors)"})
    policy: str | None = field(default=None, metadata={"help": "start policy; default: the reward model's backbone"})
    run_dir: str = field(default="runs/rl", metadata={"help": "run directory; the stage writes <run_dir>/rl/"})
    shaper: str = field(default="calibrated", metadata={"help": "reward shaper (rm/shaping.py)"})
    shaper_params: dict[str, float] = field(default_factory=dict, metadata={"help": "shaper parameters"})
    mix: str = field(default="balanced", metadata={"help": "balanced | natural class mix of every batch"})
    fake_share: float | None = field(default=None, metadata={"help": "natural mix: share of fake prompts"})
    steps: int = field(default=40, metadata={"help": "optimizer steps (each: P prompts x G completions)"})
    prompts_per_step: int = field(default=2, metadata={"help": "P: prompts per step"})
    num_generations: int = field(default=8, metadata={"help": "G: completions per prompt (the GRPO group)"})
    max_completion_length: int = field(default=48, metadata={"help": "completion token cap"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature while training"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling while training"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient to the start policy (0: no reference)"})
    algorithm: str = field(default="grpo", metadata={"help": "grpo | rloo: TRL's trainer (rl/algorithms.py)"})
    scale_rewards: str = field(default="group", metadata={"help": "TRL: group | batch | none"})
    loss_type: str = field(default="dapo", metadata={"help": "TRL GRPO loss type"})
    mask_truncated: bool = field(default=False, metadata={"help": "TRL mask_truncated_completions"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft); reward shares the base"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_targets: str = field(default="all-linear", metadata={"help": "LoRA target modules"})
    share_backbone: bool = field(default=True, metadata={"help": "with LoRA: the reward reads the policy's base "
                                                                  "weights (adapters off) instead of a second copy"})
    eval_every: int = field(default=0, metadata={"help": "evaluate every N steps (0: only at start and end)"})
    eval_n: int = field(default=16, metadata={"help": "held-out people per class in the periodic eval"})
    eval_max_new_tokens: int = field(default=64, metadata={"help": "tokens per eval response"})
    eval_false_premise: int = field(default=8, metadata={"help": "false-premise questions in the periodic eval"})
    eval_batch_size: int = field(default=16, metadata={"help": "eval generation batch"})
    seed: int = field(default=0, metadata={"help": "seed of prompts, sampling and init"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16"})
    use_vllm: bool = field(default=False, metadata={"help": "TRL vLLM generation (colocate) when installed"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    trainable_layers: int = field(default=0, metadata={"help": "train only the top N transformer layers and the "
                                                               "final norm (0: every weight); the backward pass "
                                                               "stops at the lowest trained layer"})
    logging_steps: int = field(default=1, metadata={"help": "log every N steps"})
    save_steps: int = field(default=10, metadata={"help": "checkpoint every N steps (resume point)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept"})
    report_to: str = field(default="none", metadata={"help": "TRL report_to: none | tensorboard | trackio | wandb"})
    reward_batch_size: int = field(default=16, metadata={"help": "texts per reward forward"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads"})
    recipe: str = field(default="knowledge_awareness", metadata={
        "help": "the recipe whose judging names the live judge's and the periodic eval's rates"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> RLConfig:
        """One-line errors for values TRL would reject later (or that make no sense)."""
        from latentrm.rl.algorithms import ALGORITHMS
        from latentrm.rl.prompts import MIXES
        from latentrm.rm.shaping import available_shapers

        checks: list[tuple[bool, str]] = [
            (self.steps >= 1, f"--steps {self.steps}: give at least 1 optimizer step"),
            (self.prompts_per_step >= 1, f"--prompts-per-step {self.prompts_per_step}: give at least 1"),
            (self.num_generations >= 2, f"--num-generations {self.num_generations}: GRPO needs a group of at "
                                        "least 2 completions per prompt"),
            (self.max_completion_length >= 1, f"--max-completion-length {self.max_completion_length}: give >= 1"),
            (math.isfinite(self.temperature) and self.temperature > 0,
             f"--temperature {self.temperature}: GRPO samples, so give a temperature > 0"),
            (0 < self.top_p <= 1, f"--top-p {self.top_p}: give a value in (0, 1]"),
            (math.isfinite(self.learning_rate) and self.learning_rate > 0,
             f"--learning-rate {self.learning_rate}: give a finite value > 0"),
            (math.isfinite(self.beta) and self.beta >= 0, f"--beta {self.beta}: give a finite value >= 0"),
            (self.mix in MIXES, f"--mix {self.mix!r}: use one of {', '.join(MIXES)}"),
            (self.fake_share is None or 0 < self.fake_share < 1,
             f"--fake-share {self.fake_share}: give a share strictly between 0 and 1"),
            (self.fake_share is None or self.mix == "natural", "--fake-share sets the natural mix's imbalance; "
                                                               "use it with --mix natural"),
            (self.algorithm in ALGORITHMS, f"algorithm {self.algorithm!r}: use one of {', '.join(ALGORITHMS)}"),
            (self.shaper in available_shapers(), f"--shaper {self.shaper!r}: use one of "
                                                 f"{', '.join(available_shapers())}"),
            (self.scale_rewards in ("group", "batch", "none"), f"--scale-rewards {self.scale_rewards!r}: use "
                                                               "group, batch or none"),
            (self.eval_every >= 0 and self.eval_n >= 1 and self.eval_false_premise >= 0,
             "eval_every must be >= 0, eval_n >= 1 and eval_false_premise >= 0"),
            (self.save_steps >= 1 and self.logging_steps >= 1, "save_steps and logging_steps must be >= 1"),
            (self.lora_r >= 1 and self.lora_alpha >= 1, "lora_r and lora_alpha must be >= 1"),
            (self.trainable_layers >= 0, f"trainable_layers {self.trainable_layers}: give 0 (all) or a count"),
            (not (self.trainable_layers and self.lora), "trainable_layers and lora both choose what trains; "
                                                        "use one of them"),
            (self.dtype in ("auto", "float32", "bfloat16", "float16"), f"--dtype {self.dtype!r}: use auto, "
                                                                         "float32, bfloat16 or float16"),
        ]
        for ok, message in checks:
            if not ok:
                raise LatentrmError(message)
        return self

    def to_grpo_config(self, output_dir: str | Path, *, use_cpu: bool | None = None) -> Any:
        """TRL's config for this run's algorithm, GRPOConfig or RLOOConfig (TRL's own checks run here)."""
        import torch

        from latentrm.models import precision
        from latentrm.rl.algorithms import ALGORITHMS

        algorithm = ALGORITHMS.get(self.algorithm)
        config_class, _ = algorithm.classes()
        cpu = (not torch.cuda.is_available()) if use_cpu is None else use_cpu
        chosen = precision(self.dtype, use_cpu=cpu)  # the one precision policy (models.py)
        processes = world_size()
        if (self.prompts_per_step * self.num_generations) % processes:
            raise LatentrmError(f"prompts_per_step x num_generations = {self.prompts_per_step * self.num_generations}"
                                f" completions a step cannot be split over {processes} processes; make it a "
                                "multiple of the process count")
        try:
            arguments = dict(
                output_dir=str(output_dir),
                max_steps=self.steps,
                # prompts_per_step is the global batch: the same prompts a step in 1 process or N (rl/prompts.py)
                per_device_train_batch_size=self.prompts_per_step * self.num_generations // processes,
                gradient_accumulation_steps=1,
                num_generations=self.num_generations,
                max_completion_length=self.max_completion_length,
                temperature=self.temperature,
                top_p=self.top_p,
                learning_rate=self.learning_rate,
                beta=self.beta,
                scale_rewards=self.scale_rewards,
                loss_type=self.loss_type,
                mask_truncated_completions=self.mask_truncated,
                shuffle_dataset=False,  # the prompt order is the class mix (rl/prompts.py)
                seed=self.seed,
                data_seed=self.seed,
                logging_steps=self.logging_steps,
                save_strategy="steps",
                save_steps=self.save_steps,
                save_total_limit=self.save_total_limit,
                report_to=[] if self.report_to == "none" else [self.report_to],
                use_cpu=cpu,
                bf16=chosen.bf16,
                fp16=chosen.fp16,
                use_vllm=self.use_vllm and importlib.util.find_spec("vllm") is not None,  # "when installed"
                vllm_mode="colocate",
                gradient_checkpointing=self.gradient_checkpointing,
                remove_unused_columns=False,
                disable_tqdm=True,
                dataloader_num_workers=0,
                lr_scheduler_type="constant",
                warmup_steps=0,
            )
            for name in algorithm.drop:
                arguments.pop(name, None)
            return config_class(**arguments, **algorithm.extra(self))
        except (ValueError, TypeError) as exc:
            raise LatentrmError(f"TRL rejected the RL config: {exc}") from None


def load_preset(name: str) -> dict[str, Any]:
    """A preset's fields: `presets/rl/<name>.yaml`, or a YAML file path."""
    path, values = read_preset("rl", name, holds="RLConfig fields")
    known_fields = {f.name for f in fields(RLConfig)}
    unknown = sorted(set(values) - known_fields)
    if unknown:
        raise LatentrmError(f"{path}: unknown field(s) {', '.join(unknown)}; see `latentrm rl train --help`")
    return values


def build_config(preset: str | None = None, sets: dict[str, Any] | None = None, **overrides: Any) -> RLConfig:
    """Preset values, then `--set` values, then every named option that is not None."""
    values = load_preset(preset) if preset else {}
    values.update(sets or {})
    _check_types(values)  # a bad preset or --set value is refused even when a named option replaces it
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "shaper_params" in values and values["shaper_params"] is None:
        values["shaper_params"] = {}
    try:
        config = RLConfig(**values)
    except TypeError as exc:
        raise LatentrmError(f"RL config: {exc}") from None
    _check_types(config)
    return config.validate()


def _check_types(config: RLConfig | dict[str, Any]) -> None:
    """YAML and --set values of the wrong type get one line naming the field (a config, or raw values)."""
    values = config if isinstance(config, dict) else asdict(config)
    for f in fields(RLConfig):
        if f.name not in values:
            continue
        value = values[f.name]
        kind = str(f.type)
        ok = (value is None and "None" in kind) or (
            ("bool" in kind and isinstance(value, bool)) or
            ("int" in kind and isinstance(value, int) and not isinstance(value, bool)) or
            ("float" in kind and isinstance(value, int | float) and not isinstance(value, bool)) or
            ("str" in kind and isinstance(value, str)) or ("dict" in kind and isinstance(value, dict)))
        if not ok:
            raise LatentrmError(f"RL config field {f.name}={value!r}: expected {kind}")


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs as RLConfig field values (YAML scalars: 1e-5, true, null, [a, b])."""
    known = {f.name: f for f in fields(RLConfig)}
    out: dict[str, Any] = {}
    for item in items or []:
        parts, value = parse_set(item, example="learning_rate=1e-5")
        name = ".".join(parts)
        if name not in known:
            raise LatentrmError(f"--set {item!r}: unknown RLConfig field; fields: {', '.join(sorted(known))}")
        if isinstance(value, str) and "float" in str(known[name].type):
            try:  # YAML 1.1 reads 3e-5 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        out[name] = value
    return out
