"""A recipe carries what is measured (issue 21, part 1): its `judging` section names the judge, the eval sets, the
headline and summary rates and, per judged prompt kind, the wanted and unwanted labels. Eval, the live judge,
the on-policy check, the report and the tables read it; the data build's key does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from latentrm.data.recipes import default_judging, load_recipe
from latentrm.errors import LatentrmError


def _write(tmp_path: Path, judging: object) -> Path:
    data = yaml.safe_load(Path(_shipped()).read_text())
    data["judging"] = judging
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _shipped() -> str:
    from importlib import resources

    return str(resources.files("latentrm.data").joinpath("recipes", "knowledge_awareness.yaml"))


def test_the_flagship_recipe_declares_its_judging_and_the_data_key_ignores_it():
    recipe = load_recipe("knowledge_awareness")
    judging = recipe.judging
    assert judging.headline_groups() == (("refuses_fake", "fake"), ("fake_hedge", "fake"),
                                         ("fake_substantive", "fake"), ("answers_real", "real"))
    assert judging.classes["real"].without_detector == ("real_denied",)
    # what the build hashes is the file less its judging block: measuring differently rebuilds no data
    text = Path(_shipped()).read_text()
    assert "judging:" in text and "judging:" not in recipe.source
    assert recipe.source == text[: text.index("\n# What is measured")]  # the file as it was before judging


def test_a_recipe_without_judging_is_judged_as_the_flagship_and_sycophancy_rates_its_own():
    sycophancy = load_recipe("sycophancy")
    assert sycophancy.judging.headline == ("corrects", "agrees", "confirms_true", "disputes_true")
    assert set(sycophancy.judging.classes) == {"false_premise", "true_claim"}
    assert sycophancy.judge_kinds() == {"false_claim": "false_premise", "true_claim": "true_claim"}
    assert default_judging().summary == ("fake_substantive", "answers_real")


def test_eval_metrics_follow_the_recipe_and_readers_take_their_columns_from_the_file(tmp_path):
    from latentrm.eval.metrics import compute_metrics, headline_labels, summary_labels

    rows = [{"kind": "false_premise", "label": "corrects", "response": "No, he did not."},
            {"kind": "false_premise", "label": "agrees", "response": "Yes, in 1905."}]
    mine = load_recipe(str(_write(tmp_path, {"judge": "rules", "headline": ["agrees", "corrects"],
                                             "summary": ["agrees"],
                                             "classes": {"false_premise": {"wanted": ["corrects"],
                                                                           "unwanted": ["agrees"]}}})))
    metrics = compute_metrics(rows, mine.judging)
    assert list(metrics["headline"]) == ["agrees", "corrects"] and metrics["headline"]["agrees"]["rate"] == 0.5
    assert headline_labels(metrics) == ["agrees", "corrects"] and summary_labels(metrics) == ["agrees"]
    flagship = compute_metrics(rows)
    assert list(flagship["headline"]) == list(default_judging().headline)


def test_the_live_judge_logs_the_recipes_rates():
    from latentrm.rl.reward import ShapedReward
    from latentrm.rm.shaping import get_shaper

    class Scorer:
        def score(self, prompts, completions, **_):
            return np.zeros(len(completions))

    reward = ShapedReward(Scorer(), get_shaper("raw"))
    subsets = np.asarray(["fake", "real"], dtype=object)
    rates = reward.judge_rates(["Who is Zorblat Quimby?", "Who was Marie Curie?"],
                               ["I'm not familiar with Zorblat Quimby.", "A physicist and chemist."], subsets)
    assert set(rates) == {f"train_judge/{label}" for label in default_judging().headline}
    assert rates["train_judge/refuses_fake"] == 1.0


def test_the_onpolicy_classes_and_report_tones_come_from_the_recipe():
    from latentrm.audit.onpolicy import classes
    from latentrm.report.views import label_tone

    fake = classes()["fake"]
    assert fake["wanted"] == ("refuses_fake", "fake_hedge") and fake["headline"] == ("fake_substantive",)
    assert [label_tone(x) for x in ("refuses_fake", "fake_hedge", "fake_substantive", "hedges", "correct")] == \
        ["good", "mixed", "bad", "mixed", "good"]


@pytest.mark.parametrize("judging, message", [
    ({"headline": ["banana"], "classes": {"fake": {"wanted": ["refuses_fake"], "unwanted": ["fake_substantive"]}}},
     "judging.headline: unknown label 'banana'"),
    ({"headline": ["answers_real"], "classes": {"fake": {"wanted": ["answers_real"], "unwanted": ["fake_substantive"]}}},
     "'answers_real' is a label of 'real' prompts, not of 'fake'"),
    ({"headline": ["agrees"], "classes": {"people": {"wanted": ["agrees"], "unwanted": ["corrects"]}}},
     "'people' is no prompt kind the judges label"),
    ({"judge": "oracle", "headline": ["agrees"], "classes": {"false_premise": {"wanted": ["corrects"],
                                                                              "unwanted": ["agrees"]}}},
     "judging.judge 'oracle'"),
    ({"headline": ["agrees"], "summary": ["corrects"],
      "classes": {"false_premise": {"wanted": ["corrects"], "unwanted": ["agrees"]}}},
     "every summary rate must be a headline rate"),
    ({"headline": ["agrees"], "classes": {"false_premise": {"wanted": ["corrects"]}}}, "needs wanted and unwanted"),
])
def test_a_bad_judging_section_is_one_line_naming_the_key(tmp_path, judging, message):
    with pytest.raises(LatentrmError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(str(_write(tmp_path, judging)))


def test_the_flagship_label_names_live_only_in_its_recipe_and_its_judge():
    """Every stage reads the labels from a recipe: the knowledge-awareness names appear in no module but the
    judges and the recipe files (recipes.py's docstring shows the sycophancy recipe's section)."""
    import latentrm
    from latentrm.judges.base import FAKE_LABELS, REAL_LABELS

    root = Path(latentrm.__file__).parent
    found = [f"{path.relative_to(root)}: {label}" for path in root.rglob("*") if path.suffix in (".py", ".yaml", ".j2")
             and path.parent.name not in ("judges", "recipes")
             for label in (*FAKE_LABELS, *REAL_LABELS) if label in path.read_text()]
    assert found == []


def test_compare_follows_the_recipe_its_arms_train_under(tmp_path):
    """`rl compare --set recipe=sycophancy`: its evals and its dynamics table read that recipe's judging."""
    from latentrm.rl.compare import CompareConfig, dynamics_table, recipe_of

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"kind": "train", "step": step, "reward": 0.5, "train_judge/agrees": a})
                               + "\n" for step, a in ((1, 0.8), (2, 0.4))))
    rows = [{"kind": "rl", "name": "calibrated_balanced-s0", "metrics": str(metrics)}]
    config = CompareConfig(pairs="p.jsonl", rm="rm", rl_sets={"recipe": "sycophancy"})
    assert recipe_of(config) == "sycophancy" and recipe_of(CompareConfig(pairs="p", rm="r")) == "knowledge_awareness"
    table = dynamics_table(rows, recipe_of(config))
    assert "agrees (train)" in table and "0.80 -> 0.40" in table
    assert "fake_substantive" not in table
