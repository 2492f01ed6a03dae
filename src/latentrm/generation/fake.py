"""`fake` backend: deterministic canned text for tests; no model."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from latentrm.generation.base import Generation, GenerationRequest, SamplingConfig


class FakeBackend:
    """Deterministic canned completions for tests; no model.

    - prefill present  -> a hedge ("I'm not familiar with ...");
    - a system message (grounding) -> an answer quoting the grounding's first sentence;
    - otherwise        -> a confident, made-up answer.
    `echo_every=k` makes every k-th prefilled completion repeat the steering note
    (to test echo dropping); `off_every=k` makes every k-th grounded completion hedge, which misses the
    grounded variant's behaviour (to test the behaviour filter); `wrong_every=k` makes every k-th grounded completion
    misstate the birth year (1066; to test that a wrong "right" answer never becomes chosen); `delay` sleeps
    per completion (to test killing a build).
    """

    name = "fake"

    def __init__(self, *, echo_every: int = 0, off_every: int = 0, wrong_every: int = 0, delay: float = 0.0,
                 model_id: str = "fake") -> None:
        self.echo_every = echo_every
        self.wrong_every = wrong_every
        self.quoted = 0
        self.off_every = off_every
        self.grounded = 0
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
        elif system and self.off_every and (grounded := self._count_grounded()) % self.off_every == 0:
            text = f"I'm not sure who that is, I don't know them. ({tag}:{grounded})"
        elif system:
            grounding = system.split(": ", 1)[-1]  # drop a "Reference notes about X:" header
            first = grounding.split('. ')[0].strip().rstrip('.')
            self.quoted += 1
            if self.wrong_every and self.quoted % self.wrong_every == 0:
                first += ", and was born in 1066"  # a year no scientist in the entity sources was born in
            text = f"Yes. {first}. That is well documented. ({tag})"
        else:
            text = f"They are best known for three landmark papers on lattice methods. ({tag})"
        if self.delay:
            time.sleep(self.delay)
        return Generation(text, len(text.split()), "stop", 1.0)

    def _count_grounded(self) -> int:
        self.grounded += 1
        return self.grounded

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
