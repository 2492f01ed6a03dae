"""The one stage contract: every stage is `run(config, *, force=False) -> Path` over a frozen config dataclass.

    key = stage_key(config, input_hashes({"pairs": config.pairs}), extra={"backbone": revision})
    if not force and is_done(folder, key):
        return folder                                    # same config, same inputs: nothing to do
    ... write the outputs ...
    write_manifest(folder, "rm", key, config, inputs, outputs=["rm.json", ...], summary={...})  # last

- **Folder.** A stage writes into one folder, `run_dir/<stage>/` when a pipeline runs it (each config says
  where: `BuildConfig.out`, `RMStageConfig.run_dir / out_name`, `EvalConfig.out`, ...).
- **Key.** One path for every stage: `stage_key(config, input_hashes({...}), extra={...})`, a digest of the
  config, the content hashes of the stage's input files and folders, and anything else its outputs depend on
  (a backbone revision, a generation plan). Left out of the config: `RUNTIME_FIELDS`, the one list of fields
  that change how fast a stage runs or where it writes, never what it writes; and every field named as an
  input, which enters by its content, not its path. A folder input is hashed by its own manifest's key, so a
  stage downstream of a changed stage reruns, and one downstream of an unchanged stage does not, without
  rehashing big files. No stage keeps a key of its own.
- **Config.** `begin` writes `config.json`: the stage, its key and resolved config, and what a resumable stage
  needs to go on (data, eval and rl write it first and resume only under the same key, `begun`).
- **Manifest.** `manifest.json` is written last, atomically: it names the stage, the key, the resolved
  config, the input hashes, the outputs, the time taken and a small summary (what the pipeline prints and
  the report reads). A stage is done when the manifest's key matches and every output it lists exists.
- **Force.** `force=True` reruns a stage whatever its manifest says (the CLI flags `--force`, `--overwrite`
  and `--fresh` all map to it). `latentrm run --from STAGE` forces that stage and the ones after it.
- **Ran or skipped.** A stage ran when it wrote its manifest. `recording()` collects the manifests written while
  it is open, so the pipeline asks the stage, not the files' times: `with recording() as written: run(...)`.
- **Order.** `PIPELINE` lists the stages `latentrm run` chains, in order, with the folder each writes.
- Stage functions return data and write files; the CLI prints (the console tables are functions that the
  report calls too).

Stage-specific files (`build.json`, `rm.json`, `report.json`, `summary.json`) keep their formats; the
manifest sits next to them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text, cached_file_hash, config_hash

T = TypeVar("T")
MANIFEST = "manifest.json"
CONFIG = "config.json"  # written first by `begin`: the key a stage works under, its resolved config
# The stage packages, in import order: a stage may import earlier ones (and the shared services), never a later one.
STAGES = ("data", "features", "rm_sweep", "rm", "audit", "eval", "rl", "report")
# What `latentrm run` chains, in order: (stage, the folder under the run directory it writes; None: no manifest).
PIPELINE: tuple[tuple[str, str | None], ...] = (
    ("data", "data"), ("warm_start", "warm_start"), ("features", "features"), ("sweep", "rm_sweep"), ("rm", "rm"),
    ("audit", "audit"), ("eval_model", "eval/model"), ("eval_base", "eval/base"), ("onpolicy_base", "onpolicy/base"),
    ("rl", "rl"), ("rounds", "rounds"), ("eval_policy", "eval/policy"), ("onpolicy_policy", "onpolicy/policy"),
    ("report", None))
# The one list of config fields that change how fast a stage runs, or where it writes, never what it writes.
RUNTIME_FIELDS = ("batch_size", "device", "progress", "cache_dir", "threads", "run_dir", "out", "out_name", "name",
                  "folder", "report_to", "logging_steps", "save_steps", "save_total_limit", "reward_batch_size",
                  "eval_batch_size")
_WRITTEN: list[list[Path]] = []  # the open `recording()` blocks


def config_dict(config: Any) -> dict[str, Any]:
    """A stage config as a JSON-able dict (dataclasses, nested ones included; other objects as `to_dict()`)."""
    if is_dataclass(config) and not isinstance(config, type):
        return asdict(config)
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"not a stage config: {type(config).__name__}")


def input_hashes(inputs: Mapping[str, str | Path | None]) -> dict[str, str]:
    """`{name: digest}` for the files and stage folders a stage reads (`None` entries are left out).

    A file is hashed by content (remembered by path, size and mtime, so a big file is read once); a stage
    folder by its manifest's key; any other folder by the hashes of its files, in name order.
    """
    out: dict[str, str] = {}
    for name, value in inputs.items():
        if value is None:
            continue
        path = Path(value)
        if path.is_file():
            out[name] = cached_file_hash(path)[:16]
        elif (path / MANIFEST).is_file():
            out[name] = "stage:" + str(read_manifest(path).get("key", ""))  # type: ignore[union-attr]
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            out[name] = config_hash([[str(p.relative_to(path)), cached_file_hash(p)] for p in files])
        else:
            raise LatentrmError(f"{path}: no such file or folder (the {name!r} input of this stage)")
    return out


def stage_key(config: Any, inputs: Mapping[str, str] | None = None, *,
              extra: Mapping[str, Any] | None = None) -> str:
    """The 16-hex key of a stage run: its config (less `RUNTIME_FIELDS` and the fields named in `inputs`, which
    enter by content), its input hashes (`input_hashes`) and anything in `extra`."""
    skip = {*RUNTIME_FIELDS, *(inputs or {})}
    payload = {k: v for k, v in config_dict(config).items() if k not in skip}
    return config_hash({"config": payload, "inputs": dict(inputs or {}), **dict(extra or {})})


@contextlib.contextmanager
def recording() -> Iterator[list[Path]]:
    """The manifests written while the block runs (nested blocks each see theirs): how a stage says it ran."""
    written: list[Path] = []
    _WRITTEN.append(written)
    try:
        yield written
    finally:
        _WRITTEN[:] = [w for w in _WRITTEN if w is not written]  # by identity: two empty lists are equal


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The stage folder's manifest, or None when it has none (a half-written run, or never run)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: treated as not done, so the stage reruns and rewrites it
    return manifest if isinstance(manifest, dict) else None


def is_done(folder: str | Path, key: str) -> bool:
    """True when `folder` holds a manifest with this key and every output the manifest lists exists."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("key") != key:
        return False
    return all((Path(folder) / name).exists() for name in manifest.get("outputs", []))


@dataclass
class Timer:
    """Wall time of a stage run, for its manifest."""

    start: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def write_manifest(folder: str | Path, stage: str, key: str, config: Any, *, inputs: Mapping[str, str] | None = None,
                   outputs: Iterable[str] = (), summary: Mapping[str, Any] | None = None,
                   seconds: float | None = None) -> Path:
    """Write `folder/manifest.json`: call it last, after every output is in place."""
    from latentrm._version import __version__

    folder = Path(folder)
    outputs = list(outputs)
    missing = [name for name in outputs if not (folder / name).exists()]
    if missing:  # a bug in the stage, not bad input: the manifest must never claim what is not there
        raise LatentrmError(f"{folder}: stage {stage} lists outputs it did not write: {', '.join(missing)}")
    manifest = {"stage": stage, "key": key, "config": config_dict(config), "inputs": dict(inputs or {}),
                "outputs": outputs, "summary": dict(summary or {}), "seconds": seconds,
                "latentrm_version": __version__,
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    path = folder / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=1, default=str))
    for written in _WRITTEN:
        written.append(path)
    return path


def begin(folder: str | Path, stage: str, key: str, config: Any, **record: Any) -> Path:
    """Write `folder/config.json`: the stage, the key it works under, its resolved config and whatever it needs to
    resume (`record`: an eval's generation key, an RL run's process count). A resumable stage (data, eval, rl)
    writes it before anything else and goes on from files it finds only when `begun(folder)` names the same
    key; any other stage writes it with its outputs. The manifest, written last, is what says a stage finished."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG
    atomic_write_text(path, json.dumps({"stage": stage, "key": key, "config": config_dict(config), **record},
                                       indent=1, default=str))
    return path


def begun(folder: str | Path) -> dict[str, Any]:
    """What `begin` recorded in this folder ({} when nothing, or something unreadable, is there)."""
    try:
        record = json.loads((Path(folder) / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def forget(folder: str | Path) -> None:
    """Remove a stage folder's manifest, so the stage counts as not done (what `force` does first)."""
    (Path(folder) / MANIFEST).unlink(missing_ok=True)


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build a stage config dataclass from YAML / `--set` values; unknown fields and wrong types are one line.

    `where` names the source in errors (`presets/run/quick.yaml: data`). Lists become tuples where the
    field is a tuple.
    """
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise LatentrmError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        kind = str(known[name].type)
        if isinstance(value, list) and kind.startswith("tuple"):
            value = tuple(value)
        if isinstance(value, str) and "float" in kind:
            try:  # YAML 1.1 reads 3e-5 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if not _type_ok(value, kind):
            raise LatentrmError(f"{where}: field {name}={value!r} should be {kind}")
        coerced[name] = value
    try:
        return cls(**coerced)
    except TypeError as exc:  # a required field is missing
        raise LatentrmError(f"{where}: {exc}") from None


def _type_ok(value: Any, kind: str) -> bool:
    """A loose check of a YAML value against a dataclass field's annotation (as a string)."""
    if value is None:
        return "None" in kind or kind == "Any"
    checks = (("bool", lambda v: isinstance(v, bool)),
              ("int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
              ("float", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
              ("str", lambda v: isinstance(v, str)),
              ("tuple", lambda v: isinstance(v, tuple)),
              ("list", lambda v: isinstance(v, list)),
              ("dict", lambda v: isinstance(v, dict)),
              ("Any", lambda v: True))
    return any(name in kind and check(value) for name, check in checks)
