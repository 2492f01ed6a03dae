"""`latentrm run`'s configuration: a preset YAML in `presets/run/`, `--set section.field=value` overrides.

    name: quick               # runs/<name>/
    model: embedded           # backbone of every stage: data generator, reward model, start policy
    threads: 2
    data:     {n_real: 40, n_fake: 40, samples: 2}      # BuildConfig fields
    features: {layers: [9, 15, 21]}                      # layers to extract and sweep
    sweep:    {heads: [mlp, linear]}                     # head types to sweep (chosen with the layer on val)
    rm:       {epochs: 200}                              # TrainConfig fields (head comes from the sweep)
    audit:    {max_pairs: 120, max_edits: 20}            # AuditConfig fields
    warm_start: {method: sft, steps: 30}                 # BaselineConfig fields; method none | sft | kto | dpo | ipo
    onpolicy: {n_real: 8, n_fake: 8, samples: 4}         # OnPolicyConfig fields (enabled: false skips it)
    rl:       {preset: cpu-small, steps: 6}              # RLConfig fields, over an RL preset
    eval:     {sets: [heldout, false_premise], n_real: 20, n_fake: 20}   # EvalConfig fields + the sets

Every section is checked against its stage's config dataclass before anything runs
(`plan.resolve`), so a typo in a preset or a `--set` fails in one line, at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from latentrm import presets
from latentrm.errors import LatentrmError

PRESET_DIR = presets.preset_dir("run")  # inside the package: a wheel install finds it too
SECTIONS = ("data", "features", "sweep", "rm", "audit", "warm_start", "onpolicy", "rl", "eval")
# Fields a section may not set: the pipeline wires them from the run directory and earlier stages.
WIRED = {"data": ("out", "pairs_out", "model"), "features": ("pairs", "run_dir", "model"),
         "rm": ("head",), "audit": ("rm", "run_dir", "pairs", "completions"),
         "onpolicy": ("rm", "run_dir", "name", "policy", "pairs"), "warm_start": ("pairs", "policy", "run_dir"),
         "rl": ("pairs", "rm", "run_dir", "policy"), "eval": ("model", "out", "folder", "eval_set", "exclude_pairs")}


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "quick"
    preset: str = "quick"
    model: str = "embedded"
    threads: int | None = None
    runs_root: str = "runs"
    data: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)
    rm: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    warm_start: dict[str, Any] = field(default_factory=dict)
    onpolicy: dict[str, Any] = field(default_factory=dict)
    rl: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)  # seconds per stage, for the progress estimate

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_root) / self.name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def preset_names() -> list[str]:
    return presets.preset_names("run")


def load_preset(name: str) -> tuple[Path, dict[str, Any]]:
    """A preset's values: `presets/run/<name>.yaml`, or a YAML file path."""
    return presets.read_preset("run", name, holds="sections (data, rm, rl, ...)")


def parse_sets(items: list[str] | None) -> list[tuple[list[str], Any]]:
    """`--set data.n_real=20` items as (path, value) with YAML scalars (`1e-5`, `true`, `[9, 15]`)."""
    return [presets.parse_set(item, form="section.field=value", example="data.n_real=20 or rl.steps=10") for item in items or []]


def build_config(preset: str = "quick", *, sets: list[str] | None = None, name: str | None = None,
                 model: str | None = None, runs_root: str | None = None) -> PipelineConfig:
    """Preset, then `--set`, then the named options; every section validated against its stage config."""
    path, values = load_preset(preset)
    top = {f for f in PipelineConfig.__dataclass_fields__}
    unknown = sorted(set(values) - top)
    if unknown:
        raise LatentrmError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(top))}")
    values.setdefault("preset", Path(preset).stem)
    values.setdefault("name", Path(preset).stem)
    for parts, value in parse_sets(sets):
        if parts[0] not in top:
            raise LatentrmError(f"--set {'.'.join(parts)}: unknown section {parts[0]!r}; known: "
                                f"{', '.join(sorted(top))}")
        if len(parts) == 1:
            values[parts[0]] = value
        elif len(parts) == 2 and parts[0] in SECTIONS:
            values[parts[0]] = {**(values.get(parts[0]) or {}), parts[1]: value}
        else:
            raise LatentrmError(f"--set {'.'.join(parts)}: use section.field (one dot), e.g. rl.steps=10")
    for section in SECTIONS:
        if not isinstance(values.get(section) or {}, dict):
            raise LatentrmError(f"{path}: section {section!r} must be a mapping of fields")
        values[section] = dict(values.get(section) or {})
    config = PipelineConfig(**values)
    overrides: dict[str, Any] = {k: v for k, v in {"name": name, "model": model, "runs_root": runs_root}.items()
                                 if v is not None}
    config = replace(config, **overrides)
    check_name(config.name, "--name" if name is not None else f"{path}: name")
    if config.threads is not None and (not isinstance(config.threads, int) or isinstance(config.threads, bool)
                                       or config.threads < 1):
        raise LatentrmError(f"threads={config.threads!r}: give a whole number of CPU threads >= 1, or leave it out")
    return config


def check_name(name: Any, option: str) -> None:
    """A run name is a name, not a path: it becomes one folder under the runs root."""
    import re

    if not isinstance(name, str) or not name.strip():
        raise LatentrmError(f"{option} {name!r}: give a run name, e.g. quick or my-run")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in (".", ".."):
        raise LatentrmError(f"{option} {name!r}: a run name is one folder name (letters, digits, '.', '_', '-'), "
                            "not a path; use --runs-root to choose where runs go")
