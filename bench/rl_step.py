"""Benchmark: one GRPO step split into generation, reward and update time, side by side in one run.

    .venv/bin/python bench/rl_step.py --pairs runs/data/pairs.parquet --rm runs/ka/rm            # embedded, CPU
    .venv/bin/python bench/rl_step.py --pairs P --rm R --set num_generations=16 --set max_completion_length=128

It builds the same TRL GRPOTrainer that `latentrm rl train` builds (rl/session.py), times
`--steps` optimizer steps, and inside each step times the policy's `generate` calls and our
reward function (`ShapedReward`, the latent reward model's truncated forward plus the shaper).
"update" is the rest of the step: TRL's log-prob forward, the backward pass and the optimizer.
The first step is reported apart (warm-up). Goal: the reward under 10% of a step.
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
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--rm", required=True)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="RLConfig key=value")
    args = parser.parse_args()

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
        timings: dict[str, list[float]] = {"generate": [], "reward": [], "step": []}
        current = {"generate": 0.0, "reward": 0.0}

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
        type(reward).__call__ = timed("reward", reward_call)  # type: ignore[method-assign]

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *a: Any, **k: Any) -> None:
                current.update(generate=0.0, reward=0.0)
                self.start = time.perf_counter()

            def on_step_end(self, *a: Any, **k: Any) -> None:
                timings["step"].append(time.perf_counter() - self.start)
                timings["generate"].append(current["generate"])
                timings["reward"].append(current["reward"])

        trainer.add_callback(StepTimer())
        trainer.train()
        type(reward).__call__ = reward_call  # type: ignore[method-assign]

    completions = config.prompts_per_step * config.num_generations
    print(f"GRPO step: {config.prompts_per_step} prompts x {config.num_generations} completions, "
          f"<= {config.max_completion_length} tokens, policy {config.policy or 'rm backbone'}, lora={config.lora}")
    print(f"first step (warm-up): {timings['step'][0]:.1f} s")
    rest = slice(1, None) if len(timings["step"]) > 1 else slice(0, None)
    step = statistics.mean(timings["step"][rest])
    generate = statistics.mean(timings["generate"][rest])
    reward_s = statistics.mean(timings["reward"][rest])
    update = step - generate - reward_s
    print("| part | seconds per step | share |")
    print("| --- | ---: | ---: |")
    for name, value in (("generation", generate), ("reward (latent RM + shaper)", reward_s), ("update", update),
                        ("whole step", step)):
        print(f"| {name} | {value:.2f} | {value / step:.1%} |")
    print(f"reward per scored completion: {1000 * reward_s / completions:.1f} ms; "
          f"reward share {reward_s / step:.1%} (goal: under 10%)")


if __name__ == "__main__":
    main()
