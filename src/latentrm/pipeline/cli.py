"""`latentrm run [--preset quick|cpu-full|gpu-qwen3-8b] [--model ...] [--name ...] [--set section.field=value]`.

Prints the resolved config, then for each stage a header, the stage's own progress bar, and one summary line
with the stage's time, the total so far and an estimate of what is left (the preset's measured stage times,
scaled by how this machine compares so far). Only typer is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from latentrm.errors import LatentrmError


def _minutes(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """The pipeline's display: a rule per stage, then its summary line with elapsed time and an estimate."""

    def __init__(self, estimates: dict[str, float], names: tuple[str, ...]) -> None:
        import time

        from rich.console import Console

        self.console = Console()
        self.estimates = estimates
        self.names = names
        self.started = time.perf_counter()
        self.clock = time.perf_counter
        self.measured = 0.0  # seconds of stages run so far
        self.expected = 0.0  # what the preset expected for them

    def __call__(self, index: int, name: str, record: dict[str, Any]) -> None:
        if "seconds" not in record:
            self.console.rule(f"[bold]{index + 1}/{len(self.names)} {name}", align="left")
            return
        seconds = float(record["seconds"])
        self.measured += seconds
        self.expected += self.estimates.get(name, seconds)
        speed = self.measured / self.expected if self.expected > 1 else 1.0  # this machine vs the preset's
        left = sum(self.estimates.get(n, 0.0) for n in self.names[index + 1:]) * speed
        estimate = f", about {_minutes(left)} left" if index + 1 < len(self.names) and self.estimates else ""
        self.console.print(f"[green]done[/] {name} in {_minutes(seconds)}: {record['summary']}", highlight=False)
        self.console.print(f"[dim]elapsed {_minutes(self.clock() - self.started)}{estimate}[/]", highlight=False)


def run(
    preset: Annotated[str, typer.Option(help="presets/run/<NAME>.yaml (quick, cpu-full, gpu-qwen3-8b) or a YAML "
                                             "path.")] = "quick",
    model: Annotated[Optional[str], typer.Option(help="Backbone for every stage (default: the preset's).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name: writes runs/<name>/ (default: the preset's).")
                    ] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="section.field=value, repeatable, e.g. "
                                                                    "data.n_real=20 or rl.steps=10.")] = None,
    from_stage: Annotated[Optional[str], typer.Option("--from", help="Force this stage and every later one: data, "
                                                                     "features, sweep, rm, audit, eval_model, eval_base, rl, "
                                                                     "eval_policy, report.")] = None,
    runs_root: Annotated[Path, typer.Option(help="Folder that holds the runs.")] = Path("runs"),
) -> None:
    """The whole method on one backbone: data, features, sweep, reward model, audit, RL, evaluation, report."""
    import yaml
    from rich.console import Console

    from latentrm import validate
    from latentrm.pipeline import plan
    from latentrm.pipeline.run import STAGE_NAMES
    from latentrm.pipeline.run import run as run_pipeline

    if from_stage is not None and from_stage not in STAGE_NAMES:
        raise LatentrmError(f"--from {from_stage!r}: use one of {', '.join(STAGE_NAMES)}")
    config = plan.resolve(preset, sets=set_, name=name, model=model, runs_root=str(runs_root))
    validate.check_writable_dir(config.run_dir, "--runs-root")
    console = Console()
    console.rule(f"[bold]latentrm run: preset {config.preset} -> {config.run_dir}", align="left")
    console.print(yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None, width=110).rstrip(),
                  highlight=False, markup=False, soft_wrap=True)
    # the RL stage's knobs come from the rl preset, this preset's rl section and --set: print what they resolve to
    rl = plan.rl_config(config, config.run_dir / "data" / "pairs.parquet")
    shown = {k: v for k, v in rl.to_dict().items() if k not in ("pairs", "rm", "run_dir", "policy")}
    console.print("rl (resolved, " + str(config.rl.get("preset") or "no preset") + " + rl section + --set): "
                  + ", ".join(f"{k}={v}" for k, v in shown.items()), highlight=False, markup=False, soft_wrap=True)
    from latentrm.models import precision

    chosen = precision()
    console.print(f"precision: {chosen.dtype} on {chosen.device}, mixed bf16={chosen.bf16} fp16={chosen.fp16} "
                  f"({chosen.reason}); this CPU has native bf16: {'yes' if chosen.cpu_bf16 else 'no'}",
                  highlight=False, markup=False)
    progress = Progress(config.estimates, STAGE_NAMES)
    folder = run_pipeline(config, from_stage=from_stage, on_stage=progress,
                          log=lambda line: console.print(line, style="dim", highlight=False, markup=False))
    console.print(f"[bold]report: {folder / 'report.html'}[/] (re-render with `latentrm report {folder}`)",
                  highlight=False)
