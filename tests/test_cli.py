"""CLI: bad input gets one line and a non-zero exit, no traceback; train/eval/score work end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from latentrm.cli import main

ROWS = [
    {"prompt": f"Who is person {i}?", "chosen": f"I am not familiar with person {i}." if i % 2 else f"Person {i} is a chemist.",
     "rejected": f"Person {i} is a chemist." if i % 2 else f"I am not familiar with person {i}.",
     "subset": "fake" if i % 2 else "real", "split": ["train", "train", "val", "test"][i % 4]}
    for i in range(24)
]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: [{k: v for k, v in r.items() if k != "chosen"} for r in rows], "missing column(s) chosen"),
    (lambda rows: rows[:3] + [{**rows[3], "rejected": "  "}] + rows[4:], "row 4 has an empty 'rejected'"),
    (lambda rows: rows[:1] + [{**rows[1], "split": "dev"}] + rows[2:], "row 2 has split 'dev'"),
])
def test_bad_pairs_give_one_line_errors(tmp_path, capsys, mutate, message):
    pairs = _write(tmp_path / "pairs.jsonl", mutate(ROWS))
    code, _, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(tmp_path)], capsys)
    assert code == 2
    assert message in err and "pairs.jsonl" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unreadable_and_missing_files(tmp_path, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{not json\n')
    code, _, err = _run(["rm", "train", "--pairs", str(broken)], capsys)
    assert code == 2 and "broken.jsonl:2" in err
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"not parquet at all")
    code, _, err = _run(["rm", "train", "--pairs", str(bad_parquet)], capsys)
    assert code == 2 and "cannot be read" in err
    code, _, err = _run(["rm", "train", "--pairs", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2 and "no such file" in err


def test_unavailable_hub_model_says_how_to_provide_it(tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    code, _, err = _run(["rm", "train", "--pairs", str(pairs), "--model", "nobody/not-a-model"], capsys)
    assert code == 2 and "not in the local Hugging Face cache" in err and "huggingface-cli download" in err


def test_train_eval_score_end_to_end(tiny_model_dir, tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    run = tmp_path / "run"
    code, out, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(run), "--model", str(tiny_model_dir),
                           "--layer", "2", "--epochs", "30"], capsys)
    assert code == 0, err
    assert "| subset" not in out and "accuracy" in out  # rich table header
    meta = json.loads((run / "rm" / "rm.json").read_text())
    assert meta["layer"] == 2 and set(meta["chosen_quantiles"]) == {"all", "fake", "real"}
    assert set(meta["metrics"]) == {"train", "val", "test"}
    # an identical second run is skipped
    code, out, _ = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(run), "--model", str(tiny_model_dir),
                         "--layer", "2", "--epochs", "30"], capsys)
    assert "up to date" in out
    code, out, _ = _run(["rm", "eval", "--rm", str(run / "rm"), "--pairs", str(pairs)], capsys)
    assert "overall" in out
    inputs = tmp_path / "score.jsonl"
    pd.DataFrame({"prompt": ["Who is X?"], "completion": ["I don't know X."]}).to_json(inputs, orient="records", lines=True)
    code, out, _ = _run(["rm", "score", "--rm", str(run / "rm"), "--input", str(inputs), "--out", str(tmp_path / "s.jsonl")], capsys)
    scored = pd.read_json(tmp_path / "s.jsonl", lines=True)
    assert "score" in scored.columns and len(scored) == 1
    code, _, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(run), "--model", str(tiny_model_dir),
                         "--layer", "7"], capsys)
    assert code == 2 and "layer 7 does not exist" in err


def test_ensemble_scores_carry_their_spread(tiny_model_dir, tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    run = tmp_path / "run"
    code, _, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(run), "--model", str(tiny_model_dir),
                         "--layer", "2", "--epochs", "10", "--ensemble", "3"], capsys)
    assert code == 0, err
    inputs = tmp_path / "score.jsonl"
    pd.DataFrame({"prompt": ["Who is X?", "Who is Y?"], "completion": ["I don't know X.", "Y was a chemist."]}).to_json(
        inputs, orient="records", lines=True)
    code, _, err = _run(["rm", "score", "--rm", str(run / "rm"), "--input", str(inputs), "--out",
                         str(tmp_path / "s.jsonl")], capsys)
    assert code == 0, err
    scored = pd.read_json(tmp_path / "s.jsonl", lines=True)
    assert {"score", "score_std"} <= set(scored.columns) and (scored["score_std"] > 0).all()
    code, out, _ = _run(["rm", "score", "--rm", str(run / "rm"), "--prompt", "Who is X?", "--completion",
                         "I don't know X."], capsys)
    mean, std = (float(x) for x in out.split("\t"))  # printed as: mean <tab> spread
    assert mean == pytest.approx(float(scored["score"][0]), abs=1e-4)
    assert std == pytest.approx(float(scored["score_std"][0]), abs=1e-4)


def test_sweep_reports_each_layer(tiny_model_dir, tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    code, out, err = _run(["rm", "sweep", "--pairs", str(pairs), "--run-dir", str(tmp_path), "--model", str(tiny_model_dir),
                           "--layers", "1,2,4", "--head", "linear,mlp"], capsys)
    assert code == 0, err
    sweep = json.loads((tmp_path / "rm_sweep" / "sweep.json").read_text())
    assert [(row["layer"], row["head"]) for row in sweep["layers"]] == [
        (1, "linear"), (1, "mlp"), (2, "linear"), (2, "mlp"), (4, "linear"), (4, "mlp")]
    assert sweep["chosen_on"] == "val"
    best = max(sweep["layers"], key=lambda row: row["val_accuracy"])
    assert (sweep["best_layer"], sweep["best_head"]) == (best["layer"], best["head"])
    assert all("test_accuracy" in row and row["n_val"] > 0 for row in sweep["layers"])
    # one extraction pass: one cache entry per text list holding all three layers
    manifests = list((tmp_path / "cache").glob("*/manifest.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["layers"] == [1, 2, 4]


def test_sweep_rejects_an_unknown_head(tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    code, _, err = _run(["rm", "sweep", "--pairs", str(pairs), "--run-dir", str(tmp_path), "--head", "linear,mpl"],
                        capsys)
    assert code == 2 and "mpl" in err and "projection_sum" in err and len(err.strip().splitlines()) == 1


def test_bad_ensemble_layers_get_a_one_line_error(tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    code, _, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(tmp_path), "--ensemble-mode", "layers",
                         "--ensemble-layers", "10,x"], capsys)
    assert code == 2 and "--ensemble-layers '10,x'" in err and len(err.strip().splitlines()) == 1


def test_help_is_fast():
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "latentrm.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "rm" in result.stdout
    assert "torch" not in subprocess.run(
        [sys.executable, "-c", "import sys, latentrm.cli; print([m for m in sys.modules if m.startswith('torch')][:1])"],
        capture_output=True, text=True).stdout.replace("[]", "")
    assert time.perf_counter() - start < 20  # generous on a loaded CI box; the real figure is ~0.5 s


def test_score_with_a_shaper_writes_the_shaped_reward_as_rl_computes_it(tiny_model_dir, tmp_path, capsys):
    from latentrm.rl.reward import ShapedReward
    from latentrm.rm.model import LatentRewardModel
    from latentrm.rm.shaping import get_shaper

    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    run = tmp_path / "run"
    code, _, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(run), "--model", str(tiny_model_dir),
                         "--layer", "2", "--epochs", "10"], capsys)
    assert code == 0, err
    inputs = tmp_path / "score.jsonl"
    rows = pd.DataFrame({"prompt": ["Who is X?", "Who is X?", "Who is Y?"],
                         "completion": ["I don't know X.", "X was a chemist.", "Y was a chemist."],
                         "subset": ["fake", "fake", "real"]})
    rows.to_json(inputs, orient="records", lines=True)
    code, _, err = _run(["rm", "score", "--rm", str(run / "rm"), "--input", str(inputs), "--out",
                         str(tmp_path / "s.jsonl"), "--shaper", "calibrated"], capsys)
    assert code == 0, err
    scored = pd.read_json(tmp_path / "s.jsonl", lines=True)
    model = LatentRewardModel.load(run / "rm")
    expected = ShapedReward(model, get_shaper("calibrated", model.meta))(
        list(rows["prompt"]), list(rows["completion"]), subset=list(rows["subset"]))
    assert scored["reward"].tolist() == pytest.approx(expected, abs=1e-6)
    rows.drop(columns=["subset"]).to_json(inputs, orient="records", lines=True)
    code, _, err = _run(["rm", "score", "--rm", str(run / "rm"), "--input", str(inputs), "--shaper", "calibrated"],
                        capsys)
    assert code == 2 and "'subset' column" in err
