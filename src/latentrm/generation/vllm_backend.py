"""`vllm` backend: in-process vLLM, when the package is installed (GPU machines)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from latentrm.errors import LatentrmError
from latentrm.generation.base import Generation, GenerationRequest, SamplingConfig

if TYPE_CHECKING:  # pragma: no cover

    pass


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
