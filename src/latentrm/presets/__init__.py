"""The presets that ship inside the package: `run/` (`latentrm run --preset`), `rl/` (`latentrm rl train
--preset`) and `accelerate/` (launch configs). Read through `importlib.resources`, so a wheel install finds
them as a source checkout does.

One loader for every kind (`read_preset`) and one reader of `--set key=value` items (`parse_set`): the run
pipeline and `rl train` differ only in what a preset holds (sections, or RLConfig fields), which each checks.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError

_EXPONENT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def preset_dir(kind: str) -> Path:
    """The folder of one kind of preset (`run`, `rl`, `accelerate`) inside the installed package."""
    return Path(str(files("latentrm.presets").joinpath(kind)))


def preset_names(kind: str) -> list[str]:
    return sorted(p.stem for p in preset_dir(kind).glob("*.yaml"))


def read_preset(kind: str, name: str, *, holds: str) -> tuple[Path, dict[str, Any]]:
    """`presets/<kind>/<name>.yaml`, or a YAML file path: its path and its mapping. `holds` says what a preset
    of this kind is a mapping of, for the messages ("sections (data, rm, rl, ...)", "RLConfig fields")."""
    import yaml

    path = Path(name)
    if not path.suffix:
        path = preset_dir(kind) / f"{name}.yaml"
    if not path.is_file():
        raise LatentrmError(f"--preset {name}: no such preset ({path}); known presets: "
                            f"{', '.join(preset_names(kind)) or 'none found'}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise LatentrmError(f"{path}: not UTF-8 text; a preset is a YAML file") from None
    except yaml.YAMLError as exc:
        raise LatentrmError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if values is None:
        start = f"presets/{kind}/{preset_names(kind)[0]}.yaml" if preset_names(kind) else "a shipped preset"
        raise LatentrmError(f"{path}: the preset is empty; give its {holds} or start from {start}")
    if not isinstance(values, dict):
        raise LatentrmError(f"{path}: a preset is a mapping of {holds}")
    return path, values


def parse_set(item: str, *, form: str = "key=value", example: str) -> tuple[list[str], Any]:
    """One `--set key=value` item: the dotted key's parts (dashes read as underscores) and the value as YAML
    (`1e-5`, `true`, `null`, `[9, 15]`). `form` and `example` show a well-formed item in the error."""
    import yaml

    key, sep, text = item.partition("=")
    parts = [p.strip().replace("-", "_") for p in key.split(".") if p.strip()]
    if not sep or not parts:
        raise LatentrmError(f"--set {item!r}: write {form}, e.g. {example}")
    if _EXPONENT.fullmatch(text.strip()):  # YAML 1.1 reads 1e-5 (no dot) as a string
        return parts, float(text)
    try:
        return parts, yaml.safe_load(text)
    except yaml.YAMLError:
        raise LatentrmError(f"--set {item!r}: the value is not a YAML scalar or list") from None
