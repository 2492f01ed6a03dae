"""`openai` backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp server), chat or completions mode."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from latentrm.errors import LatentrmError
from latentrm.generation.base import Generation, GenerationRequest, SamplingConfig, Sink

if TYPE_CHECKING:  # pragma: no cover

    pass


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
        sink = Sink(len(requests) * n, self.show_progress, self.on_advance)
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
