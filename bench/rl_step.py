"""Benchmark: one GRPO step split into generation, reward and update time, side by side in one run.

    .venv/bin/python bench/rl_step.py --run runs/quick                  # the quick preset's pairs and RM
    .venv/bin/python bench/rl_step.py --pairs runs/data/pairs.parquet --rm runs/ka/rm            # embedded, CPU
    .venv/bin/python bench/rl_step.py --pairs P --rm R --set num_generations=16 --set max_completion_length=128

It builds the same TRL GRPOTrainer that `latentrm rl train` builds (rl/session.py), times
`--steps` optimizer steps, and inside each step times the policy's `generate` calls and our
reward function (`ShapedReward`), split into its latent reward model call (`raw_scores`: render,
tokenize, truncated forward, head) and the rest (the shaper and the live metrics: artifact flags and
the rules judge's rates). "update" is the rest of the step: TRL's log-prob forward, the backward pass
and the optimizer. The first step is reported apart (warm-up); the table gives the median over the
other steps, each step's parts measured inside that step. Goal: the reward under 10% of a step.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a `latentrm run` folder: its data/pairs.parquet and rm/")
    parser.add_argument("--pairs")
    parser.add_argument("--rm")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="RLConfig key=value")
    args = parser.parse_args()
    if args.run:
        args.pairs = args.pairs or str(args.run / "data" / "pairs.parquet")
        args.rm = args.rm or str(args.run / "rm")
    if not (args.pairs and args.rm):
        parser.error("pass --run RUN_DIR, or --pairs and --rm")

    from transformers import TrainerCallback

    from latentrm.rl.grpo_config import build_config, parse_sets
    from latentrm.rl.grpo_trainer import prepare
    from latentrm.rl.session import build_session

    with tempfile.TemporaryDirectory() as tmp:
        sets = {"eval_every": 0, "save_steps": 10_000, **parse_sets(args.sets)}
        config = build_config(args.preset, sets, pairs=args.pairs, rm=args.rm, run_dir=tmp, steps=args.steps)
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
        trainer.train()
        type(reward).__call__ = reward_call  # type: ignore[method-assign]
        type(reward).raw_scores = raw_scores  # type: ignore[method-assign]

    completions = config.prompts_per_step * config.num_generations
    print(f"GRPO step: {config.prompts_per_step} prompts x {config.num_generations} completions, "
          f"<= {config.max_completion_length} tokens, policy {config.policy or 'rm backbone'}, lora={config.lora}")
    print(f"first step (warm-up): {timings['step'][0]:.1f} s")
    rest = slice(1, None) if len(timings["step"]) > 1 else slice(0, None)
    steps = list(zip(*(timings[k][rest] for k in ("step", "generate", "reward", "rm")), strict=True))
    parts = {  # per step, then the median over steps
        "generation": [g for _, g, _, _ in steps],
        "reward: latent RM scoring (raw_scores)": [m for _, _, _, m in steps],
        "reward: shaper + live metrics": [r - m for _, _, r, m in steps],
        "reward, total": [r for _, _, r, _ in steps],
        "update (log-probs, backward, optimizer)": [s - g - r for s, g, r, _ in steps],
        "whole step": [s for s, _, _, _ in steps],
    }
    shares = {name: statistics.median(v / s for v, (s, *_) in zip(values, steps, strict=True))
              for name, values in parts.items()}
    print(f"{len(steps)} timed steps after the warm-up")
    print("| part | seconds per step (median) | share of the step (median) |")
    print("| --- | ---: | ---: |")
    for name, values in parts.items():
        print(f"| {name} | {statistics.median(values):.2f} | {shares[name]:.1%} |")
    reward_s = statistics.median(parts["reward, total"])
    print(f"reward per scored completion: {1000 * reward_s / completions:.1f} ms "
          f"({1000 * statistics.median(parts['reward: latent RM scoring (raw_scores)']) / completions:.1f} ms in the RM); "
          f"reward share {shares['reward, total']:.1%} (goal: under 10%: {'met' if shares['reward, total'] < 0.1 else 'NOT met'})")


if __name__ == "__main__":
    main()
