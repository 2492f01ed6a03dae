"""`latentrm eval`: behaviour evaluation of a policy, and `latentrm eval judge-check`.

Heavy imports (torch, transformers, the runner) happen inside the commands so that
`latentrm --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from latentrm import validate

app = typer.Typer(help="Measure what a policy does (hedges on made-up people, answers real ones).",
                  invoke_without_command=True, no_args_is_help=False)

DEFAULT_LABELLED = Path("tests/data/judge_labelled.jsonl")
# The reference grader is checked on short-answer questions; the other judges on people and false premises.
LABELLED_FOR = {"reference": Path("tests/data/reference_labelled.jsonl")}


def default_labelled(judge: str = "rules") -> Path:
    """The committed labelled set for a judge: relative to the working directory, else to this source checkout."""
    relative = LABELLED_FOR.get(judge, DEFAULT_LABELLED)
    if relative.exists():
        return relative
    checkout = Path(__file__).resolve().parents[3] / relative
    return checkout if checkout.exists() else relative


QA_ROWS = ("correct", "incorrect", "not_attempted", "precision", "unanswerable_not_attempted")


def _offline() -> None:
    """latentrm never downloads; keep tokenizer threads and library chatter down."""
    import os

    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(key, value)


def _fmt(entry: dict[str, Any]) -> str:
    if entry.get("rate") is None:
        return "n/a (n=0)"
    return f"{entry['rate']:.1%}  [{entry['lo']:.1%}, {entry['hi']:.1%}]  ({entry['k']}/{entry['n']})"


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """A rich table of the headline rates, the other labels and diversity."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("rate  [Wilson 95%]  (k/n)")
    qa = metrics.get("qa")
    if qa:  # short-answer questions: correct / incorrect / not attempted, precision, F-score
        for label in QA_ROWS:
            if label in qa:
                table.add_row(f"[bold]{label}[/bold]", _fmt(qa[label]))
        table.add_row("[bold]f_score[/bold]", "n/a" if qa.get("f_score") is None else f"{qa['f_score']:.3f}")
    for label, entry in metrics["headline"].items():
        if entry.get("n") or not qa:  # a qa-only set has no people to report on
            table.add_row(f"[bold]{label}[/bold]", _fmt(entry))
    for label, entry in metrics["rates"].items():
        if label not in metrics["headline"] and not (qa and label in QA_ROWS):
            table.add_row(label, _fmt(entry))
    diversity = metrics["diversity"]
    for name in ("distinct_1", "distinct_2", "mean_length_tokens", "mean_entropy"):
        value = diversity.get(name)
        table.add_row(name, "n/a" if value is None else f"{value:.3f}")
    Console().print(table)


@app.callback()
def eval_main(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Policy: checkpoint folder, 'embedded' or cached hub id."),
    endpoint: str = typer.Option(None, help="OpenAI-compatible base URL serving the policy (instead of --model)."),
    model_name: str = typer.Option(None, help="Model name at --endpoint."),
    endpoint_logprobs: int = typer.Option(20, help="Top-k log-probs asked of --endpoint for the entropy "
                                          "estimate (a lower bound); 0 if the server rejects logprobs.", min=0),
    eval_set: str = typer.Option("heldout", "--set", "-s", help="heldout | false_premise | path to a .jsonl set."),
    judge: str = typer.Option("rules", help="Judge: rules (offline, default), reference (short answers of qa "
                              "questions; other kinds by rules) or llm."),
    judge_model: str = typer.Option(None, help="llm judge (or reference's fallback): local chat model "
                                    "(default embedded)."),
    judge_endpoint: str = typer.Option(None, help="llm judge (or reference's fallback for the answers string "
                                       "matching cannot decide): OpenAI-compatible endpoint."),
    judge_model_name: str = typer.Option(None, help="llm judge: model name at --judge-endpoint."),
    out: Path = typer.Option(None, "--run-dir", "--out",
                             help="Run directory; outputs go to <run-dir>/eval/<set>/ (default runs/<policy>).",
                             callback=validate.writable_dir_option),
    n_real: int = typer.Option(100, help="heldout: real-entity prompts.", min=0),
    n_fake: int = typer.Option(100, help="heldout: made-up-entity prompts.", min=0),
    real: list[str] = typer.Option(["auto"], help="heldout: real entity source(s), as for `latentrm data build`."),
    exclude_pairs: Path = typer.Option(None, help="heldout: also hold out every entity in this pairs file."),
    samples: int = typer.Option(1, help="Responses per question.", min=1),
    max_new_tokens: int = typer.Option(128, min=1),
    temperature: float = typer.Option(0.7, help="Sampling temperature (0 = greedy).",
                                      callback=validate.temperature_option),
    top_p: float = typer.Option(0.95, help="Nucleus sampling mass, in (0, 1].", callback=validate.top_p_option),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(16, min=1),
    limit: int = typer.Option(None, help="Only the first N questions (smoke runs).", min=1),
    fresh: bool = typer.Option(False, help="Discard earlier responses instead of resuming."),
    recipe: str = typer.Option("knowledge_awareness", help="The recipe whose judging names the headline rates "
                               "(a shipped name or a recipe .yaml; see docs/recipes.md)."),
) -> None:
    """Sample a policy on an eval set, judge each response, print headline rates with Wilson intervals."""
    if ctx.invoked_subcommand is not None:
        return
    if not model and not endpoint:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from latentrm.errors import LatentrmError

    _offline()
    if endpoint and model:
        raise LatentrmError("pass either --model or --endpoint (with --model-name), not both")
    import json

    from latentrm.data.recipes import load_recipe
    from latentrm.eval.runner import EvalConfig, run

    load_recipe(recipe)  # a bad recipe or judging section is one line, before any model loads
    config = EvalConfig(model=model, endpoint=endpoint, model_name=model_name,
                        endpoint_logprobs=endpoint_logprobs, eval_set=eval_set, judge=judge,
                        judge_model=judge_model, judge_endpoint=judge_endpoint, judge_model_name=judge_model_name,
                        n_real=n_real, n_fake=n_fake, real=tuple(real),
                        exclude_pairs=str(exclude_pairs) if exclude_pairs else None, samples=samples,
                        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                        out=str(out) if out else None, limit=limit, recipe=recipe)
    if out is None:  # the default runs/<policy>: checked here, before the policy loads
        from latentrm.eval.runner import output_dir

        validate.check_writable_dir(output_dir(config), "--run-dir")
    folder = run(config, force=fresh)
    metrics = json.loads((folder / "metrics.json").read_text())
    print_metrics(metrics, f"{metrics['set']}: {metrics['policy']} (judge {metrics['judge']['name']})")
    typer.echo(f"wrote {folder / 'responses.jsonl'} and {folder / 'metrics.json'}")


@app.command("judge-check")
def judge_check_cmd(
    file: Path = typer.Option(None, "--file", "-f",
                              help="Hand-labelled responses (JSONL); default tests/data/reference_labelled.jsonl "
                                   "for the reference judge, tests/data/judge_labelled.jsonl for the others."),
    judge: list[str] = typer.Option(["rules"], "--judge", "-j", help="Judge(s) to check (rules, reference, "
                                    "llm); repeat for several."),
    judge_model: str = typer.Option(None, help="llm judge: local chat model (default embedded)."),
    judge_endpoint: str = typer.Option(None, help="llm judge: OpenAI-compatible endpoint."),
    judge_model_name: str = typer.Option(None, help="llm judge: model name at --judge-endpoint."),
    out: Path = typer.Option(None, help="Also write the report (accuracy, confusion, errors) as JSON here.",
                             callback=validate.writable_file_option),
    show_errors: int = typer.Option(0, help="Print up to N disagreements per judge.", min=0),
) -> None:
    """Accuracy and confusion matrix of each judge on the hand-labelled set."""
    import json

    from rich.console import Console
    from rich.table import Table

    from latentrm.eval.check import judge_check
    from latentrm.judges import LABELS

    _offline()

    files: dict[Path, list[str]] = {}  # each judge on its own committed set unless --file says otherwise
    for name in judge:
        files.setdefault(file or default_labelled(name), []).append(name)
    report: dict[str, Any] = {"judges": {}}
    for path, names in files.items():
        part = judge_check(path, names, judge_model=judge_model, judge_endpoint=judge_endpoint,
                           judge_model_name=judge_model_name)
        report["judges"].update(part["judges"])
        report.setdefault("file", part["file"])
        report.setdefault("n", part["n"])
    console = Console()
    for name, result in report["judges"].items():
        lo, hi = result["accuracy_ci"]
        console.print(f"[bold]{name}[/bold]: accuracy {result['accuracy']:.1%} "
                      f"[{lo:.1%}, {hi:.1%}] ({result['correct']}/{result['n']})")
        console.print(f"  file {result['file']}")
        for key in ("by_group", "by_label", "by_source", "by_phase", "by_part"):
            for value, sub in result.get(key, {}).items():
                console.print(f"  {key[3:]} {value}: {sub['accuracy']:.1%} ({sub['correct']}/{sub['n']})")
        for part_name, labels_acc in result.get("by_part_label", {}).items():
            console.print(f"  part {part_name}, by label: " + "   ".join(
                f"{label} {sub['accuracy']:.1%} ({sub['correct']}/{sub['n']})" for label, sub in labels_acc.items()))
        for group, labels in LABELS.items():
            if group not in result["by_group"]:
                continue
            predicted = list(labels) + [p for p in result["labels"] if p not in labels and any(
                result["matrix"].get(g, {}).get(p) for g in labels)]
            table = Table(title=f"{name} / {group}: gold (rows) x predicted (columns)")
            table.add_column("gold")
            for label in predicted:
                table.add_column(label, justify="right")
            for gold in labels:
                row = result["matrix"].get(gold, {})
                table.add_row(gold, *[str(row.get(p, 0)) for p in predicted])
            console.print(table)
        for error in result["errors"][:show_errors]:
            console.print(f"  [red]{error['gold']} -> {error['predicted']}[/red] {error['response'][:160]!r}")
    if out:
        from latentrm.io import atomic_write_text

        atomic_write_text(out, json.dumps(report, indent=2))
        console.print(f"wrote {out}")
