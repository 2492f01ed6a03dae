"""Small statistics used by the probes and the Goodhart curve: intervals and rank correlations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from latentrm.rm.metrics import auc  # noqa: F401  (re-exported: the audit's probes import it from here)


def mean_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Mean with a Student-t interval: `{mean, lo, hi, sd, n}` (interval is NaN for n < 2)."""
    from scipy import stats

    array = np.asarray(values, dtype=float)
    n = int(len(array))
    if n == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "sd": float("nan"), "n": 0}
    mean = float(array.mean())
    if n < 2:
        return {"mean": mean, "lo": float("nan"), "hi": float("nan"), "sd": float("nan"), "n": n}
    sd = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n}


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values).astype(float)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
             control: Sequence[Any] | np.ndarray | None = None) -> dict[str, float]:
    """Spearman rho of x and y; with `control` (a categorical, e.g. the chosen/rejected label) the partial one.

    The partial rho removes each control group's mean from the ranks of x and y (the
    ranks are taken over the whole set) and correlates the residuals: the association
    that is left *within* each label. Returns `{rho, p, n}`; rho is NaN when either side
    is constant (within groups, for the partial one). p is the usual t approximation
    with `m - 2 - (g - 1)` degrees of freedom, where m counts the points in the g
    groups in which both x and y vary (a constant group carries no evidence).
    """
    from scipy import stats

    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = int(len(x_arr))
    if n < 3:
        return {"rho": float("nan"), "p": float("nan"), "n": n}
    rx, ry = _ranks(x_arr), _ranks(y_arr)
    groups, informative = 1, n
    if control is not None:
        labels = np.asarray(control, dtype=object)
        groups, informative = 0, 0
        for value in dict.fromkeys(labels.tolist()):
            members = labels == value
            rx[members] -= rx[members].mean()
            ry[members] -= ry[members].mean()
            if np.ptp(rx[members]) > 0 and np.ptp(ry[members]) > 0:  # a constant group carries no evidence
                groups += 1
                informative += int(members.sum())
    else:
        rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum()) * float((ry**2).sum()))
    if denom <= 1e-12:
        return {"rho": float("nan"), "p": float("nan"), "n": n}
    rho = float(np.clip((rx * ry).sum() / denom, -1.0, 1.0))
    dof = informative - 2 - max(groups - 1, 0)
    if dof < 1:
        return {"rho": rho, "p": float("nan"), "n": n}
    if abs(rho) >= 1.0:
        return {"rho": rho, "p": 0.0, "n": n}
    t = rho * math.sqrt(dof / (1.0 - rho**2))
    return {"rho": rho, "p": float(2 * stats.t.sf(abs(t), dof)), "n": n}


def json_safe(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN / inf to None (strict parsers reject NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
