"""The server against a real LatentRewardModel (tiny random backbone): same numbers as `rm.score`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from latentrm.models import render_for_scoring, render_generation_prompt
from latentrm.rm.heads import make_head
from latentrm.rm.model import LatentRewardModel
from latentrm.serve.app import ServeConfig, create_app
from latentrm.serve.testing import ServerThread, free_port

LEVELS = [i / 100 for i in range(101)]
PROMPTS = [
    "Who is Ada Lovelace?",
    "Who is Bartholomew Quenby, the Dutch chemist?",
    [{"role": "user", "content": "Tell me about Marie Curie."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who was Alan Turing?"},
     {"role": "assistant", "content": "A mathematician."}, {"role": "user", "content": "What did he break?"}],
]
COMPLETIONS = [
    "An English mathematician, known for notes on the Analytical Engine.",
    "I'm not aware of a chemist by that name; could you give more context?",
    "A physicist and chemist who won two Nobel prizes.",
    "The Enigma cipher, at Bletchley Park.",
]


def _head(hidden: int, seed: int, head_type: str = "projection_sum"):
    torch.manual_seed(seed)
    head = make_head(head_type, hidden)
    for parameter in head.parameters():
        torch.nn.init.normal_(parameter, std=0.5)  # random, non-zero: distinct scores per input
    head.standardize.fit(torch.randn(64, hidden))
    return head


@pytest.fixture(scope="module")
def tiny_rm(tiny_backbone):
    quantiles = {"all": {"levels": LEVELS, "values": list(np.linspace(-1, 1, 101))}}
    return LatentRewardModel.from_head(tiny_backbone, _head(tiny_backbone.hidden_size, 0), layer=2,
                                       max_length=512, chosen_quantiles=quantiles)


@pytest.fixture(scope="module")
def server(tiny_rm):
    with ServerThread(create_app(ServeConfig(max_wait_ms=30), tiny_rm)) as running:
        yield running


def _pairs(n: int):
    return [(PROMPTS[i % 4], COMPLETIONS[(i * 3) % 4] + " " * (i % 3) + "ok" * i) for i in range(n)]


def test_server_scores_equal_rm_score(server, tiny_rm):
    pairs = _pairs(12)
    expected = tiny_rm.score([p for p, _ in pairs], [c for _, c in pairs])
    assert len(set(np.round(expected, 6))) > 6  # the head really tells inputs apart
    one = httpx.post(server.url + "/score", json={"items": [{"prompt": p, "completion": c} for p, c in pairs]},
                     timeout=60).json()
    np.testing.assert_allclose(one["scores"], expected, rtol=1e-4, atol=1e-5)
    # the same items as 12 concurrent requests: batched with each other, padded differently
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda pc: httpx.post(server.url + "/score", timeout=60, json={
            "items": [{"prompt": pc[0], "completion": pc[1]}]}).json()["scores"][0], pairs))
    np.testing.assert_allclose(answers, expected, rtol=1e-4, atol=1e-5)


def test_get_reward_equals_rm_score(server, tiny_rm):
    tokenizer = tiny_rm.backbone.tokenizer
    queries = [render_for_scoring(tokenizer, PROMPTS[3], COMPLETIONS[3]).text,
               render_generation_prompt(tokenizer, PROMPTS[1]) + COMPLETIONS[1] + tokenizer.eos_token]
    expected = np.array(tiny_rm.score([PROMPTS[3], PROMPTS[1]], COMPLETIONS[3:0:-2]))
    answer = httpx.post(server.url + "/get_reward", json={"query": queries}, timeout=60).json()
    np.testing.assert_allclose(answer["rewards"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(answer["scores"], 1 / (1 + np.exp(-expected)), rtol=1e-4, atol=1e-5)


def test_calibrated_shaper_uses_rm_quantiles(server, tiny_rm):
    expected = np.array(tiny_rm.score(PROMPTS, COMPLETIONS))
    answer = httpx.post(server.url + "/score", timeout=60, json={
        "items": [{"prompt": p, "completion": c} for p, c in zip(PROMPTS, COMPLETIONS, strict=True)], "shaper": "calibrated"}).json()
    cdf = np.clip((expected + 1) / 2, 0, 1)  # chosen scores uniform on [-1, 1]
    np.testing.assert_allclose(answer["rewards"], np.minimum(cdf, 0.5) / 0.5, atol=1e-4)


def test_ensemble_model_returns_std_and_pessimistic_rewards(tiny_backbone):
    from latentrm.rm.ensemble import EnsembleHead

    hidden = tiny_backbone.hidden_size
    head = EnsembleHead(hidden, members=[_head(hidden, seed) for seed in (1, 2, 3)]).eval()
    rm = LatentRewardModel.from_head(tiny_backbone, head, layer=1, max_length=512)
    mean, std = rm.score_with_std(PROMPTS, COMPLETIONS)
    assert np.all(std > 0)
    with ServerThread(create_app(ServeConfig(), rm)) as running:
        answer = httpx.post(running.url + "/score", timeout=60, json={
            "items": [{"prompt": p, "completion": c} for p, c in zip(PROMPTS, COMPLETIONS, strict=True)],
            "shaper": "ensemble", "shaper_params": {"k": 2}}).json()
    np.testing.assert_allclose(answer["scores"], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(answer["std"], std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(answer["rewards"], mean - 2 * std, rtol=1e-4, atol=1e-5)


def _start_serve(folder, token, *extra):
    """`latentrm serve` on a free port in a subprocess, once its /health says ready: (process, url)."""
    port = free_port()
    env = {**os.environ, "LATENTRM_TEST_TOKEN": token, "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-c", "import sys; from latentrm.cli import main; sys.exit(main())", "serve",
               "--rm", str(folder), "--port", str(port), "--device", "cpu", "--dtype", "float32",
               "--token-env", "LATENTRM_TEST_TOKEN", "--threads", "1", "--log-level", "info", *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[0])
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("server did not become ready: " + process.communicate()[0])
        time.sleep(0.2)


def test_cli_serves_a_saved_model_and_exits_cleanly_on_sigterm(tiny_rm, tmp_path):
    process, url = _start_serve(tiny_rm.save(tmp_path / "rm"), "tok-123")
    try:
        headers = {"Authorization": "Bearer tok-123"}
        answer = httpx.post(url + "/score", headers=headers, timeout=60,
                            json={"items": [{"prompt": PROMPTS[0], "completion": COMPLETIONS[0]}]}).json()
        np.testing.assert_allclose(answer["scores"], tiny_rm.score(PROMPTS[:1], COMPLETIONS[:1]), rtol=1e-4, atol=1e-5)
        assert httpx.post(url + "/score", json={"items": []}).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    # uvicorn drains, runs the lifespan shutdown, then re-raises SIGTERM so the exit status says so
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Traceback" not in output, output
    assert "tok-123" not in output


def test_workers_serve_one_address_from_several_processes_each_with_the_model(tiny_rm, tmp_path):
    process, url = _start_serve(tiny_rm.save(tmp_path / "rm"), "tok-456", "--workers", "2")
    deadline = time.monotonic() + 60
    try:
        children = set()
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            children |= {int(p) for p in (task / "children").read_text().split()}
        workers = set()
        while time.monotonic() < deadline and len(workers) < 2:  # each new connection may land on either worker
            health = httpx.get(url + "/health", timeout=10)
            if health.status_code == 200:
                workers.add(health.json()["pid"])
        assert workers <= children and len(workers) == 2, (workers, children)
        headers = {"Authorization": "Bearer tok-456"}
        for _ in range(4):  # every worker scores as the model does
            answer = httpx.post(url + "/score", headers=headers, timeout=60,
                                json={"items": [{"prompt": PROMPTS[0], "completion": COMPLETIONS[0]}]}).json()
            np.testing.assert_allclose(answer["scores"], tiny_rm.score(PROMPTS[:1], COMPLETIONS[:1]), rtol=1e-4,
                                       atol=1e-5)
        assert httpx.post(url + "/score", json={"items": []}).status_code == 401  # the token reached the workers
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    assert "Traceback" not in output and "tok-456" not in output, output
