"""Render a run directory into one self-contained `report.html` with Jinja2.

`build_report(run_dir, out=None)` loads the run's files (`load.py`), shapes them into
rows (`views.py`), draws the figures (`plots.py`), renders
`templates/report.html.j2` with autoescaping on, and writes the page atomically.
Every image is a `data:image/png;base64,...` URI and the CSS is inline, so the file
opens offline and makes no network request.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.report import plots, views
from latentrm.report.load import load_run

TEMPLATE = "report.html.j2"
SECTIONS = (
    ("overview", "Overview"),
    ("data", "Data"),
    ("rm-sweep", "Read-out sweep"),
    ("rm", "Reward model"),
    ("audit", "Reward-model audit"),
    ("onpolicy", "On-policy check"),
    ("rl", "RL training"),
    ("eval", "Evaluation: before and after RL"),
    ("examples", "Example responses"),
    ("compare", "Reward-design comparison"),
    ("goodhart", "Goodhart curve"),
    ("reproduce", "Config and reproduction"),
)
SOURCES = {"overview": "run", "data": "data", "rm-sweep": "sweep", "rm": "rm", "audit": "audit", "onpolicy": "onpolicy", "rl": "rl",
           "eval": "eval", "examples": "eval", "compare": "compare", "goodhart": "goodhart", "reproduce": "run"}


def _images(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"name": item["name"], "src": plots.encode_png(item["bytes"])} for item in items]


def run_judging(loaded: dict[str, Any]) -> Any:
    """The judging of the recipe the run was built under (run.json's `data.recipe`), so that a sycophancy run's
    badges and RL eval panel read its own labels; the flagship's when the run names none. A recipe that can no
    longer be read (a moved file) falls back to the flagship's, and `skipped` says so."""
    from latentrm.data.recipes import DEFAULT_RECIPE, default_judging, load_recipe

    config = (loaded.get("run") or {}).get("config") or {}
    recipe = (config.get("data") or {}).get("recipe") if isinstance(config, dict) else None
    if not recipe or recipe == DEFAULT_RECIPE:
        return default_judging()
    try:
        return load_recipe(str(recipe)).judging
    except LatentrmError as exc:
        message = (f"run.json: recipe {recipe!r} could not be read ({exc}); label colours and the RL eval panel "
                   f"use {DEFAULT_RECIPE}'s judging")
        loaded["skipped"].append(message)
        print(f"warning: {message}", file=sys.stderr)
        return default_judging()


def _section_views(loaded: dict[str, Any]) -> dict[str, Any]:
    """The rows and figures of every section that ran (None for those that did not)."""
    run, sweep, rm, audit, rl, evals = (loaded[k] for k in ("run", "sweep", "rm", "audit", "rl", "eval"))
    judging = run_judging(loaded)
    compare, goodhart = loaded["compare"], loaded["goodhart"]
    return {
        "stages": views.stage_rows(run),
        "data": views.key_values(loaded["data"]) if loaded["data"] is not None else None,
        "sweep": {"rows": views.sweep_rows(sweep), "plot": plots.sweep_plot(sweep),
                  "chosen": (sweep.get("best_layer"), sweep.get("best_head"), sweep.get("best_pooling", "last")),
                  "curve": views.learning_curve_rows(sweep), "has_cv": "cv_accuracy" in (sweep.get("layers") or [{}])[0],
                  "has_onpolicy": "onpolicy_select_auroc" in (sweep.get("layers") or [{}])[0],
                  "chosen_on": sweep.get("chosen_on", "val")} if sweep is not None else None,
        "rm": {"facts": views.rm_facts(rm), "tables": views.rm_tables(rm)} if rm is not None else None,
        "audit": {"rows": views.audit_rows(audit), "images": _images(audit["images"]),
                  "facts": views.key_values({k: audit.get(k) for k in ("rm", "source", "n_scored", "created_at")
                                             if k in audit})} if audit is not None else None,
        "rl": {"plot": plots.rl_plot(rl, judging.headline), "summary": views.key_values(rl["summary"]),
               "start_end": views.eval_start_end(rl["summary"]), "n_train": len(rl["train"]),
               "n_eval": len(rl["eval"])} if rl is not None else None,
        "eval": {"tables": views.eval_tables(evals), "plot": plots.eval_plot(evals)} if evals else None,
        "examples": views.example_groups(evals, judging) if evals else None,
        "compare": {"table": views.compare_table(compare["rows"]), "table_md": compare["table_md"],
                    "images": _images(compare["images"])} if compare is not None else None,
        "onpolicy": _onpolicy(loaded["onpolicy"], judging),
        "probe": {**views.probe_view(loaded["probe"]), "images": _images(loaded["probe"]["images"])}
        if loaded["probe"] is not None else None,
        "goodhart": {"facts": views.key_values(goodhart["report"]), "images": _images(goodhart["images"])}
        if goodhart is not None else None,
    }


def _onpolicy(sides: dict[str, Any] | None, judging: Any) -> dict[str, Any] | None:
    if sides is None:
        return None
    view = views.onpolicy_view(sides, judging)
    view["images"] = [{"side": image["side"], "name": image["name"], "src": plots.encode_png(image["bytes"])}
                      for image in view["images"]]
    return view


def context(run_dir: Path) -> dict[str, Any]:
    """Everything the template reads, from the files in `run_dir`."""
    loaded = load_run(run_dir)
    run = loaded["run"] or {}
    ran = {sid: loaded[source] is not None for sid, source in SOURCES.items()}
    return {
        "title": str(run.get("name") or Path(run_dir).resolve().name),
        "run_dir": str(run_dir),
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "sections": [{"id": sid, "title": title, "ran": ran[sid]} for sid, title in SECTIONS],
        "ran": ran,
        "skipped": loaded["skipped"],
        "verdict": views.verdict(loaded),
        "run": {"preset": run.get("preset"), "command": run.get("command"),
                "config": json.dumps(run["config"], indent=2, default=str) if run.get("config") else None,
                "versions": views.key_values(run.get("versions"))},
        **_section_views(loaded),
    }


def render_html(ctx: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("latentrm.report", "templates"),
                      autoescape=select_autoescape(("html", "html.j2"), default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**ctx)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write `out` (default `<run_dir>/report.html`) from the run's files; returns its path."""
    from latentrm.io import atomic_write_text

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise LatentrmError(f"{run_dir} {what}; pass a run directory such as runs/<name>")
    from latentrm.report.load import check_run_dir
    from latentrm.validate import check_writable_file

    check_run_dir(run_dir)
    target = check_writable_file(Path(out) if out is not None else run_dir / "report.html", "--out")
    try:
        atomic_write_text(target, render_html(context(run_dir)))
    except OSError as exc:
        raise LatentrmError(f"--out {target}: cannot write ({exc.strerror}); pick a writable path") from None
    return target
