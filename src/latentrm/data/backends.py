"""Generation backends: one small Protocol, four implementations.

- `transformers` (default): batched, left-padded sampling with a local model
  (the embedded SmolLM2, a local folder, or a cached hub id), CPU or GPU. It
  records the mean per-token entropy of the model's logits (before temperature
  and top-p) for each completion, cheaply, with a logits processor.
- `openai`: any OpenAI-compatible server (vLLM, SGLang, llama.cpp server), chat
  or completions mode, with timeout, retries and a concurrency limit. A prefill
  is sent as a partial assistant message (`continue_final_message`, the vLLM /
  SGLang extension) in chat mode, or as raw text after a locally applied chat
  template in completions mode.
- `vllm`: in-process vLLM, when the package is installed (GPU machines).
- `fake`: deterministic canned text for tests; it hedges when given a prefill,
  answers from the grounding when a system message is present and confabulates
  otherwise.

Every backend returns text that EXCLUDES the prefill: the stored completion is
the model's own continuation only.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from latentrm.errors import LatentrmError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from latentrm.models import Backbone


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to continue: chat messages (grounding goes in here) plus an optional assistant prefill."""

    messages: list[dict[str, str]]
    prefill: str = ""  # assistant-turn prefix; the returned text EXCLUDES it


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 96
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 8


@dataclass
class Generation:
    text: str
    n_tokens: int
    finish_reason: str  # "stop" (end-of-turn reached) or "length"
    mean_entropy: float | None = None  # mean per-token entropy (nats) of the logits while sampling


class GenerationBackend(Protocol):
    name: str

    def generate(
        self, requests: Sequence[GenerationRequest], n: int, config: SamplingConfig
    ) -> list[list[Generation]]:
        """For each request, `n` sampled continuations (prefill excluded)."""
        ...


# --------------------------------------------------------------------------- progress


class _Sink:
    """Progress reporting: an outside callback (a build's overall bar) or this call's own rich bar."""

    def __init__(self, total: int, enabled: bool, on_advance: Callable[[int], None] | None) -> None:
        self.on_advance = on_advance
        self.bar: Any = None
        if on_advance is None:
            self.bar = completions_progress(enabled)
            self.task = self.bar.add_task("generating", total=total)

    def __enter__(self) -> _Sink:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self.on_advance is not None:
            self.on_advance(n)
        else:
            self.bar.advance(self.task, n)


def completions_progress(enabled: bool = True) -> Any:
    """A rich progress bar whose rate column reads completions per second."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:  # noqa: D401
            from rich.text import Text

            # rich's own estimate needs two updates inside its window; one batch of many completions
            # gives a single update, so fall back to the average over the elapsed time
            speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
            return Text(f"{speed:.2f} compl/s" if speed else "-- compl/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, transient=False,
    )


# --------------------------------------------------------------------------- transformers


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


def row_seed(seed: int, text: str, sample: int) -> int:
    """The sampling seed of one (prompt, sample index): independent of batch size and batch order."""
    import hashlib

    return int(hashlib.sha256(f"{seed}|{sample}|{text}".encode()).hexdigest()[:15], 16)


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
            with _Sink(len(flat), self.show_progress, self.on_advance) as progress:
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


# --------------------------------------------------------------------------- OpenAI-compatible


class OpenAIBackend:
    """Any OpenAI-compatible server over HTTP (vLLM serve, SGLang, llama.cpp server)."""

    name = "openai"

    def __init__(self, base_url: str = "http://localhost:8000/v1", model: str = "default", *,
                 api_key: str | None = None, timeout: float = 60.0, retries: int = 3, concurrency: int = 8,
                 mode: Literal["chat", "completions"] = "chat", tokenizer: str | None = None,
                 progress: bool = True, transport: Any = None, top_logprobs: int = 0) -> None:
        if mode not in ("chat", "completions"):
            raise LatentrmError(f"openai backend mode '{mode}' is not one of chat, completions")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_id = f"openai:{model}@{self.base_url}"
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.concurrency = max(1, concurrency)
        self.mode = mode
        self.show_progress = progress
        self.on_advance: Callable[[int], None] | None = None
        self._tokenizer_spec = tokenizer or model
        self._tokenizer: Any = None
        self._transport = transport  # an httpx transport (tests use httpx.MockTransport)
        # > 0 asks the server for the top-k log-probabilities of each sampled token, from which
        # `Generation.mean_entropy` is estimated (a lower bound: the tail beyond k is one bucket).
        self.top_logprobs = max(0, int(top_logprobs))

    def _render(self, request: GenerationRequest) -> str:
        if self._tokenizer is None:
            from latentrm.models import load_tokenizer

            self._tokenizer = load_tokenizer(self._tokenizer_spec)
        from latentrm.models import render_generation_prompt

        return render_generation_prompt(self._tokenizer, request.messages, request.prefill)

    def _payload(self, request: GenerationRequest, n: int, config: SamplingConfig, index: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "n": n, "temperature": config.temperature, "top_p": config.top_p,
            "max_tokens": config.max_new_tokens, "seed": config.seed * 1_000_003 + index,
        }
        if self.top_logprobs:
            if self.mode == "completions":
                body["logprobs"] = self.top_logprobs
            else:
                body["logprobs"] = True
                body["top_logprobs"] = self.top_logprobs
        if self.mode == "completions":
            body["prompt"] = self._render(request)
        else:
            messages = [dict(m) for m in request.messages]
            if request.prefill:
                # vLLM / SGLang extension: continue the partial assistant turn.
                messages.append({"role": "assistant", "content": request.prefill})
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
            body["messages"] = messages
        return body

    def _post(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        path = "/completions" if self.mode == "completions" else "/chat/completions"
        url = self.base_url + path
        last: str = ""
        for attempt in range(self.retries + 1):
            try:
                response = client.post(url, json=body)
                if response.status_code == 200:
                    return dict(response.json())
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in (408, 409, 429) and response.status_code < 500:
                    break  # a client error will not go away on retry
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                time.sleep(min(8.0, 0.5 * 2**attempt))
        hint = " (if the server rejects logprobs, turn them off: `latentrm eval --endpoint-logprobs 0`)" if self.top_logprobs else ""
        raise LatentrmError(
            f"generation endpoint {url} failed after {self.retries + 1} attempt(s) ({last}); "
            f"check that the server is running and --base-url / --model are right{hint}"
        )

    def _parse(self, reply: dict[str, Any], prefill: str) -> list[Generation]:
        choices = reply.get("choices") or []
        usage = reply.get("usage") or {}
        per_choice = int(usage.get("completion_tokens", 0)) // max(1, len(choices))
        generations = []
        for choice in sorted(choices, key=lambda c: c.get("index", 0)):
            if self.mode == "completions":
                text = choice.get("text") or ""
            else:
                text = (choice.get("message") or {}).get("content") or ""
            if prefill and text.startswith(prefill):  # some servers echo the partial message
                text = text[len(prefill) :]
            finish = "length" if choice.get("finish_reason") == "length" else "stop"
            steps = _top_logprob_steps(choice.get("logprobs"))
            entropy = float(sum(map(_entropy_lower_bound, steps)) / len(steps)) if steps else None
            generations.append(Generation(text.strip(), len(steps) or per_choice, finish, entropy))
        return generations

    def generate(
        self, requests: Sequence[GenerationRequest], n: int, config: SamplingConfig
    ) -> list[list[Generation]]:
        from concurrent.futures import ThreadPoolExecutor

        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        bodies = [self._payload(r, n, config, i) for i, r in enumerate(requests)]
        out: list[list[Generation]] = [[] for _ in requests]
        sink = _Sink(len(requests) * n, self.show_progress, self.on_advance)
        client = httpx.Client(timeout=self.timeout, headers=headers, transport=self._transport)
        with client, sink:

            def one(index: int) -> None:
                out[index] = self._parse(self._post(client, bodies[index]), requests[index].prefill)
                sink.advance(n)

            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                for future in [pool.submit(one, i) for i in range(len(requests))]:
                    future.result()  # re-raises the first LatentrmError
        return out


def _top_logprob_steps(logprobs: Any) -> list[list[float]]:
    """Per sampled token, the top-k log-probabilities, from a chat or a completions `logprobs` object."""
    if not isinstance(logprobs, dict):
        return []
    if isinstance(logprobs.get("content"), list):  # chat: content[i].top_logprobs[j].logprob
        return [[float(t["logprob"]) for t in step.get("top_logprobs") or [] if "logprob" in t]
                for step in logprobs["content"] if isinstance(step, dict)]
    if isinstance(logprobs.get("top_logprobs"), list):  # completions: top_logprobs[i] = {token: logprob}
        return [[float(v) for v in step.values()] for step in logprobs["top_logprobs"] if isinstance(step, dict)]
    return []


def _entropy_lower_bound(top: list[float]) -> float:
    """Entropy (nats) of a distribution known only by its top-k log-probs; the rest is one bucket."""
    import math

    probs = [math.exp(v) for v in top if v > -1e9]
    tail = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in probs + [tail] if p > 0)


# --------------------------------------------------------------------------- vLLM (optional)


class VLLMBackend:
    """In-process vLLM; needs `pip install vllm` on a GPU machine."""

    name = "vllm"

    def __init__(self, model: str = "embedded", **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise LatentrmError(
                "the vllm backend needs the vllm package (`pip install vllm`, GPU only); "
                "use --backend transformers or --backend openai instead"
            ) from exc
        from latentrm.models import resolve_model

        resolved = resolve_model(model)
        self.model_id = f"{model}@{resolved.revision}"
        self.llm = LLM(model=str(resolved.path), **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.on_advance: Callable[[int], None] | None = None

    def generate(
        self, requests: Sequence[GenerationRequest], n: int, config: SamplingConfig
    ) -> list[list[Generation]]:
        from vllm import SamplingParams

        from latentrm.models import render_generation_prompt

        prompts = [render_generation_prompt(self.tokenizer, r.messages, r.prefill) for r in requests]
        params = SamplingParams(n=n, temperature=config.temperature, top_p=config.top_p,
                                max_tokens=config.max_new_tokens, seed=config.seed)
        results = self.llm.generate(prompts, params)
        if self.on_advance is not None:
            self.on_advance(len(prompts) * n)
        return [
            [Generation(o.text.strip(), len(o.token_ids), "length" if o.finish_reason == "length" else "stop")
             for o in result.outputs]
            for result in results
        ]


# --------------------------------------------------------------------------- fake (tests)


class FakeBackend:
    """Deterministic canned completions for tests; no model.

    - prefill present  -> a hedge ("I'm not familiar with ...");
    - a system message (grounding) -> an answer quoting the grounding's first sentence;
    - otherwise        -> a confident, made-up answer.
    `echo_every=k` makes every k-th prefilled completion repeat the steering note
    (to test echo dropping); `delay` sleeps per completion (to test killing a build).
    """

    name = "fake"

    def __init__(self, *, echo_every: int = 0, delay: float = 0.0, model_id: str = "fake") -> None:
        self.echo_every = echo_every
        self.delay = delay
        self.model_id = model_id
        self.on_advance: Callable[[int], None] | None = None
        self.calls = 0
        self.completions = 0

    def _one(self, request: GenerationRequest, k: int, seed: int) -> Generation:
        user = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
        system = next((m["content"] for m in request.messages if m["role"] == "system"), "")
        tag = hashlib.sha256(f"{seed}:{k}:{user}:{request.prefill}".encode()).hexdigest()[:6]
        if request.prefill:
            self.completions += 1
            if self.echo_every and self.completions % self.echo_every == 0:
                text = f"{request.prefill.strip()} So, as noted, I cannot say more. ({tag})"
            else:
                text = f"I'm not familiar with that person, and they may not exist. I would rather not guess. ({tag})"
        elif system:
            grounding = system.split(": ", 1)[-1]  # drop a "Reference notes about X:" header
            text = f"Yes. {grounding.split('. ')[0].strip().rstrip('.')}. That is well documented. ({tag})"
        else:
            text = f"They are best known for three landmark papers on lattice methods. ({tag})"
        if self.delay:
            time.sleep(self.delay)
        return Generation(text, len(text.split()), "stop", 1.0)

    def generate(
        self, requests: Sequence[GenerationRequest], n: int, config: SamplingConfig
    ) -> list[list[Generation]]:
        self.calls += 1
        out = []
        for request in requests:
            out.append([self._one(request, k, config.seed) for k in range(n)])
            if self.on_advance is not None:
                self.on_advance(n)
        return out


# --------------------------------------------------------------------------- registry

BackendName = Literal["transformers", "openai", "vllm", "fake"]
BACKENDS: dict[str, Callable[..., GenerationBackend]] = {
    "transformers": TransformersBackend,
    "openai": OpenAIBackend,
    "vllm": VLLMBackend,
    "fake": FakeBackend,
}


def get_backend(name: str, **kwargs: Any) -> GenerationBackend:
    """Build a backend by name; unknown names raise a one-line LatentrmError."""
    if name not in BACKENDS:
        raise LatentrmError(f"unknown generation backend '{name}'; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](**kwargs)
