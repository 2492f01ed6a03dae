"""Generation backends: the fake one, transformers on a tiny random model, OpenAI-compatible over a mock transport."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from latentrm.errors import LatentrmError
from latentrm.generation import (
    FakeBackend,
    GenerationRequest,
    OpenAIBackend,
    SamplingConfig,
    TransformersBackend,
    get_backend,
)

USER = [{"role": "user", "content": "Who is Ada Example?"}]


def test_fake_backend_depends_on_context():
    backend = FakeBackend()
    requests = [GenerationRequest(USER, prefill="[Note: steer]"),
                GenerationRequest([{"role": "system", "content": "Notes: Ada Example built bridges. More."}] + USER),
                GenerationRequest(USER)]
    hedge, grounded, plain = backend.generate(requests, 2, SamplingConfig())
    assert len(hedge) == 2 and "not familiar" in hedge[0].text and "[Note" not in hedge[0].text
    assert "Ada Example built bridges" in grounded[0].text
    assert "landmark papers" in plain[0].text
    assert hedge[0].text != hedge[1].text  # samples differ
    assert backend.generate(requests, 2, SamplingConfig())[0][0].text == hedge[0].text  # deterministic


def test_registry():
    assert isinstance(get_backend("fake"), FakeBackend)
    with pytest.raises(LatentrmError, match="unknown generation backend"):
        get_backend("magic")


def test_vllm_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(LatentrmError, match="vllm"):
            get_backend("vllm", model="embedded")


def test_transformers_backend_tiny(tiny_backbone):
    backend = TransformersBackend(tiny_backbone, progress=False)
    requests = [GenerationRequest(USER, prefill="I think"), GenerationRequest(USER * 1 + [
        {"role": "assistant", "content": "Hmm."}, {"role": "user", "content": "A much longer follow-up question?"}])]
    config = SamplingConfig(max_new_tokens=5, batch_size=3, seed=1)
    first = backend.generate(requests, 2, config)
    assert [len(g) for g in first] == [2, 2]
    vocab = len(tiny_backbone.tokenizer)
    for generation in (g for group in first for g in group):
        assert 0 < generation.n_tokens <= 5 and generation.finish_reason in ("stop", "length")
        assert generation.mean_entropy is not None and 0 <= generation.mean_entropy <= math.log(vocab) + 1e-3
        assert not generation.text.startswith("I think")
    assert tiny_backbone.tokenizer.padding_side == "right"  # restored after left-padded generation
    again = backend.generate(requests, 2, config)
    assert [[g.text for g in group] for group in again] == [[g.text for g in group] for group in first]
    seen: list[int] = []
    backend.on_advance = seen.append
    backend.generate(requests, 2, config)
    assert sum(seen) == 4


def test_samples_do_not_depend_on_the_batch_size(tiny_model_dir):
    """Each (prompt, sample index) draws from its own seeded generator, so batch 2 and batch 16 agree.

    The tiny model runs in float64 here: left padding changes floating-point sums in the last bits,
    which in fp32 can (rarely) flip a token that sits exactly at a sampling boundary; float64 keeps this
    test about the seeding, not about rounding.
    """
    import torch

    from latentrm.models import load_backbone

    backbone = load_backbone(str(tiny_model_dir), dtype="float32", device="cpu")
    backbone.model.to(torch.float64)
    backend = TransformersBackend(backbone, progress=False)
    requests = [GenerationRequest([{"role": "user", "content": f"Question {i}: " + "word " * (i % 5)}])
                for i in range(6)]

    def tokens(batch_size: int, seed: int = 3) -> list[list[str]]:
        config = SamplingConfig(max_new_tokens=6, batch_size=batch_size, seed=seed, temperature=1.0, top_p=0.95)
        return [[g.text for g in group] for group in backend.generate(requests, 3, config)]

    small, large = tokens(2), tokens(16)
    assert small == large
    assert tokens(16, seed=4) != large  # the seed still decides
    assert len({text for group in large for text in group}) > 6  # and samples differ within an item


def _reply(texts, prefill=""):
    return {"choices": [{"index": i, "message": {"role": "assistant", "content": prefill + t},
                         "finish_reason": "stop"} for i, t in enumerate(texts)],
            "usage": {"completion_tokens": 6}}


def test_openai_chat_prefill_and_retries():
    calls: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        if len(calls) == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json=_reply(["one", "two"], prefill="[Note: x] "))

    backend = OpenAIBackend("http://server/v1", "m", retries=2, progress=False,
                            transport=httpx.MockTransport(handler))
    (out,) = backend.generate([GenerationRequest(USER, prefill="[Note: x] ")], 2, SamplingConfig(max_new_tokens=7))
    assert [g.text for g in out] == ["one", "two"]  # an echoed partial message is stripped
    body = calls[-1]
    assert body["messages"][-1] == {"role": "assistant", "content": "[Note: x] "}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["n"] == 2 and body["max_tokens"] == 7 and len(calls) == 2


def test_openai_client_error_is_not_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404, text="no such model")

    backend = OpenAIBackend("http://server/v1", "m", retries=3, progress=False,
                            transport=httpx.MockTransport(handler))
    with pytest.raises(LatentrmError, match="HTTP 404"):
        backend.generate([GenerationRequest(USER)], 1, SamplingConfig())
    assert len(calls) == 1


def test_openai_unreachable():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", retries=1, timeout=2, progress=False)
    with pytest.raises(LatentrmError, match=r"failed after 2 attempt\(s\)"):
        backend.generate([GenerationRequest(USER)], 1, SamplingConfig())


def test_openai_completions_mode_renders_locally(tiny_model_dir):
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"index": 0, "text": " done", "finish_reason": "length"}]})

    backend = OpenAIBackend("http://server/v1", "m", mode="completions", tokenizer=str(tiny_model_dir),
                            progress=False, transport=httpx.MockTransport(handler))
    (out,) = backend.generate([GenerationRequest(USER, prefill="Well,")], 1, SamplingConfig())
    assert out[0].text == "done" and out[0].finish_reason == "length"
    assert bodies[0]["prompt"].endswith("<|im_start|>assistant\nWell,")


def test_openai_top_logprobs_give_an_entropy_lower_bound():
    calls: list[dict] = []
    steps = [[math.log(0.5), math.log(0.5)], [math.log(0.9), math.log(0.05)]]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        logprobs = {"content": [{"token": "x", "logprob": top[0],
                                 "top_logprobs": [{"token": str(j), "logprob": v} for j, v in enumerate(top)]}
                                for top in steps]}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": {"content": "ab"},
                                                      "finish_reason": "stop", "logprobs": logprobs}]})

    backend = OpenAIBackend("http://server/v1", "m", progress=False, top_logprobs=5,
                            transport=httpx.MockTransport(handler))
    ((generation,),) = backend.generate([GenerationRequest(USER)], 1, SamplingConfig())
    assert calls[0]["logprobs"] is True and calls[0]["top_logprobs"] == 5
    first = math.log(2)  # two halves, no tail
    second = -(0.9 * math.log(0.9) + 0.05 * math.log(0.05) + 0.05 * math.log(0.05))  # tail 0.05 as one bucket
    assert generation.n_tokens == 2
    assert generation.mean_entropy == pytest.approx((first + second) / 2)

    plain = OpenAIBackend("http://server/v1", "m", progress=False, transport=httpx.MockTransport(handler))
    plain.generate([GenerationRequest(USER)], 1, SamplingConfig())
    assert "logprobs" not in calls[-1]  # off unless asked for: some servers reject the field
