"""Shared checks for command-line values, run once where the CLI parses them.

Each check raises `LatentrmError` with one line naming the option, the value and
the fix, so `latentrm.cli.main` prints `error: ...` and exits 2 before any model
loads or any file is written. Counts use typer's own `min=` / `max=`; this module
holds what typer cannot express: finite floats, writable outputs and names that
live in a registry.

The `*_option` functions are typer callbacks (`typer.Option(callback=...)`); the
plain `check_*` functions are for values the CLI derives itself (e.g. a default
run directory next to `--rm`). Only typer and the standard library are imported
at module level, so `latentrm --help` stays fast.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import typer

from latentrm.errors import LatentrmError


def option_name(param: typer.CallbackParam) -> str:
    """The option as the user types it (`--run-dir`), else the parameter's name."""
    opts = [opt for opt in (param.opts or []) if opt.startswith("--")]
    return opts[0] if opts else str(param.name)


# --------------------------------------------------------------------------- output locations


def _nearest_existing(path: Path) -> Path:
    """`path` itself, or its closest ancestor that exists (what mkdir -p would create inside)."""
    current = path
    while not current.exists() and not current.is_symlink():
        if current.parent == current:
            break
        current = current.parent
    return current


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """os.access, then a real create: os.access says yes to root on read-only mounts and on /proc."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LatentrmError(f"{option} {target}: {folder} is not writable; pick a folder you can write to")
    try:
        probe = tempfile.mkdtemp(dir=folder, prefix=".latentrm-write-check-")
    except OSError as exc:
        raise LatentrmError(f"{option} {target}: {folder} is not writable ({exc.strerror}); "
                            "pick a folder you can write to") from None
    os.rmdir(probe)


def _check_folder(folder: Path, option: str, target: Path) -> None:
    """`folder` exists and is writable, or mkdir -p can create it; errors show the path the user gave."""
    base = _nearest_existing(folder)
    if base.exists() and not base.is_dir():
        what = "is a file" if base == target else f"sits under the file {base}"
        raise LatentrmError(f"{option} {target}: {what}, not a directory; pass a path in a folder you can write to")
    if not base.exists():  # a dangling symlink: mkdir would fail on it
        raise LatentrmError(f"{option} {target}: {base} is a broken link; remove it or pass another path")
    _probe_writable(base, option, target)


def check_writable_dir(path: str | Path, option: str) -> Path:
    """A folder that exists and is writable, or one that mkdir -p can create; nothing is left behind."""
    target = Path(path)
    _check_folder(target, option, target)
    return target


def check_writable_file(path: str | Path, option: str) -> Path:
    """A file path that can be (over)written: not a folder, in a folder that exists or can be created."""
    target = Path(path)
    if target.is_dir():
        raise LatentrmError(f"{option} {target}: is a directory; pass a file path, e.g. {target / 'out.json'}")
    if target.exists() and not os.access(target, os.W_OK):
        raise LatentrmError(f"{option} {target}: the file is not writable; pick another path")
    _check_folder(target.parent, option, target)
    return target


def _optional(check: Callable[[Path, str], Path]) -> Callable[[typer.CallbackParam, Path | None], Path | None]:
    def callback(param: typer.CallbackParam, value: Path | None) -> Path | None:
        return None if value is None else check(value, option_name(param))

    return callback


writable_dir_option = _optional(check_writable_dir)
writable_file_option = _optional(check_writable_file)


# --------------------------------------------------------------------------- numbers


def _finite(param: typer.CallbackParam, value: float) -> None:
    if not math.isfinite(value):
        raise LatentrmError(f"{option_name(param)} {value}: must be a finite number")


def positive_float_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """A finite number > 0 (learning rates); None passes (the default applies)."""
    if value is not None:
        _finite(param, value)
        if value <= 0:
            raise LatentrmError(f"{option_name(param)} {value}: must be greater than 0")
    return value


def nonzero_float_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """A finite number other than 0 (-0.0 included): an output scale of 0 makes every score 0."""
    if value is not None:
        _finite(param, value)
        if value == 0:
            raise LatentrmError(f"{option_name(param)} {value}: a scale of 0 scores every text 0; use e.g. 0.01")
    return value


def temperature_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """A finite sampling temperature >= 0 (0 = greedy)."""
    if value is not None:
        _finite(param, value)
        if value < 0:
            raise LatentrmError(f"{option_name(param)} {value}: must be >= 0 (0 = greedy decoding)")
    return value


def top_p_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """Nucleus mass in (0, 1]."""
    if value is not None:
        _finite(param, value)
        if not 0 < value <= 1:
            raise LatentrmError(f"{option_name(param)} {value}: must be in (0, 1] (1 keeps every token)")
    return value


def non_negative_float_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """A finite number >= 0 (a Bradley-Terry margin: a negative one rewards ranking the pair the wrong way)."""
    if value is not None:
        _finite(param, value)
        if value < 0:
            raise LatentrmError(f"{option_name(param)} {value}: must be >= 0 (0 is the plain Bradley-Terry loss)")
    return value


def finite_float_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """Any finite number (a margin, a threshold)."""
    if value is not None:
        _finite(param, value)
    return value


# --------------------------------------------------------------------------- names


def check_choice(value: str, names: Sequence[str], option: str) -> str:
    if value not in names:
        raise LatentrmError(f"{option} {value!r}: use one of {', '.join(names)}")
    return value


def check_name(value: str, option: str) -> str:
    """A folder *name* (not a path): non-empty, no separators, not `.` or `..`."""
    if not value.strip() or value in (".", "..") or "/" in value or "\\" in value or value != value.strip():
        raise LatentrmError(f"{option} {value!r}: give a plain folder name (letters, digits, - or _), not a path")
    return value


def choice_option(names: Callable[[], Sequence[str]]) -> Callable[[typer.CallbackParam, str | None], str | None]:
    """A callback checking a name against `names()`; lazy, so a registry module loads only when used."""

    def callback(param: typer.CallbackParam, value: str | None) -> str | None:
        return None if value is None else check_choice(value, list(names()), option_name(param))

    return callback


def parse_shaper_params(items: list[str] | None) -> dict[str, float]:
    """`--shaper-param name=number` (repeatable) as a dict; a malformed item is a one-line error."""
    params: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise LatentrmError(f"--shaper-param '{item}' must look like name=number, e.g. tau=0.5") from None
        if not sep or not name.strip():
            raise LatentrmError(f"--shaper-param '{item}' must look like name=number, e.g. tau=0.5")
    return params


def poolings() -> tuple[str, ...]:
    from latentrm.features import POOLINGS

    return POOLINGS


def pooling_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """`--pooling`: one read-out spec, or (for a sweep) several, comma-separated; each checked here."""
    from latentrm.features import pooling_parts

    if value is None:
        return None
    specs = [spec.strip() for spec in value.split(",") if spec.strip()]
    if not specs:
        raise LatentrmError(f"{option_name(param)} is empty; use e.g. last, mean or prompt+mean")
    for spec in specs:
        try:
            pooling_parts(spec)
        except LatentrmError as exc:
            raise LatentrmError(f"{option_name(param)}: {exc}") from None
    return ",".join(specs)


def dtypes() -> tuple[str, ...]:
    from latentrm.models import DTYPES

    return DTYPES
