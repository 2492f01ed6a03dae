"""Sampling backends that every stage shares (data, eval, audit, RL): see `base.py` for the Protocol.

    from latentrm.generation import GenerationRequest, SamplingConfig, get_backend
    backend = get_backend("transformers", model="embedded")
    backend.generate([GenerationRequest([{"role": "user", "content": "Who is Ada Lovelace?"}])], 2, SamplingConfig())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from latentrm.generation.base import (
    BACKENDS,
    BackendName,
    Generation,
    GenerationBackend,
    GenerationRequest,
    SamplingConfig,
    Sink,
    completions_progress,
    get_backend,
    row_seed,
)

if TYPE_CHECKING:  # pragma: no cover
    from latentrm.generation.endpoint import OpenAIBackend
    from latentrm.generation.fake import FakeBackend
    from latentrm.generation.local import TransformersBackend
    from latentrm.generation.vllm_backend import VLLMBackend

__all__ = ["BACKENDS", "BackendName", "FakeBackend", "Generation", "GenerationBackend", "GenerationRequest",
           "OpenAIBackend", "SamplingConfig", "Sink", "TransformersBackend", "VLLMBackend", "completions_progress",
           "get_backend", "row_seed"]

_CLASSES = {"TransformersBackend": "transformers", "OpenAIBackend": "openai", "VLLMBackend": "vllm",
            "FakeBackend": "fake"}


def __getattr__(name: str) -> Any:
    """The backend classes, imported on first use (torch and httpx stay unloaded until then)."""
    if name in _CLASSES:
        return BACKENDS.get(_CLASSES[name])
    raise AttributeError(name)
