"""`data build --policy` (every variant sampled from a checkpoint) and the right_vs_wrong contrast."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from latentrm.data.build import BuildConfig, make_prompts, make_requests, run, select_entities
from latentrm.data.entities import builtin_entities
from latentrm.data.perturb import wrong_grounding
from latentrm.data.recipes import load_recipe
from latentrm.errors import LatentrmError
from latentrm.models import resolve_model
from latentrm.pairs import load_pairs


def _config(tmp_path: Path, **kw) -> BuildConfig:
    base = dict(out=str(tmp_path / "data"), real=("builtin",), n_real=8, n_fake=8, samples=2, backend="fake",
                progress=False, shard_size=8)
    base.update(kw)
    return BuildConfig(**base)


def _shards(config: BuildConfig) -> set[str]:
    return {p.name for p in (Path(config.out) / "shards").glob("shard-*.parquet")}


def _build_json(config: BuildConfig) -> dict:
    return json.loads((Path(config.out) / "build.json").read_text())


@pytest.fixture(scope="module")
def other_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model's architecture with other random weights (seed 1)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-llama-other")
    LlamaForCausalLM(LlamaConfig.from_pretrained(tiny_model_dir)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- --policy


def test_policy_samples_from_the_checkpoint(tmp_path, tiny_model_dir, other_model_dir):
    """A real transformers build from each of two checkpoints: recorded, keyed and sampled per checkpoint."""
    builds = {}
    for folder in (tiny_model_dir, other_model_dir):
        config = _config(tmp_path / folder.name, backend="transformers", policy=str(folder), n_real=2, n_fake=2,
                         samples=1, max_new_tokens=8, backend_options={"device": "cpu", "dtype": "float32"})
        pairs = load_pairs(run(config))
        generations = pd.read_parquet(Path(config.out) / "generations.parquet")
        identity = f"{folder}@{resolve_model(str(folder)).revision}"
        assert set(generations["generator"]) == {identity} and set(pairs["generator"]) == {identity}
        assert _build_json(config)["generator"] == identity
        builds[folder] = (_shards(config), generations.set_index("request_id")["continuation"])
    (keys_a, text_a), (keys_b, text_b) = builds.values()
    assert keys_a.isdisjoint(keys_b)  # the same plan from another policy never reuses a shard
    assert list(text_a.index) == list(text_b.index)  # the same requests ...
    assert (text_a != text_b).mean() > 0.5  # ... answered by other weights


def test_policy_enters_the_shard_keys_and_a_policy_build_resumes(tmp_path):
    policy_a, policy_b = tmp_path / "policy-a", tmp_path / "policy-b"
    for folder, width in ((policy_a, 64), (policy_b, 96)):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"hidden_size": width}))
    default = _config(tmp_path)
    run(default)
    base = _shards(default)
    with_a = BuildConfig(**{**default.__dict__, "policy": str(policy_a)})
    pairs = load_pairs(run(with_a))
    keys_a = _shards(with_a) - base
    identity = f"{policy_a}@{resolve_model(str(policy_a)).revision}"
    assert len(keys_a) == len(base) and set(pairs["generator"]) == {identity}
    with_b = BuildConfig(**{**default.__dict__, "policy": str(policy_b)})
    run(with_b)
    keys_b = _shards(with_b) - base - keys_a
    assert len(keys_b) == len(base)  # policy k never reuses policy k-1's shards
    # same folder, new weights (a later round written over it): a new revision, new shards
    (policy_a / "config.json").write_text(json.dumps({"hidden_size": 128}))
    run(with_a)
    assert _build_json(with_a)["generated_this_run"] > 0
    # and the default build is keyed as it always was: its shards are reused, nothing is generated
    run(default)
    assert _build_json(default)["generated_this_run"] == 0 and _shards(default) >= base


def test_bad_policy_folder_is_one_line_before_any_generation(tmp_path, run_cli):
    not_a_model = tmp_path / "checkpoint-7"
    not_a_model.mkdir()
    out = tmp_path / "data"
    code, _, err = run_cli(["data", "build", "--backend", "fake", "--real", "builtin", "--n-real", "4",
                            "--n-fake", "4", "--out", str(out), "--no-progress", "--policy", str(not_a_model)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: --policy:") and str(not_a_model) in err
    assert not (out / "shards").exists()  # nothing was generated
    with pytest.raises(LatentrmError, match="--backend transformers or vllm"):
        run(_config(tmp_path, backend="openai", policy="embedded"))


# --------------------------------------------------------------------------- the wrong-facts perturbation


def _people():
    entities = builtin_entities()
    return entities, [e.fields() for e in entities]


def test_perturbation_changes_years_field_and_institution_deterministically():
    entities, fields = _people()
    by_name = {e.name: (e, f) for e, f in zip(entities, fields, strict=True)}
    for seed in (0, 1, 2):
        wrong = {e.name: wrong_grounding(e.grounding, f, fields, random.Random(f"{seed}:{e.entity_id}"))
                 for e, f in zip(entities, fields, strict=True)}
        again = {e.name: wrong_grounding(e.grounding, f, fields, random.Random(f"{seed}:{e.entity_id}"))
                 for e, f in zip(entities, fields, strict=True)}
        assert wrong == again  # deterministic per seed
        assert all(text is not None and text != by_name[name][0].grounding for name, text in wrong.items())
        einstein, facts = by_name["Albert Einstein"]
        years = re.findall(r"\b1[0-9]{3}\b", einstein.grounding)
        moved = re.findall(r"\b1[0-9]{3}\b", wrong["Albert Einstein"])
        assert len(moved) == len(years) == 3
        shifts = {int(b) - int(a) for a, b in zip(years, moved, strict=True)}
        assert len(shifts) == 1 and 7 <= abs(shifts.pop()) <= 40  # one shift: a plausible, wrong chronology
        assert not re.search(r"\bphysicist\b|\bPhysics\b", wrong["Albert Einstein"])  # field swapped
        assert "theoretical" in wrong["Albert Einstein"]  # the rest of the text is kept
        institution_people = [n for n, (e, f) in by_name.items() if f.get("institution")
                              and f["institution"] in e.grounding]
        assert institution_people
        for name in institution_people:
            assert by_name[name][1]["institution"] not in wrong[name]
    first = [wrong_grounding(e.grounding, f, fields, random.Random(f"0:{e.entity_id}")) for e, f in
             zip(entities, fields, strict=True)]
    second = [wrong_grounding(e.grounding, f, fields, random.Random(f"1:{e.entity_id}")) for e, f in
              zip(entities, fields, strict=True)]
    assert sum(a != b for a, b in zip(first, second, strict=True)) > len(first) // 2  # another seed, other lies


def test_perturbation_never_returns_the_original_text():
    _, fields = _people()
    # nothing to change: no year, and the entity's facts are not in the text
    assert wrong_grounding("She studied moths in her garden.", {"field": "biology"}, fields,
                           random.Random(0)) is None
    assert wrong_grounding("", {}, fields, random.Random(0)) is None
    # only a year: the year moves
    assert wrong_grounding("Born in 1900.", {}, fields, random.Random(0)) != "Born in 1900."
    # the article follows a swapped nationality
    assert wrong_grounding("He was a French chemist.", {"nationality": "French"}, [{"nationality": "Austrian"}],
                           random.Random(0)) == "He was an Austrian chemist."
    # a recent year never moves into the future
    for seed in range(20):
        year = int(re.findall(r"\d{4}", wrong_grounding("Awarded in 2020.", {}, fields, random.Random(seed)))[0])
        assert year <= 2025 and year != 2020


# --------------------------------------------------------------------------- the right_vs_wrong contrast


def test_wrong_grounded_requests_carry_the_perturbed_notes(tmp_path):
    config = _config(tmp_path, contrasts=("right_vs_wrong",))
    recipe = load_recipe(config.recipe)
    prompts = make_prompts(recipe, select_entities(recipe, config), config)
    requests = make_requests(recipe, prompts, config)
    default = make_requests(recipe, prompts, BuildConfig(**{**config.__dict__, "contrasts": ()}))
    assert requests[: len(default)] == default  # extra requests come last: earlier shards keep their keys
    wrong = requests[len(default):]
    assert {r["variant"] for r in wrong} == {"wrong_grounded"} and len(wrong) == config.n_real
    by_prompt = {p["prompt_id"]: p for p in prompts}
    for request in wrong:
        system = request["messages"][0]["content"]
        grounding = by_prompt[request["prompt_id"]]["fields"]["grounding"]
        assert grounding not in system and system.startswith("Reference notes about")
        assert grounding in request["reference"] and request["side"] == "rejected"


def test_right_vs_wrong_pairs(tmp_path):
    default = _config(tmp_path)
    before = load_pairs(run(default))
    config = BuildConfig(**{**default.__dict__, "contrasts": ("right_vs_wrong",)})
    pairs = load_pairs(run(config))
    manifest = _build_json(config)
    assert manifest["generated_this_run"] == config.n_real * config.samples  # only the wrong_grounded ones
    assert set(pairs["variants"]) == {"hedge>plain", "grounded>false_hedge", "grounded>wrong_grounded"}
    wrong = pairs[pairs["variants"] == "grounded>wrong_grounded"]
    assert len(wrong) > 0 and set(wrong["subset"]) == {"real"}
    assert manifest["counts"]["pairs_by_variants"]["grounded>wrong_grounded"] == len(wrong)
    assert set(before["pair_id"]) <= set(pairs["pair_id"])  # the default contrasts are untouched
    # the stored prompt is the user question only: no notes, right or wrong
    prompts = pd.read_parquet(Path(config.out) / "prompts.parquet")
    groundings = [json.loads(f)["grounding"] for f in prompts.loc[prompts["subset"] == "real", "fields"]]
    for prompt in pairs["prompt"]:
        assert "Reference notes" not in prompt and not any(g[:40] in prompt for g in groundings)
    # the rejected side states a fact the true notes contradict; the chosen side is the grounded answer
    from latentrm.data.build import truth_text
    from latentrm.judges.grounding import contradictions

    truth = {row["prompt_id"]: truth_text(json.loads(row["fields"])) for _, row in prompts.iterrows()
             if row["subset"] == "real"}
    assert all(contradictions(r, truth[p]) for r, p in zip(wrong["rejected"], wrong["prompt_id"], strict=True))
    assert all(not contradictions(c, truth[p]) for c, p in zip(wrong["chosen"], wrong["prompt_id"], strict=True))
    # a wrong answer that contradicts nothing is dropped as off-behaviour
    generations = pd.read_parquet(Path(config.out) / "generations.parquet")
    wrong_generations = generations[generations["variant"] == "wrong_grounded"]
    for _, row in wrong_generations.iterrows():
        assert row["off_behaviour"] == (not contradictions(row["completion"], truth[row["prompt_id"]]))


def test_unknown_contrast_is_one_line(tmp_path, run_cli):
    with pytest.raises(LatentrmError, match="declares no contrast nope; it declares right_vs_wrong"):
        run(_config(tmp_path, contrasts=("nope",)))
    code, _, err = run_cli(["data", "build", "--backend", "fake", "--recipe", "sycophancy", "--out",
                            str(tmp_path / "s"), "--contrasts", "right_vs_wrong", "--no-progress"])
    assert code == 2 and "declares none" in err and len(err.strip().splitlines()) == 1


def test_cli_contrasts_option(tmp_path, run_cli):
    out = tmp_path / "cli"
    code, stdout, err = run_cli(["data", "build", "--backend", "fake", "--real", "builtin", "--n-real", "6",
                                 "--n-fake", "6", "--out", str(out), "--no-progress", "--contrasts",
                                 "right_vs_wrong"])
    assert code == 0, err
    assert "grounded>wrong_grounded" in stdout
    assert json.loads((out / "config.json").read_text())["config"]["contrasts"] == ["right_vs_wrong"]
    code, stdout, _ = run_cli(["data", "show", str(out / "pairs.parquet"), "--n", "1"])
    assert code == 0 and "grounded>false_hedge, grounded>wrong_grounded" in stdout
    shutil.rmtree(out)


def test_a_grounded_answer_that_misstates_a_fact_is_never_chosen(tmp_path):
    """The chosen side of right_vs_wrong is checked too: a backend whose grounded answers give a wrong birth year
    loses those pairs (the base contrast, grounded vs false hedge, is left alone)."""
    from latentrm.data.build import truth_text
    from latentrm.judges.grounding import contradictions

    frames = {}
    for wrong in (0, 1):
        config = _config(tmp_path / str(wrong), contrasts=("right_vs_wrong",),
                         backend_options={"wrong_every": wrong} if wrong else {})
        frames[wrong] = load_pairs(run(config))
        prompts = pd.read_parquet(Path(config.out) / "prompts.parquet")
        truth = {r["prompt_id"]: truth_text(json.loads(r["fields"])) for _, r in prompts.iterrows()
                 if r["subset"] == "real"}
        generations = pd.read_parquet(Path(config.out) / "generations.parquet")
        grounded = generations[generations["variant"] == "grounded"]
        wrong_chosen = sum(bool(contradictions(c, truth[p])) for c, p in zip(grounded["completion"],
                                                                           grounded["prompt_id"], strict=True))
        assert (wrong_chosen > len(grounded) // 2) == bool(wrong)  # the backend did misstate them
        rvw = frames[wrong][frames[wrong]["variants"] == "grounded>wrong_grounded"]
        assert not any(contradictions(c, truth[p]) for c, p in zip(rvw["chosen"], rvw["prompt_id"], strict=True))
    count = {w: int((f["variants"] == "grounded>wrong_grounded").sum()) for w, f in frames.items()}
    assert count[1] < count[0] // 2
    base = {w: int((f["variants"] == "grounded>false_hedge").sum()) for w, f in frames.items()}
    assert base[1] == base[0]


def test_a_policy_changed_past_its_first_megabyte_gets_another_revision(tiny_model_dir, tmp_path):
    """RL with `trainable_layers` changes only the top layers, which sit at the end of the weight file: the
    revision (what keys every eval, data build and check of a policy) must see them."""
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "policy"
    shutil.copytree(tiny_model_dir, copy)
    weights = next(copy.glob("*.safetensors"))
    assert weights.stat().st_size > 1 << 20
    tensors = load_file(str(weights))
    last = sorted(tensors)[-1]  # stored last
    tensors[last] = tensors[last] + np.float32(1.0)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert resolve_model(str(copy)).revision != resolve_model(str(tiny_model_dir)).revision
