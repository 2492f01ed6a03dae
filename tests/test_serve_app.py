"""The reward server over real HTTP (uvicorn on 127.0.0.1, random port) with a fake scorer.

The fake scorer is deterministic and slow on purpose (a sleep per call) so that batching,
queueing, disconnects and draining can be observed. The real-model equality test lives in
tests/test_serve_model.py.
"""

from __future__ import annotations

import copy
import inspect
import json
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from latentrm.errors import LatentrmError
from latentrm.models import completion_text, render_for_scoring, render_generation_prompt
from latentrm.serve.app import ServeConfig, create_app
from latentrm.serve.testing import ServerThread

LEVELS = [i / 10 for i in range(11)]
META = {"max_length": 256, "layer": 2, "pooling": "last",
        "chosen_quantiles": {"all": {"levels": LEVELS, "values": [4 * q for q in LEVELS]},
                             "fake": {"levels": LEVELS, "values": [2 * q for q in LEVELS]}}}


def fake_value(completion) -> float:
    return (sum(map(ord, completion_text(completion))) % 97) / 10.0 - 4.0


class FakeScorer:
    def __init__(self, tokenizer, delay: float = 0.0) -> None:
        self.backbone = types.SimpleNamespace(tokenizer=tokenizer)
        self.meta = dict(META)
        self.delay = delay
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def score(self, prompts, completions, *, batch_size=None):
        assert batch_size == len(prompts)
        with self.lock:
            self.calls.append([completion_text(c) for c in completions])
        time.sleep(self.delay)
        for c in completions:
            if "BOOM" in completion_text(c):
                raise LatentrmError("completion contains BOOM")
        return [fake_value(c) for c in completions]


def item(prompt="Who is Ada Lovelace?", completion="A mathematician.", **extra):
    return {"prompt": prompt, "completion": completion, **extra}


@pytest.fixture
def serve(tokenizer):
    """serve(scorer=None, **config) -> running ServerThread; all stopped at teardown."""
    started: list[ServerThread] = []

    def start(scorer=None, wait_ready=True, loader=None, **config):
        app = create_app(ServeConfig(**config), scorer if loader else (scorer or FakeScorer(tokenizer)),
                         loader=loader)
        server = ServerThread(app, wait_ready=wait_ready).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_score_and_get_reward(serve, tokenizer):
    server = serve()
    body = {"items": [item(), item("Who is Bo Quenby?", "I don't know.", subset="fake"),
                      item([{"role": "user", "content": "Hi"}], [{"role": "assistant", "content": "Hello"}])]}
    answer = httpx.post(server.url + "/score", json=body).json()
    expected = [fake_value(i["completion"]) for i in body["items"]]
    np.testing.assert_allclose(answer["scores"], expected)
    np.testing.assert_allclose(answer["rewards"], expected)  # default shaper: raw
    assert answer["shaper"] == {"name": "raw", "params": {}} and answer["model"]["layer"] == 2
    shaped = httpx.post(server.url + "/score", json={**body, "shaper": "calibrated", "shaper_params": {"tau": 1}}).json()
    assert shaped["shaper"]["params"] == {"tau": 1.0}
    assert all(0.0 <= r <= 1.0 for r in shaped["rewards"])

    queries = [render_for_scoring(tokenizer, "Who is Ada?", "A mathematician.").text,
               render_generation_prompt(tokenizer, "Who is Bo?") + "No idea." + tokenizer.eos_token]
    answer = httpx.post(server.url + "/get_reward", json={"query": queries, "prompts": ["p1", "p2"],
                                                         "labels": [None, "x"], "future_key": 1}).json()
    raw = [fake_value("A mathematician."), fake_value("No idea.")]
    np.testing.assert_allclose(answer["rewards"], raw)
    np.testing.assert_allclose(answer["scores"], 1 / (1 + np.exp(-np.array(raw))))
    np.testing.assert_allclose(answer["extra_logs"]["latentrm_raw"], raw)


def test_score_groups_identical_prompts_for_quantile_match(serve):
    """The server shapes through rm.shaping.shape_scores, so quantile_match ranks each prompt's group."""
    from latentrm.rm.shaping import get_shaper, shape_scores

    server = serve()
    completions = ["A mathematician.", "A poet.", "I don't know.", "No idea at all."]
    prompts = ["Who is Ada?", "Who is Ada?", "Who is Bo?", "Who is Bo?"]
    body = {"items": [item(p, c, subset="fake") for p, c in zip(prompts, completions)], "shaper": "quantile_match"}
    answer = httpx.post(server.url + "/score", json=body).json()
    raw = np.array([fake_value(c) for c in completions])
    expected = shape_scores(get_shaper("quantile_match", META), raw, ["fake"] * 4, None, prompts)
    np.testing.assert_allclose(answer["rewards"], expected)
    alone = get_shaper("quantile_match", META)(raw, ["fake"] * 4)  # each item its own group
    assert not np.allclose(expected, alone)


def test_get_reward_uses_the_default_shaper_and_label_subsets(serve, tokenizer):
    server = serve(shaper="calibrated", subset_from_labels=True)
    query = render_for_scoring(tokenizer, "Who is Bo?", "No idea.").text
    raw = fake_value("No idea.")
    answer = httpx.post(server.url + "/get_reward", json={"query": [query, query], "labels": ["fake", None]}).json()
    fake_cdf, all_cdf = np.clip((raw / 2), 0, 1), np.clip(raw / 4, 0, 1)
    np.testing.assert_allclose(answer["rewards"], [min(fake_cdf, 0.5) / 0.5, min(all_cdf, 0.5) / 0.5], atol=1e-9)
    bad = httpx.post(server.url + "/get_reward", json={"query": [query], "labels": ["martian"]})
    assert bad.status_code == 422 and "martian" in bad.json()["detail"]


BAD_BODIES = [
    ("/score", b"{not json"),
    ("/score", b"[]"),
    ("/score", b"null"),
    ("/score", b'{"items": []}'),
    ("/score", b'{"items": "x"}'),
    ("/score", b'{"items": [{"prompt": 5, "completion": "x"}]}'),
    ("/score", b'{"items": [{"prompt": "x"}]}'),
    ("/score", b'{"items": [{"prompt": [], "completion": "x"}]}'),
    ("/score", b'{"items": [{"prompt": [{"role": "user"}], "completion": "x"}]}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y", "subset": 3}]}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y", "subset": "martian"}], "shaper": "calibrated"}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y"}], "shaper": "nope"}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y"}], "shaper": "ensemble"}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y"}], "shaper": "raw", "shaper_params": {"k": 1}}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y"}], "shaper_params": {"tau": "high"}}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y"}], "shapr": "calibrated"}'),  # misspelt key
    ("/score", b'{"items": [{"prompt": "x", "completions": "y"}]}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": "y", "subsets": "fake"}]}'),
    ("/score", b'{"items": [{"prompt": "x", "completion": [{"role": "user", "content": "y"}]}]}'),  # no answer
    ("/score", b'{"items": [{"prompt": "x", "completion": "\\ud800"}]}'),  # a lone surrogate: the tokenizer refuses
    ("/score", b'{"items": [{"prompt": [{"role": "user", "content": "\\udfff"}], "completion": "y"}]}'),
    ("/get_reward", b"{"),
    ("/get_reward", b'{"query": []}'),
    ("/get_reward", b'{"query": "one string"}'),
    ("/get_reward", b'{"query": [1, 2]}'),
    ("/get_reward", b'{"query": ["plain text, no chat template"]}'),
    ("/get_reward", b'{"query": ["<|im_start|>user\\nhi<|im_end|>\\n"]}'),
    ("/get_reward", b'{"query": ["a"], "prompts": ["a", "b"]}'),
    ("/get_reward", b'{"prompts": ["a"]}'),
    ("/get_reward", b'{"query": ["<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n\\ud800<|im_end|>"]}'),
]


def test_bad_bodies_get_4xx_with_a_message_never_500(serve):
    server = serve()
    with httpx.Client(base_url=server.url) as client:
        for path, body in BAD_BODIES:
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 500, (path, body, response.status_code, response.text)
            assert response.json()["detail"], (path, body)
        wrong_type = client.post("/score", content=b"items=1", headers={"content-type": "text/plain"})
        assert wrong_type.status_code == 422
        assert client.get("/score").status_code == 405
        assert client.post("/score", json={"items": [item()]}).status_code == 200  # still healthy


# Gemma's rules: no system role, and roles must alternate; the template raises otherwise.
STRICT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def test_input_the_chat_template_refuses_gets_422_naming_the_item(serve, tokenizer):
    strict = copy.deepcopy(tokenizer)
    strict.chat_template = STRICT_TEMPLATE
    server = serve(FakeScorer(strict))
    system_prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is Ada?"}]
    with httpx.Client(base_url=server.url) as client:
        refused = client.post("/score", json={"items": [item(), item(system_prompt)]})
        assert refused.status_code == 422, refused.text
        assert "item 1" in refused.json()["detail"] and "System role not supported" in refused.json()["detail"]
        good = render_for_scoring(strict, "Who is Ada?", "A mathematician.").text
        two_users = ("<start_of_turn>user\na<end_of_turn>\n<start_of_turn>user\nb<end_of_turn>\n"
                     "<start_of_turn>model\nc<end_of_turn>\n")
        refused = client.post("/get_reward", json={"query": [good, two_users]})
        assert refused.status_code == 422, refused.text
        assert "query 1" in refused.json()["detail"] and "must alternate" in refused.json()["detail"]
        answer = client.post("/get_reward", json={"query": [good]})  # the server is fine afterwards
        assert answer.json()["rewards"] == [pytest.approx(fake_value("A mathematician."))]


def test_limits_give_413_and_422(serve):
    server = serve(max_items=3, max_body_bytes=4000, max_queue_items=16)
    too_many = httpx.post(server.url + "/score", json={"items": [item()] * 4})
    assert too_many.status_code == 413 and "limit of 3" in too_many.json()["detail"]
    too_big = httpx.post(server.url + "/score", json={"items": [item(completion="x" * 5000)]})
    assert too_big.status_code == 413 and "4000 bytes" in too_big.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while streaming
        yield b'{"items": [{"prompt": "x", "completion": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    streamed = httpx.post(server.url + "/score", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    too_long = httpx.post(server.url + "/score", json={"items": [item(completion="word " * 300)]})
    assert too_long.status_code == 422 and "tokens, over the limit of 256" in too_long.json()["detail"]
    queries = [f"q{i}" for i in range(4)]
    assert httpx.post(server.url + "/get_reward", json={"query": queries}).status_code == 413


def test_bearer_token(serve):
    secret = "s3cret-token-value"
    server = serve(token=secret)
    url = server.url + "/score"
    body = {"items": [item()]}
    assert httpx.get(server.url + "/health").status_code == 200  # probes stay open
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": secret},
                    {"Authorization": f"Basic {secret}"}):
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 401
        assert secret not in response.text and response.headers["WWW-Authenticate"] == "Bearer"
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_too_many_requests_at_once_get_503_then_recover(serve, tokenizer):
    scorer = FakeScorer(tokenizer, delay=1.0)
    server = serve(scorer, max_requests=2, max_batch_items=1, max_wait_ms=0)
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(client.post, "/score", json={"items": [item(completion=f"held {i}")]})
                    for i, client in enumerate(clients)]
            deadline = time.monotonic() + 10
            # both requests are being handled: one in the forward, the other queued behind it
            while not (scorer.calls and httpx.get(server.url + "/health").json()["queue_items"] == 1):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            refused = httpx.post(server.url + "/score", json={"items": [item()]})
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert "--max-requests" in refused.json()["detail"]
            metrics = httpx.get(server.url + "/metrics")  # probes and scrapes are exempt
            assert metrics.status_code == 200 and 'reason="too_many_requests"} 1.0' in metrics.text
            assert [f.result().status_code for f in held] == [200, 200]
    finally:
        for client in clients:
            client.close()
    assert httpx.post(server.url + "/score", json={"items": [item()]}).status_code == 200  # recovered


def test_concurrent_requests_are_batched(serve, tokenizer):
    scorer = FakeScorer(tokenizer, delay=0.5)
    server = serve(scorer, max_wait_ms=20)
    completions = [f"answer number {i}" for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda c: httpx.post(server.url + "/score", json={"items": [item(completion=c)]},
                                                     timeout=30).json(), completions))
    assert [a["scores"][0] for a in answers] == pytest.approx([fake_value(c) for c in completions])
    assert sum(len(call) for call in scorer.calls) == 16
    assert max(len(call) for call in scorer.calls) >= 4  # 16 requests, far fewer forwards
    metrics = httpx.get(server.url + "/metrics").text
    assert 'latentrm_batch_size_count' in metrics and "latentrm_queue_depth 0.0" in metrics
    assert 'latentrm_requests_total{endpoint="/score",status="200"} 16.0' in metrics
    assert 'latentrm_request_latency_seconds_bucket{endpoint="/score"' in metrics


def test_token_budget_limits_batch_size(serve, tokenizer):
    scorer = FakeScorer(tokenizer, delay=0.05)
    text = render_for_scoring(tokenizer, "Who is Ada Lovelace?", "A mathematician.").text
    width = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    server = serve(scorer, max_batch_tokens=2 * width + 1, max_item_tokens=width + 1)
    response = httpx.post(server.url + "/score", json={"items": [item()] * 7})
    assert response.status_code == 200 and len(response.json()["scores"]) == 7
    assert [len(call) for call in scorer.calls] == [2, 2, 2, 1]


def test_client_disconnect_does_not_break_the_batch(serve, tokenizer):
    scorer = FakeScorer(tokenizer, delay=1.0)
    server = serve(scorer, max_wait_ms=0)
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(4)]  # built up front: no setup lag

    def post(client, completion, timeout=30.0):
        return client.post("/score", json={"items": [item(completion=completion)]}, timeout=timeout)

    try:
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(post, clients[0], "first in flight")
            deadline = time.monotonic() + 10
            while not scorer.calls:  # the first forward is running; the next requests queue behind it
                assert time.monotonic() < deadline
                time.sleep(0.01)
            gone = pool.submit(post, clients[1], "GONE-1", 0.3)
            survivors = [pool.submit(post, clients[2 + i], f"survivor {i}") for i in range(2)]
            with pytest.raises(httpx.TimeoutException):
                gone.result()
            assert first.result().json()["scores"] == [pytest.approx(fake_value("first in flight"))]
            for i, future in enumerate(survivors):
                assert future.result().json()["scores"] == [pytest.approx(fake_value(f"survivor {i}"))]
    finally:
        for client in clients:
            client.close()
    assert all("GONE-1" not in call for call in scorer.calls)  # dropped before its forward
    metrics = httpx.get(server.url + "/metrics").text
    assert "latentrm_cancelled_items_total 1.0" in metrics
    assert 'latentrm_requests_total{endpoint="/score",status="499"} 1.0' in metrics
    assert httpx.get(server.url + "/health").json()["status"] == "ready"


def test_overload_gets_503_then_recovers(serve, tokenizer):
    scorer = FakeScorer(tokenizer, delay=0.5)
    server = serve(scorer, max_queue_items=4, max_items=4, max_batch_items=2, max_wait_ms=0)
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(16)]
    try:
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda i: clients[i].post("/score", json={"items": [item(completion=str(i))]}),
                                      range(16)))
    finally:
        for client in clients:
            client.close()
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) >= 4 and codes.count(200) >= 4
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) >= 1 and "queue is full" in response.json()["detail"]
    assert httpx.post(server.url + "/score", json={"items": [item()] * 4}).status_code == 200  # recovered
    assert httpx.get(server.url + "/health").json()["queue_items"] == 0


def test_a_bad_request_fails_alone_in_a_shared_batch(serve, tokenizer):
    scorer = FakeScorer(tokenizer, delay=0.6)
    server = serve(scorer, max_wait_ms=0)
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(4)]  # built up front: no setup lag

    def post(client, completion):
        return client.post("/score", json={"items": [item(completion=completion)]})

    try:
        with ThreadPoolExecutor(4) as pool:
            blocker = pool.submit(post, clients[0], "blocker")
            deadline = time.monotonic() + 10
            while not scorer.calls:  # the scorer is busy, so the next three queue up and share one batch
                assert time.monotonic() < deadline
                time.sleep(0.01)
            futures = [pool.submit(post, client, c) for client, c in zip(clients[1:], ("fine one", "BOOM here",
                                                                                      "fine two"), strict=True)]
            ok1, bad, ok2 = (f.result() for f in futures)
            assert blocker.result().status_code == 200
    finally:
        for client in clients:
            client.close()
    assert ok1.status_code == 200 and ok2.status_code == 200
    assert ok1.json()["scores"] == [pytest.approx(fake_value("fine one"))]
    assert bad.status_code == 422 and "BOOM" in bad.json()["detail"]
    shared = [call for call in scorer.calls if "BOOM here" in call]
    assert len(shared[0]) >= 2 and shared[-1] == ["BOOM here"]  # failed with others, then retried alone


def test_graceful_shutdown_drains_in_flight_requests(tokenizer):
    scorer = FakeScorer(tokenizer, delay=0.4)
    app = create_app(ServeConfig(max_batch_items=2, max_wait_ms=0), scorer)
    server = ServerThread(app).start()
    try:
        with ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(httpx.post, server.url + "/score",
                                   json={"items": [item(completion=f"drain {i}")]}, timeout=30) for i in range(5)]
            deadline = time.monotonic() + 10
            # all 5 admitted (in a forward or waiting) before the shutdown starts
            while sum(map(len, scorer.calls)) + app.state.latentrm.batcher.queued_items < 5:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            server.server.should_exit = True  # what SIGTERM / Ctrl-C does
            results = [f.result() for f in futures]
        assert [r.status_code for r in results] == [200] * 5
        assert [r.json()["scores"][0] for r in results] == pytest.approx([fake_value(f"drain {i}") for i in range(5)])
    finally:
        server.stop()
    assert not server.thread.is_alive()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=2)


def test_not_ready_until_loaded_and_load_errors_are_reported(serve, tokenizer):
    gate = threading.Event()

    def slow_loader():
        gate.wait(20)
        return FakeScorer(tokenizer)

    server = serve(loader=slow_loader, wait_ready=False)
    health = httpx.get(server.url + "/health")
    assert health.status_code == 503 and health.json()["status"] == "loading"
    assert httpx.post(server.url + "/score", json={"items": [item()]}).status_code == 503
    gate.set()
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert httpx.post(server.url + "/score", json={"items": [item()]}).status_code == 200

    def broken_loader():
        raise LatentrmError("rm.json is missing the head")

    failed = serve(loader=broken_loader, wait_ready=False)
    deadline = time.monotonic() + 10
    while (body := httpx.get(failed.url + "/health").json())["status"] == "loading":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert body == {"status": "error", "error": "rm.json is missing the head"}
    assert "failed to load" in httpx.post(failed.url + "/score", json={"items": [item()]}).json()["detail"]


def test_cli_helpers(tmp_path, monkeypatch):
    from latentrm.serve.cli import read_token, serve
    from latentrm.validate import parse_shaper_params

    monkeypatch.setenv("RM_TOKEN", "  abc  ")
    assert read_token("RM_TOKEN", None) == "abc"
    (tmp_path / "token").write_text("xyz\n")
    assert read_token(None, tmp_path / "token") == "xyz"
    assert read_token(None, None) is None
    for args in (("UNSET_VAR_FOR_TEST", None), (None, tmp_path / "missing")):
        with pytest.raises(LatentrmError):
            read_token(*args)
    assert parse_shaper_params(["tau=0.25", "k=2"]) == {"tau": 0.25, "k": 2.0}
    with pytest.raises(LatentrmError, match="name=number"):
        parse_shaper_params(["tau"])
    with pytest.raises(LatentrmError, match="no rm.json"):
        serve(rm=tmp_path)
    with pytest.raises(LatentrmError, match="must not exceed"):
        ServeConfig(max_items=10, max_queue_items=5)
    with pytest.raises(LatentrmError, match="max-requests must be >= 1"):
        ServeConfig(max_requests=0)
    assert inspect.signature(serve).parameters["host"].default.default == "127.0.0.1"  # loopback unless told


def test_metrics_are_prometheus_text(serve):
    server = serve()
    httpx.post(server.url + "/score", json={"items": [item()]})
    response = httpx.get(server.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split(" ")[0] for line in response.text.splitlines() if line and line[0] != "#"}
    for name in ("latentrm_requests_total", "latentrm_batch_size_bucket", "latentrm_queue_depth",
                 "latentrm_request_latency_seconds_bucket", "latentrm_forward_seconds_bucket", "latentrm_ready"):
        assert name in names, name
    assert json.loads(httpx.get(server.url + "/health").text)["batching"] is True


def _raw_post(url: str, head_length: int, body: bytes, timeout: float = 10.0) -> tuple[int, str]:
    """POST over a raw socket (loopback), announcing `head_length` bytes and sending `body`."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {head_length}\r\n\r\n".encode() + body)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply.split(b"\r\n\r\n", 1)[1].decode("utf-8", "replace")


def test_a_body_shorter_than_its_content_length_gets_408_after_the_body_timeout(serve):
    server = serve(body_timeout=0.5)
    started = time.perf_counter()
    status, text = _raw_post(server.url, 100, b'{"items": [')
    assert status == 408 and "--body-timeout" in text
    assert time.perf_counter() - started < 5  # bounded, not held until the client gives up
    assert httpx.post(server.url + "/score", json={"items": [item()]}).status_code == 200  # server still fine


@pytest.mark.parametrize("body, fragment", [
    (b'{"items": [{"prompt": "\xff\xfe", "completion": "y"}]}', "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested 100000 levels deep"),
    (b'{"items": [{"prompt": "x", "completion": "y", "subset": ' + b"9" * 5000 + b"}]}", "number"),
])
def test_unparseable_bodies_say_what_was_wrong(serve, body, fragment):
    server = serve()
    status, text = _raw_post(server.url, len(body), body)
    assert status == 400 and fragment in json.loads(text)["detail"], text


def test_body_timeout_is_validated():
    with pytest.raises(LatentrmError, match="--body-timeout"):
        ServeConfig(body_timeout=0)


def test_issue_23_decisions_nul_roles_content_type_plain_queries_and_headers(serve, tokenizer):
    secret = "another-s3cret"
    server = serve(token=secret)
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=server.url, headers=auth) as client:
        nul = client.post("/score", json={"items": [item("Who is\u0000 Ada?", "A mathematician.")]})
        assert nul.status_code == 422 and "NUL character" in nul.json()["detail"]
        role = client.post("/score", json={"items": [item([{"role": "banana", "content": "Hi"}], "Hello")]})
        assert role.status_code == 422 and "role 'banana' is not a chat role" in role.json()["detail"]
        for headers in ({"content-type": "text/plain"}, {}):
            plain = client.post("/score", content=b'{"items": []}', headers=headers)
            assert plain.status_code == 422 and "expected a JSON body" in plain.json()["detail"]
        # an empty completion is scored (the head's reward for answering nothing, at the end-of-turn token)
        empty = client.post("/score", json={"items": [item("Who is Ada?", "")]})
        assert empty.status_code == 200 and len(empty.json()["scores"]) == 1
        # a plain (non-chat) query, as OpenRLHF sends for a policy without a chat template, split by its prompt
        plain_query = client.post("/get_reward", json={"query": ["Who is Ada? A mathematician."],
                                                       "prompts": ["Who is Ada?"]})
        assert plain_query.status_code == 200, plain_query.text
        np.testing.assert_allclose(plain_query.json()["extra_logs"]["latentrm_raw"],
                                   [fake_value("A mathematician.")])
        unsplittable = client.post("/get_reward", json={"query": ["Who is Ada? A mathematician."]})
        assert unsplittable.status_code == 422  # without prompts there is nothing to split a plain query by
    two = httpx.post(server.url + "/score", json={"items": [item()]},
                     headers=[("Authorization", f"Bearer {secret}"), ("Authorization", "Bearer wrong")])
    assert two.status_code == 401 and "more than one Authorization header" in two.json()["detail"]
