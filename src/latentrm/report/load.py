"""Read a run directory's files into one plain dict; every part is optional.

`load_run(run_dir)` returns `{"run_dir", "run", "data", "sweep", "rm", "audit", "probe", "rl",
"eval", "compare", "goodhart", "onpolicy"}`. A section whose files are missing is `None` (the
report says "not run"); a JSON file that does not parse raises a `LatentrmError`
naming it. JSONL files skip unparsable lines (a crash can leave half a last line).
PNG files are kept as raw bytes; nothing here imports torch or loads a model.
"""

from __future__ import annotations

import json
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVAL_SIDES = ("model", "base", "policy")  # model: the untouched model, when a warm start is the base
PROBE_PNG = "probe.png"
# What `load_run` passed over (torn JSONL lines, unreadable optional files), said in the report and on stderr.
SKIPPED: ContextVar[list[str] | None] = ContextVar("latentrm_report_skipped", default=None)


def note_skipped(message: str) -> None:
    """Record (and print to stderr) a file or part of one the report had to leave out, with why."""
    found = SKIPPED.get()
    if found is not None:
        found.append(message)
    print(f"warning: {message}", file=sys.stderr)


def read_json(path: Path) -> Any:
    """The parsed file, or None when it does not exist."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise LatentrmError(f"{path}: not UTF-8 text (byte-level damage?); delete it, or re-run the stage that "
                            "writes it") from None
    except json.JSONDecodeError as exc:
        raise LatentrmError(f"{path}: not valid JSON ({exc.msg}); fix or delete it, or re-run the stage that "
                            "writes it") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The file's JSON-object lines; missing file -> []; lines that do not parse (a crash can tear the last one)
    are left out and said (`note_skipped`), never dropped silently."""
    if not path.is_file():
        return []
    rows, bad = [], []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    if bad:
        lines = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        note_skipped(f"{path}: left out line(s) {lines}, not JSON objects (a torn write?); the rest is shown")
    return rows


def read_pngs(folder: Path, first: list[str] | None = None) -> list[dict[str, Any]]:
    """`[{"name", "bytes"}]` for the PNG files in `folder`: those named in `first` in that order, then the rest."""
    if not folder.is_dir():
        return []
    names = [n for n in (first or []) if (folder / n).is_file()]
    names += sorted(p.name for p in folder.glob("*.png") if p.name not in names)
    images = []
    for name in names:
        data = (folder / name).read_bytes()
        if data.startswith(PNG_SIGNATURE):
            images.append({"name": name, "bytes": data})
    return images


def _object(path: Path) -> dict[str, Any] | None:
    """A JSON file that must hold an object (None when missing). A torn or damaged file leaves its section out,
    said in the report and on stderr, so one bad file does not cost the rest of the report."""
    try:
        value = read_json(path)
    except LatentrmError as exc:
        note_skipped(f"{exc}; its section is left out")
        return None
    if value is not None and not isinstance(value, dict):
        raise LatentrmError(f"{path}: expected a JSON object, found {type(value).__name__}; re-run the stage "
                            "that writes it")
    return value


def load_audit(folder: Path) -> dict[str, Any] | None:
    report = _object(folder / "report.json")
    if report is None:
        return None
    images = read_pngs(folder, [str(n) for n in report.get("plots") or []])
    return {**report, "images": [image for image in images if image["name"] != PROBE_PNG]}  # shown with its table


def load_probe(run_dir: Path) -> dict[str, Any] | None:
    """The backbone probe: `audit/probe.json` (the audit's `backbone` probe), else `probe/probe.json`."""
    for folder in (run_dir / "audit", run_dir / "probe"):
        report = _object(folder / "probe.json")
        if report is not None:
            images = [image for image in read_pngs(folder, [PROBE_PNG]) if image["name"] == PROBE_PNG]
            return {**report, "folder": folder.name, "images": images}
    return None


def load_rl(folder: Path) -> dict[str, Any] | None:
    rows = read_jsonl(folder / "metrics.jsonl")
    summary = _object(folder / "summary.json")
    if not rows and summary is None:
        return None
    return {"train": [r for r in rows if r.get("kind", "train") == "train"],
            "eval": [r for r in rows if r.get("kind") == "eval"], "summary": summary or {}}


def load_eval(folder: Path) -> dict[str, dict[str, Any]] | None:
    """`{set: {side: {"metrics", "responses"}}}` for sides model (the untouched model, when a warm start ran),
    base (the start policy) and policy; heldout first, false_premise last."""
    sets: dict[str, dict[str, Any]] = {}
    for side in EVAL_SIDES:
        side_dir = folder / side
        if not side_dir.is_dir():
            continue
        for set_dir in sorted(p for p in side_dir.iterdir() if p.is_dir()):
            metrics = _object(set_dir / "metrics.json")
            if metrics is not None:
                sets.setdefault(set_dir.name, {})[side] = {
                    "metrics": metrics, "responses": read_jsonl(set_dir / "responses.jsonl")}
    order = sorted(sets, key=lambda name: (name != "heldout", name == "false_premise", name))
    return {name: sets[name] for name in order} or None


def load_compare(folder: Path) -> dict[str, Any] | None:
    if not folder.is_dir():
        return None
    results = _object(folder / "results.json")
    table_md = (folder / "table.md").read_text(encoding="utf-8") if (folder / "table.md").is_file() else None
    images = read_pngs(folder)
    if results is None and table_md is None and not images:
        return None
    return {"rows": (results or {}).get("rows") or [], "table_md": table_md, "images": images}


def load_goodhart(folder: Path) -> dict[str, Any] | None:
    if not folder.is_dir():
        return None
    report = _object(folder / "goodhart.json")
    images = read_pngs(folder, [str(report["plot"])] if report and report.get("plot") else None)
    if report is None and not images:
        return None
    return {"report": report or {}, "images": images}


def load_onpolicy(folder: Path) -> dict[str, dict[str, Any]] | None:
    """`{side: report + images}`: `base` and `policy` from the pipeline, `check` for a standalone `rm onpolicy`."""
    if not folder.is_dir():
        return None
    found: dict[str, dict[str, Any]] = {}
    for side, sub in (("check", folder), *((p.name, p) for p in sorted(folder.iterdir()) if p.is_dir())):
        report = _object(sub / "onpolicy.json")
        if report is not None:
            found[side] = {**report, "images": read_pngs(sub, [str(report.get("plot") or "onpolicy.png")])[:1]}
    order = sorted(found, key=lambda side: ({"base": 0, "policy": 1}.get(side, 2), side))
    return {side: found[side] for side in order} or None


RUN_PARTS = ("run.json", "data", "rm_sweep", "rm", "audit", "probe", "rl", "eval", "compare", "goodhart", "onpolicy")


def check_run_dir(run_dir: Path) -> None:
    """A folder that holds a run: one of RUN_PARTS. A reward-model folder or an empty one is refused by name."""
    if (run_dir / "rm.json").is_file() or (run_dir / "head.safetensors").is_file():
        raise LatentrmError(f"{run_dir} is a reward-model folder, not a run; pass the run folder that holds it "
                            f"({run_dir.parent})")
    if not any((run_dir / part).exists() for part in RUN_PARTS):
        raise LatentrmError(f"{run_dir} holds no run: a run folder has run.json or stage folders (data/, rm/, rl/, "
                            "eval/, ...); pass the folder `latentrm run` wrote, e.g. runs/quick")


def load_run(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, read from `run_dir`; missing sections are None; `skipped` lists the files
    (or lines) left out, with why."""
    run_dir = Path(run_dir)
    skipped: list[str] = []
    token = SKIPPED.set(skipped)
    try:
        loaded = _load_run(run_dir)
    finally:
        SKIPPED.reset(token)
    return {**loaded, "skipped": skipped}


def _load_run(run_dir: Path) -> dict[str, Any]:
    data = _object(run_dir / "data" / "build.json")
    return {
        "run_dir": str(run_dir),
        "run": _object(run_dir / "run.json"),
        "data": data if data is not None or not (run_dir / "data" / "pairs.parquet").is_file() else {},
        "sweep": _object(run_dir / "rm_sweep" / "sweep.json"),
        "rm": _object(run_dir / "rm" / "rm.json"),
        "audit": load_audit(run_dir / "audit"),
        "probe": load_probe(run_dir),
        "rl": load_rl(run_dir / "rl"),
        "eval": load_eval(run_dir / "eval"),
        "compare": load_compare(run_dir / "compare"),
        "goodhart": load_goodhart(run_dir / "goodhart"),
        "onpolicy": load_onpolicy(run_dir / "onpolicy"),
    }
