"""`transformers` backend: batched, left-padded sampling with a local Hugging Face causal LM.

Each (prompt, sample index) is drawn from its own seeded generator (`_RowSampler`), so a response does
not depend on the batch it lands in; the mean per-token entropy of the raw logits is recorded per completion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from latentrm.generation.base import Generation, GenerationRequest, SamplingConfig, Sink, row_seed

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from latentrm.models import Backbone


class _EntropyRecorder:
    """Logits processor that records per-row entropy of the raw logits at each step.

    transformers puts custom processors before the temperature / top-p warpers,
    so this sees the model's own distribution. It returns the scores unchanged.
    """

    def __init__(self) -> None:
        self.steps: list[Any] = []  # each [batch] float32 tensor

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logp = torch.log_softmax(scores.float(), dim=-1)  # [batch, vocab]
        self.steps.append(-(logp.exp() * logp).nan_to_num().sum(-1).cpu())  # [batch]
        return scores


class _RowSampler:
    """Logits processor that samples each row with its own seeded generator and returns one-hot logits.

    `generate` draws every row from one global RNG stream, so which response an item gets depends on
    the batch it lands in. Here each row has a generator seeded by `row_seed`, so an item's response
    is the same at any batch size; `generate` then runs greedy over the one-hot logits we return.
    Temperature and top-p use transformers' own warpers. What padding can still change: left padding
    alters the floating-point sums, so logits differ in the last bits and a sample that sits exactly
    at a probability boundary can flip (rare in fp32, more likely in bf16).
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float | None) -> None:
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.seeds = seeds
        self.generators: list[Any] = []
        self.warpers: list[Any] = [TemperatureLogitsWarper(temperature)]
        if top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if not self.generators:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        warped = scores.float()
        for warper in self.warpers:
            warped = warper(input_ids, warped)
        probs = torch.softmax(warped, dim=-1)  # [batch, vocab]
        picks = torch.stack([torch.multinomial(probs[row], 1, generator=generator)
                             for row, generator in enumerate(self.generators)])  # [batch, 1]
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picks, 0.0)


class _CausalLM(Protocol):
    """What `TransformersBackend` calls on its model. `PreTrainedModel` does not declare `generate`
    (causal LMs mix in `GenerationMixin`, whose `self` type mypy cannot match), hence this narrow view."""

    def generate(self, **kwargs: Any) -> torch.Tensor: ...  # [batch, prompt + new]


class TransformersBackend:
    """Sample with a local Hugging Face causal LM, batched and left-padded."""

    name = "transformers"

    def __init__(self, model: str | Backbone = "embedded", *, dtype: str = "auto", device: str | None = None,
                 progress: bool = True) -> None:
        from latentrm.models import Backbone, load_backbone

        self.backbone = model if isinstance(model, Backbone) else load_backbone(model, dtype=dtype, device=device)
        self.model_id = f"{self.backbone.spec}@{self.backbone.revision}"
        self.show_progress = progress
        self.on_advance: Callable[[int], None] | None = None

    def _stop_ids(self) -> list[int]:
        tokenizer = self.backbone.tokenizer
        ids = {tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"):
            tid = tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
                ids.add(tid)
        generation_eos = getattr(self.backbone.model.generation_config, "eos_token_id", None)
        if isinstance(generation_eos, int):
            ids.add(generation_eos)
        elif generation_eos:
            ids.update(generation_eos)
        return sorted(i for i in ids if i is not None)

    def generate(
        self, requests: Sequence[GenerationRequest], n: int, config: SamplingConfig
    ) -> list[list[Generation]]:
        import torch
        from transformers import LogitsProcessorList

        from latentrm.models import render_generation_prompt

        tokenizer, model = self.backbone.tokenizer, self.backbone.model
        texts = [render_generation_prompt(tokenizer, r.messages, r.prefill) for r in requests]
        flat = [(i, texts[i]) for i in range(len(texts)) for _ in range(n)]  # request-major order
        sample_index = [k for _ in range(len(texts)) for k in range(n)]  # k-th sample of its request
        out: list[list[Generation]] = [[] for _ in requests]
        stop_ids = self._stop_ids()
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        old_side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        try:
            with Sink(len(flat), self.show_progress, self.on_advance) as progress:
                for start in range(0, len(flat), config.batch_size):
                    chunk = flat[start : start + config.batch_size]
                    # Templates already hold BOS where needed; never add special tokens twice.
                    enc = tokenizer([t for _, t in chunk], return_tensors="pt", padding=True,
                                    add_special_tokens=False).to(model.device)
                    recorder = _EntropyRecorder()
                    processors: list[Any] = [recorder]
                    if config.temperature > 0:  # per-row seeds: the batch size does not pick the samples
                        seeds = [row_seed(config.seed, text, k) for (_, text), k in
                                 zip(chunk, sample_index[start : start + len(chunk)])]
                        processors.append(_RowSampler(seeds, config.temperature, config.top_p))
                    with torch.no_grad():
                        sequences = cast(_CausalLM, model).generate(
                            **enc,
                            max_new_tokens=config.max_new_tokens,
                            do_sample=False,  # greedy over _RowSampler's one-hot logits (or plain greedy)
                            temperature=None,
                            top_p=None,
                            top_k=None,
                            eos_token_id=stop_ids,
                            pad_token_id=pad_id,
                            logits_processor=LogitsProcessorList(processors),
                        )  # [batch, prompt + new]
                    new_tokens = sequences[:, enc["input_ids"].shape[1] :].cpu()  # [batch, new]
                    entropies = torch.stack(recorder.steps, dim=1) if recorder.steps else None  # [batch, new]
                    for row, (request_index, _) in enumerate(chunk):
                        ids = new_tokens[row].tolist()
                        stop_at = next((k for k, t in enumerate(ids) if t in stop_ids), None)
                        finish = "stop" if stop_at is not None else "length"
                        content = ids[:stop_at] if stop_at is not None else ids
                        counted = len(content) + (1 if stop_at is not None else 0)
                        entropy = None
                        if entropies is not None and counted:
                            entropy = float(entropies[row, :counted].mean())
                        # One sequence of ids decodes to one string; transformers annotates `str | list[str]`.
                        text = cast(str, tokenizer.decode(content, skip_special_tokens=True))
                        out[request_index].append(Generation(text.strip(), len(content), finish, entropy))
                    progress.advance(len(chunk))
        finally:
            tokenizer.padding_side = old_side
        return out
