"""`latentrm rl`: GRPO against a latent reward model (`rl train`) and the reward-design experiment (`rl compare`).

Only typer is imported at module level, so `latentrm --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentrm.errors import LatentrmError

app = typer.Typer(help="RL against a latent reward model: TRL GRPO, reward shapers, the compare experiment.",
                  no_args_is_help=True)

Preset = Annotated[Optional[str], typer.Option(help="presets/rl/<NAME>.yaml (cpu-small, gpu) or a YAML path; "
                                                    "options given here override it.")]


def shaper_names() -> list[str]:
    """The registered reward shapers (for option validation; imports the shaping module on first use)."""
    from latentrm.rm.shaping import available_shapers

    return available_shapers()


def _shaper_params(items: list[str] | None) -> dict[str, float] | None:
    from latentrm.validate import parse_shaper_params

    return parse_shaper_params(items) if items else None


@app.command("train")
def train(
    pairs: Annotated[Optional[Path], typer.Option(help="Pairs file: prompts come from its train split.")] = None,
    rm: Annotated[Optional[Path], typer.Option("--rm", help="Reward-model folder from `latentrm rm train`.")] = None,
    preset: Preset = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run directory; writes <run-dir>/rl/.")] = None,
    policy: Annotated[Optional[str], typer.Option(help="Start policy (default: the reward model's backbone).")] = None,
    shaper: Annotated[Optional[str], typer.Option(help="raw | calibrated | capped | quantile_match | density | "
                                                       "ensemble")] = None,
    shaper_param: Annotated[Optional[list[str]], typer.Option(help="name=number, repeatable.")] = None,
    mix: Annotated[Optional[str], typer.Option(help="balanced | natural class mix per batch.")] = None,
    fake_share: Annotated[Optional[float], typer.Option(help="natural mix: share of the recipe's skewed class (made-up people; false claims for sycophancy).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Optimizer steps.")] = None,
    prompts_per_step: Annotated[Optional[int], typer.Option(min=1, help="Prompts per step (P).")] = None,
    num_generations: Annotated[Optional[int], typer.Option(min=2, help="Completions per prompt (G).")] = None,
    max_completion_length: Annotated[Optional[int], typer.Option(min=1, help="Completion token cap.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="AdamW learning rate.")] = None,
    beta: Annotated[Optional[float], typer.Option(min=0.0, help="KL coefficient (0: no reference model).")] = None,
    lora: Annotated[Optional[bool], typer.Option("--lora/--no-lora", help="Train LoRA adapters.")] = None,
    share_backbone: Annotated[Optional[bool], typer.Option("--share-backbone/--no-share-backbone",
                                                           help="With LoRA, score with the policy's base.")] = None,
    mask_truncated: Annotated[Optional[bool], typer.Option("--mask-truncated/--no-mask-truncated",
                                                           help="TRL mask_truncated_completions.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(min=0, help="Evaluate every N steps (0: start and end).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed.")] = None,
    report_to: Annotated[Optional[str], typer.Option(help="none | tensorboard | trackio | wandb.")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any RLConfig field: key=value, repeatable "
                                                                    "(e.g. --set eval_n=8).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed run from its last checkpoint.")] = False,
    fresh: Annotated[bool, typer.Option(help="Delete the run folder and start over.")] = False,
    force: Annotated[bool, typer.Option(help="Retrain even if an identical finished run exists.")] = False,
) -> None:
    """GRPO (TRL) of a policy against a latent reward model, with a shaped, class-aware reward."""
    from latentrm.rl.grpo_config import build_config, parse_sets
    from latentrm.rl.grpo_trainer import run

    if resume and fresh:
        raise LatentrmError("--resume and --fresh contradict each other; pass one")
    config = build_config(
        preset, parse_sets(set_), pairs=str(pairs) if pairs else None, rm=str(rm) if rm else None,
        run_dir=str(run_dir) if run_dir else None, policy=policy, shaper=shaper,
        shaper_params=_shaper_params(shaper_param), mix=mix, fake_share=fake_share, steps=steps,
        prompts_per_step=prompts_per_step, num_generations=num_generations,
        max_completion_length=max_completion_length, learning_rate=learning_rate, beta=beta, lora=lora,
        share_backbone=share_backbone, mask_truncated=mask_truncated, eval_every=eval_every, seed=seed,
        report_to=report_to, threads=threads)
    _writable(Path(config.run_dir))
    out = run(config, resume=resume, fresh=fresh, force=force)
    print(f"RL run in {out} (policy: {out / 'policy'}, metrics: {out / 'metrics.jsonl'})")


def _writable(folder: Path) -> None:
    """A run directory that cannot be created or written fails now, not after the models load."""
    from latentrm.validate import check_writable_dir

    check_writable_dir(folder, "--run-dir")


def baseline(
    method: Annotated[str, typer.Argument(help="dpo | ipo | kto | sft (the chosen side only)")],
    pairs: Annotated[Path, typer.Option(help="Pairs file (train split).")],
    policy: Annotated[str, typer.Option(help="Start policy.")] = "embedded",
    run_dir: Annotated[Path, typer.Option(help="Writes <run-dir>/baseline-<method>/.")] = Path("runs/baseline"),
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 30,
    batch_size: Annotated[int, typer.Option(min=2, help="Pairs per step.")] = 8,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = 5e-6,
    beta: Annotated[float, typer.Option(help="DPO/IPO/KTO beta (SFT has none).")] = 0.1,
    lora: Annotated[bool, typer.Option("--lora/--no-lora", help="Train LoRA adapters.")] = False,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads.")] = None,
    force: Annotated[bool, typer.Option(help="Retrain even if an identical run exists.")] = False,
) -> None:
    """Train a DPO, IPO or KTO baseline, or SFT on the chosen side, on the pairs file's train split."""
    from latentrm.rl.baselines import METHODS, BaselineConfig, run

    if method not in METHODS:
        raise LatentrmError(f"baseline {method!r}: use one of {', '.join(METHODS)}")
    _writable(run_dir)
    config = BaselineConfig(method=method, pairs=str(pairs), policy=policy, run_dir=str(run_dir), steps=steps,
                            batch_size=batch_size, learning_rate=learning_rate, beta=beta, lora=lora, seed=seed,
                            threads=threads)
    out = run(config, force=force)
    print(f"{method} policy in {out / 'policy'}")


@app.command("compare")
def compare(
    pairs: Annotated[Path, typer.Option(help="Pairs file (prompts from train; DPO/IPO/KTO train on it).")],
    rm: Annotated[Path, typer.Option("--rm", help="Reward-model folder.")],
    run_dir: Annotated[Path, typer.Option(help="Writes one folder per arm, eval/ and compare/.")] = Path(
        "runs/compare"),
    preset: Annotated[str, typer.Option(help="RL preset every arm starts from.")] = "cpu-small",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="RLConfig overrides for every arm.")] = None,
    arms: Annotated[str, typer.Option(help="Comma-separated arms.")] = ",".join(
        ["raw_natural", "raw_balanced", "calibrated_balanced", "quantile_match_balanced"]),
    baselines: Annotated[str, typer.Option(help="Comma-separated: dpo, ipo, kto (empty: none).")] = "dpo,ipo,kto",
    fake_share: Annotated[float, typer.Option(help="The natural arm's share of the recipe's skewed class (made-up people; false claims).")] = 0.75,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (2+ show the spread).")] = "0",
    eval_n: Annotated[int, typer.Option(min=1, help="Held-out people per class in the final eval.")] = 40,
    eval_false_premise: Annotated[int, typer.Option(min=0, help="False-premise questions.")] = 40,
    eval_max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per eval response.")] = 64,
    eval_qa: Annotated[Optional[Path], typer.Option(help="Your JSONL of qa questions with short references: "
                                                    "adds precision and not-attempted (reference judge).")] = None,
    baseline_lr: Annotated[float, typer.Option(help="DPO/IPO/KTO learning rate.")] = 5e-6,
    warm_start: Annotated[Optional[str], typer.Option(help="sft | dpo | ipo | kto: train it first and start every "
                                                      "GRPO arm from its policy.")] = None,
    warm_start_steps: Annotated[int, typer.Option(help="Warm-start steps (the quick preset's: 30).")] = 30,
    warm_start_lr: Annotated[float, typer.Option(help="Warm-start learning rate (the quick preset's).")] = 2e-5,
    policy: Annotated[Optional[str], typer.Option(help="A ready start policy for every GRPO arm (a model folder, "
                                                  "e.g. runs/quick/warm_start/baseline-sft/policy).")] = None,
) -> None:
    """Raw vs calibrated vs quantile-matched rewards, natural vs balanced mix, and DPO/IPO/KTO: one table."""
    from latentrm.rl.compare import CompareConfig, run
    from latentrm.rl.grpo_config import parse_sets

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise LatentrmError(f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1") from None
    _writable(run_dir)
    config = CompareConfig(pairs=str(pairs), rm=str(rm), run_dir=str(run_dir), preset=preset,
                           rl_sets=parse_sets(set_),
                           arms=tuple(a.strip() for a in arms.split(",") if a.strip()),
                           baselines=tuple(b.strip() for b in baselines.split(",") if b.strip()),
                           fake_share=fake_share, seeds=seed_list, eval_n=eval_n,
                           eval_false_premise=eval_false_premise, eval_max_new_tokens=eval_max_new_tokens,
                           eval_qa=str(eval_qa) if eval_qa else None, baseline_lr=baseline_lr,
                           warm_start=warm_start, warm_start_steps=warm_start_steps, warm_start_lr=warm_start_lr,
                           policy=policy)
    out = run(config.validate())
    print((out / "table.md").read_text())
    print(f"compare results in {out}")


@app.command("table")
def table(run_dir: Annotated[Path, typer.Argument(help="A `rl compare` run directory.")]) -> None:
    """Re-render a compare run's table.md (with the training-dynamics table) and plots from its files."""
    from latentrm.rl.compare import render

    out = render(run_dir)
    print((out / "table.md").read_text())


campaign_app = typer.Typer(help="The RL experiment as a resumable campaign of units (rl/campaign.py).",
                           no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
Results = Annotated[Path, typer.Option(help="The tracked results folder of the campaign.")]


@campaign_app.command("prepare")
def campaign_prepare(
    run: Annotated[Path, typer.Option(help="A finished `latentrm run` folder with an SFT warm start.")],
    results: Results = Path("results/rl-campaign"),
    steps: Annotated[int, typer.Option(min=1, help="GRPO steps a unit.")] = 48,
    eval_n: Annotated[int, typer.Option(min=1, help="Eval people per class.")] = 50,
    check_n: Annotated[int, typer.Option(min=1, help="On-policy check people per class.")] = 10,
) -> None:
    """Record the campaign's inputs (pairs, head, eval and check item lists) and their hashes."""
    from latentrm.rl.campaign import CampaignSettings, prepare

    if not run.is_dir():
        raise LatentrmError(f"--run {run}: no such folder; give a `latentrm run` folder")
    _writable(results)
    prepare(run, results, CampaignSettings(steps=steps, eval_n=eval_n, check_n=check_n))


@campaign_app.command("unit")
def campaign_unit(
    names: Annotated[list[str], typer.Argument(help="Units, in order: base, sft, bo8, calibrated-s0, raw-s1, "
                                                    "base-calibrated-s0, base-calibrated-s0-p2 (a chain's "
                                                    "part 2: steps more from part 1's policy), kto-s0, ...")],
    results: Results = Path("results/rl-campaign"),
    work: Annotated[Path, typer.Option(help="Untracked folder for weights, checkpoints and caches.")] = Path(
        "runs/campaign"),
    force: Annotated[bool, typer.Option(help="Redo a unit even when it is done.")] = False,
) -> None:
    """Run units one after another (a finished unit is skipped); the table is re-rendered after each."""
    from latentrm.rl.campaign import parse_unit, read_inputs, run_unit
    from latentrm.rl.campaign_table import render

    for name in names:
        parse_unit(name)  # every name is checked before the first unit starts
    read_inputs(results)
    _writable(work)
    for name in names:
        run_unit(results, name, work=work, force=force)
        render(results)


@campaign_app.command("table")
def campaign_table(results: Results = Path("results/rl-campaign")) -> None:
    """Render `<results>/table.md` and the training plot from whatever units have finished."""
    from latentrm.rl.campaign_table import render

    print(render(results).read_text())
