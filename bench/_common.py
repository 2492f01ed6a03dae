"""Shared pieces of the benchmarks: the scoring workload, the bare truncated forward (the floor), timing.

Not a benchmark itself. The scripts next to it import it as `_common` (running `python bench/x.py`
puts `bench/` on `sys.path`).
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PAIRS = REPO / "examples" / "pairs.jsonl"


@dataclass(frozen=True)
class Item:
    prompt: str
    completion: str
    subset: str  # "fake" or "real": the judge's prompt kind


def read_pairs(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pandas as pd

        return list(pd.read_parquet(path).to_dict("records"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scoring_items(n: int, files: Sequence[Path] = (EXAMPLE_PAIRS,)) -> tuple[list[Item], int]:
    """`n` (prompt, completion) items: each pair's chosen and rejected completion, then, if that is too few,
    prompts crossed with the completions of the pair `shift` places on (still real prompts and real answers,
    so lengths stay realistic). Returns (items, how many are crossed)."""
    pairs = [row for path in files for row in read_pairs(Path(path))]
    if not pairs:
        raise SystemExit(f"no pairs in {', '.join(map(str, files))}")
    items = [Item(p["prompt"], p[side], str(p.get("subset", "fake"))) for p in pairs for side in ("chosen", "rejected")]
    direct = len(items)
    shift = 1
    while len(items) < n:
        for i, p in enumerate(pairs):
            other = pairs[(i + shift) % len(pairs)]
            items.append(Item(p["prompt"], other["chosen" if shift % 2 else "rejected"], str(p.get("subset", "fake"))))
        shift += 1
    return items[:n], max(0, n - direct)


def chunks(values: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


def truncated_decoder(model: Any, layer: int) -> Any:
    """The bare floor: the backbone's decoder (no LM head) cut to its first `layer` blocks, final norm removed.

    A shallow copy that shares every weight with `model` (nothing is copied, the caller's model is not
    changed): its own module dict, a ModuleList of the first `layer` blocks, and a config copy whose
    `num_hidden_layers` is `layer`. Its `last_hidden_state` is the output of block `layer`, the same
    tensor `get_hiddens` captures with its hook.
    """
    from torch import nn

    from latentrm.features import decoder_layers

    base = model.base_model
    blocks = decoder_layers(model)
    name = next(key for key, module in base.named_children() if module is blocks)
    floor = copy.copy(base)
    floor._modules = dict(base._modules)
    setattr(floor, name, nn.ModuleList(list(blocks)[:layer]))
    if hasattr(floor, "norm"):
        floor.norm = nn.Identity()
    floor.config = copy.deepcopy(base.config)
    floor.config.num_hidden_layers = layer
    if getattr(floor.config, "layer_types", None):
        floor.config.layer_types = floor.config.layer_types[:layer]
    return floor


def padded_batches(tokenizer: Any, texts: Sequence[Any], batch_size: int, max_tokens: int = 16384) -> list[dict]:
    """The exact padded batches `get_hiddens` builds for `texts` (same length sort, packing and padding),
    built ahead of time so the floor's timed loop does nothing but forward passes."""
    import torch

    from latentrm.features import _batches, _encode

    encoded, _ = _encode(tokenizer, texts, 2048)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for batch in _batches([len(e.ids) for e in encoded], batch_size, max_tokens):
        width = max(len(encoded[i].ids) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : len(encoded[index].ids)] = torch.tensor(encoded[index].ids)
            mask[row, : len(encoded[index].ids)] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out.append({"input_ids": ids, "attention_mask": mask, "position_ids": positions, "rows": batch})
    return out


def run_floor(floor: Any, batches: Sequence[dict], device: Any) -> list[Any]:
    """Forward passes only; returns each batch's last hidden state `[batch, seq, hidden]`."""
    import torch

    outputs = []
    with torch.inference_mode():
        for batch in batches:
            out = floor(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                        position_ids=batch["position_ids"].to(device), use_cache=False)
            outputs.append(out.last_hidden_state)
    return outputs


def timed(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """The run order for one round: rotate so each method goes first equally often."""
    k = round_index % len(names)
    return list(names[k:]) + list(names[:k])


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(header)))
             + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
