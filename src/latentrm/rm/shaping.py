"""Reward shapers: turn raw latent reward scores into the reward an RL algorithm optimises.

What it does
- A name -> factory registry (`SHAPERS`, `get_shaper(name, meta, **params)`), in the
  style of inspect_ai's scorers: every shaper records its name and parameters
  (`shaper.describe()`), so runs log exactly which reward they optimised.
- A shaper is called as `shaper(scores, subsets, std=None) -> rewards`, all numpy:
  `scores` `[n]` raw head outputs, `subsets` `[n]` prompt classes (`None` = unknown,
  read as `"all"`), `std` `[n]` per-head spread for ensembles.
- Shapers that need the reward model's score distribution read
  `meta["chosen_quantiles"][subset or "all"] = {"levels": [...], "values": [...]}`
  from rm.json (computed by `latentrm rm train`).

The shapers
- `raw`: the score itself.
- `calibrated` (default RL reward): `min(F_chosen(score), tau) / tau`, where `F_chosen`
  is the empirical CDF of *chosen*-response scores for the prompt's subset,
  interpolated linearly between the stored quantiles, and `tau = 0.5`.
  Why: a Bradley-Terry head is only trained to order chosen above rejected
  responses; far above the chosen distribution its linear direction extrapolates
  into regions no training response reached, which is exactly where a policy finds
  steering artifacts (Goodhart). Saturating at the median chosen response gives the
  full reward for "looks like a typical good answer" and nothing for pushing further.
  Using the CDF rather than the raw score also puts subsets with different score
  scales (e.g. `real` vs `fake` people) on the same 0..1 scale, so neither prompt
  class dominates the policy gradient. Scores at or below the lowest chosen score
  get 0 (no gradient among clearly bad responses: group-normalised methods such as
  GRPO still learn from groups that contain one better response). `tau=1` gives
  the plain CDF.
- `capped`: `min(score, Q_chosen(quantile))` (default quantile 0.5): the raw scale, with
  no reward above the given chosen-score quantile.
- `ensemble`: `score - k * std` (default k=1): a pessimistic reward for heads trained on
  bootstrap resamples, where `score` is their mean and `std` their spread. Needs `std`.
- `quantile_match`: the literal "target the chosen distribution" reward. Within each group
  of G completions for one prompt (a GRPO group), sort the scores s_(1) <= ... <= s_(G)
  and give the completion of rank k the reward `-|s_(k) - Q_c((k - 0.5) / G)|`, where Q_c
  is the chosen-score quantile function of the prompt's class. Overshooting the chosen
  distribution costs as much as falling short, so the group is pushed to spread like the
  chosen set rather than towards its maximum. Needs `groups` (the shaped reward derives
  them from identical prompts); a group of one is matched to the median.
- `density`: `log p_c(score)`, the log-density of the score under a Gaussian KDE of the
  chosen-score distribution of the prompt's class (the stored quantiles are the KDE's
  points, weighted by the probability mass each represents; Scott's bandwidth, times
  `bandwidth`). Highest at the mode of the chosen scores, falling on both sides.

GRPO normalises rewards within each group (`(r - mean) / std`), so for it only a shaper's
shape matters: adding a constant to every reward, or multiplying by a positive constant,
changes nothing the policy sees (tests check this for each shaper). What does matter is
the ordering and spacing *within* a group, which is where `raw`, `calibrated`,
`quantile_match` and `density` differ.

Departure from the seed method: the seed method uses the raw score; `raw` keeps that.

Usage: `get_shaper("calibrated", LatentRewardModel.load(d).meta, tau=0.5)(scores, subsets)`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from latentrm.errors import LatentrmError
from latentrm.registry import Registry

ShaperName = Literal["raw", "calibrated", "capped", "ensemble", "quantile_match", "density"]


class ShaperFn(Protocol):
    def __call__(self, scores: np.ndarray, subsets: Sequence[str | None],
                 std: np.ndarray | None = None) -> np.ndarray: ...  # [n] -> [n]


@dataclass(frozen=True)
class Shaper:
    """A configured shaper: call it like `ShaperFn`; `describe()` for logs."""

    name: str
    params: dict[str, Any]
    fn: Callable[..., np.ndarray] = field(repr=False)  # (scores, subsets, std[, groups]) -> rewards
    needs_std: bool = False
    needs_groups: bool = False  # fn takes a 4th argument: group ids [n] (one per prompt group)

    def __call__(self, scores: np.ndarray | Sequence[float], subsets: Sequence[str | None] | None = None,
                 std: np.ndarray | Sequence[float] | None = None,
                 groups: np.ndarray | Sequence[Any] | None = None) -> np.ndarray:
        values = np.asarray(scores, dtype=np.float64).reshape(-1)  # [n]
        names: Sequence[str | None] = [None] * len(values) if subsets is None else list(subsets)
        if len(names) != len(values):
            raise LatentrmError(f"shaper '{self.name}': {len(values)} scores but {len(names)} subsets")
        spread = None if std is None else np.asarray(std, dtype=np.float64).reshape(-1)
        if spread is not None and len(spread) != len(values):
            raise LatentrmError(f"shaper '{self.name}': {len(values)} scores but {len(spread)} std values")
        if not self.needs_groups:
            return np.asarray(self.fn(values, names, spread), dtype=np.float64)
        group_ids = np.arange(len(values)) if groups is None else np.asarray(list(groups), dtype=object)
        if len(group_ids) != len(values):
            raise LatentrmError(f"shaper '{self.name}': {len(values)} scores but {len(group_ids)} group ids")
        return np.asarray(self.fn(values, names, spread, group_ids), dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


ShaperFactory = Callable[..., Shaper]
SHAPERS: Registry[ShaperFactory] = Registry("reward shaper", hint="--shaper")
_NEEDS_SUBSETS: dict[str, bool] = {}


def register_shaper(name: str, *, needs_subsets: bool = True) -> Callable[[ShaperFactory], ShaperFactory]:
    """`@register_shaper("name")` on a factory `(meta, **params) -> Shaper`. `needs_subsets`: the shaper reads
    each completion's prompt class (a per-class table of chosen scores), so callers must pass it."""

    def wrap(factory: ShaperFactory) -> ShaperFactory:
        SHAPERS.add(name, factory)
        _NEEDS_SUBSETS[name] = needs_subsets
        return factory

    return wrap


def available_shapers() -> list[str]:
    return sorted(SHAPERS)


def needs_subsets(name: str) -> bool:
    """Whether shaper `name` needs each completion's prompt class (unknown names: as `get_shaper` says)."""
    SHAPERS.get(name)
    return _NEEDS_SUBSETS[name]


def get_shaper(name: str, meta: Mapping[str, Any] | None = None, **params: Any) -> Shaper:
    """Build the shaper `name` for a reward model whose rm.json is `meta`.

    Unknown names and unknown or invalid parameters raise `LatentrmError`.
    """
    factory = SHAPERS.get(name)
    accepted = [p for p in inspect.signature(factory).parameters if p != "meta"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise LatentrmError(f"reward shaper '{name}' has no parameter {', '.join(unknown)}; it takes: {allowed}")
    return factory(meta or {}, **params)


def group_ids(prompts: Sequence[Any]) -> list[int]:
    """One id per distinct prompt (text or chat messages), in order of first appearance."""
    seen: dict[str, int] = {}
    out = []
    for prompt in prompts:
        key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
        out.append(seen.setdefault(key, len(seen)))
    return out


def shape_scores(shaper: Shaper, raw: np.ndarray, subsets: Sequence[str | None] | None,
                 std: np.ndarray | None = None, prompts: Sequence[Any] | None = None) -> np.ndarray:
    """The shaping half of the composition, for callers that score on their own (the server's batcher)."""
    groups = group_ids(prompts) if (shaper.needs_groups and prompts is not None) else None
    return shaper(raw, subsets, std, groups)


# --------------------------------------------------------------------------- quantile tables


@dataclass(frozen=True)
class QuantileTable:
    """An empirical distribution stored as quantiles: `values[i]` is the `levels[i]` quantile."""

    levels: np.ndarray  # [k] increasing in [0, 1]
    values: np.ndarray  # [k] non-decreasing

    @classmethod
    def from_meta(cls, entry: Any, where: str) -> QuantileTable:
        if not isinstance(entry, Mapping) or "levels" not in entry or "values" not in entry:
            raise LatentrmError(f"{where} must be {{'levels': [...], 'values': [...]}}; retrain the reward model")
        levels = np.asarray(entry["levels"], dtype=np.float64)
        values = np.asarray(entry["values"], dtype=np.float64)
        if levels.ndim != 1 or levels.shape != values.shape or len(levels) < 2:
            raise LatentrmError(f"{where}: levels and values must be equal-length lists of at least 2 numbers")
        if not (np.isfinite(levels).all() and np.isfinite(values).all()):
            raise LatentrmError(f"{where} holds NaN/inf; retrain the reward model")
        tolerance = 1e-9 * (1.0 + float(np.abs(values).max()))  # np.quantile rounding
        if np.any(np.diff(levels) <= 0) or np.any(np.diff(values) < -tolerance) or levels[0] < 0 or levels[-1] > 1:
            raise LatentrmError(f"{where}: levels must increase within [0, 1] and values must not decrease")
        return cls(levels, np.maximum.accumulate(values))

    def cdf(self, scores: np.ndarray) -> np.ndarray:
        """F(s) = P(X <= s), linear between quantiles, 0 below the lowest, 1 above the highest: [n] -> [n]."""
        # A tied stretch of quantile values is a point mass: F jumps there from the lowest to
        # the highest level of the tie (right-continuous), and is linear between distinct values.
        unique, first = np.unique(self.values, return_index=True)  # first index of each distinct value
        _, last_rev = np.unique(self.values[::-1], return_index=True)
        low = self.levels[first]  # [u]
        high = self.levels[len(self.values) - 1 - last_rev]  # [u]
        scores = np.asarray(scores, dtype=np.float64)
        i = np.clip(np.searchsorted(unique, scores, side="right") - 1, 0, len(unique) - 1)  # v_i <= s
        j = np.minimum(i + 1, len(unique) - 1)
        span = np.where(j > i, unique[j] - unique[i], 1.0)
        fraction = np.clip((scores - unique[i]) / span, 0.0, 1.0)
        cdf = high[i] + fraction * np.where(j > i, low[j] - high[i], 0.0)
        return np.where(scores < unique[0], 0.0, np.where(scores >= unique[-1], 1.0, cdf))

    def quantile(self, level: float) -> float:
        return float(np.interp(level, self.levels, self.values))


def _chosen_tables(meta: Mapping[str, Any], shaper: str) -> dict[str, QuantileTable]:
    tables = meta.get("chosen_quantiles")
    if not isinstance(tables, Mapping) or "all" not in tables:
        raise LatentrmError(
            f"reward shaper '{shaper}' needs chosen_quantiles (with an 'all' entry) in rm.json; "
            "retrain with `latentrm rm train`, or use the 'raw' shaper"
        )
    return {str(key): QuantileTable.from_meta(entry, f"rm.json chosen_quantiles['{key}']")
            for key, entry in tables.items()}


def _table_for(tables: Mapping[str, QuantileTable], subset: str | None, shaper: str) -> QuantileTable:
    key = "all" if subset is None else subset
    if key not in tables:
        known = ", ".join(sorted(k for k in tables if k != "all"))
        raise LatentrmError(
            f"reward shaper '{shaper}': subset '{subset}' is not in the reward model's chosen_quantiles "
            f"(known: {known}); pass one of those or no subset (uses 'all')"
        )
    return tables[key]


def _per_subset(scores: np.ndarray, subsets: Sequence[str | None],
                apply: Callable[[str | None, np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.empty_like(scores)
    names = np.asarray(["\0none" if s is None else str(s) for s in subsets], dtype=object)
    for name in dict.fromkeys(names.tolist()):
        rows = names == name
        out[rows] = apply(None if name == "\0none" else name, scores[rows])
    return out


def _finite_param(name: str, value: Any, low: float, high: float, shaper: str, *, open_low: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LatentrmError(f"reward shaper '{shaper}': {name}={value!r} is not a number") from None
    ok = (number > low if open_low else number >= low) and number <= high
    if not np.isfinite(number) or not ok:
        bracket = "(" if open_low else "["
        raise LatentrmError(f"reward shaper '{shaper}': {name}={value!r} must be in {bracket}{low}, {high}]")
    return number


# --------------------------------------------------------------------------- shapers


@register_shaper("raw", needs_subsets=False)
def raw_shaper(meta: Mapping[str, Any]) -> Shaper:
    return Shaper("raw", {}, lambda scores, subsets, std: scores.copy())


@register_shaper("calibrated")
def calibrated_shaper(meta: Mapping[str, Any], tau: float = 0.5) -> Shaper:
    tau = _finite_param("tau", tau, 0.0, 1.0, "calibrated", open_low=True)
    tables = _chosen_tables(meta, "calibrated")

    def shape(scores: np.ndarray, subsets: Sequence[str | None], std: np.ndarray | None) -> np.ndarray:
        def apply(subset: str | None, rows: np.ndarray) -> np.ndarray:
            return np.minimum(_table_for(tables, subset, "calibrated").cdf(rows), tau) / tau

        return _per_subset(scores, subsets, apply)

    return Shaper("calibrated", {"tau": tau}, shape)


@register_shaper("capped")
def capped_shaper(meta: Mapping[str, Any], quantile: float = 0.5) -> Shaper:
    quantile = _finite_param("quantile", quantile, 0.0, 1.0, "capped")
    tables = _chosen_tables(meta, "capped")

    def shape(scores: np.ndarray, subsets: Sequence[str | None], std: np.ndarray | None) -> np.ndarray:
        def apply(subset: str | None, rows: np.ndarray) -> np.ndarray:
            return np.minimum(rows, _table_for(tables, subset, "capped").quantile(quantile))

        return _per_subset(scores, subsets, apply)

    return Shaper("capped", {"quantile": quantile}, shape)


@register_shaper("ensemble", needs_subsets=False)
def ensemble_shaper(meta: Mapping[str, Any], k: float = 1.0) -> Shaper:
    k = _finite_param("k", k, 0.0, 100.0, "ensemble")

    def shape(scores: np.ndarray, subsets: Sequence[str | None], std: np.ndarray | None) -> np.ndarray:
        if std is None:
            raise LatentrmError(
                "reward shaper 'ensemble' needs the per-head std of an ensemble reward model; "
                "this model gives one score per item, so use 'raw', 'calibrated' or 'capped'"
            )
        if np.any(std < 0) or not np.isfinite(std).all():
            raise LatentrmError("reward shaper 'ensemble': std must be finite and >= 0")
        return scores - k * std

    return Shaper("ensemble", {"k": k}, shape, needs_std=True)


@register_shaper("quantile_match")
def quantile_match_shaper(meta: Mapping[str, Any]) -> Shaper:
    tables = _chosen_tables(meta, "quantile_match")

    def shape(scores: np.ndarray, subsets: Sequence[str | None], std: np.ndarray | None,
              groups: np.ndarray) -> np.ndarray:
        out = np.empty_like(scores)
        keys = np.asarray([f"{g!r}\0{s!r}" for g, s in zip(groups.tolist(), subsets)], dtype=object)
        for key in dict.fromkeys(keys.tolist()):  # one group = one prompt (and so one class)
            rows = np.flatnonzero(keys == key)
            table = _table_for(tables, subsets[rows[0]], "quantile_match")
            size = len(rows)
            order = rows[np.argsort(scores[rows], kind="stable")]  # rank k = 1..G, ascending
            targets = np.array([table.quantile((k - 0.5) / size) for k in range(1, size + 1)])  # [G]
            out[order] = -np.abs(scores[order] - targets)
        return out

    return Shaper("quantile_match", {}, shape, needs_groups=True)


@register_shaper("density")
def density_shaper(meta: Mapping[str, Any], bandwidth: float = 1.0) -> Shaper:
    from scipy.stats import gaussian_kde

    bandwidth = _finite_param("bandwidth", bandwidth, 0.0, 100.0, "density", open_low=True)
    tables = _chosen_tables(meta, "density")
    kdes: dict[str, Any] = {}
    for key, table in tables.items():
        # Each stored quantile stands for the probability mass around its level (midpoint rule).
        edges = np.concatenate([[table.levels[0]], (table.levels[1:] + table.levels[:-1]) / 2, [table.levels[-1]]])
        weights = np.diff(edges)
        spread = float(np.std(table.values))
        # A point mass (every chosen score equal) has no KDE; jitter within 1e-3 of its scale.
        points = table.values if spread > 0 else table.values + np.linspace(-1e-3, 1e-3, len(table.values)) * (
            1.0 + abs(float(table.values[0])))
        kde = gaussian_kde(points, weights=weights if weights.sum() > 0 else None)
        kde.set_bandwidth(kde.factor * bandwidth)
        kdes[key] = kde

    def shape(scores: np.ndarray, subsets: Sequence[str | None], std: np.ndarray | None) -> np.ndarray:
        def apply(subset: str | None, rows: np.ndarray) -> np.ndarray:
            _table_for(tables, subset, "density")  # same error as the others for an unknown subset
            return np.asarray(kdes["all" if subset is None else subset].logpdf(rows), dtype=np.float64)

        return _per_subset(scores, subsets, apply)

    return Shaper("density", {"bandwidth": bandwidth}, shape)
