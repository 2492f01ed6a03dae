"""The audit -> training loop: content-free edits of the training completions (rm/augment.py) and the edit term
of the BT loss (rm/train.py), through `rm train --edits / --from-audit`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from latentrm.audit.text import FILLER, HOPE
from latentrm.errors import LatentrmError
from latentrm.rm.augment import CONTENT_FREE, PADDING, SIGN_OFFS, edit_pairs, edits_from_audit, parse_edits
from latentrm.rm.train import TrainConfig, edit_term, score_array, train_head


def _frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"prompt": "Who is Ola Vint?", "chosen": "I don't know who that is.", "rejected": "Ola is a painter. She won.",
         "subset": "fake", "split": "train"},
        {"prompt": "Who is Ola Vint?", "chosen": "I don't know who that is.", "rejected": "Ola sings. Loudly.",
         "subset": "fake", "split": "train"},
        {"prompt": "Who was Marie Curie?", "chosen": "A physicist. She won two Nobel prizes.",
         "rejected": "I have never heard of her.", "subset": "real", "split": "train"},
        {"prompt": "Who was Ada Lovelace?", "chosen": "A mathematician.", "rejected": "No idea.",
         "subset": "real", "split": "test"},
    ])


def test_edit_pairs_cover_each_distinct_train_completion_once_per_edit():
    table = edit_pairs(_frame(), ("pad", "hope", "repeat", "hedge_prefix"))
    # distinct train completions: fake prompt 3 (the shared chosen once), real prompt 2; the test row is left out
    assert set(table["original"]) == {"I don't know who that is.", "Ola is a painter. She won.", "Ola sings. Loudly.",
                                      "A physicist. She won two Nobel prizes.", "I have never heard of her."}
    counts = table.groupby("edit").size().to_dict()
    assert counts == {"pad": 5, "hope": 5, "repeat": 5, "hedge_prefix": 2}  # hedge_prefix: real rows only
    assert set(table.loc[table["edit"] == "hedge_prefix", "subset"]) == {"real"}
    for row in table.itertuples():
        assert row.edited.startswith(row.original) or row.edit == "hedge_prefix"
        assert row.edited != row.original
    pads = table[table["edit"] == "pad"]
    assert all(e[len(o):].strip() in PADDING for o, e in zip(pads["original"], pads["edited"]))
    hopes = table[table["edit"] == "hope"]
    assert all(e[len(o):].strip() in SIGN_OFFS for o, e in zip(hopes["original"], hopes["edited"]))
    repeats = table[table["edit"] == "repeat"].set_index("original")["edited"]
    assert repeats["Ola is a painter. She won."] in ("Ola is a painter. She won. Ola is a painter.",
                                                     "Ola is a painter. She won. She won.")
    # the same table whatever the row order
    again = edit_pairs(_frame().iloc[::-1], ("pad", "hope", "repeat", "hedge_prefix"))
    key = ["edit", "original"]
    pd.testing.assert_frame_equal(table.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True))


def test_training_phrasings_are_not_the_audits_own():
    """The audit after retraining must measure a rule learned, not one string memorised."""
    assert FILLER not in PADDING and HOPE not in SIGN_OFFS
    assert set(CONTENT_FREE) == {"pad", "hope", "repeat", "bullets"}


def test_parse_edits_and_unknown_names():
    assert parse_edits("pad, hope,pad") == ("pad", "hope")
    assert parse_edits("all") == CONTENT_FREE
    with pytest.raises(LatentrmError, match="unknown edit"):
        parse_edits("pad,shout")


def _report(tmp_path, flags):
    effects = {edit: {"fake": {"flag": flag}, "real": {"flag": False}, "overall": {"effect": 0.1}}
               for edit, flag in flags.items()}
    report = {"probes": [{"name": "counterfactual", "verdict": "flag", "numbers": {"effects": effects}}]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    return tmp_path


def test_edits_from_audit_reads_the_flagged_edits(tmp_path):
    folder = _report(tmp_path, {"pad": True, "hope": False, "repeat": True, "bullets": False})
    assert edits_from_audit(folder) == ("pad", "repeat")
    assert edits_from_audit(folder / "report.json") == ("pad", "repeat")
    _report(tmp_path, {"pad": False})
    with pytest.raises(LatentrmError, match="flagged no edit"):
        edits_from_audit(tmp_path)
    with pytest.raises(LatentrmError, match="no report.json"):
        edits_from_audit(tmp_path / "missing")
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(LatentrmError, match="not an audit report"):
        edits_from_audit(tmp_path)


def test_edit_term_by_hand():
    original, edited = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    torch.testing.assert_close(edit_term(original, edited, "invariance"), torch.tensor([1.0, 4.0]))
    expected = torch.tensor([np.log1p(np.exp(-1.0)), np.log1p(np.exp(2.0))], dtype=torch.float32)
    torch.testing.assert_close(edit_term(original, edited, "pairs"), expected)


def _planted(seed=0, n=200, hidden=8):
    """Chosen differ from rejected along dim 0; an edit adds +3 along dim 1, which the pairs do not pin down
    (chosen and rejected both vary in dim 1 alike), so a plain BT head may pay for it."""
    rng = np.random.default_rng(seed)
    chosen = rng.normal(size=(n, hidden)).astype(np.float32)
    rejected = rng.normal(size=(n, hidden)).astype(np.float32)
    chosen[:, 0] += 2.0
    shared = rng.normal(size=n).astype(np.float32)
    chosen[:, 1] += shared + 1.0  # dim 1 correlates with "chosen" in the pairs: the head learns to pay for it
    rejected[:, 1] += shared
    original = rng.normal(size=(n, hidden)).astype(np.float32)
    edited = original.copy()
    edited[:, 1] += 3.0
    return chosen, rejected, original, edited


@pytest.mark.parametrize("kind", ["pairs", "invariance"])
def test_the_edit_term_stops_the_head_paying_for_the_edit(kind):
    chosen, rejected, original, edited = _planted()
    config = TrainConfig(head="linear", epochs=150, patience=150, seed=0)
    plain = train_head(chosen[:160], rejected[:160], chosen[160:], rejected[160:], config).head
    fixed = train_head(chosen[:160], rejected[:160], chosen[160:], rejected[160:],
                       TrainConfig(head="linear", epochs=150, patience=150, seed=0, edit_loss=kind, edit_weight=5.0),
                       edits=(original, edited)).head
    gain_plain = float(np.mean(score_array(plain, edited) - score_array(plain, original)))
    gain_fixed = float(np.mean(score_array(fixed, edited) - score_array(fixed, original)))
    assert gain_plain > 1.0  # the planted edit pays without the term
    if kind == "pairs":
        assert gain_fixed < 0  # the original now wins
    else:
        assert abs(gain_fixed) < 0.25 * gain_plain  # the edit barely moves the score
    # the main signal (dim 0) is still learned; `pairs` at weight 5 overshoots (the edit now costs), so it also
    # gives up the part of dim 1 the pairs really carried, and loses more accuracy than `invariance`
    acc = float(np.mean(score_array(fixed, chosen[160:]) > score_array(fixed, rejected[160:])))
    assert acc > (0.7 if kind == "pairs" else 0.85)


def _two_sentence_pairs(person_pairs):
    """Two sentences per answer, so `repeat` has a sentence to repeat; 18 train rows, 36 distinct completions."""
    return person_pairs(30, hedge="I am not familiar with person {i}. I cannot say.",
                        answer="Person {i} was a famous chemist. They won prizes.", fake_when=0)


def test_rm_train_with_edits_from_an_audit_records_them(tiny_model_dir, tmp_path, run_cli, person_pairs):
    pairs = _two_sentence_pairs(person_pairs)
    (tmp_path / "audit").mkdir()
    audit = _report(tmp_path / "audit", {"pad": True, "repeat": True})
    base = ["rm", "train", "--pairs", str(pairs), "--run-dir", str(tmp_path), "--model", str(tiny_model_dir),
            "--layer", "1", "--head", "linear", "--epochs", "5"]
    code, out, err = run_cli([*base, "--from-audit", str(audit), "--edit-loss", "invariance", "--out-name", "rm-e"])
    assert code == 0, err
    meta = json.loads((tmp_path / "rm-e" / "rm.json").read_text())
    assert meta["training"]["edits"] == ["pad", "repeat"]
    # 18 train rows, 2 distinct completions each (36), both edits
    assert meta["training"]["edit_pairs"] == {"pad": 36, "repeat": 36}
    assert meta["training"]["config"]["edit_loss"] == "invariance"
    assert "reward model saved to" in out and str(tmp_path / "rm-e") in out
    # a plain run keeps its folder and its key apart
    code, _, err = run_cli(base)
    assert code == 0, err
    assert "edits" not in json.loads((tmp_path / "rm" / "rm.json").read_text())["training"]


@pytest.mark.parametrize("argv, message", [
    (["--edits", "pad,shout"], "unknown edit(s) shout"),
    (["--edits", "pad", "--from-audit", "x"], "pass one"),
    (["--from-audit", "nowhere"], "no report.json"),
    (["--edit-loss", "huber"], "--edit-loss"),
    (["--edit-weight", "0"], "--edit-weight"),
    (["--out-name", "a/b"], "--out-name 'a/b'"),
    (["--edits", "pad", "--ensemble", "3"], "train one head"),
])
def test_edit_options_bad_input_is_one_line(tmp_path, run_cli, argv, message, person_pairs):
    pairs = _two_sentence_pairs(person_pairs)
    code, _, err = run_cli(["rm", "train", "--pairs", str(pairs), "--run-dir", str(tmp_path), *argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "rm").exists()
