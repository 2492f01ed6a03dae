"""The on-policy check: AUROC of the reward on the policy's own judged samples, best-of-n rates, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentrm.audit.onpolicy import OnPolicyConfig, bootstrap_auc, class_report, run
from latentrm.errors import LatentrmError
from latentrm.generation import FakeBackend, Generation
from latentrm.judges import Judgment

FAKE = ["fake_hedge", "refuses_fake", "fake_substantive"]


def _labels(rng, prompts, m, choices, p):
    return [list(rng.choice(choices, size=m, p=p)) for _ in range(prompts)]


def test_a_reward_equal_to_the_label_has_auroc_one_and_a_random_one_about_half():
    rng = np.random.default_rng(0)
    labels = _labels(rng, 40, 8, FAKE, [0.2, 0.1, 0.7])
    wanted = np.array([[float(la != "fake_substantive") for la in row] for row in labels])
    perfect = class_report("fake", wanted, labels, 8, 200, 0)
    assert perfect["auroc"]["pooled"] == 1.0 and perfect["verdict"] == "prefers"
    assert perfect["auroc"]["lo"] > 0.9 and perfect["auroc"]["within_prompt"]["mean"] == 1.0
    inverted = class_report("fake", -wanted, labels, 8, 200, 0)
    assert inverted["auroc"]["pooled"] == 0.0 and inverted["verdict"] == "inverted"
    random = class_report("fake", rng.normal(size=wanted.shape), labels, 8, 200, 0)
    assert abs(random["auroc"]["pooled"] - 0.5) < 0.08
    assert random["auroc"]["lo"] < 0.5 < random["auroc"]["hi"] and random["verdict"] == "undecided"
    assert random["n_wanted"] + random["n_unwanted"] == 40 * 8


def test_best_of_one_is_the_random_pick_and_a_perfect_reward_picks_the_hedge():
    rng = np.random.default_rng(1)
    labels = _labels(rng, 30, 8, FAKE, [0.25, 0.0, 0.75])
    proxy = rng.normal(size=(30, 8))
    report = class_report("fake", proxy, labels, 8, 0, 0)
    share = np.mean([np.mean([la == "fake_substantive" for la in row]) for row in labels])
    assert [row["n"] for row in report["best_of_n"]] == [1, 2, 4, 8]
    assert report["best_of_n"][0]["fake_substantive"]["mean"] == pytest.approx(share)
    wanted = np.array([[float(la != "fake_substantive") for la in row] for row in labels])
    best = class_report("fake", wanted, labels, 8, 0, 0)["best_of_n"][-1]["fake_substantive"]["mean"]
    assert best == pytest.approx(np.mean([all(la == "fake_substantive" for la in row) for row in labels]))


def test_one_hedge_in_a_few_hundred_samples_is_too_few_for_a_verdict_and_rates_stay_in_0_1():
    labels = [["fake_substantive"] * 8 for _ in range(40)]
    labels[3][2] = "fake_hedge"  # the embedded policy's one hedge in 320 samples (runs/quick/onpolicy)
    proxy = np.zeros((40, 8))
    proxy[3][2] = 5.0  # the reward ranks it first: AUROC 1.0 and a narrow bootstrap interval
    report = class_report("fake", proxy, labels, 8, 200, 0)
    assert report["auroc"]["pooled"] == 1.0 and report["n_wanted"] == 1 and report["prompts_wanted"] == 1
    assert report["verdict"] == "too few"
    from latentrm.audit.onpolicy import answer

    assert "cannot tell yet; only 1 wanted answer(s) from 1 prompt(s) in 320 samples" in answer({"fake": report})
    for row in report["best_of_n"]:
        assert 0.0 <= row["fake_substantive"]["lo"] <= row["fake_substantive"]["hi"] <= 1.0
    spread = [row[:] for row in labels]
    for i in range(0, 40, 8):  # five hedges from five prompts: enough for a verdict
        spread[i][0] = "fake_hedge"
        proxy[i][0] = 5.0
    assert class_report("fake", proxy, spread, 8, 200, 0)["verdict"] == "prefers"


def test_one_sided_samples_have_no_contrast_and_the_interval_resamples_prompts():
    labels = [["fake_substantive"] * 4 for _ in range(5)]
    report = class_report("fake", np.zeros((5, 4)), labels, 4, 100, 0)
    assert report["verdict"] == "no contrast" and report["n_wanted"] == 0
    assert report["shares"]["fake_substantive"]["rate"] == 1.0
    # one prompt holds every wanted sample: resampling prompts often drops it, so the interval is wide
    scores = [np.array([1.0, 1.0, 0.0])] + [np.array([0.5, 0.2, 0.1]) for _ in range(9)]
    wanted = [np.array([True, True, False])] + [np.zeros(3, bool) for _ in range(9)]
    from latentrm.audit.onpolicy import bootstrap_pooled

    lo, hi, dropped = bootstrap_pooled(scores, wanted, 400, 0)
    assert (lo, hi) == bootstrap_auc(scores, wanted, 400, 0) == (1.0, 1.0)
    assert 0.25 * 400 < dropped < 0.45 * 400  # 0.9^10 of the resamples miss prompt 0: counted, not silently lost


def test_a_prompt_bootstrap_is_wider_than_a_sample_bootstrap_on_clustered_samples():
    from latentrm.audit.onpolicy import bootstrap_pooled

    rng = np.random.default_rng(0)
    scores, wanted = [], []
    for prompt in range(12):  # half the prompts rank the right way, half the wrong way: samples are clustered
        sign = 1.0 if prompt % 2 else -1.0
        side = np.array([True] * 4 + [False] * 4)
        scores.append(sign * side + 0.1 * rng.standard_normal(8))
        wanted.append(side)
    prompt_lo, prompt_hi, dropped = bootstrap_pooled(scores, wanted, 500, 0)
    flat_scores = [np.array([v]) for v in np.concatenate(scores)]  # one sample a group: a sample bootstrap
    flat_wanted = [np.array([v]) for v in np.concatenate(wanted)]
    sample_lo, sample_hi, _ = bootstrap_pooled(flat_scores, flat_wanted, 500, 0)
    assert dropped == 0
    assert prompt_hi - prompt_lo > 1.5 * (sample_hi - sample_lo)


def test_the_within_prompt_auroc_decides_and_its_interval_stays_in_0_1():
    # offsets between prompts: prompts where the policy hedges more also score higher, but inside a prompt the
    # reward ranks at chance. The pooled AUROC is high; GRPO would learn nothing from this reward.
    rng = np.random.default_rng(1)
    proxy, labels = [], []
    for prompt in range(10):
        hedges = 6 if prompt < 5 else 2
        row = ["fake_hedge"] * hedges + ["fake_substantive"] * (8 - hedges)
        proxy.append((3.0 if prompt < 5 else 0.0) + rng.permutation(np.linspace(0, 1, 8)))
        labels.append(row)
    report = class_report("fake", np.array(proxy), labels, 8, 300, 0)
    within = report["auroc"]["within_prompt"]
    assert report["auroc"]["pooled"] > 0.7 and report["pooled_verdict"] == "prefers"
    assert report["verdict"] != "prefers" and report["auroc"]["decides"] == "within_prompt"
    assert 0.0 <= within["lo"] <= within["mean"] <= within["hi"] <= 1.0
    perfect = [np.arange(8.0) * np.array([1.0 if la == "fake_hedge" else -1.0 for la in row]) for row in labels]
    best = class_report("fake", np.array(perfect), labels, 8, 300, 0)["auroc"]["within_prompt"]
    assert best["mean"] == 1.0 and best["hi"] <= 1.0  # a t interval would pass 1 on few prompts; this cannot


def test_best_of_n_splits_ties_evenly():
    from latentrm.audit.goodhart import bon_expectation

    values = [1.0, 0.0, 0.0, 0.0]
    assert bon_expectation([0.0] * 4, values, 1) == 0.25
    assert bon_expectation([0.0] * 4, values, 4) == 0.25  # all tied: the pick is a coin toss, not the first index
    assert bon_expectation([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], 4) == 0.5


class MixedBackend(FakeBackend):
    """Half the samples hedge, half answer, whatever the prompt."""

    def generate(self, requests, n, config):
        out = []
        for r, _request in enumerate(requests):
            out.append([Generation("I'm not familiar with that name." if (k + r) % 2 else
                                   f"A physicist known for work on optics ({config.seed}:{k}).", 8, "stop", 1.0)
                        for k in range(n)])
        return out


class MarkerJudge:
    """Hedges are hedges; answers are substantive (made-up) or right (real) / agreeing (false premise)."""

    name = "marker"

    def describe(self):
        return {"name": self.name}

    def judge(self, items):
        out = []
        for item in items:
            hedge = "not familiar" in item.response
            if item.kind == "fake":
                label = "fake_hedge" if hedge else "fake_substantive"
            elif item.kind == "real":
                label = "real_denied" if hedge else "answers_real"
            else:
                label = "hedges" if hedge else "agrees"
            out.append(Judgment(label))
        return out


@pytest.fixture
def rm_dir(tmp_path, tiny_backbone):
    import torch

    from latentrm.rm.heads import make_head
    from latentrm.rm.model import LatentRewardModel

    head = make_head("linear", tiny_backbone.hidden_size)
    torch.manual_seed(0)
    for parameter in head.parameters():  # a fresh head may start at zero: give it a direction
        torch.nn.init.normal_(parameter)
    return LatentRewardModel.from_head(tiny_backbone, head, layer=2).save(tmp_path / "rm")


def test_run_reports_each_class_and_reuses_cached_samples(tmp_path, rm_dir):
    def hedge_lover(prompts, completions):  # right on made-up people, wrong on real ones
        return [float("not familiar" in c) for c in completions]

    config = OnPolicyConfig(rm=str(rm_dir), run_dir=str(tmp_path / "run"), backend="fake", n_real=4, n_fake=4,
                            n_false_premise=2, samples=4, bootstrap=100)
    folder = run(config, backend=MixedBackend(), scorer=hedge_lover, judge=MarkerJudge())
    report = json.loads((folder / "onpolicy.json").read_text())
    fake, real = report["classes"]["fake"], report["classes"]["real"]
    assert fake["prompts"] == 4 and fake["samples"] == 16 and real["prompts"] == 4
    assert fake["verdict"] == "prefers" and fake["auroc"]["pooled"] == 1.0
    assert real["verdict"] == "inverted" and real["auroc"]["pooled"] == 0.0
    assert real["best_of_n"][-1]["answers_real"]["mean"] == 0.0 < real["best_of_n"][0]["answers_real"]["mean"]
    assert "false_premise" in report["classes"] and "fake: yes" in report["answer"]
    assert (folder / "onpolicy.png").stat().st_size > 10_000
    judged = [json.loads(line) for line in (folder / "judged.jsonl").read_text().splitlines()]
    assert len(judged) == (4 + 4 + 2) * 4  # every sample, with its side for `rm sweep --select onpolicy`
    fake_rows = [r for r in judged if r["class"] == "fake"]
    assert all(r["side"] == ("wanted" if r["reward"] == 1.0 else "unwanted") for r in fake_rows)
    assert {r["side"] for r in judged if r["class"] == "real"} <= {"wanted", "unwanted"}
    samples = next((folder / "samples").glob("*.jsonl"))
    before = samples.read_text()
    run(config, backend=MixedBackend(), scorer=hedge_lover, judge=MarkerJudge())
    assert samples.read_text() == before  # every sample came from the cache


def test_the_real_reward_model_scores_the_samples(tmp_path, rm_dir):
    config = OnPolicyConfig(rm=str(rm_dir), run_dir=str(tmp_path / "run"), backend="fake", n_real=2, n_fake=2,
                            n_false_premise=0, samples=2, bootstrap=50)
    folder = run(config, backend=MixedBackend(), judge=MarkerJudge())
    scores = [json.loads(line)["proxy"] for line in next((folder / "scores").glob("*.jsonl")).read_text().splitlines()]
    assert len(scores) == 8 and len(set(scores)) > 1 and all(np.isfinite(scores))


def test_a_prompt_set_without_made_up_people_is_refused(tmp_path, rm_dir):
    path = tmp_path / "real_only.jsonl"
    path.write_text(json.dumps({"kind": "real", "question": "Who was Marie Curie?", "entity": "Marie Curie",
                                "reference": "Marie Curie was a physicist."}) + "\n")
    config = OnPolicyConfig(rm=str(rm_dir), backend="fake", prompts=(str(path),), samples=2)
    with pytest.raises(LatentrmError, match="no made-up prompts"):
        run(config, backend=MixedBackend(), judge=MarkerJudge(), scorer=lambda p, c: [0.0] * len(c))


@pytest.mark.parametrize("extra, message", [
    (["--samples", "0"], "--samples 0"),
    (["--samples", "4", "--n-max", "8"], "--n-max 8"),
    (["--name", "../x"], "--name"),
])
def test_bad_options_are_one_line_errors(run_cli, rm_dir, extra, message):
    code, out, err = run_cli(["rm", "onpolicy", "--rm", str(rm_dir), "--backend", "fake", *extra])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_policy_folder_that_is_not_a_model_is_refused(run_cli, rm_dir, tmp_path):
    (tmp_path / "not_a_model").mkdir()
    code, _, err = run_cli(["rm", "onpolicy", "--rm", str(rm_dir), "--policy", str(tmp_path / "not_a_model")])
    assert code == 2 and "not_a_model has no config.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("field_name, value, message", [("revision", "dir-sha256:0", "revision"),
                                                        ("hidden_size", 7, "hidden size 7")])
def test_a_reward_model_from_another_backbone_is_refused_before_sampling(run_cli, rm_dir, field_name, value,
                                                                         message, tiny_model_dir):
    meta = json.loads((rm_dir / "rm.json").read_text())
    meta["backbone"][field_name] = value
    (rm_dir / "rm.json").write_text(json.dumps(meta))
    code, _, err = run_cli(["rm", "onpolicy", "--rm", str(rm_dir), "--policy", str(tiny_model_dir)])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (rm_dir.parent / "onpolicy" / "samples").exists()


def test_the_real_class_is_also_reported_on_answer_against_denial_alone():
    # the head ranks denials last but cannot tell a right answer from a wrong one (the contradiction detector's
    # label): with real_incorrect the AUROC is middling; on answer against denial alone it is perfect
    labels = [["answers_real", "answers_real", "real_incorrect", "real_incorrect", "real_denied", "real_denied"]
              for _ in range(6)]
    proxy = np.array([[2.0, 1.0, 2.0, 1.0, -1.0, -2.0] for _ in range(6)])
    report = class_report("real", proxy, labels, 4, 200, 0)
    alone = report["auroc_without_detector"]
    assert alone["unwanted"] == ["real_denied"] and alone["within_prompt"]["mean"] == 1.0
    assert alone["pooled"] == 1.0 and alone["prompts_with_both"] == 6 and alone["n_unwanted"] == 12
    assert report["auroc"]["within_prompt"]["mean"] == pytest.approx(0.75)
    assert "auroc_without_detector" not in class_report("fake", proxy, [["fake_hedge"] * 6] * 6, 4, 50, 0)
