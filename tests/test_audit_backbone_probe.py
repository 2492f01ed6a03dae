"""`latentrm rm probe`: the entity-grouped CV probe on planted features, bad input, and the tiny model end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentrm.audit.backbone_probe import group_folds, probe_features, resolve_probe_layers
from latentrm.errors import LatentrmError


def _planted(n: int = 200, dim: int = 32, seed: int = 0) -> tuple[dict[int, np.ndarray], np.ndarray, list[str]]:
    """Layer 5: the class is the sign of the projection on a planted direction, under unit noise (Bayes accuracy
    Phi(2) = 0.977); layer 7: pure noise."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    labels = rng.permutation(np.arange(n) % 2)
    planted = rng.normal(size=(n, dim)) + 2.0 * np.outer(2 * labels - 1, direction)
    noise = rng.normal(size=(n, dim))
    return {5: planted, 7: noise}, labels, [f"person-{i}" for i in range(n)]


def test_probe_separates_a_planted_direction_and_not_noise() -> None:
    features, labels, groups = _planted()
    rows = {row["layer"]: row for row in probe_features(features, labels, groups, folds=5, seed=0)}
    assert rows[5]["accuracy"] > 0.9 and rows[5]["auroc"] > 0.95
    assert rows[7]["accuracy"] < 0.7 and 0.3 < rows[7]["auroc"] < 0.7
    assert rows[5]["folds"] == 5 and rows[5]["accuracy_std"] >= 0.0
    assert abs(rows[5]["majority"] - max(labels.mean(), 1 - labels.mean())) < 0.1


def test_folds_keep_each_entity_whole_and_both_classes_in_each() -> None:
    labels = np.array([1] * 40 + [0] * 40)
    groups = [f"e{i // 2}" for i in range(80)]  # two rows per person
    fold_of = group_folds(labels, groups, folds=4, seed=1)
    for group in set(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        assert len({int(fold_of[i]) for i in rows}) == 1
    for k in range(4):
        assert set(labels[fold_of == k]) == {0, 1}
        assert (fold_of == k).sum() == 20


def test_layer_specs() -> None:
    assert resolve_probe_layers("every3", 30) == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert resolve_probe_layers("every3", 4) == [3, 4]
    assert resolve_probe_layers("all", 4) == [1, 2, 3, 4]
    assert resolve_probe_layers((4, 2, -1), 4) == [2, 4]
    with pytest.raises(LatentrmError, match="layer 9 does not exist"):
        resolve_probe_layers((9,), 4)


@pytest.mark.parametrize(("args", "message"), [
    (["--folds", "1"], "--folds 1: cross-validation needs at least 2 folds"),
    (["--n-real", "3"], "--n-real 3 is below --folds 5"),
    (["--n-fake", "2", "--folds", "3"], "--n-fake 2 is below --folds 3"),
    (["--layers", "3,x"], "--layers '3,x'"),
    (["--layers", "9"], "layer 9 does not exist: the backbone has 4 layers"),
    (["--template", "Who is he?"], "no {name} placeholder"),
])
def test_bad_input_is_one_line_before_the_model_loads(args, message, tmp_path, tiny_model_dir, run_cli,
                                                       monkeypatch) -> None:
    def no_load(*_args, **_kwargs):
        raise AssertionError("the backbone must not load on bad input")

    monkeypatch.setattr("latentrm.models.load_backbone", no_load)
    code, out, err = run_cli(["rm", "probe", "--model", str(tiny_model_dir), "--out", str(tmp_path / "probe"),
                              *args])
    assert code == 2
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and message in err
    assert not (tmp_path / "probe").exists()


def test_probe_command_on_the_tiny_model_writes_and_then_skips(tmp_path, tiny_model_dir, run_cli,
                                                               monkeypatch) -> None:
    out = tmp_path / "probe"
    argv = ["rm", "probe", "--model", str(tiny_model_dir), "--layers", "2,4", "--n-real", "12", "--n-fake", "12",
            "--folds", "3", "--device", "cpu", "--out", str(out)]
    code, stdout, err = run_cli(argv)
    assert code == 0, err
    report = json.loads((out / "probe.json").read_text())
    assert [row["layer"] for row in report["layers"]] == [2, 4]
    assert report["n_real"] == 12 and report["n_fake"] == 12 and report["folds"] == 3
    assert all(0.0 <= row["accuracy"] <= 1.0 and row["folds"] == 3 for row in report["layers"])
    assert report["best_layer"] in (2, 4)
    assert set(report["baselines"]) == {"surface", "embedding"}  # the name string alone and layer 0, same folds
    for row in report["layers"]:
        assert row["margin_surface"] == pytest.approx(row["auroc"] - report["baselines"]["surface"]["auroc"])
        assert row["margin_embedding"] == pytest.approx(row["auroc"] - report["baselines"]["embedding"]["auroc"])
    assert (out / "probe.png").stat().st_size > 5_000
    assert json.loads((out / "manifest.json").read_text())["stage"] == "probe"
    assert "Backbone probe" in stdout and "best layer" in stdout

    def no_compute(*_args, **_kwargs):
        raise AssertionError("a rerun with the same config must be skipped")

    monkeypatch.setattr("latentrm.audit.backbone_probe.compute", no_compute)
    code, _, err = run_cli(argv)
    assert code == 0, err
    with pytest.raises(AssertionError, match="must be skipped"):  # a new config is not skipped
        run_cli([*argv, "--seed", "1"])


def test_the_surface_baseline_separates_names_that_differ_only_in_surface() -> None:
    from latentrm.audit.backbone_probe import surface_features

    rng = np.random.default_rng(0)
    syllables_a, syllables_b = ["ka", "to", "mi", "ru"], ["sch", "eck", "berg", "mann"]
    names = [" ".join("".join(rng.choice(syl, 2)) for _ in range(2)).title()
             for syl in [syllables_a, syllables_b] * 40]
    labels = np.array([0, 1] * 40)
    rows = probe_features({-1: surface_features(names)}, labels, names, folds=4, seed=0)
    assert rows[0]["auroc"] > 0.95  # spelling alone gives the class away: a probe must beat this to mean more
    same = [f"Alex Morgan{i % 7}" for i in range(80)]  # one surface for both classes: nothing to find
    flat = probe_features({-1: surface_features(same)}, labels, [f"p{i}" for i in range(80)], folds=4, seed=0)
    assert flat[0]["auroc"] < 0.75


def test_matched_locales_follow_the_real_nationalities() -> None:
    from types import SimpleNamespace

    from latentrm.audit.backbone_probe import matched_locales

    people = [SimpleNamespace(facts={"nationality": "German"}, description="physicist"),
              SimpleNamespace(facts={}, description="Italian mathematician"),
              SimpleNamespace(facts={}, description="Martian")]
    assert matched_locales(people) == ["de_DE", "it_IT"]
