"""Recipes are data: prompt classes, variants (steering / grounding), polarity per class, echo markers.

A recipe is a YAML file (shipped ones live in `latentrm/data/recipes/`; a path
to your own works too). Schema:

    name: knowledge_awareness
    description: one line
    templates: [...]            # question templates shared by every class ({name}, {field}, ...)
    claims: [...]               # optional: {fact, text, perturb: year|swap} for claim classes
    behaviours: {hedge: REGEX}  # named regexes used by variants' require / reject_if
    echo_markers: ["[Note", ...]  # a completion containing one of these is an echo and is dropped
    classes:
      real: {entities: real, chosen: grounded, rejected: false_hedge}
      fake: {entities: fake, chosen: hedge, rejected: plain, templates: [...extra...]}
      # optional extra contrasts, built only when asked for (`data build --contrasts right_vs_wrong`)
      real: {..., contrasts: {right_vs_wrong: {chosen: grounded, rejected: wrong_grounded}}}
    variants:
      grounded: {system: "Background: {grounding}", reject_if: hedge}
      wrong_grounded: {system: "Background: {wrong_grounding}", reject_if: hedge}
      hedge: {prefill: "[Note: ...]", openers: ["I'm not familiar with {name}."], require: hedge}

Variant fields: `system` (a system message; grounding when it uses {grounding}
or {wrong_grounding}, the grounding with its facts perturbed by `latentrm.data.perturb`;
else steering), `shots` (few-shot chat messages), `prefill` (an assistant-turn
steering note) — all three are stripped from stored pairs. `openers` are
answer starts that ARE kept in the stored completion (see build.py for why).
A class with `claim: true|false` renders `{claim}` as the true or the perturbed
statement (sycophancy).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from latentrm.errors import LatentrmError

RECIPE_DIR = "recipes"


@dataclass(frozen=True)
class Variant:
    name: str
    system: str = ""
    shots: tuple[tuple[str, str], ...] = ()  # (role, content)
    prefill: str = ""
    openers: tuple[str, ...] = ()
    require: str | None = None
    reject_if: str | None = None
    contradicts_grounding: bool = False  # keep only completions that contradict the TRUE grounding text

    @property
    def grounded(self) -> bool:
        return "{grounding}" in self.system or self.wrong

    @property
    def wrong(self) -> bool:
        """Grounded on a perturbed copy of the grounding text (the `right_vs_wrong` contrast)."""
        return "{wrong_grounding}" in self.system

    def steering_texts(self, fields: Mapping[str, str]) -> list[str]:
        """The stripped steering text (not grounding), for echo detection."""
        texts = [fill(self.prefill, fields)]
        if self.system and not self.grounded:
            texts.append(fill(self.system, fields))
        texts += [fill(content, fields) for _, content in self.shots]
        return [t for t in texts if t.strip()]


@dataclass(frozen=True)
class PromptClass:
    name: str
    entities: Literal["real", "fake"]
    chosen: str
    rejected: str
    templates: tuple[str, ...] = ()
    claim: bool | None = None  # sycophancy: render {claim} true or perturbed
    contrasts: tuple[tuple[str, str, str], ...] = ()  # extra contrasts: (name, chosen, rejected)


@dataclass(frozen=True)
class Claim:
    fact: str
    text: str
    perturb: Literal["year", "swap"]


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    classes: tuple[PromptClass, ...]
    variants: dict[str, Variant]
    templates: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    behaviours: dict[str, str] = field(default_factory=dict)
    echo_markers: tuple[str, ...] = ()
    source: str = ""  # the YAML text, hashed into the build plan

    def contrast_names(self) -> tuple[str, ...]:
        """The extra contrasts the classes declare (built only when a build asks for them)."""
        return tuple(dict.fromkeys(name for c in self.classes for name, _, _ in c.contrasts))

    def templates_for(self, prompt_class: PromptClass) -> tuple[str, ...]:
        return self.templates + prompt_class.templates

    def behaviour(self, name: str | None, text: str) -> bool:
        if not name:
            return False
        return re.search(self.behaviours[name], text) is not None


# --------------------------------------------------------------------------- templating


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def fill(template: str, fields: Mapping[str, str]) -> str:
    """Format a template; a missing field is a LatentrmError (templates are checked before use)."""
    try:
        return template.format_map(dict(fields))
    except KeyError as exc:
        raise LatentrmError(f"template {template!r} needs field {exc.args[0]!r}, which this entity lacks") from exc


def usable(template: str, fields: Mapping[str, str]) -> bool:
    return template_fields(template) <= {k for k, v in fields.items() if v}


def make_claim(claims: tuple[Claim, ...], fields: Mapping[str, str], pools: Mapping[str, list[str]],
               rng: random.Random) -> tuple[str, str] | None:
    """(true statement, perturbed statement) for one entity, or None when no claim fits its facts."""
    options = [c for c in claims if usable(c.text, fields) and fields.get(c.fact)]
    rng.shuffle(options)
    for claim in options:
        value = fields[claim.fact]
        if claim.perturb == "year":
            if not value.isdigit():
                continue
            shift = rng.choice([-1, 1]) * rng.randint(7, 40)
            wrong = str(int(value) + shift)
        else:
            others = sorted({v for v in pools.get(claim.fact, []) if v.lower() != value.lower()})
            if not others:
                continue
            wrong = rng.choice(others)
        return fill(claim.text, fields), fill(claim.text, {**fields, claim.fact: wrong})
    return None


# --------------------------------------------------------------------------- loading


def _as_str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LatentrmError(f"{where} must be a list of strings")
    return tuple(value)


def _contrasts(data: Any, variants: Mapping[str, Variant], where: str) -> tuple[tuple[str, str, str], ...]:
    """A class's extra contrasts: `{name: {chosen: VARIANT, rejected: VARIANT}}`."""
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise LatentrmError(f"{where} contrasts must map a name to {{chosen: VARIANT, rejected: VARIANT}}")
    out = []
    for name, spec in data.items():
        if not isinstance(spec, Mapping) or set(spec) != {"chosen", "rejected"}:
            raise LatentrmError(f"{where} contrast '{name}' needs exactly chosen and rejected")
        for side in ("chosen", "rejected"):
            if spec[side] not in variants:
                raise LatentrmError(f"{where} contrast '{name}' {side} variant {spec[side]!r} is not declared "
                                    f"under variants ({', '.join(variants)})")
        if spec["chosen"] == spec["rejected"]:
            raise LatentrmError(f"{where} contrast '{name}' pairs variant {spec['chosen']!r} with itself")
        out.append((str(name), str(spec["chosen"]), str(spec["rejected"])))
    return tuple(out)


def parse_recipe(data: Mapping[str, Any], origin: str, source: str = "") -> Recipe:
    """Validate a recipe mapping; every problem is a one-line error naming the key."""
    if not isinstance(data, Mapping):
        raise LatentrmError(f"{origin}: a recipe must be a YAML mapping")
    for key in ("name", "classes", "variants"):
        if key not in data:
            raise LatentrmError(f"{origin}: recipe is missing '{key}'")
    behaviours = {str(k): str(v) for k, v in (data.get("behaviours") or {}).items()}
    for name, pattern in behaviours.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise LatentrmError(f"{origin}: behaviour '{name}' is not a valid regex ({exc})") from exc
    variants: dict[str, Variant] = {}
    for name, spec in (data["variants"] or {}).items():
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise LatentrmError(f"{origin}: variant '{name}' must be a mapping")
        unknown = set(spec) - {"system", "shots", "prefill", "openers", "require", "reject_if",
                               "contradicts_grounding"}
        if unknown:
            raise LatentrmError(f"{origin}: variant '{name}' has unknown key(s) {', '.join(sorted(unknown))}")
        shots = []
        for shot in spec.get("shots") or []:
            if not isinstance(shot, Mapping) or "role" not in shot or "content" not in shot:
                raise LatentrmError(f"{origin}: variant '{name}' shots need role and content")
            shots.append((str(shot["role"]), str(shot["content"])))
        for key in ("require", "reject_if"):
            if spec.get(key) and spec[key] not in behaviours:
                raise LatentrmError(f"{origin}: variant '{name}' {key} '{spec[key]}' is not a declared behaviour")
        variants[str(name)] = Variant(
            str(name), str(spec.get("system") or ""), tuple(shots), str(spec.get("prefill") or ""),
            _as_str_tuple(spec.get("openers"), f"{origin}: variant '{name}' openers"),
            spec.get("require"), spec.get("reject_if"), bool(spec.get("contradicts_grounding")),
        )
    classes = []
    for name, spec in (data["classes"] or {}).items():
        if not isinstance(spec, Mapping):
            raise LatentrmError(f"{origin}: class '{name}' must be a mapping")
        kind = spec.get("entities")
        if kind not in ("real", "fake"):
            raise LatentrmError(f"{origin}: class '{name}' entities must be real or fake, got {kind!r}")
        for side in ("chosen", "rejected"):
            if spec.get(side) not in variants:
                raise LatentrmError(f"{origin}: class '{name}' {side} variant {spec.get(side)!r} is not declared "
                                    f"under variants ({', '.join(variants)})")
        claim = spec.get("claim")
        if claim is not None and not isinstance(claim, bool):
            raise LatentrmError(f"{origin}: class '{name}' claim must be true or false")
        classes.append(PromptClass(str(name), kind, spec["chosen"], spec["rejected"],
                                   _as_str_tuple(spec.get("templates"), f"{origin}: class '{name}' templates"),
                                   claim, _contrasts(spec.get("contrasts"), variants, f"{origin}: class '{name}'")))
    if not classes:
        raise LatentrmError(f"{origin}: recipe declares no classes")
    claims = []
    for index, spec in enumerate(data.get("claims") or []):
        if not isinstance(spec, Mapping) or spec.get("perturb") not in ("year", "swap") or not spec.get("fact"):
            raise LatentrmError(f"{origin}: claim {index + 1} needs fact, text and perturb: year|swap")
        claims.append(Claim(str(spec["fact"]), str(spec["text"]), spec["perturb"]))
    recipe = Recipe(
        name=str(data["name"]), description=str(data.get("description") or ""), classes=tuple(classes),
        variants=variants, templates=_as_str_tuple(data.get("templates"), f"{origin}: templates"),
        claims=tuple(claims), behaviours=behaviours,
        echo_markers=_as_str_tuple(data.get("echo_markers"), f"{origin}: echo_markers"), source=source,
    )
    for prompt_class in recipe.classes:
        if not recipe.templates_for(prompt_class):
            raise LatentrmError(f"{origin}: class '{prompt_class.name}' has no templates")
        if prompt_class.claim is not None and not recipe.claims:
            raise LatentrmError(f"{origin}: class '{prompt_class.name}' uses claims but the recipe has none")
    return recipe


def _builtin_files() -> dict[str, Any]:
    folder = resources.files("latentrm.data").joinpath(RECIPE_DIR)
    return {f.name[: -len(".yaml")]: f for f in folder.iterdir() if f.name.endswith(".yaml")}


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in sorted(_builtin_files())]


def load_recipe(name_or_path: str) -> Recipe:
    """A shipped recipe by name, or a YAML file by path."""
    import yaml

    files = _builtin_files()
    if name_or_path in files:
        text, origin = files[name_or_path].read_text(encoding="utf-8"), f"recipe {name_or_path}"
    elif Path(name_or_path).suffix in (".yaml", ".yml") and Path(name_or_path).exists():
        text, origin = Path(name_or_path).read_text(encoding="utf-8"), name_or_path
    else:
        raise LatentrmError(f"unknown recipe '{name_or_path}'; choose one of {', '.join(sorted(files))} "
                            "or pass a path to a recipe .yaml file (see `latentrm data recipes`)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LatentrmError(f"{origin}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    return parse_recipe(data, origin, text)
