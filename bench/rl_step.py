"""Benchmark: one GRPO step split into generation, reward and update time; two settings side by side in one run.

    .venv/bin/python bench/rl_step.py --run runs/quick                  # the quick preset's pairs and RM
    .venv/bin/python bench/rl_step.py --run runs/quick --after lora=true --after learning_rate=1e-4
    .venv/bin/python bench/rl_step.py --run runs/quick --set threads=2 --set trainable_layers=0 \
        --variant trainable_layers=6 --variant trainable_layers=10,max_completion_length=32  # one row per variant
    .venv/bin/python bench/rl_step.py --pairs runs/data/pairs.parquet --rm runs/ka/rm            # embedded, CPU
    .venv/bin/python bench/rl_step.py --pairs P --rm R --set num_generations=16 --set max_completion_length=128

It builds the same TRL GRPOTrainer that `latentrm rl train` builds (rl/session.py), times
`--steps` optimizer steps, and inside each step times the policy's `generate` calls and our
reward function (`ShapedReward`), split into its latent reward model call (`raw_scores`: render,
tokenize, truncated forward, head) and the rest (the shaper and the live metrics: artifact flags and
the rules judge's rates). "update" is the rest of the step: TRL's log-prob forward, the backward pass
and the optimizer. The first step is reported apart (warm-up); the table gives the median over the
other steps, each step's parts measured inside that step. Goal: the reward under 10% of a step.

With `--after KEY=VALUE` (repeatable) it then builds a second trainer from the same settings plus
those overrides, times it the same way in the same process, and prints after/before ratios of each
part: the before/after measurement of a speed change, on one machine in one run. `--variant` (repeatable)
adds one measured run per set of overrides, one row each. Goal for the quick preset's shape (2 prompts x 8
completions x 48 tokens on 2 cores): a step of at most half of the full fine-tuning step, measured in the same run.
The cpu-small preset now trains the top 6 layers; `--set trainable_layers=0` makes the first row full fine-tuning.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

PARTS = ("generation", "reward: latent RM scoring (raw_scores)", "reward: shaper + live metrics", "reward, total",
         "update (log-probs, backward, optimizer)", "whole step")


def measure(preset: str, sets: dict[str, Any], pairs: str, rm: str, steps: int) -> dict[str, Any]:
    """Train `steps` GRPO steps with these settings; each step's parts, timed inside the step."""
    from transformers import TrainerCallback

    from latentrm.rl.grpo_config import build_config
    from latentrm.rl.grpo_trainer import prepare
    from latentrm.rl.session import build_session

    with tempfile.TemporaryDirectory() as tmp:
        sets = {"eval_every": 0, "save_steps": 10_000, **sets}
        config = build_config(preset, sets, pairs=pairs, rm=rm, run_dir=tmp, steps=steps)
        session = build_session(config, prepare(config), Path(tmp) / "rl", log=lambda *_: None)
        session.run_eval = lambda step: {}  # type: ignore[method-assign]  # time training steps only
        trainer = session.trainer
        timings: dict[str, list[float]] = {"generate": [], "reward": [], "rm": [], "step": []}
        current = {"generate": 0.0, "reward": 0.0, "rm": 0.0}

        def timed(name: str, fn: Any) -> Any:
            @functools.wraps(fn)
            def wrapper(*a: Any, **k: Any) -> Any:
                start = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    current[name] += time.perf_counter() - start

            return wrapper

        # TRL generates with the unwrapped model (a PeftModel forwards `generate` to its base model).
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.generate = timed("generate", model.generate)
        reward = session.reward
        reward_call = type(reward).__call__
        raw_scores = type(reward).raw_scores
        type(reward).__call__ = timed("reward", reward_call)  # type: ignore[method-assign]
        type(reward).raw_scores = timed("rm", raw_scores)  # type: ignore[method-assign]

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *a: Any, **k: Any) -> None:
                current.update(generate=0.0, reward=0.0, rm=0.0)
                self.start = time.perf_counter()

            def on_step_end(self, *a: Any, **k: Any) -> None:
                timings["step"].append(time.perf_counter() - self.start)
                timings["generate"].append(current["generate"])
                timings["reward"].append(current["reward"])
                timings["rm"].append(current["rm"])

        trainer.add_callback(StepTimer())
        try:
            trainer.train()
        finally:
            type(reward).__call__ = reward_call  # type: ignore[method-assign]
            type(reward).raw_scores = raw_scores  # type: ignore[method-assign]

    rest = slice(1, None) if len(timings["step"]) > 1 else slice(0, None)
    steps_t = list(zip(*(timings[k][rest] for k in ("step", "generate", "reward", "rm")), strict=True))
    parts = dict(zip(PARTS, (
        [g for _, g, _, _ in steps_t],
        [m for _, _, _, m in steps_t],
        [r - m for _, _, r, m in steps_t],
        [r for _, _, r, _ in steps_t],
        [s - g - r for s, g, r, _ in steps_t],
        [s for s, _, _, _ in steps_t],
    ), strict=True))
    return {
        "config": config,
        "warmup": timings["step"][0],
        "n": len(steps_t),
        "median": {name: statistics.median(v) for name, v in parts.items()},
        "share": {name: statistics.median(v / s for v, (s, *_) in zip(values, steps_t, strict=True))
                  for name, values in parts.items()},
    }


def report(label: str, result: dict[str, Any]) -> None:
    config = result["config"]
    completions = config.prompts_per_step * config.num_generations
    print(f"\n[{label}] GRPO step: {config.prompts_per_step} prompts x {config.num_generations} completions, "
          f"<= {config.max_completion_length} tokens, policy {config.policy or 'rm backbone'}, lora={config.lora}, "
          f"threads={config.threads}")
    print(f"first step (warm-up): {result['warmup']:.1f} s; {result['n']} timed steps after it")
    print("| part | seconds per step (median) | share of the step (median) |")
    print("| --- | ---: | ---: |")
    for name in PARTS:
        print(f"| {name} | {result['median'][name]:.2f} | {result['share'][name]:.1%} |")
    reward_s = result["median"]["reward, total"]
    share = result["share"]["reward, total"]
    print(f"reward per scored completion: {1000 * reward_s / completions:.1f} ms "
          f"({1000 * result['median']['reward: latent RM scoring (raw_scores)'] / completions:.1f} ms in the RM); "
          f"reward share {share:.1%} (goal: under 10%: {'met' if share < 0.1 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a `latentrm run` folder: its data/pairs.parquet and rm/")
    parser.add_argument("--pairs")
    parser.add_argument("--rm")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="RLConfig key=value (every run)")
    parser.add_argument("--after", action="append", default=[], help="RLConfig key=value for a second run")
    parser.add_argument("--variant", action="append", default=[],
                        help="KEY=VALUE[,KEY=VALUE]: one more run with these overrides (repeatable: one row each)")
    args = parser.parse_args()
    if args.run:
        args.pairs = args.pairs or str(args.run / "data" / "pairs.parquet")
        args.rm = args.rm or str(args.run / "rm")
    if not (args.pairs and args.rm):
        parser.error("pass --run RUN_DIR, or --pairs and --rm")

    from latentrm.rl.grpo_config import parse_sets

    base_sets = parse_sets(args.sets)
    variants = ([args.after] if args.after else []) + [v.split(",") for v in args.variant]
    before = measure(args.preset, base_sets, args.pairs, args.rm, args.steps)
    report("before" if variants else "run", before)
    if not variants:
        return
    rows = []
    for items in variants:
        label = " ".join(items)
        after = measure(args.preset, {**base_sets, **parse_sets(items)}, args.pairs, args.rm, args.steps)
        report("after: " + label, after)
        rows.append((label, after))
    print("\n| setting | " + " | ".join(PARTS) + " | whole step / before |")
    print("| --- |" + " ---: |" * (len(PARTS) + 1))
    print("| before | " + " | ".join(f"{before['median'][p]:.2f}" for p in PARTS) + " | 1.00x |")
    for label, after in rows:
        ratio = after["median"]["whole step"] / before["median"]["whole step"]
        print(f"| {label} | " + " | ".join(f"{after['median'][p]:.2f}" for p in PARTS) + f" | {ratio:.2f}x |")
    for label, after in rows:
        step = after["median"]["whole step"]
        print(f"{label}: whole step {step:.1f} s, {step / before['median']['whole step']:.2f}x of before "
              f"(goal <= 0.5x: {'met' if step <= 0.5 * before['median']['whole step'] else 'NOT met'})")


if __name__ == "__main__":
    main()
