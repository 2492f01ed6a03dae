"""Reward shapers: registry, calibrated / capped / ensemble maths, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.errors import LatentrmError
from latentrm.rm.shaping import QuantileTable, available_shapers, get_shaper

LEVELS = [round(i / 100, 2) for i in range(101)]


def _meta() -> dict:
    # chosen scores uniform on [0, 2] overall, on [0, 1] for "fake" and [1, 3] for "real"
    return {"chosen_quantiles": {
        "all": {"levels": LEVELS, "values": [2 * q for q in LEVELS]},
        "fake": {"levels": LEVELS, "values": list(LEVELS)},
        "real": {"levels": LEVELS, "values": [1 + 2 * q for q in LEVELS]},
    }}


def test_registry_lists_the_four_shapers_and_rejects_unknown_names():
    assert {"raw", "calibrated", "capped", "ensemble"} <= set(available_shapers())
    with pytest.raises(LatentrmError, match="unknown reward shaper 'nope'"):
        get_shaper("nope", _meta())
    with pytest.raises(LatentrmError, match="has no parameter bogus"):
        get_shaper("calibrated", _meta(), bogus=1.0)
    with pytest.raises(LatentrmError, match="tau"):
        get_shaper("calibrated", _meta(), tau=0.0)


def test_raw_is_identity_and_records_its_description():
    shaper = get_shaper("raw")
    scores = np.array([-3.0, 0.5, 7.0])
    np.testing.assert_array_equal(shaper(scores, [None, "fake", "real"]), scores)
    assert shaper.describe() == {"name": "raw", "params": {}}


def test_calibrated_follows_the_chosen_cdf_per_subset_and_saturates_at_tau():
    shaper = get_shaper("calibrated", _meta(), tau=0.5)
    scores = np.array([0.25, 0.25, 0.5, 2.0, -1.0, 1.0, 1.5])
    subsets = ["fake", None, "fake", "real", "real", "real", "all"]
    rewards = shaper(scores, subsets)
    # fake: F(0.25)=0.25 -> 0.5 ; all: F(0.25)=0.125 -> 0.25 ; fake F(0.5)=0.5 -> 1 (the median)
    # real: F(2.0)=0.5 -> 1 ; below the lowest chosen score -> 0 ; F(1.0)=0 -> 0 ; all F(1.5)=0.75 -> capped at 1
    np.testing.assert_allclose(rewards, [0.5, 0.25, 1.0, 1.0, 0.0, 0.0, 1.0], atol=1e-9)
    assert shaper.describe() == {"name": "calibrated", "params": {"tau": 0.5}}
    full = get_shaper("calibrated", _meta(), tau=1.0)(np.array([1.5, 5.0]), [None, None])
    np.testing.assert_allclose(full, [0.75, 1.0])


def test_calibrated_is_monotone_and_bounded():
    shaper = get_shaper("calibrated", _meta())
    scores = np.linspace(-5, 5, 401)
    rewards = shaper(scores, ["real"] * len(scores))
    assert rewards.min() == 0.0 and rewards.max() == 1.0
    assert np.all(np.diff(rewards) >= 0)


def test_calibrated_handles_tied_quantiles():
    table = QuantileTable.from_meta({"levels": [0, 0.25, 0.5, 0.75, 1], "values": [0, 1, 1, 1, 2]}, "t")
    np.testing.assert_allclose(table.cdf(np.array([-1, 0.5, 1.0, 1.5, 2.0, 3])), [0, 0.125, 0.75, 0.875, 1, 1])


def test_unknown_subset_and_missing_quantiles_raise():
    shaper = get_shaper("calibrated", _meta())
    with pytest.raises(LatentrmError, match="subset 'martian'.*known: fake, real"):
        shaper(np.array([0.0]), ["martian"])
    with pytest.raises(LatentrmError, match="needs chosen_quantiles"):
        get_shaper("calibrated", {"chosen_quantiles": {}})
    with pytest.raises(LatentrmError, match="must not decrease"):
        get_shaper("capped", {"chosen_quantiles": {"all": {"levels": [0, 1], "values": [1, 0]}}})


def test_capped_clips_at_the_chosen_quantile():
    shaper = get_shaper("capped", _meta(), quantile=0.9)
    rewards = shaper(np.array([0.5, 5.0, 5.0, -2.0]), ["fake", "fake", "real", None])
    np.testing.assert_allclose(rewards, [0.5, 0.9, 2.8, -2.0])


def test_ensemble_is_pessimistic_and_needs_std():
    shaper = get_shaper("ensemble", {}, k=2.0)
    np.testing.assert_allclose(shaper(np.array([1.0, 1.0]), None, std=np.array([0.0, 0.25])), [1.0, 0.5])
    with pytest.raises(LatentrmError, match="needs the per-head std"):
        shaper(np.array([1.0]), [None])


def test_length_mismatch_is_an_error():
    with pytest.raises(LatentrmError, match="2 scores but 1 subsets"):
        get_shaper("raw")(np.array([1.0, 2.0]), ["fake"])


def test_shapers_say_whether_they_need_the_prompt_class():
    from latentrm.rm.shaping import SHAPERS, needs_subsets

    assert not needs_subsets("raw") and not needs_subsets("ensemble")
    assert needs_subsets("calibrated") and needs_subsets("quantile_match")
    assert set(available_shapers()) == set(SHAPERS.names())
    with pytest.raises(LatentrmError, match="--shaper"):
        needs_subsets("banana")
