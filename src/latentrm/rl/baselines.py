"""Direct preference optimisation on the same pairs: DPO, IPO (TRL `DPOTrainer`), KTO (`KTOTrainer`), and
supervised fine-tuning on their chosen side (`SFTTrainer`).

    latentrm baseline dpo --pairs runs/data/pairs.parquet --run-dir runs/base-dpo
    latentrm baseline sft --pairs runs/data/pairs.parquet --steps 30 --learning-rate 2e-5   # a warm start

These answer whether the reward-model route beats optimising the policy on the pairs directly.
Same pairs file (train split), same start policy, same LoRA option and optimizer-step budget as
the GRPO runs they are compared with. DPO and IPO see each pair as (prompt, chosen, rejected); KTO
sees each pair as two unpaired examples, the chosen one desirable and the rejected one not. SFT
sees only the chosen completions (each distinct one once), with the loss on the completion tokens: the
steered hedges about made-up people and the grounded answers about real ones, as the policy's own
words, so an RL run that starts from it samples hedges GRPO can reinforce (a policy that never hedges
gives GRPO no hedge to prefer).
Output: `<run_dir>/baseline-<method>/policy/` (a plain model folder, LoRA merged) and
`manifest.json`, written last; a finished run with the same key is skipped.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from latentrm.errors import LatentrmError
from latentrm.stages import Timer, is_done, stage_key, write_manifest

Method = Literal["dpo", "ipo", "kto", "sft"]
METHODS: tuple[str, ...] = ("dpo", "ipo", "kto", "sft")


@dataclass(frozen=True)
class BaselineConfig:
    method: str = "dpo"
    pairs: str = ""
    policy: str = "embedded"
    run_dir: str = "runs/baseline"
    steps: int = 30  # optimizer steps
    batch_size: int = 8  # pairs per step (KTO: examples per step)
    learning_rate: float = 5e-6
    beta: float = 0.1
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    max_length: int = 256
    seed: int = 0
    threads: int | None = None
    dtype: str = "auto"  # models.precision: fp32 on any CPU, bf16 on a GPU that has it, else what is asked

    def validate(self) -> BaselineConfig:
        if self.method not in METHODS:
            raise LatentrmError(f"baseline {self.method!r}: use one of {', '.join(METHODS)}")
        if self.steps < 1 or self.batch_size < 2:
            raise LatentrmError("--steps must be >= 1 and --batch-size >= 2 (KTO needs two examples per batch)")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0 and math.isfinite(self.beta)
                and self.beta > 0):
            raise LatentrmError("--learning-rate and --beta must be finite and > 0")
        if not self.pairs:
            raise LatentrmError("--pairs is required")
        return self


def preference_rows(frame: Any, method: str) -> list[dict[str, Any]]:
    """TRL's conversational preference (DPO/IPO), unpaired (KTO) or prompt-completion (SFT: the chosen side,
    each distinct (prompt, chosen) once) rows from the train split."""
    from latentrm.models import as_messages

    if "split" in frame.columns:
        frame = frame[frame["split"] == "train"]
    if frame.empty:
        raise LatentrmError("the pairs file has no train rows to optimise on")
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for record in frame.to_dict("records"):
        prompt = [m for m in as_messages(record["prompt"]) if m["role"] != "assistant"]
        chosen = [{"role": "assistant", "content": str(record["chosen"])}]
        rejected = [{"role": "assistant", "content": str(record["rejected"])}]
        if method == "sft":
            if (str(record["prompt"]), str(record["chosen"])) not in seen:  # a chosen text in k pairs counts once
                seen.add((str(record["prompt"]), str(record["chosen"])))
                rows.append({"prompt": prompt, "completion": chosen})
        elif method == "kto":
            rows += [{"prompt": prompt, "completion": chosen, "label": True},
                     {"prompt": prompt, "completion": rejected, "label": False}]
        else:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def trainer_args(config: BaselineConfig, output_dir: str | Path, *, use_cpu: bool | None = None) -> Any:
    """TRL's config for this method. Precision comes from `models.precision` (TRL 1.x defaults to bf16=True,
    15-25x slower than fp32 on a CPU without bf16 instructions), and gradient checkpointing is off: a model
    that fits without it trains faster without it."""
    import torch

    from latentrm.models import precision

    cpu = (not torch.cuda.is_available()) if use_cpu is None else use_cpu
    chosen = precision(config.dtype, use_cpu=cpu)
    common: dict[str, Any] = dict(output_dir=str(output_dir), max_steps=config.steps,
                                  per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
                                  max_length=config.max_length, seed=config.seed, data_seed=config.seed,
                                  logging_steps=1, save_strategy="no", report_to=[], use_cpu=cpu,
                                  disable_tqdm=True, lr_scheduler_type="constant", warmup_steps=0,
                                  gradient_checkpointing=False, model_init_kwargs={"dtype": chosen.dtype},
                                  **chosen.trainer_kwargs())
    if config.method == "sft":  # no beta: plain likelihood of the chosen completions, loss on their tokens only
        from trl import SFTConfig

        return SFTConfig(**common, completion_only_loss=True)
    if config.method == "kto":
        from trl import KTOConfig

        return KTOConfig(**common, beta=config.beta)
    from trl import DPOConfig

    return DPOConfig(**common, beta=config.beta, loss_type=["ipo" if config.method == "ipo" else "sigmoid"])


def _trainer_class(method: str) -> Any:
    if method == "sft":
        from trl import SFTTrainer

        return SFTTrainer
    if method == "kto":
        from trl import KTOTrainer

        return KTOTrainer
    from trl import DPOTrainer

    return DPOTrainer


def step_progress(name: str, total: int, log: Any) -> Any:
    """A TrainerCallback that logs one line per optimizer step: step k/n, loss, seconds a step, time left.
    Plain lines, not a redrawn bar, so that a `nohup` log shows the progress too."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.time()
            self.loss: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step = state.global_step
            per_step = (time.time() - self.started) / max(step, 1)
            left = per_step * max(total - step, 0)
            loss = f", loss {self.loss:.3f}" if self.loss is not None else ""
            log(f"  {name} step {step}/{total}{loss}, {per_step:.1f} s/step, ~{left / 60:.1f} min left")

    return StepProgress()


def run(config: BaselineConfig, *, force: bool = False, log: Any = print) -> Path:
    """Train one baseline (or skip a finished identical one); returns `<run_dir>/baseline-<method>`."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    from latentrm.io import atomic_write_text
    from latentrm.models import resolve_model
    from latentrm.pairs import frame_hash, load_pairs

    config.validate()
    frame = load_pairs(config.pairs)
    policy = resolve_model(config.policy)
    inputs = {"pairs": frame_hash(frame), "policy": policy.revision}
    key = stage_key(config, inputs)
    out = Path(config.run_dir) / f"baseline-{config.method}"
    if not force and is_done(out, key):
        log(f"{out} is up to date (same config and pairs); pass --force to retrain")
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    tokenizer = AutoTokenizer.from_pretrained(str(policy.path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = Dataset.from_list(preference_rows(frame, config.method))
    args = trainer_args(config, out / "checkpoints")
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    timer = Timer()
    trainer_class = _trainer_class(config.method)
    trainer: Any = trainer_class(model=str(policy.path), args=args, train_dataset=dataset,
                                 processing_class=tokenizer, peft_config=peft_config)
    trainer.add_callback(step_progress(config.method, config.steps, log))
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(str(out / "policy"))
    tokenizer.save_pretrained(str(out / "policy"))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    history = [row for row in trainer.state.log_history if "loss" in row]
    atomic_write_text(out / "history.json", json.dumps(history, indent=1, default=float))
    final = history[-1]["loss"] if history else None
    log(f"{config.method}: {config.steps} steps in {timer.seconds()} s, final loss {final if history else 'n/a'}")
    write_manifest(out, f"baseline-{config.method}", key, config, inputs=inputs, outputs=["policy", "history.json"],
                   summary={"steps": config.steps, "final_loss": final}, seconds=timer.seconds())
    return out
