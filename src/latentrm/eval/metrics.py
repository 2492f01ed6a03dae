"""Behaviour metrics: label rates with Wilson 95% intervals, and diversity of the policy's samples.

- `wilson_interval(k, n)` is the Wilson score interval (Wilson 1927), which stays
  inside [0, 1] and behaves at k = 0 or k = n, unlike the normal approximation.
- Diversity: distinct-1 / distinct-2 (unique n-grams over all n-grams, pooled over
  every response, Li et al. 2016), mean length (tokens when the backend reports
  them, else words) and mean per-token entropy of the sampling distribution
  (token-weighted mean of each sample's mean entropy, as reported by the backend).

Entropy collapse after RL shows as falling entropy and distinct-n together.

Questions with short reference answers (`qa`) get their own block, `qa_metrics`: the shares
correct / incorrect / not_attempted of answerable questions, precision = correct / attempted
(attempted = correct + incorrect), and the F-score, the harmonic mean of precision and the
correct share (as SimpleQA reports it). On unanswerable questions not attempting is the success:
`unanswerable_not_attempted`. A policy that hedges everywhere loses correct answers; one that
hedges only where it would be wrong gains precision at the same coverage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from latentrm.judges.base import (  # noqa: F401  (re-exported: the label families are part of the metrics)
    FAKE_LABELS,
    FALSE_PREMISE_LABELS,
    LABEL_GROUPS,
    QA_LABELS,
    REAL_LABELS,
    UNANSWERABLE_QA_LABELS,
    UNJUDGED,
    label_group,
    words,
)


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (95% by default). n = 0 gives (0, 1)."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact bounds at the edges, no 1e-17 residue
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def rate(k: int, n: int) -> dict[str, Any]:
    """A share with its Wilson 95% interval: {rate, lo, hi, k, n} (rate is None when n = 0)."""
    lo, hi = wilson_interval(k, n)
    return {"rate": (k / n) if n else None, "lo": lo, "hi": hi, "k": int(k), "n": int(n)}


UNANSWERABLE_QA = "qa_unanswerable"  # the group of `qa` rows marked answerable: false
_GROUP_LABELS = {**LABEL_GROUPS, UNANSWERABLE_QA: UNANSWERABLE_QA_LABELS}


def row_group(row: Mapping[str, Any]) -> str:
    """The label group of a response row; an unanswerable `qa` question is a group of its own."""
    group = label_group(str(row["kind"]))
    return UNANSWERABLE_QA if group == "qa" and row.get("answerable") is False else group


def label_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every label's share of its own prompt group, e.g. hedges about made-up people / made-up prompts.

    `unjudged` responses count in the denominator (they are reported, never dropped),
    so rates of one group may sum to less than one. Unanswerable `qa` labels are keyed
    `unanswerable_<label>`.
    """
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        counts.setdefault(row_group(row), Counter())[str(row.get("label") or UNJUDGED)] += 1
    out: dict[str, dict[str, Any]] = {}
    for group, counter in counts.items():
        known, total = _GROUP_LABELS.get(group, ()), sum(counter.values())
        labels = list(known) + sorted(set(counter) - set(known))
        for label in labels:
            key = f"{group}_unjudged" if label == UNJUDGED else f"unanswerable_{label}" if (
                group == UNANSWERABLE_QA) else label
            out[key] = {**rate(counter.get(label, 0), total), "group": group}
    return out


def f_score(precision: float | None, correct: float | None) -> float | None:
    """Harmonic mean of precision and the correct share (0 when both are 0, None when either is unknown)."""
    if precision is None or correct is None:
        return None
    return 0.0 if precision + correct == 0 else 2 * precision * correct / (precision + correct)


def qa_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """correct / incorrect / not_attempted / precision (Wilson intervals, k/n) and the F-score of the `qa`
    rows; `unanswerable_not_attempted` when some are unanswerable. None when there are no `qa` rows."""
    answerable = Counter(str(r.get("label") or UNJUDGED) for r in rows if row_group(r) == "qa")
    unanswerable = Counter(str(r.get("label") or UNJUDGED) for r in rows if row_group(r) == UNANSWERABLE_QA)
    if not answerable and not unanswerable:
        return None
    n = sum(answerable.values())
    out: dict[str, Any] = {label: rate(answerable[label], n) for label in QA_LABELS}
    out["precision"] = rate(answerable["correct"], answerable["correct"] + answerable["incorrect"])
    out["f_score"] = f_score(out["precision"]["rate"], out["correct"]["rate"])
    out["n_unjudged"] = answerable[UNJUDGED] + unanswerable[UNJUDGED]
    if unanswerable:
        out["unanswerable_not_attempted"] = rate(unanswerable["not_attempted"], sum(unanswerable.values()))
    return out


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique n-grams / total n-grams pooled over all texts (None when there are no n-grams)."""
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        tokens = words(text, punctuation=True)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return (len(seen) / total) if total else None


def mean_entropy(entropies: Sequence[float | None], n_tokens: Sequence[int | None]) -> float | None:
    """Token-weighted mean of per-sample mean entropies (nats); samples without entropy are left out."""
    num = 0.0
    den = 0
    for entropy, count in zip(entropies, n_tokens, strict=True):
        if entropy is None or (isinstance(entropy, float) and math.isnan(entropy)):
            continue
        weight = int(count) if count else 1
        num += float(entropy) * weight
        den += weight
    return (num / den) if den else None


def diversity(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """distinct-1, distinct-2, mean length (tokens and words) and mean per-token entropy."""
    texts = [str(r.get("response", "")) for r in rows]
    n_tokens = [r.get("n_tokens") for r in rows]
    token_counts = [int(t) for t in n_tokens if t is not None]
    return {
        "n_responses": len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "mean_length_tokens": (sum(token_counts) / len(token_counts)) if token_counts else None,
        "mean_length_words": (sum(len(words(t, punctuation=True)) for t in texts) / len(texts)) if texts else None,
        "mean_entropy": mean_entropy([r.get("mean_entropy") for r in rows], n_tokens),
        # endpoints report no logits, so their samples carry no entropy: say how many did
        "n_with_entropy": sum(1 for r in rows if isinstance(r.get("mean_entropy"), (int, float))
                              and not math.isnan(r["mean_entropy"])),
    }


def headline_labels(*metrics: Mapping[str, Any] | None) -> list[str]:
    """The headline rates that these metrics.json bodies report, in their order (their recipe's), or the flagship
    recipe's when none reports any: what a table or plot of several policies shows as its columns."""
    from latentrm.data.recipes import default_judging

    order = list(dict.fromkeys(label for m in metrics if m for label in (m.get("headline") or {})))
    return order or list(default_judging().headline)


def summary_labels(*metrics: Mapping[str, Any] | None) -> list[str]:
    """The rates a summary leads with: the first `summary` these metrics record, else the flagship recipe's."""
    from latentrm.data.recipes import default_judging

    found = next((m["summary"] for m in metrics if m and m.get("summary")), None)
    return list(found) if found else list(default_judging().summary)


def compute_metrics(rows: Sequence[Mapping[str, Any]], judging: Any = None) -> dict[str, Any]:
    """metrics.json body: the recipe's headline rates (in its order; knowledge_awareness's when `judging`,
    a `latentrm.data.recipes.Judging`, is None), all label rates, per-kind counts and diversity. Readers of
    metrics.json take the headline's keys, in order, as the columns to show: the file describes itself."""
    from latentrm.data.recipes import default_judging

    judging = judging or default_judging()
    rates = label_rates(rows)
    headline = {label: rates.get(label, {**rate(0, 0), "group": group}) for label, group in judging.headline_groups()}
    kinds = Counter(str(r["kind"]) for r in rows)
    metrics = {
        "n": len(rows),
        "n_by_kind": dict(sorted(kinds.items())),
        "n_unjudged": sum(1 for r in rows if (r.get("label") or UNJUDGED) == UNJUDGED),
        "headline": headline,
        "summary": list(judging.summary),
        "rates": rates,
        "diversity": diversity(rows),
    }
    qa = qa_metrics(rows)
    if qa is not None:
        metrics["qa"] = qa
        rates["precision"] = {**qa["precision"], "group": "qa"}
    return metrics


def confusion_matrix(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy and a gold x predicted count table (labels in first-seen gold order, then extra)."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    labels: list[str] = []
    for label in list(gold) + list(predicted):
        if label not in labels:
            labels.append(label)
    table = {g: {p: 0 for p in labels} for g in labels}
    for g, p in zip(gold, predicted, strict=True):
        table[g][p] += 1
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p)
    n = len(gold)
    return {"n": n, "correct": correct, "accuracy": (correct / n) if n else None,
            "accuracy_ci": list(wilson_interval(correct, n)), "labels": labels, "matrix": table}
