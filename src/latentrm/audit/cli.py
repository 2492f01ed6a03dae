"""`latentrm rm audit`, `goodhart`, `onpolicy` and `probe`, added to the lead's `rm` typer group by `register(rm_app)`.

Only typer is imported at module level; everything else loads inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from latentrm import validate

RmDir = Annotated[Path, typer.Option("--rm", help="Reward-model folder (head.safetensors + rm.json).")]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="Run directory (default: the rm folder's parent).",
                                                callback=validate.writable_dir_option)]


def _split_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def audit(
    rm: RmDir,
    pairs: Annotated[Path | None, typer.Option(help="Pairs file (default: the one recorded in rm.json).")] = None,
    completions: Annotated[Path | None, typer.Option(help="Generations file (prompt, completion, subset?) "
                                                        "to audit instead of pairs.")] = None,
    run_dir: RunDirOpt = None,
    split: Annotated[str, typer.Option(help="heldout (val+test, else all) | all | train | val | test.")] = "heldout",
    probes: Annotated[str, typer.Option(help="Comma-separated probes (default: all): surface, counterfactual, "
                                        "steering_leakage, sycophancy, cross_class, examples, interpretability, "
                                        "ensemble; 'all,backbone' adds the opt-in backbone probe.")] = "",
    steering_text: Annotated[list[str] | None, typer.Option(help="Steering-note text (repeatable); "
                                                               "default: the recipe's.")] = None,
    recipe: Annotated[str | None, typer.Option(help="Recipe whose steering notes to insert.")] = None,
    max_pairs: Annotated[int, typer.Option(help="Pairs to score (sampled per subset).", min=1)] = 300,
    max_edits: Annotated[int, typer.Option(help="Completions (and prompts) per subset for edit probes.", min=1)] = 60,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    batch_size: Annotated[int | None, typer.Option(help="Texts per forward batch.", min=1)] = None,
) -> None:
    """Probe a reward model for exploitable flaws; print each probe's verdict; write audit/report.json + plots."""
    from latentrm.audit.stage import AuditConfig, run
    from latentrm.audit.tables import audit_tables

    validate.check_writable_dir(run_dir or rm.parent, "--run-dir")  # the default sits next to --rm
    config = AuditConfig(rm=str(rm), pairs=str(pairs) if pairs else None,
                         completions=str(completions) if completions else None,
                         run_dir=str(run_dir) if run_dir else None, split=split, max_pairs=max_pairs,
                         max_edits=max_edits, probes=_split_names(probes), steering_texts=tuple(steering_text or ()),
                         recipe=recipe, seed=seed, batch_size=batch_size)
    out = run(config, log=print)
    _print_all(audit_tables(json.loads((out / "report.json").read_text())))
    print(f"audit written to {out / 'report.json'}")


def goodhart(
    rm: RmDir,
    run_dir: RunDirOpt = None,
    policy: Annotated[str, typer.Option(help="Initial policy: embedded | HF folder | cached hub id.")] = "embedded",
    backend: Annotated[str, typer.Option(help="Generation backend: transformers | fake.")] = "transformers",
    prompts: Annotated[str | None, typer.Option(help="Eval set (heldout, false_premise) or JSONL; default: "
                                                   "held-out prompts of the rm's pairs file.")] = None,
    pairs: Annotated[Path | None, typer.Option(help="Pairs file to take held-out prompts from.")] = None,
    n_prompts: Annotated[int, typer.Option(help="Prompts (balanced over kinds).", min=1)] = 20,
    n_max: Annotated[int, typer.Option(help="Largest n of best-of-n (samples per prompt).", min=1)] = 16,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per sample.", min=1)] = 48,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).",
                                               callback=validate.temperature_option)] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling (1.0 keeps the KL formulas exact).",
                                         callback=validate.top_p_option)] = 1.0,
    judge: Annotated[str, typer.Option(help="Gold judge: rules | llm.")] = "rules",
    recipe: Annotated[str, typer.Option(help="Recipe (name or .yaml) whose judging says which labels are "
                                             "gold.")] = "knowledge_awareness",
    checkpoint: Annotated[list[str] | None, typer.Option(help="Policy checkpoint folder, in training order "
                                                            "(repeatable).")] = None,
    checkpoint_samples: Annotated[int, typer.Option(help="Samples per prompt per checkpoint.", min=1)] = 4,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Generation batch size.", min=1)] = 16,
) -> None:
    """Best-of-n (and checkpoint) proxy vs gold curves against sqrt(KL), with Gao et al. fits; cached samples."""
    from latentrm.audit.goodhart import GoodhartConfig, run
    from latentrm.audit.tables import goodhart_tables
    from latentrm.data.recipes import load_recipe

    validate.check_writable_dir(run_dir or rm.parent, "--run-dir")  # the default sits next to --rm
    load_recipe(recipe)  # a bad recipe or judging section is one line, before any model loads
    config = GoodhartConfig(rm=str(rm), run_dir=str(run_dir) if run_dir else None, policy=policy, backend=backend,
                            prompts=prompts, pairs=str(pairs) if pairs else None, n_prompts=n_prompts, n_max=n_max,
                            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                            batch_size=batch_size, judge=judge, recipe=recipe, checkpoints=tuple(checkpoint or ()),
                            checkpoint_samples=checkpoint_samples)
    out = run(config)
    _print_all(goodhart_tables(json.loads((out / "goodhart.json").read_text())))
    print(f"Goodhart curve written to {out / 'goodhart.json'} and {out / 'goodhart.png'}")


def onpolicy(
    rm: RmDir,
    run_dir: RunDirOpt = None,
    policy: Annotated[str, typer.Option(help="Policy to sample: embedded | HF folder | cached hub id.")] = "embedded",
    backend: Annotated[str, typer.Option(help="Generation backend: transformers | fake.")] = "transformers",
    prompts: Annotated[str, typer.Option(help="Comma-separated prompt sets: heldout, false_premise or JSONL "
                                              "eval files (made-up and real prompts are both needed).")]
    = "heldout,false_premise",
    pairs: Annotated[Path | None, typer.Option(help="Pairs whose people are held out (default: rm.json's).")] = None,
    n_real: Annotated[int, typer.Option(help="Held-out real people.", min=0)] = 40,
    n_fake: Annotated[int, typer.Option(help="Held-out made-up people.", min=0)] = 40,
    n_false_premise: Annotated[int, typer.Option(help="False-premise questions.", min=0)] = 20,
    samples: Annotated[int, typer.Option("--samples", "-m", help="Samples per prompt (m).")] = 8,
    n_max: Annotated[int | None, typer.Option(help="Largest best-of-n (default: m).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per sample.", min=1)] = 48,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (RL samples at 1.0).",
                                               callback=validate.temperature_option)] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.", callback=validate.top_p_option)] = 1.0,
    judge: Annotated[str, typer.Option(help="Judge: rules | reference | llm.")] = "rules",
    name: Annotated[str, typer.Option(help="Output folder under the run directory.")] = "onpolicy",
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    people: Annotated[str, typer.Option(help="Held-out people: all | eval | select | check, disjoint parts (choose "
                                             "a head on select, report it on check).")] = "all",
    batch_size: Annotated[int, typer.Option(help="Generation batch size.", min=1)] = 16,
    force: Annotated[bool, typer.Option("--force", help="Recompute the report even when it is up to date (cached "
                                                        "samples and labels are still reused).")] = False,
) -> None:
    """Does the reward rank this policy's own samples the right way? AUROC, label shares, best-of-n per class."""
    from latentrm.audit.onpolicy import OnPolicyConfig, check_config, run
    from latentrm.audit.tables import onpolicy_tables
    from latentrm.models import resolve_model

    validate.check_writable_dir(run_dir or rm.parent, "--run-dir")  # the default sits next to --rm
    validate.check_name(name, "--name")
    config = OnPolicyConfig(rm=str(rm), run_dir=str(run_dir) if run_dir else None, name=name, policy=policy,
                            backend=backend, prompts=_split_names(prompts), pairs=str(pairs) if pairs else None,
                            n_real=n_real, n_fake=n_fake, n_false_premise=n_false_premise, samples=samples,
                            n_max=n_max, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                            seed=seed, people=people, batch_size=batch_size, judge=judge)
    check_config(config)
    if backend != "fake":
        resolve_model(policy)  # a folder that is not a model fails here, before the reward model loads
    out = run(config, force=force)
    _print_all(onpolicy_tables(json.loads((out / "onpolicy.json").read_text())))
    print(f"on-policy check written to {out / 'onpolicy.json'} and {out / 'onpolicy.png'}")


def probe(
    model: Annotated[str, typer.Option(help="Backbone: embedded | HF folder | cached hub id.")] = "embedded",
    layers: Annotated[str, typer.Option(help="every3 (every third block and the last), all, or a list such as "
                                             "3,9,15.")] = "every3",
    n_real: Annotated[int, typer.Option(help="Real people.")] = 100,
    n_fake: Annotated[int, typer.Option(help="Made-up people.")] = 100,
    folds: Annotated[int, typer.Option(help="Cross-validation folds, grouped by entity.")] = 5,
    out: Annotated[Path, typer.Option(help="Output folder (probe.json, probe.png, manifest.json).",
                                      callback=validate.writable_dir_option)] = Path("runs/probe"),
    template: Annotated[str, typer.Option(help="The prompt; {name} is replaced by the person.")]
    = "Tell me about {name}.",
    seed: Annotated[int, typer.Option(help="Sampling and fold seed.")] = 0,
    dtype: Annotated[str, typer.Option(help="Backbone dtype (float32 keeps CPU runs exact).",
                                       callback=validate.choice_option(validate.dtypes))] = "float32",
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when there is one).")] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward batch.", min=1)] = 32,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's choice).", min=1)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun even when probe.json is up to date.")] = False,
    surface: Annotated[bool, typer.Option("--surface/--no-surface", help="Also probe the name string alone "
                                          "(character n-grams, token count) and the embedding layer; each layer's "
                                          "AUROC margin over both.")] = True,
    matched_locales: Annotated[bool, typer.Option("--matched-locales", help="Made-up names from the faker "
                                                  "locales of the real people's nationalities.")] = False,
) -> None:
    """Can the backbone tell a real name from a made-up one? Per-layer CV accuracy of a linear probe."""
    from latentrm.audit.backbone_probe import (
        ProbeConfig,
        check_config,
        model_num_layers,
        parse_layers,
        probe_table,
    )
    from latentrm.audit.backbone_probe import run as run_probe

    config = ProbeConfig(out=str(out), model=model, layers=parse_layers(layers), n_real=n_real, n_fake=n_fake,
                         folds=folds, seed=seed, template=template, dtype=dtype, batch_size=batch_size,
                         device=device, surface=surface, matched_locales=matched_locales)
    check_config(config)  # folds and counts: before the model is even resolved
    check_config(config, model_num_layers(model))  # layers against the backbone's config.json
    if threads:
        import torch

        torch.set_num_threads(threads)
    folder = run_probe(config, force=force)
    report = json.loads((folder / "probe.json").read_text())
    _print_all([probe_table(report)])
    print(f"best layer {report['best_layer']}: accuracy {report['best_accuracy']:.3f}, AUROC "
          f"{report['best_auroc']:.3f} ({report['seconds']} s); written to {folder / 'probe.json'} and "
          f"{folder / 'probe.png'}")


def _print_all(renderables: list[Any]) -> None:
    from rich.console import Console

    console = Console()
    for renderable in renderables:
        console.print(renderable, highlight=False)


def register(rm_app: typer.Typer) -> None:
    """Add `audit`, `goodhart`, `onpolicy` and `probe` to the `latentrm rm` group."""
    rm_app.command("audit")(audit)
    rm_app.command("goodhart")(goodhart)
    rm_app.command("onpolicy")(onpolicy)
    rm_app.command("probe")(probe)
