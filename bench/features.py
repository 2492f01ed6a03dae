"""Benchmark: truncated feature extraction, cache hits and head training, side by side in one run.

    .venv/bin/python bench/features.py                 # embedded model, layer 15, 96 texts
    .venv/bin/python bench/features.py --model Qwen/Qwen3-8B --layer 18 --device cuda

Prints three ratios measured in the same process:
1. tokens/s of `get_hiddens` truncated at layer L vs a full forward with
   `output_hidden_states=True` (what a naive extractor does); expect about
   total_layers / L, a bit more since the LM head is skipped too;
2. time of a cache hit vs the extraction that filled the cache;
3. head-training time for 5,000 cached pairs vs one extraction pass over those
   pairs (10,000 texts). The pass is projected from the measured tokens/s, since
   running it would take ~20 min on 2 CPU cores; the projection is labelled.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch


def _texts(n: int) -> tuple[list[str], list[str]]:
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(0)
    prompts = [f"What were the main research contributions of Dr. {fake.name()}, who worked at "
               f"{fake.company()} on {fake.bs()}?" for _ in range(n)]
    completions = [" ".join(fake.sentences(4)) for _ in range(n)]
    return prompts, completions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--n-texts", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--pairs", type=int, default=5000)
    args = parser.parse_args()

    from latentrm.features import extract_features, get_hiddens
    from latentrm.models import load_backbone, render_for_scoring
    from latentrm.rm.train import TrainConfig, train_head

    backbone = load_backbone(args.model, dtype=args.dtype, device=args.device)
    tok, model = backbone.tokenizer, backbone.model
    prompts, completions = _texts(args.n_texts)
    texts = [render_for_scoring(tok, p, c) for p, c in zip(prompts, completions)]
    n_tokens = sum(len(tok(t.text, add_special_tokens=False)["input_ids"]) for t in texts)
    print(f"model {args.model}: {backbone.num_layers} layers, hidden {backbone.hidden_size}, device {backbone.device}, "
          f"{args.n_texts} texts, {n_tokens} tokens, threads {torch.get_num_threads()}")

    def sync() -> None:
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()

    get_hiddens(model, tok, texts[:4], [args.layer])  # warm-up
    sync()
    start = time.perf_counter()
    get_hiddens(model, tok, texts, [args.layer], batch_size=args.batch_size)
    sync()
    truncated_s = time.perf_counter() - start

    # The naive baseline: full forward (all layers + LM head) with every hidden state returned.
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), args.batch_size):
            batch = tok([t.text for t in texts[i : i + args.batch_size]], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(backbone.device)
            model(**batch, output_hidden_states=True, use_cache=False)
    sync()
    full_s = time.perf_counter() - start
    print(f"1. truncated to layer {args.layer}: {n_tokens / truncated_s:8.1f} tok/s | full forward with "
          f"output_hidden_states: {n_tokens / full_s:8.1f} tok/s | speedup {full_s / truncated_s:.2f}x "
          f"(layers ratio {backbone.num_layers / args.layer:.2f})")

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        extract_features(backbone, prompts, completions, [args.layer], cache_dir=cache, batch_size=args.batch_size)
        fill_s = time.perf_counter() - start
        start = time.perf_counter()
        extract_features(backbone, prompts, completions, [args.layer], cache_dir=cache, batch_size=args.batch_size)
        hit_s = time.perf_counter() - start
    print(f"2. cache fill {fill_s:.2f} s | cache hit {hit_s * 1000:.1f} ms | hit is {fill_s / hit_s:.0f}x faster")

    rng = np.random.default_rng(0)
    direction = rng.normal(size=backbone.hidden_size)
    a = rng.normal(size=(args.pairs, backbone.hidden_size)).astype(np.float32)
    b = rng.normal(size=(args.pairs, backbone.hidden_size)).astype(np.float32)
    better = (a @ direction > b @ direction)[:, None]
    chosen, rejected = np.where(better, a, b), np.where(better, b, a)
    start = time.perf_counter()
    result = train_head(chosen, rejected, config=TrainConfig(head="projection_sum"))
    train_s = time.perf_counter() - start
    tokens_per_text = n_tokens / args.n_texts
    projected_s = 2 * args.pairs * tokens_per_text / (n_tokens / truncated_s)
    print(f"3. head training on {args.pairs} cached pairs: {train_s:.1f} s ({result.epochs_run} epochs) | one "
          f"extraction pass over them (projected from measured tok/s, {tokens_per_text:.0f} tok/text): "
          f"{projected_s:.0f} s | training costs {train_s / projected_s:.3f}x an extraction pass")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
