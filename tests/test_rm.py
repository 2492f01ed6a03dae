"""Reward heads, BT training, metrics, save/load and the TRL contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentrm.errors import LatentrmError
from latentrm.rm.heads import make_head
from latentrm.rm.metrics import expected_calibration_error, pair_metrics, score_quantiles
from latentrm.rm.model import LatentRewardModel
from latentrm.rm.train import TrainConfig, score_array, train_head


def _planted(n: int, dim: int, seed: int = 0, noise: float = 0.0):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    a, b = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    sa, sb = a @ direction + noise * rng.normal(size=n), b @ direction + noise * rng.normal(size=n)
    chosen = np.where((sa > sb)[:, None], a, b).astype(np.float32)
    rejected = np.where((sa > sb)[:, None], b, a).astype(np.float32)
    # a large-magnitude nuisance dimension, like the outlier dims of LLM residual streams
    chosen[:, 0] = 100 + 50 * rng.normal(size=n)
    rejected[:, 0] = 100 + 50 * rng.normal(size=n)
    return chosen, rejected


@pytest.mark.parametrize("head", ["linear", "projection_sum", "mlp"])
def test_bt_recovers_planted_direction(head):
    chosen, rejected = _planted(1600, 32)
    result = train_head(chosen[:1000], rejected[:1000], chosen[1000:1200], rejected[1000:1200],
                        TrainConfig(head=head, epochs=300))
    accuracy = (score_array(result.head, chosen[1200:]) > score_array(result.head, rejected[1200:])).mean()
    assert accuracy > 0.95


def test_training_is_deterministic():
    chosen, rejected = _planted(300, 16, seed=1)
    config = TrainConfig(head="projection_sum", epochs=20)
    first = train_head(chosen, rejected, config=config).head.state_dict()
    second = train_head(chosen, rejected, config=config).head.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_nan_features_are_rejected():
    chosen, rejected = _planted(50, 8)
    chosen[7, 3] = np.nan
    with pytest.raises(LatentrmError, match="pair 8"):
        train_head(chosen, rejected)


def test_unknown_head():
    with pytest.raises(LatentrmError, match="not one of"):
        make_head("transformer", 8)


def test_metrics_and_calibration():
    metrics = pair_metrics([2.0, 1.0, 0.5, -1.0], [0.0, 0.0, 1.0, 0.0], ["a", "a", "b", "b"])
    assert metrics["by_subset"]["a"]["accuracy"] == 1.0
    assert metrics["by_subset"]["b"]["accuracy"] == 0.0
    assert metrics["overall"]["margin"] == pytest.approx((2 + 1 - 0.5 - 1) / 4)
    # a perfectly calibrated BT model: outcomes drawn from sigmoid(gap)
    rng = np.random.default_rng(0)
    gaps = rng.normal(scale=2, size=20000)
    outcome = rng.random(20000) < 1 / (1 + np.exp(-gaps))
    calibrated = np.where(outcome, np.abs(gaps), -np.abs(gaps)) * np.sign(gaps) * np.sign(gaps)
    assert expected_calibration_error(np.where(outcome, gaps, -gaps)) < 0.02
    assert expected_calibration_error(5 * np.where(outcome, gaps, -gaps)) > 0.05
    assert calibrated.shape == gaps.shape
    quantiles = score_quantiles([1, 2, 3, 4], ["a", "a", "b", "b"])
    assert quantiles["a"]["values"][0] == 1 and quantiles["all"]["values"][-1] == 4


def _trained_rm(tiny_backbone):
    torch.manual_seed(0)
    head = make_head("projection_sum", tiny_backbone.hidden_size)
    head.standardize.fit(torch.randn(64, tiny_backbone.hidden_size))
    return LatentRewardModel.from_head(tiny_backbone, head, layer=2)


def test_save_load_round_trip_gives_identical_scores(tiny_backbone, tmp_path):
    rm = _trained_rm(tiny_backbone)
    prompts = ["Who is Ola Vintersen?", [{"role": "user", "content": "Who was Marie Curie?"}]]
    completions = ["I don't know that person.", [{"role": "assistant", "content": "A physicist."}]]
    before = rm.score(prompts, completions)
    rm.save(tmp_path / "rm")
    loaded = LatentRewardModel.load(tmp_path / "rm", backbone=tiny_backbone)
    assert loaded.score(prompts, completions) == before
    # TRL reward_funcs contract: extra keyword columns are accepted
    assert loaded(prompts=prompts, completions=completions, completion_ids=[[1], [2]], subset=["a", "b"]) == before
    # scoring alone equals scoring in a padded batch, up to float noise
    assert loaded.score(["Who was Marie Curie?"], ["A physicist."])[0] == pytest.approx(before[1], abs=1e-6)


def test_mismatch_errors(tiny_backbone, tmp_path):
    from safetensors.torch import load_file, save_file

    rm = _trained_rm(tiny_backbone)
    folder = rm.save(tmp_path / "rm")
    meta = json.loads((folder / "rm.json").read_text())
    meta["backbone"]["revision"] = "dir-sha256:other"
    (folder / "rm.json").write_text(json.dumps(meta))
    with pytest.raises(LatentrmError, match="revision"):
        LatentRewardModel.load(folder, backbone=tiny_backbone)
    meta["backbone"]["hidden_size"] = 4096
    (folder / "rm.json").write_text(json.dumps(meta))
    with pytest.raises(LatentrmError, match="hidden size 4096"):
        LatentRewardModel.load(folder, backbone=tiny_backbone)
    rm.save(folder)
    state = load_file(str(folder / "head.safetensors"))
    state["projection.weight"] = torch.zeros(3, 3)
    save_file(state, str(folder / "head.safetensors"))
    with pytest.raises(LatentrmError, match="shape"):
        LatentRewardModel.load(folder, backbone=tiny_backbone)
    (folder / "rm.json").unlink()
    with pytest.raises(LatentrmError, match="rm.json is missing"):
        LatentRewardModel.load(folder, backbone=tiny_backbone)
