"""Shared file services: the cache root, hashing, atomic writes, JSONL/Parquet readers, the progress display.

Every stage writes files; none of them should need the backbone loader (`models.py`) to do it. This module
imports only the standard library at load time (pandas and rich are imported where they are used), so any
module can use it without cost or import circle.

- `cache_root()`: `$LATENTRM_CACHE`, else `$XDG_CACHE_HOME/latentrm`.
- `file_sha256(path)`, `cached_file_hash(path)` (remembered by path, size and mtime), `config_hash(obj)`
  (the 16-hex digest of a JSON-able object, the one recipe every stage key uses).
- `atomic_write_text(path, text)`: readers see the old file or the new one, never half.
- `read_jsonl_objects(path, ...)`, `read_table(path)`: one-line errors naming the file and line.
- `progress_bar(...)`: the one rich progress display (data generation, features, eval).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentrm.errors import LatentrmError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


# --------------------------------------------------------------------------- cache and hashes


def cache_root() -> Path:
    """The user cache folder: `$LATENTRM_CACHE`, else `$XDG_CACHE_HOME/latentrm`."""
    env = os.environ.get("LATENTRM_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "latentrm"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cached_file_hash(path: Path) -> str:
    """sha256 of a large file, remembered next to the cache keyed by (path, size, mtime)."""
    stat = path.stat()
    memo = cache_root() / "file_hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    table: dict[str, str] = {}
    if memo.exists():
        try:
            table = json.loads(memo.read_text())
        except (OSError, json.JSONDecodeError):
            table = {}
    if key not in table:
        table[key] = file_sha256(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo, json.dumps(table, indent=1))
    return table[key]


def config_hash(obj: Any, length: int = 16) -> str:
    """The digest of a JSON-able object (keys sorted, non-JSON values as `str`): every stage key uses it."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def stable_id(*parts: str, length: int = 12) -> str:
    """A short id that depends on `parts` only (joined with the unit separator), for items and prompts."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


# --------------------------------------------------------------------------- writing


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give ordinary permissions
    os.replace(tmp, path)


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line and flush it, so a killed run keeps every row written before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, default=float) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------- reading


def read_jsonl_objects(path: str | Path, *, what: str, needs: str) -> list[tuple[int, dict[str, Any]]]:
    """`(line number, object)` for each non-blank line of a JSONL file; every problem is a one-line error.

    `what` names the file in errors ("eval file"), `needs` says what each line holds ("question and kind").
    """
    path = Path(path)
    if not path.exists():
        raise LatentrmError(f"{path}: no such {what}; pass a JSONL file with {needs} on each line")
    if not path.is_file():
        raise LatentrmError(f"{path}: is not a file; pass a JSONL file with {needs} on each line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LatentrmError(f"{path}: is not UTF-8 text (byte {exc.start}); pass a JSONL file with {needs} "
                            "on each line") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LatentrmError(f"{path}:{number}: not valid JSON ({exc.msg}); fix or remove the line") from exc
        if not isinstance(row, dict):
            raise LatentrmError(f"{path}:{number}: expected a JSON object with {needs}")
        rows.append((number, row))
    return rows


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or JSONL file into a DataFrame, with one-line errors."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise LatentrmError(f"{path}: no such file; check the path")
    suffix = path.suffix.lower()
    if path.is_dir() and suffix not in (".parquet", ".pq"):  # a .parquet folder is a valid partitioned dataset
        raise LatentrmError(f"{path}: is a directory; pass a .parquet or .jsonl file")
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".json", ".ndjson"):
            rows = read_jsonl_objects(path, what="file", needs="one record (e.g. prompt, chosen, rejected, subset)")
            return pd.DataFrame([row for _, row in rows])
    except LatentrmError:
        raise
    except Exception as exc:  # pyarrow and OS errors come in many types
        raise LatentrmError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); is it a valid {suffix} file?")
    raise LatentrmError(f"{path}: unknown format '{suffix}'; use .parquet or .jsonl")


# --------------------------------------------------------------------------- progress


def progress_bar(enabled: bool = True, *, unit: str = "compl", transient: bool = False) -> Any:
    """The one rich progress display: description, bar, n/total, rate in `unit`/s, elapsed, remaining.

    Returns a `rich.progress.Progress` (use it as a context manager and `add_task`); `enabled=False`
    gives one that draws nothing.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:  # noqa: D401
            from rich.text import Text

            # rich's own estimate needs two updates inside its window; one batch of many items
            # gives a single update, so fall back to the average over the elapsed time
            speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
            return Text(f"{speed:.2f} {unit}/s" if speed else f"-- {unit}/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, transient=transient,
    )
