"""Hidden-state features: one token (or the completion mean) at chosen layers of a frozen backbone.

What it does
- `get_hiddens` runs the backbone on rendered scoring texts and returns, for each
  requested layer, one vector per text. Layer L is the output of decoder block L
  (1-indexed; 0 is the embedding output; negative L counts from the end).
- It runs a *truncated* forward: forward hooks capture the requested layers and
  the hook on the deepest one stops the pass, so blocks past it (and the LM head,
  which for a 49k vocabulary costs as much as several blocks) never run. The
  caller's model is not modified: hooks are removed in a `finally`.
- Pooling (the read-out) is explicit. `last` reads the last real token of each
  row, found from the attention mask (the end-of-turn token, since scoring texts
  end with it); `mean` averages the completion's tokens, located through the
  tokenizer's character offsets; `lastK` (e.g. `last4`) averages the last K
  completion tokens, end-of-turn included; `prompt` reads the last token before
  the completion (the end of the assistant header, where the model is about to
  answer and has "decided" whether it knows the name: the same for a pair's chosen
  and rejected). A `+` joins read-outs side by side (`prompt+mean`: `[2 * hidden]`),
  all from the same forward. Position ids are computed from the mask, so left and
  right padding give the same vectors as an unpadded pass.
- Texts are sorted by length and packed into batches under a token budget.
- `extract_features` adds a content-addressed cache: key = model revision, dtype,
  pooling (each part of a `+` read-out on its own), max_length and a hash of the
  rendered texts (never batch size or device). One `.npy` per layer is written atomically and `manifest.json` last,
  so an interrupted run never leaves a cache that looks finished. A hit does not
  load or call the model.

Departure from the seed method: the seed method reads the last token; `mean` is
offered for comparison. Over-long texts are cut from the left of the prompt (with
a warning count); the completion is never cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text
from latentrm.models import Backbone, ScoringText, render_for_scoring

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn
    from transformers import PreTrainedModel

Pooling = str  # a read-out spec: `last`, `mean`, `prompt`, `lastK`, or parts joined by `+` (see `pooling_parts`)
POOLINGS: tuple[str, ...] = ("last", "mean", "prompt")  # the base read-outs; `lastK` and `+` build on them
_LAST_K = re.compile(r"last([1-9][0-9]*)")
FEATURE_FORMAT = 1  # bump when the meaning of a cached feature changes


def pooling_parts(spec: str) -> list[str]:
    """The base read-outs of a spec, in order: `"prompt+mean"` -> `["prompt", "mean"]`; a bad spec is an error."""
    parts = [part.strip() for part in str(spec).split("+")]
    for part in parts:
        if part not in POOLINGS and not _LAST_K.fullmatch(part):
            raise LatentrmError(f"pooling '{spec}' is not valid: use last, mean, prompt, lastK (the mean of the last "
                                "K completion tokens, e.g. last4) or several joined by '+', e.g. prompt+mean")
    if len(set(parts)) != len(parts):
        raise LatentrmError(f"pooling '{spec}' repeats a part; name each read-out once")
    return parts


def stack_readout(features: Mapping[int, np.ndarray], layers: Sequence[int], parts: int = 1) -> np.ndarray:
    """`{layer: [n, parts * hidden]}` -> `[n, parts * len(layers) * hidden]`, part-major.

    Part-major (every layer's first part, then every layer's second part) keeps a two-part read-out's halves
    whole however many layers are concatenated, so a `bilinear` head splits its input in two.
    """
    missing = [layer for layer in layers if layer not in features]
    if missing:
        raise LatentrmError(f"no features for layer(s) {missing}; extract them first")
    if len(layers) == 1:
        return features[layers[0]]
    chunks = [np.split(features[layer], parts, axis=1) for layer in layers]
    return np.concatenate([chunk[part] for part in range(parts) for chunk in chunks], axis=1)


class HiddenTransform(Protocol):
    """Plug point applied to each captured layer before pooling (e.g. an SAE encoder)."""

    def __call__(self, layer: int, hidden: torch.Tensor) -> torch.Tensor: ...  # [batch, seq, hidden] -> same


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early."""


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The list of decoder blocks, for any Hugging Face causal LM.

    Rather than a table of attribute paths per architecture, take the ModuleList
    whose length equals `num_hidden_layers` (Llama, Qwen, Mistral, GPT-2, NeoX, ...).
    """
    from torch import nn

    count = int(model.config.get_text_config().num_hidden_layers)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise LatentrmError(f"cannot find the {count} decoder blocks of {type(model).__name__}; file an issue")


def resolve_layers(layers: Sequence[int], num_layers: int) -> list[int]:
    """Validate layer indices (0..num_layers, negatives from the end) and return them sorted, unique."""
    resolved = set()
    for layer in layers:
        index = num_layers + 1 + layer if layer < 0 else layer
        if not 0 <= index <= num_layers:
            raise LatentrmError(
                f"layer {layer} does not exist: the backbone has {num_layers} layers; use 0..{num_layers} "
                f"or -1..-{num_layers + 1}"
            )
        resolved.add(index)
    if not resolved:
        raise LatentrmError("no layers requested; pass e.g. --layer 15")
    return sorted(resolved)


@dataclass(frozen=True)
class _Encoded:
    ids: list[int]
    completion_start: int  # token index of the first completion token


def _encode(tokenizer, texts: Sequence[ScoringText], max_length: int) -> tuple[list[_Encoded], int]:
    """Tokenize scoring texts; left-truncate prompts that are too long. Returns (encoded, n_truncated)."""
    encoded: list[_Encoded] = []
    truncated = 0
    batch = tokenizer([t.text for t in texts], add_special_tokens=False, return_offsets_mapping=True)
    for row, (text, ids, offsets) in enumerate(zip(texts, batch["input_ids"], batch["offset_mapping"])):
        start = next((i for i, (_, end) in enumerate(offsets) if end > text.completion_start), len(ids) - 1)
        if len(ids) > max_length:
            completion_tokens = len(ids) - start
            if completion_tokens > max_length:
                raise LatentrmError(
                    f"text {row + 1}: the completion alone is {completion_tokens} tokens, over max_length "
                    f"{max_length}; raise --max-length (the completion is never cut)"
                )
            cut = len(ids) - max_length
            ids, start = ids[cut:], start - cut
            truncated += 1
        encoded.append(_Encoded(list(ids), start))
    return encoded, truncated


def _batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, packed so each padded batch stays under the token budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[index]  # sorted ascending: the newest item is the longest
        if current and (len(current) >= batch_size or width * (len(current) + 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def get_hiddens(
    model: PreTrainedModel,
    tokenizer,
    texts: Sequence[ScoringText],
    layers: Sequence[int],
    pooling: Pooling = "last",
    *,
    batch_size: int = 32,
    max_tokens: int = 16384,
    max_length: int = 2048,
    padding_side: Literal["left", "right"] = "right",
    transform: HiddenTransform | None = None,
    progress: bool = False,
) -> dict[int, torch.Tensor]:
    """Pooled hidden states `{layer: [n, parts * hidden]}` (float32, CPU) from one truncated forward per batch."""
    import torch

    parts = pooling_parts(pooling)
    if not texts:
        return {}
    num_layers = int(model.config.get_text_config().num_hidden_layers)
    wanted = resolve_layers(layers, num_layers)
    blocks = decoder_layers(model)
    encoded, truncated = _encode(tokenizer, texts, max_length)
    if truncated:
        warnings.warn(f"{truncated} text(s) were longer than max_length={max_length}; their prompts were "
                      "cut from the left (completions are never cut)", stacklevel=2)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    outputs: dict[int, torch.Tensor] = {}
    results: dict[int, list[tuple[list[int], torch.Tensor]]] = {layer: [] for layer in wanted}

    captured: dict[int, torch.Tensor] = {}
    deepest = wanted[-1]

    def make_hook(layer: int) -> Callable:
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output  # [batch, seq, hidden]
            captured[layer] = hidden
            if layer == deepest:
                raise _StopForward

        return hook

    handles = []
    if 0 in wanted:
        embed = model.get_input_embeddings()
        handles.append(embed.register_forward_hook(make_hook(0)))
    for layer in wanted:
        if layer > 0:
            handles.append(blocks[layer - 1].register_forward_hook(make_hook(layer)))

    batches = _batches([len(e.ids) for e in encoded], batch_size, max_tokens)
    from latentrm.io import progress_bar as make_progress_bar

    bar = make_progress_bar(progress, unit="texts", transient=True)
    task = bar.add_task("features", total=len(texts))
    bar.start()
    try:
        with torch.inference_mode():
            for batch in batches:
                width = max(len(encoded[i].ids) for i in batch)
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                completion = torch.zeros((len(batch), width), dtype=torch.bool)
                for row, index in enumerate(batch):
                    item = encoded[index]
                    offset = width - len(item.ids) if padding_side == "left" else 0
                    ids[row, offset : offset + len(item.ids)] = torch.tensor(item.ids)
                    mask[row, offset : offset + len(item.ids)] = 1
                    completion[row, offset + item.completion_start : offset + len(item.ids)] = True
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                captured.clear()
                try:
                    model(input_ids=ids.to(device), attention_mask=mask.to(device),
                          position_ids=positions.to(device), use_cache=False)
                except _StopForward:
                    pass
                for layer in wanted:
                    hidden = captured[layer]
                    if transform is not None:
                        hidden = transform(layer, hidden)
                    hidden = hidden.float().cpu()  # [batch, seq, hidden]
                    if not torch.isfinite(hidden).all():
                        raise LatentrmError(
                            f"layer {layer} produced NaN/inf hidden states; load the backbone in float32 "
                            "(--dtype float32) or check the model weights"
                        )
                    pooled = torch.cat([_pool(hidden, mask, completion, part) for part in parts], -1)
                    results[layer].append((batch, pooled))
                bar.advance(task, len(batch))
    finally:
        for handle in handles:
            handle.remove()
        bar.stop()

    for layer in wanted:
        hidden_size = results[layer][0][1].shape[-1]
        out = torch.empty(len(texts), hidden_size)
        for batch, pooled in results[layer]:
            out[torch.tensor(batch)] = pooled
        outputs[layer] = out
    return outputs


def _pool(hidden: torch.Tensor, mask: torch.Tensor, completion: torch.Tensor, pooling: str) -> torch.Tensor:
    """`hidden` [batch, seq, hidden], `mask` [batch, seq] -> [batch, hidden] for one base read-out."""
    import torch

    rows = torch.arange(hidden.shape[0])
    if pooling == "last":
        positions = torch.arange(mask.shape[1]).expand_as(mask) * mask  # pads score 0
        last = positions.argmax(dim=-1)  # [batch]: the last real token, left or right padding
        return hidden[rows, last]
    answer = completion & mask.bool()  # [batch, seq]
    if pooling == "prompt":
        first = answer.int().argmax(dim=-1)  # [batch]: the first completion token
        return hidden[rows, (first - 1).clamp(min=0)]
    if (match := _LAST_K.fullmatch(pooling)) is not None:
        from_end = answer.flip(-1).int().cumsum(-1).flip(-1)  # completion tokens at or after each position
        answer = answer & (from_end <= int(match.group(1)))
    weights = answer.float().unsqueeze(-1)  # [batch, seq, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


# --------------------------------------------------------------------------- cache


def texts_hash(texts: Sequence[ScoringText]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(str(text.completion_start).encode())
        digest.update(b"\0")
        digest.update(text.text.encode())
        digest.update(b"\1")
    return digest.hexdigest()


def cache_key(revision: str, dtype: str, pooling: str, max_length: int, texts_digest: str) -> str:
    """Inputs that change the features, and nothing else (not batch size, not device)."""
    payload = json.dumps({"format": FEATURE_FORMAT, "revision": revision, "dtype": dtype, "pooling": pooling,
                          "max_length": max_length, "texts": texts_digest}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class FeatureCache:
    """One folder per key; `layer_XXX.npy` per layer; `manifest.json` written last."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        return self.root / key

    def manifest(self, key: str) -> dict:
        path = self.folder(key) / "manifest.json"
        if not path.exists():
            return {"layers": []}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"layers": []}

    def has(self, key: str, layers: Sequence[int]) -> bool:
        done = set(self.manifest(key).get("layers", []))
        return all(layer in done and (self.folder(key) / f"layer_{layer:03d}.npy").exists() for layer in layers)

    def load(self, key: str, layers: Sequence[int]) -> dict[int, np.ndarray]:
        out = {}
        for layer in layers:
            array = np.load(self.folder(key) / f"layer_{layer:03d}.npy")
            if not np.isfinite(array).all():
                raise LatentrmError(f"{self.folder(key)}/layer_{layer:03d}.npy holds NaN features; delete that "
                                    "cache folder and extract again")
            out[layer] = array
        return out

    def store(self, key: str, features: dict[int, np.ndarray], info: dict) -> None:
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        for layer, array in features.items():
            target = folder / f"layer_{layer:03d}.npy"
            tmp = folder / f".layer_{layer:03d}.{os.getpid()}.tmp.npy"
            np.save(tmp, array.astype(np.float32))
            os.replace(tmp, target)
        done = sorted(set(self.manifest(key).get("layers", [])) | set(features))
        atomic_write_text(folder / "manifest.json", json.dumps({**info, "layers": done}, indent=1))


def _sharded(forward: Callable[[list[ScoringText]], dict[int, np.ndarray]], texts: list[ScoringText],
             layers: list[int], cache: FeatureCache, rank: int, world: int, barrier: Callable[[], object],
             key_of: Callable[[str], str]) -> dict[int, np.ndarray]:
    """Under torchrun / accelerate: rank r extracts the r-th contiguous shard of the texts into a cache entry of
    its own (keyed by the shard's texts, so each rank resumes independently), then every rank reads all shards
    in order. Each text's features depend on that text alone, so the result is a 1-process extraction's, up
    to float rounding of other batch shapes."""
    bounds = np.linspace(0, len(texts), world + 1).astype(int)
    shards = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    keys = [key_of(texts_hash(texts[lo:hi]) + f"#shard{i}of{world}") for i, (lo, hi) in enumerate(shards)]
    lo, hi = shards[rank]
    if hi > lo and not cache.has(keys[rank], layers):
        cache.store(keys[rank], forward(texts[lo:hi]), {"shard": rank, "of": world, "rows": [lo, hi]})
    barrier()
    parts = [cache.load(key, layers) for key, (lo, hi) in zip(keys, shards) if hi > lo]
    return {layer: np.concatenate([part[layer] for part in parts]) for layer in layers}


def extract_features(
    backbone: Backbone | Callable[[], Backbone],
    prompts: Sequence,
    completions: Sequence,
    layers: Sequence[int],
    pooling: Pooling = "last",
    *,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    dtype: str | None = None,
    tokenizer=None,
    num_layers: int | None = None,
    batch_size: int = 32,
    max_tokens: int = 16384,
    max_length: int = 2048,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Features `{layer: [n, hidden]}` for (prompt, completion) pairs, through the cache when given.

    `backbone` may be a zero-argument loader: on a full cache hit it is never
    called, so the model is not even loaded (pass `tokenizer`, `revision`,
    `dtype` and `num_layers` alongside for that).
    """
    if len(prompts) != len(completions):
        raise LatentrmError(f"{len(prompts)} prompts but {len(completions)} completions; they must pair up")
    loaded: Backbone | None = backbone if isinstance(backbone, Backbone) else None

    def get_backbone() -> Backbone:
        nonlocal loaded
        if loaded is None:
            loaded = backbone()  # type: ignore[operator]
        return loaded

    tok = tokenizer if tokenizer is not None else get_backbone().tokenizer
    texts = [render_for_scoring(tok, p, c) for p, c in zip(prompts, completions)]
    total_layers = num_layers if num_layers is not None else get_backbone().num_layers
    wanted = resolve_layers(layers, total_layers)
    if cache_dir is None:
        bb = get_backbone()
        hiddens = get_hiddens(bb.model, bb.tokenizer, texts, wanted, pooling, batch_size=batch_size,
                              max_tokens=max_tokens, max_length=max_length, progress=progress)
        return {layer: tensor.numpy() for layer, tensor in hiddens.items()}
    rev = revision if revision is not None else get_backbone().revision
    dt = dtype if dtype is not None else get_backbone().dtype_name
    parts = pooling_parts(pooling)
    digest = texts_hash(texts)
    keys = {part: cache_key(rev, dt, part, max_length, digest) for part in parts}  # one entry per base read-out
    cache = FeatureCache(cache_dir)
    todo = [part for part in parts if not cache.has(keys[part], wanted)]
    if todo:  # every missing part and layer from one forward
        from latentrm.ranks import process_group

        missing = sorted({layer for part in todo for layer in wanted if not cache.has(keys[part], [layer])})
        rank, world, barrier = process_group()

        def forward(chunk: list[ScoringText]) -> dict[int, np.ndarray]:
            bb = get_backbone()
            hiddens = get_hiddens(bb.model, bb.tokenizer, chunk, missing, "+".join(todo), batch_size=batch_size,
                                  max_tokens=max_tokens, max_length=max_length, progress=progress and rank == 0)
            return {layer: t.numpy() for layer, t in hiddens.items()}

        found = forward(texts) if world == 1 else _sharded(
            forward, texts, missing, cache, rank, world, barrier,
            lambda digest: cache_key(rev, dt, "+".join(todo), max_length, digest))
        if rank == 0:  # one writer; the other ranks read what it wrote
            split = {layer: np.split(array, len(todo), axis=1) for layer, array in found.items()}
            for index, part in enumerate(todo):
                cache.store(keys[part], {layer: chunks[index] for layer, chunks in split.items()},
                            {"revision": rev, "dtype": dt, "pooling": part, "max_length": max_length,
                             "n_texts": len(texts), "key": keys[part]})
        barrier()
    by_part = {part: cache.load(keys[part], wanted) for part in parts}
    return {layer: np.concatenate([by_part[part][layer] for part in parts], axis=1) if len(parts) > 1
            else by_part[parts[0]][layer] for layer in wanted}
