"""The RL campaign: units that run once, skip when done, refuse another start, and render whatever finished."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from latentrm.cli import main
from latentrm.errors import LatentrmError
from test_rl_train import ROWS  # the same 48 people: even ones real, odd ones made up


@pytest.fixture(scope="module")
def quick_run(tiny_model_dir, tmp_path_factory):
    """A `latentrm run` folder as the campaign reads it: data/pairs.parquet, rm/, warm_start/baseline-sft/policy."""
    run = tmp_path_factory.mktemp("run")
    (run / "data").mkdir()
    pd.DataFrame(ROWS).to_parquet(run / "data" / "pairs.parquet")
    try:
        main(["rm", "train", "--pairs", str(run / "data" / "pairs.parquet"), "--run-dir", str(run), "--model",
              str(tiny_model_dir), "--layer", "2", "--epochs", "10"])
    except SystemExit as exc:
        assert not exc.code
    shutil.copytree(tiny_model_dir, run / "warm_start" / "baseline-sft" / "policy")
    return run


def _settings():
    from latentrm.rl.campaign import CampaignSettings

    return CampaignSettings(steps=2, save_steps=1, eval_n=2, eval_false_premise=2, eval_max_new_tokens=4,
                            eval_batch_size=8, check_n=2, check_false_premise=2, check_samples=2, threads=1,
                            rl_sets={"prompts_per_step": 2, "num_generations": 2, "max_completion_length": 4})


def test_a_unit_runs_once_is_skipped_when_done_and_refuses_another_start(quick_run, tiny_model_dir, tmp_path):
    from latentrm.rl.campaign import prepare, run_unit
    from latentrm.rl.campaign_table import finished_units, render

    results, work = tmp_path / "results", tmp_path / "work"
    prepare(quick_run, results, _settings(), base=str(tiny_model_dir), log=lambda *_: None)
    inputs = json.loads((results / "inputs" / "manifest.json").read_text())
    assert set(inputs["hashes"]) == {"pairs", "head", "start", "base"}
    eval_people = {json.loads(line)["entity"] for line in (results / "inputs" / "eval_heldout.jsonl").open()}
    check_people = {json.loads(line)["entity"] for line in (results / "inputs" / "check_heldout.jsonl").open()}
    assert eval_people and check_people and not eval_people & check_people

    out = run_unit(results, "calibrated-s0", work=work, log=lambda *_: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unit"]["arm"] == "calibrated" and manifest["hashes"] == inputs["hashes"]
    for name in ("metrics.jsonl", "summary.json", "eval/heldout/metrics.json", "eval/false_premise/metrics.json",
                 "onpolicy/onpolicy.json"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.safetensors"))  # never weights in the tracked folder
    stamp = (out / "manifest.json").stat().st_mtime_ns
    lines: list[str] = []
    run_unit(results, "calibrated-s0", work=work, log=lines.append)  # done: skipped, nothing rewritten
    assert "done" in lines[0] and (out / "manifest.json").stat().st_mtime_ns == stamp

    # part 2 of a chain continues from part 1's trained weights, and is its own row, not another seed
    with pytest.raises(LatentrmError, match="part 2 .calibrated-s0-p2. is not done"):
        run_unit(results, "calibrated-s0-p3", work=work, log=lambda *_: None)
    second = json.loads((run_unit(results, "calibrated-s0-p2", work=work, log=lambda *_: None)
                         / "manifest.json").read_text())
    assert second["unit"]["part"] == 2 and second["from"] == manifest["policy"]
    assert second["from_hash"] == manifest["policy_hash"] != second["policy_hash"]

    table = render(results).read_text()
    assert "| calibrated-s0 |" in table and "## RL arms, seeds pooled" in table
    assert f"| {2 * _settings().steps} (part 2) |" in table and "| calibrated (part 2) |" in table
    assert list(finished_units(results)) == ["calibrated-s0", "calibrated-s0-p2"]
    # part 1 redone: part 2 no longer continues from its weights, and the table says so
    redone = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**redone, "policy_hash": "f" * 16}))
    assert "chain parts calibrated-s0-p2 continue from weights" in render(results).read_text()
    (out / "manifest.json").write_text(json.dumps(redone))

    # a unit folder written by another campaign config is refused, not overwritten
    manifest["key"] = "0" * 16
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LatentrmError, match="written by another campaign config"):
        run_unit(results, "calibrated-s0", work=work, log=lambda *_: None)
    # a start policy whose weights changed is refused before anything runs
    weights = next((quick_run / "warm_start" / "baseline-sft" / "policy").glob("*.safetensors"))
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-8] + b"\0" * 8)
        with pytest.raises(LatentrmError, match="the start at .* hashes"):
            run_unit(results, "raw-s0", work=work, log=lambda *_: None)
        assert not (results / "raw-s0" / "manifest.json").exists()
    finally:
        weights.write_bytes(original)


@pytest.mark.parametrize("argv, message", [
    (["rl", "campaign", "unit", "banana"], "unit 'banana': use base, sft, bo8"),
    (["rl", "campaign", "unit", "raw-s0-p1"], "a chain's part 1 is 'raw-s0'; parts count from -p2"),
    (["rl", "campaign", "unit", "sft", "--results", "no-such-folder"], "no campaign here"),
    (["rl", "campaign", "prepare", "--run", "no-such-run"], "--run no-such-run: no such folder"),
])
def test_campaign_bad_input_is_one_line(run_cli, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(argv)
    assert code == 2 and message in err and "Traceback" not in err
