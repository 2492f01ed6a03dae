"""`latentrm data ...`: build, show and list contrastive preference data (heavy imports stay inside commands).

A `LatentrmError` raised here propagates to `latentrm.cli.main`, which prints `error: ...` and exits 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

from latentrm import validate

app = typer.Typer(help="Contrastive data: recipes, entities, generation, pairs.", no_args_is_help=True)


def _parse_options(items: list[str]) -> dict[str, object]:
    from latentrm.errors import LatentrmError

    options: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise LatentrmError(f"--backend-opt '{item}' must look like key=value")
        key, value = item.split("=", 1)
        parsed: object = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        options[key.strip().replace("-", "_")] = parsed
    return options


@app.command()
def build(
    recipe: str = typer.Option("knowledge_awareness", help="recipe name (see `latentrm data recipes`) or YAML path"),
    out: Path = typer.Option(Path("runs/data"), help="output folder (shards, generations.parquet, build.json)",
                             callback=validate.writable_dir_option),
    pairs_out: Path | None = typer.Option(None, help="pairs file (default OUT/pairs.parquet; .jsonl works)",
                                          callback=validate.writable_file_option),
    real: list[str] = typer.Option(["auto"], help="real entity source(s): auto, builtin, wiki, nobel, or a .jsonl"),
    notability: str = typer.Option("vital", help="vital (Vital Articles) or none"),
    views_csv: Path | None = typer.Option(None, help="CSV with name,daily_views; keeps entities >= --min-views"),
    min_views: float = typer.Option(0.0, help="page-view threshold used with --views-csv",
                                    callback=validate.finite_float_option),
    n_real: int = typer.Option(130, help="number of real entities", min=0),
    n_fake: int = typer.Option(130, help="number of made-up entities", min=0),
    prompts_per_entity: int = typer.Option(1, help="questions per entity and class", min=1),
    samples: int = typer.Option(2, help="completions per prompt per variant", min=1),
    pairs_per_prompt: int = typer.Option(2, "--pairs-per-prompt", "-k", help="cap on pairs per prompt", min=1),
    openers: bool = typer.Option(True, help="keep answer openers in hedge variants (needed by tiny policies)"),
    backend: str = typer.Option("transformers", help="transformers | openai | vllm | fake"),
    model: str = typer.Option("embedded", help="policy model: embedded, a local folder, or a cached hub id"),
    policy: str | None = typer.Option(None, help="the iterated update: sample every variant (steered and plain) "
                                      "from this checkpoint (a model folder, embedded, or a cached hub id) instead "
                                      "of --model; its revision enters the shard keys"),
    contrasts: list[str] = typer.Option([], help="extra contrasts the recipe declares, e.g. right_vs_wrong "
                                        "(repeatable or comma-separated)"),
    base_url: str | None = typer.Option(None, help="openai backend: server URL, e.g. http://localhost:8000/v1"),
    api_key: str | None = typer.Option(None, envvar="LATENTRM_API_KEY", help="openai backend: API key"),
    backend_opt: list[str] = typer.Option([], help="extra backend option key=value (repeatable)"),
    max_new_tokens: int = typer.Option(40, min=1),
    temperature: float = typer.Option(0.8, help="sampling temperature (0 = greedy)",
                                      callback=validate.temperature_option),
    top_p: float = typer.Option(0.95, help="nucleus sampling mass, in (0, 1]", callback=validate.top_p_option),
    batch_size: int = typer.Option(16, min=1),
    shard_size: int = typer.Option(16, help="requests per shard (the unit of resuming)", min=1),
    seed: int = typer.Option(0),
    behaviour_filter: bool = typer.Option(True, help="drop completions that miss their variant's behaviour (a "
                                          "hedge variant that does not hedge, ...); --no-behaviour-filter keeps them"),
    overwrite: bool = typer.Option(False, help="discard a different earlier build in OUT"),
    progress: bool = typer.Option(True, help="show the progress bar"),
    threads: int = typer.Option(0, help="torch CPU threads (0 = torch default; 1 is faster on a busy machine)",
                                min=0),
) -> None:
    """Generate completions for a recipe and write the preference pairs file."""
    import json

    if threads > 0:
        import torch

        torch.set_num_threads(threads)

    from rich.console import Console
    from rich.table import Table

    from latentrm.data.build import BuildConfig, run

    options = _parse_options(backend_opt)
    if base_url:
        options["base_url"] = base_url
    if api_key:
        options["api_key"] = api_key
    config = BuildConfig(
        recipe=recipe, out=str(out), pairs_out=str(pairs_out) if pairs_out else None, real=tuple(real),
        notability=notability, views_csv=str(views_csv) if views_csv else None, min_views=min_views,
        n_real=n_real, n_fake=n_fake, prompts_per_entity=prompts_per_entity, samples=samples,
        pairs_per_prompt=pairs_per_prompt, openers=openers, backend=backend, model=model, policy=policy,
        contrasts=tuple(dict.fromkeys(c.strip() for item in contrasts for c in item.split(",") if c.strip())),
        backend_options=options, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        batch_size=batch_size, shard_size=shard_size, seed=seed, progress=progress, behaviour_filter=behaviour_filter,
    )
    pairs_path = run(config, force=overwrite)
    manifest = json.loads((out / "build.json").read_text())
    counts = manifest["counts"]
    console = Console()
    table = Table(title=f"{manifest['recipe']} -> {pairs_path}")
    for column in ("subset", "prompts", "prompts with pairs", "pairs"):
        table.add_column(column)
    for subset, n in sorted(counts["prompts"].items()):
        table.add_row(subset, str(n), str(counts["prompts_with_pairs_by_subset"].get(subset, 0)),
                      str(counts["pairs_by_subset"].get(subset, 0)))
    console.print(table)
    console.print(f"completions {counts['completions']}, echoes dropped {counts['echo_dropped']}, "
                  f"off-behaviour dropped {counts['off_behaviour_dropped']}"
                  + (f" (kept {counts['off_behaviour_kept']})" if counts.get("off_behaviour_kept") else "")
                  + f", splits {counts['pairs_by_split']}")
    if counts.get("pairs_by_variants"):
        console.print(f"pairs by contrast {counts['pairs_by_variants']}", highlight=False)
    if manifest.get("completions_per_second"):
        console.print(f"generated {manifest['generated_this_run']} completions in "
                      f"{manifest['generation_seconds_this_run']} s ({manifest['completions_per_second']} compl/s)")


@app.command()
def show(
    path: Path = typer.Argument(..., help="a pairs file (its folder's generations.parquet is shown too)"),
    n: int = typer.Option(2, help="examples per subset and per variant (0: only the balance table)", min=0),
    seed: int = typer.Option(0),
    width: int = typer.Option(300, help="characters shown per text", min=1),
) -> None:
    """Print the class balance and a few examples per subset and variant."""
    from rich.console import Console
    from rich.table import Table

    from latentrm.io import read_table
    from latentrm.pairs import load_pairs

    def cut(text: object) -> str:
        value = str(text).replace("\n", " ")
        return value if len(value) <= width else value[:width] + "…"

    pairs = load_pairs(path)
    console = Console()
    balance = Table(title=f"{path}: {len(pairs)} pairs")
    splits = sorted(pairs["split"].unique()) if "split" in pairs.columns else []
    balance.add_column("subset")
    for split in splits:
        balance.add_column(split)
    balance.add_column("total")
    for subset, group in pairs.groupby("subset"):
        cells = [str(int((group["split"] == s).sum())) for s in splits]
        balance.add_row(str(subset), *cells, str(len(group)))
    console.print(balance)
    for subset, group in pairs.groupby("subset"):
        variants = ", ".join(sorted(group["variants"].unique())) if "variants" in group.columns else ""
        console.rule(f"subset {subset}  ({variants})")
        for _, row in group.sample(min(n, len(group)), random_state=seed).iterrows():
            console.print(f"[bold]prompt:[/bold] {cut(row['prompt'])}", highlight=False)
            console.print(f"  [green]chosen:[/green] {cut(row['chosen'])}", highlight=False)
            console.print(f"  [red]rejected:[/red] {cut(row['rejected'])}", highlight=False)
    generations_file = path.parent / "generations.parquet"
    if generations_file.exists():
        generations = read_table(generations_file)
        console.rule("generations by variant (kept / echo / off-behaviour)")
        for variant, group in generations.groupby("variant"):
            console.print(f"[bold]{variant}[/bold]: {int(group['keep'].sum())} kept, {int(group['echo'].sum())} "
                          f"echo, {int(group['off_behaviour'].sum())} off-behaviour of {len(group)}")
            for _, row in group.sample(min(n, len(group)), random_state=seed).iterrows():
                flag = "" if row["keep"] else " [yellow](dropped)[/yellow]"
                console.print(f"  - {cut(row['completion'])}{flag}", highlight=False)


@app.command()
def merge(
    paths: list[Path] = typer.Argument(..., help="two or more pairs files (.parquet or .jsonl)"),
    out: Path = typer.Option(..., help="merged pairs file (.parquet or .jsonl)", callback=validate.writable_file_option),
) -> None:
    """Merge pairs files into one (e.g. mix sycophancy pairs into a knowledge-awareness build)."""
    from latentrm.errors import LatentrmError
    from latentrm.pairs import merge_pairs, save_pairs

    if out.suffix.lower() not in (".parquet", ".jsonl"):
        raise LatentrmError(f"--out {out}: a pairs file is .parquet or .jsonl (its suffix picks the format); "
                            f"use {out.with_suffix('.parquet')}")
    merged = merge_pairs(list(paths))
    save_pairs(merged, out)
    counts = ", ".join(f"{k} {v}" for k, v in merged["subset"].value_counts().sort_index().items())
    print(f"{len(merged)} pairs ({counts}; {merged.attrs['duplicates_dropped']} repeated rows dropped) -> {out}")


@app.command()
def recipes() -> None:
    """List the available recipes, their classes and the polarity per class."""
    from rich.console import Console
    from rich.table import Table

    from latentrm.data.recipes import list_recipes

    table = Table(title="recipes")
    for column in ("recipe", "class", "entities", "chosen", "rejected", "extra contrasts (--contrasts)"):
        table.add_column(column, no_wrap=True)
    found = list_recipes()
    for recipe in found:
        for index, prompt_class in enumerate(recipe.classes):
            extra = ", ".join(f"{name}: {chosen}>{rejected}" for name, chosen, rejected in prompt_class.contrasts)
            table.add_row(recipe.name if index == 0 else "", prompt_class.name, prompt_class.entities,
                          prompt_class.chosen, prompt_class.rejected, extra)
    console = Console()
    console.print(table)
    for recipe in found:
        console.print(f"[bold]{recipe.name}[/bold]: {recipe.description}", highlight=False)
