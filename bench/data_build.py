"""Data build in 2 processes x 1 thread against 1 process x 2 threads, side by side, same seed and plan.

    python bench/data_build.py                               # the embedded model, 12 + 12 people, 2 samples
    python bench/data_build.py --n 50 --samples 2            # the quick preset's data stage (about 5 min each)
    python bench/data_build.py --backend fake --n 8           # the plumbing alone (no model), seconds

Each variant builds into its own fresh folder under --work: `latentrm data build` with `--threads 2` in one
process, then `torchrun --nproc_per_node 2 ... --threads 1`, where rank r generates shards r, r + 2, ... and
rank 0 merges. The script prints both wall times, the ratio, and whether the two pairs files are equal (a
shard's seed follows its index, so they must be). Run it on an otherwise idle machine: the two variants run
one after the other, and background load would favour whichever ran when it was lighter.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def build(argv: list[str], out: Path, *, processes: int, threads: int) -> float:
    """Wall seconds of one build into a fresh `out`."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    cli = ["-m", "latentrm.cli", "data", "build", *argv, "--threads", str(threads), "--out", str(out)]
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                                          "--master_port", str(29500 + os.getpid() % 1000)]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *launcher, *cli], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: the {processes}-process build failed:\n{done.stderr[-2000:]}")
    return seconds


def main(argv_in: list[str] | None = None) -> bool:
    """Run both variants; returns whether the two pairs files are equal."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12, help="real and made-up people each")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--backend", default="transformers", help="transformers (the embedded model) or fake")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-data"))
    args = parser.parse_args(argv_in)
    import pandas as pd

    argv = ["--backend", args.backend, "--n-real", str(args.n), "--n-fake", str(args.n), "--samples",
            str(args.samples), "--max-new-tokens", str(args.max_new_tokens), "--shard-size", "16", "--no-progress",
            "--seed", "0"]
    one = build(argv, args.work / "one", processes=1, threads=2)
    two = build(argv, args.work / "two", processes=2, threads=1)
    same = pd.read_parquet(args.work / "one" / "pairs.parquet").equals(
        pd.read_parquet(args.work / "two" / "pairs.parquet"))
    print(f"data build, {args.n} + {args.n} people x {args.samples} samples, backend {args.backend}")
    print(f"| variant | seconds |\n| --- | --- |\n| 1 process x 2 threads | {one:.1f} |\n"
          f"| 2 processes x 1 thread | {two:.1f} |")
    print(f"ratio (2 processes / 1 process): {two / one:.2f}x; pairs files equal: {same}")
    return bool(same)


if __name__ == "__main__":
    main()
