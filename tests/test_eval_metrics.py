"""Wilson intervals, label rates and diversity metrics."""

from __future__ import annotations

import math

import pytest

from latentrm.eval.metrics import (
    compute_metrics,
    confusion_matrix,
    distinct_n,
    diversity,
    label_rates,
    mean_entropy,
    rate,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.2775),  # textbook values (Wilson 1927; Newcombe 1998 table)
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (1, 29, 0.0061, 0.1718),
        (81, 263, 0.2553, 0.3662),
    ],
)
def test_wilson_known_values(k, n, lo, hi):
    got_lo, got_hi = wilson_interval(k, n)
    assert got_lo == pytest.approx(lo, abs=5e-4)
    assert got_hi == pytest.approx(hi, abs=5e-4)


def test_wilson_matches_scipy():
    from scipy.stats import binomtest

    for k, n in [(3, 7), (17, 100), (99, 100), (40, 41)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k, n)
        assert lo == pytest.approx(ci.low, abs=1e-9)
        assert hi == pytest.approx(ci.high, abs=1e-9)


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert rate(0, 0)["rate"] is None
    assert rate(3, 4)["rate"] == 0.75


def test_distinct_n_counts_unique_ngrams():
    texts = ["the cat sat", "the cat ran"]
    # unigrams: the, cat, sat, the, cat, ran -> 4 unique / 6
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    # bigrams: (the cat) (cat sat) (the cat) (cat ran) -> 3 / 4
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["same words"] * 5, 2) == pytest.approx(1 / 5)
    assert distinct_n([""], 1) is None


def test_mean_entropy_is_token_weighted():
    assert mean_entropy([1.0, 4.0], [3, 1]) == pytest.approx((3 * 1.0 + 1 * 4.0) / 4)
    assert mean_entropy([None, 2.0], [5, 5]) == pytest.approx(2.0)
    assert mean_entropy([None, float("nan")], [1, 1]) is None


def test_diversity_reports_lengths_and_entropy():
    rows = [{"response": "a b c", "n_tokens": 4, "mean_entropy": 2.0},
            {"response": "a b", "n_tokens": 2, "mean_entropy": 1.0}]
    d = diversity(rows)
    assert d["mean_length_tokens"] == 3.0
    assert d["mean_length_words"] == 2.5
    assert d["mean_entropy"] == pytest.approx((8 + 2) / 6)
    assert d["distinct_1"] == pytest.approx(3 / 5)


def test_label_rates_use_group_denominators():
    rows = ([{"kind": "fake", "label": "refuses_fake"}] * 3 + [{"kind": "fake", "label": "fake_substantive"}]
            + [{"kind": "unanswerable", "label": "fake_hedge"}] + [{"kind": "fake", "label": "unjudged"}]
            + [{"kind": "real", "label": "answers_real"}] * 2)
    rates = label_rates(rows)
    assert rates["refuses_fake"]["n"] == 6 and rates["refuses_fake"]["k"] == 3
    assert rates["fake_hedge"]["k"] == 1
    assert rates["fake_unjudged"]["k"] == 1
    assert rates["answers_real"]["rate"] == 1.0
    assert rates["real_denied"]["k"] == 0 and rates["real_denied"]["n"] == 2
    metrics = compute_metrics([{**r, "response": "x"} for r in rows])
    assert set(metrics["headline"]) == {"refuses_fake", "fake_hedge", "fake_substantive", "answers_real"}
    assert metrics["n_unjudged"] == 1
    assert math.isclose(metrics["headline"]["fake_substantive"]["rate"], 1 / 6)


def test_confusion_matrix():
    result = confusion_matrix(["a", "a", "b"], ["a", "b", "b"])
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["matrix"]["a"]["b"] == 1 and result["matrix"]["b"]["b"] == 1
