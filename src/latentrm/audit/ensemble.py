"""Ensemble probe: where the heads of an ensemble reward model disagree.

For an `EnsembleHead` (`latentrm rm train --ensemble K`, see `latentrm.rm.ensemble`) the
per-head scores `[K, n]` of the scored set give, per completion, the std across heads
(the quantity the RL `ensemble` shaper subtracts), and, per pair, whether the heads agree
on which side is better. Flagged when more than 10% of a subset's pairs are contested
(some heads prefer chosen, others rejected): there the reward is not a property of the
data but of the seed or resample, and a policy can walk into that region.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from latentrm.audit.context import AuditContext, ProbeResult, register_probe

CONTESTED_SHARE = 0.10


def rm_per_head(rm: Any) -> Any:
    """`fn(prompts, completions) -> [K, n]` for a LatentRewardModel with an ensemble head, else None."""
    if not hasattr(rm.head, "forward_all"):
        return None
    from latentrm.rm.ensemble import member_scores

    def per_head(prompts: Sequence[Any], completions: Sequence[str]) -> np.ndarray:
        return member_scores(rm.head, rm.features(prompts, completions))  # [K, n]

    return per_head


@register_probe("ensemble")
def ensemble_probe(ctx: AuditContext, k: int = 10) -> ProbeResult:
    if ctx.per_head is None:
        return ProbeResult("ensemble", "skip", "single head; train with --ensemble K to see head disagreement")
    from latentrm.models import prompt_text

    scored = ctx.scored
    per_head = np.asarray(ctx.per_head(scored.prompts, scored.completions), dtype=float)  # [K, n]
    heads = per_head.shape[0]
    std = per_head.std(0, ddof=1) if heads > 1 else np.zeros(per_head.shape[1])  # [n]
    most, seen = [], set()
    for i in np.argsort(std)[::-1]:
        key = (prompt_text(scored.prompts[i]), scored.completions[i])
        if key in seen:  # the same text can sit in two pairs
            continue
        seen.add(key)
        most.append({"std": float(std[i]), "mean": float(per_head[:, i].mean()), "subset": str(scored.subsets[i]),
                     "label": str(scored.labels[i]), "prompt": key[0], "completion": key[1]})
        if len(most) == k:
            break
    by_subset: dict[str, dict[str, Any]] = {}
    flags = []
    for name in sorted(set(scored.subsets.tolist())):
        members = scored.subsets == name
        entry: dict[str, Any] = {"mean_std": float(std[members].mean()), "n": int(members.sum())}
        if scored.labelled:
            chosen = per_head[:, members & (scored.labels == "chosen")]  # [K, pairs]
            rejected = per_head[:, members & (scored.labels == "rejected")]
            prefers = chosen > rejected  # [K, pairs]
            contested = prefers.any(0) & ~prefers.all(0)
            entry["contested_pairs"] = float(contested.mean()) if contested.size else 0.0
            if entry["contested_pairs"] > CONTESTED_SHARE:
                flags.append(f"{name} ({entry['contested_pairs']:.0%} of pairs)")
        by_subset[name] = entry
    numbers = {"heads": heads, "by_subset": by_subset, "most_disputed": most,
               "scale": scored.scale(), "mean_std": float(std.mean())}
    if flags:
        return ProbeResult("ensemble", "flag", f"{heads} heads disagree on the order of pairs in " + ", ".join(flags),
                           numbers)
    top = most[0] if most else {"std": 0.0, "subset": "-"}
    return ProbeResult("ensemble", "pass", f"{heads} heads agree on pair order (mean std {std.mean():.3f}, "
                       f"largest {top['std']:.3f} on a {top['subset']} completion)", numbers)
