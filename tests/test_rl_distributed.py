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


def test_a_killed_two_process_run_resumes_from_its_last_complete_checkpoint(tiny_model_dir, tiny_rm, tmp_path):  # noqa: F811
    """Kill both ranks once rank 0 has written a complete checkpoint; `--resume` in 2 processes goes on from the
    last complete one (a half-written one is passed over) and logs every step once."""
    import signal
    import time

    pairs, rm = tiny_rm
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(29500 + (os.getpid() + 7) % 1000), "-m", "latentrm.cli", "rl", "train", "--pairs", str(pairs),
               "--rm", str(rm), "--policy", str(tiny_model_dir), "--run-dir", str(run_dir), "--steps", "6",
               "--prompts-per-step", "2", "--num-generations", "2", "--max-completion-length", "6",
               "--learning-rate", "1e-3", "--eval-every", "0", "--threads", "1", "--set", "eval_n=2",
               "--set", "eval_false_premise=1", "--set", "eval_max_new_tokens=4", "--set", "save_steps=1"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    first = run_dir / "rl" / "checkpoints" / "checkpoint-1" / "trainer_state.json"
    deadline = time.time() + 600
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    import psutil  # accelerate's dependency

    # every rank, mid-run: the launcher's workers may sit in process groups of their own, so kill the whole tree
    # and wait until none is left (an orphaned rank would go on logging beside the resumed run)
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in tree:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait()
    psutil.wait_procs(tree, timeout=30)
    assert first.exists(), process.stderr.read()[-3000:] if process.stderr else ""
    assert not (run_dir / "rl" / "manifest.json").exists()  # killed before it finished
    killed_at = sorted(p.name for p in (run_dir / "rl" / "checkpoints").glob("checkpoint-*"))
    half = run_dir / "rl" / "checkpoints" / "checkpoint-5"  # a checkpoint cut off mid-write: no trainer_state.json
    if not half.exists():
        half.mkdir()
        (half / "model.safetensors").write_bytes(b"torn")
    resumed = subprocess.run([*command[:command.index("--set")], "--resume", *command[command.index("--set"):]],
                             env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    assert "resuming from checkpoint-" in resumed.stdout + resumed.stderr, killed_at
    out = run_dir / "rl"
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if line.strip() and json.loads(line)["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # each step once: the rows past the resume point were dropped
    assert (out / "manifest.json").exists() and json.loads((out / "config.json").read_text())["processes"] == 2


def test_features_in_two_processes_match_one(tiny_model_dir, tiny_rm, tmp_path):  # noqa: F811
    """`torchrun --nproc_per_node 2 -m latentrm.cli features`: each rank extracts its shard of the texts into a
    cache entry of its own, rank 0 merges; the merged features equal a 1-process extraction's."""
    pairs, _ = tiny_rm
    base = ["-m", "latentrm.cli", "features", "--pairs", str(pairs), "--model", str(tiny_model_dir),
            "--layers", "1,2", "--pooling", "last"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    runs = {}
    for processes in (1, 2):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    str(29500 + (os.getpid() + 3) % 1000)] if processes == 2 else [sys.executable]
        run_dir = tmp_path / f"p{processes}"
        result = subprocess.run([*launcher, *base, "--run-dir", str(run_dir)], env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert (run_dir / "features" / "manifest.json").exists()
        entries = {p.parent.name: json.loads(p.read_text()) for p in (run_dir / "cache").glob("*/manifest.json")}
        runs[processes] = (run_dir, entries)
    (one, one_entries), (two, two_entries) = runs[1], runs[2]
    assert sorted(e.get("shard") for e in two_entries.values() if "shard" in e) == [0, 1]  # one entry per rank
    merged = [key for key, e in two_entries.items() if "shard" not in e]
    assert merged == list(one_entries)  # the same content key as one process's
    for layer in (1, 2):
        a = np.load(one / "cache" / merged[0] / f"layer_{layer:03d}.npy")
        b = np.load(two / "cache" / merged[0] / f"layer_{layer:03d}.npy")
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)
