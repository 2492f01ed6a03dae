"""verl and OpenRLHF adapters against a real server on 127.0.0.1 (fake scorer), loaded the way the frameworks do."""

from __future__ import annotations

import importlib.util
import threading
import time
import types

import httpx
import numpy as np
import pytest

from latentrm.errors import LatentrmError
from latentrm.models import completion_text, render_for_scoring, render_generation_prompt
from latentrm.serve.app import ServeConfig, create_app
from latentrm.serve.split import ChatSplitter
from latentrm.serve.testing import ServerThread


def value(prompt, completion) -> float:
    """A fake reward that depends on both prompt and completion, so a lost prompt shows up."""
    prompt_text = prompt if isinstance(prompt, str) else "|".join(m["content"] for m in prompt)
    return (len(prompt_text) % 13) + len(completion_text(completion)) / 100.0


class Scorer:
    def __init__(self, tokenizer, delay: float = 0.0) -> None:
        self.backbone = types.SimpleNamespace(tokenizer=tokenizer)
        self.meta = {"max_length": 512}
        self.delay = delay

    def score(self, prompts, completions, *, batch_size=None):
        time.sleep(self.delay)
        return [value(p, c) for p, c in zip(prompts, completions, strict=True)]


def load_by_path(module):
    """What verl (custom_reward_function.path) and OpenRLHF (--remote_rm_url x.py) do with the file."""
    spec = importlib.util.spec_from_file_location("custom_module", module.__file__)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture
def server(tokenizer, monkeypatch):
    with ServerThread(create_app(ServeConfig(token="adapter-token"), Scorer(tokenizer))) as running:
        monkeypatch.setenv("LATENTRM_URL", running.url)
        monkeypatch.setenv("LATENTRM_TOKEN", "adapter-token")
        yield running


def test_verl_compute_score(server):
    import latentrm.integrations.verl as verl_module

    verl = load_by_path(verl_module)
    messages = [{"role": "user", "content": "Who is Ada Lovelace?"}]
    reward = verl.compute_score("knowledge", "A mathematician.", None, {"prompt": messages, "subset": None})
    assert reward == pytest.approx(value(messages, "A mathematician."))
    as_array = {"prompt": np.array(messages, dtype=object)}  # parquet list columns arrive as numpy arrays
    assert verl.compute_score("k", "A mathematician.", None, as_array) == pytest.approx(reward)
    batch = verl.compute_score_batch(["k", "k"], ["yes", "no"], [None, None],
                                     [{"prompt": "Who is Bo?"}, {"prompt": messages}])
    assert batch == pytest.approx([value("Who is Bo?", "yes"), value(messages, "no")])
    with pytest.raises(LatentrmError, match="extra_info has no 'prompt'"):
        verl.compute_score("k", "text", None, {})


def test_openrlhf_reward_func(server, tokenizer):
    import latentrm.integrations.openrlhf as openrlhf_module

    openrlhf = load_by_path(openrlhf_module)
    prompt = "Who is Bartholomew Quenby?"
    queries = [render_for_scoring(tokenizer, prompt, "I don't know him.").text,
               render_generation_prompt(tokenizer, prompt) + "A chemist." + tokenizer.eos_token]
    out = openrlhf.reward_func(queries, [render_generation_prompt(tokenizer, prompt)] * 2, [None, None])
    parsed_prompt = ChatSplitter.from_tokenizer(tokenizer).split(queries[0]).prompt  # tested in test_serve_split
    assert parsed_prompt[-1] == {"role": "user", "content": prompt}
    expected = [value(parsed_prompt, "I don't know him."), value(parsed_prompt, "A chemist.")]
    np.testing.assert_allclose(out["rewards"].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(out["scores"].numpy(), 1 / (1 + np.exp(-np.array(expected))), rtol=1e-6)
    assert set(out["extra_logs"]) == {"latentrm_raw"}


def test_adapters_report_auth_and_connection_errors(server, monkeypatch):
    from latentrm.integrations import post_json

    monkeypatch.setenv("LATENTRM_TOKEN", "wrong")
    with pytest.raises(LatentrmError, match="answered 401"):
        post_json("/score", {"items": [{"prompt": "a", "completion": "b"}]})
    monkeypatch.setenv("LATENTRM_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(LatentrmError, match="cannot reach the reward server"):
        post_json("/score", {"items": []}, retries=1)


def test_adapter_retries_503_until_the_queue_drains(tokenizer, monkeypatch):
    from latentrm.integrations import post_json

    config = ServeConfig(max_queue_items=1, max_items=1, max_batch_items=1, max_wait_ms=0)
    with ServerThread(create_app(config, Scorer(tokenizer, delay=0.6))) as running:
        monkeypatch.setenv("LATENTRM_URL", running.url)
        monkeypatch.delenv("LATENTRM_TOKEN", raising=False)
        results: list = []
        body = {"items": [{"prompt": "p", "completion": "c"}]}
        threads = [threading.Thread(target=lambda: results.append(post_json("/score", body))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        refused = httpx.get(running.url + "/metrics").text
    assert 'latentrm_rejected_total{reason="queue_full"}' in refused  # some calls did get 503 first
    assert len(results) == 4 and all(r["scores"] == [pytest.approx(value("p", "c"))] for r in results)


VERL_SKIP = ("verl is not installed: verl 0.9.1's metadata needs transformers<5.11, ray and tensordict<=0.10 while "
             "this project pins transformers 5.24, so it is no extra of ours. To run this test, install it beside "
             "the environment without its pins: pip install --no-deps --target DIR verl==0.9.1 'tensordict<=0.10' "
             "ray msgpack protobuf jsonschema attrs referencing rpds-py jsonschema-specifications pyvers "
             "cloudpickle omegaconf, then PYTHONPATH=DIR (docs/scaling.md)")


def test_verl_naive_reward_manager_scores_a_dataproto_batch(server, tokenizer):
    """verl 0.9's own NaiveRewardManager, with `custom_reward_function` = latentrm.integrations.verl's
    compute_score (loaded by path, as verl does), scores a DataProto batch: each response's reward sits on its
    last valid token and equals the served scorer's score of (extra_info prompt, decoded response)."""
    pytest.importorskip("verl", reason=VERL_SKIP)
    import torch
    from verl import DataProto
    from verl.workers.reward_manager import NaiveRewardManager

    import latentrm.integrations.verl as verl_module

    rows = [([{"role": "user", "content": "Who is Ada Lovelace?"}], "A mathematician who wrote on the engine."),
            ([{"role": "user", "content": "Who is Dr. Ola Vintersen?"}], "I don't know that person."),
            ([{"role": "user", "content": "Was Newton born in 1643?"}], "Yes.")]
    prompt_len, response_len = 24, 16
    prompts, responses, masks = [], [], []
    for messages, completion in rows:
        p = tokenizer(messages[0]["content"], add_special_tokens=False)["input_ids"][:prompt_len]
        r = tokenizer(completion, add_special_tokens=False)["input_ids"][:response_len]
        pad = tokenizer.pad_token_id
        prompts.append([pad] * (prompt_len - len(p)) + p)  # verl left-pads prompts, right-pads responses
        responses.append(r + [pad] * (response_len - len(r)))
        masks.append([0] * (prompt_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (response_len - len(r)))
    data = DataProto.from_dict(
        tensors={"prompts": torch.tensor(prompts), "responses": torch.tensor(responses),
                 "attention_mask": torch.tensor(masks)},
        non_tensors={"data_source": np.array(["latentrm"] * len(rows), dtype=object),
                     "reward_model": np.array([{"ground_truth": None} for _ in rows], dtype=object),
                     "extra_info": np.array([{"prompt": messages} for messages, _ in rows], dtype=object)})
    manager = NaiveRewardManager(tokenizer=tokenizer, num_examine=0,
                                 compute_score=load_by_path(verl_module).compute_score)
    rewards = manager(data)
    assert rewards.shape == (len(rows), response_len)
    for i, (messages, _) in enumerate(rows):
        last = int(sum(masks[i][prompt_len:])) - 1
        decoded = tokenizer.decode(responses[i][: last + 1], skip_special_tokens=True)
        assert float(rewards[i, last]) == pytest.approx(value(messages, decoded), abs=1e-5)
        assert float(rewards[i].abs().sum()) == pytest.approx(abs(float(rewards[i, last])), abs=1e-5)
