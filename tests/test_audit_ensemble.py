"""Ensemble heads (rm/ensemble.py): mean/std scoring, save/load, training, and the `rm train --ensemble` stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from latentrm.errors import LatentrmError
from latentrm.rm.ensemble import EnsembleHead, feature_layers, member_scores, stack_layers, train_ensemble
from latentrm.rm.heads import head_from_config, make_head
from latentrm.rm.model import LatentRewardModel
from latentrm.rm.train import TrainConfig


def _members(hidden: int = 8, k: int = 3) -> list:
    torch.manual_seed(0)
    heads = []
    for _ in range(k):
        head = make_head("linear", hidden)
        torch.nn.init.normal_(head.linear.weight)
        heads.append(head.eval())
    return heads


def test_forward_is_the_mean_and_config_round_trips():
    head = EnsembleHead(8, members=_members()).eval()
    features = torch.randn(5, 8)  # [n, hidden]
    with torch.no_grad():
        per_head = head.forward_all(features)  # [K, n]
        assert per_head.shape == (3, 5)
        assert torch.allclose(head(features), per_head.mean(0))
        rebuilt = head_from_config(json.loads(json.dumps(head.config())))
        rebuilt.load_state_dict(head.state_dict())
        assert torch.allclose(rebuilt(features), head(features))
    with pytest.raises(LatentrmError, match="--ensemble K"):
        make_head("ensemble", 8)


def test_score_with_std_through_save_and_load(tmp_path, tiny_backbone):
    head = EnsembleHead(tiny_backbone.hidden_size, members=_members(tiny_backbone.hidden_size))
    rm = LatentRewardModel.from_head(tiny_backbone, head, layer=2)
    rm.save(tmp_path / "rm")
    loaded = LatentRewardModel.load(tmp_path / "rm", backbone=tiny_backbone)
    prompts, completions = ["Who is Ada Lovelace?", "Who is Zorblat?"], ["A mathematician.", "I don't know them."]
    mean, std = loaded.score_with_std(prompts, completions)
    per_head = member_scores(loaded.head, loaded.features(prompts, completions))  # [K, n]
    assert np.allclose(mean, loaded.score(prompts, completions), atol=1e-5)
    assert np.allclose(std, per_head.std(0, ddof=1), atol=1e-5) and (std > 0).all()
    single = LatentRewardModel.from_head(tiny_backbone, make_head("linear", tiny_backbone.hidden_size), layer=2)
    assert (single.score_with_std(prompts, completions)[1] == 0).all()


@pytest.mark.parametrize("mode", ["seed", "bootstrap"])
def test_train_ensemble_members_differ_and_learn(mode):
    rng = np.random.default_rng(0)
    direction = rng.normal(size=8)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    better = (a @ direction > b @ direction)[:, None]
    chosen, rejected = np.where(better, a, b).astype(np.float32), np.where(better, b, a).astype(np.float32)
    config = TrainConfig(head="linear", epochs=30, batch_size=64, lr=1e-2)
    result = train_ensemble(chosen[:200], rejected[:200], None, None, config, 3, mode)
    assert isinstance(result.head, EnsembleHead) and len(result.head.members) == 3
    weights = [m.linear.weight.detach() for m in result.head.members]
    assert not torch.allclose(weights[0], weights[1])
    per_head = member_scores(result.head, chosen[200:]) - member_scores(result.head, rejected[200:])  # [K, n]
    assert (per_head > 0).mean() > 0.8  # chance is 0.5
    with pytest.raises(LatentrmError, match="at least 2"):
        train_ensemble(chosen, rejected, None, None, TrainConfig(), 1)
    with pytest.raises(LatentrmError, match="seed, bootstrap, layers"):
        train_ensemble(chosen, rejected, None, None, TrainConfig(), 2, "depth")
    with pytest.raises(LatentrmError, match="at least 2 distinct layers"):
        train_ensemble(chosen, rejected, None, None, TrainConfig(), 2, "layers")


def test_stage_trains_an_ensemble(tmp_path, tiny_backbone):
    from latentrm.rm.stage import RMStageConfig, run

    rows = []
    for i in range(12):
        rows.append({"prompt": f"Who is person {i}?", "chosen": f"Person {i} was a chemist.",
                     "rejected": "I am not sure.", "subset": "real", "entity_id": f"e{i}",
                     "split": "train" if i < 8 else "val"})
    pairs = tmp_path / "pairs.jsonl"
    pd.DataFrame(rows).to_json(pairs, orient="records", lines=True)
    config = RMStageConfig(pairs=str(pairs), run_dir=str(tmp_path / "run"), model="tiny", layer=2,
                           train=TrainConfig(head="linear", epochs=5), ensemble=3, ensemble_mode="bootstrap")
    out = run(config, backbone=tiny_backbone)
    meta = json.loads((out / "rm.json").read_text())
    assert meta["head"]["type"] == "ensemble" and len(meta["head"]["members"]) == 3
    loaded = LatentRewardModel.load(out, backbone=tiny_backbone)
    mean, std = loaded.score_with_std(["Who is person 1?"], ["Person 1 was a chemist."])
    assert mean.shape == (1,) and std[0] > 0


def _two_layer_pairs(n: int = 300, hidden: int = 8):
    """Features of two layers `[n, 2 * hidden]`: the preference is planted in the second layer only."""
    rng = np.random.default_rng(0)
    direction = rng.normal(size=hidden)
    a, b = rng.normal(size=(n, 2 * hidden)), rng.normal(size=(n, 2 * hidden))
    better = (a[:, hidden:] @ direction > b[:, hidden:] @ direction)[:, None]
    return (np.where(better, a, b).astype(np.float32), np.where(better, b, a).astype(np.float32))


def test_layers_mode_trains_one_head_per_layer():
    chosen, rejected = _two_layer_pairs()
    config = TrainConfig(head="linear", epochs=30, batch_size=64, lr=1e-2)
    result = train_ensemble(chosen[:200], rejected[:200], None, None, config, 4, "layers", layers=[6, 12])
    head = result.head
    assert head.layers == [6, 12] and head.member_layers == [6, 12, 6, 12] and head.hidden_size == 8
    per_head = member_scores(head, chosen[200:]) - member_scores(head, rejected[200:])  # [K, n]
    accuracy = (per_head > 0).mean(1)
    assert accuracy[1] > 0.8 and accuracy[3] > 0.8  # the layer-12 heads found the planted direction
    assert accuracy[0] < 0.7 and accuracy[2] < 0.7  # the layer-6 heads read noise
    with torch.no_grad():  # each member reads only its own layer's slice
        features = torch.as_tensor(chosen[200:])
        assert torch.allclose(head.forward_all(features)[1], head.members[1](features[:, 8:]))
        assert torch.allclose(head.forward_all(features)[0], head.members[0](features[:, :8]))
        with pytest.raises(LatentrmError, match="needs 16 features"):
            head(features[:, :8])
        rebuilt = head_from_config(json.loads(json.dumps(head.config())))
        rebuilt.load_state_dict(head.state_dict())
        assert rebuilt.layers == [6, 12] and torch.allclose(rebuilt(features), head(features))
    assert feature_layers(head, 99) == [6, 12] and feature_layers(make_head("linear", 8), 7) == [7]
    with pytest.raises(LatentrmError, match="use --ensemble-mode layers"):
        train_ensemble(chosen, rejected, None, None, config, 2, "seed", layers=[6, 12])
    with pytest.raises(LatentrmError, match="cannot be 3 layers"):
        train_ensemble(chosen, rejected, None, None, config, 3, "layers", layers=[1, 2, 3])


def test_layer_ensemble_scores_stacked_hiddens(tiny_backbone):
    """What a scorer does with a layer ensemble: extract `feature_layers`, stack, score."""
    from latentrm.features import get_hiddens
    from latentrm.models import render_for_scoring

    hidden = tiny_backbone.hidden_size
    head = EnsembleHead(hidden, mode="layers", members=_members(hidden, 2), layers=[1, 2], member_layers=[1, 2])
    texts = [render_for_scoring(tiny_backbone.tokenizer, "Who is Ada?", c) for c in ("A mathematician.", "No idea.")]
    layers = feature_layers(head, 2)
    hiddens = get_hiddens(tiny_backbone.model, tiny_backbone.tokenizer, texts, layers, "last")
    stacked = stack_layers({k: v.numpy() for k, v in hiddens.items()}, layers)  # [n, 2 * hidden]
    per_head = member_scores(head, stacked)  # [K, n]
    with torch.no_grad():
        assert np.allclose(per_head[0], head.members[0](hiddens[1]).numpy(), atol=1e-5)
        assert np.allclose(per_head[1], head.members[1](hiddens[2]).numpy(), atol=1e-5)
    assert not np.allclose(hiddens[1].numpy(), hiddens[2].numpy())
    with pytest.raises(LatentrmError, match="no features for layer"):
        stack_layers({1: stacked}, [1, 3])


def test_stage_trains_a_layer_ensemble(tmp_path, tiny_backbone):
    from latentrm.audit.ensemble import rm_per_head
    from latentrm.rm.stage import RMStageConfig, evaluate, run

    rows = [{"prompt": f"Who is person {i}?", "chosen": f"Person {i} was a chemist.", "rejected": "I am not sure.",
             "subset": "real", "entity_id": f"e{i}", "split": "train" if i < 8 else "val"} for i in range(12)]
    pairs = tmp_path / "pairs.jsonl"
    pd.DataFrame(rows).to_json(pairs, orient="records", lines=True)
    config = RMStageConfig(pairs=str(pairs), run_dir=str(tmp_path / "run"), model="tiny",
                           train=TrainConfig(head="linear", epochs=5), ensemble_mode="layers", ensemble_layers=(1, 2))
    out = run(config, backbone=tiny_backbone)
    meta = json.loads((out / "rm.json").read_text())
    assert meta["head"]["layers"] == [1, 2] and meta["head"]["member_layers"] == [1, 2] and meta["layer"] == 2
    loaded = LatentRewardModel.load(out, backbone=tiny_backbone)
    prompts, completions = ["Who is person 1?", "Who is person 9?"], ["Person 1 was a chemist.", "I am not sure."]
    assert loaded.features(prompts, completions).shape == (2, 2 * tiny_backbone.hidden_size)
    mean, std = loaded.score_with_std(prompts, completions)
    assert np.allclose(mean, loaded.score(prompts, completions), atol=1e-5) and (std > 0).all()
    assert rm_per_head(loaded)(prompts, completions).shape == (2, 2)
    metrics = evaluate(out, pairs, run_dir=tmp_path / "run")
    assert metrics  # the eval path stacks the same layers
