"""Benchmark: the feature pipeline, truncated extraction against the bare forward and a naive full forward,
cached against uncached, and head training, side by side in one run.

    PYTHONPATH=src .venv/bin/python bench/features.py                 # embedded model, layer 15, 96 texts, 3 rounds
    PYTHONPATH=src .venv/bin/python bench/features.py --model Qwen/Qwen3-8B --layer 18 --device cuda --dtype bfloat16

The texts are (prompt, completion) items of `examples/pairs.jsonl` (chosen and rejected), rendered with
`render_for_scoring`. Each round runs, on the same texts and in an order rotated each round:

- `get_hiddens` truncated at `--layer` (tokenizes, hooks the block, stops the pass, pools);
- the floor: the decoder cut to `--layer` blocks (shared weights) over the same padded batches,
  pre-built, so the loop is forward passes only;
- the naive extractor: a full forward with `output_hidden_states=True` (all blocks and the LM head),
  tokenized per batch, the same batch size;
- `extract_features` into an empty cache folder (uncached: extraction plus writing the cache);
- `extract_features` again on that folder (a cache hit: reads one `.npy`, never calls the model).

Ratios are medians over rounds. Expected: truncated/naive near total_layers / layer (a bit more, the LM
head is skipped too); truncated within a few percent of the floor; a hit hundreds of times faster.
Last, head-training time for `--pairs` cached pairs against one extraction pass over them (projected
from the measured tokens/s, since running it takes ~10 min on 2 CPU cores; the projection is labelled).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from _common import chunks, padded_batches, rotated, run_floor, scoring_items, table, timed, truncated_decoder


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--n-texts", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--pairs", type=int, default=5000)
    args = parser.parse_args(argv)

    from latentrm.features import extract_features, get_hiddens
    from latentrm.models import load_backbone, render_for_scoring
    from latentrm.rm.train import TrainConfig, train_head

    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.model, dtype=args.dtype, device=args.device)
    tok, model, device = backbone.tokenizer, backbone.model, backbone.device
    items, _ = scoring_items(args.n_texts)
    prompts, completions = [i.prompt for i in items], [i.completion for i in items]
    texts = [render_for_scoring(tok, p, c) for p, c in zip(prompts, completions)]
    batches = padded_batches(tok, texts, args.batch_size)
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    floor = truncated_decoder(model, args.layer)
    print(f"model {args.model}: {backbone.num_layers} layers, hidden {backbone.hidden_size}, {backbone.dtype_name}, "
          f"device {device}, threads {torch.get_num_threads()} | layer {args.layer}, {args.n_texts} texts, "
          f"{n_tokens} tokens, batch {args.batch_size}, {args.rounds} rounds")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def naive() -> None:
        with torch.inference_mode():
            for group in chunks([t.text for t in texts], args.batch_size):
                batch = tok(group, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                model(**batch, output_hidden_states=True, use_cache=False)

    scratch = tempfile.TemporaryDirectory(prefix="latentrm-bench-")
    folders = iter(range(10_000))
    current: dict[str, str] = {}

    def uncached() -> None:
        current["cache"] = f"{scratch.name}/{next(folders)}"
        extract_features(backbone, prompts, completions, [args.layer], cache_dir=current["cache"],
                         batch_size=args.batch_size)

    def hit() -> None:
        extract_features(backbone, prompts, completions, [args.layer], cache_dir=current["cache"],
                         batch_size=args.batch_size)

    methods = {"truncated": lambda: get_hiddens(model, tok, texts, [args.layer], batch_size=args.batch_size),
               "floor": lambda: run_floor(floor, batches, device), "naive": naive, "uncached": uncached}
    get_hiddens(model, tok, texts[:4], [args.layer])  # warm-up
    run_floor(floor, batches[:1], device)
    seconds: dict[str, list[float]] = {name: [] for name in [*methods, "hit"]}
    for index in range(args.rounds):
        for name in rotated(list(methods), index):
            seconds[name].append(timed(methods[name], sync)[0])
        seconds["hit"].append(timed(hit, sync)[0])  # right after its fill, on the folder it wrote
    scratch.cleanup()

    median = {name: statistics.median(values) for name, values in seconds.items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(seconds[a], seconds[b], strict=True))

    labels = {"truncated": f"`get_hiddens`, truncated at layer {args.layer}",
              "floor": f"floor: bare forward to layer {args.layer}",
              "naive": f"naive: full forward ({backbone.num_layers} layers + LM head), output_hidden_states",
              "uncached": "`extract_features`, uncached (extract + write cache)",
              "hit": "`extract_features`, cache hit"}
    print(table(["path", "seconds (median)", "tokens/s"],
                [[labels[name], f"{median[name]:.3f}", f"{n_tokens / median[name]:,.0f}"] for name in labels]))
    results = {"naive/truncated": ratio("naive", "truncated"), "truncated/floor": ratio("truncated", "floor"),
               "uncached/hit": ratio("uncached", "hit"), "uncached/truncated": ratio("uncached", "truncated")}
    print(table(["ratio (median over rounds)", "value", "reading"], [
        ["naive / truncated", f"{results['naive/truncated']:.2f}x",
         f"truncation speedup; layers ratio {backbone.num_layers / args.layer:.2f}"],
        ["truncated / floor", f"{results['truncated/floor']:.3f}",
         "get_hiddens overhead over bare forward passes (tokenize, hooks, pooling)"],
        ["uncached / truncated", f"{results['uncached/truncated']:.3f}", "cost of rendering + hashing + writing the cache"],
        ["uncached / hit", f"{results['uncached/hit']:,.0f}x", "a cache hit against extracting"],
    ]))

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
    projected_s = 2 * args.pairs * tokens_per_text / (n_tokens / median["truncated"])
    results["train/extraction"] = train_s / projected_s
    print(f"head training on {args.pairs} cached pairs: {train_s:.1f} s ({result.epochs_run} epochs) | one "
          f"extraction pass over them (projected from measured tok/s, {tokens_per_text:.0f} tok/text): "
          f"{projected_s:.0f} s | training costs {train_s / projected_s:.3f}x an extraction pass")
    sys.stdout.flush()
    return results


if __name__ == "__main__":
    main()
