"""Sample-based KL between a policy checkpoint and the initial policy.

`KL(pi_ckpt || pi_init) ~= mean over y ~ pi_ckpt of [log pi_ckpt(y|x) - log pi_init(y|x)]`,
with both log-probabilities taken by teacher forcing the sampled completion (plus the
end-of-turn token when the sample stopped) after `render_generation_prompt(prompt)`.
Log-probabilities use `logits / temperature`, i.e. the distribution that was sampled
when top_p = 1; with top_p < 1 the truncation is ignored, so use top_p = 1 for checkpoints.
Re-tokenising the decoded text may differ from the sampled ids in rare cases; the
estimate is then for a neighbouring sequence, which is the accepted approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def sequence_logprobs(backbone: Any, prompts: Sequence[Any], completions: Sequence[str],
                      stopped: Sequence[bool], temperature: float = 1.0, batch_size: int = 8) -> np.ndarray:
    """Sum of completion-token log-probs `[n]` under `backbone` (teacher forcing)."""
    import torch

    from latentrm.models import render_generation_prompt

    tokenizer, model = backbone.tokenizer, backbone.model
    eos = tokenizer.eos_token or ""
    rows: list[tuple[list[int], int]] = []
    for prompt, completion, stop in zip(prompts, completions, stopped):
        prefix = render_generation_prompt(tokenizer, prompt)
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(prefix + completion + (eos if stop else ""), add_special_tokens=False)["input_ids"]
        rows.append((full_ids, len(prefix_ids)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.zeros(len(rows), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # [batch, seq], right-padded
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (row_ids, _) in enumerate(chunk):
                ids[r, : len(row_ids)] = torch.tensor(row_ids)
                mask[r, : len(row_ids)] = 1
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            logp = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)  # [batch, seq-1, vocab]
            picked = logp.gather(-1, ids[:, 1:].to(logp.device)[..., None])[..., 0].cpu()  # [batch, seq-1]
            for r, (row_ids, first) in enumerate(chunk):
                # token t is predicted at position t-1; completion tokens are first..len-1
                out[start + r] = float(picked[r, first - 1 : len(row_ids) - 1].sum())
    return out


def estimate_kl(policy: Any, reference: Any, prompts: Sequence[Any], completions: Sequence[str],
                stopped: Sequence[bool], temperature: float = 1.0) -> dict[str, float]:
    """KL(policy || reference) from samples of `policy`: `{kl, se, n}` (per-sequence, in nats)."""
    diff = (sequence_logprobs(policy, prompts, completions, stopped, temperature)
            - sequence_logprobs(reference, prompts, completions, stopped, temperature))  # [n]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return {"kl": float(diff.mean()) if len(diff) else float("nan"), "se": se, "n": int(len(diff))}
