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

The recipe's behaviour, as measured, is its `judging` section: the judge, the eval sets, the headline rates and,
per prompt kind the judge labels, which labels are wanted and which unwanted (every stage that reports a rate
reads these; a recipe without the section is judged as knowledge_awareness is):

    judging:                            # (the sycophancy recipe's)
      judge: rules                      # rules | reference | llm
      eval_sets: [heldout, false_premise]
      headline: [corrects, agrees, confirms_true, disputes_true]   # eval's headline rates, in order
      summary: [agrees, disputes_true]  # the rates a run's summary and the report's verdict lead with
      classes:                          # per judged prompt kind: labels wanted, unwanted, shown for best-of-n
        false_premise: {wanted: [corrects], unwanted: [agrees], best_of: [agrees, corrects]}
        true_claim: {wanted: [confirms_true], unwanted: [disputes_true], best_of: [confirms_true, disputes_true]}

The judging section does not enter the data build's key: it changes what is measured, not a pair.

Variant fields: `system` (a system message; grounding when it uses {grounding}
or {wrong_grounding}, the grounding with its facts perturbed by `latentrm.data.perturb`;
else steering), `shots` (few-shot chat messages), `prefill` (an assistant-turn
steering note) — all three are stripped from stored pairs. `openers` are
answer starts that ARE kept in the stored completion (see build.py for why).
A class with `claim: true|false` renders `{claim}` as the true or the perturbed
statement (sycophancy).
"""

from __future__ import annotations

import functools
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
class ClassJudging:
    """What a judged prompt kind wants: the labels a good response gets, the ones a bad one gets, the rates shown
    for best-of-n, and (optional) the unwanted labels that need no detector beyond the judge's denials."""

    kind: str
    wanted: tuple[str, ...]
    unwanted: tuple[str, ...]
    best_of: tuple[str, ...] = ()
    without_detector: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judging:
    judge: str
    eval_sets: tuple[str, ...]
    headline: tuple[str, ...]
    summary: tuple[str, ...]
    classes: dict[str, ClassJudging]

    def headline_groups(self) -> tuple[tuple[str, str], ...]:
        """(label, the prompt kind it is a share of) for each headline rate."""
        from latentrm.judges.base import group_of_label

        return tuple((label, group_of_label(label)) for label in self.headline)


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
    source: str = ""  # the YAML text less its judging section, hashed into the build plan
    judging_spec: Judging | None = None

    @property
    def judging(self) -> Judging:
        """This recipe's judging, or knowledge_awareness's when it declares none."""
        return self.judging_spec if self.judging_spec is not None else default_judging()

    def contrast_names(self) -> tuple[str, ...]:
        """The extra contrasts the classes declare (built only when a build asks for them)."""
        return tuple(dict.fromkeys(name for c in self.classes for name, _, _ in c.contrasts))

    def judge_kinds(self) -> dict[str, str]:
        """The prompt kind a judge labels each class's prompts as: its entities (`real`, `fake`), or
        `false_premise` for a false claim and `true_claim` for a true one."""
        return {c.name: c.entities if c.claim is None else "true_claim" if c.claim else "false_premise"
                for c in self.classes}

    @property
    def skewed_class(self) -> str:
        """The class whose share the natural mix's `fake_share` sets: the one where the behaviour must resist the
        prompt (made-up people, false claims), else the first class."""
        return next((c.name for c in self.classes if c.entities == "fake" or c.claim is False), self.classes[0].name)

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


def _judging(data: Any, origin: str) -> Judging | None:
    """The `judging` section; every label must be one the judges give, of the kind it is listed under."""
    from latentrm.judges.base import JUDGES, LABEL_GROUPS, group_of_label

    if data is None:
        return None
    where = f"{origin}: judging"
    if not isinstance(data, Mapping):
        raise LatentrmError(f"{where} must be a mapping (judge, eval_sets, headline, summary, classes)")
    unknown = set(data) - {"judge", "eval_sets", "headline", "summary", "classes"}
    if unknown:
        raise LatentrmError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}")
    judge = str(data.get("judge") or "rules")
    if judge not in JUDGES:
        raise LatentrmError(f"{where}.judge {judge!r}: use one of {', '.join(JUDGES.names())}")
    known = {label for labels in LABEL_GROUPS.values() for label in labels}

    def labels(value: Any, at: str, kind: str | None = None) -> tuple[str, ...]:
        out = _as_str_tuple(value, f"{where}.{at}")
        for label in out:
            if label not in known:
                raise LatentrmError(f"{where}.{at}: unknown label {label!r}; the judges give "
                                    f"{', '.join(sorted(known))}")
            if kind is not None and group_of_label(label) != kind:
                raise LatentrmError(f"{where}.{at}: {label!r} is a label of {group_of_label(label)!r} prompts, "
                                    f"not of {kind!r}")
        return out

    classes: dict[str, ClassJudging] = {}
    for kind, spec in (data.get("classes") or {}).items():
        if kind not in LABEL_GROUPS:
            raise LatentrmError(f"{where}.classes: {kind!r} is no prompt kind the judges label; use "
                                f"{', '.join(LABEL_GROUPS)}")
        if not isinstance(spec, Mapping) or not spec.get("wanted") or not spec.get("unwanted"):
            raise LatentrmError(f"{where}.classes.{kind} needs wanted and unwanted labels")
        extra = set(spec) - {"wanted", "unwanted", "best_of", "without_detector"}
        if extra:
            raise LatentrmError(f"{where}.classes.{kind} has unknown key(s) {', '.join(sorted(extra))}")
        classes[str(kind)] = ClassJudging(
            str(kind), labels(spec["wanted"], f"classes.{kind}.wanted", kind),
            labels(spec["unwanted"], f"classes.{kind}.unwanted", kind),
            labels(spec.get("best_of"), f"classes.{kind}.best_of", kind),
            labels(spec.get("without_detector"), f"classes.{kind}.without_detector", kind))
    if not classes:
        raise LatentrmError(f"{where}.classes: declare at least one judged prompt kind")
    headline = labels(data.get("headline"), "headline")
    summary = labels(data.get("summary"), "summary")
    if not headline:
        raise LatentrmError(f"{where}.headline: name the rates eval reports first")
    if not set(summary) <= set(headline):
        raise LatentrmError(f"{where}.summary: every summary rate must be a headline rate")
    return Judging(judge, _as_str_tuple(data.get("eval_sets"), f"{where}.eval_sets") or ("heldout",), headline,
                   summary or headline[:2], classes)


def _data_source(text: str) -> str:
    """The recipe text without its top-level `judging:` block (and the comments just above it): what a build's
    key hashes. Measuring differently changes no pair, so it must not rebuild the data."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("judging:")), None)
    if start is None:
        return text
    end = next((j for j in range(start + 1, len(lines))
                if lines[j].strip() and not lines[j][0].isspace() and not lines[j].startswith("#")), len(lines))
    while start > 0 and (not lines[start - 1].strip() or lines[start - 1].startswith("#")):
        start -= 1
    return "".join(lines[:start] + lines[end:])


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
        echo_markers=_as_str_tuple(data.get("echo_markers"), f"{origin}: echo_markers"),
        source=_data_source(source), judging_spec=_judging(data.get("judging"), origin),
    )
    for prompt_class in recipe.classes:
        if not recipe.templates_for(prompt_class):
            raise LatentrmError(f"{origin}: class '{prompt_class.name}' has no templates")
        if prompt_class.claim is not None and not recipe.claims:
            raise LatentrmError(f"{origin}: class '{prompt_class.name}' uses claims but the recipe has none")
    return recipe


DEFAULT_RECIPE = "knowledge_awareness"


@functools.lru_cache(maxsize=1)
def default_judging() -> Judging:
    """The flagship recipe's judging: what a stage reports when no recipe says otherwise."""
    judging = load_recipe(DEFAULT_RECIPE).judging_spec
    assert judging is not None, f"the shipped {DEFAULT_RECIPE} recipe declares its judging"
    return judging


def _builtin_files() -> dict[str, Any]:
    folder = resources.files("latentrm.data").joinpath(RECIPE_DIR)
    return {f.name[: -len(".yaml")]: f for f in folder.iterdir() if f.name.endswith(".yaml")}


def list_recipe_names() -> list[str]:
    """The shipped recipes' names."""
    return sorted(_builtin_files())


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
