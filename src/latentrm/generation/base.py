"""Generation backends, shared by the data, eval, audit and RL stages: one Protocol, four implementations.

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

This module holds the types, the progress sink, the per-row seed and the registry. The implementations
live in `local.py` (transformers), `endpoint.py` (OpenAI-compatible), `vllm_backend.py` and `fake.py`;
each is imported only when one of its backends is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from latentrm.registry import Registry


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


class Sink:
    """Progress reporting: an outside callback (a build's overall bar) or this call's own rich bar."""

    def __init__(self, total: int, enabled: bool, on_advance: Callable[[int], None] | None) -> None:
        self.on_advance = on_advance
        self.bar: Any = None
        if on_advance is None:
            self.bar = completions_progress(enabled)
            self.task = self.bar.add_task("generating", total=total)

    def __enter__(self) -> Sink:
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
    """The generation progress display: completions per second."""
    from latentrm.io import progress_bar

    return progress_bar(enabled, unit="compl")


def row_seed(seed: int, text: str, sample: int) -> int:
    """The sampling seed of one (prompt, sample index): independent of batch size and batch order."""
    return int(hashlib.sha256(f"{seed}|{sample}|{text}".encode()).hexdigest()[:15], 16)


# --------------------------------------------------------------------------- registry

BackendName = Literal["transformers", "openai", "vllm", "fake"]
BACKENDS: Registry[Callable[..., GenerationBackend]] = Registry("generation backend", hint="--backend")
BACKENDS.lazy("transformers", "latentrm.generation.local:TransformersBackend")
BACKENDS.lazy("openai", "latentrm.generation.endpoint:OpenAIBackend")
BACKENDS.lazy("vllm", "latentrm.generation.vllm_backend:VLLMBackend")
BACKENDS.lazy("fake", "latentrm.generation.fake:FakeBackend")


def get_backend(name: str, **kwargs: Any) -> GenerationBackend:
    """Build a backend by name; unknown names raise a one-line LatentrmError."""
    return BACKENDS.get(name)(**kwargs)
