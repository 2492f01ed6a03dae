"""`latentrm eval` sub-app: default command, judge-check, and the committed labelled set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latentrm.errors import LatentrmError
from latentrm.eval.check import judge_check, load_labelled
from latentrm.eval.cli import app
from latentrm.judges import LABELS

LABELLED = Path(__file__).parent / "data" / "judge_labelled.jsonl"
runner = CliRunner()


def test_labelled_set_is_big_enough_and_covers_every_label():
    rows = load_labelled(LABELLED)
    assert len(rows) >= 150
    counts = Counter(r["label"] for r in rows)
    for group, labels in LABELS.items():
        if group == "qa":  # short-answer labels have their own set, tests/data/reference_labelled.jsonl
            continue
        for label in labels:
            assert counts[label] >= 5, label
    assert {r["source"] for r in rows} >= {"embedded", "hand"}
    assert sum(r["source"] == "embedded" for r in rows) >= 50


def test_rules_judge_agreement_on_labelled_set():
    report = judge_check(LABELLED, ["rules"])
    result = report["judges"]["rules"]
    assert result["n"] == len(load_labelled(LABELLED))
    assert sum(sum(row.values()) for row in result["matrix"].values()) == result["n"]
    # The measured number is reported by `latentrm eval judge-check` (94.5% when this was written);
    # this guards against regressions.
    assert result["accuracy"] >= 0.90
    assert set(result["by_phase"]) == {"tuning", "fresh"}


def test_judge_check_command_prints_accuracy_and_matrix(tmp_path):
    out = tmp_path / "check.json"
    result = runner.invoke(app, ["judge-check", "--file", str(LABELLED), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rules: accuracy" in result.output and "gold (rows)" in result.output
    assert json.loads(out.read_text())["judges"]["rules"]["n"] >= 150


def test_judge_check_rejects_bad_labels(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "kind": "fake", "response": "r", "label": "answers_real"}) + "\n")
    result = runner.invoke(app, ["judge-check", "--file", str(bad)])
    assert isinstance(result.exception, LatentrmError)
    assert "not allowed for kind 'fake'" in str(result.exception)


def test_eval_without_model_prints_help():
    result = runner.invoke(app, [])
    assert result.exit_code == 0 and "--model" in result.output


@pytest.fixture
def small_set(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text(json.dumps({"question": "Who is Tobias Renwick?", "kind": "fake"}) + "\n"
                    + json.dumps({"question": "Who was Ada Lovelace?", "kind": "real"}) + "\n")
    return path


def test_eval_command_runs_tiny_model_and_prints_headline(tiny_model_dir, small_set, tmp_path):
    result = runner.invoke(app, ["--model", str(tiny_model_dir), "--set", str(small_set), "--out",
                                 str(tmp_path / "run"), "--max-new-tokens", "4", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    for label in ("refuses_fake", "fake_hedge", "fake_substantive", "answers_real"):
        assert label in result.output
    metrics = json.loads((tmp_path / "run" / "eval" / "small" / "metrics.json").read_text())
    assert metrics["n"] == 2


def test_eval_command_unknown_judge(small_set, tmp_path):
    result = runner.invoke(app, ["--model", "embedded", "--set", str(small_set), "--judge", "oracle",
                                 "--out", str(tmp_path)])
    assert isinstance(result.exception, LatentrmError) and "unknown judge" in str(result.exception)


def test_judge_check_finds_the_committed_set_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["judge-check"])
    assert result.exit_code == 0, result.output
    assert "rules: accuracy" in result.output


def test_eval_with_reference_judge_prints_the_three_way_split(tiny_model_dir, tmp_path):
    path = tmp_path / "my_qa.jsonl"
    path.write_text(json.dumps({"question": "What is the capital of Australia?", "kind": "qa",
                                "references": ["Canberra"]}) + "\n"
                    + json.dumps({"question": "What did Cleopatra eat on her 20th birthday?", "kind": "qa",
                                  "answerable": False}) + "\n")
    result = runner.invoke(app, ["--model", str(tiny_model_dir), "--set", str(path), "--judge", "reference",
                                 "--out", str(tmp_path / "run"), "--max-new-tokens", "4", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    for label in ("correct", "incorrect", "not_attempted", "precision", "f_score", "unanswerable_not_attempted"):
        assert label in result.output
    assert "refuses_fake" not in result.output  # no people in this set
    assert "(1/1)" in result.output or "(0/1)" in result.output  # k/n on every rate


def test_judge_check_picks_each_judges_own_labelled_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "check.json"
    result = runner.invoke(app, ["judge-check", "--judge", "reference", "--judge", "rules", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "reference: accuracy" in result.output and "reference_labelled.jsonl" in result.output
    assert "label not_attempted:" in result.output and "part heldout:" in result.output
    report = json.loads(out.read_text())["judges"]
    assert report["reference"]["file"].endswith("reference_labelled.jsonl")
    assert report["rules"]["file"].endswith("judge_labelled.jsonl")
