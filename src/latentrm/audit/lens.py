"""Interpretability probe: the reward direction read through the backbone's unembedding (a logit lens).

For linear-family heads (`linear`, `projection_sum`, and ensembles of them) the score is
`w . (x - mu) / sigma + b`, so the direction in the raw residual stream is `w / sigma`
(`head.direction()` is in the standardised space; dividing by `head.standardize.std`
maps it back). Passing that direction through the final norm's gain and the LM head,
`W_U (gamma * d)`, gives the tokens whose logits the reward direction raises and lowers:
the words the reward "points at". It is a lens, not a proof: at middle layers the
residual stream is not yet in the unembedding's basis, so read it as a hint. MLP heads
have no single direction and are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latentrm.audit.context import AuditContext, ProbeResult, register_probe
from latentrm.errors import LatentrmError


def raw_direction(head: Any) -> np.ndarray:
    """The head's reward direction in raw feature space `[hidden]` (standardised direction / std)."""
    direction = head.direction().detach().float()  # [hidden], standardised space
    return (direction / head.standardize.std.detach().float()).numpy()


def _final_norm(model: Any) -> Any:
    base = getattr(model, getattr(model, "base_model_prefix", ""), None) or getattr(model, "base_model", model)
    for attribute in ("norm", "final_layernorm", "ln_f", "final_layer_norm", "norm_f"):
        module = getattr(base, attribute, None)
        if module is not None:
            return module
    return None


def lens_logits(direction: np.ndarray, model: Any) -> np.ndarray:
    """`W_U (gamma * d)` `[vocab]` for a raw-space direction `d` `[hidden]`."""
    import torch
    from torch import nn

    unembedding = model.get_output_embeddings()
    if unembedding is None:
        raise LatentrmError(f"{type(model).__name__} has no output embeddings; the logit lens needs an LM head")
    vector = torch.as_tensor(direction, dtype=torch.float32)  # [hidden]
    norm = _final_norm(model)
    if isinstance(norm, nn.LayerNorm):
        vector = vector - vector.mean()  # LayerNorm removes the mean direction
    weight = getattr(norm, "weight", None)
    if weight is not None:
        vector = vector * weight.detach().float().cpu()
    with torch.no_grad():
        return (unembedding.weight.detach().float().cpu() @ vector).numpy()  # [vocab]


def top_tokens(logits: np.ndarray, tokenizer: Any, k: int = 20) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The k highest and k lowest tokens of a `[vocab]` logit vector, decoded."""
    order = np.argsort(logits)

    def rows(indices: np.ndarray) -> list[dict[str, Any]]:
        return [{"token": tokenizer.decode([int(i)]), "id": int(i), "logit": float(logits[i])} for i in indices]

    return rows(order[::-1][:k]), rows(order[:k])


@register_probe("interpretability")
def interpretability_probe(ctx: AuditContext, k: int = 20) -> ProbeResult:
    rm = ctx.rm
    if rm is None:
        return ProbeResult("interpretability", "skip", "needs a LatentRewardModel (not a bare scorer)")
    try:
        direction = raw_direction(rm.head)
    except LatentrmError as exc:
        return ProbeResult("interpretability", "skip", f"{exc}; the lens needs a linear-family head")
    logits = lens_logits(direction, rm.backbone.model)
    tokenizer = rm.backbone.tokenizer
    top, bottom = top_tokens(logits, tokenizer, k)
    note_ids = set()
    for note in ctx.steering:
        note_ids.update(tokenizer(note, add_special_tokens=False)["input_ids"])
        note_ids.update(tokenizer(" " + note, add_special_tokens=False)["input_ids"])
    top50 = {int(i) for i in np.argsort(logits)[::-1][:50]}
    shared = sorted(tokenizer.decode([i]) for i in top50 & note_ids)
    layers = getattr(rm.head, "layers", None) or [rm.layer]  # a layer ensemble reads several
    numbers = {"layer": rm.layer, "layers": list(layers), "head": rm.meta["head"]["type"], "top": top,
               "bottom": bottom, "direction_norm": float(np.linalg.norm(direction)),
               "steering_tokens_in_top50": shared}

    def show(items: list[dict[str, Any]]) -> str:
        return " ".join(repr(r["token"].strip() or r["token"]) for r in items[:8])

    where = f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(map(str, layers))} (mean)"
    return ProbeResult("interpretability", "info", f"lens at {where}: reward raises {show(top)}; "
                       f"lowers {show(bottom)}", numbers)
