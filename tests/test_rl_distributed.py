"""RL in two processes: `torchrun --nproc_per_node 2 -m latentrm.cli rl train` on CPU (gloo backend).

What is identical to one process with the same settings: the prompts of every step (`prompts_per_step` is the
global batch, split over the ranks), hence the tokens seen. What is not: the sampled completions (each rank
samples its share with its own generator stream), hence rewards and weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from test_rl_train import _weights, tiny_rm  # noqa: F401  (the module's fixture: pairs + a head)


def _train(tiny_model_dir, tiny_rm, run_dir, processes):  # noqa: F811
    pairs, rm = tiny_rm
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
                str(29500 + (os.getpid() + processes) % 1000)] if processes > 1 else [sys.executable]
    command = [*launcher, "-m", "latentrm.cli", "rl", "train", "--pairs", str(pairs), "--rm", str(rm),
               "--policy", str(tiny_model_dir), "--run-dir", str(run_dir), "--steps", "2", "--prompts-per-step", "2",
               "--num-generations", "2", "--max-completion-length", "6", "--learning-rate", "1e-3",
               "--eval-every", "0", "--threads", "1", "--set", "eval_n=2", "--set", "eval_false_premise=1",
               "--set", "eval_max_new_tokens=4", "--set", "save_steps=1"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    out = run_dir / "rl"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return out, [r for r in rows if r["kind"] == "train"], result.stdout


def test_two_grpo_steps_in_two_processes_see_the_same_prompts_as_one(tiny_model_dir, tiny_rm, tmp_path):  # noqa: F811
    one, rows_one, _ = _train(tiny_model_dir, tiny_rm, tmp_path / "one", 1)
    two, rows_two, stdout = _train(tiny_model_dir, tiny_rm, tmp_path / "two", 2)
    assert json.loads((two / "config.json").read_text())["processes"] == 2
    assert [r["step"] for r in rows_two] == [1, 2]  # rank 0 alone logs: one row a step
    assert stdout.count("step 1/2") == 1
    # the same global batch: every step's prompts, and (completions all run to the cap) the tokens seen
    assert [r["num_tokens"] for r in rows_two] == [r["num_tokens"] for r in rows_one]
    before, after = _weights(tiny_model_dir), _weights(two / "policy")
    assert any(not np.array_equal(before[n], after[n]) for n in before if n in after)
    assert (two / "manifest.json").exists() and (two / "summary.json").exists()
    assert not (two / "policy.tmp").exists()
