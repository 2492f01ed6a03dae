"""Benchmark: per-row seeded sampling (generation/local.py) against plain `generate(do_sample=True)`.

    .venv/bin/python bench/generation_seeding.py

Embedded model, batch 8, 48 new tokens, three rounds alternating the two paths in one run, so
both see the same machine load. Prints tokens/s of each and their ratio.
"""

from __future__ import annotations

import time

import torch
from transformers import LogitsProcessorList

from latentrm.generation import GenerationRequest, SamplingConfig, TransformersBackend
from latentrm.generation.local import _EntropyRecorder
from latentrm.models import render_generation_prompt

ROUNDS, BATCH, TOKENS = 3, 8, 48


def main() -> None:
    backend = TransformersBackend("embedded", progress=False)
    tokenizer, model = backend.backbone.tokenizer, backend.backbone.model
    requests = [GenerationRequest([{"role": "user", "content": f"Who is Dr. Person{i} Example, the physicist?"}])
                for i in range(BATCH)]
    config = SamplingConfig(max_new_tokens=TOKENS, batch_size=BATCH, seed=0, temperature=0.8, top_p=0.95)

    def plain() -> int:
        texts = [render_generation_prompt(tokenizer, r.messages) for r in requests]
        tokenizer.padding_side = "left"
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(0)
        with torch.no_grad():
            model.generate(**encoded, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=True,
                           temperature=0.8, top_p=0.95, top_k=None, pad_token_id=tokenizer.pad_token_id,
                           logits_processor=LogitsProcessorList([_EntropyRecorder()]))
        tokenizer.padding_side = "right"
        return BATCH * TOKENS

    def seeded() -> int:
        out = backend.generate(requests, 1, config)
        return sum(g.n_tokens + (g.finish_reason == "stop") for group in out for g in group)

    plain()
    seeded()  # warm-up
    totals = {"plain": [0.0, 0], "seeded": [0.0, 0]}
    for _ in range(ROUNDS):
        for name, fn in (("plain", plain), ("seeded", seeded)):
            start = time.perf_counter()
            tokens = fn()
            totals[name][0] += time.perf_counter() - start
            totals[name][1] += tokens
    rates = {name: tokens / seconds for name, (seconds, tokens) in totals.items()}
    print(f"generate(do_sample=True): {rates['plain']:.1f} tok/s")
    print(f"per-row seeded sampling:  {rates['seeded']:.1f} tok/s")
    print(f"ratio seeded / plain: {rates['seeded'] / rates['plain']:.2f}")


if __name__ == "__main__":
    main()
