"""Benchmark: the cost of one reward, the same (prompt, completion) items scored four ways side by side.

    PYTHONPATH=src .venv/bin/python bench/reward_cost.py                    # 512 items, layer 21 of 30; ~5 min on 2 idle cores
    PYTHONPATH=src .venv/bin/python bench/reward_cost.py --n 64 --judge-n 8  # a quick look
    PYTHONPATH=src .venv/bin/python bench/reward_cost.py --rm runs/quick/rm  # a trained reward model

On one backbone (the embedded SmolLM2-135M-Instruct unless `--model`):

(a) latent: `LatentRewardModel.score`, exactly what `latentrm rm score`, the reward server and the RL
    reward call: render the chat template, tokenize, truncated forward to the RM's layer, pool, head.
    With no `--rm`, an untrained `--head` at `--layer` (scoring cost does not depend on head weights).
(b) seqcls: a full-depth `AutoModelForSequenceClassification` over the same weights (num_labels=1,
    untrained score head), what TRL's `RewardTrainer` trains; the same rendering, tokenized per batch,
    given the same length-sorted batches as (a) (so it gets the same low padding).
(c) judge: the project's `llm` judge (`judges/llm.py`) on the same backbone: its rubric prompt with the
    question and the answer, prefilled with `LABEL:`, greedy, `--judge-tokens` new tokens (8, and the judge's
    default 32, as two methods), one attempt
    (no retry, so a lower bound on the judge's cost). Run on a subsample (`--judge-n`) and reported per
    judged completion.
(floor) a bare truncated forward: the decoder cut to the RM's layer (shared weights, no LM head, no
    final norm) over the exact padded batches (a) builds, pre-built, so the timed loop is forward passes
    only. Checked to give (a)'s features before timing.

The items are split into rounds of `--chunk`; every round runs all methods on the same items, in an
order rotated each round, so drifting load on a shared machine hits all alike. Ratios are reported as
the median over rounds, with the ratio of the totals next to it.

Goals (issue 14): (a) at least 0.8 x (num_layers / layer) faster than (b); at least 20x cheaper than
(c); within 1.3x of the floor.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    EXAMPLE_PAIRS,
    chunks,
    median_ratio,
    padded_batches,
    rotated,
    run_floor,
    scoring_items,
    table,
    timed,
    truncated_decoder,
)


@dataclass
class Round:
    items: list  # [Item]
    batches: list[dict[str, Any]]  # the padded batches get_hiddens builds for these items, pre-built


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--rm", type=Path, help="a saved reward model (default: untrained head at --layer)")
    parser.add_argument("--layer", type=int, default=21, help="RM layer without --rm (quick preset picks 21 of 30)")
    parser.add_argument("--head", default="mlp", help="head type without --rm")
    parser.add_argument("--pairs", type=Path, action="append", help=f"pairs file(s) (default {EXAMPLE_PAIRS.name})")
    parser.add_argument("--n", type=int, default=512, help="items scored by (a), (b) and the floor")
    parser.add_argument("--chunk", type=int, default=64, help="items per round")
    parser.add_argument("--batch-size", type=int, default=16, help="scoring batch size (rm score's default)")
    parser.add_argument("--judge-n", type=int, default=64, help="items judged by (c), spread over the rounds")
    parser.add_argument("--judge-tokens", type=int, nargs="+", default=[8, 32],
                        help="new tokens of the judge's verdict; each value is a method (32 is the llm judge's default)")
    parser.add_argument("--judge-batch", type=int, default=8)
    parser.add_argument("--no-judge", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from latentrm.features import decoder_layers
    from latentrm.generation import TransformersBackend
    from latentrm.judges.base import JudgeInput, labels_for
    from latentrm.judges.llm import LLMJudge, parse_reply, rubric_messages
    from latentrm.models import load_backbone, render_for_scoring, render_generation_prompt
    from latentrm.rm.heads import make_head
    from latentrm.rm.model import LatentRewardModel

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    backbone = load_backbone(args.model, dtype=args.dtype, device=args.device)
    tok, device = backbone.tokenizer, backbone.device
    if args.rm:
        rm = LatentRewardModel.load(args.rm, backbone)
    else:
        torch.manual_seed(0)
        head = make_head(args.head, backbone.hidden_size)
        head.standardize.fit(torch.randn(16, backbone.hidden_size))
        rm = LatentRewardModel.from_head(backbone, head, layer=args.layer)
    layer, total_layers = rm.layer, backbone.num_layers
    floor = truncated_decoder(backbone.model, layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seqcls = AutoModelForSequenceClassification.from_pretrained(str(backbone.path), num_labels=1,
                                                                    dtype=next(backbone.model.parameters()).dtype)
    seqcls.config.pad_token_id = tok.pad_token_id
    seqcls.to(device).eval().requires_grad_(False)
    assert len(decoder_layers(seqcls)) == total_layers
    backend = TransformersBackend(backbone, progress=False)
    judges = {budget: LLMJudge(backend=backend, use_cache=False, max_new_tokens=budget, batch_size=args.judge_batch)
              for budget in sorted(set(args.judge_tokens))}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    items, crossed = scoring_items(args.n, args.pairs or [EXAMPLE_PAIRS])

    def make_round(chunk: list) -> Round:
        texts = [render_for_scoring(tok, i.prompt, i.completion) for i in chunk]
        return Round(chunk, padded_batches(tok, texts, args.batch_size))

    rounds = [make_round(chunk) for chunk in chunks(items, args.chunk)]
    n_tokens = sum(int(b["attention_mask"].sum()) for r in rounds for b in r.batches)
    padded = sum(b["attention_mask"].numel() for r in rounds for b in r.batches)
    judge_per_round = 0 if args.no_judge else min(args.chunk, math.ceil(args.judge_n / len(rounds)))

    def judge_inputs(chunk: list) -> list[JudgeInput]:
        return [JudgeInput(question=i.prompt, kind=i.subset, response=i.completion) for i in chunk[:judge_per_round]]

    judge_tokens = sum(len(tok(render_generation_prompt(tok, rubric_messages(j), "LABEL:"),
                               add_special_tokens=False)["input_ids"])
                       for r in rounds for j in judge_inputs(r.items))

    # Correctness of the floor: the RM's features are the floor's last-token states.
    check = make_round(rounds[0].items[: args.batch_size])
    features = torch.from_numpy(rm.features([i.prompt for i in check.items], [i.completion for i in check.items],
                                            batch_size=args.batch_size))
    for batch, hidden in zip(check.batches, run_floor(floor, check.batches, device), strict=True):
        last = batch["attention_mask"].sum(-1) - 1
        pooled = hidden.float().cpu()[torch.arange(len(last)), last]
        if not torch.allclose(pooled, features[torch.tensor(batch["rows"])], atol=1e-4, rtol=1e-4):
            raise SystemExit("the floor does not reproduce the reward model's features; the comparison is void")

    def run_latent(r: Round) -> None:
        rm.score([i.prompt for i in r.items], [i.completion for i in r.items], batch_size=args.batch_size)

    def run_seqcls(r: Round) -> None:
        with torch.inference_mode():
            for batch in r.batches:  # the same length-sorted grouping as (a)
                rendered = [render_for_scoring(tok, r.items[row].prompt, r.items[row].completion).text
                            for row in batch["rows"]]
                enc = tok(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                scores = seqcls(**enc, use_cache=False).logits  # [batch, 1]
                assert scores.shape == (len(rendered), 1)

    methods: dict[str, Callable[[Round], object]] = {
        "latent": run_latent, "floor": lambda r: run_floor(floor, r.batches, device), "seqcls": run_seqcls}
    replies: dict[str, list[tuple[str, str]]] = {}  # judge name -> (kind, reply)

    def make_judge_run(name: str, judge: LLMJudge) -> Callable[[Round], object]:
        def run(r: Round) -> None:
            inputs = judge_inputs(r.items)
            replies[name] += [(i.kind, text) for i, text in zip(inputs, judge._ask(inputs, 0), strict=True)]

        return run

    if judge_per_round:
        for budget, judge in judges.items():
            methods[f"judge@{budget}"] = make_judge_run(f"judge@{budget}", judge)
    warm = make_round(rounds[0].items[:4])
    for name, fn in methods.items():
        replies[name] = []
        fn(warm)
        replies[name] = []
    print(f"model {args.model}: {total_layers} layers, hidden {backbone.hidden_size}, {backbone.dtype_name}, "
          f"device {device}, threads {torch.get_num_threads()} | RM layer {layer} ({rm.meta['head']['type']} head"
          f"{', untrained' if not args.rm else ''}) | {len(items)} items ({crossed} with a crossed prompt), "
          f"{n_tokens} tokens ({n_tokens / len(items):.0f}/item, padding {padded / n_tokens - 1:.1%}), batch "
          f"{args.batch_size}, {len(rounds)} rounds of {args.chunk}")
    n_judged = judge_per_round * len(rounds)
    if judge_per_round:
        print(f"judge: a subsample of {n_judged} items ({judge_per_round} per round), {judge_tokens / n_judged:.0f} "
              f"prompt tokens/item (rubric + question + answer), {' and '.join(map(str, judges))} new tokens, "
              f"greedy, batch {args.judge_batch}, one attempt; its cost is reported per judged item")
    sys.stdout.flush()

    seconds: dict[str, list[float]] = {name: [] for name in methods}
    started = time.perf_counter()
    for index in range(len(rounds)):
        for name in rotated(list(methods), index):
            elapsed, _ = timed(lambda name=name, r=rounds[index]: methods[name](r), sync)
            seconds[name].append(elapsed)
        print(f"round {index + 1}/{len(rounds)}: " + ", ".join(f"{name} {seconds[name][-1]:.1f} s" for name in methods),
              file=sys.stderr, flush=True)
    wall = time.perf_counter() - started

    def judged(name: str) -> bool:
        return name.startswith("judge@")

    per_item = {name: [s / (judge_per_round if judged(name) else len(rounds[i].items)) for i, s in enumerate(values)]
                for name, values in seconds.items()}
    totals = {name: sum(values) for name, values in seconds.items()}
    count = {name: n_judged if judged(name) else len(items) for name in methods}
    labels = {"latent": f"(a) latent RM, truncated at layer {layer}",
              "seqcls": f"(b) seq-classification RM, all {total_layers} layers",
              "floor": f"floor: bare forward to layer {layer}"}
    for budget in judges:
        parsed = sum(parse_reply(text, labels_for(kind)) is not None for kind, text in replies.get(f"judge@{budget}", []))
        labels[f"judge@{budget}"] = f"(c) LLM judge, {budget}-token verdict ({parsed}/{n_judged} parsable)"
    order = ["latent", "seqcls", *[name for name in methods if judged(name)], "floor"]
    rows = [[labels[name], str(count[name]), f"{1000 * totals[name] / count[name]:.1f}",
             f"{1000 * statistics.median(per_item[name]):.1f}", f"{count[name] / totals[name]:.2f}"]
            for name in order if name in methods]
    print(table(["method", "items", "ms/item (total)", "ms/item (median round)", "items/s"], rows))

    def ratio(a: str, b: str) -> tuple[float, float]:
        """(median over rounds, ratio of the totals) of per-item time a / per-item time b."""
        return (median_ratio(per_item[a], per_item[b]),
                (totals[a] / count[a]) / (totals[b] / count[b]))

    goal_b = 0.8 * total_layers / layer
    lines = []
    b_over_a = ratio("seqcls", "latent")
    lines.append(("b/a", *b_over_a, f"(a) is {b_over_a[0]:.2f}x faster than (b); goal >= 0.8 x {total_layers}/{layer}"
                  f" = {goal_b:.2f}x", b_over_a[0] >= goal_b))
    for name in order:
        if judged(name):
            c_over_a = ratio(name, "latent")
            lines.append((f"c/a ({name.split('@')[1]} tokens)", *c_over_a,
                          f"(a) is {c_over_a[0]:.1f}x cheaper than (c) per completion; goal >= 20x", c_over_a[0] >= 20))
    a_over_floor = ratio("latent", "floor")
    lines.append(("a/floor", *a_over_floor, f"(a) costs {a_over_floor[0]:.2f}x the bare forward; goal <= 1.30x",
                  a_over_floor[0] <= 1.3))
    print(table(["ratio", "median round", "totals", "reading", "goal met"],
                [[name, f"{median:.3f}", f"{total:.3f}", reading, "yes" if met else "NO"]
                 for name, median, total, reading, met in lines]))
    print(f"timed wall time {wall:.0f} s")
    return {name: median for name, median, _, _, _ in lines}


if __name__ == "__main__":
    main()
