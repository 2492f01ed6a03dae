"""RL prompts: the train split only, and the class mix of every batch."""

from __future__ import annotations

import pandas as pd
import pytest

from latentrm.errors import LatentrmError
from latentrm.rl.prompts import class_shares, ordered_prompts, train_prompts


def _pairs(n_fake: int = 30, n_real: int = 10) -> pd.DataFrame:
    rows = []
    for i in range(n_fake + n_real):
        subset = "fake" if i < n_fake else "real"
        for split in ("train", "train", "test"):  # two pairs per train prompt, one held out
            rows.append({"prompt": f"Who is {subset} person {i} ({split})?", "chosen": "a", "rejected": "b",
                         "subset": subset, "split": split, "entity_id": f"e{i}"})
    return pd.DataFrame(rows)


def test_train_prompts_are_the_distinct_user_turns_of_the_train_split():
    prompts = train_prompts(_pairs())
    assert len(prompts) == 40  # the duplicate train rows collapse; test rows never appear
    assert not prompts["question"].str.contains("test").any()
    assert prompts["prompt"][0] == [{"role": "user", "content": prompts["question"][0]}]


def test_balanced_mix_gives_every_batch_equal_class_shares():
    order = ordered_prompts(train_prompts(_pairs()), "balanced", n_batches=25, per_batch=4, seed=3)
    assert len(order) == 100
    assert all(share == {"fake": 0.5, "real": 0.5} for share in class_shares(list(order["subset"]), 4))
    # the minority class is walked in fresh permutations: each real prompt appears 5 times in 50 draws
    assert order[order["subset"] == "real"]["question"].value_counts().tolist() == [5] * 10


def test_balanced_mix_alternates_single_prompt_batches():
    order = ordered_prompts(train_prompts(_pairs()), "balanced", n_batches=10, per_batch=1)
    assert list(order["subset"]) == ["fake", "real"] * 5


def test_natural_mix_keeps_the_file_share_or_the_one_asked_for():
    prompts = train_prompts(_pairs(n_fake=20, n_real=20))
    natural = ordered_prompts(prompts, "natural", n_batches=500, per_batch=4, seed=1)
    assert abs((natural["subset"] == "fake").mean() - 0.5) < 0.05
    skewed = ordered_prompts(prompts, "natural", n_batches=500, per_batch=4, seed=1, fake_share=0.75)
    assert abs((skewed["subset"] == "fake").mean() - 0.75) < 0.04


def test_the_mix_is_a_pure_function_of_the_seed():
    prompts = train_prompts(_pairs())
    first = ordered_prompts(prompts, "natural", 20, 2, seed=5, fake_share=0.75)
    assert first.equals(ordered_prompts(prompts, "natural", 20, 2, seed=5, fake_share=0.75))
    assert not first.equals(ordered_prompts(prompts, "natural", 20, 2, seed=6, fake_share=0.75))


def test_bad_prompt_sets_get_one_line_errors():
    pairs = _pairs()
    with pytest.raises(LatentrmError, match="no 'subset'"):
        train_prompts(pairs.drop(columns=["subset"]), where="p.jsonl")
    with pytest.raises(LatentrmError, match="no rows with split=train"):
        train_prompts(pairs[pairs["split"] == "test"])
    one_class = train_prompts(pairs[pairs["subset"] == "fake"])
    with pytest.raises(LatentrmError, match="at least two classes"):
        ordered_prompts(one_class, "balanced", 2, 2)
    with pytest.raises(LatentrmError, match="--mix 'even'"):
        ordered_prompts(one_class, "even", 2, 2)


def test_the_natural_mix_skews_the_recipes_own_class():
    """Sycophancy's classes are false_claim / true_claim: `fake_share` sets the false claims' share there, and a
    pairs file of another recipe is named in the error."""
    from latentrm.data.recipes import load_recipe
    from latentrm.rl.compare import dynamics_table

    assert load_recipe("knowledge_awareness").skewed_class == "fake"
    assert load_recipe("sycophancy").skewed_class == "false_claim"
    pairs = _pairs(n_fake=20, n_real=20).replace({"subset": {"fake": "false_claim", "real": "true_claim"}})
    prompts = train_prompts(pairs)
    skewed = ordered_prompts(prompts, "natural", n_batches=500, per_batch=4, seed=1, fake_share=0.75,
                             skewed="false_claim")
    assert abs((skewed["subset"] == "false_claim").mean() - 0.75) < 0.04
    with pytest.raises(LatentrmError, match="'fake' and one other.*--set recipe"):
        ordered_prompts(prompts, "natural", n_batches=5, per_batch=4, fake_share=0.75)
    assert "hedge (false_claim)" in dynamics_table([], "sycophancy")
    assert "hedge (fake)" in dynamics_table([], None)
