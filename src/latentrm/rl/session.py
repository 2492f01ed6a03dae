"""One GRPO training session: TRL's trainer, our reward, the logging and periodic-eval callbacks.

Split from `grpo_trainer.py` so that the stage logic (keys, skipping, resume, files) reads on
its own; this module is the part that touches models.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from latentrm.errors import LatentrmError
from latentrm.io import append_jsonl
from latentrm.rl.grpo_config import RLConfig


@contextlib.contextmanager
def frozen_base(model: Any) -> Iterator[None]:
    """The policy's base weights, adapters off, eval mode: what the shared reward backbone reads."""
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter():
            yield
    finally:
        if was_training:
            model.train()


# TRL's log keys we keep under short names in metrics.jsonl (everything TRL logs is kept too).
TRL_KEYS = {"reward": "reward", "reward_std": "reward_std", "entropy": "entropy",
            "completions/mean_length": "completion_length", "completions/clipped_ratio": "truncated_share",
            "kl": "kl", "loss": "loss"}


def eval_items(config: RLConfig) -> list[Any]:
    """The fixed periodic-eval set: `eval_n` held-out people per class (the recipe's own questions) plus
    false-premise questions."""
    from latentrm.eval.sets import load_set

    items = load_set("heldout", n_real=config.eval_n, n_fake=config.eval_n, seed=config.seed,
                     exclude_pairs=config.pairs, recipe=config.recipe)
    if config.eval_false_premise:
        items += load_set("false_premise")[: config.eval_false_premise]
    return items


def evaluate_policy(model: Any, tokenizer: Any, config: RLConfig, items: list[Any], *,
                    spec: str = "policy") -> dict[str, Any]:
    """Headline rates, `agrees` on false premises and entropy of `model` as it is now (rules judge)."""
    import torch

    from latentrm.eval.metrics import compute_metrics
    from latentrm.eval.runner import evaluate
    from latentrm.generation import SamplingConfig, TransformersBackend
    from latentrm.judges import get_judge
    from latentrm.models import Backbone

    was_training = model.training
    model.eval()
    try:
        backbone = Backbone(model=model, tokenizer=tokenizer, spec=spec, path=Path("."), revision="training")
        backend = TransformersBackend(backbone, progress=False)
        sampling = SamplingConfig(max_new_tokens=config.eval_max_new_tokens, temperature=0.7, top_p=0.95,
                                  seed=config.seed, batch_size=config.eval_batch_size)
        with torch.no_grad():
            rows = evaluate(items, backend, get_judge("rules"), sampling)
    finally:
        if was_training:
            model.train()
    from latentrm.data.recipes import load_recipe

    metrics = compute_metrics(rows, load_recipe(config.recipe).judging)
    return {"metrics": metrics, "rows": rows}


def flat_eval(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers a curve needs: each headline rate with k/n, `agrees`, entropy, length."""
    out: dict[str, Any] = {}
    for label, entry in metrics["headline"].items():
        out[f"eval/{label}"] = entry.get("rate")
        out[f"eval/{label}_k"], out[f"eval/{label}_n"] = entry.get("k"), entry.get("n")
    agrees = metrics["rates"].get("agrees")
    if agrees:
        out["eval/agrees"], out["eval/agrees_k"], out["eval/agrees_n"] = agrees["rate"], agrees["k"], agrees["n"]
    for name in ("mean_entropy", "distinct_2", "mean_length_tokens"):
        out[f"eval/{name}"] = metrics["diversity"].get(name)
    return out


def progress_line(row: dict[str, Any], max_steps: int, summary: tuple[str, ...] | None = None) -> str:
    """One line per logged step: reward, raw score, entropy, length, truncated share, and the live judge's rates
    that the recipe's summary names (knowledge_awareness's by default)."""
    from latentrm.data.recipes import default_judging

    parts = [f"step {row['step']}/{max_steps}"]
    live = tuple((f"train_judge/{label}", label, ".2f") for label in (summary or default_judging().summary))
    for key, name, fmt in (("reward", "reward", ".3f"), ("latent/raw_mean", "raw", ".3f"),
                           ("entropy", "entropy", ".2f"), ("completion_length", "length", ".0f"),
                           ("truncated_share", "truncated", ".2f"), *live):
        if isinstance(row.get(key), int | float):
            parts.append(f"{name} {row[key]:{fmt}}")
    return "  ".join(parts)


class Session:
    def __init__(self, config: RLConfig, trainer: Any, reward: Any, tokenizer: Any, out: Path, log: Any) -> None:
        self.config, self.trainer, self.reward, self.tokenizer, self.out, self.log = (
            config, trainer, reward, tokenizer, out, log)
        self.items = eval_items(config)
        self.evals: dict[int, dict[str, Any]] = {}

    def run_eval(self, step: int) -> dict[str, Any]:
        from latentrm.io import atomic_write_text

        start = time.time()
        result = evaluate_policy(self.trainer.model, self.tokenizer, self.config, self.items)
        row = {"step": step, "kind": "eval", "seconds": round(time.time() - start, 1), **flat_eval(result["metrics"])}
        folder = self.out / "eval"
        folder.mkdir(exist_ok=True)
        atomic_write_text(folder / f"step-{step:05d}.json", json.dumps(
            {"step": step, "metrics": result["metrics"], "responses": result["rows"]}, indent=1, default=str))
        append_jsonl(self.out / "metrics.jsonl", row)
        self.evals[step] = row
        rates = ", ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in row.items()
                          if k.startswith("eval/") and not k.endswith(("_k", "_n")) and isinstance(v, float))
        self.log(f"eval at step {step}: {rates} ({row['seconds']} s)")
        return row

    def final_eval(self) -> None:
        step = int(self.trainer.state.global_step)
        if step not in self.evals:
            self.run_eval(step)

    def save_policy(self, folder: Path) -> Path:
        """The trained policy as a plain model folder (LoRA adapters merged into a copy of the base)."""
        import shutil

        model = self.trainer.model
        model = self.trainer.accelerator.unwrap_model(model)
        staging = folder.with_name(folder.name + ".tmp")
        if staging.exists():
            shutil.rmtree(staging)
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(str(staging / "adapter"))  # the adapters alone, for reuse with peft
            model = model.merge_and_unload()
        model.save_pretrained(str(staging))
        self.tokenizer.save_pretrained(str(staging))
        if folder.exists():
            shutil.rmtree(folder)
        staging.replace(folder)
        return folder

    def summary(self, seconds: float) -> dict[str, Any]:
        history = self.trainer.state.log_history
        steps = max(1, int(self.trainer.state.global_step))
        first, last = (self.evals[min(self.evals)], self.evals[max(self.evals)]) if self.evals else ({}, {})
        return {"steps": steps, "seconds": round(seconds, 1), "seconds_per_step": round(seconds / steps, 2),
                "shaper": self.reward.shaper.describe(), "mix": self.config.mix,
                "fake_share": self.config.fake_share, "eval_start": first, "eval_end": last,
                "train_log_tail": history[-3:]}


def _callback_class() -> Any:
    from transformers import TrainerCallback

    class LatentCallback(TrainerCallback):
        """metrics.jsonl rows for TRL's logs, and the periodic eval."""

        def __init__(self) -> None:
            self.session: Session | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.session is not None and state.global_step == 0 and state.is_world_process_zero:
                self.session.run_eval(0)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if self.session is None or not logs or "train_runtime" in logs or not state.is_world_process_zero:
                return
            row = {"step": int(state.global_step), "kind": "train"}
            row.update({short: logs[key] for key, short in TRL_KEYS.items() if key in logs})
            row.update({k: v for k, v in logs.items() if isinstance(v, int | float)})
            append_jsonl(self.session.out / "metrics.jsonl", row)
            judging = self.session.reward.judging
            self.session.log(progress_line(row, int(state.max_steps), judging.summary if judging else None))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            session = self.session
            if session is None or not session.config.eval_every or not state.is_world_process_zero:
                return  # rank 0 evaluates (its own generate, no collective); the others go on to the next step
            if state.global_step % session.config.eval_every == 0 and state.global_step < state.max_steps:
                session.run_eval(int(state.global_step))

    return LatentCallback


def build_session(config: RLConfig, prepared: dict[str, Any], out: Path, *, log: Any = print) -> Session:
    """TRL's trainer for the run's algorithm (GRPOTrainer, RLOOTrainer) wired to our reward, prompts and callbacks."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    from latentrm.models import Backbone
    from latentrm.rl.reward import ShapedReward
    from latentrm.rm.model import LatentRewardModel

    policy = prepared["policy"]
    tokenizer = AutoTokenizer.from_pretrained(str(policy.path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    order = prepared["order"]
    dataset = Dataset.from_list([{"prompt": row["prompt"], "subset": row["subset"], "question": row["question"],
                                  "entity_id": row["entity_id"]} for row in order.to_dict("records")])
    args = config.to_grpo_config(out / "checkpoints")
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.lora_targets, task_type="CAUSAL_LM")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(config.dtype)
    if dtype is None:
        dtype = torch.bfloat16 if args.bf16 else torch.float32
    args.model_init_kwargs = {"dtype": dtype}

    from latentrm.data.recipes import load_recipe

    recipe = load_recipe(config.recipe)
    reward = ShapedReward(None, prepared["shaper"], batch_size=config.reward_batch_size,
                          judging=recipe.judging, kinds=recipe.judge_kinds())
    if not prepared["shared"]:
        reward.rm = LatentRewardModel.load(config.rm)
    callback = _callback_class()()
    from latentrm.rl.algorithms import ALGORITHMS

    _, trainer_class = ALGORITHMS.get(config.algorithm).classes()
    try:
        trainer = trainer_class(model=str(policy.path), reward_funcs=[cast(Any, reward)], args=args,
                                train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                                callbacks=[callback])
    except ValueError as exc:
        raise LatentrmError(f"TRL rejected the RL setup: {exc}") from None
    if config.trainable_layers:
        frozen = freeze_below(cast(Any, trainer.model), config.trainable_layers)
        log(f"training the top {config.trainable_layers} layers and the final norm; {frozen:.0%} of weights frozen")
    if prepared["shared"]:
        model = cast(Any, trainer.model)
        shared = Backbone(model=model, tokenizer=tokenizer, spec=prepared["meta"]["backbone"]["spec"],
                          path=policy.path, revision=policy.revision)
        _check_tokenizers(config, shared, prepared["meta"])
        reward.rm = LatentRewardModel.load(config.rm, backbone=shared)
        reward.scoring_context = lambda: frozen_base(model)
        log("reward: the policy's own base weights, adapters disabled (one copy of the backbone)")
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict; progress_line says what matters
    session = Session(config, trainer, reward, tokenizer, out, log)
    callback.session = session
    return session


def freeze_below(model: Any, trainable: int) -> float:
    """Freeze every weight but the top `trainable` decoder layers and the final norm; returns the frozen share.

    The embeddings (tied to the LM head in SmolLM2) and the lower layers get no gradient, so autograd stops at
    the lowest trained layer: the backward pass shrinks with them. The optimizer (built by the Trainer at
    `train()`) takes only the parameters that still require a gradient."""
    import torch

    depth = int(model.config.get_text_config().num_hidden_layers)
    if trainable > depth:
        raise LatentrmError(f"trainable_layers {trainable}: the policy has only {depth} layers")
    layers = next((m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == depth), None)
    if layers is None:
        raise LatentrmError("trainable_layers: cannot find the policy's decoder layers; use 0 (train every weight)")
    model.requires_grad_(False)
    for layer in list(layers)[-trainable:]:
        layer.requires_grad_(True)
    norm = getattr(getattr(model, "model", None), "norm", None)
    if norm is not None:
        norm.requires_grad_(True)
    total = sum(p.numel() for p in model.parameters())
    return 1.0 - sum(p.numel() for p in model.parameters() if p.requires_grad) / total


def _check_tokenizers(config: RLConfig, backbone: Any, meta: dict[str, Any]) -> None:
    """Sharing the backbone needs the reward model's tokenizer family to be the policy's."""
    from latentrm.models import load_tokenizer

    rm_tokenizer = load_tokenizer(meta["backbone"]["spec"])
    if rm_tokenizer.get_vocab() != backbone.tokenizer.get_vocab():
        raise LatentrmError(f"--lora shares the reward backbone with the policy, but {config.rm}'s tokenizer "
                            f"({meta['backbone']['spec']}) differs from the policy's; train the reward model on "
                            "the policy's base model, or drop --lora to score with a separate copy")
