"""Benchmark: where the time of a `latentrm run` went, read from the run's own logs (nothing is re-run).

    python bench/pipeline_times.py runs/quick

Reads `RUN_DIR/run.json` (each stage's wall seconds in that run, written by `latentrm run`) and the
stage manifests under RUN_DIR (`manifest.json`, whose `seconds` is the compute time of the run that
built the stage; a stage skipped because its manifest matched shows near-zero wall time in run.json
and its original time here). Prints one table: wall seconds, share of the run, the manifest seconds,
and a rate where a stage records one (completions/s of the data build, seconds per RL step, with the
training steps' own `step_time` and the in-training evals from `rl/metrics.jsonl`).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

# run.json stage name -> folders (under RUN_DIR) whose manifests belong to it
STAGE_FOLDERS = {"data": ["data"], "features": ["features"], "sweep": ["rm_sweep"], "rm": ["rm"],
                 "audit": ["audit"], "eval_base": ["eval/base"], "rl": ["rl"], "eval_policy": ["eval/policy"]}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def manifest_seconds(run_dir: Path, stage: str) -> float | None:
    total, found = 0.0, False
    for folder in STAGE_FOLDERS.get(stage, []):
        for manifest in sorted((run_dir / folder).rglob("manifest.json")):
            data = _json(manifest)
            if isinstance(data, dict) and isinstance(data.get("seconds"), int | float):
                total += float(data["seconds"])
                found = True
    return total if found else None


def stage_rate(run_dir: Path, stage: str) -> str:
    if stage == "data":
        build = _json(run_dir / "data" / "build.json") or {}
        if build.get("generated_this_run"):
            return (f"{build['generated_this_run']} completions in {build['generation_seconds_this_run']:.0f} s, "
                    f"{build['completions_per_second']:.2f}/s")
    if stage == "rl":
        summary = _json(run_dir / "rl" / "summary.json") or {}
        rows = []
        metrics = run_dir / "rl" / "metrics.jsonl"
        if metrics.exists():
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        steps = [r["step_time"] for r in rows if r.get("kind") == "train" and "step_time" in r]
        evals = [r["seconds"] for r in rows if r.get("kind") == "eval" and "seconds" in r]
        parts = []
        if summary.get("steps"):
            parts.append(f"{summary['steps']} steps, {summary['seconds_per_step']:.1f} s/step overall")
        if steps:
            parts.append(f"train step_time median {statistics.median(steps):.1f} s")
        if evals:
            parts.append(f"{len(evals)} evals, {sum(evals):.0f} s")
        return "; ".join(parts)
    if stage == "features":
        info = _json(run_dir / "features" / "features.json") or {}
        manifest = _json(run_dir / "features" / "manifest.json") or {}
        pairs = (manifest.get("summary") or {}).get("pairs")
        if pairs and manifest.get("seconds"):
            return f"{2 * pairs} texts, {2 * pairs / manifest['seconds']:.1f} texts/s" + (
                f", layers {info['layers']}" if isinstance(info, dict) and "layers" in info else "")
    return ""


def stage_table(run_dir: Path) -> tuple[list[list[str]], float]:
    run = _json(run_dir / "run.json")
    if not isinstance(run, dict) or "stages" not in run:
        raise SystemExit(f"{run_dir}/run.json is missing or has no 'stages'; pass a folder written by `latentrm run`")
    stages: dict[str, dict] = run["stages"]
    total = sum(float(s.get("seconds", 0.0)) for s in stages.values())
    rows = []
    for name, stage in stages.items():
        seconds = float(stage.get("seconds", 0.0))
        built = manifest_seconds(run_dir, name)
        rows.append([name, f"{seconds:.1f}", f"{seconds / total:.1%}" if total else "-",
                     f"{built:.1f}" if built is not None else "-", stage_rate(run_dir, name)])
    rows.append(["**total**", f"**{total:.1f}**", "100%", "", f"{total / 60:.1f} min"])
    return rows, total


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    from _common import table

    run = _json(args.run_dir / "run.json") or {}
    rows, _ = stage_table(args.run_dir)
    config = run.get("config", {})
    versions = run.get("versions", {})
    print(f"run {run.get('name')} (preset {run.get('preset')}), model {config.get('model')}, threads "
          f"{config.get('threads')}, torch {versions.get('torch')}")
    print(table(["stage", "wall s (run.json)", "share", "manifest s", "rate"], rows))
    return rows


if __name__ == "__main__":
    main()
