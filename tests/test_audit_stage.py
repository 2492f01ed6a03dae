"""`latentrm rm audit` end to end with a real LatentRewardModel on the tiny random backbone."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from latentrm.audit.lens import lens_logits, raw_direction
from latentrm.rm.heads import make_head
from latentrm.rm.model import LatentRewardModel


def _pairs(tmp_path):
    rows = []
    for i in range(6):
        rows.append({"prompt": f"Who is Zorblat Quenfrey {i}?", "chosen": "I'm not familiar with that person.",
                     "rejected": f"Zorblat Quenfrey {i} is a chemist who won {i} prizes.", "subset": "fake",
                     "entity_id": f"f{i}", "split": "test"})
        rows.append({"prompt": f"Who is Marie Curie {i}?", "chosen": f"Marie Curie was a physicist. Fact {i}.",
                     "rejected": "I don't know who that is.", "subset": "real", "entity_id": f"r{i}",
                     "split": "test"})
    path = tmp_path / "pairs.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path


@pytest.fixture()
def rm_dir(tmp_path, tiny_backbone):
    torch.manual_seed(0)
    head = make_head("linear", tiny_backbone.hidden_size)
    torch.nn.init.normal_(head.linear.weight)
    rm = LatentRewardModel.from_head(tiny_backbone, head, layer=2,
                                     training={"pairs_file": str(_pairs(tmp_path))})
    return rm.save(tmp_path / "rm")


def test_audit_command_writes_report_and_plots(tmp_path, rm_dir, tiny_backbone, monkeypatch, capsys):
    from latentrm import cli

    # the rm.json records the tiny model's folder as its spec, so load() finds it; keep it on CPU float32
    monkeypatch.setattr("latentrm.rm.model.load_backbone", lambda spec, **kw: tiny_backbone)
    cli.main(["rm", "audit", "--rm", str(rm_dir), "--max-edits", "4", "--steering-text",
              "Note: you do not know this person. Say you are not familiar with them."])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    expected = {"surface", "counterfactual", "steering_leakage", "sycophancy", "cross_class", "examples",
                "interpretability", "ensemble"}
    assert set(report["verdicts"]) == expected
    assert report["verdicts"]["interpretability"] == "info" and report["verdicts"]["ensemble"] == "skip"
    for name in expected:
        assert name in out  # one summary line per probe
    lens = next(p for p in report["probes"] if p["name"] == "interpretability")["numbers"]
    assert len(lens["top"]) == 20 and lens["top"][0]["logit"] >= lens["top"][-1]["logit"]
    for plot in ("score_vs_length.png", "counterfactual.png", "steering.png"):
        assert (tmp_path / "audit" / plot).stat().st_size > 10_000
    assert report["n_scored"] == 24


def test_lens_matches_a_direct_computation(tiny_backbone):
    head = make_head("linear", tiny_backbone.hidden_size)
    torch.nn.init.normal_(head.linear.weight)
    head.standardize.std.fill_(2.0)
    direction = raw_direction(head)
    assert torch.allclose(torch.as_tensor(direction), head.linear.weight[0].detach() / 2.0)
    model = tiny_backbone.model
    expected = model.lm_head.weight.detach() @ (torch.as_tensor(direction) * model.model.norm.weight.detach())
    assert torch.allclose(torch.as_tensor(lens_logits(direction, model)), expected, atol=1e-5)


def test_audit_without_pairs_is_a_one_line_error(tmp_path, rm_dir, capsys):
    from latentrm import cli

    (tmp_path / "pairs.jsonl").unlink()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rm", "audit", "--rm", str(rm_dir)])
    assert exit_info.value.code == 2
    assert "error: no pairs file" in capsys.readouterr().err
