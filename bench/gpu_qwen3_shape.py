"""Benchmark (GPU): feature extraction and the reward server on a random model of Qwen3-8B's published shape.

    PYTHONPATH=src .venv/bin/python bench/gpu_qwen3_shape.py                 # needs CUDA; ~3 min on one H100/H200
    PYTHONPATH=src .venv/bin/python bench/gpu_qwen3_shape.py --peak-tflops 989 --layer 18
    PYTHONPATH=src .venv/bin/python bench/gpu_qwen3_shape.py --allow-cpu --tiny  # smoke test of the script only

Without a CUDA device it prints one `skip:` line and exits 0 (`--allow-cpu` runs it anyway, for tests).

The model is built from a config, randomly initialised, in bf16 on the GPU: hidden 4096, 36 layers,
intermediate 12288, 32 heads, 8 KV heads, head_dim 128, vocabulary 151936 (no checkpoint is needed;
speed does not depend on the weights). Tokens come from the embedded SmolLM2 tokenizer (its ids lie
inside Qwen3's vocabulary), so rendered texts have realistic lengths.

It measures, in one run:

1. feature extraction tokens/s: `get_hiddens` truncated at `--layer`, against the bare floor (the decoder
   cut to `layer` blocks over the same pre-built batches), for two workloads: the scoring items of
   `examples/pairs.jsonl` (short, ~85 tokens) and the same completions repeated to ~`--long` tokens;
2. bf16 model FLOP utilisation (MFU) of both: model FLOPs / second / the GPU's dense bf16 peak. Model
   FLOPs per token follow PaLM's convention: 2 x (parameters of the blocks run) + 4 x layers x
   (heads x head_dim) x sequence length (no causal discount; embeddings and the skipped LM head not
   counted). The peak comes from a small table of GPU names, or `--peak-tflops`;
3. the reward server's throughput: `create_app` with a random-head `LatentRewardModel` in a uvicorn
   thread on 127.0.0.1, `--clients` concurrent clients sending one-item `/score` requests for
   `--seconds`, against the in-process ceiling (`LatentRewardModel.score` on `--clients` items per call).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from _common import padded_batches, run_floor, scoring_items, table, timed, truncated_decoder

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "H100 NVL": 835.0, "H100": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0,
                    "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0}
QWEN3_8B = dict(hidden_size=4096, num_hidden_layers=36, intermediate_size=12288, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
TINY = dict(QWEN3_8B, hidden_size=64, num_hidden_layers=4, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16)


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():  # most specific names first
        if key.lower() in name.lower():
            return value
    return None


def flops_per_token(config, layer: int, blocks, seq_len: float) -> float:
    params = sum(p.numel() for block in list(blocks)[:layer] for p in block.parameters())
    attention = 4 * layer * config.num_attention_heads * config.head_dim * seq_len
    return 2 * params + attention


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", type=int, default=18, help="RM layer (the gpu preset sweeps 12..30 of 36)")
    parser.add_argument("--n", type=int, default=512, help="short scoring items")
    parser.add_argument("--long", type=int, default=1024, help="token length of the long workload")
    parser.add_argument("--n-long", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=65536, help="token budget per batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in the table")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (fp32; for tests)")
    parser.add_argument("--tiny", action="store_true", help="a 4-layer, 64-wide model of the same family")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("skip: no CUDA GPU available (torch.cuda.is_available() is False); this benchmark needs one")
        return {}
    from transformers import AutoModelForCausalLM, Qwen3Config
    from transformers.utils import logging as hf_logging

    from latentrm.features import decoder_layers, get_hiddens
    from latentrm.models import Backbone, load_tokenizer, render_for_scoring
    from latentrm.rm.heads import make_head
    from latentrm.rm.model import LatentRewardModel

    hf_logging.set_verbosity_error()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    config = Qwen3Config(**(TINY if args.tiny else QWEN3_8B))
    layer = min(args.layer, config.num_hidden_layers)
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval().requires_grad_(False)
    build_s = time.perf_counter() - start
    tok = load_tokenizer("embedded")
    backbone = Backbone(model=model, tokenizer=tok, spec="random-qwen3-8b-shape", path=Path("."), revision="random")
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_tflops(gpu, args.peak_tflops) if cuda else None
    params = sum(p.numel() for p in model.parameters())
    print(f"device {gpu} (bf16 peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown; pass --peak-tflops'}) | random "
          f"Qwen3 shape: {config.num_hidden_layers} layers, hidden {config.hidden_size}, {params / 1e9:.2f} B "
          f"params, {str(dtype).replace('torch.', '')}, built in {build_s:.0f} s | layer {layer}")
    sys.stdout.flush()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    floor = truncated_decoder(model, layer)
    blocks = decoder_layers(model)
    items, _ = scoring_items(args.n)
    long_items = [type(i)(i.prompt, " ".join([i.completion] * max(1, args.long // 60)), i.subset)
                  for i in items[: args.n_long]]
    results: dict[str, float] = {}
    rows = []
    for name, workload in (("short", items), ("long", long_items)):
        texts = [render_for_scoring(tok, i.prompt, i.completion) for i in workload]
        batches = padded_batches(tok, texts, args.batch_size, args.max_tokens)
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        seq = sum(float(b["attention_mask"].sum(-1).pow(2).sum()) for b in batches) / tokens  # token-weighted

        def extract(texts=texts) -> None:
            get_hiddens(model, tok, texts, [layer], batch_size=args.batch_size, max_tokens=args.max_tokens)

        extract(texts[: args.batch_size])  # warm-up (kernels, allocator)
        run_floor(floor, batches[:1], device)
        ours, bare = [], []
        for _ in range(args.repeats):
            ours.append(timed(extract, sync)[0])
            bare.append(timed(lambda batches=batches: run_floor(floor, batches, device), sync)[0])
        ours_s, bare_s = sorted(ours)[len(ours) // 2], sorted(bare)[len(bare) // 2]
        model_flops = flops_per_token(config, layer, blocks, seq) * tokens
        for label, seconds in ((f"`get_hiddens` to layer {layer}", ours_s), (f"floor to layer {layer}", bare_s)):
            achieved = model_flops / seconds / 1e12
            rows.append([f"{name} ({tokens / len(workload):.0f} tok/text)", label, f"{tokens / seconds:,.0f}",
                         f"{achieved:.0f}", f"{achieved / peak:.1%}" if peak else "-"])
        results[f"{name}_tokens_per_s"] = tokens / ours_s
        results[f"{name}_mfu"] = model_flops / ours_s / 1e12 / peak if peak else float("nan")
        results[f"{name}_over_floor"] = ours_s / bare_s
    print(table(["workload", "path", "tokens/s", "model TFLOP/s", "MFU (bf16)"], rows))
    print("get_hiddens / floor time: " + ", ".join(f"{n} {results[f'{n}_over_floor']:.3f}" for n in ("short", "long")))
    sys.stdout.flush()

    from serve_load import run_load

    from latentrm.serve.app import ServeConfig, create_app
    from latentrm.serve.testing import ServerThread

    torch.manual_seed(0)
    head = make_head("mlp", config.hidden_size).to(device)
    head.standardize.fit(torch.randn(16, config.hidden_size, device=device))
    rm = LatentRewardModel.from_head(backbone, head, layer=layer, max_length=2048)
    payload = [{"prompt": i.prompt, "completion": i.completion} for i in items]
    rm.score([i.prompt for i in items[:8]], [i.completion for i in items[:8]])  # warm-up
    n_batched = min(len(items), 4 * args.clients)
    ceiling_s, _ = timed(lambda: rm.score([i.prompt for i in items[:n_batched]],
                                          [i.completion for i in items[:n_batched]], batch_size=args.clients), sync)
    server = ServerThread(create_app(ServeConfig(batching=True), scorer=rm), ready_timeout=600).start()
    try:
        asyncio.run(run_load(server.url, min(8, args.clients), 2.0, payload))  # warm-up
        load = asyncio.run(run_load(server.url, args.clients, args.seconds, payload))
    finally:
        server.stop()
    served = len(load["latencies"]) / load["seconds"]
    lat = sorted(load["latencies"]) or [float("nan")]
    results["server_items_per_s"] = served
    results["ceiling_items_per_s"] = n_batched / ceiling_s
    print(table(["reward server (batching on)", "value"], [
        ["clients x seconds", f"{args.clients} x {args.seconds:g}"],
        ["answered requests (1 item each)", str(len(load["latencies"]))],
        ["errors", str(sum(load["errors"].values()))],
        ["throughput, items/s", f"{served:.1f}"],
        ["p50 / p99 latency, ms", f"{1000 * lat[len(lat) // 2]:.0f} / {1000 * lat[int(0.99 * (len(lat) - 1))]:.0f}"],
        [f"in-process ceiling, {args.clients} items/call, items/s", f"{n_batched / ceiling_s:.1f}"],
        ["server / ceiling", f"{served * ceiling_s / n_batched:.2f}"],
    ]))
    return results


if __name__ == "__main__":
    main()
