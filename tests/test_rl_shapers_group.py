"""The method's distribution-targeting shapers (quantile_match, density) on hand-computed numbers,
and what GRPO's per-group normalisation makes invariant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentrm.errors import LatentrmError
from latentrm.rm.shaping import get_shaper

LEVELS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _meta(fake=(0.0, 1.0, 2.0, 3.0, 4.0), real=(10.0, 11.0, 12.0, 13.0, 14.0)) -> dict:
    return {"chosen_quantiles": {"all": {"levels": LEVELS, "values": sorted(fake + real)[::2]},
                                 "fake": {"levels": LEVELS, "values": list(fake)},
                                 "real": {"levels": LEVELS, "values": list(real)}}}


def group_advantages(rewards: np.ndarray, groups: list[int]) -> np.ndarray:
    """GRPO's advantage: (r - group mean) / (group std + 1e-4), as TRL computes it with scale_rewards='group'."""
    out = np.empty_like(rewards)
    ids = np.asarray(groups)
    for g in set(groups):
        rows = ids == g
        values = rewards[rows]
        out[rows] = (values - values.mean()) / (values.std(ddof=1) + 1e-4)
    return out


def test_quantile_match_rewards_rank_k_by_its_distance_to_the_chosen_quantile():
    shaper = get_shaper("quantile_match", _meta())
    # group 0 (fake, G=4): sorted scores 0.5, 1.0, 2.0, 9.0 against Q(0.125)=0.5, Q(0.375)=1.5,
    # Q(0.625)=2.5, Q(0.875)=3.5 (linear between the stored quantiles)
    scores = np.array([9.0, 0.5, 2.0, 1.0, 12.0, 13.0])
    rewards = shaper(scores, ["fake"] * 4 + ["real"] * 2, groups=[0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(rewards[:4], [-5.5, -0.0, -0.5, -0.5])
    # group 1 (real, G=2): Q(0.25)=11, Q(0.75)=13
    np.testing.assert_allclose(rewards[4:], [-1.0, 0.0])
    assert shaper.needs_groups and shaper.describe() == {"name": "quantile_match", "params": {}}


def test_quantile_match_punishes_overshoot_as_much_as_falling_short():
    shaper = get_shaper("quantile_match", _meta())
    # a group of one is matched to the median (2.0): 1.0 below and 1.0 above cost the same
    below, above = shaper([1.0], ["fake"], groups=[0]), shaper([3.0], ["fake"], groups=[0])
    assert below[0] == pytest.approx(above[0]) == pytest.approx(-1.0)
    # far above every chosen score is worse than sitting at it: no reward for an unbounded maximum
    assert shaper([100.0], ["fake"], groups=[0])[0] < shaper([2.0], ["fake"], groups=[0])[0]


def test_quantile_match_without_groups_treats_each_item_alone_and_rejects_unknown_classes():
    shaper = get_shaper("quantile_match", _meta())
    np.testing.assert_allclose(shaper([2.0, 12.0], ["fake", "real"]), [0.0, 0.0])  # both at their median
    with pytest.raises(LatentrmError, match="subset 'nope'"):
        shaper([1.0], ["nope"], groups=[0])


def test_density_is_the_log_of_a_gaussian_kde_over_the_stored_quantiles():
    shaper = get_shaper("density", _meta())
    points = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    weights = np.array([0.125, 0.25, 0.25, 0.25, 0.125])  # midpoint mass of each stored level
    n_eff = 1.0 / (weights**2).sum()
    mean = (weights * points).sum()
    sd = math.sqrt((weights * (points - mean) ** 2).sum() / (1 - (weights**2).sum()))
    h = sd * n_eff ** (-1 / 5)  # Scott's factor times the weighted sd
    for s in (-1.0, 2.0, 5.5):
        by_hand = math.log(sum(w * math.exp(-0.5 * ((s - p) / h) ** 2) for w, p in zip(weights, points))
                           / (h * math.sqrt(2 * math.pi)))
        assert shaper([s], ["fake"])[0] == pytest.approx(by_hand, rel=1e-9)
    at_mode, far = shaper([2.0, 40.0], ["fake", "fake"])
    assert at_mode > far and np.isfinite(far)  # log-density never underflows to -inf


@pytest.mark.parametrize("name", ["raw", "calibrated", "quantile_match", "density"])
def test_rescaling_the_head_leaves_grpo_advantages_unchanged(name):
    """A head scaled by a > 0 and shifted by b (scores and stored quantiles alike) teaches GRPO the same thing."""
    a, b = 3.0, -7.0
    base, scaled = _meta(), {"chosen_quantiles": {
        k: {"levels": v["levels"], "values": [a * x + b for x in v["values"]]}
        for k, v in _meta()["chosen_quantiles"].items()}}
    scores = np.array([0.3, 1.7, 2.2, 3.9, 10.5, 11.0, 12.5, 13.2])
    subsets = ["fake"] * 4 + ["real"] * 4
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    before = group_advantages(get_shaper(name, base)(scores, subsets, groups=groups), groups)
    after = group_advantages(get_shaper(name, scaled)(a * scores + b, subsets, groups=groups), groups)
    np.testing.assert_allclose(before, after, atol=1e-3)


def test_a_positive_affine_map_of_any_reward_leaves_grpo_advantages_unchanged():
    rewards = np.array([0.1, 0.4, 0.35, 0.9])
    np.testing.assert_allclose(group_advantages(5 * rewards + 2, [0] * 4), group_advantages(rewards, [0] * 4),
                               atol=1e-3)
