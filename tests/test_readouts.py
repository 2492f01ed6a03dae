"""Read-outs beyond one token: `lastK`, `prompt`, `a+b` pooling; several layers side by side; the bilinear head;
the read-out sweep with entity-grouped cross-validation and a learning curve."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentrm.errors import LatentrmError
from latentrm.features import extract_features, get_hiddens, pooling_parts, stack_readout
from latentrm.models import render_for_scoring

PROMPTS = ["Who is Dr. Ola Vintersen?", "Tell me about Marie Curie and her work on radioactivity."]
COMPLETIONS = ["I'm not familiar with that name at all.", "She was a physicist and chemist who won two Nobel prizes."]


def _full_states(backbone, text, layer):
    enc = backbone.tokenizer(text.text, add_special_tokens=False, return_offsets_mapping=True)
    start = next(i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > text.completion_start)
    with torch.no_grad():
        states = backbone.model(torch.tensor([enc["input_ids"]]), output_hidden_states=True).hidden_states[layer][0]
    return states, start


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_prompt_and_last_k_read_the_right_tokens_under_padding(tiny_backbone, padding_side):
    tok = tiny_backbone.tokenizer
    texts = [render_for_scoring(tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS)]
    both = get_hiddens(tiny_backbone.model, tok, texts, [2], "prompt+last3", batch_size=8,
                       padding_side=padding_side)[2]
    hidden = tiny_backbone.hidden_size
    assert both.shape == (2, 2 * hidden)
    for row, text in enumerate(texts):
        states, start = _full_states(tiny_backbone, text, 2)
        torch.testing.assert_close(both[row, :hidden], states[start - 1], atol=1e-5, rtol=1e-4)  # end of prompt
        torch.testing.assert_close(both[row, hidden:], states[-3:].mean(0), atol=1e-5, rtol=1e-4)  # last 3 tokens
    last1 = get_hiddens(tiny_backbone.model, tok, texts, [2], "last1")[2]
    torch.testing.assert_close(last1, get_hiddens(tiny_backbone.model, tok, texts, [2], "last")[2])


def test_the_prompt_state_is_the_same_for_any_completion(tiny_backbone):
    tok = tiny_backbone.tokenizer
    texts = [render_for_scoring(tok, PROMPTS[0], c) for c in COMPLETIONS]
    prompt = get_hiddens(tiny_backbone.model, tok, texts, [1], "prompt")[1]
    torch.testing.assert_close(prompt[0], prompt[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("spec, message", [
    ("first", "not valid"), ("last0", "not valid"), ("mean+mean", "repeats"), ("", "not valid")])
def test_bad_pooling_specs_are_one_line_errors(spec, message):
    with pytest.raises(LatentrmError, match=message):
        pooling_parts(spec)


def test_a_joined_read_out_caches_each_part_and_reuses_it(tiny_backbone, tmp_path):
    joined = extract_features(tiny_backbone, PROMPTS, COMPLETIONS, [1, 2], "prompt+mean", cache_dir=tmp_path)

    def must_not_load():
        raise AssertionError("the model was loaded on a cache hit")

    options = {"tokenizer": tiny_backbone.tokenizer, "revision": tiny_backbone.revision,
               "dtype": tiny_backbone.dtype_name, "num_layers": tiny_backbone.num_layers, "cache_dir": tmp_path}
    mean = extract_features(must_not_load, PROMPTS, COMPLETIONS, [2], "mean", **options)  # a part on its own
    np.testing.assert_array_equal(joined[2][:, tiny_backbone.hidden_size:], mean[2])
    swapped = extract_features(must_not_load, PROMPTS, COMPLETIONS, [1], "mean+prompt", **options)
    np.testing.assert_array_equal(swapped[1][:, :tiny_backbone.hidden_size], joined[1][:, tiny_backbone.hidden_size:])


def test_stack_readout_is_part_major():
    a = {1: np.array([[1, 2, 3, 4]]), 2: np.array([[5, 6, 7, 8]])}  # two parts of width 2 per layer
    assert stack_readout(a, [1, 2], parts=2).tolist() == [[1, 2, 5, 6, 3, 4, 7, 8]]
    assert stack_readout(a, [2, 1], parts=1).tolist() == [[5, 6, 7, 8, 1, 2, 3, 4]]
    with pytest.raises(LatentrmError, match="layer"):
        stack_readout(a, [3])


def test_bilinear_head_learns_an_interaction_a_linear_head_cannot():
    """The reward of a completion direction flips with a prompt bit: XOR-like, as the polarity flip makes it."""
    from latentrm.rm.train import TrainConfig, score_array, train_head

    rng = np.random.default_rng(0)
    n, dim = 1200, 8

    def sample():
        known = rng.choice([-1.0, 1.0], size=n)  # prompt state: does the model know the name
        prompt = rng.normal(size=(n, dim)) * 0.3
        prompt[:, 0] += known
        hedge, answer = rng.normal(size=(n, dim)) * 0.3, rng.normal(size=(n, dim)) * 0.3
        hedge[:, 0] += 1.0  # direction 0 of the completion = "this is a hedge"
        answer[:, 0] -= 1.0
        chosen = np.where((known < 0)[:, None], hedge, answer)  # hedge is preferred exactly when unknown
        rejected = np.where((known < 0)[:, None], answer, hedge)
        return (np.concatenate([prompt, chosen], 1).astype(np.float32),
                np.concatenate([prompt, rejected], 1).astype(np.float32))

    (train_c, train_r), (test_c, test_r) = sample(), sample()
    accuracy = {}
    for head in ("linear", "bilinear"):
        result = train_head(train_c, train_r, config=TrainConfig(head=head, epochs=200))
        accuracy[head] = float((score_array(result.head, test_c) > score_array(result.head, test_r)).mean())
    assert accuracy["bilinear"] > 0.95 and accuracy["linear"] < 0.7, accuracy


def test_bilinear_head_needs_two_halves():
    from latentrm.rm.heads import make_head

    with pytest.raises(LatentrmError, match="odd"):
        make_head("bilinear", 7)


def test_entity_folds_keep_an_entity_together_and_are_stable():
    import pandas as pd

    from latentrm.rm.sweep import entity_folds

    frame = pd.DataFrame({"entity_id": [f"e{i // 3}" for i in range(30)]})
    folds = entity_folds(frame, 4)
    assert all(len(set(folds[frame["entity_id"] == e])) == 1 for e in frame["entity_id"].unique())
    assert sorted(set(folds)) == [0, 1, 2, 3]
    assert (entity_folds(frame.iloc[::-1].reset_index(drop=True), 4)[::-1] == folds).all()  # order does not matter
    with pytest.raises(LatentrmError, match="at least 40 entities"):
        entity_folds(frame, 40)


def test_candidates_pair_bilinear_only_with_prompt_read_outs():
    from latentrm.rm.sweep import candidates, parse_layer_specs

    specs = parse_layer_specs("2,1+2")
    assert specs == [(2,), (1, 2)]
    got = candidates(specs[:1], ["last", "prompt+mean"], ["mlp", "bilinear"])
    assert got == [((2,), "last", "mlp"), ((2,), "prompt+mean", "mlp"), ((2,), "prompt+mean", "bilinear")]
    with pytest.raises(LatentrmError, match="prompt\\+mean"):
        candidates(specs, ["last"], ["bilinear"])
    with pytest.raises(LatentrmError, match="'x'"):
        parse_layer_specs("2,x")


def test_sweep_over_read_outs_chooses_by_cv_and_trains_the_choice(tiny_model_dir, tmp_path, run_cli, person_pairs):
    pairs = person_pairs(40)
    code, out, err = run_cli(["rm", "sweep", "--pairs", str(pairs), "--run-dir", str(tmp_path), "--model",
                              str(tiny_model_dir), "--layers", "1,1+2", "--pooling", "last,prompt+mean",
                              "--head", "linear,bilinear", "--cv", "3", "--curve", "0.5,1"])
    assert code == 0, err
    sweep = json.loads((tmp_path / "rm_sweep" / "sweep.json").read_text())
    keys = [(tuple(r["layers"]), r["pooling"], r["head"]) for r in sweep["layers"]]
    assert keys == [((1,), "last", "linear"), ((1,), "prompt+mean", "linear"), ((1,), "prompt+mean", "bilinear"),
                    ((1, 2), "last", "linear"), ((1, 2), "prompt+mean", "linear"),
                    ((1, 2), "prompt+mean", "bilinear")]
    assert sweep["chosen_on"] == "3-fold cv"
    best = max(sweep["layers"], key=lambda r: r["cv_accuracy"])
    assert (sweep["best_layers"], sweep["best_pooling"], sweep["best_head"]) == (
        best["layers"], best["pooling"], best["head"])
    assert sweep["val_test_gap"] == pytest.approx(best["val_accuracy"] - best["test_accuracy"])
    assert [p["share"] for p in sweep["learning_curve"]] == [0.5, 1.0]
    assert sweep["learning_curve"][0]["n_train"] < sweep["learning_curve"][1]["n_train"] == 24
    assert "chosen by 3-fold cv" in out and "learning curve" in out
    # one forward: each base read-out cached once, holding both layers
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*/manifest.json")]
    assert sorted(m["pooling"] for m in manifests) == ["last", "mean", "prompt"]
    assert all(m["layers"] == [1, 2] for m in manifests)


def test_a_model_reading_two_layers_and_two_parts_scores_as_trained(tiny_model_dir, tmp_path, run_cli, person_pairs):
    from latentrm.rm.model import LatentRewardModel

    pairs = person_pairs(40)
    code, _, err = run_cli(["rm", "train", "--pairs", str(pairs), "--run-dir", str(tmp_path), "--model",
                            str(tiny_model_dir), "--layer", "1+2", "--pooling", "prompt+mean", "--head", "bilinear",
                            "--epochs", "5"])
    assert code == 0, err
    meta = json.loads((tmp_path / "rm" / "rm.json").read_text())
    assert (meta["layer"], meta["layers"], meta["pooling"]) == (2, [1, 2], "prompt+mean")
    rm = LatentRewardModel.load(tmp_path / "rm")
    assert rm.features(["Who is person 1?"], ["I am not familiar with person 1."]).shape == (
        1, 4 * rm.backbone.hidden_size)
    # the saved model reproduces the training-time metrics from text
    from latentrm.rm.stage import evaluate

    train_acc = meta["metrics"]["train"]["overall"]["accuracy"]
    import pandas as pd

    frame = pd.read_json(pairs, lines=True)
    assert evaluate(tmp_path / "rm", pairs, split="train")["overall"]["accuracy"] == pytest.approx(train_acc)
    assert len(frame) == 40


@pytest.mark.parametrize("argv, message", [
    (["--pooling", "first"], "--pooling: pooling 'first' is not valid"),
    (["--cv", "1"], "--cv 1"),
    (["--curve", "0,1"], "--curve"),
    (["--layers", "1+x"], "'1+x'"),
])
def test_sweep_bad_options_are_one_line_errors(tmp_path, run_cli, argv, message, person_pairs):
    pairs = person_pairs(40)
    code, _, err = run_cli(["rm", "sweep", "--pairs", str(pairs), "--run-dir", str(tmp_path), *argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def _judged(path, flip: bool = False):
    """A judged.jsonl of 40 new people (not in the pairs): the hedge wanted for made-up ones, the answer for real
    ones, as `rm onpolicy` writes it; `flip` swaps the sides (a policy whose judge disagrees with the pairs)."""
    rows = []
    for i in range(40, 80):
        fake = i % 2 == 1
        hedge, answer = f"I am not familiar with person {i}.", f"Person {i} is a chemist in Lyon."
        good, bad = (hedge, answer) if fake else (answer, hedge)
        if flip:
            good, bad = bad, good
        for text, side in ((good, "wanted"), (bad, "unwanted")):
            rows.append({"prompt_id": f"q{i}", "prompt": f"Who is person {i}?", "completion": text,
                         "class": "fake" if fake else "real", "label": "x", "side": side, "reward": 0.0})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_sweep_selects_by_on_policy_auroc_on_one_half_and_reports_the_other(tiny_model_dir, tmp_path, run_cli,
                                                                            person_pairs):
    pairs = person_pairs(40)
    argv = ["rm", "sweep", "--pairs", str(pairs), "--model", str(tiny_model_dir), "--layers", "1,2",
            "--pooling", "last,mean", "--head", "linear", "--curve", ""]
    code, out, err = run_cli([*argv, "--run-dir", str(tmp_path / "a"), "--onpolicy", str(_judged(tmp_path / "j.jsonl"))])
    assert code == 0, err
    sweep = json.loads((tmp_path / "a" / "rm_sweep" / "sweep.json").read_text())
    assert sweep["chosen_on"] == "val"  # given --onpolicy alone, the columns are shown and pairs choose
    counts = sweep["onpolicy"]["counts"]
    assert sum(c["wanted"] for half in counts.values() for c in half.values()) == 40
    assert all(0.0 <= r["onpolicy_select_auroc"] <= 1.0 and set(r["onpolicy_by_class"]["report"]) == {"fake", "real"}
               for r in sweep["layers"])
    assert "on-policy AUROC on the report half" in out
    # sides flipped: the on-policy choice is the candidate that ranks the flipped sides best, on the select half
    code, out, err = run_cli([*argv, "--run-dir", str(tmp_path / "b"), "--select", "onpolicy", "--onpolicy",
                              str(_judged(tmp_path / "flipped.jsonl", flip=True))])
    assert code == 0, err
    flipped = json.loads((tmp_path / "b" / "rm_sweep" / "sweep.json").read_text())
    assert flipped["chosen_on"] == "on-policy within-prompt AUROC, weakest class (select half)"
    best = max(flipped["layers"], key=lambda r: r["onpolicy_select_auroc"])
    assert (flipped["best_layers"], flipped["best_pooling"]) == (best["layers"], best["pooling"])
    for r, a in zip(flipped["layers"], sweep["layers"]):  # a flip mirrors every class's AUROC, pooled and within
        for name, c in r["onpolicy_by_class"]["report"].items():
            before = a["onpolicy_by_class"]["report"][name]
            assert c["within"] == pytest.approx(1 - before["within"], abs=1e-9)
            assert c["pooled"] == pytest.approx(1 - before["pooled"], abs=1e-9)
        assert r["onpolicy_report_auroc"] == pytest.approx(min(c["within"] for c in
                                                               r["onpolicy_by_class"]["report"].values()))
    assert "the choice vs the pair metric's choice" in out
    one_sided = tmp_path / "one.jsonl"  # no class with 5 wanted and 5 unwanted on a half: the pairs choose, and say so
    one_sided.write_text("".join(line for line in (tmp_path / "j.jsonl").read_text().splitlines(keepends=True)
                                 if '"wanted"' in line or '"q40"' in line))
    code, out, err = run_cli([*argv, "--run-dir", str(tmp_path / "c"), "--select", "onpolicy", "--onpolicy",
                              str(one_sided)])
    assert code == 0, err
    fallback = json.loads((tmp_path / "c" / "rm_sweep" / "sweep.json").read_text())
    assert fallback["chosen_on"].startswith("val (no class has 5+ wanted and unwanted samples from 3+ prompts")


@pytest.mark.parametrize("argv, message", [
    (["--select", "onpolicy"], "--select onpolicy needs --onpolicy judged.jsonl"),
    (["--select", "banana"], "--select 'banana': use pairs or onpolicy"),
    (["--onpolicy", "no-such.jsonl"], "--onpolicy no-such.jsonl: no such file"),
])
def test_sweep_on_policy_bad_options_are_one_line_errors(tmp_path, run_cli, argv, message, person_pairs):
    pairs = person_pairs(40)
    code, _, err = run_cli(["rm", "sweep", "--pairs", str(pairs), "--run-dir", str(tmp_path), *argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_judged_file_with_a_torn_line_names_the_line(tmp_path):
    from latentrm.rm.onpolicy_select import load_judged

    path = _judged(tmp_path / "j.jsonl")
    path.write_text(path.read_text() + '{"prompt_id": "q1", "prom')
    with pytest.raises(LatentrmError, match=r"j.jsonl:81: not a JSON line"):
        load_judged(path)
