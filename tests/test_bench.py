"""Smoke tests of the `bench/` scripts on the tiny random backbone: they run, and what they compare is sound.

Timings are never asserted; the floor's equivalence with `get_hiddens` and the scripts' plumbing are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(autouse=True)
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


def test_floor_gives_the_features_get_hiddens_reads(tiny_backbone, tokenizer):
    import torch
    from _common import padded_batches, run_floor, scoring_items, truncated_decoder

    from latentrm.features import decoder_layers, get_hiddens
    from latentrm.models import render_for_scoring

    items, _ = scoring_items(12)
    texts = [render_for_scoring(tokenizer, i.prompt, i.completion) for i in items]
    expected = get_hiddens(tiny_backbone.model, tokenizer, texts, [2], batch_size=5)[2]  # [12, hidden]
    floor = truncated_decoder(tiny_backbone.model, 2)
    assert len(decoder_layers(tiny_backbone.model)) == 4  # the caller's model keeps all its blocks
    batches = padded_batches(tokenizer, texts, 5)
    assert sorted(r for b in batches for r in b["rows"]) == list(range(12))
    for batch, hidden in zip(batches, run_floor(floor, batches, tiny_backbone.device), strict=True):
        last = batch["attention_mask"].sum(-1) - 1
        pooled = hidden[torch.arange(len(last)), last]
        torch.testing.assert_close(pooled, expected[torch.tensor(batch["rows"])], atol=1e-5, rtol=1e-5)


def test_scoring_items_crosses_prompts_only_when_short():
    from _common import scoring_items

    direct, crossed = scoring_items(20)
    assert crossed == 0 and len(direct) == 20
    pairs = [json.loads(line) for line in (BENCH.parent / "examples" / "pairs.jsonl").read_text().splitlines()]
    direct = 2 * len(pairs)  # each pair's chosen and rejected
    items, crossed = scoring_items(direct + 28)
    assert len(items) == direct + 28 and crossed == 28
    assert (items[1].prompt, items[1].completion) == (pairs[0]["prompt"], pairs[0]["rejected"])
    assert (items[direct].prompt, items[direct].completion) == (pairs[0]["prompt"], pairs[1]["chosen"])


def test_reward_cost_runs_all_methods(tiny_model_dir, capsys):
    import reward_cost

    results = reward_cost.main(["--model", str(tiny_model_dir), "--layer", "2", "--head", "linear", "--n", "8",
                                "--chunk", "4", "--batch-size", "4", "--judge-n", "2", "--judge-tokens", "2",
                                "--threads", "1"])
    out = capsys.readouterr().out
    assert set(results) == {"b/a", "c/a (2 tokens)", "a/floor"}
    assert all(value > 0 for value in results.values())
    assert "(c) LLM judge, 2-token verdict" in out and "goal >= 0.8 x 4/2 = 1.60x" in out


def test_pipeline_times_reads_run_json(tmp_path, capsys):
    import pipeline_times

    (tmp_path / "rl").mkdir()
    (tmp_path / "run.json").write_text(json.dumps({"name": "t", "stages": {
        "data": {"seconds": 30.0}, "rl": {"seconds": 60.0}, "report": {"seconds": 10.0}}}))
    (tmp_path / "rl" / "manifest.json").write_text(json.dumps({"stage": "rl", "seconds": 58.0}))
    (tmp_path / "rl" / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"kind": "train", "step": s, "step_time": t}) for s, t in ((1, 5.0), (2, 7.0))))
    rows = pipeline_times.main([str(tmp_path)])
    table = {row[0]: row for row in rows}
    assert table["rl"][1:4] == ["60.0", "60.0%", "58.0"]
    assert table["data"][3] == "-"  # no manifest: the column says so rather than inventing a number
    assert "step_time median 6.0 s" in table["rl"][4]
    assert "| rl | 60.0 |" in capsys.readouterr().out


def test_gpu_benchmark_skips_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the skip path is not taken")
    import gpu_qwen3_shape

    assert gpu_qwen3_shape.main([]) == {}
    assert capsys.readouterr().out.startswith("skip: no CUDA GPU available")


def test_rl_step_prints_one_row_per_variant(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import sys

    from latentrm.cli import main as cli

    rows = [{"prompt": f"Who is person {i}?", "chosen": f"I do not know person {i}." if i % 2 else f"Person {i}.",
             "rejected": f"Person {i}." if i % 2 else f"I do not know person {i}.", "subset": "fake" if i % 2
             else "real", "split": ["train", "train", "val", "test"][i % 4], "entity_id": f"e{i}"} for i in range(24)]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        cli(["rm", "train", "--pairs", str(pairs), "--run-dir", str(tmp_path), "--model", str(tiny_model_dir),
             "--layer", "2", "--epochs", "5"])
    except SystemExit as exc:
        assert not exc.code
    capsys.readouterr()
    import rl_step

    monkeypatch.setattr(sys, "argv", ["rl_step.py", "--pairs", str(pairs), "--rm", str(tmp_path / "rm"), "--steps",
                                      "2", "--set", f"policy={tiny_model_dir}", "--set", "num_generations=2",
                                      "--set", "max_completion_length=4", "--set", "threads=1", "--set", "trainable_layers=0",
                                      "--variant", "trainable_layers=1", "--variant",
                                      "trainable_layers=1,max_completion_length=2"])
    rl_step.main()
    out = capsys.readouterr().out
    assert "| before |" in out and "| trainable_layers=1 |" in out
    assert "| trainable_layers=1 max_completion_length=2 |" in out
    assert out.count("x of before (goal <= 0.5x") == 2


def test_data_build_bench_runs_both_launches_and_compares_their_pairs(tmp_path, capsys):
    import data_build

    assert data_build.main(["--backend", "fake", "--n", "4", "--samples", "1", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| 1 process x 2 threads |" in out and "| 2 processes x 1 thread |" in out and "ratio" in out
