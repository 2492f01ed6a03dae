"""ShapedReward: the one reward composition (rm score -> shaper, class from the dataset column)."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.errors import LatentrmError
from latentrm.rl.reward import ShapedReward, artifact_flags
from latentrm.rm.shaping import get_shaper, group_ids

LEVELS = [0.0, 0.5, 1.0]
META = {"head": {"type": "linear"}, "chosen_quantiles": {
    "all": {"levels": LEVELS, "values": [0.0, 1.0, 2.0]},
    "fake": {"levels": LEVELS, "values": [0.0, 1.0, 2.0]},
    "real": {"levels": LEVELS, "values": [10.0, 11.0, 12.0]}}}


class LengthRM:
    """A stand-in reward model: the score is the completion's word count."""

    meta = META

    def __init__(self):
        self.calls = 0

    def score(self, prompts, completions, batch_size=None):
        self.calls += 1
        from latentrm.models import completion_text

        return [float(len(completion_text(c).split())) for c in completions]


def test_the_class_column_picks_the_chosen_distribution():
    reward = ShapedReward(LengthRM(), get_shaper("calibrated", META, tau=1.0))
    # "one" scores 1: the fake median (CDF 0.5) but below every real chosen score (CDF 0)
    out = reward(["Who is A?", "Who is B?"], ["one", "one"], subset=["fake", "real"])
    assert out == pytest.approx([0.5, 0.0])
    assert reward.__name__ == "latent_calibrated" and not callable(getattr(reward, "parameters", None))


def test_trl_conversational_inputs_and_logged_metrics():
    logged: dict[str, float] = {}
    reward = ShapedReward(LengthRM(), get_shaper("raw"))
    prompts = [[{"role": "user", "content": "Who is Ola?"}]] * 2
    completions = [[{"role": "assistant", "content": "I am not familiar with Ola. I hope this helps!"}],
                   [{"role": "assistant", "content": "Ola is a chemist."}]]
    out = reward(prompts, completions, completion_ids=None, subset=["fake", "fake"],
                 log_metric=lambda name, value: logged.__setitem__(name, value), trainer_state=None)
    assert out == [10.0, 4.0]  # word counts
    assert logged["latent/raw_mean"] == pytest.approx(7.0)
    assert logged["artifacts/sign_off"] == pytest.approx(0.5) and logged["artifacts/hedge"] == pytest.approx(0.5)
    assert logged["train_judge/fake_hedge"] + logged["train_judge/refuses_fake"] == pytest.approx(0.5)
    assert logged["train_judge/fake_substantive"] == pytest.approx(0.5)


def test_groups_come_from_identical_prompts():
    assert group_ids(["a", "a", "b", "b", "a"]) == [0, 0, 1, 1, 0]
    assert group_ids([[{"role": "user", "content": "x"}]] * 2) == [0, 0]
    reward = ShapedReward(LengthRM(), get_shaper("quantile_match", META))
    # two groups of two fake prompts: targets Q(0.25)=0.5, Q(0.75)=1.5
    out = reward(["p", "p", "q", "q"], ["one", "one two", "one two three four", "x"], subset=["fake"] * 4)
    assert out == pytest.approx([-0.5, -0.5, -2.5, -0.5])


def test_ensemble_shaper_needs_an_ensemble_and_column_lengths_must_match():
    with pytest.raises(LatentrmError, match="needs an ensemble"):
        ShapedReward(LengthRM(), get_shaper("ensemble", META))
    reward = ShapedReward(LengthRM(), get_shaper("raw"))
    with pytest.raises(LatentrmError, match="column 'subset' has 1 values for 2"):
        reward(["a", "b"], ["x", "y"], subset=["fake"])


def test_scoring_runs_inside_the_scoring_context():
    entered = []

    class Context:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    reward = ShapedReward(LengthRM(), get_shaper("raw"), scoring_context=Context)
    reward(["a"], ["x"])
    assert entered == [True]


def test_artifact_flags_reuse_the_audit_edits():
    from latentrm.audit.text import EDITS

    text = "Ola Nordmann is a Norwegian chemist known for catalysis research."
    flags = artifact_flags([text, EDITS["pad"](text), EDITS["hope"](text), EDITS["repeat"](EDITS["repeat"](text))])
    assert flags["padding"].tolist() == [False, True, False, False]
    assert flags["sign_off"].tolist() == [False, False, True, False]
    assert flags["repetition"].tolist() == [False, False, False, True]
    assert np.all(~flags["hedge"])
